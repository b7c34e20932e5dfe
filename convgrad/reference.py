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


# ---------------------------------------------------------------------------- dense


def _rows(a: np.ndarray) -> np.ndarray:
    """``(..., n)`` as ``(rows, n)``: every leading axis is a batch axis."""
    return a.reshape(-1, a.shape[-1])


def dense(x, w, b=None) -> np.ndarray:
    """``y[r, o] = b[o] + sum_i x[r, i] w[i, o]`` for every row ``r`` of the leading axes, as explicit sums."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    rows = _rows(x)
    n_in, n_out = w.shape
    y = np.zeros((rows.shape[0], n_out))
    for r in range(rows.shape[0]):
        for o in range(n_out):
            y[r, o] = sum(rows[r, i] * w[i, o] for i in range(n_in))
            if b is not None:
                y[r, o] += b[o]
    return y.reshape(*x.shape[:-1], n_out)


def dense_vjp(x, w, b, g):
    """``(dx, dw, db)``: each product ``x[r, i] w[i, o]`` and each ``b[o]`` of row ``r`` sends ``g[r, o]`` back."""
    x, w, g = (np.asarray(a, np.float64) for a in (x, w, g))
    rows, g_rows = _rows(x), _rows(g)
    n_in, n_out = w.shape
    dx, dw, db = np.zeros_like(rows), np.zeros_like(w), np.zeros(n_out)
    for r in range(rows.shape[0]):
        for o in range(n_out):
            for i in range(n_in):
                dx[r, i] += g_rows[r, o] * w[i, o]
                dw[i, o] += rows[r, i] * g_rows[r, o]
            db[o] += g_rows[r, o]  # once per row: a sum over the batch, not a mean
    return dx.reshape(x.shape), dw, None if b is None else db


# ---------------------------------------------------------------------------- elementwise activations


def relu(x) -> np.ndarray:
    """``y = max(x, 0)``."""
    return np.maximum(np.asarray(x, np.float64), 0.0)


def relu_vjp(x, g, rule="gradient"):
    """``(dx,)`` by one of the three rules, element by element, from their definitions.

    gradient: ``g`` where ``x > 0`` else 0 (the derivative); deconvnet: ``g``
    where ``g > 0`` else 0, whatever ``x``; guided: ``g`` where both ``x > 0``
    and ``g > 0``, else 0.
    """
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        if rule == "gradient":
            passes = x[i] > 0
        elif rule == "deconvnet":
            passes = g[i] > 0
        elif rule == "guided":
            passes = x[i] > 0 and g[i] > 0
        else:
            raise ValueError(f"relu_vjp: unknown rule {rule!r}")
        dx[i] = g[i] if passes else 0.0
    return (dx,)


def sigmoid(x) -> np.ndarray:
    """``1 / (1 + exp(-x))``, as ``exp(x) / (1 + exp(x))`` for negative ``x`` so that nothing overflows."""
    x = np.asarray(x, np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_vjp(x, g):
    """``(dx,)`` with the derivative from its definition, ``exp(-|x|) / (1 + exp(-|x|))^2`` (an even function)."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    e = np.exp(-np.abs(x))
    return (g * e / (1 + e) ** 2,)


def tanh(x) -> np.ndarray:
    return np.tanh(np.asarray(x, np.float64))


