"""Naive NumPy references, written from the definitions with explicit loops.

These are the third, independent check of every hand-derived VJP: no JAX, no
flipped kernels, no zero insertion. Each forward loops over output positions and
kernel taps; each ``*_vjp`` walks the same loops and sends every cotangent back
along the tap that produced it (the chain rule, one term at a time). Everything
runs in float64 and channel-first layout (``N, C, *spatial`` / ``O, C/G, *k``);
:func:`to_channel_first` and :func:`from_channel_first` convert other layouts.

Slow by design; meant for small shapes and for reading.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np


def _per_dim(value, n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, Sequence) else (value,) * n


def _pad_pairs(padding, in_sizes, kernel, stride, dilation) -> list[tuple[int, int]]:
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
    return [tuple(p) if isinstance(p, Sequence) else (p, p) for p in _per_dim(padding, n)]


def to_channel_first(a: np.ndarray, layout: str, canonical: str) -> np.ndarray:
    """Transpose ``a`` from ``layout`` (e.g. ``"NHWC"``) to ``canonical`` (e.g. ``"NCHW"``)."""
    return np.transpose(a, [layout.index(c) for c in canonical])


def from_channel_first(a: np.ndarray, canonical: str, layout: str) -> np.ndarray:
    """Inverse of :func:`to_channel_first`."""
    return np.transpose(a, [canonical.index(c) for c in layout])


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
    stride, dilation = _per_dim(stride, n), _per_dim(dilation, n)
    kernel = w_shape[2:]
    pairs = _pad_pairs(padding, x_shape[2:], kernel, stride, dilation)
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
    stride, padding = _per_dim(stride, n), _per_dim(padding, n)
    output_padding, dilation = _per_dim(output_padding, n), _per_dim(dilation, n)
    kernel = w_shape[2:]
    footprint = [(i - 1) * s + (k - 1) * d + 1 for i, k, s, d in zip(x_shape[2:], kernel, stride, dilation)]
    full_shape = tuple(f + e for f, e in zip(footprint, output_padding))
    crop = tuple(slice(p, f - p + e) for f, p, e in zip(footprint, padding, output_padding))

    def scatters():
        for i in itertools.product(*map(range, x_shape[2:])):
            for k in itertools.product(*map(range, kernel)):
                yield i, k, tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))

    return full_shape, crop, scatters


# ---------------------------------------------------------------------------- pooling


def _pool_plan(x_shape, window, stride, padding):
    """Per-dim window, stride, (lo, hi) pairs and output shape; ``taps(i)``: each tap's unpadded input position."""
    n = len(x_shape) - 2
    window = _per_dim(window, n)
    stride = window if stride is None else _per_dim(stride, n)
    pairs = _pad_pairs(padding, x_shape[2:], window, stride, (1,) * n)
    out_shape = tuple((i + lo + hi - k) // s + 1 for i, (lo, hi), k, s in zip(x_shape[2:], pairs, window, stride))

    def taps(i):
        """Raster order (first window dim slowest); ``inside`` says whether the tap reads an input element."""
        for k in itertools.product(*map(range, window)):
            position = tuple(ii * s + kk - lo for ii, kk, s, (lo, _) in zip(i, k, stride, pairs))
            yield position, all(0 <= p < size for p, size in zip(position, x_shape[2:]))

    return out_shape, taps


def max_pool(x, window, stride=None, padding=0) -> tuple[np.ndarray, np.ndarray]:
    """``(y, switches)``: per window, the maximum of its input elements and the flat index of the first one.

    Padding is ``-inf``, so it never wins and is skipped. Taps are visited in
    raster order and a tap replaces the current pick only when it is strictly
    larger, or a NaN while the pick is not: ties keep the first maximum and the
    first NaN of a window wins.
    """
    x = np.asarray(x, np.float64)
    out_shape, taps = _pool_plan(x.shape, window, stride, padding)
    batch_channels = x.shape[:2]
    y = np.zeros((*batch_channels, *out_shape))
    switches = np.zeros((*batch_channels, *out_shape), np.int32)
    for i in itertools.product(*map(range, out_shape)):
        best = np.full(batch_channels, -np.inf)
        pick = np.full(batch_channels, -1)
        for position, inside in taps(i):
            if not inside:
                continue
            value = x[(slice(None), slice(None), *position)]
            take = (pick < 0) | (value > best) | (np.isnan(value) & ~np.isnan(best))
            best = np.where(take, value, best)
            pick = np.where(take, np.ravel_multi_index(position, x.shape[2:]), pick)
        y[(slice(None), slice(None), *i)] = best
        switches[(slice(None), slice(None), *i)] = pick
    return y, switches


def max_pool_vjp(x, g, window, stride=None, padding=0) -> tuple[np.ndarray]:
    """``(dx,)``: each ``g[n, c, i]`` goes to the input element window ``i`` picked; picks shared by windows add."""
    _, switches = max_pool(x, window, stride, padding)
    return (max_unpool(g, switches, np.shape(x)[2:]),)


def max_unpool(y, switches, output_size) -> np.ndarray:
    """``x[n, c, p] = sum_{i : switches[n, c, i] = p} y[n, c, i]`` over flat planes; switches outside a plane drop."""
    y, switches = np.asarray(y, np.float64), np.asarray(switches)
    plane = int(np.prod(output_size))
    x = np.zeros((*y.shape[:2], plane))
    for n, c in itertools.product(*map(range, y.shape[:2])):
        for value, p in zip(y[n, c].ravel(), switches[n, c].ravel()):
            if 0 <= p < plane:
                x[n, c, p] += value
    return x.reshape(*y.shape[:2], *output_size)


def max_unpool_vjp(y, switches, g, output_size) -> tuple[np.ndarray, None]:
    """``(dy, None)``: ``dy[n, c, i] = g[n, c, switches[n, c, i]]`` (0 outside the plane); switches are integers."""
    switches, g = np.asarray(switches), np.asarray(g, np.float64)
    flat = g.reshape(*g.shape[:2], -1)
    dy = np.zeros(switches.shape)
    for index in itertools.product(*map(range, switches.shape)):
        p = switches[index]
        if 0 <= p < flat.shape[2]:
            dy[index] = flat[index[0], index[1], p]
    return dy, None


def avg_pool(x, window, stride=None, padding=0) -> np.ndarray:
    """``y[n, c, i] = (1 / K) sum_taps x_pad[n, c, i s + k]``: zero padding counts, ``K = prod(window)`` always."""
    x = np.asarray(x, np.float64)
    out_shape, taps = _pool_plan(x.shape, window, stride, padding)
    divisor = np.prod(_per_dim(window, x.ndim - 2))
    y = np.zeros((*x.shape[:2], *out_shape))
    for i in itertools.product(*map(range, out_shape)):
        for position, inside in taps(i):
            if inside:  # a padded tap adds zero
                y[(slice(None), slice(None), *i)] += x[(slice(None), slice(None), *position)] / divisor
    return y


def avg_pool_vjp(x, g, window, stride=None, padding=0) -> tuple[np.ndarray]:
    """``(dx,)``: each ``g[n, c, i] / K`` goes to every input element of window ``i`` (padding takes its share away)."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    out_shape, taps = _pool_plan(x.shape, window, stride, padding)
    divisor = np.prod(_per_dim(window, x.ndim - 2))
    dx = np.zeros_like(x)
    for i in itertools.product(*map(range, out_shape)):
        for position, inside in taps(i):
            if inside:
                dx[(slice(None), slice(None), *position)] += g[(slice(None), slice(None), *i)] / divisor
    return (dx,)
