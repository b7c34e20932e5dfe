"""NumPy loop references of ``conv`` and ``conv_transpose``, written from their definitions.

Each forward loops over output positions and kernel taps; each ``*_vjp`` walks the same
loops and sends every cotangent back along the tap that produced it. Channel-first
(``N, C, *spatial`` / ``O, C/G, *k``), float64; :mod:`convgrad.loops.layouts` adapts other layouts.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def per_dim(value, n: int) -> tuple[int, ...]:
    """``value`` if it is a sequence (one entry per spatial dim), else ``n`` copies of it."""
    return tuple(value) if isinstance(value, Sequence) else (value,) * n


def pad_pairs(padding, in_sizes, kernel, stride, dilation) -> list[tuple[int, int]]:
    """Explicit (lo, hi) pairs; "SAME" means output size ceil(in / s), the extra zero on the high side."""
    n = len(in_sizes)
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * n
        pairs = []
        for i, k, s, d in zip(in_sizes, kernel, stride, dilation):
            out = -(-i // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - i, 0)
            pairs.append((total // 2, total - total // 2))
        return pairs
    return [tuple(p) if isinstance(p, Sequence) else (p, p) for p in per_dim(padding, n)]


def conv(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """``y[n, o, *i] = b[o] + sum_{c', *k} x_pad[n, g C/G + c', *(i s + k d)] w[o, c', *k]``, by loops."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    pairs, out_shape, taps = _conv_plan(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, [(0, 0), (0, 0), *pairs])
    n_batch, out_channels = x.shape[0], w.shape[0]
    og, cg = out_channels // groups, w.shape[1]
    y = np.zeros((n_batch, out_channels, *out_shape))
    for g in range(groups):
        o_slice, c_slice = slice(g * og, (g + 1) * og), slice(g * cg, (g + 1) * cg)
        for i in itertools.product(*map(range, out_shape)):
            for k, position in taps(i):
                # (N, C/G) @ (C/G, O/G): every input channel of the group meets every output channel
                y[(slice(None), o_slice, *i)] += xp[(slice(None), c_slice, *position)] @ w[(o_slice, slice(None), *k)].T
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, -1, *([1] * len(out_shape)))
    return y


def conv_vjp(x, w, b, g, *, stride=1, padding=0, dilation=1, groups=1):
    """``(dx, dw, db)``: each product ``x_pad[.., position] w[o, c', k]`` of the forward sends ``g[n, o, i]`` back."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    pairs, out_shape, taps = _conv_plan(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, [(0, 0), (0, 0), *pairs])
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    out_channels = w.shape[0]
    og, cg = out_channels // groups, w.shape[1]
    for grp in range(groups):
        o_slice, c_slice = slice(grp * og, (grp + 1) * og), slice(grp * cg, (grp + 1) * cg)
        for i in itertools.product(*map(range, out_shape)):
            g_i = g[(slice(None), o_slice, *i)]  # (N, O/G)
            for k, position in taps(i):
                dxp[(slice(None), c_slice, *position)] += g_i @ w[(o_slice, slice(None), *k)]
                dw[(o_slice, slice(None), *k)] += g_i.T @ xp[(slice(None), c_slice, *position)]
    crop = tuple(slice(lo, lo + n) for (lo, _), n in zip(pairs, x.shape[2:]))
    dx = dxp[(slice(None), slice(None), *crop)]
    db = None if b is None else g.sum(axis=(0, *range(2, g.ndim)))
    return dx, dw, db


def _conv_plan(x_shape, w_shape, stride, padding, dilation):
    """Padding pairs, output shape, and ``taps(i)``: the kernel offsets and padded positions output ``i`` reads."""
    n = len(w_shape) - 2
    stride, dilation = per_dim(stride, n), per_dim(dilation, n)
    kernel = w_shape[2:]
    pairs = pad_pairs(padding, x_shape[2:], kernel, stride, dilation)
    out_shape = tuple(
        (i + lo + hi - (k - 1) * d - 1) // s + 1
        for i, (lo, hi), k, s, d in zip(x_shape[2:], pairs, kernel, stride, dilation)
    )

    def taps(i):
        for k in itertools.product(*map(range, kernel)):
            yield k, tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))

    return pairs, out_shape, taps


def conv_transpose(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1) -> np.ndarray:
    """``y_full[n, g O/G + o', *(i s + k d)] += x[n, g C/G + c', *i] w[g C/G + c', o', *k]``, then crop.

    Every input sample scatters the kernel, scaled, into ``y_full``
    (``(in - 1) s + d (k - 1) + 1`` samples per dim); the output is
    ``y_full[p : p + out]`` with ``out = (in - 1) s - 2 p + d (k - 1) + output_padding + 1``,
    zeros where it runs past ``y_full``'s end; plus ``b``.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    full_shape, crop, scatters = _conv_transpose_plan(x.shape, w.shape, stride, padding, output_padding, dilation)
    in_channels, og = w.shape[0], w.shape[1]
    cg = in_channels // groups
    y_full = np.zeros((x.shape[0], og * groups, *full_shape))
    for grp in range(groups):
        o_slice, c_slice = slice(grp * og, (grp + 1) * og), slice(grp * cg, (grp + 1) * cg)
        for i, k, position in scatters():
            # (N, C/G) @ (C/G, O/G): every input channel of the group feeds every output channel of the group
            y_full[(slice(None), o_slice, *position)] += x[(slice(None), c_slice, *i)] @ w[(c_slice, slice(None), *k)]
    y = y_full[(slice(None), slice(None), *crop)]
    if b is not None:
        y = y + np.asarray(b, np.float64).reshape(1, -1, *([1] * (w.ndim - 2)))
    return y


