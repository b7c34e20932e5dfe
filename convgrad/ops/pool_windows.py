"""Views of pooling windows and their transposes, shared by the pooling ops.

A window of ``K = prod(k)`` taps is read either through a reshape (windows that tile the
input: each spatial axis split into ``(out, k)``, :func:`tile_windows`) or as ``K``
strided slices of the input (:func:`window_taps`; tap ``t`` of window ``i`` reads position
``i s + t d - lo``, and a position in the padding reads the fill value). Their transposes
put values back: :func:`untile` merges the window axes again, :func:`spread_to_taps` pads
each tap's slice back to the input positions it read (``lax.pad`` with interior ``s - 1``).
Where the padding is small the taps are slices of one padded copy of the input; where a
large padding or dilation would make that copy large, each tap's out-of-range windows are
padded onto its slice instead, and the copy is never built.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.ops.geometry import PoolGeometry, tap_grad_padding, tap_window_range


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


def window_taps(x: jax.Array, geometry: PoolGeometry, fill: float) -> list[jax.Array]:
    """``K`` arrays shaped like ``y``, one per tap ``t`` in raster order: ``x[.., *(i s + t d - lo), ..]``, or ``fill``.

    Two ways to the same values. When the windows' span, ``(out - 1) s + (k - 1) d + 1``
    samples from ``-lo`` on, is at most twice the input (the usual small padding), ``x``
    is padded with ``fill`` to that span once and each tap is a strided slice of the
    copy: XLA fuses the copy into the slices. Otherwise (a large padding or dilation)
    no padded copy is built: per spatial dim the windows ``[i0, i1)`` whose tap reads
    the input (:func:`~convgrad.ops.geometry.tap_window_range`) are one strided slice
    of ``x`` (step ``s``), and the others, whose tap reads padding, are ``fill``, padded
    onto the slice's ends.
    """
    first = geometry.first_spatial_axis
    out = geometry.out_spatial
    spans = [
        (o - 1) * s + (k - 1) * d + 1 for o, s, k, d in zip(out, geometry.stride, geometry.window, geometry.dilation)
    ]
    if math.prod(spans) <= 2 * math.prod(geometry.in_spatial):
        edges = [(lo, span - lo - n, 0) for (lo, _), span, n in zip(geometry.padding, spans, geometry.in_spatial)]
        x_pad = lax.pad(x, jnp.array(fill, x.dtype), pad_config(geometry, edges))  # negative high edges crop
        taps = []
        for t in geometry.tap_offsets:
            start, limit, step = [0] * x.ndim, list(x_pad.shape), [1] * x.ndim
            for d, (t_d, dilation, o, s) in enumerate(zip(t, geometry.dilation, out, geometry.stride)):
                start[first + d], limit[first + d], step[first + d] = (
                    t_d * dilation,
                    t_d * dilation + (o - 1) * s + 1,
                    s,
                )
            taps.append(lax.slice(x_pad, start, limit, step))
        return taps
    taps = []
    for t in geometry.tap_offsets:
        ranges = tap_ranges(geometry, t)
        if any(i0 >= i1 for i0, i1 in ranges):
            taps.append(jnp.full(_spatial_shape(x.shape, geometry, out), fill, x.dtype))
            continue
        start, limit, step = [0] * x.ndim, list(x.shape), [1] * x.ndim
        edges = [(0, 0, 0)] * x.ndim
        for d, ((i0, i1), o, offset, s) in enumerate(zip(ranges, out, tap_offsets_of(geometry, t), geometry.stride)):
            start[first + d] = i0 * s + offset
            limit[first + d] = (i1 - 1) * s + offset + 1
            step[first + d] = s
            edges[first + d] = (i0, o - i1, 0)
        tap = lax.slice(x, start, limit, step)
        if any(e != (0, 0, 0) for e in edges):
            tap = lax.pad(tap, jnp.array(fill, x.dtype), edges)
        taps.append(tap)
    return taps


def tap_offsets_of(geometry: PoolGeometry, t: tuple[int, ...]) -> tuple[int, ...]:
    """``t d - lo`` per spatial dim: where tap ``t`` of window 0 lies in the unpadded input."""
    return tuple(t_d * d - lo for t_d, d, (lo, _) in zip(t, geometry.dilation, geometry.padding))


def tap_ranges(geometry: PoolGeometry, t: tuple[int, ...]) -> list[tuple[int, int]]:
    """Per spatial dim, the windows ``[i0, i1)`` whose tap ``t`` reads an input element."""
    return [
        tap_window_range(n, o, s, offset)
        for n, o, s, offset in zip(
            geometry.in_spatial, geometry.out_spatial, geometry.stride, tap_offsets_of(geometry, t)
        )
    ]


def _spatial_shape(shape: tuple[int, ...], geometry: PoolGeometry, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """``shape`` (a batched array's) with its spatial dims replaced by ``spatial``."""
    first = geometry.first_spatial_axis
    return (*shape[:first], *spatial, *shape[first + len(spatial) :])


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

    ``0 <= i s + t d - lo < in`` along every spatial dim. ``None`` when every tap of
    every window does (no padding, no partial window).
    """
    masks = []
    for t in geometry.tap_offsets:
        real = np.ones(geometry.out_spatial, bool)
        for d, (i0, i1) in enumerate(tap_ranges(geometry, t)):
            inside = np.zeros(geometry.out_spatial[d], bool)
            inside[i0:i1] = True
            real &= inside.reshape([-1 if e == d else 1 for e in range(len(geometry.window))])
        masks.append(real[..., None] if geometry.channels_last else real)
    if all(m.all() for m in masks):
        return None
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
    """``sum_t`` of ``g`` zero-inserted (``s - 1`` zeros) and shifted to input position ``i s + t d - lo``.

    The transpose of :func:`window_taps` (with fill 0): each strided slice
    transposes to a ``lax.pad`` with interior ``s - 1`` and edges
    :func:`~convgrad.ops.geometry.tap_grad_padding` (negative edges crop the
    windows whose tap reads padding), ``in`` samples long. A tap that reads only
    padding contributes nothing.
    """
    zero = jnp.zeros((), g.dtype)
    total = jnp.zeros(_spatial_shape(g.shape, geometry, geometry.in_spatial), g.dtype)
    for t in geometry.tap_offsets:
        if any(i0 >= i1 for i0, i1 in tap_ranges(geometry, t)):
            continue
        edges = [
            (*tap_grad_padding(n, t_d * d, s, p, o), s - 1)
            for n, t_d, d, s, p, o in zip(
                geometry.in_spatial, t, geometry.dilation, geometry.stride, geometry.padding, geometry.out_spatial
            )
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
