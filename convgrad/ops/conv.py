"""N-d convolution with a hand-derived VJP.

Read top to bottom: the public ``conv`` (the derivation in its docstring), ``_conv_fwd``
(what it saves), ``_conv_bwd`` (the derivation as code), ``defvjp``, and ``conv_arguments``
(the checks at the boundary). How the three convolutions of forward and backward are
computed is a formulation of its own: :mod:`convgrad.ops.conv_textbook` (lax
convolutions), :mod:`convgrad.ops.conv_im2col`, :mod:`convgrad.ops.conv_winograd`, chosen
by :mod:`convgrad.ops.conv_formulations`. Shape arithmetic lives in
:mod:`convgrad.ops.geometry`, argument checks in :mod:`convgrad.ops.arguments`.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import jax
from jax.typing import ArrayLike

from convgrad.ops import arguments, conv_textbook
from convgrad.ops.conv_formulations import FORMULATIONS
from convgrad.ops.conv_winograd import winograd_applies
from convgrad.ops.geometry import ConvGeometry, Pair, conv_output_size, same_padding
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
    formulation: str = "auto",
) -> jax.Array:
    r"""Multi-channel N-d convolution ``y = x * w + b`` (a cross-correlation, as in lax and PyTorch).

    With ``G = groups`` the ``C`` input channels and ``O`` output channels are
    split into ``G`` groups; output channel ``o`` sees only the ``C/G`` input
    channels of its group ``g(o) = o // (O/G)``, and ``c = g(o) C/G + c'``.
    ``x_pad`` is ``x`` with ``(lo, hi)`` zeros on each spatial side. In 2-D, in
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

    * weight gradient: correlate the input with the cotangent, summing over the
      batch (the batch is the contracted "channel" of this convolution)::

        dw[o, c', kh, kw] = sum_{n, i, j} x_pad[n, c, i s_h + kh d_h, j s_w + kw d_w] g[n, o, i, j]

    * bias gradient: ``db[o] = sum_{n, i, j} g[n, o, i, j]``. A sum, not a mean:
      ``b[o]`` is added once to each of the ``N H' W'`` outputs of channel
      ``o``, so each of them passes its cotangent back to ``b[o]`` once.

    Args:
      x: input, ``(N, C, *in)`` in the default layout. Floating dtype.
      w: kernel, ``(O, C/G, *k)`` in the default layout; its rank sets the
        number of spatial dims (1, 2 or 3). Same dtype as ``x``.
      b: optional bias, ``(O,)``.
      stride: ``s``, an int or one per spatial dim.
      padding: an int, one int per spatial dim, one ``(lo, hi)`` pair per
        spatial dim, ``"SAME"`` (output size ``ceil(in / s)``) or ``"VALID"``.
      dilation: ``d``, the spacing of kernel taps; an int or one per spatial dim.
      groups: ``G``; must divide ``C`` and ``O``. ``G = C`` is depthwise.
      dimension_numbers: ``None`` for channel-first (``NCH``/``OIH``,
        ``NCHW``/``OIHW``, ``NCDHW``/``OIDHW``) or lax's strings, e.g.
        ``("NHWC", "HWIO", "NHWC")``. Per-dim arguments follow the kernel's
        spatial order.
      formulation: how the forward and the two convolution gradients are
        computed (every formulation gives the formulas above and all are
        verified): ``"textbook"``, each one lax convolution
        (:func:`conv_forward`, :func:`conv_input_grad`,
        :func:`conv_weight_grad`); ``"im2col"``, the forward and the weight
        gradient as products with the im2col patch matrix, whose
        ``C/G * prod(k)`` rows are the strided slices of the input that the
        kernel taps read: the forward sums the rows times the kernel without
        building the matrix (:func:`conv_forward_im2col`), the weight gradient
        is one GEMM over it (:func:`conv_weight_grad_im2col`); much faster on
        CPU when those rows are few. ``"winograd"``, all three by Winograd's
        F(2x2, 3x3) (:mod:`convgrad.ops.winograd`: 16 GEMMs over transformed
        4x4 tiles), for 2-D 3x3 convolutions with stride 1, dilation 1 and
        one group; faster on CPU for 32 channels and more. ``"auto"``
        (default) picks per product on CPU by :func:`cpu_formulation` and
        ``"textbook"`` on GPU/TPU.

    Returns:
      ``y``, ``(N, O, *out)`` in the output layout, with
      ``out = (in + lo + hi - d (k - 1) - 1) // s + 1`` per spatial dim.
    """
    x, w, b, geometry = conv_arguments("conv", x, w, b, stride, padding, dilation, groups, dimension_numbers)
    if formulation not in FORMULATIONS:
        raise ValueError(f"conv: formulation={formulation!r} is not one of {sorted(FORMULATIONS)}")
    kernel_spatial = tuple(w.shape[a] for a in geometry.dn.rhs_spec[2:])
    if formulation == "winograd" and not winograd_applies(geometry, kernel_spatial):
        raise ValueError(
            f"conv: formulation='winograd' computes 2-D 3x3 convolutions with stride 1, dilation 1 and groups=1; "
            f"got kernel {kernel_spatial}, stride={geometry.stride}, dilation={geometry.dilation}, "
            f"groups={geometry.groups}"
        )
    geometry = dataclasses.replace(geometry, formulation=formulation)
    return _conv(geometry, x, w, b)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _conv(geometry: ConvGeometry, x: jax.Array, w: jax.Array, b: jax.Array | None) -> jax.Array:
    return FORMULATIONS[geometry.formulation].forward(x, w, b, geometry)


def _conv_fwd(geometry, x, w, b):
    """Save ``x`` for the weight gradient and ``w`` for the input gradient; ``b`` marks that a bias exists."""
    return FORMULATIONS[geometry.formulation].forward(x, w, b, geometry), (x, w, b)


def _conv_bwd(geometry, residuals, g):
    """``(dx, dw, db)``: the three formulas of the docstring, each summed over the devices that share its argument.

    (:func:`~convgrad.ops.replicas.like_primal`: a no-op outside ``shard_map``.)
    """
    x, w, b = residuals
    in_spatial = tuple(x.shape[a] for a in geometry.dn.lhs_spec[2:])
    kernel_spatial = tuple(w.shape[a] for a in geometry.dn.rhs_spec[2:])
    formulation = FORMULATIONS[geometry.formulation]
    x_grad = formulation.input_grad(g, w, geometry, in_spatial)
    w_grad = formulation.weight_grad(x, g, geometry, kernel_spatial)
    b_grad = None if b is None else like_primal(conv_textbook.conv_bias_grad(g, geometry).astype(b.dtype), b)
    return like_primal(x_grad, x), like_primal(w_grad, w), b_grad


_conv.defvjp(_conv_fwd, _conv_bwd)


def conv_arguments(op, x, w, b, stride, padding, dilation, groups, dimension_numbers):
    """Checked arrays and the :class:`ConvGeometry` of a forward convolution (shared by conv's wrappers)."""
    x, w, b = arguments.conv_operands(op, x, w, b, "(O, C/groups, *kernel)")
    n = w.ndim - 2
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
    pairs = arguments.as_padding(op, padding, n)
    if pairs == "VALID":
        pairs = ((0, 0),) * n
    elif pairs == "SAME":
        pairs = tuple(same_padding(i, k, s, d) for i, k, s, d in zip(in_spatial, kernel_spatial, stride, dilation))
    for axis, (i, k, s, p, d) in enumerate(zip(in_spatial, kernel_spatial, stride, pairs, dilation)):
        if conv_output_size(i, k, s, p, d) < 1:
            raise ValueError(
                f"{op}: output would be empty along spatial dim {axis}: input size {i} + padding {p} is smaller "
                f"than the dilated kernel {d * (k - 1) + 1} (kernel {k}, dilation {d})"
            )
    return x, w, b, ConvGeometry(stride, pairs, dilation, groups, dn)
