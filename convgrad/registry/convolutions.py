"""Registry specs of the convolution family: ``pad``, ``conv``, ``conv_transpose`` and lax's two convolutions.

Each op's cases, sampler and spec together, in the order of ``docs/derivations.md``.
"""

from __future__ import annotations

from jax import lax

import convgrad
from convgrad import autodiff, loops
from convgrad.loops.layouts import conv_forward_in_layout, conv_vjp_in_layout, lax_in_layout
from convgrad.ops.geometry import CHANNELS_FIRST, CHANNELS_LAST
from convgrad.registry.spec import Case, Draw, case, op_spec

# ---------------------------------------------------------------------------- pad

PAD_CASES = (
    case((2, 3, 5), pad_width=((0, 0), (1, 2), (2, 1)), mode="reflect"),
    case((2, 3, 5), pad_width=((0, 0), (1, 2), (2, 4)), mode="replicate"),  # wider than the axis: one edge copied 4x
    case((2, 3, 5), pad_width=((0, 0), (3, 2), (5, 1)), mode="circular"),  # a whole wrap (5 = the axis size)
    case((2, 3, 5), pad_width=((1, 0), (-1, 2), (2, -3)), mode="zeros"),  # negative widths crop
    case((1, 1, 4, 4), pad_width=((0, 0), (0, 0), (3, 3), (1, 2)), mode="reflect"),  # the widest reflect (n - 1)
    case((3, 1), pad_width=((1, 1), (2, 3)), mode="replicate"),  # an axis of size 1 copied both ways
    case((3, 1), pad_width=((0, 0), (1, 1)), mode="circular"),
    case((4,), pad_width=2, mode="reflect"),  # one int for every axis
    case((0, 3, 4), pad_width=((0, 0), (1, 1), (2, 0)), mode="reflect"),  # an empty batch
    case((2, 0, 4), pad_width=((1, 0), (0, 0), (1, 1)), mode="circular"),  # an empty axis, not padded
    case((2, 0, 4), pad_width=((0, 0), (2, 1), (1, 1)), mode="zeros"),  # an empty axis padded with zeros
)


def sample_pad(draw: Draw) -> Case:
    """Any rank 1-4, any mode, widths up to its limit (reflect n - 1, circular n, replicate and zeros any)."""
    mode = draw.choice(["zeros", "reflect", "replicate", "circular"])
    shape, widths = [], []
    for _ in range(draw.integer(1, 4)):
        n = draw.integer(1, 5)
        most = {"reflect": n - 1, "circular": n}.get(mode, 3)
        least = -n if mode == "zeros" else 0
        lo = draw.integer(least, most)
        hi = draw.integer(max(least, -n - lo) if mode == "zeros" else 0, most)
        shape.append(n)
        widths.append((lo, hi))
    return case(tuple(shape), pad_width=tuple(widths), mode=mode)


PAD = op_spec(convgrad.pad, autodiff.pad, loops.pad, loops.pad_vjp, PAD_CASES, sample_pad, linear_argnums=(0,))

# ---------------------------------------------------------------------------- conv


def _layout(shape: tuple[int, ...], canonical: str, layout: str) -> tuple[int, ...]:
    """``shape`` (in ``canonical`` order) permuted to ``layout``."""
    return tuple(shape[canonical.index(c)] for c in layout)


def conv_case(x_shape, w_shape, bias=True, dimension_numbers=None, unbatched=False, **kwargs) -> Case:
    """A conv case from channel-first shapes, laid out as ``dimension_numbers`` says (``x`` without its batch
    axis when ``unbatched``)."""
    n = len(w_shape) - 2
    b_shape = (w_shape[0],) if bias else None
    lhs, rhs = CHANNELS_FIRST[n][:2] if dimension_numbers is None else dimension_numbers[:2]
    x_shape = _layout(x_shape, CHANNELS_FIRST[n][0], lhs)
    w_shape = _layout(w_shape, CHANNELS_FIRST[n][1], rhs)
    if dimension_numbers is not None:
        kwargs["dimension_numbers"] = tuple(dimension_numbers)
    if unbatched:
        x_shape = x_shape[: lhs.index("N")] + x_shape[lhs.index("N") + 1 :]
    return case(tuple(x_shape), tuple(w_shape), b_shape, **kwargs)


