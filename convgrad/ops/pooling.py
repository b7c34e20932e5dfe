"""Max pooling (with switches), max unpooling and average pooling, each with a hand-derived VJP.

Read top to bottom: ``max_pool`` (public function, forward, backward, ``defvjp``)
and the pieces its forward and backward use; ``max_unpool``, whose forward is
the max-pool backward and whose backward is a gather; ``avg_pool``; and the
argument checks. Shape arithmetic lives in :mod:`convgrad.ops.geometry`
(:func:`~convgrad.ops.geometry.pool_output_size` is PyTorch's output-size rule,
floor or ceil mode), the window views in :mod:`convgrad.ops.pool_windows`.

Two formulations, chosen by the geometry, both hand-derived and both checked
by the registry:

* windows that tile the input (stride = window, adjacent taps, no padding, no
  partial window; the usual 2x2/2): each spatial axis is reshaped into
  ``(out, k)`` (:func:`~convgrad.ops.pool_windows.tile_windows`), so the window
  is a set of axes; max, first-max tap, average and both backwards are
  reductions and selects over those axes, with no copies, in either layout. The
  max-pool backward saves only the window-local tap of each maximum (``uint8``,
  the compact switch), not the input and not the flat switches;
* any other geometry (overlap, gaps, padding, dilation, ceil mode): the
  ``K = prod(window)`` taps of every window are ``K`` strided slices of the
  input (:func:`~convgrad.ops.pool_windows.window_taps`). The max-pool backward
  saves the same ``uint8`` tap and computes ``max_unpool``'s scatter-add one
  stride phase at a time, as sums of shifted, masked copies of the cotangent
  (:func:`max_pool_input_grad_phases`), in either layout, with no scatter.
  ``max_unpool`` itself (flat switches from anywhere) is the scatter-add.

Layouts: ``channel_axis=1`` (``N, C, *spatial``, the default) or
``channel_axis=-1`` (``N, *spatial, C``), each also without the batch axis
(``C, *spatial`` or ``*spatial, C``) when a tuple ``window`` says how many
spatial dims there are. Switches index the spatial plane the same way in all.
On CPU, ``max_pool`` computes tiled windows over a channel-first input with
:data:`CHANNELS_LAST_MIN_CHANNELS` channels or more channels-last, between one
transpose in and one out (:func:`in_computation_layout`): the same values, and
in a network whose convolutions also run channels-last inside, XLA cancels the
transposes of consecutive ops.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.batch_chunks import in_batch_order, map_batch_chunks
from convgrad.ops.geometry import Pair, PoolGeometry, dilated_size, pool_output_size
from convgrad.ops.pool_windows import (
    real_taps,
    row_major_strides,
    spread_to_taps,
    tap_index,
    tap_offsets_of,
    tap_ranges,
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
    dilation: int | tuple[int, ...] = 1,
    ceil_mode: bool = False,
    channel_axis: int = 1,
) -> tuple[jax.Array, jax.Array]:
    r"""Max pooling over 1 to 3 spatial dims; returns the maxima ``y`` and their ``switches``.

    PyTorch's ``max_pool{1,2,3}d(..., return_indices=True)``, argument by
    argument. ``x_pad`` is ``x`` with ``(lo, hi)`` entries of ``-inf`` on each
    spatial side, so padding never wins. In 2-D, with window ``(k_h, k_w)``,
    stride ``(s_h, s_w)``, dilation ``(d_h, d_w)`` and low padding ``(p_h, p_w)``::

        y[n, c, i, j] = max_{kh < k_h, kw < k_w} x_pad[n, c, i s_h + kh d_h, j s_w + kw d_w]

        switches[n, c, i, j] = h* W + w*,   (h*, w*) = (i s_h + kh* d_h - p_h, j s_w + kw* d_w - p_w)

    where ``(kh*, kw*)`` is the FIRST tap in raster order (``kh`` major) that
    holds the maximum. Per spatial dim there are
    ``out = floor((in + lo + hi - (k - 1) d - 1) / s) + 1`` windows, or with
    ``ceil_mode`` the ``ceil`` of that quotient plus 1, less a last window that
    would start in the high padding (PyTorch's rule: every window starts inside
    the input or the low padding); a ceil-mode window may run past the padding,
    and those taps count as ``-inf`` too. A NaN counts as larger than every
    number: a window holding a NaN gives ``y = NaN`` and the switch of its first
    NaN. Switches index the UNPADDED ``(H, W)`` plane of each ``(n, c)``
    (``(d H + h) W + w`` in 3-D, ``h`` in 1-D), as PyTorch's do; they are the
    same values where a window holds at most one NaN (PyTorch's kernels keep the
    LAST NaN of a window holding several).

    For a cotangent ``g`` shaped like ``y``, the gradient routes each
    ``g[n, c, i, j]`` to the input element its window picked, and ADDS where
    overlapping windows picked the same element::

        dx[n, c, h, w] = sum_{i, j : switches[n, c, i, j] = h W + w} g[n, c, i, j]

    i.e. ``dx = max_unpool(g, switches, (H, W))``, a scatter-add. The backward
    computes that sum without a scatter, from the saved window-local tap of each
    maximum (``uint8``; no flat switches kept). When the windows tile the input
    (``s = k``, ``d = 1``, no padding, no partial window) each element has at
    most one window, and it selects ``g`` at the tap over the window axes of a
    reshape (:func:`max_pool_input_grad_tiled`); otherwise it sums shifted,
    masked copies of ``g`` per stride phase (:func:`max_pool_input_grad_phases`).
    ``switches`` is an integer output: it has no gradient (its cotangent is
    ``float0``, ignored). On CPU, tiled windows over a channel-first ``x`` of
    16 channels or more are computed channels-last, between a transpose in and
    one out (:func:`in_computation_layout`): the same values in every layout.

    How many spatial dims: ``len(window)`` when ``window`` is a tuple, and then
    ``x`` may also come without its batch axis (``(C, H, W)`` with
    ``window=(2, 2)`` is one image, PyTorch's rule); with an int ``window``,
    ``x.ndim - 2``, so an int window reads ``x`` as batched: ``(3, 8, 8)`` is a
    batch of 3 one-dimensional signals of 8 channels, not a 3-channel image (pass
    ``window=(2, 2)`` for that).

    Args:
      x: input, ``(N, C, *in)`` (or ``(N, *in, C)`` with ``channel_axis=-1``)
        with 1 to 3 spatial dims, or the same without ``N``. Floating dtype. Any
        of its sizes may be 0: an empty input has an empty result (no windows
        along an empty spatial dim).
      window: ``k``, an int or one per spatial dim.
      stride: ``s``, an int or one per spatial dim; default ``window``.
      padding: an int, one int per spatial dim, or one ``(lo, hi)`` pair per
        spatial dim, each smaller than the dilated window ``(k - 1) d + 1``
        (PyTorch asks for at most half of it, symmetric).
      dilation: ``d``, the spacing of a window's taps, an int or one per
        spatial dim; ``d = 1`` is a contiguous window.
      ceil_mode: ``True`` for PyTorch's ``ceil_mode`` output size (a bool).
      channel_axis: ``1`` (channel-first, the default) or ``-1`` (channels-last).

    Returns:
      ``(y, switches)``: ``y`` ``(N, C, *out)`` (or ``(N, *out, C)``, or without
      ``N`` like ``x``) in ``x``'s dtype and int32 ``switches`` of the same shape.

    Raises:
      TypeError: ``x`` is not a floating array; ``window``, ``stride``,
        ``padding`` or ``dilation`` is not made of ints; ``ceil_mode`` is not a bool.
      ValueError: ``x``'s rank fits neither the batched nor the unbatched reading
        of ``window``; a window, stride or dilation below 1; negative padding, or
        padding not smaller than the dilated window; a window that would hold no
        input element (PyTorch returns ``-inf`` and a switch outside the plane
        there); an output that would be empty although ``x`` is not; planes too
        large for int32 switches.

    Examples:
      Two 2x2 windows over a 2x4 plane: the maxima 4 and 8, at flat positions
      ``1 * 4 + 1 = 5`` and ``0 * 4 + 3 = 3``; the gradient goes to them:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import max_pool
      >>> x = jnp.array([[[[1.0, 2.0, 5.0, 8.0], [3.0, 4.0, 7.0, 6.0]]]])
      >>> y, switches = max_pool(x, 2)
      >>> y, switches
      (Array([[[[4., 8.]]]], dtype=float32), Array([[[[5, 3]]]], dtype=int32))
      >>> jax.grad(lambda x: max_pool(x, 2)[0].sum())(x)[0, 0]
      Array([[0., 0., 0., 1.],
             [0., 1., 0., 0.]], dtype=float32)

      Dilation 2 skips a sample: the window at 0 reads 0 and 2, the one at 1
      reads 1 and 3; ``ceil_mode`` adds the partial window at 4 (just ``x[4]``):

      >>> row = jnp.array([[[1.0, 9.0, 3.0, 2.0, 5.0]]])
      >>> max_pool(row, 2, stride=1, dilation=2)[0], max_pool(row, 2, ceil_mode=True)[0]
      (Array([[[3., 9., 5.]]], dtype=float32), Array([[[9., 3., 5.]]], dtype=float32))

    References:
      PyTorch, ``torch.nn.MaxPool2d`` (``return_indices=True``, ``dilation``,
      ``ceil_mode``): https://pytorch.org/docs/stable/generated/torch.nn.MaxPool2d.html
    """
    x, geometry = pool_arguments("max_pool", x, window, stride, padding, channel_axis, dilation, ceil_mode)
    return _max_pool(geometry, x)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _max_pool(geometry: PoolGeometry, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    def forward(x, geometry):
        y, tap = max_pool_forward(x, geometry)
        return y, tap_switches(tap, geometry)

    return in_computation_layout(forward, geometry, x)


def _max_pool_fwd(geometry, x):
    """Save only where each maximum came from, never the input's values: the window-local tap (``uint8``).

    For tiled windows the forward is one fused pass. For any other geometry it runs in
    a loop over (at least two) batch chunks, which writes the taps to memory once: the
    backward reads the taps once per window offset (``K = prod(k)`` times), and without
    the loop XLA fuses the running maximum into every read and recomputes it
    (``docs/performance.md`` measures the difference on the ResNet stem pool). The tap
    is saved in ``x``'s layout, like ``y``.
    """

    def forward(x, geometry):
        if geometry.non_overlapping or x.size == 0:
            y, tap = max_pool_forward(x, geometry)
        else:
            chunked = map_batch_chunks(partial(max_pool_forward, geometry=geometry), x, min_chunks=2)
            y, tap = (in_batch_order(r, x.shape[0]) for r in chunked)
        return y, tap_switches(tap, geometry), tap

    y, switches, tap = in_computation_layout(forward, geometry, x)
    return (y, switches), tap


def _max_pool_bwd(geometry, tap, cotangents):
    """``dx = max_unpool(g, switches, in)``, computed from the taps without a scatter (in the forward's layout)."""
    g, _ = cotangents  # the switches' cotangent is float0: an integer output carries no gradient
    return (in_computation_layout(max_pool_input_grad, geometry, g, tap),)


_max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool_input_grad(g: jax.Array, tap: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``dx`` from the batched cotangent and saved taps: tiled windows by a select, any others phase by phase."""
    if g.size == 0:  # no windows, or no elements: nothing reaches the input
        return jnp.zeros(batched_shape(g.shape, geometry, geometry.in_spatial), g.dtype)
    if geometry.non_overlapping:
        return max_pool_input_grad_tiled(g, tap, geometry)
    return max_pool_input_grad_phases(g, tap, geometry)


def max_pool_forward(x: jax.Array, geometry: PoolGeometry) -> tuple[jax.Array, jax.Array]:
    """``(y, tap)``: the maxima and the window-local tap of each (compact: ``uint8`` for up to 256 taps).

    The taps of every window are ``K`` views of the input in its own layout
    (slices of its reshape when the windows tile it, else strided slices of
    ``x`` with ``-inf`` where a tap reads padding), and one running maximum over
    them gives both ``y`` and the first tap that holds it, in one fused pass;
    nothing is stacked or transposed. ``y`` is the selected tap's value itself,
    never compared with a separately computed maximum, and ``x`` passes an
    optimization barrier, so the taps are read from one materialized array, never
    from recomputations of a fused producer (``docs/derivations.md`` tells why).
    """
    if x.size == 0:
        shape = batched_shape(x.shape, geometry, geometry.out_spatial)
        return jnp.zeros(shape, x.dtype), jnp.zeros(shape, _tap_dtype(geometry))
    x = lax.optimization_barrier(x)
    if geometry.non_overlapping:
        taps, real = tile_taps(tile_windows(x, geometry), geometry), None
    else:
        taps, real = window_taps(x, geometry, -jnp.inf), real_taps(geometry)
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
    """``switches = sum_d (i_d s_d + t_d d_d - lo_d) row_d``: the flat unpadded index of tap ``tap`` of window ``i``.

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
    offset = sum((tap // tr) % k * (d * r) for tr, k, d, r in zip(tap_row, geometry.window, geometry.dilation, row))
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

    In 1-D, tap ``t`` of window ``i`` reads input position ``h = i s + o_t`` with
    ``o_t = t d - lo``. Count positions from an origin ``b`` (``h' = h + b``) and write
    ``o_t + b = m_t s + r_t`` (``0 <= r_t < s``): then ``h' = q s + r_t`` with ``q = i + m_t``,
    so phase ``r`` (positions ``q s + r``) collects, from each tap ``t`` with ``r_t = r``, the
    cotangent of window ``q - m_t`` where that window picked tap ``t``: a shifted, masked
    copy of ``g`` per tap, added::

        dx'[q s + r] = sum_{t : r_t = r}  g[q - m_t] [taps[q - m_t] = t]          (g[i] = 0 outside 0 <= i < out)

    In several dims ``r``, ``m`` and ``t`` are one per dim and ``t`` is compared
    raveled. The phases, ``Q = ceil((b + in) / s)`` positions each (``min(s, b + in)``
    phases: when ``s`` is larger only those exist), interleave (stack after each
    ``q`` axis, reshape ``(Q, s) -> Q s``) and ``dx = dx'[b : b + in]``. A phase no tap
    reaches (gaps, ``k d < s``) is zero. Overlapping windows that picked the same
    element add, as in the scatter; nothing is scattered. The origin is ``b = lo``,
    the padded input's start (every ``m_t >= 0``), where the padding is small, and
    ``b = 0`` (negative ``m_t`` crop) where a large padding would make ``dx'`` large.
    """
    first = geometry.first_spatial_axis
    spatial = range(len(geometry.window))
    small = all(lo <= n for (lo, _), n in zip(geometry.padding, geometry.in_spatial))
    origin = [lo if small else 0 for lo, _ in geometry.padding]
    extent = [b + n for b, n in zip(origin, geometry.in_spatial)]
    phases_per_dim = [min(s, e) for s, e in zip(geometry.stride, extent)]
    q = [-(-e // s) for e, s in zip(extent, geometry.stride)]
    zero = jnp.zeros((), g.dtype)
    phases = {}
    for index, t in enumerate(geometry.tap_offsets):
        if any(i0 >= i1 for i0, i1 in tap_ranges(geometry, t)):
            continue  # this tap reads padding in every window: never picked
        offsets = tap_offsets_of(geometry, t)
        shift_and_phase = [divmod(o + b, s) for o, b, s in zip(offsets, origin, geometry.stride)]
        r = tuple(phase for _, phase in shift_and_phase)
        if any(r_d >= p for r_d, p in zip(r, phases_per_dim)):
            continue  # lands past the input's end (s > b + in)
        masked = jnp.where(taps == index, g, zero)
        shift = [(0, 0, 0)] * g.ndim
        for d in spatial:  # window i lands at q = i + m: pad m before (crop when negative), crop or pad to Q after
            m = shift_and_phase[d][0]
            shift[first + d] = (m, q[d] - geometry.out_spatial[d] - m, 0)
        shifted = lax.pad(masked, zero, shift)
        phases[r] = shifted if r not in phases else phases[r] + shifted
    phase_shape = batched_shape(g.shape, geometry, tuple(q))

    def interleave(r: tuple[int, ...]) -> jax.Array:
        """Phases ``r + (0..P_d - 1, *)`` interleaved along spatial dims ``d = len(r)`` onwards."""
        d = len(r)
        if d == len(geometry.window):
            return phases.get(r, jnp.zeros(phase_shape, g.dtype))
        axis = first + d
        stacked = jnp.stack([interleave((*r, r_d)) for r_d in range(phases_per_dim[d])], axis=axis + 1)
        merged = stacked.shape[axis] * stacked.shape[axis + 1]
        return stacked.reshape(*stacked.shape[:axis], merged, *stacked.shape[axis + 2 :])

    dx = interleave(())
    start = batched_shape((0,) * g.ndim, geometry, tuple(origin))
    return lax.slice(dx, start, batched_shape(dx.shape, geometry, tuple(extent)))


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
    equals PyTorch's ``MaxUnpool``; where switches coincide (overlapping
    windows that picked the same element) PyTorch keeps one of the values, and
    convgrad adds them: the one deliberate difference, which makes ``max_unpool``
    the exact adjoint. Its own VJP is that gather::

        dy[n, c, i] = g[n, c, switches[n, c, i]]

    and ``switches``, an integer argument, gets a ``float0`` (zero) cotangent.

    Switch values cannot be checked under ``jit``: a switch outside
    ``[0, P)`` (negative ones included, never wrapped) is dropped: its value
    lands nowhere and its gradient is zero. It never spills into another plane.

    Args:
      y: values, ``(N, C, *spatial)`` (or ``(N, *spatial, C)`` with
        ``channel_axis=-1``) with as many spatial dims as ``output_size`` has
        entries, or the same without ``N``. Floating dtype; any size may be 0.
      switches: integer array of ``y``'s shape: flat indices into each
        ``(n, c)`` plane of the result.
      output_size: the result's spatial size, one int ``>= 0`` per spatial dim
        (e.g. the spatial shape of the pooled ``x``).
      channel_axis: ``1`` (channel-first, the default) or ``-1`` (channels-last).

    Returns:
      ``x``, ``(N, C, *output_size)`` (or ``(N, *output_size, C)``, or without
      ``N`` like ``y``) in ``y``'s dtype.

    Raises:
      TypeError: ``y`` is not a floating array, ``switches`` not an integer
        array, ``output_size`` not a sequence of ints.
      ValueError: ``switches`` and ``y`` differ in shape; ``y``'s rank fits
        neither reading of ``output_size`` (batched or unbatched); a negative
        size; a plane of ``P`` positions that ``switches``' dtype cannot index;
        a result too large for the device's memory (the message gives the bytes).

    Examples:
      Two values to positions 1 and 3 of a plane of 4; then two values that
      share position 0 add up:

      >>> import jax.numpy as jnp
      >>> from convgrad import max_unpool
      >>> max_unpool(jnp.array([[[5.0, 7.0]]]), jnp.array([[[1, 3]]]), (4,))
      Array([[[0., 5., 0., 7.]]], dtype=float32)
      >>> max_unpool(jnp.array([[[5.0, 7.0]]]), jnp.array([[[0, 0]]]), (2,))
      Array([[[12.,  0.]]], dtype=float32)

    References:
      PyTorch, ``torch.nn.MaxUnpool2d``:
      https://pytorch.org/docs/stable/generated/torch.nn.MaxUnpool2d.html ;
      Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks" (2014).
    """
    y, switches, output_size, channels_last, batched = unpool_arguments(
        "max_unpool", y, switches, output_size, channel_axis
    )
    return _max_unpool(output_size, channels_last, batched, y, switches)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _max_unpool(
    output_size: tuple[int, ...], channels_last: bool, batched: bool, y: jax.Array, switches: jax.Array
) -> jax.Array:
    return unpool(y, switches, output_size, channels_last, batched)


def _max_unpool_fwd(output_size, channels_last, batched, y, switches):
    """Save only the switches: the map is linear in ``y``, so its transpose does not need ``y``."""
    return unpool(y, switches, output_size, channels_last, batched), switches


def _max_unpool_bwd(output_size, channels_last, batched, switches, g):
    """``(dy, dswitches)``: the gather of the docstring, and ``float0`` zeros for the integer switches."""
    g_first, switches_first = (_channel_first(a, channels_last, batched) for a in (g, switches))
    dy = _from_channel_first(gather_at_switches(g_first, switches_first), channels_last, batched)
    return dy, np.zeros(switches.shape, jax.dtypes.float0)


_max_unpool.defvjp(_max_unpool_fwd, _max_unpool_bwd)


def unpool(
    values: jax.Array, switches: jax.Array, output_size: tuple[int, ...], channels_last: bool, batched: bool = True
) -> jax.Array:
    """:func:`scatter_to_switches` in any layout (moved to batched channel-first and back)."""
    values_first, switches_first = (_channel_first(a, channels_last, batched) for a in (values, switches))
    return _from_channel_first(scatter_to_switches(values_first, switches_first, output_size), channels_last, batched)


def scatter_to_switches(values: jax.Array, switches: jax.Array, output_size: tuple[int, ...]) -> jax.Array:
    """``x[n, c, p] = sum_{i : switches[n, c, i] = p} values[n, c, i]``: a scatter-ADD into zero planes of ``P``."""
    batch, channels = values.shape[:2]
    plane, planes = math.prod(output_size), batch * channels
    if planes == 0 or plane == 0 or values.size == 0:  # nothing to place, or nowhere to place it
        return jnp.zeros((batch, channels, *output_size), values.dtype)
    count = math.prod(values.shape[2:])
    rows = jnp.arange(planes)[:, None]
    columns = _plane_columns(switches, plane).reshape(planes, count)
    zeros = jnp.zeros((planes, plane), values.dtype)
    x = zeros.at[rows, columns].add(values.reshape(planes, count), mode="drop")
    return x.reshape(batch, channels, *output_size)


def gather_at_switches(x: jax.Array, switches: jax.Array) -> jax.Array:
    """``dy[n, c, i] = x[n, c, switches[n, c, i]]`` over flat planes (0 for a switch outside the plane)."""
    batch, channels = x.shape[:2]
    plane, planes, count = math.prod(x.shape[2:]), batch * channels, math.prod(switches.shape[2:])
    if planes == 0 or plane == 0 or count == 0:  # nothing to pick, or nothing to pick from: zeros
        return jnp.zeros(switches.shape, x.dtype)
    rows = jnp.arange(planes)[:, None]
    columns = _plane_columns(switches, plane).reshape(planes, count)
    picked = jnp.asarray(x).reshape(planes, plane).at[rows, columns].get(mode="fill", fill_value=0)
    return picked.reshape(switches.shape)


def _plane_columns(switches: jax.Array, plane: int) -> jax.Array:
    """``switches`` where in ``[0, plane)``, else ``plane`` (out of bounds, so dropped/filled rather than wrapped)."""
    return jnp.where((switches >= 0) & (switches < plane), switches, plane)


def _channel_first(a: jax.Array, channels_last: bool, batched: bool) -> jax.Array:
    """``a`` as ``(N, C, *spatial)``: a batch axis added when ``a`` has none, the channel axis moved to 1."""
    a = a if batched else a[None]
    return jnp.moveaxis(a, -1, 1) if channels_last else a


def _from_channel_first(a: jax.Array, channels_last: bool, batched: bool) -> jax.Array:
    """Inverse of :func:`_channel_first`."""
    a = jnp.moveaxis(a, 1, -1) if channels_last else a
    return a if batched else a[0]


# ---------------------------------------------------------------------------- avg_pool


def avg_pool(
    x: ArrayLike,
    window: int | tuple[int, ...],
    stride: int | tuple[int, ...] | None = None,
    padding: int | tuple[int, ...] | tuple[Pair, ...] = 0,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: int | None = None,
    channel_axis: int = 1,
) -> jax.Array:
    r"""Average pooling over 1 to 3 spatial dims, PyTorch's ``avg_pool{1,2,3}d`` argument by argument.

    With ``x_pad`` zero-padded by ``(lo, hi)``, in 2-D::

        y[n, c, i, j] = (1 / D[i, j]) sum_{kh < k_h, kw < k_w} x_pad[n, c, i s_h + kh, j s_w + kw]

    where taps past the padding (a ``ceil_mode`` window) add nothing, and the
    divisor, per window, is PyTorch's: ``divisor_override`` if given; else, with
    ``count_include_pad`` (the default), the number of the window's taps inside
    the PADDED input, ``D = prod_d (min(i_d s_d - lo_d + k_d, in_d + hi_d) -
    (i_d s_d - lo_d))`` (``k_h k_w`` except for a ceil-mode window cut short);
    without it, the number of taps inside the input,
    ``D = prod_d (min(i_d s_d - lo_d + k_d, in_d) - max(i_d s_d - lo_d, 0))``.

    ``y`` is linear in ``x``; for a cotangent ``g`` shaped like ``y`` each
    ``g / D`` goes back to every input tap of its window, adding where windows
    overlap::

        dx[n, c, h, w] = sum_{i, j, kh, kw : i s_h + kh - p_h = h, j s_w + kw - p_w = w} g[n, c, i, j] / D[i, j]

    This is the transposed convolution of ``g / D`` with a depthwise kernel of
    ones. Written per tap ``(kh, kw)``: the forward reads the strided slice
    ``x_pad[kh :: s_h, kw :: s_w]``, whose transpose inserts ``s - 1`` zeros
    between the samples of ``g / D`` and shifts them to start at ``kh - p_h`` (a
    ``lax.pad``, see :func:`~convgrad.ops.geometry.tap_grad_padding`); ``dx`` is
    the sum of the ``K`` shifted copies. When the windows tile the input
    (``s = k``, no padding, no partial window) both directions are a mean over,
    and a broadcast along, the window axes of a reshape (:func:`tile_windows`).
    Sums of 16-bit inputs accumulate in float32. The number of spatial dims and
    the unbatched input follow :func:`max_pool`'s rule.

    Args:
      x: input, ``(N, C, *in)`` (or ``(N, *in, C)`` with ``channel_axis=-1``)
        with 1 to 3 spatial dims, or the same without ``N``. Floating dtype;
        any size may be 0.
      window, stride, padding, ceil_mode, channel_axis: as for :func:`max_pool`
        (no dilation: PyTorch's average pools have none), padding below ``k``.
      count_include_pad: whether the zero padding counts in the divisor (a bool).
      divisor_override: a nonzero int that replaces every window's divisor, or
        ``None``.

    Returns:
      ``y``, ``(N, C, *out)`` (or ``(N, *out, C)``, or without ``N`` like ``x``)
      in ``x``'s dtype, ``out`` as for :func:`max_pool` with ``d = 1``.

    Raises:
      TypeError: as for :func:`max_pool`; ``count_include_pad`` not a bool;
        ``divisor_override`` neither ``None`` nor an int.
      ValueError: as for :func:`max_pool`; ``divisor_override=0``.

    Examples:
      Windows of 2 over ``[1, 2, 3, 6]``: means 1.5 and 4.5; each input gets a
      half of its window's cotangent. With padding 1 the first window is
      ``[0, 1]``: the pad counts (``0.5``) unless ``count_include_pad=False``:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import avg_pool
      >>> x = jnp.array([[[1.0, 2.0, 3.0, 6.0]]])
      >>> avg_pool(x, 2), jax.grad(lambda x: avg_pool(x, 2).sum())(x)
      (Array([[[1.5, 4.5]]], dtype=float32), Array([[[0.5, 0.5, 0.5, 0.5]]], dtype=float32))
      >>> avg_pool(x, 2, padding=1), avg_pool(x, 2, padding=1, count_include_pad=False)
      (Array([[[0.5, 2.5, 3. ]]], dtype=float32), Array([[[1. , 2.5, 6. ]]], dtype=float32))

    References:
      PyTorch, ``torch.nn.AvgPool2d`` (``ceil_mode``, ``count_include_pad``,
      ``divisor_override``): https://pytorch.org/docs/stable/generated/torch.nn.AvgPool2d.html
    """
    x, geometry = pool_arguments("avg_pool", x, window, stride, padding, channel_axis, 1, ceil_mode)
    count_include_pad = arguments.as_bool("avg_pool", "count_include_pad", count_include_pad)
    if divisor_override is not None:
        divisor_override = arguments.as_int("avg_pool", "divisor_override", divisor_override, -(2**63))
        if divisor_override == 0:
            raise ValueError("avg_pool: divisor_override must be a nonzero int or None, got divisor_override=0")
    return _avg_pool(geometry, count_include_pad, divisor_override, x)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1, 2))
def _avg_pool(geometry: PoolGeometry, count_include_pad: bool, divisor_override: int | None, x: jax.Array) -> jax.Array:
    divisor = avg_pool_divisors(geometry, count_include_pad, divisor_override)
    return without_batch_axis(avg_pool_forward(with_batch_axis(x, geometry), geometry, divisor), geometry)


def _avg_pool_fwd(geometry, count_include_pad, divisor_override, x):
    """Save nothing: the map is linear in ``x`` and its transpose needs only the geometry and the divisors."""
    divisor = avg_pool_divisors(geometry, count_include_pad, divisor_override)
    return without_batch_axis(avg_pool_forward(with_batch_axis(x, geometry), geometry, divisor), geometry), None


def _avg_pool_bwd(geometry, count_include_pad, divisor_override, _, g):
    """``dx``: the formula of the docstring."""
    divisor = avg_pool_divisors(geometry, count_include_pad, divisor_override)
    return (without_batch_axis(avg_pool_input_grad(with_batch_axis(g, geometry), geometry, divisor), geometry),)


_avg_pool.defvjp(_avg_pool_fwd, _avg_pool_bwd)


def avg_pool_forward(x: jax.Array, geometry: PoolGeometry, divisor: int | np.ndarray) -> jax.Array:
    """``y = (1 / D) sum_t x_pad[.., i s + t]``: the ``K`` tap slices of the zero-padded input, summed, over ``D``."""
    x_acc = x.astype(accumulator_dtype(x.dtype))
    if x.size == 0:
        return jnp.zeros(batched_shape(x.shape, geometry, geometry.out_spatial), x.dtype)
    if geometry.non_overlapping:
        total = jnp.sum(tile_windows(x_acc, geometry), axis=window_axes(geometry))
    else:
        total = sum(window_taps(x_acc, geometry, 0.0))
    return (total / divisor).astype(x.dtype)


def avg_pool_divisors(
    geometry: PoolGeometry, count_include_pad: bool, divisor_override: int | None
) -> int | np.ndarray:
    """``D``, every window's divisor: an int when all are equal, else a static table shaped to broadcast against ``y``.

    Per spatial dim, window ``i`` starts at ``a = i s - lo``; it counts the taps in
    ``[a, min(a + k, in + hi))`` (the padded input; ``count_include_pad``) or in
    ``[max(a, 0), min(a + k, in))`` (the input), and ``D`` is the product over dims.
    """
    if divisor_override is not None:
        return divisor_override
    per_dim = []
    for n, k, s, (lo, hi), o in zip(
        geometry.in_spatial, geometry.window, geometry.stride, geometry.padding, geometry.out_spatial
    ):
        start = np.arange(o) * s - lo
        if count_include_pad:
            per_dim.append(np.minimum(start + k, n + hi) - start)
        else:
            per_dim.append(np.minimum(start + k, n) - np.maximum(start, 0))
    table = np.ones((), np.int64)
    for counts in per_dim:
        table = np.multiply.outer(table, counts)
    if table.size and (table == table.flat[0]).all():
        return int(table.flat[0])
    return table[..., None] if geometry.channels_last else table


def avg_pool_input_grad(g: jax.Array, geometry: PoolGeometry, divisor: int | np.ndarray) -> jax.Array:
    """``dx = sum_t spread(g / D, t)``: each ``g / D`` back to every tap of its window."""
    if g.size == 0:
        return jnp.zeros(batched_shape(g.shape, geometry, geometry.in_spatial), g.dtype)
    g_per_tap = g.astype(accumulator_dtype(g.dtype)) / divisor
    if geometry.non_overlapping:
        axes = window_axes(geometry)
        shape = list(g_per_tap.shape)
        for axis, k in zip(axes, geometry.window):
            shape.insert(axis, k)
        return untile(jnp.broadcast_to(jnp.expand_dims(g_per_tap, axes), shape), geometry).astype(g.dtype)
    return spread_to_taps(g_per_tap, geometry).astype(g.dtype)


# ---------------------------------------------------------------------------- layouts


def in_computation_layout(f: Callable[..., Any], geometry: PoolGeometry, *arrays: jax.Array) -> Any:
    """``f(*arrays, inner)`` in the layout max pooling is computed in, its results given back in ``arrays``' layout.

    ``arrays`` (``x``, or ``g`` and the saved taps) are laid out as ``geometry`` says;
    ``f`` gets them with a batch axis and the batched geometry ``inner``, and returns
    arrays laid out like them. On CPU, tiled windows over a channel-first input with at
    least :data:`CHANNELS_LAST_MIN_CHANNELS` channels are computed channels-last: each
    array moves its channel axis last (``a_last[n, *i, c] = a[n, c, *i]``), ``f`` runs
    with ``channels_last=True``, and each result moves it back. Pooling treats every
    ``(n, c)`` plane alike, so this is the same map, value for value (switches index the
    plane, whatever the layout). In the backward the transpose of a permutation of axes
    is the inverse permutation, so the cotangent takes the same two moves as the input.

    Why: channel-first, the minor axis of a 2x2 window's taps holds 2 elements, and XLA's
    CPU loops over it do not vectorize (``docs/performance.md``); channels-last the minor
    axis is the channels. Between two ops that both compute channels-last inside (the
    convolutions' fast formulations, this), XLA cancels the transposes. Other geometries
    (measured: no faster channels-last alone), fewer channels (slower), and other
    platforms (not measured) run in the input's layout (``lax.platform_dependent``).
    """
    batched = [with_batch_axis(a, geometry) for a in arrays]
    inner = dataclasses.replace(geometry, batched=True)
    if geometry.channels_last or not geometry.non_overlapping or batched[0].shape[1] < CHANNELS_LAST_MIN_CHANNELS:
        results = f(*batched, inner)
    else:
        last = dataclasses.replace(inner, channels_last=True)

        def channels_last(*arrays):
            results = f(*(jnp.moveaxis(a, 1, -1) for a in arrays), last)
            return jax.tree.map(lambda r: jnp.moveaxis(r, -1, 1), results)

        results = lax.platform_dependent(*batched, cpu=channels_last, default=lambda *arrays: f(*arrays, inner))
    return jax.tree.map(lambda r: without_batch_axis(r, geometry), results)


# On CPU, channel-first max pooling over tiled windows with at least this many channels runs channels-last
# inside (in_computation_layout). Measured (docs/performance.md, `python docs/layout_benchmark.py threshold`:
# the 2x2 VJP of 3.2M elements alone, both transposes paid): channels-last 1.3-1.8x faster at 16 to 64
# channels, 0.7x at 2 to 8, 0.9x at 1. Inside a network the transposes cancel (the MNIST cnn's step).
CHANNELS_LAST_MIN_CHANNELS = 16


def with_batch_axis(a: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """``a`` with a batch axis of 1 in front when the pooling's input came without one."""
    return a if geometry.batched else a[None]


def without_batch_axis(a: jax.Array, geometry: PoolGeometry) -> jax.Array:
    """Inverse of :func:`with_batch_axis`."""
    return a if geometry.batched else a[0]


def batched_shape(shape: tuple[int, ...], geometry: PoolGeometry, spatial: tuple[int, ...]) -> tuple[int, ...]:
    """A batched array's ``shape`` with its spatial dims replaced by ``spatial``."""
    first = geometry.first_spatial_axis
    return (*shape[:first], *spatial, *shape[first + len(spatial) :])


# ---------------------------------------------------------------------------- arguments


def spatial_dims(op: str, name: str, value: object, x_name: str, x: jax.Array) -> tuple[int, bool]:
    """``(n, batched)``: ``n = len(value)`` for a tuple ``window`` / ``output_size``, else ``x.ndim - 2``.

    With a tuple, ``x`` is batched when it has ``n + 2`` dims and unbatched with
    ``n + 1`` (PyTorch's rule); an int reads ``x`` as batched.
    """
    if isinstance(value, Sequence) and not isinstance(value, str):
        n = len(value)
        if not 1 <= n <= 3:
            raise ValueError(f"{op}: {name} must have 1 to 3 entries (one per spatial dim), got {name}={value!r}")
        if x.ndim in (n + 1, n + 2):
            return n, x.ndim == n + 2
        raise ValueError(
            f"{op}: {name}={value!r} has {n} entr{'y' if n == 1 else 'ies'} ({n} spatial dim{'s' if n > 1 else ''}), "
            f"so {x_name} must be batched, rank {n + 2} (N, C and {n} spatial), or unbatched, rank {n + 1} "
            f"(C and {n} spatial), got {x_name}.shape={tuple(x.shape)}"
        )
    arguments.ndim_between(op, x_name, x, 3, 5, "(N, C, *spatial) with 1 to 3 spatial dims")
    return x.ndim - 2, True


def pool_arguments(
    op, x, window, stride, padding, channel_axis=1, dilation=1, ceil_mode=False
) -> tuple[jax.Array, PoolGeometry]:
    """The checked input and the :class:`PoolGeometry` of ``max_pool`` / ``avg_pool``."""
    x = arguments.as_float_array(op, "x", x)
    n, batched = spatial_dims(op, "window", window, "x", x)
    channels_last = arguments.channels_last_axis(op, channel_axis, x.ndim + (0 if batched else 1))
    window_tuple = arguments.as_tuple(op, "window", window, n)
    stride_tuple = window_tuple if stride is None else arguments.as_tuple(op, "stride", stride, n)
    dilation_tuple = arguments.as_tuple(op, "dilation", dilation, n)
    ceil_mode = arguments.as_bool(op, "ceil_mode", ceil_mode)
    pairs = arguments.as_padding(op, padding, n, allow_strings=False)
    spatial_shape = x.shape[:-1] if channels_last else x.shape[1:]
    in_spatial = tuple(spatial_shape[-n:])
    for axis, (k, d, (lo, hi)) in enumerate(zip(window_tuple, dilation_tuple, pairs)):
        extent = dilated_size(k, d)
        if lo >= extent or hi >= extent:
            shown = f"window={window!r}" if d == 1 else f"the dilated window (k - 1) d + 1 = {extent}"
            raise ValueError(
                f"{op}: padding={padding!r} must be smaller than {shown} on both sides of every spatial dim, so "
                f"that every window holds an input element; spatial dim {axis} has (lo, hi)=({lo}, {hi}) and "
                f"window {k}" + (f", dilation {d}" if d != 1 else "")
            )
    geometry = PoolGeometry(
        window_tuple, stride_tuple, pairs, dilation_tuple, in_spatial, ceil_mode, channels_last, batched
    )
    for axis, (i, k, s, p, d) in enumerate(zip(in_spatial, window_tuple, stride_tuple, pairs, dilation_tuple)):
        if i > 0 and pool_output_size(i, k, s, p, d, ceil_mode) < 1:
            raise ValueError(
                f"{op}: output would be empty along spatial dim {axis}: input size {i} + padding {p} is smaller "
                f"than the window {dilated_size(k, d)} (x.shape={tuple(x.shape)})"
            )
        _every_window_reads_the_input(op, geometry, axis, x.shape)
    plane = math.prod(in_spatial)
    if plane - 1 > jnp.iinfo(jnp.int32).max:
        raise ValueError(
            f"{op}: x's spatial planes hold {plane} elements (x.shape={tuple(x.shape)}); int32 switches index at "
            f"most {jnp.iinfo(jnp.int32).max + 1}"
        )
    return x, geometry


def _every_window_reads_the_input(op: str, geometry: PoolGeometry, axis: int, shape: tuple[int, ...]) -> None:
    """Along spatial dim ``axis``, each window has a tap ``0 <= i s + t d - lo < in`` (dilated windows may not)."""
    n, o = geometry.in_spatial[axis], geometry.out_spatial[axis]
    covered = np.zeros(o, bool)
    for t in range(geometry.window[axis]):
        offset = t * geometry.dilation[axis] - geometry.padding[axis][0]
        i = np.arange(o)
        covered |= (i * geometry.stride[axis] + offset >= 0) & (i * geometry.stride[axis] + offset < n)
    if not covered.all():
        i = int(np.flatnonzero(~covered)[0])
        raise ValueError(
            f"{op}: window {i} along spatial dim {axis} holds no input element (window={geometry.window[axis]}, "
            f"stride={geometry.stride[axis]}, dilation={geometry.dilation[axis]}, padding={geometry.padding[axis]}, "
            f"input size {n}; x.shape={tuple(shape)}): every tap reads padding"
        )


def unpool_arguments(op, y, switches, output_size, channel_axis=1) -> tuple[jax.Array, jax.Array, tuple, bool, bool]:
    """The checked values, switches, output size, layout and whether ``y`` has a batch axis, of ``max_unpool``."""
    y = arguments.as_float_array(op, "y", y)
    switches = arguments.as_int_array(op, "switches", switches, "flat indices into each plane")
    if switches.shape != y.shape:
        raise ValueError(
            f"{op}: switches must have the shape of y, got switches.shape={tuple(switches.shape)} "
            f"and y.shape={tuple(y.shape)}"
        )
    expected = f"{op}: output_size must be a sequence of 1 to 3 ints >= 0 (one per spatial dim of y), got "
    if not isinstance(output_size, Sequence) or isinstance(output_size, str):
        raise TypeError(expected + f"output_size={output_size!r}")
    try:
        sizes = tuple(arguments.as_int(op, "output_size", size, 0) for size in output_size)
    except (TypeError, ValueError) as error:
        raise type(error)(expected + f"output_size={output_size!r}") from None
    n, batched = spatial_dims(op, "output_size", sizes, "y", y)
    channels_last = arguments.channels_last_axis(op, channel_axis, y.ndim + (0 if batched else 1))
    plane = math.prod(sizes)
    leading = y.shape[: y.ndim - n - (1 if channels_last else 0)]
    out_shape = (*leading, *sizes, *y.shape[-1:]) if channels_last else (*leading, *sizes)
    arguments.fits_in_memory(op, "output", out_shape, y.dtype, f"output_size={output_size!r}")
    if plane > jnp.iinfo(switches.dtype).max:  # the flat indices 0..P-1, and P for "out of range", must fit
        raise ValueError(
            f"{op}: output_size={output_size!r} has {plane} positions per plane, more than switches.dtype="
            f"{switches.dtype} can index (at most {jnp.iinfo(switches.dtype).max})"
        )
    return y, switches, sizes, channels_last, batched
