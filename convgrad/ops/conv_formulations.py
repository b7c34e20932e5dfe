"""How :func:`convgrad.conv` computes its three convolutions: the ``FORMULATIONS`` table and ``"auto"``'s choice.

Every formulation computes the same sums (the formulas of :func:`convgrad.conv`) and all
are verified by the registry: ``"textbook"`` (:mod:`convgrad.ops.conv_textbook`, lax
convolutions), ``"im2col"`` (:mod:`convgrad.ops.conv_im2col`), ``"winograd"``
(:mod:`convgrad.ops.conv_winograd`), ``"polyphase"`` (the input gradient of
:mod:`convgrad.ops.conv_polyphase`; forward and weight gradient textbook). ``"auto"`` picks
one per product (forward, input gradient, weight gradient) by the crossovers measured on
CPU (:func:`cpu_formulation`) and runs the textbook convolution on every other platform
(``lax.platform_dependent``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
from jax import lax

from convgrad.ops.conv_im2col import conv_forward_im2col, conv_weight_grad_im2col, patch_elements
from convgrad.ops.conv_polyphase import conv_input_grad_polyphase
from convgrad.ops.conv_textbook import conv_forward, conv_input_grad, conv_weight_grad
from convgrad.ops.conv_winograd import (
    conv_forward_winograd,
    conv_input_grad_winograd,
    conv_weight_grad_winograd,
    winograd_applies,
)
from convgrad.ops.geometry import ConvGeometry


def conv_forward_auto(x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """The forward of :func:`cpu_formulation`'s choice on CPU; the textbook convolution elsewhere."""
    dn = geometry.dn
    kernel_spatial = geometry.kernel_spatial(w.shape)
    choice = cpu_formulation("forward", x.shape[dn.lhs_spec[1]], w.shape[dn.rhs_spec[0]], geometry, kernel_spatial)
    return _on_cpu(FORMULATIONS[choice].forward, conv_forward, x, w, b, geometry)


def conv_input_grad_auto(g: jax.Array, w: jax.Array, geometry: ConvGeometry, in_spatial: tuple[int, ...]) -> jax.Array:
    """The input gradient of :func:`cpu_formulation`'s choice on CPU; the textbook convolution elsewhere."""
    dn = geometry.dn
    kernel_spatial = geometry.kernel_spatial(w.shape)
    channels = w.shape[dn.rhs_spec[1]] * geometry.groups
    choice = cpu_formulation("input_grad", channels, g.shape[dn.out_spec[1]], geometry, kernel_spatial)
    return _on_cpu(FORMULATIONS[choice].input_grad, conv_input_grad, g, w, geometry, in_spatial)


def conv_weight_grad_auto(
    x: jax.Array, g: jax.Array, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]
) -> jax.Array:
    """The weight gradient of :func:`cpu_formulation`'s choice on CPU; the textbook convolution elsewhere."""
    dn = geometry.dn
    patches = patch_elements(x.shape, kernel_spatial, g.shape, geometry)
    choice = cpu_formulation(
        "weight_grad",
        x.shape[dn.lhs_spec[1]],
        g.shape[dn.out_spec[1]],
        geometry,
        kernel_spatial,
        patch_ratio=patches / max(1, x.size + g.size),
    )
    return _on_cpu(FORMULATIONS[choice].weight_grad, conv_weight_grad, x, g, geometry, kernel_spatial)


def _on_cpu(fast: Callable[..., jax.Array], textbook: Callable[..., jax.Array], a, b, *rest) -> jax.Array:
    """``fast(a, b, *rest)`` when lowered for CPU, ``textbook(a, b, *rest)`` elsewhere (``lax.platform_dependent``)."""
    if fast is textbook:
        return textbook(a, b, *rest)
    return lax.platform_dependent(a, b, cpu=lambda a, b: fast(a, b, *rest), default=lambda a, b: textbook(a, b, *rest))