def _sample_spatial(draw: Draw, n: int, max_kernel: int, max_out: int):
    """Per-dim kernel, stride, dilation, a padding argument, and an input size with at least one output."""
    kernel = tuple(draw.integer(1, max_kernel) for _ in range(n))
    stride = tuple(draw.integer(1, 3) for _ in range(n))
    dilation = tuple(draw.integer(1, 2) for _ in range(n))
    form = draw.choice(["int", "ints", "pairs", "negative", "SAME", "SAME_LOWER", "VALID"])
    if form == "int":
        padding = draw.integer(0, 2)
        pairs = [(padding, padding)] * n
    elif form == "ints":
        padding = tuple(draw.integer(0, 2) for _ in range(n))
        pairs = [(p, p) for p in padding]
    elif form == "pairs":
        padding = tuple((draw.integer(0, 3), draw.integer(0, 3)) for _ in range(n))
        pairs = list(padding)
    elif form == "negative":  # lax's cropping pads
        padding = tuple((draw.integer(-2, 2), draw.integer(-2, 2)) for _ in range(n))
        pairs = list(padding)
    else:
        padding, pairs = form, None
    sizes = []
    for axis in range(n):
        k, s, d = kernel[axis], stride[axis], dilation[axis]
        if pairs is None and form.startswith("SAME"):
            sizes.append(draw.integer(1, 2 + max_out * s))
            continue
        lo, hi = pairs[axis] if pairs is not None else (0, 0)
        out = draw.integer(1, max_out)
        sizes.append(max(1, (out - 1) * s + (k - 1) * d + 1 + draw.integer(0, s - 1) - lo - hi, -lo - hi))
    return tuple(sizes), kernel, dict(stride=stride, padding=padding, dilation=dilation)


