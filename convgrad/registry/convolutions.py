"""Registry specs of the convolutions: ``conv`` and ``conv_transpose``, each op's cases, sampler and spec together."""

from __future__ import annotations

import convgrad
from convgrad import autodiff, loops
from convgrad.loops.layouts import conv_forward_in_layout, conv_vjp_in_layout
from convgrad.ops.geometry import CHANNELS_FIRST, CHANNELS_LAST
from convgrad.registry.spec import Case, Draw, case, op_spec

# ---------------------------------------------------------------------------- conv


def _layout(shape: tuple[int, ...], canonical: str, layout: str) -> tuple[int, ...]:
    """``shape`` (in ``canonical`` order) permuted to ``layout``."""
    return tuple(shape[canonical.index(c)] for c in layout)


def conv_case(x_shape, w_shape, bias=True, dimension_numbers=None, **kwargs) -> Case:
    """A conv case from channel-first shapes, laid out as ``dimension_numbers`` says."""
    n = len(w_shape) - 2
    b_shape = (w_shape[0],) if bias else None
    if dimension_numbers is not None:
        lhs, rhs, _ = dimension_numbers
        x_shape = _layout(x_shape, CHANNELS_FIRST[n][0], lhs)
        w_shape = _layout(w_shape, CHANNELS_FIRST[n][1], rhs)
        kwargs["dimension_numbers"] = tuple(dimension_numbers)
    return case(tuple(x_shape), tuple(w_shape), b_shape, **kwargs)


def _sample_spatial(draw: Draw, n: int, max_kernel: int, max_out: int):
    """Per-dim kernel, stride, dilation, a padding argument, and an input size with at least one output."""
    kernel = tuple(draw.integer(1, max_kernel) for _ in range(n))
    stride = tuple(draw.integer(1, 3) for _ in range(n))
    dilation = tuple(draw.integer(1, 2) for _ in range(n))
    form = draw.choice(["int", "ints", "pairs", "SAME", "VALID"])
    if form == "int":
        padding = draw.integer(0, 2)
        pairs = [(padding, padding)] * n
    elif form == "ints":
        padding = tuple(draw.integer(0, 2) for _ in range(n))
        pairs = [(p, p) for p in padding]
    elif form == "pairs":
        padding = tuple((draw.integer(0, 3), draw.integer(0, 3)) for _ in range(n))
        pairs = list(padding)
    else:
        padding, pairs = form, None
    sizes = []
    for axis in range(n):
        k, s, d = kernel[axis], stride[axis], dilation[axis]
        if pairs is None and form == "SAME":
            sizes.append(draw.integer(1, 2 + max_out * s))
            continue
        lo, hi = pairs[axis] if pairs is not None else (0, 0)
        out = draw.integer(1, max_out)
        sizes.append(max(1, (out - 1) * s + (k - 1) * d + 1 + draw.integer(0, s - 1) - lo - hi))
    return tuple(sizes), kernel, dict(stride=stride, padding=padding, dilation=dilation)


def sample_conv(draw: Draw) -> Case:
    if draw.choice([False, False, False, True]):
        return sample_winograd_conv(draw)
    n = draw.integer(1, 3)
    groups = draw.choice([1, 1, 2, 3])
    depthwise = draw.choice([False, False, True])
    group_in = 1 if depthwise else draw.integer(1, 3)
    group_out = draw.integer(1, 3)
    big = n < 3
    in_spatial, kernel, options = _sample_spatial(draw, n, max_kernel=4 if big else 3, max_out=4 if big else 3)
    layout = draw.choice([None, None, CHANNELS_LAST[n]])
    formulation = draw.choice(["auto", "auto", "textbook", "im2col"])
    if formulation != "auto":
        options["formulation"] = formulation
    return conv_case(
        (draw.integer(1, 2), groups * group_in, *in_spatial),
        (groups * group_out, group_in, *kernel),
        bias=draw.choice([True, False]),
        dimension_numbers=layout,
        groups=groups,
        **options,
    )