def cpu_formulation(
    product: str,
    channels: int,
    out_channels: int,
    geometry: ConvGeometry,
    kernel_spatial: tuple[int, ...],
    patch_ratio: float = 0.0,
) -> str:
    """The formulation ``"auto"`` runs on CPU for one product (``"forward"``, ``"input_grad"``, ``"weight_grad"``).

    By the measured crossovers (``docs/performance.md``): ``"im2col"`` for the forward
    and the weight gradient when a group's patch has at most :data:`IM2COL_MAX_ROWS`
    rows; ``"winograd"`` for a 2-D 3x3 stride-1 convolution with at least
    :data:`WINOGRAD_MIN_CHANNELS` input and output channels (for the weight gradient,
    at most :data:`WINOGRAD_WEIGHT_GRAD_MAX_CHANNELS`); ``"polyphase"`` for the input
    gradient where :func:`polyphase_pays`; ``"textbook"`` otherwise.

    What a formulation builds counts too: the im2col weight gradient materializes its
    patch matrix, ``patch_ratio`` times the elements of the input and the cotangent
    that the textbook convolution reads, and is chosen only while that is at most
    :data:`IM2COL_MAX_PATCH_RATIO`. lax's extra arguments (an input dilation, batch
    groups, a precision or a result type) always run the textbook convolutions.
    """
    if not geometry.plain:
        return "textbook"
    rows = channels // geometry.groups * math.prod(kernel_spatial)
    if (
        product != "input_grad"
        and rows <= IM2COL_MAX_ROWS
        and (product != "weight_grad" or patch_ratio <= IM2COL_MAX_PATCH_RATIO)
    ):
        return "im2col"
    if (
        winograd_applies(geometry, kernel_spatial)
        and min(channels, out_channels) >= WINOGRAD_MIN_CHANNELS
        and (product != "weight_grad" or max(channels, out_channels) <= WINOGRAD_WEIGHT_GRAD_MAX_CHANNELS)
    ):
        return "winograd"
    if product == "input_grad" and polyphase_pays(channels, out_channels, geometry, kernel_spatial):
        return "polyphase"
    return "textbook"


def polyphase_pays(channels: int, out_channels: int, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]) -> bool:
    """Whether the polyphase input gradient was measured faster than the textbook one for this layer (on CPU).

    One group; stride 2 along some spatial dim and at most 2 along every other; along the
    strided dims a kernel of at least 3 taps and dilation 1 (every phase gets a tap); and
    :data:`POLYPHASE_MIN_CHANNELS` to :data:`POLYPHASE_MAX_CHANNELS` input and output channels.
    """
    strided = [(k, d) for s, k, d in zip(geometry.stride, kernel_spatial, geometry.dilation) if s > 1]
    return (
        geometry.groups == 1
        and max(geometry.stride, default=1) == 2
        and all(k >= 3 and d == 1 for k, d in strided)
        and POLYPHASE_MIN_CHANNELS <= min(channels, out_channels)
        and max(channels, out_channels) <= POLYPHASE_MAX_CHANNELS
    )


# Measured on a 2-core CPU (docs/performance.md, `python docs/conv_formulations.py im2col_crossover`
# and `... winograd_crossover`). im2col: patches of 9 and 27 rows win 1.5-3x over the textbook
# convolution in the forward and the weight gradient; 36 rows break even, 72 lose. Winograd, with
# 32 to 256 channels: forward and input gradient 1.4-2.3x faster, weight gradient 1.4-2.0x up to
# 128 channels and even at 256; with 16 input channels the forward and weight gradient break even,
# with 8 all three lose (0.75-0.9x).
IM2COL_MAX_ROWS = 32
# The im2col weight gradient's patch matrix is C/G prod(k) rows of N prod(out) samples per group: 9/33 of
# the input and cotangent on the MNIST cnn's first layer (1 -> 32 channels), but up to 32x the cotangent
# for one output channel, and unbounded with a dilation far wider than the input. Beyond 4x, textbook.
IM2COL_MAX_PATCH_RATIO = 4
WINOGRAD_MIN_CHANNELS = 32
WINOGRAD_WEIGHT_GRAD_MAX_CHANNELS = 128
# The polyphase input gradient (`python docs/conv_formulations.py polyphase_crossover`): 3x3 and 5x5 kernels at
# stride 2 with 32 to 256 channels 1.0x to 4.8x faster than XLA's zero-inserted convolution (64->128 on 56x56:
# 2.2x); even with 16 channels; slower with 1 input channel (0.3x), for 256->512 (0.9x), a 1x1 kernel (0.8x) and
# at stride 3 (0.3x: nine one-tap phases).
POLYPHASE_MIN_CHANNELS = 32
POLYPHASE_MAX_CHANNELS = 256


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
    "polyphase": Formulation(conv_forward, conv_input_grad_polyphase, conv_weight_grad),
}
