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

from convgrad.ops.geometry import ConvGeometry, input_grad_padding, weight_grad_padding
from convgrad.ops.precision import accumulator_dtype


def conv_forward(x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """``y = x * w + b`` as one ``lax.conv_general_dilated`` with convgrad's padding pairs."""
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=geometry.stride,
        padding=geometry.padding,
        rhs_dilation=geometry.dilation,
        dimension_numbers=geometry.dn,
        feature_group_count=geometry.groups,
    )
    if b is None:
        return y
    return y + b.reshape([-1 if axis == geometry.dn.out_spec[1] else 1 for axis in range(y.ndim)])


def flip_and_swap(w: jax.Array, groups: int = 1, rhs_spec: tuple[int, ...] | None = None) -> jax.Array:
    """The kernel of the input-gradient convolution: ``w_t[c, o', *k] = w[o, c', *(K - 1 - k)]`` per group.

    Flips every spatial axis and swaps in/out channels within each of the
    ``groups`` groups: ``(O, C/G, *k) -> (C, O/G, *k)``, in the same layout
    (``rhs_spec`` gives the out-channel, in-channel and spatial axes; default
    ``OI*``). Group ``g``'s block ``w[g O/G:(g+1) O/G, :]`` becomes
    ``w_t[g C/G:(g+1) C/G, :]``, transposed.
    """
    rhs_spec = tuple(range(w.ndim)) if rhs_spec is None else rhs_spec
    o_axis, i_axis = rhs_spec[0], rhs_spec[1]
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
    """
    dn = geometry.dn
    out_spatial = tuple(g.shape[a] for a in dn.out_spec[2:])
    kernel_spatial = tuple(w.shape[a] for a in dn.rhs_spec[2:])
    padding = tuple(
        input_grad_padding(n_in, k, s, p, d, n_out)
        for n_in, k, s, p, d, n_out in zip(
            in_spatial, kernel_spatial, geometry.stride, geometry.padding, geometry.dilation, out_spatial
        )
    )
    return lax.conv_general_dilated(
        g,
        flip_and_swap(w, geometry.groups, dn.rhs_spec),
        window_strides=(1,) * len(in_spatial),
        padding=padding,
        lhs_dilation=geometry.stride,
        rhs_dilation=geometry.dilation,
        dimension_numbers=lax.ConvDimensionNumbers(dn.out_spec, dn.rhs_spec, dn.lhs_spec),
        feature_group_count=geometry.groups,
    )


def conv_weight_grad(x: jax.Array, g: jax.Array, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]) -> jax.Array:
    """``dw``: the input correlated with the cotangent, contracting the batch (the textbook formulation).

    The roles swap: the input's channels act as this convolution's batch and its
    batch as the contracted feature; the cotangent is the kernel (out-features
    ``O``, in-features ``N``), dilated by the forward stride ``s``; windows step
    by the forward dilation ``d``. With ``G`` groups, ``batch_group_count = G``
    pairs input-channel group ``g`` with output-channel group ``g``, giving
    ``(O, C/G, *k)`` laid out like ``w``.
    """
    dn = geometry.dn
    in_spatial = tuple(x.shape[a] for a in dn.lhs_spec[2:])
    out_spatial = tuple(g.shape[a] for a in dn.out_spec[2:])
    padding = tuple(
        weight_grad_padding(n_in, k, s, p, d, n_out)
        for n_in, k, s, p, d, n_out in zip(
            in_spatial, kernel_spatial, geometry.stride, geometry.padding, geometry.dilation, out_spatial
        )
    )
    swap = lambda spec: (spec[1], spec[0], *spec[2:])
    return lax.conv_general_dilated(
        x,
        g,
        window_strides=geometry.dilation,
        padding=padding,
        rhs_dilation=geometry.stride,
        dimension_numbers=lax.ConvDimensionNumbers(swap(dn.lhs_spec), swap(dn.out_spec), swap(dn.rhs_spec)),
        batch_group_count=geometry.groups,
    )


def conv_bias_grad(g: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """``db[o] = sum_{n, *i} g[n, o, *i]``, accumulated in at least float32."""
    axes = (geometry.dn.out_spec[0], *geometry.dn.out_spec[2:])
    return jnp.sum(g, axis=axes, dtype=accumulator_dtype(g.dtype))