def sample_winograd_conv(draw: Draw) -> Case:
    """A 2-D 3x3 stride-1 one-group convolution, which formulation="winograd" computes: any sizes and padding."""
    pairs = tuple((draw.integer(0, 3), draw.integer(0, 3)) for _ in range(2))
    padding = draw.choice([draw.integer(0, 2), "SAME", "VALID", pairs])
    pairs = {"SAME": ((1, 1), (1, 1)), "VALID": ((0, 0), (0, 0))}.get(padding) if isinstance(padding, str) else None
    if pairs is None:
        pairs = ((padding, padding),) * 2 if isinstance(padding, int) else padding
    in_spatial = tuple(max(1, draw.integer(1, 5) + 2 - lo - hi) for lo, hi in pairs)  # 1 to 5 outputs, or more
    channels = draw.integer(1, 3)
    return conv_case(
        (draw.integer(1, 3), channels, *in_spatial),
        (draw.integer(1, 3), channels, 3, 3),
        bias=draw.choice([True, False]),
        dimension_numbers=draw.choice([None, CHANNELS_LAST[2]]),
        padding=padding,
        formulation=draw.choice(["winograd", "winograd", "auto"]),
    )


CONV_CASES = (
    conv_case((2, 3, 7, 7), (2, 3, 3, 3), stride=2),
    conv_case(
        (2, 4, 8, 9),
        (6, 2, 3, 2),
        stride=(2, 3),
        padding=((1, 2), (0, 1)),
        dilation=(2, 1),
        groups=2,
        formulation="textbook",
    ),
    conv_case((1, 4, 9, 9), (8, 1, 3, 3), padding="SAME", groups=4),  # depthwise, multiplier 2
    conv_case((2, 3, 9, 8), (4, 3, 2, 2), stride=3, padding="VALID", bias=False),  # stride > kernel
    conv_case((2, 3, 6, 6), (5, 3, 1, 1)),  # 1x1
    conv_case((2, 3, 11), (4, 3, 5), stride=2, padding=2, dilation=2),
    conv_case((1, 2, 5, 6, 4), (3, 2, 3, 2, 2), stride=(1, 2, 1), padding=1),
    conv_case((2, 4, 7, 8), (6, 2, 3, 3), dimension_numbers=CHANNELS_LAST[2], stride=2, padding="SAME", groups=2),
    # the im2col forward and weight gradient: chosen by "auto" on CPU for few input channels, and forced
    conv_case((2, 1, 9, 9), (4, 1, 3, 3), dimension_numbers=CHANNELS_LAST[2], padding="SAME"),
    conv_case(
        (2, 4, 8, 9),
        (6, 2, 3, 2),
        stride=(2, 3),
        padding=((1, 2), (0, 1)),
        dilation=(2, 1),
        groups=2,
        formulation="im2col",
    ),
    conv_case((2, 1, 9, 9), (4, 1, 3, 3), padding="SAME", formulation="textbook"),
    # Winograd F(2x2, 3x3): chosen by "auto" on CPU for 3x3 stride-1 layers with >= 32 channels, and forced
    conv_case((2, 32, 5, 6), (32, 32, 3, 3), dimension_numbers=CHANNELS_LAST[2], padding=1),
    conv_case((3, 2, 7, 6), (3, 2, 3, 3), padding=((3, 0), (0, 2)), formulation="winograd"),
    conv_case((2, 3, 5, 5), (4, 3, 3, 3), dimension_numbers=CHANNELS_LAST[2], padding="VALID", formulation="winograd"),
)


CONV = op_spec(
    convgrad.conv,
    autodiff.conv,
    conv_forward_in_layout(loops.conv),
    conv_vjp_in_layout(loops.conv_vjp),
    CONV_CASES,
    sample_conv,
    argnums=(0, 1, 2),
    linear_argnums=(0, 1, 2),
    implementation_options=("formulation",),
)


