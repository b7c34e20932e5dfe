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
    (:mod:`convgrad.ops.conv_formulations`).
    """

    stride: tuple[int, ...]
    padding: tuple[Pair, ...]
    dilation: tuple[int, ...]
    groups: int
    dn: lax.ConvDimensionNumbers
    formulation: str = "auto"


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
