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
