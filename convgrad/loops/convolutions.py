"""NumPy loop references of the convolutions and of padding, written from their definitions.

Each forward loops over output positions and kernel taps; each ``*_vjp`` walks the same
loops and sends every cotangent back along the tap that produced it. Channel-first
(``N, C, *spatial`` / ``O, C/G, *k``), float64; :mod:`convgrad.loops.layouts` adapts other
layouts and unbatched inputs. The definitions: PyTorch's ``Conv*d`` (with ``padding_mode``),
``ConvTranspose*d`` and ``torch.nn.functional.pad``; lax's ``conv_general_dilated`` (XLA's
convolution: input and kernel dilation, padding that may crop, feature and batch groups) and
``conv_transpose``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from convgrad.ops.geometry import dilated_extent, lax_conv_transpose_padding


def per_dim(value, n: int) -> tuple[int, ...]:
    """``value`` if it is a sequence (one entry per spatial dim), else ``n`` copies of it."""
    return tuple(value) if isinstance(value, Sequence) else (value,) * n


# ---------------------------------------------------------------------------- padding


def source_index(q: int, n: int, lo: int, mode: str) -> int | None:
    """The input sample that padded position ``q`` copies (``None``: a zero), by ``torch.nn.functional.pad``.

    ``j = q - lo`` is the position relative to the input: ``zeros`` copies ``j``
    when it is inside; ``reflect`` mirrors about the edge samples (``-j``,
    ``2 (n - 1) - j``); ``replicate`` clamps to ``[0, n - 1]``; ``circular``
    wraps (``j mod n``).
    """
    j = q - lo
    if mode == "zeros":
        return j if 0 <= j < n else None
    if mode == "reflect":
        return -j if j < 0 else 2 * (n - 1) - j if j >= n else j
    if mode == "replicate":
        return min(max(j, 0), n - 1)
    return j % n  # circular


def pad(x, pad_width, mode="zeros") -> np.ndarray:
    """``y[*q] = x[*m(q)]`` for every output position ``q``, by :func:`source_index` along each axis."""
    x = np.asarray(x, np.float64)
    pairs = [tuple(p) if isinstance(p, Sequence) else (p, p) for p in per_dim(pad_width, x.ndim)]
    y = np.zeros([n + lo + hi for n, (lo, hi) in zip(x.shape, pairs)])
    for q in itertools.product(*map(range, y.shape)):
        m = tuple(source_index(qq, n, lo, mode) for qq, n, (lo, _) in zip(q, x.shape, pairs))
        if None not in m:
            y[q] = x[m]
    return y


def pad_vjp(x, g, pad_width, mode="zeros"):
    """``(dx,)``: every ``g[*q]`` added back onto the sample ``x[*m(q)]`` it copied."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    pairs = [tuple(p) if isinstance(p, Sequence) else (p, p) for p in per_dim(pad_width, x.ndim)]
    dx = np.zeros_like(x)
    for q in itertools.product(*map(range, g.shape)):
        m = tuple(source_index(qq, n, lo, mode) for qq, n, (lo, _) in zip(q, x.shape, pairs))
        if None not in m:
            dx[m] += g[q]
    return (dx,)


# ---------------------------------------------------------------------------- conv (PyTorch's Conv*d)


