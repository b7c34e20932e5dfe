"""N-d convolution with a hand-derived VJP.

Read top to bottom: the public ``conv`` (the derivation in its docstring), ``_conv_fwd``
(what it saves), ``_conv_bwd`` (the derivation as code), ``defvjp``, and ``conv_arguments``
(the checks at the boundary). PyTorch's ``padding_mode`` is the op :func:`convgrad.pad`
(:mod:`convgrad.ops.padding`) applied first, whose VJP is the padding's adjoint. How the
three convolutions of forward and backward are computed is a formulation of its own:
:mod:`convgrad.ops.conv_textbook` (lax convolutions), :mod:`convgrad.ops.conv_im2col`,
:mod:`convgrad.ops.conv_winograd`, chosen by :mod:`convgrad.ops.conv_formulations`. Shape
arithmetic lives in :mod:`convgrad.ops.geometry`, argument checks in
:mod:`convgrad.ops.arguments`.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from convgrad.ops import arguments, conv_textbook
from convgrad.ops.conv_formulations import FORMULATIONS
from convgrad.ops.conv_im2col import patch_elements
from convgrad.ops.conv_winograd import winograd_applies
from convgrad.ops.geometry import (
    CHANNELS_FIRST,
    ConvGeometry,
    Pair,
    dilated_extent,
    same_lower_padding,
    same_padding,
)
from convgrad.ops.padding import PADDING_MODES, pad_arguments
from convgrad.ops.padding import pad as pad_op
from convgrad.ops.replicas import like_primal


def conv(
    x: ArrayLike,
    w: ArrayLike,
    b: ArrayLike | None = None,
    *,
    stride: int | tuple[int, ...] = 1,
    padding: int | tuple[int, ...] | tuple[Pair, ...] | str = 0,
    dilation: int | tuple[int, ...] = 1,
    groups: int = 1,
    dimension_numbers: tuple[str, str, str] | None = None,
    padding_mode: str = "zeros",
    formulation: str = "auto",
) -> jax.Array:
    r"""Multi-channel N-d convolution ``y = x * w + b`` (a cross-correlation, as in lax and PyTorch).

    With ``G = groups`` the ``C`` input channels and ``O`` output channels are
    split into ``G`` groups; output channel ``o`` sees only the ``C/G`` input
    channels of its group ``g(o) = o // (O/G)``, and ``c = g(o) C/G + c'``.
    ``x_pad`` is ``x`` with ``(lo, hi)`` samples added on each spatial side
    (zeros, or by ``padding_mode``; a negative ``lo``/``hi`` crops). In 2-D, in
    the default layout::

        y[n, o, i, j] = b[o] + sum_{c', kh, kw} x_pad[n, c, i s_h + kh d_h, j s_w + kw d_w] w[o, c', kh, kw]

    For a cotangent ``g`` shaped like ``y`` the backward computes, by hand:

    * input gradient: scatter each ``g[n, o, i, j]`` back through the taps that
      produced it. Written as a convolution: insert ``s - 1`` zeros between the
      samples of ``g`` (``g_up[n, o, s_h i, s_w j] = g[n, o, i, j]``), pad it by
      ``input_grad_padding``, and correlate it with the kernel flipped in space
      and with in/out channels swapped within each group
      (``w_t[c, o', kh, kw] = w[o, c', K_h - 1 - kh, K_w - 1 - kw]``, see
      :func:`flip_and_swap`), at dilation ``d``::

        dx[n, c, h, w] = sum_{o in group(c), kh, kw} g_up[n, o, h + p_h - kh d_h, w + p_w - kw d_w] w[o, c', kh, kw]

      With a ``padding_mode`` other than ``"zeros"`` this is the gradient of
      ``x_pad``, and :func:`convgrad.pad`'s VJP folds its border back onto ``x``.

    * weight gradient: correlate the input with the cotangent, summing over the
      batch (the batch is the contracted "channel" of this convolution)::

        dw[o, c', kh, kw] = sum_{n, i, j} x_pad[n, c, i s_h + kh d_h, j s_w + kw d_w] g[n, o, i, j]

    * bias gradient: ``db[o] = sum_{n, i, j} g[n, o, i, j]``. A sum, not a mean:
      ``b[o]`` is added once to each of the ``N H' W'`` outputs of channel
      ``o``, so each of them passes its cotangent back to ``b[o]`` once.

    Zero-size arrays are valid: a sum over no terms is 0, so an empty batch,
    no channels or no output positions give lax's shapes, filled with the bias
    (or empty), and zero (or empty) gradients.

    Args:
      x: input, ``(N, C, *in)`` in the default layout, or ``(C, *in)`` for one
        example (PyTorch's unbatched input: ``x`` has one axis fewer than
        ``w``; the result is unbatched too). Floating dtype.
      w: kernel, ``(O, C/G, *k)`` in the default layout; its rank sets the
        number of spatial dims (1, 2 or 3). Same dtype as ``x``.
      b: optional bias, ``(O,)``.
      stride: ``s``, an int or one per spatial dim.
      padding: an int, one int per spatial dim, one ``(lo, hi)`` pair per
        spatial dim (negative values crop, as in lax), ``"SAME"`` (output size
        ``ceil(in / s)``, the odd sample at the high side), ``"SAME_LOWER"``
        (the odd sample at the low side) or ``"VALID"``. As in lax, a padded
        input shorter than the dilated kernel gives an empty output.
      dilation: ``d``, the spacing of kernel taps; an int or one per spatial dim.
      groups: ``G``; must divide ``C`` and ``O``. ``G = C`` is depthwise.
      dimension_numbers: ``None`` for channel-first (``NCH``/``OIH``,
        ``NCHW``/``OIHW``, ``NCDHW``/``OIDHW``) or lax's strings, e.g.
        ``("NHWC", "HWIO", "NHWC")``. Per-dim arguments follow the kernel's
        spatial order. An unbatched ``x`` is laid out as the input string
        without its ``N``.
      padding_mode: what ``x_pad`` holds outside ``x``, as PyTorch's
        ``Conv*d(padding_mode=...)``: ``"zeros"`` (default), ``"reflect"``,
        ``"replicate"`` or ``"circular"`` (:func:`convgrad.pad`, whose VJP is
        the padding's adjoint). The modes other than zeros need padding ``>= 0``.
      formulation: how the forward and the two convolution gradients are
        computed (every formulation gives the formulas above and all are
        verified): ``"textbook"``, each one lax convolution
        (:func:`conv_forward`, :func:`conv_input_grad`,
        :func:`conv_weight_grad`); ``"im2col"``, the forward and the weight
        gradient as products with the im2col patch matrix, whose
        ``C/G * prod(k)`` rows are the strided slices of the input that the
        kernel taps read: the forward sums the rows times the kernel without
        building the matrix (:func:`conv_forward_im2col`), the weight gradient
        is one GEMM over it (:func:`conv_weight_grad_im2col`); fast on CPU when
        those rows are few. ``"winograd"``, all three by Winograd's
        F(2x2, 3x3) (:mod:`convgrad.ops.conv_winograd`: 16 GEMMs over
        transformed 4x4 tiles), for 2-D 3x3 convolutions with stride 1,
        dilation 1 and one group; fast on CPU for 32 channels and more.
        ``"polyphase"``, the input gradient as ``prod(s)`` stride-1
        convolutions of the cotangent, one per phase of the input positions,
        with the kernel taps that reach it (:mod:`convgrad.ops.conv_polyphase`:
        no multiplications by inserted zeros), forward and weight gradient
        textbook; fast on CPU for 3x3 and wider kernels at stride 2.
        ``"auto"`` (default) picks per product on CPU by
        :func:`~convgrad.ops.conv_formulations.cpu_formulation` and
        ``"textbook"`` on GPU/TPU.

    Returns:
      ``y``, ``(N, O, *out)`` in the output layout (``(O, *out)`` for an
      unbatched ``x``), with ``out = max(0, (in + lo + hi - d (k - 1) - 1) // s + 1)``
      per spatial dim.

    Raises:
      TypeError: an array argument is not a floating array, the dtypes differ,
        or an int argument is not an int.
      ValueError: ``w`` has fewer than 1 or more than 3 spatial dims, ``x``
        has neither ``w``'s rank nor one less, a kernel spatial size is 0,
        ``groups`` does not divide the channels or the channels do not match,
        ``b`` is not ``(O,)``; a stride or dilation is not positive; an unknown
        ``padding``, ``padding_mode`` or ``formulation``; a padding that crops
        more than the input holds; ``padding_mode="reflect"`` wider than
        ``in - 1``, ``"circular"`` wider than ``in``, a negative padding with a
        mode other than zeros; ``formulation="winograd"`` outside its geometry;
        an output (or, with ``formulation="im2col"``, a patch matrix) larger
        than this process's memory, with the argument that made it so and its
        byte count.

    Examples:
      A 1-d input of 5 samples and a 3-tap kernel of ones: each output sums a
      window of 3; ``padding=1`` adds a zero at each end, ``"reflect"`` mirrors
      (``x_pad = [2, 1, 2, 3, 4, 5, 4]``), and the bias gradient is the sum of
      the cotangent:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import conv
      >>> x, w, b = jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]), jnp.ones((1, 1, 3)), jnp.zeros(1)
      >>> conv(x, w, b)
      Array([[[ 6.,  9., 12.]]], dtype=float32)
      >>> conv(x, w, b, padding=1)
      Array([[[ 3.,  6.,  9., 12.,  9.]]], dtype=float32)
      >>> conv(x, w, b, padding=1, padding_mode="reflect")
      Array([[[ 5.,  6.,  9., 12., 13.]]], dtype=float32)
      >>> dx, dw, db = jax.vjp(conv, x, w, b)[1](jnp.ones((1, 1, 3)))
      >>> dx
      Array([[[1., 2., 3., 2., 1.]]], dtype=float32)
      >>> dw, db
      (Array([[[ 6.,  9., 12.]]], dtype=float32), Array([3.], dtype=float32))

      An unbatched input, and a kernel wider than the padded input (an empty
      output, as in lax):

      >>> conv(x[0], w).shape, conv(x, jnp.ones((1, 1, 6))).shape
      ((1, 3), (1, 1, 0))

    References:
      ``torch.nn.Conv1d/2d/3d`` and ``torch.nn.functional.conv2d``
      (https://pytorch.org/docs/stable/generated/torch.nn.Conv2d.html);
      ``jax.lax.conv_general_dilated`` for the layouts, the padding strings and
      the empty outputs.
    """
    x, w, b, geometry, mode, unbatched_axis = conv_arguments(
        "conv", x, w, b, stride, padding, dilation, groups, dimension_numbers, padding_mode
    )
    if formulation not in FORMULATIONS:
        raise ValueError(f"conv: formulation={formulation!r} is not one of {sorted(FORMULATIONS)}")
    if formulation == "winograd" and not winograd_applies(geometry, geometry.kernel_spatial(w.shape)):
        raise ValueError(
            f"conv: formulation='winograd' computes 2-D 3x3 convolutions with stride 1, dilation 1 and groups=1; "
            f"got kernel {geometry.kernel_spatial(w.shape)}, stride={geometry.stride}, "
            f"dilation={geometry.dilation}, groups={geometry.groups}"
        )
    if formulation == "im2col":
        y_shape = geometry.output_shape(x.shape, w.shape)
        arguments.fits_in_memory(
            "conv",
            "im2col patch matrix",
            (patch_elements(x.shape, geometry.kernel_spatial(w.shape), y_shape, geometry),),
            x.dtype,
            f"formulation='im2col' with kernel {geometry.kernel_spatial(w.shape)} and dilation={dilation!r}",
        )
    if mode is not None:
        x = pad_op(x, mode[1], mode[0])
    y = _conv(dataclasses.replace(geometry, formulation=formulation), x, w, b)
    return y if unbatched_axis is None else jnp.squeeze(y, unbatched_axis)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv(geometry: ConvGeometry, x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    return conv_forward_of(geometry, x, w, b)


def _conv_fwd(geometry, x, w, b):
    """Save ``x`` for the weight gradient and ``w`` for the input gradient; ``b`` marks that a bias exists."""
    return conv_forward_of(geometry, x, w, b), (x, w, b)


def _conv_bwd(geometry, residuals, g):
    """``(dx, dw, db)``: the three formulas of the docstring, each summed over the devices that share its argument.

    (:func:`~convgrad.ops.replicas.like_primal`: a no-op outside ``shard_map``.) With no
    terms (a zero-size ``x``, ``w`` or ``g``) every sum is empty: zero gradients.
    """
    x, w, b = residuals
    b_grad = None if b is None else like_primal(conv_textbook.conv_bias_grad(g, geometry).astype(b.dtype), b)
    if conv_textbook.has_no_terms(x, w, g):
        return jnp.zeros_like(x), jnp.zeros_like(w), b_grad
    formulation = FORMULATIONS[geometry.formulation]
    x_grad = formulation.input_grad(g, w, geometry, geometry.in_spatial(x.shape))
    w_grad = formulation.weight_grad(x, g, geometry, geometry.kernel_spatial(w.shape))
    return like_primal(x_grad.astype(x.dtype), x), like_primal(w_grad.astype(w.dtype), w), b_grad


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_forward_of(geometry: ConvGeometry, x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    """``y`` by the geometry's formulation; with no terms (a zero-size ``x``, ``w`` or ``y``), the bias or empty."""
    y_shape = geometry.output_shape(x.shape, w.shape)
    if conv_textbook.has_no_terms(x, w, jax.ShapeDtypeStruct(y_shape, x.dtype)):
        dtype = x.dtype if geometry.preferred_element_type is None else geometry.preferred_element_type
        y = jnp.zeros(y_shape, dtype)
        return conv_textbook.add_bias(y, b, geometry)
    return FORMULATIONS[geometry.formulation].forward(x, w, b, geometry)


def conv_arguments(op, x, w, b, stride, padding, dilation, groups, dimension_numbers, padding_mode="zeros"):
    """Checked arrays, the :class:`ConvGeometry` of a forward convolution, the padding to apply first, and the
    batch axis that an unbatched ``x`` was given (``None`` when it came batched).

    The padding to apply first is ``None``, or ``(padding_mode, pairs)`` for
    :func:`convgrad.pad` when ``padding_mode`` is not ``"zeros"`` (then the
    geometry's own padding is zero).
    """
    x, w, b = arguments.conv_operands(op, x, w, b, "(O, C/groups, *kernel)", unbatched=True)
    n = w.ndim - 2
    x, unbatched_axis = arguments.batched(
        x, w.ndim, CHANNELS_FIRST[n] if dimension_numbers is None else dimension_numbers
    )
    dn = arguments.dimension_numbers_for(op, x.shape, w.shape, dimension_numbers)
    stride = arguments.as_tuple(op, "stride", stride, n)
    dilation = arguments.as_tuple(op, "dilation", dilation, n)
    groups = arguments.as_int(op, "groups", groups, 1)
    in_channels, out_channels = x.shape[dn.lhs_spec[1]], w.shape[dn.rhs_spec[0]]
    group_channels = w.shape[dn.rhs_spec[1]]
    arguments.groups_divide(op, groups, "in_channels", in_channels, "x", x.shape)
    arguments.groups_divide(op, groups, "out_channels", out_channels, "w", w.shape)
    if group_channels * groups != in_channels:
        raise ValueError(
            f"{op}: channel mismatch: x has in_channels={in_channels} but w.shape={tuple(w.shape)} expects "
            f"in_channels/groups={group_channels} with groups={groups}, i.e. {group_channels * groups} channels"
        )
    arguments.bias_shape(op, b, out_channels)
    in_spatial = tuple(x.shape[a] for a in dn.lhs_spec[2:])
    kernel_spatial = tuple(w.shape[a] for a in dn.rhs_spec[2:])
    arguments.kernel_sizes_positive(op, w.shape, kernel_spatial)
    pairs = arguments.as_signed_padding(op, padding, n, ("SAME", "SAME_LOWER", "VALID"))
    if pairs == "VALID":
        pairs = ((0, 0),) * n
    elif pairs in ("SAME", "SAME_LOWER"):
        rule = same_padding if pairs == "SAME" else same_lower_padding
        pairs = tuple(rule(i, k, s, d) for i, k, s, d in zip(in_spatial, kernel_spatial, stride, dilation))
    padded_size_not_negative(op, padding, in_spatial, pairs)
    mode = None
    if padding_mode != "zeros":
        if padding_mode not in PADDING_MODES:
            raise ValueError(f"{op}: padding_mode={padding_mode!r} is not one of {list(PADDING_MODES)}")
        full = [(0, 0)] * x.ndim
        for axis, pair in zip(dn.lhs_spec[2:], pairs):
            full[axis] = pair
        checked = pad_arguments(op, x.shape, tuple(full), padding_mode, "padding", padding, dn.lhs_spec[2:])
        mode = (padding_mode, checked)
        pairs = ((0, 0),) * n
        x_padded_shape = [size + lo + hi for size, (lo, hi) in zip(x.shape, mode[1])]
        arguments.fits_in_memory(op, "padded input", x_padded_shape, x.dtype, f"padding={padding!r}")
        in_spatial = tuple(x_padded_shape[a] for a in dn.lhs_spec[2:])
    geometry = ConvGeometry(stride, pairs, dilation, groups, dn)
    arguments.fits_in_memory(
        op,
        "output",
        geometry.output_shape(_shape_with(x.shape, dn.lhs_spec[2:], in_spatial), w.shape),
        x.dtype,
        f"padding={padding!r} with out_channels={out_channels} on an input of spatial size {in_spatial}",
    )
    return x, w, b, geometry, mode, unbatched_axis


def padded_size_not_negative(op: str, padding, in_spatial, pairs, lhs_dilation=None) -> None:
    """``dilated_extent(in, a) + lo + hi >= 0`` per spatial dim: a negative padding crops at most the whole input."""
    lhs_dilation = (1,) * len(in_spatial) if lhs_dilation is None else lhs_dilation
    for axis, (i, a, (lo, hi)) in enumerate(zip(in_spatial, lhs_dilation, pairs)):
        if dilated_extent(i, a) + lo + hi < 0:
            raise ValueError(
                f"{op}: padding={padding!r} crops more than the input holds along spatial dim {axis}: "
                f"input size {dilated_extent(i, a)} + padding ({lo}, {hi}) < 0"
            )


def _shape_with(shape, axes, sizes) -> tuple[int, ...]:
    out = list(shape)
    for axis, size in zip(axes, sizes):
        out[axis] = size
    return tuple(out)
