"""Adaptive average and max pooling (PyTorch's window rule), each with a hand-derived VJP.

Read top to bottom: ``adaptive_avg_pool`` (public function, forward, backward,
``defvjp``) and its averaging matrices; ``adaptive_max_pool`` and its gathered
taps; the argument checks. Along a spatial dim of ``in`` samples pooled to
``out``, window ``i`` spans ``[floor(i in / out), ceil((i + 1) in / out))``
(:class:`~convgrad.ops.geometry.AdaptivePoolGeometry`): windows of varying size
that overlap where ``out`` does not divide ``in``.

Two formulations each, chosen by the geometry:

* ``out`` divides ``in`` along every dim: the windows are a regular pool's
  (window = stride = ``in / out``) that tile the input, and both ops run
  :mod:`convgrad.ops.pooling`'s reshape forward and backward;
* otherwise the average is separable, one small matrix per spatial dim
  (:func:`averaging_matrix`), and the maximum runs over the taps of the largest
  window, gathered, with the taps past a window's end masked out; its backward is
  the scatter-add of :func:`~convgrad.ops.pooling.max_unpool` at the switches.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.geometry import AdaptivePoolGeometry
from convgrad.ops.pool_windows import row_major_strides
from convgrad.ops.pooling import (
    avg_pool_forward,
    avg_pool_input_grad,
    max_and_first_tap,
    max_pool_forward,
    max_pool_input_grad_tiled,
    scatter_to_switches,
    spatial_dims,
    tap_switches,
)
from convgrad.ops.precision import accumulator_dtype

# ---------------------------------------------------------------------------- adaptive_avg_pool


def adaptive_avg_pool(x: ArrayLike, output_size: int | Sequence[int | None], *, channel_axis: int = 1) -> jax.Array:
    r"""Average pooling to a given output size, PyTorch's ``adaptive_avg_pool{1,2,3}d``; ``output_size=1`` is global.

    Along each spatial dim, of ``in`` samples pooled to ``out``, window ``i``
    spans ``h`` in ``[a_i, b_i)`` with ``a_i = floor(i in / out)`` and
    ``b_i = ceil((i + 1) in / out)``. In 2-D::

        y[n, c, i, j] = (1 / ((b_i - a_i) (b_j - a_j))) sum_{a_i <= h < b_i} sum_{a_j <= w < b_j} x[n, c, h, w]

    The divisor is a product of one count per dim, so the average is separable:
    ``y = A_H x A_W^T`` per ``(n, c)`` plane, with ``A[i, h] = [a_i <= h < b_i] / (b_i - a_i)``
    (``out x in``). ``y`` is linear in ``x``, and for a cotangent ``g`` shaped
    like ``y`` each ``g`` goes back over its window, divided by the window's
    size, adding where windows overlap::

        dx[n, c, h, w] = sum_{i : a_i <= h < b_i} sum_{j : a_j <= w < b_j} g[n, c, i, j] / ((b_i - a_i) (b_j - a_j))

    i.e. ``dx = A_H^T g A_W``. When ``out`` divides ``in`` the windows are a
    regular pool's (window = stride = ``in / out``) and both directions are a
    mean over, and a broadcast along, the window axes of a reshape.

    Args:
      x: input, ``(N, C, *in)`` (or ``(N, *in, C)`` with ``channel_axis=-1``)
        with 1 to 3 spatial dims, or the same without ``N`` when
        ``output_size`` is a tuple (its length is the number of spatial dims,
        PyTorch's rule; an int reads ``x`` as batched). Floating dtype; the
        batch and channel sizes may be 0.
      output_size: ``out``, a positive int for every spatial dim, or one entry
        per spatial dim, each a positive int or ``None`` (keep that dim's size).
      channel_axis: ``1`` (channel-first, the default) or ``-1`` (channels-last).

    Returns:
      ``y``, ``(N, C, *out)`` (or ``(N, *out, C)``, or without ``N`` like ``x``)
      in ``x``'s dtype; sums of 16-bit inputs accumulate in float32.

    Raises:
      TypeError: ``x`` is not a floating array, or ``output_size`` not made of ints and ``None``.
      ValueError: ``x``'s rank fits no reading of ``output_size``; an ``output_size``
        entry below 1; an empty spatial dim pooled to a nonzero size (every window
        would be empty); a result too large for the device's memory.

    Examples:
      Five samples to two windows, ``[0, 3)`` and ``[2, 5)``, which share sample 2:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import adaptive_avg_pool
      >>> x = jnp.array([[[1.0, 2.0, 3.0, 4.0, 8.0]]])
      >>> adaptive_avg_pool(x, 2)
      Array([[[2., 5.]]], dtype=float32)
      >>> jax.grad(lambda x: adaptive_avg_pool(x, 2).sum())(x)
      Array([[[0.33333334, 0.33333334, 0.6666667 , 0.33333334, 0.33333334]]],      dtype=float32)

    References:
      PyTorch, ``torch.nn.AdaptiveAvgPool2d``:
      https://pytorch.org/docs/stable/generated/torch.nn.AdaptiveAvgPool2d.html
    """
    x, geometry = adaptive_arguments("adaptive_avg_pool", x, output_size, channel_axis)
    return _adaptive_avg_pool(geometry, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _adaptive_avg_pool(geometry: AdaptivePoolGeometry, x: jax.Array) -> jax.Array:
    return adaptive_avg_pool_forward(x, geometry)


def _adaptive_avg_pool_fwd(geometry, x):
    """Save nothing: the map is linear in ``x`` and its transpose needs only the windows."""
    return adaptive_avg_pool_forward(x, geometry), None


def _adaptive_avg_pool_bwd(geometry, _, g):
    """``dx = A_H^T g A_W``: the transposed averaging matrices, one per spatial dim."""
    return (adaptive_avg_pool_input_grad(g, geometry),)


_adaptive_avg_pool.defvjp(_adaptive_avg_pool_fwd, _adaptive_avg_pool_bwd)


def adaptive_avg_pool_forward(x: jax.Array, geometry: AdaptivePoolGeometry) -> jax.Array:
    """``y = A_H x A_W^T``, one :func:`averaging_matrix` per spatial dim; the tiled mean when ``out`` divides ``in``."""
    if geometry.tiled:
        pool = geometry.as_pool()
        return _unbatched(avg_pool_forward(_batched(x, geometry), pool, math.prod(pool.window)), geometry)
    return _per_dim_product(x, geometry, transpose=False)


def adaptive_avg_pool_input_grad(g: jax.Array, geometry: AdaptivePoolGeometry) -> jax.Array:
    """``dx = A_H^T g A_W``, or the tiled broadcast when ``out`` divides ``in``."""
    if geometry.tiled:
        pool = geometry.as_pool()
        return _unbatched(avg_pool_input_grad(_batched(g, geometry), pool, math.prod(pool.window)), geometry)
    return _per_dim_product(g, geometry, transpose=True)


def averaging_matrix(in_size: int, out_size: int) -> np.ndarray:
    """``A[i, h] = [a_i <= h < b_i] / (b_i - a_i)``, ``(out, in)``: row ``i`` averages window ``i``."""
    a = np.zeros((out_size, in_size))
    geometry = AdaptivePoolGeometry((in_size,), (out_size,))
    for i, (start, end) in enumerate(zip(geometry.starts[0], geometry.ends[0])):
        a[i, start:end] = 1.0 / (end - start)
    return a


def _per_dim_product(a: jax.Array, geometry: AdaptivePoolGeometry, transpose: bool) -> jax.Array:
    """``a`` contracted along each spatial axis with that dim's ``A`` (``in -> out``) or ``A^T`` (``out -> in``)."""
    a_acc = _batched(a, geometry).astype(accumulator_dtype(a.dtype))
    first = geometry.first_spatial_axis
    for d, (n, o) in enumerate(zip(geometry.in_spatial, geometry.out_spatial)):
        matrix = jnp.asarray(averaging_matrix(n, o), a_acc.dtype)
        contracted = lax.dot_general(
            a_acc, matrix, (((first + d,), (0 if transpose else 1,)), ((), ())), precision=lax.Precision.HIGHEST
        )
        a_acc = jnp.moveaxis(contracted, -1, first + d)
    return _unbatched(a_acc.astype(a.dtype), geometry)


# ---------------------------------------------------------------------------- adaptive_max_pool


def adaptive_max_pool(
    x: ArrayLike, output_size: int | Sequence[int | None], *, channel_axis: int = 1
) -> tuple[jax.Array, jax.Array]:
    r"""Max pooling to a given output size, PyTorch's ``adaptive_max_pool{1,2,3}d(..., return_indices=True)``.

    With the windows of :func:`adaptive_avg_pool` (``[a_i, b_i)`` per spatial
    dim), in 2-D::

        y[n, c, i, j] = max_{a_i <= h < b_i, a_j <= w < b_j} x[n, c, h, w]

        switches[n, c, i, j] = h* W + w*

    where ``(h*, w*)`` is the FIRST element in raster order (``h`` major) that
    holds the maximum; a NaN counts as larger than every number and the first
    NaN wins (PyTorch's kernels keep the last NaN of a window holding several).
    Switches index the ``(H, W)`` plane of each ``(n, c)``, as PyTorch's do.

    For a cotangent ``g`` shaped like ``y``, each ``g[n, c, i, j]`` goes to the
    element its window picked, adding where overlapping windows picked the same::

        dx[n, c, h, w] = sum_{i, j : switches[n, c, i, j] = h W + w} g[n, c, i, j]

    i.e. ``dx = max_unpool(g, switches, (H, W))``. When ``out`` divides ``in``
    the windows tile the input and the backward selects ``g`` at each window's
    saved tap over the window axes of a reshape (as :func:`~convgrad.max_pool`
    does); otherwise it is that scatter-add. ``switches`` is an integer output
    and has no gradient.

    Args:
      x, output_size, channel_axis: as for :func:`adaptive_avg_pool`.

    Returns:
      ``(y, switches)``: ``y`` ``(N, C, *out)`` (or ``(N, *out, C)``, or without
      ``N`` like ``x``) in ``x``'s dtype and int32 ``switches`` of the same shape.

    Raises:
      TypeError: as for :func:`adaptive_avg_pool`.
      ValueError: as for :func:`adaptive_avg_pool`; planes too large for int32 switches.

    Examples:
      Five samples to two windows, ``[0, 3)`` and ``[2, 5)``: the 9 at index 2
      is the maximum of both, and its gradient is the sum of theirs:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import adaptive_max_pool
      >>> x = jnp.array([[[1.0, 2.0, 9.0, 4.0, 8.0]]])
      >>> adaptive_max_pool(x, 2)
      (Array([[[9., 9.]]], dtype=float32), Array([[[2, 2]]], dtype=int32))
      >>> jax.grad(lambda x: adaptive_max_pool(x, 2)[0].sum())(x)
      Array([[[0., 0., 2., 0., 0.]]], dtype=float32)

    References:
      PyTorch, ``torch.nn.AdaptiveMaxPool2d`` (``return_indices=True``):
      https://pytorch.org/docs/stable/generated/torch.nn.AdaptiveMaxPool2d.html
    """
    x, geometry = adaptive_arguments("adaptive_max_pool", x, output_size, channel_axis)
    return _adaptive_max_pool(geometry, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _adaptive_max_pool(geometry: AdaptivePoolGeometry, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    return _adaptive_max_pool_fwd(geometry, x)[0]


def _adaptive_max_pool_fwd(geometry, x):
    """Save where each maximum came from: the window-local tap (``uint8``) when tiled, else the flat switches."""
    x = _batched(x, geometry)
    if geometry.tiled:
        y, tap = max_pool_forward(x, geometry.as_pool())
        switches, saved = tap_switches(tap, geometry.as_pool()), tap
    else:
        y, switches = adaptive_max_pool_forward(x, geometry)
        saved = switches
    return (_unbatched(y, geometry), _unbatched(switches, geometry)), saved


def _adaptive_max_pool_bwd(geometry, saved, cotangents):
    """``dx = max_unpool(g, switches, in)``: a select over the window axes when tiled, else the scatter-add."""
    g = _batched(cotangents[0], geometry)  # the switches' cotangent is float0: no gradient
    if g.size == 0:  # no windows, or no elements: nothing reaches the input
        dx = jnp.zeros(_batched_shape(g.shape, geometry, geometry.in_spatial), g.dtype)
    elif geometry.tiled:
        dx = max_pool_input_grad_tiled(g, saved, geometry.as_pool())
    else:
        first = geometry.first_spatial_axis
        g_first, switches_first = (jnp.moveaxis(a, -1, 1) if first == 1 else a for a in (g, saved))
        dx = scatter_to_switches(g_first, switches_first, geometry.in_spatial)
        dx = jnp.moveaxis(dx, 1, -1) if first == 1 else dx
    return (_unbatched(dx, geometry),)


_adaptive_max_pool.defvjp(_adaptive_max_pool_fwd, _adaptive_max_pool_bwd)


def adaptive_max_pool_forward(x: jax.Array, geometry: AdaptivePoolGeometry) -> tuple[jax.Array, jax.Array]:
    """``(y, switches)`` from the taps of the largest window, gathered, and a running maximum over them.

    Tap ``t`` of window ``i`` reads ``a_i + t`` per spatial dim (clamped to the input), and is
    masked out (never picked) where ``a_i + t >= b_i``; the first maximum in raster order
    over the real taps is the first in the window's raster order. ``switches`` is the flat
    index ``sum_d (a_{i_d} + t_d) row_d`` of the picked tap.
    """
    shape = _batched_shape(x.shape, geometry, geometry.out_spatial)
    if x.size == 0 or math.prod(shape) == 0:
        return jnp.zeros(shape, x.dtype), jnp.zeros(shape, jnp.int32)
    first, n = geometry.first_spatial_axis, len(geometry.in_spatial)
    starts = [np.asarray(a) for a in geometry.starts]
    sizes = [np.asarray(b) - a for a, b in zip(starts, geometry.ends)]
    largest = [int(s.max()) for s in sizes]
    x = lax.optimization_barrier(x)
    taps, real = [], []
    for t in itertools.product(*map(range, largest)):
        tap, mask = x, np.ones(geometry.out_spatial, bool)
        for d in range(n):
            tap = jnp.take(tap, np.minimum(starts[d] + t[d], geometry.in_spatial[d] - 1), axis=first + d)
            mask &= (t[d] < sizes[d]).reshape([-1 if e == d else 1 for e in range(n)])
        taps.append(tap)
        real.append(mask[..., None] if geometry.channels_last else mask)
    y, tap = max_and_first_tap(taps, real)
    row, tap_row = row_major_strides(geometry.in_spatial), row_major_strides(tuple(largest))
    base = sum(a[i] * r for a, i, r in zip(starts, np.indices(geometry.out_spatial), row))
    base = base[..., None] if geometry.channels_last else base
    offset = sum((tap // tr) % k * r for tr, k, r in zip(tap_row, largest, row))
    return y, (offset + jnp.asarray(base, jnp.int32)).astype(jnp.int32)


# ---------------------------------------------------------------------------- layouts and arguments


def _batched(a: jax.Array, geometry: AdaptivePoolGeometry) -> jax.Array:
    """``a`` with a batch axis of 1 in front when the input came without one."""
    return a if geometry.batched else a[None]


def _unbatched(a: jax.Array, geometry: AdaptivePoolGeometry) -> jax.Array:
    """Inverse of :func:`_batched`."""
    return a if geometry.batched else a[0]


def _batched_shape(shape: tuple[int, ...], geometry: AdaptivePoolGeometry, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """A batched array's ``shape`` with its spatial dims replaced by ``spatial``."""
    first = geometry.first_spatial_axis
    return (*shape[:first], *spatial, *shape[first + len(spatial) :])


def adaptive_arguments(op: str, x, output_size, channel_axis) -> tuple[jax.Array, AdaptivePoolGeometry]:
    """The checked input and the :class:`AdaptivePoolGeometry` of an adaptive pool."""
    x = arguments.as_float_array(op, "x", x)
    if output_size is None or isinstance(output_size, str):
        raise TypeError(
            f"{op}: output_size must be an int or a sequence of ints and None, got output_size={output_size!r}"
        )
    n, batched = spatial_dims(op, "output_size", output_size, "x", x)
    channels_last = arguments.channels_last_axis(op, channel_axis, x.ndim + (0 if batched else 1))
    spatial_shape = x.shape[:-1] if channels_last else x.shape[1:]
    in_spatial = tuple(spatial_shape[-n:])
    entries = output_size if isinstance(output_size, Sequence) else (output_size,) * n
    out = []
    for d, (entry, size) in enumerate(zip(entries, in_spatial)):
        if entry is None:
            out.append(size)
            continue
        try:
            out.append(arguments.as_int(op, "output_size", entry, 1))
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{op}: output_size must be a positive int, or one positive int or None per spatial dim, "
                f"got output_size={output_size!r}"
            ) from None
        if size == 0:
            raise ValueError(
                f"{op}: x is empty along spatial dim {d} (x.shape={tuple(x.shape)}), so the output_size={out[-1]} "
                f"windows there would be empty (None keeps the size 0)"
            )
    geometry = AdaptivePoolGeometry(in_spatial, tuple(out), channels_last, batched)
    if math.prod(in_spatial) - 1 > jnp.iinfo(jnp.int32).max:
        raise ValueError(f"{op}: x's spatial planes (x.shape={tuple(x.shape)}) are too large for int32 switches")
    leading = x.shape[: x.ndim - n - (1 if channels_last else 0)]
    out_shape = (*leading, *out, *x.shape[-1:]) if channels_last else (*leading, *out)
    arguments.fits_in_memory(op, "output", out_shape, x.dtype, f"output_size={output_size!r}")
    return x, geometry
