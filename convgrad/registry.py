"""The one table of convgrad's differentiable ops, walked by the tests and by ``convgrad verify``.

Each :class:`OpSpec` names the custom op, its autodiff reference (plain lax,
:mod:`convgrad.autodiff`), its loop reference (NumPy, :mod:`convgrad.reference`),
how to make arguments, a default grid of :class:`Case` s, a random case sampler,
which arguments are differentiable and in which the op is affine. Adding an op
here is what puts it under every check.

Samplers take a :class:`Draw`: the tests pass one backed by hypothesis (so
failures shrink), the CLI one backed by NumPy.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import jax.numpy as jnp
import numpy as np

import convgrad
from convgrad import autodiff, reference

T = TypeVar("T")


class Draw(Protocol):
    """Where a sampler gets its random choices."""

    def integer(self, low: int, high: int) -> int:
        """An int in ``[low, high]``."""
        ...

    def choice(self, options: Sequence[T]) -> T:
        """One of ``options``."""
        ...


class RandomDraw:
    """:class:`Draw` backed by a NumPy generator."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.integers(low, high + 1))

    def choice(self, options: Sequence[T]) -> T:
        return options[int(self.rng.integers(len(options)))]


@dataclasses.dataclass(frozen=True)
class Case:
    """One configuration: the shape of each array argument (``None`` for an absent one) and keyword arguments.

    ``inputs`` names how a spec's ``make_args`` should draw the values
    (``"normal"`` unless a spec defines others, such as ``"saturated"`` logits);
    it is never passed to the op.
    """

    shapes: tuple[tuple[int, ...] | None, ...]
    kwargs: tuple[tuple[str, Any], ...] = ()
    inputs: str = "normal"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.kwargs)

    def __str__(self) -> str:
        shapes = ", ".join("None" if s is None else "x".join(map(str, s)) for s in self.shapes)
        options = ", ".join(f"{k}={v!r}" for k, v in self.kwargs)
        inputs = "" if self.inputs == "normal" else f" [{self.inputs} inputs]"
        return f"({shapes}{'; ' if options else ''}{options}){inputs}"


def case(*shapes: tuple[int, ...] | None, inputs: str = "normal", **kwargs: Any) -> Case:
    """A :class:`Case` from argument shapes and the op's keyword arguments."""
    return Case(tuple(shapes), tuple(sorted(kwargs.items())), inputs)


