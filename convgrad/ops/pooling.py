"""Max pooling (with switches), max unpooling and average pooling, each with a hand-derived VJP.

Read top to bottom: ``max_pool`` (public function, forward, backward, ``defvjp``)
and the pieces its forward and backward use; ``max_unpool``, whose forward is
the max-pool backward and whose backward is a gather; ``avg_pool``; and the
argument checks. Shape arithmetic lives in :mod:`convgrad.ops.geometry`
(a pooling window is a convolution kernel of dilation 1, so the output size is
``conv_output_size(in, k, s, (lo, hi), 1)``).

Two formulations, chosen by the geometry, both hand-derived and both checked
by the registry:

* windows that tile the input (stride = window, no padding, the usual 2x2/2):
  each spatial axis is reshaped into ``(out, k)`` (:func:`~convgrad.ops.pool_windows.tile_windows`), so
  the window is a set of axes; max, first-max tap, average and both backwards
  are reductions and selects over those axes, with no copies, in either layout.
  The max-pool backward saves only the window-local tap of each maximum
  (``uint8``, the compact switch), not the input and not the flat switches;
* any other geometry (overlap, gaps, padding): the ``K = prod(window)`` taps
  of every window are ``K`` strided slices of the padded input
  (:func:`~convgrad.ops.pool_windows.window_taps`). The max-pool backward saves the same ``uint8`` tap
  and computes ``max_unpool``'s scatter-add one stride phase at a time, as
  sums of shifted, masked copies of the cotangent
  (:func:`max_pool_input_grad_phases`), in either layout, with no scatter.
  ``max_unpool`` itself (flat switches from anywhere) is the scatter-add.

Layouts: ``channel_axis=1`` (``N, C, *spatial``, the default) or
``channel_axis=-1`` (``N, *spatial, C``). Switches index the spatial plane the
same way in both.
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
from convgrad.ops.batch_chunks import in_batch_order, map_batch_chunks
from convgrad.ops.geometry import Pair, PoolGeometry, conv_output_size
from convgrad.ops.pool_windows import (
    pad_config,
    real_taps,
    row_major_strides,
    spread_to_taps,
    tap_index,
    tile_taps,
    tile_windows,
    untile,
    window_axes,
    window_taps,
)
from convgrad.ops.precision import accumulator_dtype

# ---------------------------------------------------------------------------- max_pool


def max_pool(
    x: ArrayLike,
    window: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None = None,
    padding: int | tuple[int, ...] | tuple[Pair, ...] = 0,
    *,
    channel_axis: int = 1,
) -> tuple[jax.Array, jax.Array]:
    r"""Max pooling over 1 to 3 spatial dims; returns the maxima ``y`` and their ``switches``.

    ``x_pad`` is ``x`` with ``(lo, hi)`` entries of ``-inf`` on each spatial
    side, so padding never wins. In 2-D, with window ``(k_h, k_w)``, stride
    ``(s_h, s_w)`` and low padding ``(p_h, p_w)``::

        y[n, c, i, j] = max_{kh < k_h, kw < k_w} x_pad[n, c, i s_h + kh, j s_w + kw]

        switches[n, c, i, j] = h* W + w*,   (h*, w*) = (i s_h + kh* - p_h, j s_w + kw* - p_w)

    where ``(kh*, kw*)`` is the FIRST tap in raster order (``kh`` major) that
    holds the maximum. A NaN counts as larger than every number: a window
    holding a NaN gives ``y = NaN`` and the switch of its first NaN. Switches
    index the UNPADDED ``(H, W)`` plane of each ``(n, c)`` (``(d H + h) W + w``
    in 3-D, ``h`` in 1-D), as PyTorch's ``max_pool2d(..., return_indices=True)``
    does; they are the same values where a window holds at most one NaN
    (PyTorch's kernels keep the LAST NaN of a window holding several).

    For a cotangent ``g`` shaped like ``y``, the gradient routes each
    ``g[n, c, i, j]`` to the input element its window picked, and ADDS where
    overlapping windows (``s < k``) picked the same element::

        dx[n, c, h, w] = sum_{i, j : switches[n, c, i, j] = h W + w} g[n, c, i, j]

    i.e. ``dx = max_unpool(g, switches, (H, W))``, a scatter-add. The backward
    computes that sum without a scatter, from the saved window-local tap of each
    maximum (``uint8``; no flat switches kept). When the windows tile the input
    (``s = k``, no padding) each element has at most one window, and it selects
    ``g`` at the tap over the window axes of a reshape
    (:func:`max_pool_input_grad_tiled`); otherwise it sums shifted, masked copies
    of ``g`` per stride phase (:func:`max_pool_input_grad_phases`).
    ``switches`` is an integer output: it has no gradient (its cotangent is
    ``float0``, ignored).

    Args:
      x: input, ``(N, C, *in)`` (or ``(N, *in, C)`` with ``channel_axis=-1``)
        with 1 to 3 spatial dims. Floating dtype.
      window: ``k``, an int or one per spatial dim.
      stride: ``s``, an int or one per spatial dim; default ``window``.
      padding: an int, one int per spatial dim, or one ``(lo, hi)`` pair per
        spatial dim, each ``< k`` so that every window holds an input element.
      channel_axis: ``1`` (channel-first, the default) or ``-1`` (channels-last).

    Returns:
      ``(y, switches)``: ``y`` ``(N, C, *out)`` (or ``(N, *out, C)``) in
      ``x``'s dtype and int32 ``switches`` of the same shape, with
      ``out = (in + lo + hi - k) // s + 1``.
    """
    x, geometry = pool_arguments("max_pool", x, window, stride, padding, channel_axis)
    return _max_pool(geometry, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _max_pool(geometry: PoolGeometry, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    y, tap = max_pool_forward(x, geometry)
    return y, tap_switches(tap, geometry)


def _max_pool_fwd(geometry, x):
    """Save only where each maximum came from, never the input's values: the window-local tap (``uint8``).

    For tiled windows the forward is one fused pass. For any other geometry it runs in
    a loop over (at least two) batch chunks, which writes the taps to memory once: the
    backward reads the taps once per window offset (``K = prod(k)`` times), and without
    the loop XLA fuses the running maximum into every read and recomputes it (on the
    ResNet stem pool, 25x slower; see ``docs/performance.md``).
    """
    if geometry.non_overlapping:
        y, tap = max_pool_forward(x, geometry)
    else:
        chunked = map_batch_chunks(partial(max_pool_forward, geometry=geometry), x, min_chunks=2)
        y, tap = (in_batch_order(r, x.shape[0]) for r in chunked)
    return (y, tap_switches(tap, geometry)), tap


def _max_pool_bwd(geometry, tap, cotangents):
    """``dx = max_unpool(g, switches, in)``, computed from the taps without a scatter."""
    g, _ = cotangents  # the switches' cotangent is float0: an integer output carries no gradient
    if geometry.non_overlapping:
        return (max_pool_input_grad_tiled(g, tap, geometry),)
    return (max_pool_input_grad_phases(g, tap, geometry),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_forward(x: jax.Array, geometry: PoolGeometry) -> tuple[jax.Array, jax.Array]:
    """``(y, tap)``: the maxima and the window-local tap of each (compact: ``uint8`` for up to 256 taps).

    The taps of every window are ``K`` views of the input in its own layout
    (slices of its reshape when the windows tile it, else strided slices of the
    ``-inf``-padded input), and one running maximum over them gives both ``y``
    and the first tap that holds it, in one fused pass; nothing is stacked or
    transposed. ``y`` is the selected tap's value itself, never compared with a
    separately computed maximum. (An earlier version compared the taps with
    ``lax.reduce_window``'s max; with ``x`` made by ``conv``'s fused im2col
    forward in the same program, that picked a wrong tap in 16 windows of one
    image of ``experiments/deconvnet.py`` while ``y`` was right.) For the same
    reason ``x`` passes an optimization barrier: the taps are read from one
    materialized array, never from recomputations of a fused producer.
    """
    x = lax.optimization_barrier(x)
    if geometry.non_overlapping:
        taps, real = tile_taps(tile_windows(x, geometry), geometry), None
    else:
        padding = pad_config(geometry, [(lo, hi, 0) for lo, hi in geometry.padding])
        x_pad = lax.pad(x, jnp.array(-jnp.inf, x.dtype), padding)
        taps, real = window_taps(x_pad, geometry), real_taps(geometry)
    y, tap = max_and_first_tap(taps, real)
    return y, tap.astype(_tap_dtype(geometry))


def max_and_first_tap(taps: list[jax.Array], real: list[np.ndarray] | None = None) -> tuple[jax.Array, jax.Array]:
    """``(y, tap)``: each window's maximum and the FIRST tap in raster order that holds it, from the ``K`` tap arrays.

    A running maximum over the taps in raster order: tap ``t`` replaces the
    best so far only when it is strictly greater (so on ties the first
    maximum wins), or when it is NaN and the best is not (NaN propagates, and
    the first NaN wins). ``real[t]`` (broadcastable) marks where tap ``t``
    reads an input element rather than padding: a padding tap never replaces a
    real one, and the first real tap always replaces padding, so a window of
    ``-inf`` inputs picks an input element. Written out rather than left to
    ``jnp.argmax``, whose NaN convention no public contract promises.
    """
    y, tap = taps[0], jnp.zeros(taps[0].shape, jnp.int32)
    found = None if real is None else real[0]  # whether the best so far reads an input element
    for t in range(1, len(taps)):
        better = (taps[t] > y) | (jnp.isnan(taps[t]) & ~jnp.isnan(y))
        if real is not None:
            better = real[t] & (better | ~found)
            found = found | real[t]
        y, tap = jnp.where(better, taps[t], y), jnp.where(better, t, tap)
    return y, tap


def tap_switches(tap: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``switches = sum_d (i_d s_d + t_d - lo_d) row_d``: the flat unpadded index of tap ``tap`` of window ``i``.

    ``t = unravel(tap, window)``, ``row_d = prod(in[d+1:])`` are the row-major
    strides of the input plane, and the window-position part
    ``base[i] = sum_d (i_d s_d - lo_d) row_d`` is a static table.
    """
    row, tap_row = row_major_strides(geometry.in_spatial), row_major_strides(geometry.window)
    grid = np.indices(geometry.out_spatial)
    base = sum((i * s - lo) * r for i, s, (lo, _), r in zip(grid, geometry.stride, geometry.padding, row))
    if geometry.channels_last:
        base = base[..., None]
    tap = tap.astype(jnp.int32)
    offset = sum((tap // tr) % k * r for tr, k, r in zip(tap_row, geometry.window, row))
    return (offset + jnp.asarray(base, jnp.int32)).astype(jnp.int32)


def max_pool_input_grad_tiled(g: jax.Array, taps: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``dx`` for tiled windows (``s = k``, no padding): ``g`` at each window's saved tap, zeros elsewhere.

    Each input element lies in at most one window, so the sum in ``dx`` has at
    most one term. In the layout of :func:`tile_windows` (window ``i``, tap
    ``a`` along each spatial dim)::

        dx_windows[n, c, i, a, j, b] = g[n, c, i, j] if (a, b) == taps[n, c, i, j] else 0

    and the reshape back merges ``(i, a) -> h = i k + a``; the ``in - out k``
    trailing samples that no window reached get zeros.
    """
    axes = window_axes(geometry)
    selected = jnp.expand_dims(taps.astype(jnp.int32), axes) == tap_index(geometry)
    windows = jnp.where(selected, jnp.expand_dims(g, axes), jnp.zeros((), g.dtype))
    return untile(windows, geometry)


def max_pool_input_grad_phases(g: jax.Array, taps: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``dx`` for any geometry, one stride phase at a time: the scatter-add of ``max_unpool`` as sums of shifted copies.

    In 1-D, padded position ``h' = q s + r`` (phase ``0 <= r < s``) is tap
    ``t = r + m s`` of window ``i = q - m``, for each ``m >= 0`` with ``t < k``. So
    ``dx_pad`` at phase ``r`` is a sum of ``ceil((k - r) / s)`` shifted, masked copies of
    the cotangent (none where ``r >= k``: positions no window reaches)::

        dx_pad[q s + r] = sum_m  g[q - m] [taps[q - m] = r + m s]          (g[i] = 0 outside 0 <= i < out)

    In several dims ``r``, ``m`` and ``t`` are one per dim and ``t`` is compared
    raveled. The ``prod(s)`` phases, ``Q = ceil((lo + in) / s)`` positions each,
    interleave (stack after each ``q`` axis, reshape ``(Q, s) -> Q s``) into
    ``dx_pad``, cropped to the input: ``dx = dx_pad[lo : lo + in]``. Overlapping
    windows that picked the same element add, as in the scatter; nothing is scattered.
    """
    first = geometry.first_spatial_axis
    spatial = range(len(geometry.window))
    q = [-(-(lo + n) // s) for (lo, _), n, s in zip(geometry.padding, geometry.in_spatial, geometry.stride)]
    zero = jnp.zeros((), g.dtype)
    phase_shape = list(g.shape)
    for d in spatial:
        phase_shape[first + d] = q[d]
    phases = {}
    for r in itertools.product(*map(range, geometry.stride)):
        shifts = [range(max(0, -(-(k - r_d) // s))) for r_d, k, s in zip(r, geometry.window, geometry.stride)]
        phase = jnp.zeros(phase_shape, g.dtype)
        for m in itertools.product(*shifts):
            t = [r_d + m_d * s for r_d, m_d, s in zip(r, m, geometry.stride)]
            masked = jnp.where(taps == np.ravel_multi_index(t, geometry.window), g, zero)
            shift = [(0, 0, 0)] * g.ndim
            for d in spatial:  # window i lands at q = i + m: pad m before, crop or pad to Q after
                shift[first + d] = (m[d], q[d] - geometry.out_spatial[d] - m[d], 0)
            phase = phase + lax.pad(masked, zero, shift)
        phases[r] = phase

    def interleave(r: tuple[int, ...]) -> jax.Array:
        """Phases ``r + (0..s_d - 1, *)`` interleaved along spatial dims ``d = len(r)`` onwards."""
        d = len(r)
        if d == len(geometry.window):
            return phases[r]
        axis = first + d
        stacked = jnp.stack([interleave((*r, r_d)) for r_d in range(geometry.stride[d])], axis=axis + 1)
        return stacked.reshape(*stacked.shape[:axis], -1, *stacked.shape[axis + 2 :])

    dx_pad = interleave(())
    start, limit = [0] * g.ndim, list(dx_pad.shape)
    for d, ((lo, _), n) in enumerate(zip(geometry.padding, geometry.in_spatial)):
        start[first + d], limit[first + d] = lo, lo + n
    return lax.slice(dx_pad, start, limit)


def _tap_dtype(geometry: PoolGeometry):
    """The narrowest unsigned type that holds a tap index: ``uint8`` for windows of up to 256 taps."""
    return jnp.uint8 if math.prod(geometry.window) <= 256 else jnp.int32


# ---------------------------------------------------------------------------- max_unpool


def max_unpool(y: ArrayLike, switches: ArrayLike, output_size: Sequence[int], *, channel_axis: int = 1) -> jax.Array:
    r"""Scatter each value of ``y`` to its switch in a zero map of spatial size ``output_size``; coinciding ones ADD.

    With ``P = prod(output_size)`` and ``x`` viewed as ``(N, C, P)`` (flat,
    row-major planes, as ``max_pool``'s switches index them)::

        x[n, c, p] = sum_{i : switches[n, c, i] = p} y[n, c, i]

    ``max_unpool`` is linear in ``y``: it is exactly the adjoint of the gather
    ``x -> x.reshape(N, C, P)[n, c, switches[n, c, i]]``, hence the max-pool
    VJP (``dx = max_unpool(g, switches, in)``). Without coinciding switches it
    equals PyTorch's ``MaxUnpool``. Its own VJP is that gather::

        dy[n, c, i] = g[n, c, switches[n, c, i]]

    and ``switches``, an integer argument, gets a ``float0`` (zero) cotangent.

    Switch values cannot be checked under ``jit``: a switch outside
    ``[0, P)`` (negative ones included, never wrapped) is dropped: its value
    lands nowhere and its gradient is zero. It never spills into another plane.

    Args:
      y: values, ``(N, C, *spatial)`` (or ``(N, *spatial, C)`` with
        ``channel_axis=-1``) with 1 to 3 spatial dims. Floating dtype.
      switches: integer array of ``y``'s shape: flat indices into each
        ``(n, c)`` plane of the result.
      output_size: the result's spatial size, one positive int per spatial dim
        of ``y`` (e.g. the spatial shape of the pooled ``x``).
      channel_axis: ``1`` (channel-first, the default) or ``-1`` (channels-last).

    Returns:
      ``x``, ``(N, C, *output_size)`` (or ``(N, *output_size, C)``) in ``y``'s dtype.
    """
    y, switches, output_size, channels_last = unpool_arguments("max_unpool", y, switches, output_size, channel_axis)
    return _max_unpool(output_size, channels_last, y, switches)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _max_unpool(output_size: tuple[int, ...], channels_last: bool, y: jax.Array, switches: jax.Array) -> jax.Array:
    return unpool(y, switches, output_size, channels_last)


def _max_unpool_fwd(output_size, channels_last, y, switches):
    """Save only the switches: the map is linear in ``y``, so its transpose does not need ``y``."""
    return unpool(y, switches, output_size, channels_last), switches


def _max_unpool_bwd(output_size, channels_last, switches, g):
    """``(dy, dswitches)``: the gather of the docstring, and ``float0`` zeros for the integer switches."""
    if channels_last:
        dy = jnp.moveaxis(gather_at_switches(jnp.moveaxis(g, -1, 1), jnp.moveaxis(switches, -1, 1)), 1, -1)
    else:
        dy = gather_at_switches(g, switches)
    return dy, np.zeros(switches.shape, jax.dtypes.float0)


_max_unpool.defvjp(_max_unpool_fwd, _max_unpool_bwd)


def unpool(values: jax.Array, switches: jax.Array, output_size: tuple[int, ...], channels_last: bool) -> jax.Array:
    """:func:`scatter_to_switches` in either layout (channels-last moves the channel axis there and back)."""
    if not channels_last:
        return scatter_to_switches(values, switches, output_size)
    moved = scatter_to_switches(jnp.moveaxis(values, -1, 1), jnp.moveaxis(switches, -1, 1), output_size)
    return jnp.moveaxis(moved, 1, -1)


def scatter_to_switches(values: jax.Array, switches: jax.Array, output_size: tuple[int, ...]) -> jax.Array:
    """``x[n, c, p] = sum_{i : switches[n, c, i] = p} values[n, c, i]``: a scatter-ADD into zero planes of ``P``."""
    batch, channels = values.shape[:2]
    plane = math.prod(output_size)
    rows = jnp.arange(batch * channels)[:, None]
    columns = _plane_columns(switches, plane).reshape(batch * channels, -1)
    zeros = jnp.zeros((batch * channels, plane), values.dtype)
    x = zeros.at[rows, columns].add(values.reshape(batch * channels, -1), mode="drop")
    return x.reshape(batch, channels, *output_size)


def gather_at_switches(x: jax.Array, switches: jax.Array) -> jax.Array:
    """``dy[n, c, i] = x[n, c, switches[n, c, i]]`` over flat planes (0 for a switch outside the plane)."""
    batch, channels = x.shape[:2]
    plane = math.prod(x.shape[2:])
    rows = jnp.arange(batch * channels)[:, None]
    columns = _plane_columns(switches, plane).reshape(batch * channels, -1)
    picked = jnp.asarray(x).reshape(batch * channels, plane).at[rows, columns].get(mode="fill", fill_value=0)
    return picked.reshape(switches.shape)


def _plane_columns(switches: jax.Array, plane: int) -> jax.Array:
    """``switches`` where in ``[0, plane)``, else ``plane`` (out of bounds, so dropped/filled rather than wrapped)."""
    return jnp.where((switches >= 0) & (switches < plane), switches, plane)


# ---------------------------------------------------------------------------- avg_pool


def avg_pool(
    x: ArrayLike,
    window: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None = None,
    padding: int | tuple[int, ...] | tuple[Pair, ...] = 0,
    *,
    channel_axis: int = 1,
) -> jax.Array:
    r"""Average pooling over 1 to 3 spatial dims; zero padding COUNTS in the mean (PyTorch's ``count_include_pad``).

    With ``x_pad`` zero-padded by ``(lo, hi)`` and ``K = k_h k_w`` (in 2-D)::

        y[n, c, i, j] = (1 / K) sum_{kh < k_h, kw < k_w} x_pad[n, c, i s_h + kh, j s_w + kw]

    Every window divides by ``K``, also where it overlaps the padding.
    ``y`` is linear in ``x``; for a cotangent ``g`` shaped like ``y`` each
    ``g / K`` goes back to every tap of its window, adding where windows
    overlap::

        dx[n, c, h, w] = (1 / K) sum_{i, j, kh, kw : i s_h + kh - p_h = h, j s_w + kw - p_w = w} g[n, c, i, j]

    This is the transposed convolution of ``g`` with a depthwise kernel of
    ones ``/ K``. Written per tap ``(kh, kw)``: the forward reads the strided
    slice ``x_pad[kh :: s_h, kw :: s_w]``, whose transpose inserts ``s - 1``
    zeros between the samples of ``g`` and shifts them to start at
    ``kh - p_h`` (a ``lax.pad``, see :func:`~convgrad.ops.geometry.tap_grad_padding`);
    ``dx`` is the sum of the ``K`` shifted copies, over ``K``. When the windows
    tile the input (``s = k``, no padding) both directions are a mean over,
    and a broadcast along, the window axes of a reshape (:func:`tile_windows`).
    Sums of 16-bit inputs accumulate in float32.

    Args:
      x: input, ``(N, C, *in)`` (or ``(N, *in, C)`` with ``channel_axis=-1``)
        with 1 to 3 spatial dims. Floating dtype.
      window, stride, padding, channel_axis: as for :func:`max_pool`.

    Returns:
      ``y``, ``(N, C, *out)`` (or ``(N, *out, C)``) in ``x``'s dtype,
      ``out = (in + lo + hi - k) // s + 1``.
    """
    x, geometry = pool_arguments("avg_pool", x, window, stride, padding, channel_axis)
    return _avg_pool(geometry, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _avg_pool(geometry: PoolGeometry, x: jax.Array) -> jax.Array:
    return avg_pool_forward(x, geometry)


def _avg_pool_fwd(geometry, x):
    """Save nothing: the map is linear in ``x`` and its transpose needs only the geometry."""
    return avg_pool_forward(x, geometry), None


def _avg_pool_bwd(geometry, _, g):
    """``dx``: the formula of the docstring."""
    return (avg_pool_input_grad(g, geometry),)


_avg_pool.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def avg_pool_forward(x: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``y = (1 / K) sum_t x_pad[.., i s + t]``: the ``K`` tap slices of the zero-padded input, summed, over ``K``."""
    wide = x.astype(accumulator_dtype(x.dtype))
    if geometry.non_overlapping:
        total = jnp.sum(tile_windows(wide, geometry), axis=window_axes(geometry))
        return (total / window_divisor(geometry)).astype(x.dtype)
    x_pad = lax.pad(wide, jnp.zeros((), wide.dtype), pad_config(geometry, [(lo, hi, 0) for lo, hi in geometry.padding]))
    total = sum(window_taps(x_pad, geometry))
    return (total / window_divisor(geometry)).astype(x.dtype)


def window_divisor(geometry: PoolGeometry) -> int:
    """``K = prod(window)``: every window's divisor, padded taps included."""
    return math.prod(geometry.window)


def avg_pool_input_grad(g: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``dx = (1 / K) sum_t spread(g, t)``: each ``g / K`` back to every tap of its window."""
    wide = g.astype(accumulator_dtype(g.dtype)) / window_divisor(geometry)
    if geometry.non_overlapping:
        axes = window_axes(geometry)
        shape = list(wide.shape)
        for axis, k in zip(axes, geometry.window):
            shape.insert(axis, k)
        return untile(jnp.broadcast_to(jnp.expand_dims(wide, axes), shape), geometry).astype(g.dtype)
    return spread_to_taps(wide, geometry).astype(g.dtype)


# ---------------------------------------------------------------------------- arguments


def pool_arguments(op, x, window, stride, padding, channel_axis=1) -> tuple[jax.Array, PoolGeometry]:
    """The checked input and the :class:`PoolGeometry` of ``max_pool`` / ``avg_pool``."""
    x = arguments.as_float_array(op, "x", x)
    arguments.ndim_between(op, "x", x, 3, 5, "(N, C, *spatial) with 1 to 3 spatial dims")
    channels_last = arguments.channels_last_axis(op, channel_axis, x.ndim)
    n = x.ndim - 2
    window_tuple = arguments.as_tuple(op, "window", window, n)
    stride_tuple = window_tuple if stride is None else arguments.as_tuple(op, "stride", stride, n)
    pairs = arguments.as_padding(op, padding, n, allow_strings=False)
    in_spatial = tuple(x.shape[1:-1] if channels_last else x.shape[2:])
    for axis, (k, (lo, hi)) in enumerate(zip(window_tuple, pairs)):
        if lo >= k or hi >= k:
            raise ValueError(
                f"{op}: padding={padding!r} must be smaller than window={window!r} on both sides of every spatial "
                f"dim, so that every window holds an input element; spatial dim {axis} has (lo, hi)=({lo}, {hi}) "
                f"and window {k}"
            )
    for axis, (i, k, s, p) in enumerate(zip(in_spatial, window_tuple, stride_tuple, pairs)):
        if conv_output_size(i, k, s, p, 1) < 1:
            raise ValueError(
                f"{op}: output would be empty along spatial dim {axis}: input size {i} + padding {p} is smaller "
                f"than the window {k} (x.shape={tuple(x.shape)})"
            )
    return x, PoolGeometry(window_tuple, stride_tuple, pairs, in_spatial, channels_last)


def unpool_arguments(op, y, switches, output_size, channel_axis=1) -> tuple[jax.Array, jax.Array, tuple, bool]:
    """The checked values, switches, output size and layout of ``max_unpool``."""
    y = arguments.as_float_array(op, "y", y)
    arguments.ndim_between(op, "y", y, 3, 5, "(N, C, *spatial) with 1 to 3 spatial dims")
    channels_last = arguments.channels_last_axis(op, channel_axis, y.ndim)
    switches = arguments.as_int_array(op, "switches", switches, "flat indices into each plane")
    if switches.shape != y.shape:
        raise ValueError(
            f"{op}: switches must have the shape of y, got switches.shape={tuple(switches.shape)} "
            f"and y.shape={tuple(y.shape)}"
        )
    n = y.ndim - 2
    expected = (
        f"{op}: output_size must be {n} positive ints (one per spatial dim of y), got output_size={output_size!r}"
    )
    if not isinstance(output_size, Sequence) or isinstance(output_size, str):
        raise TypeError(expected)
    if len(output_size) != n:
        raise ValueError(expected)
    try:
        sizes = tuple(arguments.as_int(op, "output_size", size, 1) for size in output_size)
    except (TypeError, ValueError) as error:
        raise type(error)(expected) from None
    return y, switches, sizes, channels_last
