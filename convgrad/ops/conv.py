"""N-d convolution with a hand-derived VJP, and the two convolutions its backward is made of.

Read top to bottom: the public ``conv``, its forward (what it saves), its backward
(the derivation as code), ``defvjp``; then the pieces they use: the forwards
(``conv_forward``, ``conv_forward_im2col``), ``flip_and_swap``, ``conv_input_grad``
(which ``conv_transpose`` reuses), the weight gradients (``conv_weight_grad``,
``conv_weight_grad_im2col``), the ``FORMULATIONS`` that choose between them (with the
Winograd ones from :mod:`convgrad.ops.winograd`), and ``conv_bias_grad``. Shape arithmetic lives in
:mod:`convgrad.ops.geometry`, argument checks in :mod:`convgrad.ops.arguments`.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.geometry import (
    Pair,
    conv_output_size,
    input_grad_padding,
    same_padding,
    weight_grad_padding,
)
from convgrad.ops.precision import accumulator_dtype
from convgrad.ops.replicas import like_primal
from convgrad.ops.winograd import (
    conv_forward_winograd,
    conv_input_grad_winograd,
    conv_weight_grad_winograd,
    winograd_applies,
)


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Everything static about one convolution: per-spatial-dim stride, padding, dilation; groups; layout.

    ``dn`` holds lax's dimension numbers: for each of input, kernel and output the
    axis index of batch/out-channel, channel/in-channel, then the spatial axes,
    in the kernel's spatial order. Per-dim tuples follow that order.
    """

    stride: tuple[int, ...]
    padding: tuple[Pair, ...]
    dilation: tuple[int, ...]
    groups: int
    dn: lax.ConvDimensionNumbers
    formulation: str = "auto"


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
    b_grad = None if b is None else like_primal(conv_bias_grad(g, geometry).astype(b.dtype), b)
    return like_primal(x_grad, x), like_primal(w_grad, w), b_grad


_conv.defvjp(_conv_fwd, _conv_bwd)


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


def conv_forward_im2col(x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """``y``: the same sum as :func:`conv_forward`, one im2col patch row at a time, the matrix never built.

    A row of the patch matrix is one (input channel ``c'``, kernel tap ``k``)
    pair: the strided slice ``x_pad[n, *(i s + k d), c]`` that the tap reads, in
    channels-last order. The forward is the patch matrix times the kernel,
    written as a sum over its rows of the row times that row of the kernel::

        y[n, *i, o] = b[o] + sum_{c', k} x_pad[n, *(i s + k d), g(o) C/G + c'] w[o, c', *k]

    XLA fuses the ``C/G * prod(k)`` broadcast products into one loop that reads
    the input's slices and writes each output once (with the bias added), with
    no patch matrix in memory. It pays when there are few rows (a first layer);
    for wide layers the textbook convolution is faster. The products are summed
    in at least float32.
    """
    dn, groups = geometry.dn, geometry.groups
    wide = accumulator_dtype(x.dtype)
    x_last = jnp.transpose(x, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))  # (N, *in, C)
    w_last = jnp.transpose(w, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))  # (*k, C/G, O)
    pads = [(0, 0, 0), *((lo, hi, 0) for lo, hi in geometry.padding), (0, 0, 0)]
    x_pad = lax.pad(x_last, jnp.zeros((), x.dtype), pads)
    kernel_spatial, group_in, out_channels = w_last.shape[:-2], w_last.shape[-2], w_last.shape[-1]
    sizes = zip(x_last.shape[1:-1], kernel_spatial, geometry.stride, geometry.padding, geometry.dilation)
    out_spatial = tuple(conv_output_size(*size) for size in sizes)
    x_groups = x_pad.reshape(*x_pad.shape[:-1], groups, group_in)  # channel c = g C/G + c'
    w_groups = w_last.reshape(*kernel_spatial, group_in, groups, out_channels // groups).astype(wide)
    y = None
    for tap in itertools.product(*map(range, kernel_spatial)):
        start = tuple(t * d for t, d in zip(tap, geometry.dilation))
        limit = tuple(b0 + (o - 1) * s + 1 for b0, o, s in zip(start, out_spatial, geometry.stride))
        rows = lax.slice(
            x_groups, (0, *start, 0, 0), (x_groups.shape[0], *limit, groups, group_in), (1, *geometry.stride, 1, 1)
        ).astype(wide)  # (N, *out, G, C/G)
        for c in range(group_in):
            term = rows[..., c : c + 1] * w_groups[(*tap, c)]  # (N, *out, G, 1) * (G, O/G)
            y = term if y is None else y + term
    y = y.reshape(*y.shape[:-2], out_channels)  # (N, *out, O)
    if b is not None:
        y = y + b.astype(wide)
    where = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])  # the output axis of each axis of y
    return jnp.transpose(y.astype(x.dtype), [where.index(axis) for axis in range(y.ndim)])


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