def tanh_vjp(x, g):
    """``(dx,)`` with the derivative from its definition, ``1 / cosh(x)^2``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    return (g / np.cosh(x) ** 2,)


# ---------------------------------------------------------------------------- softmax, log_softmax


def _vectors(a: np.ndarray, axis: int) -> np.ndarray:
    """The 1-d slices of ``a`` along ``axis``, as the rows of a 2-d view (axis moved last)."""
    return np.moveaxis(a, axis, -1).reshape(-1, a.shape[axis])


def _from_vectors(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    moved = list(shape)
    moved.append(moved.pop(axis))
    return np.moveaxis(rows.reshape(moved), -1, axis)


def _softmax_vector(v: np.ndarray) -> np.ndarray:
    e = np.exp(v - v.max())
    return e / e.sum()


def softmax(x, axis=-1) -> np.ndarray:
    """``y[k] = exp(x[k] - m) / sum_j exp(x[j] - m)``, ``m = max_j x[j]``, for each slice along ``axis``."""
    x = np.asarray(x, np.float64)
    return _from_vectors(np.array([_softmax_vector(v) for v in _vectors(x, axis)]), x.shape, axis)


def softmax_vjp(x, g, axis=-1):
    """``(dx,)``: ``dx[j] = sum_k g[k] J[k, j]`` with the Jacobian ``J[k, j] = y[k] (delta[k, j] - y[j])``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = []
    for v, g_v in zip(_vectors(x, axis), _vectors(g, axis)):
        y = _softmax_vector(v)
        n = len(v)
        jacobian = [[y[k] * ((k == j) - y[j]) for j in range(n)] for k in range(n)]
        dx.append([sum(g_v[k] * jacobian[k][j] for k in range(n)) for j in range(n)])
    return (_from_vectors(np.array(dx), x.shape, axis),)


def log_softmax(x, axis=-1) -> np.ndarray:
    """``y[k] = x[k] - m - log sum_j exp(x[j] - m)`` for each slice along ``axis``."""
    x = np.asarray(x, np.float64)
    rows = [v - v.max() - np.log(np.exp(v - v.max()).sum()) for v in _vectors(x, axis)]
    return _from_vectors(np.array(rows), x.shape, axis)


def log_softmax_vjp(x, g, axis=-1):
    """``(dx,)``: ``dx[j] = sum_k g[k] J[k, j]`` with the Jacobian ``J[k, j] = delta[k, j] - softmax(x)[j]``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = []
    for v, g_v in zip(_vectors(x, axis), _vectors(g, axis)):
        p = _softmax_vector(v)
        n = len(v)
        dx.append([sum(g_v[k] * ((k == j) - p[j]) for k in range(n)) for j in range(n)])
    return (_from_vectors(np.array(dx), x.shape, axis),)


# ---------------------------------------------------------------------------- losses


def softmax_cross_entropy(logits, labels) -> np.ndarray:
    """``loss = -log softmax(logits)[label] = m + log sum_k exp(logits[k] - m) - logits[label]`` per example."""
    logits = np.asarray(logits, np.float64)
    rows, labels_flat = _rows(logits), np.asarray(labels).reshape(-1)
    losses = []
    for v, label in zip(rows, labels_flat):
        m = v.max()
        losses.append(m + np.log(np.exp(v - m).sum()) - v[label])
    return np.array(losses).reshape(logits.shape[:-1])


def softmax_cross_entropy_vjp(logits, labels, g):
    """``(dlogits, None)``: ``dlogits[k] = g (softmax(logits)[k] - [k == label])`` per example; labels get none."""
    logits, g = np.asarray(logits, np.float64), np.asarray(g, np.float64)
    rows, labels_flat, g_flat = _rows(logits), np.asarray(labels).reshape(-1), g.reshape(-1)
    grads = []
    for v, label, g_row in zip(rows, labels_flat, g_flat):
        p = _softmax_vector(v)
        grads.append([g_row * (p[k] - (k == label)) for k in range(len(v))])
    return np.array(grads).reshape(logits.shape), None


def mse(y, target) -> np.ndarray:
    """``(1/n) sum_i (y[i] - target[i])^2`` over all ``n`` elements."""
    y, target = np.asarray(y, np.float64), np.asarray(target, np.float64)
    return np.array(sum((y[i] - target[i]) ** 2 for i in np.ndindex(y.shape)) / y.size)


def mse_vjp(y, target, g):
    """``(dy, dtarget)``: square ``i`` sends ``g (2/n) (y[i] - target[i])`` to ``y[i]``, minus that to ``target[i]``."""
    y, target, g = (np.asarray(a, np.float64) for a in (y, target, g))
    dy, dtarget = np.zeros_like(y), np.zeros_like(target)
    for i in np.ndindex(y.shape):
        dy[i] = g * 2 * (y[i] - target[i]) / y.size
        dtarget[i] = -g * 2 * (y[i] - target[i]) / y.size
    return dy, dtarget