# ---------------------------------------------------------------------------- conv_transpose


def conv_transpose_case(x_shape, w_shape, bias=True, **kwargs) -> Case:
    """A conv_transpose case from channel-first shapes: ``x (N, C, *in)``, ``w (C, O/G, *k)``, ``b (O,)``."""
    groups = kwargs.get("groups", 1)
    return case(tuple(x_shape), tuple(w_shape), (groups * w_shape[1],) if bias else None, **kwargs)


def sample_conv_transpose(draw: Draw) -> Case:
    """Any rank, groups (depthwise-like too), stride, dilation > stride, padding, any legal output_padding."""
    n = draw.integer(1, 3)
    groups = draw.choice([1, 1, 2, 3])
    group_in = draw.choice([1, 2, 3])  # 1: depthwise-like, one input channel per group
    group_out = draw.integer(1, 3)
    max_in, max_kernel = (4, 3) if n < 3 else (3, 2)
    dims = []
    for _ in range(n):
        i, k, s, d = draw.integer(1, max_in), draw.integer(1, max_kernel), draw.integer(1, 3), draw.integer(1, 3)
        output_padding = draw.integer(0, max(s, d) - 1)
        footprint = (i - 1) * s + (k - 1) * d + 1
        padding = draw.integer(0, min(2, (footprint + output_padding - 1) // 2))  # at least one output sample
        dims.append((i, k, s, padding, output_padding, d))
    in_spatial, kernel, *options = zip(*dims)
    # an int where all dims agree, sometimes
    options = [draw.choice([values, values[0]]) if len(set(values)) == 1 else values for values in options]
    stride, padding, output_padding, dilation = options
    return conv_transpose_case(
        (draw.integer(1, 2), groups * group_in, *in_spatial),
        (groups * group_in, group_out, *kernel),
        bias=draw.choice([True, False]),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
    )


CONV_TRANSPOSE_CASES = (
    # the usual 2x upsampling layer: k 3, s 2, p 1, output_padding 1 doubles the size (4 -> 8)
    conv_transpose_case((2, 3, 4, 4), (3, 2, 3, 3), stride=2, padding=1, output_padding=1),
    # groups, dilation > stride with output_padding >= stride (2 >= 1), per-dim everything
    conv_transpose_case(
        (2, 4, 5, 4), (4, 3, 3, 2), stride=(1, 2), padding=(2, 0), output_padding=(2, 1), dilation=(3, 1), groups=2
    ),
    conv_transpose_case((1, 4, 5, 5), (4, 2, 3, 3), stride=2, padding=1, groups=4),  # depthwise-like, multiplier 2
    # stride > kernel (gaps no tap reaches); output_padding 2 > padding 0: the VJP's conv crops g
    conv_transpose_case((2, 3, 4, 3), (3, 4, 2, 2), stride=3, output_padding=2, bias=False),
    conv_transpose_case((2, 3, 6), (3, 4, 5), stride=2, padding=3, output_padding=2, dilation=3),  # 1-d, op >= s
    # 3-d; a 1-tap dim with padding 1 > d (k - 1): the forward's zero-inserted input is cropped, not padded
    conv_transpose_case(
        (1, 2, 3, 4, 2), (2, 3, 3, 1, 2), stride=(2, 1, 2), padding=(1, 1, 0), output_padding=(1, 0, 1)
    ),
)


CONV_TRANSPOSE = op_spec(
    convgrad.conv_transpose,
    autodiff.conv_transpose,
    loops.conv_transpose,
    loops.conv_transpose_vjp,
    CONV_TRANSPOSE_CASES,
    sample_conv_transpose,
    argnums=(0, 1, 2),
    linear_argnums=(0, 1, 2),
)

SPECS = (CONV, CONV_TRANSPOSE)