def sample_conv(draw: Draw) -> Case:
    """Any rank, groups, layout, formulation; lax's padding forms (negative pairs, SAME_LOWER), PyTorch's padding
    modes, unbatched inputs, and now and then an empty batch, no channels or an empty output."""
    if draw.choice([False, False, False, True]):
        return sample_winograd_conv(draw)
    n = draw.integer(1, 3)
    groups = draw.choice([1, 1, 2, 3])
    depthwise = draw.choice([False, False, True])
    group_in = 1 if depthwise else draw.integer(1, 3)
    group_out = draw.integer(1, 3)
    big = n < 3
    in_spatial, kernel, options = _sample_spatial(draw, n, max_kernel=4 if big else 3, max_out=4 if big else 3)
    mode = draw.choice(["zeros", "zeros", "zeros", "reflect", "replicate", "circular"])
    if mode != "zeros":
        options["padding_mode"] = mode
        options["padding"] = tuple(draw.integer(0, size - 1 if mode == "reflect" else size) for size in in_spatial)
        in_spatial = tuple(max(size, 1) for size in in_spatial)
    layout = draw.choice([None, None, CHANNELS_LAST[n]])
    formulation = draw.choice(["auto", "auto", "textbook", "im2col", "polyphase"])
    if formulation != "auto":
        options["formulation"] = formulation
    batch = draw.choice([1, 2, 2, 2, 0])
    empty = draw.choice([None] * 8 + ["channels", "output"])
    if empty == "channels" and not depthwise:
        group_in = 0
    elif empty == "output" and mode == "zeros":
        options["padding"] = ((0, 0),) * n  # a kernel wider than the input: no window fits
        kernel = tuple(size + 1 for size in in_spatial)
        options["dilation"] = 1
    return conv_case(
        (batch, groups * group_in, *in_spatial),
        (groups * group_out, group_in, *kernel),
        bias=draw.choice([True, False]),
        dimension_numbers=layout,
        groups=groups,
        unbatched=batch == 1 and draw.choice([False, True]),
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
    # the polyphase input gradient: chosen by "auto" on CPU for strided 3x3 layers with >= 32 channels, and forced
    conv_case((2, 32, 7, 7), (32, 32, 3, 3), dimension_numbers=CHANNELS_LAST[2], stride=2, padding=1),
    conv_case(
        (2, 4, 8, 9),
        (6, 2, 3, 2),
        stride=(2, 3),
        padding=((-1, 2), (2, -1)),
        dilation=(2, 1),
        groups=2,
        formulation="polyphase",
    ),
    conv_case((2, 3, 9, 8), (4, 3, 1, 1), stride=2, formulation="polyphase"),  # three phases no tap reaches
    # PyTorch's padding modes: the padding is its own op (pad), its VJP folds the border back
    conv_case((2, 3, 6, 7), (4, 3, 3, 3), padding=(2, 1), padding_mode="reflect"),
    conv_case((2, 2, 5, 6), (4, 2, 3, 2), padding="SAME", padding_mode="replicate", dimension_numbers=CHANNELS_LAST[2]),
    conv_case((1, 2, 7), (3, 2, 3), stride=2, padding=(7,), padding_mode="circular"),  # a whole wrap
    conv_case((2, 1, 6, 6), (4, 1, 3, 3), padding=1, padding_mode="reflect", formulation="im2col"),
    # lax's padding: negative pairs crop, SAME_LOWER puts the odd zero low, a kernel wider than the input
    conv_case((2, 3, 8, 7), (4, 3, 3, 2), padding=((-1, 2), (1, -2)), stride=(2, 1)),
    conv_case((2, 2, 6, 7), (3, 2, 2, 3), padding="SAME_LOWER", stride=2, formulation="im2col"),
    conv_case((2, 3, 3, 5), (4, 3, 4, 2), padding=((0, 0), (1, 1))),  # no window fits along H: y is (2, 4, 0, 6)
    # unbatched inputs, PyTorch's rule: x has one axis fewer than w
    conv_case((1, 3, 6, 5), (4, 3, 3, 3), padding=1, unbatched=True),
    conv_case((1, 2, 7, 6), (4, 2, 2, 3), dimension_numbers=CHANNELS_LAST[2], stride=2, unbatched=True),
    # zero-size: an empty batch, no input channels, no output channels, no samples, in each formulation
    conv_case((0, 3, 6, 6), (4, 3, 3, 3), padding=1),
    conv_case((0, 32, 5, 5), (32, 32, 3, 3), padding=1, formulation="winograd"),
    conv_case((2, 0, 6, 6), (4, 0, 3, 3), padding=1, formulation="im2col"),
    conv_case((2, 0, 6, 6), (4, 0, 3, 3), padding=1, formulation="textbook"),
    conv_case((2, 3, 6, 6), (0, 3, 3, 3), padding=1, formulation="winograd"),
    conv_case((2, 3, 0, 6), (4, 3, 3, 3), padding=(0, 1), formulation="im2col"),
    conv_case((2, 3, 0, 6), (4, 3, 3, 3), padding=(1, 1), formulation="winograd"),  # padding makes 2 rows of bias
    # a dilation and a padding far wider than the input: im2col reads each tap unpadded; a 5x5 output
    conv_case((1, 1, 5, 5), (2, 1, 3, 3), dilation=10**6, padding=10**6, formulation="im2col"),
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


TRANSPOSE_FIRST = {1: ("NCH", "IOH", "NCH"), 2: ("NCHW", "IOHW", "NCHW"), 3: ("NCDHW", "IODHW", "NCDHW")}


def conv_transpose_case(x_shape, w_shape, bias=True, dimension_numbers=None, unbatched=False, **kwargs) -> Case:
    """A conv_transpose case from channel-first shapes ``x (N, C, *in)``, ``w (C, O/G, *k)``, ``b (O,)``, laid out
    as ``dimension_numbers`` says (``x`` without its batch axis when ``unbatched``)."""
    n = len(w_shape) - 2
    groups = kwargs.get("groups", 1)
    b_shape = (groups * w_shape[1],) if bias else None
    lhs, rhs = TRANSPOSE_FIRST[n][:2] if dimension_numbers is None else dimension_numbers[:2]
    x_shape = _layout(x_shape, TRANSPOSE_FIRST[n][0], lhs)
    w_shape = _layout(w_shape, TRANSPOSE_FIRST[n][1], rhs)
    if dimension_numbers is not None:
        kwargs["dimension_numbers"] = tuple(dimension_numbers)
    if unbatched:
        x_shape = x_shape[: lhs.index("N")] + x_shape[lhs.index("N") + 1 :]
    return case(tuple(x_shape), tuple(w_shape), b_shape, **kwargs)


def sample_conv_transpose(draw: Draw) -> Case:
    """Any rank, groups (depthwise-like too), stride, dilation > stride, padding, any legal output_padding or an
    output_size, channels-last, unbatched, and now and then an empty batch or no channels."""
    n = draw.integer(1, 3)
    groups = draw.choice([1, 1, 2, 3])
    group_in = draw.choice([1, 2, 3, 3, 0])  # 1: depthwise-like, one input channel per group; 0: no channels
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
    extra = {}
    if draw.choice([False, False, True]):  # the same output padding asked for by output_size (when s allows it)
        per_dim = lambda v: v if isinstance(v, tuple) else (v,) * n
        pads = per_dim(output_padding)
        if all(e < s for e, s in zip(pads, per_dim(stride))):
            sizes = [
                (i - 1) * s - 2 * p + (k - 1) * d + 1 + e
                for i, k, s, p, d, e in zip(
                    in_spatial, kernel, per_dim(stride), per_dim(padding), per_dim(dilation), pads
                )
            ]
            extra["output_size"], output_padding = tuple(sizes), 0
    batch = draw.choice([1, 2, 2, 0])
    return conv_transpose_case(
        (batch, groups * group_in, *in_spatial),
        (groups * group_in, group_out, *kernel),
        bias=draw.choice([True, False]),
        dimension_numbers=draw.choice([None, None, CHANNELS_LAST[n]]),
        unbatched=batch == 1 and draw.choice([False, True]),
        stride=stride,
        padding=padding,
        output_padding=output_padding,
        dilation=dilation,
        groups=groups,
        **extra,
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
    # channels-last (Flax's ConvTranspose kernel, (kh, kw, C, O/G)), with groups
    conv_transpose_case((2, 4, 4, 3), (4, 3, 3, 2), dimension_numbers=CHANNELS_LAST[2], stride=2, padding=1, groups=2),
    # output_size picks output_padding (PyTorch's forward(output_size=...)): 9 or 10 from 4 samples at stride 2
    conv_transpose_case((2, 2, 4, 5), (2, 3, 3, 3), stride=2, padding=(1, 0), output_size=(8, 12)),
    conv_transpose_case((1, 2, 4, 5), (2, 3, 3, 3), stride=2, output_size=(3, 10, 11), unbatched=True),
    conv_transpose_case((1, 2, 5, 4), (2, 3, 2, 3), dimension_numbers=CHANNELS_LAST[2], unbatched=True, stride=2),
    # zero-size: an empty batch, no input channels, no output channels, no input samples, an empty output
    conv_transpose_case((0, 3, 4, 4), (3, 2, 3, 3), stride=2, padding=1),
    conv_transpose_case((2, 0, 4, 4), (0, 2, 3, 3), stride=2),
    conv_transpose_case((2, 3, 4, 4), (3, 0, 3, 3), stride=2),
    conv_transpose_case((2, 3, 0, 4), (3, 2, 3, 3), stride=2),  # y has d (k - 1) = 2 rows of bias
    conv_transpose_case((2, 3, 1, 4), (3, 2, 3, 3), padding=(2, 0)),  # 1 + 2 - 4 = 0 output rows
)


CONV_TRANSPOSE = op_spec(
    convgrad.conv_transpose,
    autodiff.conv_transpose,
    conv_forward_in_layout(loops.conv_transpose, kernel="IO"),
    conv_vjp_in_layout(loops.conv_transpose_vjp, kernel="IO"),
    CONV_TRANSPOSE_CASES,
    sample_conv_transpose,
    argnums=(0, 1, 2),
    linear_argnums=(0, 1, 2),
)


# ---------------------------------------------------------------------------- lax.conv_general_dilated


def lax_case(lhs_shape, rhs_shape, window_strides, padding, dimension_numbers=None, **kwargs) -> Case:
    """A ``lax.conv_general_dilated`` case from canonical shapes (``N C *in``, ``O I *k``), laid out as
    ``dimension_numbers`` says (three strings; ``None`` keeps the canonical order)."""
    if isinstance(dimension_numbers, lax.ConvDimensionNumbers):
        lhs_shape = _placed(lhs_shape, dimension_numbers.lhs_spec)
        rhs_shape = _placed(rhs_shape, dimension_numbers.rhs_spec)
    elif dimension_numbers is not None:
        lhs, rhs, _ = dimension_numbers
        spatial = "".join(c for c in rhs if c not in "OI")
        lhs_shape = _layout(lhs_shape, "NC" + spatial, lhs)
        rhs_shape = _layout(rhs_shape, "OI" + spatial, rhs)
    if dimension_numbers is not None:
        kwargs["dimension_numbers"] = dimension_numbers
    pads = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    return case(tuple(lhs_shape), tuple(rhs_shape), window_strides=tuple(window_strides), padding=pads, **kwargs)


def _placed(canonical: tuple[int, ...], spec: tuple[int, ...]) -> tuple[int, ...]:
    """A shape whose axis ``spec[j]`` has the canonical ``j``-th size (lax's ``ConvDimensionNumbers`` meaning)."""
    shape = [0] * len(canonical)
    for axis, size in zip(spec, canonical):
        shape[axis] = size
    return tuple(shape)


LAX_CASES = (
    lax_case((2, 3, 6, 7), (4, 3, 3, 2), (1, 2), ((1, 2), (0, 1))),
    lax_case((2, 3, 9, 10), (4, 3, 4, 5), (1, 2), ((1, 2), (2, 0)), lhs_dilation=(2, 2), rhs_dilation=(1, 2)),
    # batch groups: channel o reads batch block o // (O/B), in channels-last; and a 1-d one with input dilation
    lax_case((4, 3, 5, 6), (6, 3, 2, 3), (2, 1), "VALID", batch_group_count=2, dimension_numbers=CHANNELS_LAST[2]),
    lax_case((6, 2, 7), (6, 2, 3), (1,), ((2, -1),), lhs_dilation=(3,), batch_group_count=3),
    lax_case((2, 6, 5, 6), (4, 3, 3, 2), (1, 1), "SAME_LOWER", feature_group_count=2, rhs_dilation=(2, 1)),
    # negative padding crops; lax's big pads of its own test grid
    lax_case((2, 3, 9, 10), (2, 3, 4, 5), (2, 1), ((-1, 3), (7, 13)), lhs_dilation=(1, 4), rhs_dilation=(1, 2)),
    lax_case(  # a ConvDimensionNumbers: NHWC, HWIO, NHWC as axis numbers
        (2, 2, 4, 5),
        (3, 2, 2, 2),
        (1, 1),
        "SAME",
        dimension_numbers=lax.ConvDimensionNumbers((0, 3, 1, 2), (3, 2, 0, 1), (0, 3, 1, 2)),
    ),
    lax_case((2, 2, 4, 3), (3, 2, 2, 2), (1, 1), "same", dimension_numbers=("NCHW", "HWIO", "NHWC")),  # mixed layouts
    lax_case((3, 4), (6, 2), (), (), feature_group_count=2),  # no spatial dims: a grouped matrix product
    lax_case((4, 3), (6, 3), (), "VALID", batch_group_count=2),
    lax_case((1, 2, 4, 3, 3), (2, 2, 2, 1, 2), (1, 2, 1), ((1, 0), (0, 1), (1, 1)), lhs_dilation=(2, 1, 1)),
    lax_case((2, 3, 5, 6), (4, 3, 3, 3), (1, 1), ((1, 1), (1, 1)), precision="highest"),
    # zero-size: no batch, no features, an empty dilated input, an empty output
    lax_case((0, 3, 5, 6), (4, 3, 3, 3), (1, 1), ((1, 1), (1, 1))),
    lax_case((2, 0, 5, 6), (4, 0, 3, 3), (1, 1), ((1, 1), (1, 1)), lhs_dilation=(2, 1)),
    lax_case((2, 3, 9, 0), (4, 3, 4, 5), (2, 1), ((10, 8), (7, 13)), lhs_dilation=(1, 4)),  # lax's own w=0 grid
    lax_case((4, 3, 2, 5), (2, 3, 3, 2), (1, 1), "VALID", batch_group_count=2),  # H' = 0
)


def sample_lax_conv(draw: Draw) -> Case:
    """0 to 3 spatial dims; input and kernel dilation, strides, any-sign pairs or the three strings (without an
    input dilation, as lax requires), feature or batch groups, a random layout, now and then a zero-size axis."""
    n = draw.integer(0, 3)
    small = n == 3
    groups_kind = draw.choice(["none", "none", "feature", "batch"])
    count = draw.integer(2, 3) if groups_kind != "none" else 1
    feature_groups, batch_groups = (count, 1) if groups_kind == "feature" else (1, count)
    group_in, out_per_group = draw.integer(1, 2), draw.integer(1, 2)
    batch = batch_groups * draw.integer(0 if draw.choice([False, False, False, True]) else 1, 2)
    lhs_dilation = tuple(draw.integer(1, 3) for _ in range(n))
    rhs_dilation = tuple(draw.integer(1, 2) for _ in range(n))
    strides = tuple(draw.integer(1, 3) for _ in range(n))
    kernel = tuple(draw.integer(1, 2 if small else 3) for _ in range(n))
    in_spatial = tuple(draw.integer(1, 3 if small else 5) for _ in range(n))
    if all(a == 1 for a in lhs_dilation) and draw.choice([False, True]):
        padding = draw.choice(["SAME", "SAME_LOWER", "VALID"])
    else:
        padding = tuple((draw.integer(-min(1, i - 1), 2), draw.integer(-min(1, i - 1), 2)) for i in in_spatial)
    options = {}
    if n and draw.choice([True, False]):
        options["lhs_dilation"] = lhs_dilation
    if n and draw.choice([True, False]):
        options["rhs_dilation"] = rhs_dilation
    if feature_groups > 1:
        options["feature_group_count"] = feature_groups
    if batch_groups > 1:
        options["batch_group_count"] = batch_groups
    layout = None
    if n and draw.choice([False, True]):
        spatial = "DHW"[3 - n :]
        permuted = lambda letters: "".join(sorted(letters, key=lambda _: draw.integer(0, 9)))
        layout = (permuted("NC" + spatial), permuted("OI" + spatial), permuted("NC" + spatial))
    return lax_case(
        (batch, feature_groups * group_in, *in_spatial),
        (feature_groups * batch_groups * out_per_group, group_in, *kernel),
        strides,
        padding,
        dimension_numbers=layout,
        **options,
    )


LAX_CONV_GENERAL_DILATED = op_spec(
    convgrad.lax.conv_general_dilated,
    autodiff.conv_general_dilated,
    lax_in_layout(loops.conv_general_dilated, 2),
    lax_in_layout(loops.conv_general_dilated_vjp, 3),
    LAX_CASES,
    sample_lax_conv,
    argnums=(0, 1),
    linear_argnums=(0, 1),
    name="lax.conv_general_dilated",
)


# ---------------------------------------------------------------------------- lax.conv_transpose


def lax_transpose_layout(ndim: int) -> tuple[str, str, str]:
    """``lax.conv_transpose``'s default layout: ``("NHWC", "HWIO", "NHWC")`` in 2-d, the same pattern in 0 to 3."""
    spatial = "HWD"[: ndim - 2]
    return "N" + spatial + "C", spatial + "IO", "N" + spatial + "C"


def lax_transpose_case(lhs_shape, rhs_shape, strides, padding, dimension_numbers=None, **kwargs) -> Case:
    """A ``lax.conv_transpose`` case from canonical shapes (``N C *in``, ``O I *k``, the kernel as lax applies it),
    laid out as ``dimension_numbers`` says (``None``: lax's default, ``NHWC``/``HWIO``/``NHWC`` and the like)."""
    layout = lax_transpose_layout(len(lhs_shape)) if dimension_numbers is None else dimension_numbers
    if dimension_numbers is not None:
        kwargs["dimension_numbers"] = dimension_numbers
    lhs, rhs, _ = layout
    spatial = "".join(c for c in rhs if c not in "OI")
    if kwargs.get("transpose_kernel"):  # the kernel is given with I and O swapped
        rhs_shape = (rhs_shape[1], rhs_shape[0], *rhs_shape[2:])
    pads = padding if isinstance(padding, str) else tuple(tuple(p) for p in padding)
    return case(
        _layout(tuple(lhs_shape), "NC" + spatial, lhs),
        _layout(tuple(rhs_shape), "OI" + spatial, rhs),
        strides=tuple(strides),
        padding=pads,
        **kwargs,
    )


LAX_TRANSPOSE_CASES = (
    lax_transpose_case((2, 3, 4, 5), (2, 3, 3, 3), (2, 2), "SAME"),
    lax_transpose_case((2, 3, 4, 5), (2, 3, 4, 3), (2, 1), "VALID", rhs_dilation=(2, 1)),
    lax_transpose_case((2, 2, 5), (3, 2, 3), (3,), ((1, 2),)),  # pairs pad the dilated input as given
    lax_transpose_case((2, 2, 4, 3), (3, 2, 3, 2), (2, 2), ((0, 1), (1, 0)), use_consistent_padding=True),
    lax_transpose_case((2, 3, 4, 4), (2, 3, 3, 3), (2, 2), "SAME", transpose_kernel=True),  # Keras's
    lax_transpose_case(
        (2, 2, 4, 3),
        (3, 2, 2, 3),
        (1, 2),
        ((1, 1), (0, 2)),
        transpose_kernel=True,
        use_consistent_padding=True,
        dimension_numbers=CHANNELS_FIRST[2],
    ),
    lax_transpose_case((3, 2), (4, 2), (), "VALID"),  # no spatial dims
    lax_transpose_case((0, 3, 4, 4), (2, 3, 3, 3), (2, 2), "SAME"),  # an empty batch
    lax_transpose_case((2, 3, 0, 4), (2, 3, 3, 3), (2, 2), "VALID"),  # no input rows: the padding alone
)


def sample_lax_transpose(draw: Draw) -> Case:
    """1 to 3 spatial dims, strides, kernel dilation, SAME/VALID or pairs (as given or lax's consistent padding),
    the kernel transposed or not, channel-first or lax's default layout."""
    n = draw.integer(1, 3)
    small = n == 3
    strides = tuple(draw.integer(1, 3) for _ in range(n))
    kernel = tuple(draw.integer(1, 2 if small else 3) for _ in range(n))
    in_spatial = tuple(draw.integer(1, 3 if small else 4) for _ in range(n))
    options = {}
    dilation = (1,) * n
    if draw.choice([False, True]):
        dilation = options["rhs_dilation"] = tuple(draw.integer(1, 2) for _ in range(n))
    form = draw.choice(["SAME", "VALID", "pairs", "consistent"])
    if form in ("SAME", "VALID"):
        padding = form
    else:  # a forward padding (consistent) up to the dilated kernel's extent - 1, which pads the dilated input >= 0
        most = [min(2, (k - 1) * d) if form == "consistent" else 2 for k, d in zip(kernel, dilation)]
        padding = tuple((draw.integer(0, m), draw.integer(0, m)) for m in most)
        options["use_consistent_padding"] = form == "consistent"
    if draw.choice([False, True]):
        options["transpose_kernel"] = True
    channels = draw.integer(1, 3)
    return lax_transpose_case(
        (draw.integer(1, 2), channels, *in_spatial),
        (draw.integer(1, 3), channels, *kernel),
        strides,
        padding,
        dimension_numbers=draw.choice([None, CHANNELS_FIRST[n]]),
        **options,
    )


LAX_CONV_TRANSPOSE = op_spec(
    convgrad.lax.conv_transpose,
    autodiff.lax_conv_transpose,
    lax_in_layout(loops.lax_conv_transpose, 2, default=lax_transpose_layout),
    lax_in_layout(loops.lax_conv_transpose_vjp, 3, default=lax_transpose_layout),
    LAX_TRANSPOSE_CASES,
    sample_lax_transpose,
    argnums=(0, 1),
    linear_argnums=(0, 1),
    name="lax.conv_transpose",
)

SPECS = (PAD, CONV, CONV_TRANSPOSE, LAX_CONV_GENERAL_DILATED, LAX_CONV_TRANSPOSE)
