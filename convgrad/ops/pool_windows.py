"""Views of pooling windows and their transposes, shared by the pooling ops.

A window of ``K = prod(k)`` taps is read either through a reshape (windows that tile the
input: each spatial axis split into ``(out, k)``, :func:`tile_windows`) or as ``K``
strided slices of the padded input (:func:`window_taps`). Their transposes put values
back: :func:`untile` merges the window axes again, :func:`spread_to_taps` pads each tap's
slice back to the input positions it read (``lax.pad`` with interior ``s - 1``).
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.ops.geometry import PoolGeometry, dilated_size, tap_grad_padding


def tile_windows(x: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``x`` with each spatial axis split into ``(out, k)``: window ``i``'s tap ``t`` is ``[.., i, t, ..]``.

    Only for tiled windows (``s = k``, no padding). The ``in - out k`` trailing
    samples that no window reaches are cut off first. A reshape: no data moves.
    """
    first = geometry.first_spatial_axis
    n = len(geometry.window)
    covered = tuple(o * k for o, k in zip(geometry.out_spatial, geometry.window))
    if covered != geometry.in_spatial:
        x = lax.slice(x, (0,) * x.ndim, (*x.shape[:first], *covered, *x.shape[first + n :]))
    split = itertools.chain.from_iterable(zip(geometry.out_spatial, geometry.window))
    return x.reshape(*x.shape[:first], *split, *x.shape[first + n :])


def window_axes(geometry: PoolGeometry) -> tuple[int, ...]:
    """The axes of :func:`tile_windows`' result that run over the taps of a window (the ``k`` axes)."""
    return tuple(geometry.first_spatial_axis + 2 * d + 1 for d in range(len(geometry.window)))


def tap_index(geometry: PoolGeometry) -> np.ndarray:
    """Static raster index of every tap, shaped to broadcast against :func:`tile_windows`' result."""
    index = np.arange(math.prod(geometry.window)).reshape(geometry.window)
    shape = [1] * (1 + (0 if geometry.channels_last else 1))
    for k in geometry.window:
        shape += [1, k]
    shape += [1] if geometry.channels_last else []
    return index.reshape(shape)


def window_taps(x_pad: jax.Array, geometry: PoolGeometry) -> list[jax.Array]:
    """``K`` strided slices ``x_pad[.., *(i s + t), ..]``, one per tap ``t`` in raster order, each shaped like ``y``."""
    out, stride = geometry.out_spatial, geometry.stride
    first = geometry.first_spatial_axis
    taps = []
    for t in geometry.tap_offsets:
        start, limit, step = [0] * x_pad.ndim, list(x_pad.shape), [1] * x_pad.ndim
        for d, (offset, o, s) in enumerate(zip(t, out, stride)):
            start[first + d], limit[first + d], step[first + d] = offset, offset + dilated_size(o, s), s
        taps.append(lax.slice(x_pad, start, limit, step))
    return taps


def tile_taps(windows: jax.Array, geometry: PoolGeometry) -> list[jax.Array]:
    """The ``K`` taps of tiled windows: :func:`tile_windows`' result at each window offset, each shaped like ``y``."""
    taps = []
    for t in geometry.tap_offsets:
        tap = windows
        for axis, offset in reversed(list(zip(window_axes(geometry), t))):  # from the last axis, so the others stay put
            tap = lax.index_in_dim(tap, offset, axis, keepdims=False)
        taps.append(tap)
    return taps


def real_taps(geometry: PoolGeometry) -> list[np.ndarray] | None:
    """Static per-tap masks, shaped to broadcast against ``y``: tap ``t`` of window ``i`` reads an input element.

    ``0 <= i s + t - lo < in`` along every spatial dim. ``None`` without
    padding, where every tap is real.
    """
    if all(p == (0, 0) for p in geometry.padding):
        return None
    grid = np.indices(geometry.out_spatial)
    masks = []
    for t in geometry.tap_offsets:
        real = np.ones(geometry.out_spatial, bool)
        for d, (i, s, (lo, _), n) in enumerate(zip(grid, geometry.stride, geometry.padding, geometry.in_spatial)):
            position = i * s + t[d] - lo
            real &= (position >= 0) & (position < n)
        masks.append(real[..., None] if geometry.channels_last else real)
    return masks


def untile(windows: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """Inverse of :func:`tile_windows`: merge each ``(out, k)`` pair, then zero-pad the samples no window reached."""
    first = geometry.first_spatial_axis
    n = len(geometry.window)
    covered = tuple(o * k for o, k in zip(geometry.out_spatial, geometry.window))
    x = windows.reshape(*windows.shape[:first], *covered, *windows.shape[first + 2 * n :])
    if covered == geometry.in_spatial:
        return x
    edges = [(0, 0, 0)] * x.ndim
    for d, (size, c) in enumerate(zip(geometry.in_spatial, covered)):
        edges[first + d] = (0, size - c, 0)
    return lax.pad(x, jnp.zeros((), x.dtype), edges)


def spread_to_taps(g: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``sum_t`` of ``g`` zero-inserted (``s - 1`` zeros) and shifted to input position ``i s + t - lo``.

    The transpose of :func:`window_taps` followed by padding: each strided
    slice transposes to a ``lax.pad`` with interior ``s - 1`` and edges
    :func:`~convgrad.ops.geometry.tap_grad_padding` (negative edges crop the
    padding away), ``in`` samples long.
    """
    zero = jnp.zeros((), g.dtype)
    total = 0
    for t in geometry.tap_offsets:
        edges = [
            (*tap_grad_padding(n, o, s, p, m), s - 1)
            for n, o, s, p, m in zip(geometry.in_spatial, t, geometry.stride, geometry.padding, geometry.out_spatial)
        ]
        total = total + lax.pad(g, zero, pad_config(geometry, edges))
    return total


def pad_config(geometry: PoolGeometry, spatial: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """A ``lax.pad`` configuration: ``spatial`` ``(lo, hi, interior)`` on the spatial dims, nothing elsewhere."""
    if geometry.channels_last:
        return [(0, 0, 0), *spatial, (0, 0, 0)]
    return [(0, 0, 0), (0, 0, 0), *spatial]


def row_major_strides(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``prod(shape[d+1:])`` per dim: the flat-index stride of each coordinate."""
    return tuple(math.prod(shape[d + 1 :]) for d in range(len(shape)))
