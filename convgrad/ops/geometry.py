"""Shape arithmetic shared by ``conv``, ``conv_transpose`` and the pooling ops.

One formula, one name. Per spatial dimension: ``in`` is the input size, ``k`` the
kernel (window) size, ``s`` the stride, ``d`` the dilation, ``(lo, hi)`` the
padding and ``out`` the output size. The op modules call these and never
re-derive them.
"""

from __future__ import annotations

Pair = tuple[int, int]


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