def conv_transpose_vjp(x, w, b, g, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1):
    """``(dx, dw, db)``: each product ``x[.., i] w[c, o', k]`` scattered to ``position`` sends ``g_full`` there back.

    ``g_full`` is ``g`` put back where the output was cropped from (zeros
    elsewhere), so the ``output_padding`` samples beyond ``y_full`` send nothing.
    """
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    full_shape, crop, scatters = _conv_transpose_plan(x.shape, w.shape, stride, padding, output_padding, dilation)
    in_channels, og = w.shape[0], w.shape[1]
    cg = in_channels // groups
    g_full = np.zeros((*g.shape[:2], *full_shape))
    g_full[(slice(None), slice(None), *crop)] = g
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    for grp in range(groups):
        o_slice, c_slice = slice(grp * og, (grp + 1) * og), slice(grp * cg, (grp + 1) * cg)
        for i, k, position in scatters():
            g_at = g_full[(slice(None), o_slice, *position)]  # (N, O/G)
            dx[(slice(None), c_slice, *i)] += g_at @ w[(c_slice, slice(None), *k)].T
            dw[(c_slice, slice(None), *k)] += x[(slice(None), c_slice, *i)].T @ g_at
    db = None if b is None else g.sum(axis=(0, *range(2, g.ndim)))
    return dx, dw, db


def _conv_transpose_plan(x_shape, w_shape, stride, padding, output_padding, dilation):
    """``y_full``'s shape, the output's slice of it per dim, and ``scatters()``: (input index, tap, position).

    ``y_full`` holds the scatter footprint ``(in - 1) s + d (k - 1) + 1`` plus
    ``output_padding`` zeros, so the output ``y_full[p : p + out]`` fits in it.
    """
    n = len(w_shape) - 2
    stride, padding = per_dim(stride, n), per_dim(padding, n)
    output_padding, dilation = per_dim(output_padding, n), per_dim(dilation, n)
    kernel = w_shape[2:]
    footprint = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(x_shape[2:], kernel, stride, dilation)]
    full_shape = tuple(f + e for f, e in zip(footprint, output_padding))
    crop = tuple(slice(p, f - p + e) for f, p, e in zip(footprint, padding, output_padding))

    def scatters():
        for i in itertools.product(*map(range, x_shape[2:])):
            for k in itertools.product(*map(range, kernel)):
                yield i, k, tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))

    return full_shape, crop, scatters
