"""The textbook formulation: conv's forward and its two gradients as lax convolutions, and the bias gradient.

What every other formulation is checked against, and what runs on GPU/TPU. The input
gradient is the zero-inserted cotangent correlated with the flipped, channel-swapped kernel
(:func:`flip_and_swap`); the weight gradient is the input correlated with the cotangent; the
bias gradient is a sum. :func:`convgrad.conv_transpose` is made of these same pieces.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.geometry import ConvGeometry, dilated_extent, input_grad_padding, weight_grad_padding
from convgrad.ops.precision import accumulator_dtype


def conv_forward(x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """``y = x * w + b`` as one ``lax.conv_general_dilated`` with convgrad's padding pairs."""
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=geometry.stride,
        padding=geometry.padding,
        lhs_dilation=geometry.lhs_dilation,
        rhs_dilation=geometry.dilation,
        dimension_numbers=geometry.dn,
        feature_group_count=geometry.groups,
        batch_group_count=geometry.batch_groups,
        precision=geometry.precision,
        preferred_element_type=geometry.preferred_element_type,
    )
    return add_bias(y, b, geometry)


def add_bias(y: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """``y + b`` with ``b[o]`` broadcast along the output's channel axis (``y`` itself when ``b`` is ``None``)."""
    if b is None:
        return y
    return y + b.reshape([-1 if axis == geometry.dn.out_spec[1] else 1 for axis in range(y.ndim)])


def flip_and_swap(w: ArrayLike, groups: int = 1, rhs_spec: tuple[int, ...] | None = None) -> jax.Array:
    r"""The kernel of the input-gradient convolution: ``w_t[c, o', *k] = w[o, c', *(K - 1 - k)]`` per group.

    Flips every spatial axis and swaps in/out channels within each of the
    ``G = groups`` groups, ``(O, C/G, *k) -> (C, O/G, *k)``, in the same
    layout (``rhs_spec`` gives the out-channel, in-channel and spatial axes;
    default ``OI*``). Group ``g``'s block ``w[g O/G:(g+1) O/G, :]`` becomes
    ``w_t[g C/G:(g+1) C/G, :]``, transposed::

        w_t[g C/G + c', o', *kk] = w[g O/G + o', c', *(K - 1 - kk)]

    It is linear and its own inverse up to the channel layout (flipping twice is
    the identity), so it has no VJP of its own: JAX transposes its reverse and
    reshapes.

    Args:
      w: a kernel ``(O, C/G, *k)`` (or laid out by ``rhs_spec``), any dtype.
      groups: ``G``, dividing ``O``.
      rhs_spec: lax's ``rhs_spec`` of ``w`` (out-channel axis, in-channel axis,
        spatial axes); ``None`` for ``(0, 1, 2, ...)``.

    Returns:
      ``w_t``, ``(C, O/G, *k)`` in the layout of ``w``.

    Raises:
      ValueError: ``groups`` does not divide the out-channel axis.

    Examples:
      One 1-d filter per group, two groups, flipped in space and moved to the
      channel that reads it:

      >>> import jax.numpy as jnp
      >>> from convgrad import flip_and_swap
      >>> w = jnp.array([[[1.0, 2.0, 3.0]], [[4.0, 5.0, 6.0]]])   # (O=2, C/G=1, k=3), groups=2
      >>> flip_and_swap(w, groups=2)
      Array([[[3., 2., 1.]],
      <BLANKLINE>
             [[6., 5., 4.]]], dtype=float32)

    References:
      Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
      (2016), section 4; JAX's ``_conv_general_dilated_transpose_lhs``.
    """
    w = jnp.asarray(w)
    rhs_spec = tuple(range(w.ndim)) if rhs_spec is None else tuple(rhs_spec)
    o_axis, i_axis = rhs_spec[0], rhs_spec[1]
    groups = arguments.as_int("flip_and_swap", "groups", groups, 1)
    arguments.groups_divide("flip_and_swap", groups, "out_channels", w.shape[o_axis], "w", w.shape)
    flipped = lax.rev(w, rhs_spec[2:])
    w_oi = jnp.moveaxis(flipped, (o_axis, i_axis), (0, 1))  # (O, C/G, *k)
    out_channels, group_channels = w_oi.shape[:2]
    blocks = w_oi.reshape(groups, out_channels // groups, group_channels, *w_oi.shape[2:])
    swapped = jnp.swapaxes(blocks, 1, 2)  # (G, C/G, O/G, *k)
    w_t = swapped.reshape(groups * group_channels, out_channels // groups, *w_oi.shape[2:])
    return jnp.moveaxis(w_t, (0, 1), (o_axis, i_axis))


def conv_input_grad(g: jax.Array, w: jax.Array, geometry: ConvGeometry, in_spatial: tuple[int, ...]) -> jax.Array:
    """``dx``: the zero-inserted, padded cotangent correlated with ``flip_and_swap(w)`` (the textbook formulation).

    ``lhs_dilation = s`` is the zero insertion (``s - 1`` zeros between
    cotangent samples), ``rhs_dilation = d`` spaces the flipped taps as in the
    forward pass, and the cotangent now plays the input: its layout is the
    forward's output layout and the result comes out in the input layout.

    lax's extra arguments: with the forward's input dilated by ``a``, the
    correlation gives the gradient of every sample of the dilated input and
    only every ``a``-th of them is an input sample, so its window stride is
    ``a`` (the padding is that of the dilated input, ``dilated_extent(in, a)``
    samples). With ``B`` batch groups, output channel ``o`` of group
    ``b = o // (O/B)`` read batch ``b N/B + n``: the kernel is flipped and
    swapped with ``B`` groups, ``(O, C) -> (B C, O/B)``, so that the result's
    channel ``b C + c`` holds that group's gradient, which then moves to the
    batch axis (:func:`batch_groups_to_batch`). Products are those of the
    cotangent's dtype (the kernel is cast to it), as in JAX's transpose rule.
    """
    dn = geometry.dn
    out_spatial = geometry.out_spatial_of(g.shape)
    kernel_spatial = geometry.kernel_spatial(w.shape)
    padding = tuple(
        input_grad_padding(dilated_extent(n_in, a), k, s, p, d, n_out)
        for n_in, a, k, s, p, d, n_out in zip(
            in_spatial,
            geometry.lhs_dilation,
            kernel_spatial,
            geometry.stride,
            geometry.padding,
            geometry.dilation,
            out_spatial,
        )
    )
    groups = geometry.batch_groups if geometry.batch_groups > 1 else geometry.groups
    w_t = flip_and_swap(w, groups, dn.rhs_spec).astype(g.dtype)
    dx = lax.conv_general_dilated(
        g,
        w_t,
        window_strides=geometry.lhs_dilation,
        padding=padding,
        lhs_dilation=geometry.stride,
        rhs_dilation=geometry.dilation,
        dimension_numbers=lax.ConvDimensionNumbers(dn.out_spec, dn.rhs_spec, dn.lhs_spec),
        feature_group_count=groups,
        precision=geometry.precision,
        preferred_element_type=geometry.preferred_element_type,
    )
    if geometry.batch_groups > 1:
        dx = batch_groups_to_batch(dx, geometry.batch_groups, dn.lhs_spec)
    return dx


def batch_groups_to_batch(dx: jax.Array, batch_groups: int, lhs_spec: tuple[int, ...]) -> jax.Array:
    """Channel ``b C + c`` of batch ``n`` to channel ``c`` of batch ``b N' + n``: ``(N', B C) -> (B N', C)``."""
    n_axis, c_axis = lhs_spec[0], lhs_spec[1]
    moved = jnp.moveaxis(dx, (n_axis, c_axis), (0, 1))  # (N', B C, *spatial)
    batch, channels = moved.shape[:2]
    split = moved.reshape(batch, batch_groups, channels // batch_groups, *moved.shape[2:])
    merged = jnp.swapaxes(split, 0, 1).reshape(batch_groups * batch, channels // batch_groups, *moved.shape[2:])
    return jnp.moveaxis(merged, (0, 1), (n_axis, c_axis))


def conv_weight_grad(x: jax.Array, g: jax.Array, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]) -> jax.Array:
    """``dw``: the input correlated with the cotangent, contracting the batch (the textbook formulation).

    The roles swap: the input's channels act as this convolution's batch and its
    batch as the contracted feature; the cotangent is the kernel (out-features
    ``O``, in-features ``N``), dilated by the forward stride ``s``; windows step
    by the forward dilation ``d``. With ``G`` groups, ``batch_group_count = G``
    pairs input-channel group ``g`` with output-channel group ``g``, giving
    ``(O, C/G, *k)`` laid out like ``w``.

    lax's extra arguments: an input dilated by ``a`` stays dilated here
    (``lhs_dilation = a``). With ``B`` batch groups the contracted "feature"
    ``n = b N' + n'`` splits into ``B`` groups, group ``b`` meeting output
    channels ``b O/B ...``: ``feature_group_count = B``. The input is cast to
    the cotangent's dtype, as in JAX's transpose rule.
    """
    dn = geometry.dn
    in_spatial = geometry.in_spatial(x.shape)
    out_spatial = geometry.out_spatial_of(g.shape)
    padding = tuple(
        weight_grad_padding(dilated_extent(n_in, a), k, s, p, d, n_out)
        for n_in, a, k, s, p, d, n_out in zip(
            in_spatial,
            geometry.lhs_dilation,
            kernel_spatial,
            geometry.stride,
            geometry.padding,
            geometry.dilation,
            out_spatial,
        )
    )
    swap = lambda spec: (spec[1], spec[0], *spec[2:])
    feature_groups, batch_groups = (geometry.batch_groups, 1) if geometry.batch_groups > 1 else (1, geometry.groups)
    return lax.conv_general_dilated(
        x.astype(g.dtype),
        g,
        window_strides=geometry.dilation,
        padding=padding,
        lhs_dilation=geometry.lhs_dilation,
        rhs_dilation=geometry.stride,
        dimension_numbers=lax.ConvDimensionNumbers(swap(dn.lhs_spec), swap(dn.out_spec), swap(dn.rhs_spec)),
        feature_group_count=feature_groups,
        batch_group_count=batch_groups,
        precision=geometry.precision,
        preferred_element_type=geometry.preferred_element_type,
    )


def conv_bias_grad(g: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """``db[o] = sum_{n, *i} g[n, o, *i]``, accumulated in at least float32."""
    axes = (geometry.dn.out_spec[0], *geometry.dn.out_spec[2:])
    return jnp.sum(g, axis=axes, dtype=accumulator_dtype(g.dtype))


def has_no_terms(*arrays: jax.Array) -> bool:
    """Whether any array has a zero-size axis: then every sum of a convolution or of its gradients is empty (0)."""
    return any(a.size == 0 for a in arrays)
