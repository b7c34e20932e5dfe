"""The data types of convgrad's geometry, its layout tables, and the shape arithmetic every op shares.

The bottom of the import graph: everything static about a convolution
(:class:`ConvGeometry`) or a pooling (:class:`PoolGeometry`), the channel-first and
channels-last layouts, and one formula per name. Per spatial dimension: ``in`` is the
input size, ``k`` the kernel (window) size, ``s`` the stride, ``d`` the dilation,
``(lo, hi)`` the padding and ``out`` the output size. The op modules call these and
never re-derive them.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence
from typing import Any

from jax import lax

Pair = tuple[int, int]

# lax's layout strings for input, kernel and output, by the number of spatial dims.
CHANNELS_FIRST = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"), 3: ("NCDHW", "OIDHW", "NCDHW")}
CHANNELS_LAST = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


@dataclasses.dataclass(frozen=True)
class ConvGeometry:
    """Everything static about one convolution: per-spatial-dim stride, padding, dilation; groups; layout.

    ``dn`` holds lax's dimension numbers: for each of input, kernel and output the
    axis index of batch/out-channel, channel/in-channel, then the spatial axes,
    in the kernel's spatial order. Per-dim tuples follow that order.
    ``formulation`` names how :func:`convgrad.conv` computes the three convolutions
    (:mod:`convgrad.ops.conv_formulations`). The rest is lax's surface beyond
    PyTorch's (:func:`convgrad.lax.conv_general_dilated`): ``lhs_dilation`` (``a``,
    ``a - 1`` zeros between input samples; ones when ``None``), ``batch_groups``
    (lax's ``batch_group_count``), and ``precision`` and ``preferred_element_type``,
    passed to every lax convolution of the forward and the backward.
    """

    stride: tuple[int, ...]
    padding: tuple[Pair, ...]
    dilation: tuple[int, ...]
    groups: int
    dn: lax.ConvDimensionNumbers
    formulation: str = "auto"
    lhs_dilation: tuple[int, ...] | None = None
    batch_groups: int = 1
    precision: Any = None
    preferred_element_type: Any = None

    def __post_init__(self):
        if self.lhs_dilation is None:
            object.__setattr__(self, "lhs_dilation", (1,) * len(self.stride))

    def in_spatial(self, x_shape: Sequence[int]) -> tuple[int, ...]:
        """The input's spatial sizes, in the kernel's spatial order."""
        return tuple(x_shape[a] for a in self.dn.lhs_spec[2:])

    def kernel_spatial(self, w_shape: Sequence[int]) -> tuple[int, ...]:
        """The kernel's spatial sizes."""
        return tuple(w_shape[a] for a in self.dn.rhs_spec[2:])

    def out_spatial_of(self, y_shape: Sequence[int]) -> tuple[int, ...]:
        """The output's (or a cotangent's) spatial sizes, in the kernel's spatial order."""
        return tuple(y_shape[a] for a in self.dn.out_spec[2:])

    @property
    def plain(self) -> bool:
        """No lhs dilation, no batch groups, default precision and result type: PyTorch's convolution."""
        return (
            all(a == 1 for a in self.lhs_dilation)
            and self.batch_groups == 1
            and self.precision is None
            and self.preferred_element_type is None
        )

    def output_shape(self, x_shape: Sequence[int], w_shape: Sequence[int]) -> tuple[int, ...]:
        """``y``'s shape in the output layout: ``(N / batch_groups, O, *out)`` with :func:`conv_general_output_size`."""
        dn = self.dn
        out = [
            conv_general_output_size(i, k, s, p, d, a)
            for i, k, s, p, d, a in zip(
                self.in_spatial(x_shape),
                self.kernel_spatial(w_shape),
                self.stride,
                self.padding,
                self.dilation,
                self.lhs_dilation,
            )
        ]
        canonical = (x_shape[dn.lhs_spec[0]] // self.batch_groups, w_shape[dn.rhs_spec[0]], *out)
        shape = [0] * len(canonical)
        for axis, size in zip(dn.out_spec, canonical):
            shape[axis] = size
        return tuple(shape)


@dataclasses.dataclass(frozen=True)
class PoolGeometry:
    """Everything static about one pooling: per-spatial-dim window, stride, ``(lo, hi)`` padding, dilation, input size.

    ``ceil_mode`` chooses PyTorch's output-size rule (:func:`pool_output_size`);
    ``channels_last`` the layout (``N, *spatial, C`` rather than ``N, C, *spatial``);
    ``batched=False`` an input without its batch axis (``C, *spatial``), which the
    ops give one for the computation and take away again.
    """

    window: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[Pair, ...]
    dilation: tuple[int, ...]
    in_spatial: tuple[int, ...]
    ceil_mode: bool = False
    channels_last: bool = False
    batched: bool = True

    @property
    def out_spatial(self) -> tuple[int, ...]:
        """:func:`pool_output_size` per spatial dim."""
        return tuple(
            pool_output_size(i, k, s, p, d, self.ceil_mode)
            for i, k, s, p, d in zip(self.in_spatial, self.window, self.stride, self.padding, self.dilation)
        )

    @property
    def tap_offsets(self) -> tuple[tuple[int, ...], ...]:
        """The ``K = prod(window)`` taps ``t`` of a window, in raster order (the tap index is their position).

        Tap ``t`` of window ``i`` reads unpadded input position ``i s + t d - lo`` per spatial dim.
        """
        return tuple(itertools.product(*map(range, self.window)))

    @property
    def non_overlapping(self) -> bool:
        """The windows tile the input: ``s = k``, taps adjacent, no padding, no partial (ceil-mode) window."""
        return (
            self.stride == self.window
            and all(d == 1 or k == 1 for d, k in zip(self.dilation, self.window))
            and all(p == (0, 0) for p in self.padding)
            and all(o * k <= i for o, k, i in zip(self.out_spatial, self.window, self.in_spatial))
        )

    @property
    def first_spatial_axis(self) -> int:
        """The axis of the first spatial dim of the batched array: 1 channels-last (``N, *spatial, C``), else 2."""
        return 1 if self.channels_last else 2


@dataclasses.dataclass(frozen=True)
class AdaptivePoolGeometry:
    """Everything static about one adaptive pooling: input and output size per spatial dim, layout, batch axis.

    Window ``i`` of a spatial dim spans ``[adaptive_window_start(i), adaptive_window_end(i))``,
    PyTorch's rule; the windows differ in size and may overlap.
    """

    in_spatial: tuple[int, ...]
    out_spatial: tuple[int, ...]
    channels_last: bool = False
    batched: bool = True

    @property
    def starts(self) -> tuple[tuple[int, ...], ...]:
        """Per spatial dim, where each window starts: ``floor(i in / out)``."""
        return tuple(
            tuple(adaptive_window_start(i, n, o) for i in range(o)) for n, o in zip(self.in_spatial, self.out_spatial)
        )

    @property
    def ends(self) -> tuple[tuple[int, ...], ...]:
        """Per spatial dim, one past where each window ends: ``ceil((i + 1) in / out)``."""
        return tuple(
            tuple(adaptive_window_end(i, n, o) for i in range(o)) for n, o in zip(self.in_spatial, self.out_spatial)
        )

    @property
    def tiled(self) -> bool:
        """``out`` divides ``in`` in every spatial dim: the windows are a regular pool's, window = stride = in / out."""
        return all(o > 0 and n % o == 0 for n, o in zip(self.in_spatial, self.out_spatial))

    def as_pool(self) -> PoolGeometry:
        """The :class:`PoolGeometry` of the same windows, when :attr:`tiled`: window = stride = ``in / out``."""
        window = tuple(n // o for n, o in zip(self.in_spatial, self.out_spatial))
        ones = (1,) * len(window)
        return PoolGeometry(
            window, window, ((0, 0),) * len(window), ones, self.in_spatial, False, self.channels_last, self.batched
        )

    @property
    def first_spatial_axis(self) -> int:
        """The axis of the first spatial dim of the batched array: 1 channels-last, else 2."""
        return 1 if self.channels_last else 2


def dilated_size(size: int, dilation: int) -> int:
    """``(size - 1) * dilation + 1``: the extent of ``size`` taps spaced ``dilation`` apart."""
    return (size - 1) * dilation + 1


def conv_output_size(in_size: int, kernel: int, stride: int, padding: Pair, dilation: int) -> int:
    """``(in + lo + hi - dilated_size(k, d)) // s + 1``: how many windows fit in the padded input."""
    lo, hi = padding
    return (in_size + lo + hi - dilated_size(kernel, dilation)) // stride + 1


def same_padding(in_size: int, kernel: int, stride: int, dilation: int) -> Pair:
    """``total = max((ceil(in / s) - 1) s + dilated_size(k, d) - in, 0)``, ``lo = total // 2``, ``hi = total - lo``."""
    out_size = -(-in_size // stride)
    total = max((out_size - 1) * stride + dilated_size(kernel, dilation) - in_size, 0)
    return total // 2, total - total // 2


def input_grad_padding(in_size: int, kernel: int, stride: int, padding: Pair, dilation: int, out_size: int) -> Pair:
    """``lo = dilated_size(k, d) - 1 - p_lo``, ``hi = in + p_lo - dilated_size(out, s)``.

    The padding of the zero-inserted cotangent (length ``dilated_size(out, s)``)
    whose stride-1 correlation with the flipped kernel gives back ``in`` samples.
    Negative values crop.
    """
    lo = dilated_size(kernel, dilation) - 1 - padding[0]
    return lo, in_size + padding[0] - dilated_size(out_size, stride)


def weight_grad_padding(in_size: int, kernel: int, stride: int, padding: Pair, dilation: int, out_size: int) -> Pair:
    """``lo = p_lo``, ``hi = dilated_size(out, s) + dilated_size(k, d) - 1 - in - p_lo``.

    The padding of the input whose correlation (window stride ``d``) with the
    cotangent dilated by ``s`` has exactly ``k`` outputs. ``hi`` may be smaller
    than ``p_hi``: input samples that no window reached get no gradient.
    """
    hi = dilated_size(out_size, stride) + dilated_size(kernel, dilation) - 1 - in_size - padding[0]
    return padding[0], hi


def tap_grad_padding(in_size: int, offset: int, stride: int, padding: Pair, out_size: int) -> Pair:
    """``lo = t - p_lo``, ``hi = in + p_lo - t - dilated_size(out, s)``.

    The transpose of reading tap ``t`` of every window (the strided slice
    ``x_pad[t :: s]`` of ``out`` samples): the ``lax.pad`` (interior ``s - 1``)
    that puts ``out`` cotangent samples back at input positions
    ``i s + t - p_lo``, ``in`` samples long. Negative values crop (padding).
    """
    lo = offset - padding[0]
    return lo, in_size - lo - dilated_size(out_size, stride)


def conv_transpose_output_size(
    in_size: int, kernel: int, stride: int, padding: int, dilation: int, output_padding: int
) -> int:
    """``(in - 1) * s - 2 * p + dilated_size(k, d) + output_padding``: PyTorch's ConvTranspose size."""
    return (in_size - 1) * stride - 2 * padding + dilated_size(kernel, dilation) + output_padding


def conv_transpose_padding(padding: int, output_padding: int) -> Pair:
    """``(p, p - output_padding)``: the padding of the convolution that ``conv_transpose`` is the transpose of.

    With it, the convolution (same ``k``, ``s``, ``d``) of an ``out``-sample map
    has exactly ``in`` outputs, ``conv_output_size(out, k, s, (p, p - op), d) == in``,
    and its padded input is the transposed conv's whole scatter footprint,
    ``(in - 1) s + dilated_size(k, d)`` samples. A negative ``hi`` crops the
    ``output_padding`` samples at the high end, which no input sample reaches.
    """
    return padding, padding - output_padding


def dilated_extent(size: int, dilation: int) -> int:
    """``max(0, (size - 1) * dilation + 1)``: :func:`dilated_size` that is 0 for no sample (lax's ``dilate_dim``)."""
    return max(0, (size - 1) * dilation + 1)


def conv_general_output_size(
    in_size: int, kernel: int, stride: int, padding: Pair, dilation: int, lhs_dilation: int = 1
) -> int:
    """``max(0, (dilated_extent(in, a) + lo + hi - dilated_extent(k, d)) // s + 1)``: lax's output size.

    The input is first dilated by ``a`` (``a - 1`` zeros between samples), then
    padded (negative values crop); no window fitting gives an empty output, as in lax.
    """
    padded = dilated_extent(in_size, lhs_dilation) + padding[0] + padding[1]
    return max(0, (padded - dilated_extent(kernel, dilation)) // stride + 1)


def same_lower_padding(in_size: int, kernel: int, stride: int, dilation: int) -> Pair:
    """:func:`same_padding` with the odd sample at the low side: ``hi = total // 2``, ``lo = total - hi``."""
    lo, hi = same_padding(in_size, kernel, stride, dilation)
    return hi, lo


def conv_transpose_output_padding(out_size: int, in_size: int, kernel: int, stride: int, padding: int, dilation: int):
    """``out - conv_transpose_output_size(in, k, s, p, d, 0)``: the ``output_padding`` that gives ``out`` samples.

    PyTorch's ``ConvTranspose*d.forward(output_size=...)``, which accepts
    ``0 <= output_padding < s``.
    """
    return out_size - conv_transpose_output_size(in_size, kernel, stride, padding, dilation, 0)


def lax_conv_transpose_padding(kernel_extent: int, stride: int, padding: str | Pair) -> Pair:
    """lax's ``conv_transpose`` padding of the ``s``-dilated input, from the forward convolution's padding.

    With ``k`` the dilated kernel extent: ``"SAME"``: ``total = k + s - 2``,
    ``lo = k - 1`` if ``s > k - 1`` else ``ceil(total / 2)``; ``"VALID"``:
    ``total = k + s - 2 + max(k - s, 0)``, ``lo = k - 1``; a forward pair
    ``(p_lo, p_hi)``: ``(k - 1 - p_lo, k - 1 - p_hi)``. ``hi = total - lo``.
    """
    k, s = kernel_extent, stride
    if padding == "SAME":
        total = k + s - 2
        lo = k - 1 if s > k - 1 else -(-total // 2)
    elif padding == "VALID":
        total, lo = k + s - 2 + max(k - s, 0), k - 1
    else:
        lo, total = k - 1 - padding[0], 2 * (k - 1) - padding[0] - padding[1]
    return lo, total - lo


def pool_output_size(in_size: int, kernel: int, stride: int, padding: Pair, dilation: int, ceil_mode: bool) -> int:
    """``floor`` (``ceil`` in ceil mode) of ``(in + lo + hi - dilated_size(k, d)) / s``, plus 1: PyTorch's pooling size.

    In ceil mode a last window that would start in the high padding, ``(out - 1) s >= in + lo``,
    is dropped (the last window starts inside the input or the low padding). An empty
    input (``in = 0``) has no windows: 0.
    """
    if in_size == 0:
        return 0
    span = in_size + padding[0] + padding[1] - dilated_size(kernel, dilation)
    out = (span + (stride - 1 if ceil_mode else 0)) // stride + 1
    if ceil_mode and (out - 1) * stride >= in_size + padding[0]:
        out -= 1
    return out


def tap_window_range(in_size: int, out_size: int, stride: int, offset: int) -> tuple[int, int]:
    """``[i0, i1)``: the windows ``i`` whose tap at offset ``o = t d - lo`` reads the input, ``0 <= i s + o < in``.

    ``i0 = max(0, ceil(-o / s))``, ``i1 = min(out, ceil((in - o) / s))``; ``i0 >= i1`` when no window's tap does.
    """
    first = max(0, -(offset // stride))
    return first, max(first, min(out_size, -((offset - in_size) // stride)))


def adaptive_window_start(i: int, in_size: int, out_size: int) -> int:
    """``floor(i in / out)``: where adaptive pooling's window ``i`` starts (PyTorch's ``start_index``)."""
    return i * in_size // out_size


def adaptive_window_end(i: int, in_size: int, out_size: int) -> int:
    """``ceil((i + 1) in / out)``: one past where adaptive pooling's window ``i`` ends (PyTorch's ``end_index``)."""
    return -(-(i + 1) * in_size // out_size)