@dataclasses.dataclass(frozen=True)
class OpSpec:
    """Everything the checks need to know about one op.

    ``fn``, ``reference``: ``f(*arrays, **case.options)``. ``loop_forward`` and
    ``loop_vjp(*arrays, cotangent, **options)`` are NumPy float64; ``loop_vjp``
    returns one gradient per argument (``None`` where not differentiable).
    ``make_args(rng, case, dtype)`` builds the arrays; ``linear_argnums`` are
    the arguments in which ``fn`` is affine (adjoint identity, exact finite
    differences). ``output`` picks the differentiable output when ``fn``
    returns a tuple (``max_pool``'s ``(y, switches)``).
    """

    name: str
    fn: Callable[..., Any]
    reference: Callable[..., Any]
    loop_forward: Callable[..., Any]
    loop_vjp: Callable[..., tuple[Any, ...]]
    cases: tuple[Case, ...]
    sample: Callable[[Draw], Case]
    argnums: tuple[int, ...]
    linear_argnums: tuple[int, ...] = ()
    make_args: Callable[[np.random.Generator, Case, Any], tuple[Any, ...]] | None = None
    dtypes: tuple[str, ...] = ("float32", "float64", "bfloat16", "float16")
    quick_cases: int = 4

    def arguments(self, rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
        """Arrays for ``case`` in ``dtype`` (standard normal unless the spec says otherwise)."""
        if self.make_args is not None:
            return self.make_args(rng, case, dtype)
        return tuple(None if s is None else rng.standard_normal(s).astype(dtype) for s in case.shapes)


# ---------------------------------------------------------------------------- conv

_CHANNELS_LAST = {1: ("NHC", "HIO", "NHC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}
_CHANNELS_FIRST = {1: ("NCH", "OIH", "NCH"), 2: ("NCHW", "OIHW", "NCHW"), 3: ("NCDHW", "OIDHW", "NCDHW")}


def _layout(shape: tuple[int, ...], canonical: str, layout: str) -> tuple[int, ...]:
    return tuple(shape[canonical.index(c)] for c in layout)


def conv_case(x_shape, w_shape, bias=True, dimension_numbers=None, **kwargs) -> Case:
    """A conv case from channel-first shapes, laid out as ``dimension_numbers`` says."""
    n = len(w_shape) - 2
    b_shape = (w_shape[0],) if bias else None
    if dimension_numbers is not None:
        lhs, rhs, _ = dimension_numbers
        x_shape = _layout(x_shape, _CHANNELS_FIRST[n][0], lhs)
        w_shape = _layout(w_shape, _CHANNELS_FIRST[n][1], rhs)
        kwargs["dimension_numbers"] = tuple(dimension_numbers)
    return case(tuple(x_shape), tuple(w_shape), b_shape, **kwargs)


def _conv_loop_forward(x, w, b, dimension_numbers=None, formulation=None, **options):
    if dimension_numbers is None:
        return reference.conv(x, w, b, **options)
    n = np.ndim(w) - 2
    lhs, rhs, out = dimension_numbers
    first = _CHANNELS_FIRST[n]
    y = reference.conv(
        reference.to_channel_first(x, lhs, first[0]), reference.to_channel_first(w, rhs, first[1]), b, **options
    )
    return reference.from_channel_first(y, first[2], out)


def _conv_loop_vjp(x, w, b, g, dimension_numbers=None, formulation=None, **options):
    if dimension_numbers is None:
        return reference.conv_vjp(x, w, b, g, **options)
    n = np.ndim(w) - 2
    lhs, rhs, out = dimension_numbers
    first = _CHANNELS_FIRST[n]
    dx, dw, db = reference.conv_vjp(
        reference.to_channel_first(x, lhs, first[0]),
        reference.to_channel_first(w, rhs, first[1]),
        b,
        reference.to_channel_first(g, out, first[2]),
        **options,
    )
    return reference.from_channel_first(dx, first[0], lhs), reference.from_channel_first(dw, first[1], rhs), db


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


def _conv_sample(draw: Draw) -> Case:
    if draw.choice([False, False, False, True]):
        return _winograd_sample(draw)
    n = draw.integer(1, 3)
    groups = draw.choice([1, 1, 2, 3])
    depthwise = draw.choice([False, False, True])
    group_in = 1 if depthwise else draw.integer(1, 3)
    group_out = draw.integer(1, 3)
    big = n < 3
    in_spatial, kernel, options = _sample_spatial(draw, n, max_kernel=4 if big else 3, max_out=4 if big else 3)
    layout = draw.choice([None, None, _CHANNELS_LAST[n]])
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


def _winograd_sample(draw: Draw) -> Case:
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
        dimension_numbers=draw.choice([None, _CHANNELS_LAST[2]]),
        padding=padding,
        formulation=draw.choice(["winograd", "winograd", "auto"]),
    )


_CONV_CASES = (
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
    conv_case((2, 4, 7, 8), (6, 2, 3, 3), dimension_numbers=_CHANNELS_LAST[2], stride=2, padding="SAME", groups=2),
    # the im2col forward and weight gradient: chosen by "auto" on CPU for few input channels, and forced
    conv_case((2, 1, 9, 9), (4, 1, 3, 3), dimension_numbers=_CHANNELS_LAST[2], padding="SAME"),
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
    conv_case((2, 32, 5, 6), (32, 32, 3, 3), dimension_numbers=_CHANNELS_LAST[2], padding=1),
    conv_case((3, 2, 7, 6), (3, 2, 3, 3), padding=((3, 0), (0, 2)), formulation="winograd"),
    conv_case((2, 3, 5, 5), (4, 3, 3, 3), dimension_numbers=_CHANNELS_LAST[2], padding="VALID", formulation="winograd"),
)


def _conv_reference(x, w, b=None, formulation=None, **options):
    """The plain-lax conv (``formulation`` only selects how convgrad computes it, so the reference ignores it)."""
    return autodiff.conv(x, w, b, **options)


# ---------------------------------------------------------------------------- conv_transpose


def conv_transpose_case(x_shape, w_shape, bias=True, **kwargs) -> Case:
    """A conv_transpose case from channel-first shapes: ``x (N, C, *in)``, ``w (C, O/G, *k)``, ``b (O,)``."""
    groups = kwargs.get("groups", 1)
    return case(tuple(x_shape), tuple(w_shape), (groups * w_shape[1],) if bias else None, **kwargs)


def _conv_transpose_sample(draw: Draw) -> Case:
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


_CONV_TRANSPOSE_CASES = (
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


def _conv_transpose_reference(x, w, b=None, **options):
    return autodiff.conv_transpose(x, w, b, **options)


# ---------------------------------------------------------------------------- pooling


def _pool_loop(loop: Callable[..., Any]) -> Callable[..., Any]:
    """A channel-first loop reference in either layout: channels-last arrays are moved there and back."""

    def run(*arrays, channel_axis=1, **options):
        if channel_axis == 1:
            return loop(*arrays, **options)
        out = loop(*(np.moveaxis(a, -1, 1) if np.ndim(a) >= 3 else a for a in arrays), **options)
        back = lambda a: None if a is None else np.moveaxis(a, 1, -1)
        return tuple(back(o) for o in out) if isinstance(out, tuple) else back(out)

    return run


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    return (shape[0], *shape[2:], shape[1])


def _channel_first_shape(case: Case, index: int = 0) -> tuple[int, ...]:
    """Argument ``index``'s shape in channel-first order, whatever the case's layout."""
    shape = case.shapes[index]
    return shape if case.options.get("channel_axis", 1) == 1 else (shape[0], shape[-1], *shape[1:-1])


def _in_layout(array: np.ndarray, case: Case) -> np.ndarray:
    """A channel-first array in the case's layout."""
    return array if case.options.get("channel_axis", 1) == 1 else np.moveaxis(array, 1, -1)


_POOL_CASES = (
    case((2, 3, 7, 7), window=3, stride=2, padding=1),  # overlapping windows, padding: the per-phase backward
    case((2, 3, 6, 9), window=2),  # non-overlapping 2x2 with a leftover column: the reshape backward
    case((2, 6, 9, 3), window=2, channel_axis=-1),  # the same, channels-last
    case((2, 7, 7, 3), window=3, stride=2, padding=1, channel_axis=-1),  # per-phase backward, channels-last
    case((2, 2, 11), window=3, stride=4, padding=((2, 1),)),  # stride > window (gaps), an edge window mostly padding
    case((2, 2, 7, 6), window=(3, 2), stride=(2, 1), padding=((2, 0), (0, 1))),  # non-square, asymmetric pairs
    case((1, 2, 5, 6, 4), window=(2, 3, 2), stride=(1, 2, 2), padding=((1, 0), (1, 1), (0, 1))),
    case((1, 3, 4, 5, 7), window=2),  # 3-d non-overlapping, odd sizes
)


def _pool_sample(draw: Draw) -> Case:
    """1 to 3 spatial dims; window 1-3, stride default/smaller/larger, padding (int, ints or pairs) below window."""
    n = draw.integer(1, 3)
    window = tuple(draw.integer(1, 3) for _ in range(n))
    stride = draw.choice([None, tuple(draw.integer(1, 3) for _ in range(n))])
    steps = window if stride is None else stride
    form = draw.choice(["int", "ints", "pairs"])
    if form == "int":
        padding = draw.integer(0, min(window) - 1)
        pairs = [(padding, padding)] * n
    elif form == "ints":
        padding = tuple(draw.integer(0, k - 1) for k in window)
        pairs = [(p, p) for p in padding]
    else:
        padding = tuple((draw.integer(0, k - 1), draw.integer(0, k - 1)) for k in window)
        pairs = list(padding)
    sizes = []
    for k, s, (lo, hi) in zip(window, steps, pairs):
        out = draw.integer(1, 4 if n < 3 else 3)
        sizes.append(max(1, (out - 1) * s + k + draw.integer(0, s - 1) - lo - hi))
    shape = (draw.integer(1, 2), draw.integer(1, 3), *sizes)
    if draw.choice([False, False, True]):
        return case(_channels_last(shape), window=window, stride=stride, padding=padding, channel_axis=-1)
    return case(shape, window=window, stride=stride, padding=padding)


def _distinct_planes(rng: np.random.Generator, case: Case, dtype) -> tuple[np.ndarray]:
    """Each ``(n, c)`` plane a random permutation of ``(j - P // 2) / 2^m``, ``|values| <= 1``: no ties anywhere.

    Exact in ``dtype`` (``P`` consecutive integers fit its significand), so
    rounding makes no ties either, and neighbouring values are ``2^-m >= 2 / P``
    apart, far more than a finite-difference step (~1e-5): max_pool's finite
    differences never cross a kink.
    """
    shape = _channel_first_shape(case)
    plane = math.prod(shape[2:])
    if plane > 2 ** (jnp.finfo(dtype).nmant + 1):
        raise ValueError(f"max_pool case {case}: planes of {plane} values cannot be distinct in {np.dtype(dtype).name}")
    scale = 2.0 ** -max(math.ceil(math.log2(max(plane, 2) / 2)), 0)
    planes = [rng.permutation(plane) - plane // 2 for _ in range(shape[0] * shape[1])]
    return (_in_layout((np.stack(planes).reshape(shape) * scale).astype(dtype), case),)


_UNPOOL_CASES = (
    case((2, 3, 4, 4), (2, 3, 4, 4), output_size=(7, 7)),
    case((2, 2, 5), (2, 2, 5), output_size=(6,)),
    case((1, 2, 2, 3, 2), (1, 2, 2, 3, 2), output_size=(4, 5, 3)),
    case((2, 2, 3, 3), (2, 2, 3, 3), output_size=(2, 2)),  # more values than places: many coincide
    case((2, 4, 4, 3), (2, 4, 4, 3), output_size=(7, 7), channel_axis=-1),
)


def _unpool_sample(draw: Draw) -> Case:
    """1 to 3 spatial dims, at least two values per plane (so switches can coincide), any output size."""
    n = draw.integer(1, 3)
    spatial = [draw.integer(1, 4 if n < 3 else 3) for _ in range(n)]
    spatial[0] = max(spatial[0], 2)
    shape = (draw.integer(1, 2), draw.integer(1, 3), *spatial)
    output_size = tuple(draw.integer(1, 5 if n < 3 else 3) for _ in range(n))
    if draw.choice([False, False, True]):
        return case(_channels_last(shape), _channels_last(shape), output_size=output_size, channel_axis=-1)
    return case(shape, shape, output_size=output_size)


def _unpool_arguments(rng: np.random.Generator, case: Case, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``y`` and uniform int32 switches in which the first two of every plane coincide.

    The forced repeat puts coinciding switches (overlapping windows' shared
    maxima) into every check, so a scatter that sets instead of adding fails.
    """
    shape = _channel_first_shape(case)
    plane = math.prod(case.options["output_size"])
    switches = rng.integers(0, plane, shape).astype(np.int32)
    flat = switches.reshape(*shape[:2], -1)
    flat[:, :, 1] = flat[:, :, 0]
    return _in_layout(rng.standard_normal(shape).astype(dtype), case), _in_layout(flat.reshape(shape), case)


# ---------------------------------------------------------------------------- dense


def dense_case(x_shape: tuple[int, ...], out_features: int, bias: bool = True) -> Case:
    """A dense case from the input's shape ``(..., in)`` and the number of outputs."""
    return case(tuple(x_shape), (x_shape[-1], out_features), (out_features,) if bias else None)


_DENSE_CASES = (
    dense_case((4, 5), 3),  # one leading (batch) axis
    dense_case((2, 3, 4), 5),  # two leading axes: dw and db sum over both
    dense_case((2, 2, 3, 4), 2),  # three leading axes
    dense_case((3, 6), 4, bias=False),
    dense_case((5,), 3),  # a single vector: dw is the outer product x g^T
    dense_case((1, 7), 1),  # one row, one output
)


def _dense_sample(draw: Draw) -> Case:
    leading = tuple(draw.integer(1, 3) for _ in range(draw.integer(0, 3)))
    return dense_case((*leading, draw.integer(1, 6)), draw.integer(1, 6), bias=draw.choice([True, False]))


# ---------------------------------------------------------------------------- elementwise activations

_ELEMENTWISE_CASES = (case((4, 5)), case((2, 3, 4)), case((7,)), case((2, 1, 3, 2)))


def _elementwise_sample(draw: Draw) -> Case:
    return case(tuple(draw.integer(1, 4) for _ in range(draw.integer(1, 4))))


def _away_from_kink(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Standard normal values pushed out of (-0.1, 0.1): finite differences (steps ~1e-5) never cross 0."""
    (shape,) = case.shapes
    z = rng.standard_normal(shape)
    return ((z + np.copysign(0.1, z)).astype(dtype),)


# ---------------------------------------------------------------------------- softmax, log_softmax, cross-entropy


def _saturated_logits(rng: np.random.Generator, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Logits of magnitude ~1e3 whose values along ``axis`` are at least ~990 apart.

    Each slice is ``1e3`` times a random permutation of ``0 .. K-1`` (centred),
    plus standard normal noise. ``exp`` of such logits overflows even float64,
    so only a max-subtracting implementation stays finite; and since every
    ``exp(z)`` other than the max's is exactly 0, softmax is exactly one-hot and
    log_softmax and the cross-entropy are affine near these points: finite
    differences stay exact although the step grows with the logits (a smaller
    gap would make them curve within one step).
    """
    ranks = np.argsort(rng.random(shape), axis=axis)
    return 1e3 * (ranks - (shape[axis] - 1) / 2) + rng.standard_normal(shape)


_SOFTMAX_SATURATED = case((3, 7), axis=-1, inputs="saturated")
_CROSS_ENTROPY_SATURATED = case((3, 7), (3,), inputs="saturated")


def _logits(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    (shape,) = case.shapes
    axis = case.options["axis"]
    x = _saturated_logits(rng, shape, axis) if case.inputs == "saturated" else rng.standard_normal(shape)
    return (x.astype(dtype),)


_SOFTMAX_CASES = (
    case((3, 5), axis=-1),
    case((2, 4, 3), axis=1),
    case((4, 2, 3), axis=0),
    case((2, 3, 5), axis=-2),
    case((6,), axis=0),
    _SOFTMAX_SATURATED,
)


def _softmax_sample(draw: Draw) -> Case:
    rank = draw.integer(1, 3)
    return case(tuple(draw.integer(1, 5) for _ in range(rank)), axis=draw.integer(-rank, rank - 1))


def _labelled_logits(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Logits (standard normal, or saturated for the large case) and int32 labels in ``[0, K)``."""
    logits_shape, labels_shape = case.shapes
    if case.inputs == "saturated":
        logits = _saturated_logits(rng, logits_shape, -1)
    else:
        logits = rng.standard_normal(logits_shape)
    labels = rng.integers(0, logits_shape[-1], labels_shape).astype(np.int32)
    return logits.astype(dtype), labels


def cross_entropy_case(logits_shape: tuple[int, ...]) -> Case:
    """A cross-entropy case: logits ``(..., K)`` and labels ``(...)``."""
    return case(tuple(logits_shape), tuple(logits_shape[:-1]))


_CROSS_ENTROPY_CASES = (
    cross_entropy_case((8, 10)),  # a batch of 8 examples, 10 classes
    cross_entropy_case((2, 3, 4)),  # two leading axes
    cross_entropy_case((5,)),  # one example, a 0-d label
    cross_entropy_case((4, 2)),  # two classes
    _CROSS_ENTROPY_SATURATED,
)


def _cross_entropy_sample(draw: Draw) -> Case:
    leading = tuple(draw.integer(1, 4) for _ in range(draw.integer(0, 2)))
    return cross_entropy_case((*leading, draw.integer(1, 6)))


# ---------------------------------------------------------------------------- mse

_MSE_CASES = (case((4, 5), (4, 5)), case((2, 3, 4), (2, 3, 4)), case((6,), (6,)), case((), ()))


def _mse_sample(draw: Draw) -> Case:
    shape = tuple(draw.integer(1, 4) for _ in range(draw.integer(0, 3)))
    return case(shape, shape)


# ---------------------------------------------------------------------------- the table

_SPECS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec(
            name="conv",
            fn=convgrad.conv,
            reference=_conv_reference,
            loop_forward=_conv_loop_forward,
            loop_vjp=_conv_loop_vjp,
            cases=_CONV_CASES,
            sample=_conv_sample,
            argnums=(0, 1, 2),
            linear_argnums=(0, 1, 2),
        ),
        OpSpec(
            name="conv_transpose",
            fn=convgrad.conv_transpose,
            reference=_conv_transpose_reference,
            loop_forward=reference.conv_transpose,
            loop_vjp=reference.conv_transpose_vjp,
            cases=_CONV_TRANSPOSE_CASES,
            sample=_conv_transpose_sample,
            argnums=(0, 1, 2),
            linear_argnums=(0, 1, 2),
        ),
        OpSpec(
            name="dense",
            fn=convgrad.dense,
            reference=autodiff.dense,
            loop_forward=reference.dense,
            loop_vjp=reference.dense_vjp,
            cases=_DENSE_CASES,
            sample=_dense_sample,
            argnums=(0, 1, 2),
            linear_argnums=(0, 1, 2),
        ),
        OpSpec(
            name="max_pool",
            fn=convgrad.max_pool,
            reference=autodiff.max_pool,
            loop_forward=_pool_loop(reference.max_pool),
            loop_vjp=_pool_loop(reference.max_pool_vjp),
            cases=_POOL_CASES,
            sample=_pool_sample,
            argnums=(0,),
            make_args=_distinct_planes,
        ),
        OpSpec(
            name="max_unpool",
            fn=convgrad.max_unpool,
            reference=autodiff.max_unpool,
            loop_forward=_pool_loop(reference.max_unpool),
            loop_vjp=_pool_loop(reference.max_unpool_vjp),
            cases=_UNPOOL_CASES,
            sample=_unpool_sample,
            argnums=(0,),
            linear_argnums=(0,),
            make_args=_unpool_arguments,
        ),
        OpSpec(
            name="avg_pool",
            fn=convgrad.avg_pool,
            reference=autodiff.avg_pool,
            loop_forward=_pool_loop(reference.avg_pool),
            loop_vjp=_pool_loop(reference.avg_pool_vjp),
            cases=_POOL_CASES,
            sample=_pool_sample,
            argnums=(0,),
            linear_argnums=(0,),
        ),
        OpSpec(
            name="relu",  # the "gradient" rule; the visualization rules are no derivatives (tests/test_activations.py)
            fn=convgrad.relu,
            reference=autodiff.relu,
            loop_forward=reference.relu,
            loop_vjp=reference.relu_vjp,
            cases=_ELEMENTWISE_CASES,
            sample=_elementwise_sample,
            argnums=(0,),
            make_args=_away_from_kink,
        ),
        OpSpec(
            name="sigmoid",
            fn=convgrad.sigmoid,
            reference=autodiff.sigmoid,
            loop_forward=reference.sigmoid,
            loop_vjp=reference.sigmoid_vjp,
            cases=_ELEMENTWISE_CASES,
            sample=_elementwise_sample,
            argnums=(0,),
        ),
        OpSpec(
            name="tanh",
            fn=convgrad.tanh,
            reference=autodiff.tanh,
            loop_forward=reference.tanh,
            loop_vjp=reference.tanh_vjp,
            cases=_ELEMENTWISE_CASES,
            sample=_elementwise_sample,
            argnums=(0,),
        ),
        OpSpec(
            name="softmax",
            fn=convgrad.softmax,
            reference=autodiff.softmax,
            loop_forward=reference.softmax,
            loop_vjp=reference.softmax_vjp,
            cases=_SOFTMAX_CASES,
            sample=_softmax_sample,
            argnums=(0,),
            make_args=_logits,
        ),
        OpSpec(
            name="log_softmax",
            fn=convgrad.log_softmax,
            reference=autodiff.log_softmax,
            loop_forward=reference.log_softmax,
            loop_vjp=reference.log_softmax_vjp,
            cases=_SOFTMAX_CASES,
            sample=_softmax_sample,
            argnums=(0,),
            make_args=_logits,
        ),
        OpSpec(
            name="softmax_cross_entropy",
            fn=convgrad.softmax_cross_entropy,
            reference=autodiff.softmax_cross_entropy,
            loop_forward=reference.softmax_cross_entropy,
            loop_vjp=reference.softmax_cross_entropy_vjp,
            cases=_CROSS_ENTROPY_CASES,
            sample=_cross_entropy_sample,
            argnums=(0,),  # labels are integers
            make_args=_labelled_logits,
        ),
        OpSpec(
            name="mse",
            fn=convgrad.mse,
            reference=autodiff.mse,
            loop_forward=reference.mse,
            loop_vjp=reference.mse_vjp,
            cases=_MSE_CASES,
            sample=_mse_sample,
            argnums=(0, 1),
        ),
    )
}

# The order of docs/derivations.md: convolutions, pooling, the MLP side.
_ORDER = (
    "conv",
    "conv_transpose",
    "max_pool",
    "max_unpool",
    "avg_pool",
    "dense",
    "relu",
    "sigmoid",
    "tanh",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
    "mse",
)
OPS: dict[str, OpSpec] = {name: _SPECS[name] for name in _ORDER}
if set(OPS) != set(_SPECS):
    raise RuntimeError(f"convgrad.registry: _ORDER lists {sorted(OPS)} but the table holds {sorted(_SPECS)}")
