"""NumPy loop reference of ``upsample``: PyTorch's source-index rules one output index at a time, then explicit sums.

Channel-first only (:func:`convgrad.loops.layouts.channel_axis_in_layout` adapts
channels-last). For each output position, each spatial axis contributes one
(nearest) or two (linear) ``(source, weight)`` taps, computed by the scalar
formulas of ATen's ``UpSample.h``; the output sums ``x`` over every combination of
taps, weighted by the product of their weights, and the VJP sends each cotangent
back along the same taps.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def taps(mode, o, in_size, out_size, scale, align_corners) -> list[tuple[int, float]]:
    """The ``(source index, weight)`` pairs of output ``o`` along one axis (``floor`` of the float32-rounded value)."""
    if mode in ("nearest", "nearest-exact") or not align_corners:
        ratio = 1.0 / scale if scale is not None else in_size / out_size
    else:
        ratio = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
    if mode == "nearest":
        if out_size == in_size:  # nearest_idx's shortcuts
            return [(o, 1.0)]
        if out_size == 2 * in_size:
            return [(o // 2, 1.0)]
        return [(min(math.floor(np.float32(ratio * o)), in_size - 1), 1.0)]
    if mode == "nearest-exact":
        real = max(ratio * (o + 0.5) - 0.5, 0.0)
        return [(min(math.floor(np.float32(real + 0.5)), in_size - 1), 1.0)]
    if out_size == in_size:  # a linear axis of unchanged size is copied
        return [(o, 1.0)]
    real = ratio * o if align_corners else max(ratio * (o + 0.5) - 0.5, 0.0)
    low = min(math.floor(np.float32(real)), in_size - 1)
    high = low + 1 if low < in_size - 1 else low
    lam = min(max(real - low, 0.0), 1.0)
    return [(low, 1.0 - lam), (high, lam)]


def plan(x_shape, size, scale_factor):
    """``(out_spatial, scales)``: the output's spatial size and the per-axis scale factor (``None`` when sized)."""
    n = len(x_shape) - 2
    if size is not None:
        return ((size,) * n if isinstance(size, int) else tuple(size)), (None,) * n
    scales = (float(scale_factor),) * n if np.ndim(scale_factor) == 0 else tuple(float(s) for s in scale_factor)
    return tuple(math.floor(float(i) * s) for i, s in zip(x_shape[2:], scales)), scales


def per_output_taps(x_shape, size, scale_factor, mode, align_corners):
    """``out_spatial`` and, per output position, its list of ``(input position, weight)`` over all tap combinations."""
    out_spatial, scales = plan(x_shape, size, scale_factor)
    in_spatial = x_shape[2:]
    table = {}
    for position in itertools.product(*map(range, out_spatial)):
        axes = [
            taps(mode, o, i, out, s, bool(align_corners))
            for o, i, out, s in zip(position, in_spatial, out_spatial, scales)
        ]
        table[position] = [
            (tuple(index for index, _ in combination), math.prod(weight for _, weight in combination))
            for combination in itertools.product(*axes)
        ]
    return out_spatial, table


def upsample(x, *, size=None, scale_factor=None, mode="nearest", align_corners=None) -> np.ndarray:
    """``y[n, c, o] = sum over o's taps of weight * x[n, c, source]`` (``o`` a spatial multi-index)."""
    x = np.asarray(x, np.float64)
    out_spatial, table = per_output_taps(x.shape, size, scale_factor, mode, align_corners)
    y = np.zeros((*x.shape[:2], *out_spatial))
    for n, c in itertools.product(range(x.shape[0]), range(x.shape[1])):
        for position, contributions in table.items():
            y[(n, c, *position)] = sum(weight * x[(n, c, *source)] for source, weight in contributions)
    return y


def upsample_vjp(x, g, *, size=None, scale_factor=None, mode="nearest", align_corners=None) -> tuple[np.ndarray]:
    """``(dx,)``: each ``g[n, c, o]`` goes back to every source of ``o``, times that source's weight; sources add."""
    x_shape = np.shape(x)
    g = np.asarray(g, np.float64)
    _, table = per_output_taps(x_shape, size, scale_factor, mode, align_corners)
    dx = np.zeros(x_shape)
    for n, c in itertools.product(range(x_shape[0]), range(x_shape[1])):
        for position, contributions in table.items():
            for source, weight in contributions:
                dx[(n, c, *source)] += weight * g[(n, c, *position)]
    return (dx,)