def pad_pairs(padding, in_sizes, kernel, stride, dilation) -> list[tuple[int, int]]:
    """Explicit (lo, hi) pairs; "SAME" means output size ceil(in / s) with the odd zero on the high side,
    "SAME_LOWER" the same with it on the low side, "VALID" none."""
    n = len(in_sizes)
    if isinstance(padding, str):
        if padding.upper() == "VALID":
            return [(0, 0)] * n
        pairs = []
        for i, k, s, d in zip(in_sizes, kernel, stride, dilation):
            out = -(-i // s)
            total = max((out - 1) * s + (k - 1) * d + 1 - i, 0)
            small, large = total // 2, total - total // 2
            pairs.append((small, large) if padding.upper() == "SAME" else (large, small))
        return pairs
    return [tuple(p) if isinstance(p, Sequence) else (p, p) for p in per_dim(padding, n)]


def conv(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros") -> np.ndarray:
    """``y[n, o, *i] = b[o] + sum_{c', *k} x_pad[n, g C/G + c', *(i s + k d)] w[o, c', *k]``, by loops.

    ``x_pad[.., *q]`` is ``x[.., *m(q)]`` by ``padding_mode`` (:func:`source_index`;
    0 where zeros mode leaves none), read where a tap lands, never built; a window
    must fit in the padded input entirely, so no window gives an empty output.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    pairs, out_shape, taps = _conv_plan(x.shape, w.shape, stride, padding, dilation)
    n_batch, out_channels = x.shape[0], w.shape[0]
    og, cg = out_channels // groups, w.shape[1]
    y = np.zeros((n_batch, out_channels, *out_shape))
    for g in range(groups):
        o_slice, c_slice = slice(g * og, (g + 1) * og), slice(g * cg, (g + 1) * cg)
        for i in itertools.product(*map(range, out_shape)):
            for k, position in taps(i):
                m = _source(position, x.shape[2:], pairs, padding_mode)
                if m is not None:
                    # (N, C/G) @ (C/G, O/G): every input channel of the group meets every output channel
                    y[(slice(None), o_slice, *i)] += x[(slice(None), c_slice, *m)] @ w[(o_slice, slice(None), *k)].T
    if b is not None:
        y += np.asarray(b, np.float64).reshape(1, -1, *([1] * len(out_shape)))
    return y


def conv_vjp(x, w, b, g, *, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros"):
    """``(dx, dw, db)``: each product ``x_pad[.., position] w[o, c', k]`` of the forward sends ``g[n, o, i]`` back,
    to the sample of ``x`` that the padded position copies (the padding's adjoint, one term at a time)."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    pairs, out_shape, taps = _conv_plan(x.shape, w.shape, stride, padding, dilation)
    dx, dw = np.zeros_like(x), np.zeros_like(w)
    out_channels = w.shape[0]
    og, cg = out_channels // groups, w.shape[1]
    for grp in range(groups):
        o_slice, c_slice = slice(grp * og, (grp + 1) * og), slice(grp * cg, (grp + 1) * cg)
        for i in itertools.product(*map(range, out_shape)):
            g_i = g[(slice(None), o_slice, *i)]  # (N, O/G)
            for k, position in taps(i):
                m = _source(position, x.shape[2:], pairs, padding_mode)
                if m is not None:
                    dx[(slice(None), c_slice, *m)] += g_i @ w[(o_slice, slice(None), *k)]
                    dw[(o_slice, slice(None), *k)] += g_i.T @ x[(slice(None), c_slice, *m)]
    db = None if b is None else g.sum(axis=(0, *range(2, g.ndim)))
    return dx, dw, db


def _source(position, in_shape, pairs, mode):
    """The input position that padded ``position`` copies, per spatial dim (``None``: a zero of the padding)."""
    m = tuple(source_index(q, n, lo, mode) for q, n, (lo, _) in zip(position, in_shape, pairs))
    return None if None in m else m


def _conv_plan(x_shape, w_shape, stride, padding, dilation):
    """Padding pairs, output shape, and ``taps(i)``: the kernel offsets and padded positions output ``i`` reads."""
    n = len(w_shape) - 2
    stride, dilation = per_dim(stride, n), per_dim(dilation, n)
    kernel = w_shape[2:]
    pairs = pad_pairs(padding, x_shape[2:], kernel, stride, dilation)
    out_shape = tuple(
        max(0, (i + lo + hi - (k - 1) * d - 1) // s + 1)
        for i, (lo, hi), k, s, d in zip(x_shape[2:], pairs, kernel, stride, dilation)
    )

    def taps(i):
        for k in itertools.product(*map(range, kernel)):
            yield k, tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))

    return pairs, out_shape, taps


# ---------------------------------------------------------------------------- conv_transpose (PyTorch's)


def conv_transpose(
    x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1, output_size=None
) -> np.ndarray:
    """``y_full[n, g O/G + o', *(i s + k d)] += x[n, g C/G + c', *i] w[g C/G + c', o', *k]``, then crop.

    Every input sample scatters the kernel, scaled, into ``y_full``
    (``(in - 1) s + d (k - 1) + 1`` samples per dim); the output is
    ``y_full[p : p + out]`` with ``out = (in - 1) s - 2 p + d (k - 1) + output_padding + 1``,
    zeros where it runs past ``y_full``'s end; plus ``b``. ``output_size`` picks
    ``output_padding = size - ((in - 1) s - 2 p + d (k - 1) + 1)``. An input with
    no samples has the footprint ``d (k - 1)`` of lax's dilated, padded empty input.
    """
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    full_shape, crop, scatters = _conv_transpose_plan(
        x.shape, w.shape, stride, padding, output_padding, dilation, output_size
    )
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


def conv_transpose_vjp(x, w, b, g, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1, output_size=None):
    """``(dx, dw, db)``: each product ``x[.., i] w[c, o', k]`` scattered to ``position`` sends ``g_full`` there back.

    ``g_full`` is ``g`` put back where the output was cropped from (zeros
    elsewhere), so the ``output_padding`` samples beyond ``y_full`` send nothing.
    """
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    full_shape, crop, scatters = _conv_transpose_plan(
        x.shape, w.shape, stride, padding, output_padding, dilation, output_size
    )
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


def _conv_transpose_plan(x_shape, w_shape, stride, padding, output_padding, dilation, output_size):
    """``y_full``'s shape, the output's slice of it per dim, and ``scatters()``: (input index, tap, position).

    ``y_full`` holds the scatter footprint ``(in - 1) s + d (k - 1) + 1`` plus
    ``output_padding`` zeros (and ``p`` more where the crop would start past
    its end), so the output ``y_full[p : p + out]`` fits in it.
    """
    n = len(w_shape) - 2
    stride, padding = per_dim(stride, n), per_dim(padding, n)
    output_padding, dilation = per_dim(output_padding, n), per_dim(dilation, n)
    kernel = w_shape[2:]
    footprint = [dilated_extent(i, s) + (k - 1) * d for i, k, s, d in zip(x_shape[2:], kernel, stride, dilation)]
    if output_size is not None:
        sizes = list(output_size)[-n:]
        output_padding = [size - (f - 2 * p) for size, f, p in zip(sizes, footprint, padding)]
    out = [max(0, f - 2 * p + e) for f, p, e in zip(footprint, padding, output_padding)]
    full_shape = tuple(max(f + e, p + o) for f, e, p, o in zip(footprint, output_padding, padding, out))
    crop = tuple(slice(p, p + o) for p, o in zip(padding, out))

    def scatters():
        for i in itertools.product(*map(range, x_shape[2:])):
            for k in itertools.product(*map(range, kernel)):
                yield i, k, tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, stride, dilation))

    return full_shape, crop, scatters


# ---------------------------------------------------------------------------- lax's conv_general_dilated


def conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
) -> np.ndarray:
    """XLA's convolution in lax's canonical order (``N C *in``, ``O I *k``, ``N' O *out``), by loops.

    ``x_pad[n, c, *q]`` is ``lhs[n, c, *(j / a)]`` where ``j = q - lo`` is a
    multiple of the input dilation ``a`` inside the dilated input, else 0
    (:func:`dilated_input`); with ``G`` feature and ``B`` batch groups, output
    channel ``o`` reads channels ``g(o) C/G + c'`` of batch ``b(o) N/B + n'``::

        y[n', o, *i] = sum_{c', *k} x_pad[b(o) N/B + n', g(o) C/G + c', *(i s + k d)] rhs[o, c', *k]
    """
    lhs, rhs = np.asarray(lhs, np.float64), np.asarray(rhs, np.float64)
    plan = _general_plan(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation)
    x_pad = dilated_input(lhs, plan)
    y = np.zeros((lhs.shape[0] // batch_group_count, rhs.shape[0], *plan.out_shape))
    for o, c_group, batch in _channel_pairs(lhs.shape, rhs.shape, feature_group_count, batch_group_count):
        for i in itertools.product(*map(range, plan.out_shape)):
            for k, position in plan.taps(i):
                y[(slice(None), o, *i)] += x_pad[(batch, c_group, *position)] @ rhs[(o, slice(None), *k)]
    return y


def conv_general_dilated_vjp(
    lhs,
    rhs,
    g,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    feature_group_count=1,
    batch_group_count=1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
):
    """``(dlhs, drhs)``: each product ``x_pad[..] rhs[o, c', k]`` sends ``g[n', o, i]`` to both factors; ``x_pad``'s
    gradient reaches ``lhs`` at the samples that are not inserted zeros or padding."""
    lhs, rhs, g = (np.asarray(a, np.float64) for a in (lhs, rhs, g))
    plan = _general_plan(lhs.shape, rhs.shape, window_strides, padding, lhs_dilation, rhs_dilation)
    x_pad = dilated_input(lhs, plan)
    dx_pad, drhs = np.zeros_like(x_pad), np.zeros_like(rhs)
    for o, c_group, batch in _channel_pairs(lhs.shape, rhs.shape, feature_group_count, batch_group_count):
        for i in itertools.product(*map(range, plan.out_shape)):
            g_i = g[(slice(None), o, *i)]  # (N/B,)
            for k, position in plan.taps(i):
                dx_pad[(batch, c_group, *position)] += np.outer(g_i, rhs[(o, slice(None), *k)])
                drhs[(o, slice(None), *k)] += g_i @ x_pad[(batch, c_group, *position)]
    dlhs = np.zeros_like(lhs)
    for h in itertools.product(*map(range, lhs.shape[2:])):
        q = plan.padded_position(h)
        if q is not None:
            dlhs[(slice(None), slice(None), *h)] = dx_pad[(slice(None), slice(None), *q)]
    return dlhs, drhs


class _GeneralPlan:
    """Per spatial dim of a lax convolution: the padding pairs, the dilations, the output and padded sizes."""

    def __init__(self, in_shape, kernel, strides, pairs, lhs_dilation, rhs_dilation):
        self.in_shape, self.kernel, self.strides = in_shape, kernel, strides
        self.pairs, self.lhs_dilation, self.rhs_dilation = pairs, lhs_dilation, rhs_dilation
        self.padded = tuple(dilated_extent(i, a) + lo + hi for i, a, (lo, hi) in zip(in_shape, lhs_dilation, pairs))
        self.out_shape = tuple(
            max(0, (p - dilated_extent(k, d)) // s + 1)
            for p, k, d, s in zip(self.padded, kernel, rhs_dilation, strides)
        )

    def padded_position(self, h):
        """Where input sample ``h`` sits in ``x_pad``: ``lo + h a`` per dim (``None`` if cropped away)."""
        q = tuple(lo + hh * a for hh, a, (lo, _) in zip(h, self.lhs_dilation, self.pairs))
        return q if all(0 <= qq < p for qq, p in zip(q, self.padded)) else None

    def taps(self, i):
        for k in itertools.product(*map(range, self.kernel)):
            yield k, tuple(ii * s + kk * d for ii, kk, s, d in zip(i, k, self.strides, self.rhs_dilation))


def _general_plan(lhs_shape, rhs_shape, window_strides, padding, lhs_dilation, rhs_dilation) -> _GeneralPlan:
    n = len(lhs_shape) - 2
    lhs_dilation = (1,) * n if lhs_dilation is None else tuple(lhs_dilation)
    rhs_dilation = (1,) * n if rhs_dilation is None else tuple(rhs_dilation)
    kernel, strides = rhs_shape[2:], tuple(window_strides)
    if isinstance(padding, str):
        pairs = pad_pairs(padding, lhs_shape[2:], kernel, strides, rhs_dilation)
    else:
        pairs = [tuple(p) for p in padding]
    return _GeneralPlan(lhs_shape[2:], kernel, strides, pairs, lhs_dilation, rhs_dilation)


def dilated_input(lhs: np.ndarray, plan: _GeneralPlan) -> np.ndarray:
    """``x_pad``: ``lhs`` with ``a - 1`` zeros between samples, then padded (a negative side crops), by loops."""
    x_pad = np.zeros((*lhs.shape[:2], *plan.padded))
    for h in itertools.product(*map(range, lhs.shape[2:])):
        q = plan.padded_position(h)
        if q is not None:
            x_pad[(slice(None), slice(None), *q)] = lhs[(slice(None), slice(None), *h)]
    return x_pad


def _channel_pairs(lhs_shape, rhs_shape, feature_groups, batch_groups):
    """For each output channel ``o``: ``(o, its input channels, its batch rows)`` by the two group rules."""
    out_channels, group_in = rhs_shape[0], rhs_shape[1]
    batch = lhs_shape[0] // batch_groups
    for o in range(out_channels):
        g = o // (out_channels // feature_groups)
        b = o // (out_channels // batch_groups)
        yield o, slice(g * group_in, (g + 1) * group_in), slice(b * batch, (b + 1) * batch)


# ---------------------------------------------------------------------------- lax's conv_transpose


def lax_conv_transpose(
    lhs, rhs, strides, padding, rhs_dilation=None, transpose_kernel=False, use_consistent_padding=False, **unused
) -> np.ndarray:
    """lax's definition: :func:`conv_general_dilated` of the input dilated by ``strides`` with lax's transpose padding
    (canonical order; ``rhs`` flipped and its ``O``/``I`` axes swapped when ``transpose_kernel``)."""
    rhs, pairs = _lax_transpose_plan(rhs, strides, padding, rhs_dilation, transpose_kernel, use_consistent_padding)
    return conv_general_dilated(lhs, rhs, (1,) * len(strides), pairs, strides, rhs_dilation)


def lax_conv_transpose_vjp(
    lhs, rhs, g, strides, padding, rhs_dilation=None, transpose_kernel=False, use_consistent_padding=False, **unused
):
    """``(dlhs, drhs)`` of :func:`lax_conv_transpose`; the flip and swap of ``transpose_kernel`` undone on ``drhs``."""
    rhs_used, pairs = _lax_transpose_plan(rhs, strides, padding, rhs_dilation, transpose_kernel, use_consistent_padding)
    dlhs, drhs = conv_general_dilated_vjp(lhs, rhs_used, g, (1,) * len(strides), pairs, strides, rhs_dilation)
    if transpose_kernel:
        drhs = np.swapaxes(drhs, 0, 1)[(slice(None), slice(None), *(slice(None, None, -1),) * (drhs.ndim - 2))]
    return dlhs, drhs


def _lax_transpose_plan(rhs, strides, padding, rhs_dilation, transpose_kernel, use_consistent_padding):
    rhs = np.asarray(rhs, np.float64)
    n = rhs.ndim - 2
    rhs_dilation = (1,) * n if rhs_dilation is None else tuple(rhs_dilation)
    if use_consistent_padding or padding in ("SAME", "VALID"):
        per_dim_padding = [padding] * n if isinstance(padding, str) else [tuple(p) for p in padding]
        padding = [
            lax_conv_transpose_padding(dilated_extent(k, r), s, p)
            for k, r, s, p in zip(rhs.shape[2:], rhs_dilation, strides, per_dim_padding)
        ]
    if transpose_kernel:
        rhs = np.swapaxes(rhs[(slice(None), slice(None), *(slice(None, None, -1),) * n)], 0, 1)
    return rhs, padding