def conv_weight_grad_im2col(
    x: jax.Array, g: jax.Array, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]
) -> jax.Array:
    """``dw``: the same sum as :func:`conv_weight_grad`, as one matrix product over explicit patches.

    For each kernel tap ``k`` the strided slice of the padded input that tap
    reads, ``x_pad[c, n, *(i s + k d)]``, is one row block of the patch matrix
    ``cols[(c', k), (n, *i)]`` (``C/G * prod(k)`` rows per group, one column per
    output position); then per group

        dw[(c', k), o'] = sum_{(n, *i)} cols[(c', k), (n, *i)] g[(n, *i), o']

    is a single GEMM contracting all ``N * prod(out)`` positions at once, in
    place of a convolution whose "kernel" is the whole cotangent. It pays when
    ``cols`` is small (few input channels): a first layer on grayscale or RGB
    images. It copies ``C/G * prod(k)`` slices of the input, so for wide layers
    the textbook convolution is faster (see ``docs/performance.md``).
    """
    dn, groups = geometry.dn, geometry.groups
    x_cn = jnp.transpose(x, (dn.lhs_spec[1], dn.lhs_spec[0], *dn.lhs_spec[2:]))  # (C, N, *in)
    x_pad = lax.pad(x_cn, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in geometry.padding)])
    g_last = jnp.transpose(g, (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1]))  # (N, *out, O)
    out_spatial = g_last.shape[1:-1]
    taps = []
    for tap in itertools.product(*map(range, kernel_spatial)):
        start = tuple(t * d for t, d in zip(tap, geometry.dilation))
        limit = tuple(b + (o - 1) * s + 1 for b, o, s in zip(start, out_spatial, geometry.stride))
        taps.append(lax.slice(x_pad, (0, 0, *start), (*x_pad.shape[:2], *limit), (1, 1, *geometry.stride)))
    channels, positions = x_cn.shape[0], math.prod(g_last.shape[:-1])
    cols = jnp.stack(taps, axis=1).reshape(groups, channels // groups * len(taps), positions)  # rows (c', k)
    g_groups = g_last.reshape(positions, groups, g_last.shape[-1] // groups)
    dw = lax.dot_general(cols, g_groups, (((2,), (0,)), ((0,), (1,))))  # (G, C/G * prod(k), O/G)
    dw = dw.reshape(groups, channels // groups, *kernel_spatial, -1)
    dw = jnp.moveaxis(dw, -1, 1).reshape(-1, channels // groups, *kernel_spatial)  # (O, C/G, *k)
    return jnp.transpose(dw, np.argsort(dn.rhs_spec))  # laid out like w


def conv_forward_auto(x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """The forward of :func:`cpu_formulation`'s choice on CPU; the textbook convolution elsewhere."""
    dn = geometry.dn
    kernel_spatial = tuple(w.shape[a] for a in dn.rhs_spec[2:])
    choice = cpu_formulation("forward", x.shape[dn.lhs_spec[1]], w.shape[dn.rhs_spec[0]], geometry, kernel_spatial)
    return _on_cpu(FORMULATIONS[choice].forward, conv_forward, x, w, b, geometry)


def conv_input_grad_auto(g: jax.Array, w: jax.Array, geometry: ConvGeometry, in_spatial: tuple[int, ...]) -> jax.Array:
    """The input gradient of :func:`cpu_formulation`'s choice on CPU; the textbook convolution elsewhere."""
    dn = geometry.dn
    kernel_spatial = tuple(w.shape[a] for a in dn.rhs_spec[2:])
    channels = w.shape[dn.rhs_spec[1]] * geometry.groups
    choice = cpu_formulation("input_grad", channels, g.shape[dn.out_spec[1]], geometry, kernel_spatial)
    return _on_cpu(FORMULATIONS[choice].input_grad, conv_input_grad, g, w, geometry, in_spatial)


def conv_weight_grad_auto(
    x: jax.Array, g: jax.Array, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]
) -> jax.Array:
    """The weight gradient of :func:`cpu_formulation`'s choice on CPU; the textbook convolution elsewhere."""
    dn = geometry.dn
    choice = cpu_formulation("weight_grad", x.shape[dn.lhs_spec[1]], g.shape[dn.out_spec[1]], geometry, kernel_spatial)
    return _on_cpu(FORMULATIONS[choice].weight_grad, conv_weight_grad, x, g, geometry, kernel_spatial)


def _on_cpu(fast: Callable[..., jax.Array], textbook: Callable[..., jax.Array], a, b, *rest) -> jax.Array:
    """``fast(a, b, *rest)`` when lowered for CPU, ``textbook(a, b, *rest)`` elsewhere (``lax.platform_dependent``)."""
    if fast is textbook:
        return textbook(a, b, *rest)
    return lax.platform_dependent(a, b, cpu=lambda a, b: fast(a, b, *rest), default=lambda a, b: textbook(a, b, *rest))


def cpu_formulation(
    product: str, channels: int, out_channels: int, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]
) -> str:
    """The formulation ``"auto"`` runs on CPU for one product (``"forward"``, ``"input_grad"``, ``"weight_grad"``).

    By the measured crossovers (``docs/performance.md``): ``"im2col"`` for the forward
    and the weight gradient when a group's patch has at most :data:`IM2COL_MAX_ROWS`
    rows; ``"winograd"`` for a 2-D 3x3 stride-1 convolution with at least
    :data:`WINOGRAD_MIN_CHANNELS` input and output channels (for the weight gradient,
    at most :data:`WINOGRAD_WEIGHT_GRAD_MAX_CHANNELS`); ``"textbook"`` otherwise.
    """
    rows = channels // geometry.groups * math.prod(kernel_spatial)
    if product != "input_grad" and rows <= IM2COL_MAX_ROWS:
        return "im2col"
    if (
        winograd_applies(geometry, kernel_spatial)
        and min(channels, out_channels) >= WINOGRAD_MIN_CHANNELS
        and (product != "weight_grad" or max(channels, out_channels) <= WINOGRAD_WEIGHT_GRAD_MAX_CHANNELS)
    ):
        return "winograd"
    return "textbook"


# Measured on a 2-core CPU (docs/performance.md, `python docs/conv_formulations.py im2col_crossover`
# and `... winograd_crossover`). im2col: patches of 9 and 27 rows win 1.5-3x over the textbook
# convolution in the forward and the weight gradient; 36 rows break even, 72 lose. Winograd, with
# 32 to 256 channels: forward and input gradient 1.4-2.3x faster, weight gradient 1.4-2.0x up to
# 128 channels and even at 256; with 16 input channels the forward and weight gradient break even,
# with 8 all three lose (0.75-0.9x).
IM2COL_MAX_ROWS = 32
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_WEIGHT_GRAD_MAX_CHANNELS = 128


class Formulation(NamedTuple):
    """How :func:`conv` computes its forward and its two convolution gradients (the bias gradient is always a sum)."""

    forward: Callable[..., jax.Array]
    input_grad: Callable[..., jax.Array]
    weight_grad: Callable[..., jax.Array]


FORMULATIONS = {
    "auto": Formulation(conv_forward_auto, conv_input_grad_auto, conv_weight_grad_auto),
    "textbook": Formulation(conv_forward, conv_input_grad, conv_weight_grad),
    "im2col": Formulation(conv_forward_im2col, conv_input_grad, conv_weight_grad_im2col),
    "winograd": Formulation(conv_forward_winograd, conv_input_grad_winograd, conv_weight_grad_winograd),
}


def conv_bias_grad(g: jax.Array, geometry: ConvGeometry) -> jax.Array:
    """``db[o] = sum_{n, *i} g[n, o, *i]``, accumulated in at least float32."""
    axes = (geometry.dn.out_spec[0], *geometry.dn.out_spec[2:])
    return jnp.sum(g, axis=axes, dtype=jnp.promote_types(g.dtype, jnp.float32))


def conv_arguments(op, x, w, b, stride, padding, dilation, groups, dimension_numbers):
    """Checked arrays and the :class:`ConvGeometry` of a forward convolution (shared by conv's wrappers)."""
    x, w, b = conv_operands(op, x, w, b, "(O, C/groups, *kernel)")
    n = w.ndim - 2
    dn = dimension_numbers_for(op, x.shape, w.shape, dimension_numbers)
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


def conv_operands(op: str, x, w, b, kernel_layout: str) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """``x``, ``w``, ``b`` as arrays of one floating dtype, ``w`` of rank 3 to 5 and ``x`` of ``w``'s rank.

    Shared by ``conv`` and ``conv_transpose``; ``kernel_layout`` names ``w``'s
    axes in the message (``"(O, C/groups, *kernel)"``).
    """
    x = arguments.as_float_array(op, "x", x)
    w = arguments.as_float_array(op, "w", w)
    b = None if b is None else arguments.as_float_array(op, "b", b)
    arguments.same_dtype(op, x=x, w=w, b=b)
    arguments.ndim_between(op, "w", w, 3, 5, f"{kernel_layout} with 1 to 3 spatial dims")
    if x.ndim != w.ndim:
        raise ValueError(
            f"{op}: x and w must have the same rank (batch, channel and {w.ndim - 2} spatial dims), "
            f"got x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}"
        )
    return x, w, b


DEFAULT_LAYOUTS = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"), 3: ("NCDHW", "OIDHW", "NCDHW")}


def dimension_numbers_for(op: str, x_shape, w_shape, dimension_numbers) -> lax.ConvDimensionNumbers:
    """lax's dimension numbers from ``None`` (channel-first) or three layout strings, checked."""
    n = len(w_shape) - 2
    if dimension_numbers is None:
        dimension_numbers = DEFAULT_LAYOUTS[n]
    if not (
        isinstance(dimension_numbers, (tuple, list))
        and len(dimension_numbers) == 3
        and all(isinstance(s, str) for s in dimension_numbers)
    ):
        raise TypeError(
            f"{op}: dimension_numbers must be None or three layout strings such as ('NHWC', 'HWIO', 'NHWC'), "
            f"got dimension_numbers={dimension_numbers!r}"
        )
    lhs, rhs, out = dimension_numbers
    spatial = [c for c in rhs if c not in "OI"]
    problems = []
    for name, spec, special in (("input", lhs, "NC"), ("kernel", rhs, "OI"), ("output", out, "NC")):
        if len(spec) != n + 2:
            problems.append(f"{name} layout {spec!r} has {len(spec)} letters, expected {n + 2} for a rank-{n + 2} w")
        elif len(set(spec)) != len(spec) or any(spec.count(c) != 1 for c in special):
            problems.append(f"{name} layout {spec!r} must contain {special[0]!r} and {special[1]!r} once each")
        elif sorted(c for c in spec if c not in special) != sorted(spatial):
            problems.append(f"{name} layout {spec!r} must use the kernel's spatial letters {''.join(spatial)!r}")
    if problems:
        raise ValueError(f"{op}: bad dimension_numbers={tuple(dimension_numbers)!r}: " + "; ".join(problems))
    return lax.conv_dimension_numbers(tuple(x_shape), tuple(w_shape), tuple(dimension_numbers))
