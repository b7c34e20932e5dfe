"""NumPy loop references of ``max_pool``, ``max_unpool`` and ``avg_pool``, written from their definitions."""

from __future__ import annotations

import itertools

import numpy as np

from convgrad.loops.convolutions import pad_pairs, per_dim


def _pool_plan(x_shape, window, stride, padding):
    """Per-dim window, stride, (lo, hi) pairs and output shape; ``taps(i)``: each tap's unpadded input position."""
    n = len(x_shape) - 2
    window = per_dim(window, n)
    stride = window if stride is None else per_dim(stride, n)
    pairs = pad_pairs(padding, x_shape[2:], window, stride, (1,) * n)
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
    divisor = np.prod(per_dim(window, x.ndim - 2))
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
    divisor = np.prod(per_dim(window, x.ndim - 2))
    dx = np.zeros_like(x)
    for i in itertools.product(*map(range, out_shape)):
        for position, inside in taps(i):
            if inside:
                dx[(slice(None), slice(None), *position)] += g[(slice(None), slice(None), *i)] / divisor
    return (dx,)
