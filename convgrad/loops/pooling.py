"""NumPy loop references of the pooling ops, written from PyTorch's definitions, window by window.

Each forward loops over the output windows and over each window's taps; each ``*_vjp``
walks the same loops and sends every cotangent back along the tap that produced it.
The loops are written for batched, channel-first arrays; :func:`pool_layout` runs them
on channels-last and unbatched ones too (the spatial dims from a tuple ``window`` /
``output_size``, PyTorch's rule).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from convgrad.loops.convolutions import pad_pairs, per_dim


def pool_layout(loop: Callable[..., Any]) -> Callable[..., Any]:
    """``loop`` (batched, channel-first) for any layout: ``channel_axis=-1`` and arrays without a batch axis.

    The number of spatial dims is the length of a tuple ``window`` / ``output_size``
    keyword, else the first array's rank minus 2; an array of that many dims plus one
    has no batch axis. Every array argument is moved to ``(N, C, *spatial)``, and every
    array result moved back.
    """

    def run(*arrays, channel_axis=1, **options):
        spatial_from = options.get("window", options.get("output_size"))
        first = np.asarray(arrays[0])
        n = len(spatial_from) if isinstance(spatial_from, Sequence) else first.ndim - 2
        batched = first.ndim == n + 2

        def to_loop(a):
            if a is None:
                return None
            a = np.asarray(a)
            a = a if batched else a[None]
            return a if channel_axis == 1 else np.moveaxis(a, -1, 1)

        def from_loop(a):
            if a is None:
                return None
            a = a if channel_axis == 1 else np.moveaxis(a, 1, -1)
            return a if batched else a[0]

        out = loop(*(to_loop(a) for a in arrays), **options)
        return tuple(from_loop(o) for o in out) if isinstance(out, tuple) else from_loop(out)

    return run


def output_size(in_size: int, k: int, s: int, lo: int, hi: int, d: int, ceil_mode: bool) -> int:
    """PyTorch's ``pooling_output_shape_pad_lr``: ``(in + lo + hi - d (k - 1) - 1 [+ s - 1]) // s + 1``.

    In ceil mode (the ``+ s - 1``) less a last window that starts at or past ``in + lo``;
    0 for an empty input (convgrad's rule).
    """
    if in_size == 0:
        return 0
    out = (in_size + lo + hi - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= in_size + lo:
        out -= 1
    return out


def _pool_plan(x_shape, window, stride, padding, dilation=1, ceil_mode=False):
    """Per-dim window, stride, dilation, (lo, hi) pairs and output shape."""
    n = len(x_shape) - 2
    window, dilation = per_dim(window, n), per_dim(dilation, n)
    stride = window if stride is None else per_dim(stride, n)
    pairs = pad_pairs(padding, x_shape[2:], window, stride, dilation)
    out_shape = tuple(
        output_size(i, k, s, lo, hi, d, ceil_mode)
        for i, k, s, (lo, hi), d in zip(x_shape[2:], window, stride, pairs, dilation)
    )
    return window, stride, dilation, pairs, out_shape


def max_pool(x, window, stride=None, padding=0, dilation=1, ceil_mode=False) -> tuple[np.ndarray, np.ndarray]:
    """``(y, switches)``: per window, the maximum of its input elements and the flat index of the first one.

    Window ``i`` has taps ``i s + t d - lo`` per spatial dim; a tap in the padding (or past
    it, in ceil mode) is ``-inf`` and skipped. Taps are visited in raster order and a tap
    replaces the current pick only when it is strictly larger, or a NaN while the pick is
    not: ties keep the first maximum and the first NaN of a window wins.
    """
    x = np.asarray(x, np.float64)
    window, stride, dilation, pairs, out_shape = _pool_plan(x.shape, window, stride, padding, dilation, ceil_mode)
    y = np.zeros((*x.shape[:2], *out_shape))
    switches = np.zeros((*x.shape[:2], *out_shape), np.int32)
    for n, c in itertools.product(*map(range, x.shape[:2])):
        for i in itertools.product(*map(range, out_shape)):
            best, pick = -np.inf, -1
            for t in itertools.product(*map(range, window)):
                position = tuple(ii * s + tt * d - lo for ii, tt, s, d, (lo, _) in zip(i, t, stride, dilation, pairs))
                if not all(0 <= p < size for p, size in zip(position, x.shape[2:])):
                    continue
                value = x[(n, c, *position)]
                if pick < 0 or value > best or (np.isnan(value) and not np.isnan(best)):
                    best, pick = value, int(np.ravel_multi_index(position, x.shape[2:]))
            y[(n, c, *i)], switches[(n, c, *i)] = best, pick
    return y, switches


def max_pool_vjp(x, g, window, stride=None, padding=0, dilation=1, ceil_mode=False) -> tuple[np.ndarray]:
    """``(dx,)``: each ``g[n, c, i]`` goes to the input element window ``i`` picked; picks shared by windows add."""
    _, switches = max_pool(x, window, stride, padding, dilation, ceil_mode)
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
    plane = int(np.prod(g.shape[2:]))
    dy = np.zeros(switches.shape)
    for index in itertools.product(*map(range, switches.shape)):
        p = switches[index]
        if 0 <= p < plane:
            dy[index] = g[(index[0], index[1], *np.unravel_index(p, g.shape[2:]))]
    return dy, None


def _avg_windows(x_shape, window, stride, padding, ceil_mode, count_include_pad, divisor_override):
    """Per output window ``i``: its input positions and its divisor, PyTorch's ``avg_pool`` kernel's way.

    Per spatial dim: ``start = i s - lo``, ``end = min(start + k, in + hi)`` (the padded
    window); ``pool_size`` is the product of ``end - start``; the positions are clipped to
    ``[0, in)``; the divisor is ``divisor_override``, else ``pool_size``
    (``count_include_pad``), else the number of clipped positions.
    """
    window, stride, _, pairs, out_shape = _pool_plan(x_shape, window, stride, padding, 1, ceil_mode)
    for i in itertools.product(*map(range, out_shape)):
        ranges, pool_size = [], 1
        for ii, k, s, (lo, hi), size in zip(i, window, stride, pairs, x_shape[2:]):
            start = ii * s - lo
            end = min(start + k, size + hi)
            pool_size *= end - start
            ranges.append(range(max(start, 0), min(end, size)))
        positions = list(itertools.product(*ranges))
        if divisor_override is not None:
            divisor = divisor_override
        else:
            divisor = pool_size if count_include_pad else len(positions)
        yield i, positions, divisor


def avg_pool(
    x, window, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
) -> np.ndarray:
    """``y[n, c, i] = (1 / D_i) sum_{positions of window i} x[n, c, position]`` (zero padding adds nothing)."""
    x = np.asarray(x, np.float64)
    *_, out_shape = _pool_plan(x.shape, window, stride, padding, 1, ceil_mode)
    y = np.zeros((*x.shape[:2], *out_shape))
    for i, positions, divisor in _avg_windows(
        x.shape, window, stride, padding, ceil_mode, count_include_pad, divisor_override
    ):
        for position in positions:
            y[(slice(None), slice(None), *i)] += x[(slice(None), slice(None), *position)] / divisor
    return y


def avg_pool_vjp(
    x, g, window, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None
) -> tuple[np.ndarray]:
    """``(dx,)``: each ``g[n, c, i] / D_i`` goes to every input element of window ``i``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = np.zeros_like(x)
    for i, positions, divisor in _avg_windows(
        x.shape, window, stride, padding, ceil_mode, count_include_pad, divisor_override
    ):
        for position in positions:
            dx[(slice(None), slice(None), *position)] += g[(slice(None), slice(None), *i)] / divisor
    return (dx,)


def _adaptive_windows(x_shape, output_size):
    """Per output window ``i``: its input positions, ``[floor(i in / out), ceil((i + 1) in / out))`` per spatial dim."""
    n = len(x_shape) - 2
    entries = output_size if isinstance(output_size, Sequence) else (output_size,) * n
    out_shape = tuple(size if entry is None else entry for size, entry in zip(x_shape[2:], entries))
    for i in itertools.product(*map(range, out_shape)):
        ranges = [range(ii * size // o, -(-(ii + 1) * size // o)) for ii, size, o in zip(i, x_shape[2:], out_shape)]
        yield i, list(itertools.product(*ranges))


def _adaptive_out_shape(x_shape, output_size):
    n = len(x_shape) - 2
    entries = output_size if isinstance(output_size, Sequence) else (output_size,) * n
    return (*x_shape[:2], *(size if entry is None else entry for size, entry in zip(x_shape[2:], entries)))


def adaptive_avg_pool(x, output_size) -> np.ndarray:
    """``y[n, c, i] = mean of x[n, c, position]`` over the positions of adaptive window ``i``."""
    x = np.asarray(x, np.float64)
    y = np.zeros(_adaptive_out_shape(x.shape, output_size))
    for i, positions in _adaptive_windows(x.shape, output_size):
        for position in positions:
            y[(slice(None), slice(None), *i)] += x[(slice(None), slice(None), *position)] / len(positions)
    return y


def adaptive_avg_pool_vjp(x, g, output_size) -> tuple[np.ndarray]:
    """``(dx,)``: each ``g[n, c, i]`` divided by its window's size goes to every element of window ``i``."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = np.zeros_like(x)
    for i, positions in _adaptive_windows(x.shape, output_size):
        for position in positions:
            dx[(slice(None), slice(None), *position)] += g[(slice(None), slice(None), *i)] / len(positions)
    return (dx,)


def adaptive_max_pool(x, output_size) -> tuple[np.ndarray, np.ndarray]:
    """``(y, switches)``: per adaptive window the first maximum in raster order (a NaN wins, the first NaN)."""
    x = np.asarray(x, np.float64)
    shape = _adaptive_out_shape(x.shape, output_size)
    y, switches = np.zeros(shape), np.zeros(shape, np.int32)
    for n, c in itertools.product(*map(range, x.shape[:2])):
        for i, positions in _adaptive_windows(x.shape, output_size):
            best, pick = -np.inf, -1
            for position in positions:
                value = x[(n, c, *position)]
                if pick < 0 or value > best or (np.isnan(value) and not np.isnan(best)):
                    best, pick = value, int(np.ravel_multi_index(position, x.shape[2:]))
            y[(n, c, *i)], switches[(n, c, *i)] = best, pick
    return y, switches


def adaptive_max_pool_vjp(x, g, output_size) -> tuple[np.ndarray]:
    """``(dx,)``: each ``g[n, c, i]`` goes to the element window ``i`` picked; shared picks add."""
    _, switches = adaptive_max_pool(x, output_size)
    return (max_unpool(g, switches, np.shape(x)[2:]),)
