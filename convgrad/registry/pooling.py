"""Registry specs of the pooling ops: ``max_pool``, ``max_unpool``, ``avg_pool`` and the adaptive pools.

Each op's cases cover its arguments and edges (dilation, ceil mode, the divisor rules,
layouts, inputs without a batch axis, ``None`` output sizes, zero-size batches, channels
and spatial dims), its sampler draws configurations PyTorch accepts too, and its spec
ties them to the op, its autodiff twin and its loops.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

import convgrad
from convgrad import autodiff, loops
from convgrad.loops.pooling import pool_layout
from convgrad.registry.spec import Case, Draw, case, op_spec


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(N, C, *spatial)`` as ``(N, *spatial, C)``."""
    return (shape[0], *shape[2:], shape[1])


def _batched_channel_first_shape(case: Case, index: int = 0) -> tuple[int, ...]:
    """Argument ``index``'s shape as ``(N, C, *spatial)``, whatever the case's layout and batch axis."""
    shape = case.shapes[index]
    options = case.options
    spatial_from = options.get("window", options.get("output_size"))
    n = len(spatial_from) if isinstance(spatial_from, Sequence) else len(shape) - 2
    if len(shape) == n + 1:
        shape = (1, *shape)
    return shape if options.get("channel_axis", 1) == 1 else (shape[0], shape[-1], *shape[1:-1])


def _in_layout(array: np.ndarray, case: Case) -> np.ndarray:
    """A batched channel-first array in the case's layout (channels-last, and without the batch axis if it has none)."""
    if case.options.get("channel_axis", 1) != 1:
        array = np.moveaxis(array, 1, -1)
    return array if tuple(array.shape) == tuple(case.shapes[0]) else array[0]


def distinct_planes(rng: np.random.Generator, case: Case, dtype) -> tuple[np.ndarray]:
    """Each ``(n, c)`` plane a random permutation of ``(j - P // 2) / 2^m``, ``|values| <= 1``: no ties anywhere.

    Exact in ``dtype`` (``P`` consecutive integers fit its significand), so
    rounding makes no ties either, and neighbouring values are ``2^-m >= 2 / P``
    apart, far more than a finite-difference step (~1e-5): max_pool's finite
    differences never cross a kink.
    """
    shape = _batched_channel_first_shape(case)
    plane = math.prod(shape[2:])
    if plane > 2 ** (jnp.finfo(dtype).nmant + 1):
        raise ValueError(f"max_pool case {case}: planes of {plane} values cannot be distinct in {np.dtype(dtype).name}")
    scale = 2.0 ** -max(math.ceil(math.log2(max(plane, 2) / 2)), 0)
    planes = [rng.permutation(plane) - plane // 2 for _ in range(shape[0] * shape[1])]
    values = np.stack(planes).reshape(shape) if planes else np.zeros(shape)
    return (_in_layout((values * scale).astype(dtype), case),)


def _sample_geometry(draw: Draw, dilated: bool) -> tuple[dict, tuple[int, ...]]:
    """A window, stride, dilation, padding and ceil mode PyTorch accepts (padding at most half the dilated window),
    and an input shape for which every window holds an input element; sometimes channels-last or unbatched."""
    n = draw.integer(1, 3)
    window = tuple(draw.integer(1, 3) for _ in range(n))
    dilation = tuple(draw.integer(1, 2) for _ in range(n)) if dilated else (1,) * n
    stride = draw.choice([None, tuple(draw.integer(1, 3) for _ in range(n))])
    steps = window if stride is None else stride
    half = [((k - 1) * d + 1) // 2 for k, d in zip(window, dilation)]
    form = draw.choice(["int", "ints", "ints", "pairs"])
    if form == "int":
        padding = draw.integer(0, min(half))
        pairs = [(padding, padding)] * n
    elif form == "ints":
        padding = tuple(draw.integer(0, h) for h in half)
        pairs = [(p, p) for p in padding]
    else:
        padding = tuple((draw.integer(0, h), draw.integer(0, h)) for h in half)
        pairs = list(padding)
    sizes = []
    for k, d, s, (lo, hi) in zip(window, dilation, steps, pairs):
        out = draw.integer(1, 4 if n < 3 else 3)
        size = (out - 1) * s + (k - 1) * d + 1 + draw.integer(0, s - 1) - lo - hi
        sizes.append(max(size, d, 1))  # at least d samples: a window starting in the padding reaches one
    options = {"window": window, "stride": stride, "padding": padding, "ceil_mode": draw.choice([False, True])}
    if dilated:
        options["dilation"] = dilation if any(d > 1 for d in dilation) else 1
    shape = (draw.integer(1, 2), draw.integer(1, 3), *sizes)
    layout = draw.choice(["first", "first", "last", "unbatched"])
    if layout == "last":
        shape, options["channel_axis"] = _channels_last(shape), -1
    elif layout == "unbatched":
        shape = shape[1:]
    return options, shape


def sample_max_pool(draw: Draw) -> Case:
    """1 to 3 spatial dims; window 1-3, dilation 1-2, stride default/smaller/larger, padding up to half, ceil mode."""
    options, shape = _sample_geometry(draw, dilated=True)
    return case(shape, **options)


def sample_avg_pool(draw: Draw) -> Case:
    """As :func:`sample_max_pool` without dilation, with ``count_include_pad`` and sometimes ``divisor_override``."""
    options, shape = _sample_geometry(draw, dilated=False)
    options["count_include_pad"] = draw.choice([True, False])
    options["divisor_override"] = draw.choice([None, None, draw.integer(1, 5)])
    return case(shape, **options)


GEOMETRY_CASES = (
    case((2, 3, 7, 7), window=3, stride=2, padding=1),  # overlapping windows, padding: the per-phase backward
    case((2, 3, 6, 9), window=2),  # non-overlapping 2x2 with a leftover column: the reshape backward
    case((2, 6, 9, 3), window=2, channel_axis=-1),  # the same, channels-last
    case((2, 7, 7, 3), window=3, stride=2, padding=1, channel_axis=-1),  # per-phase backward, channels-last
    case((2, 2, 11), window=3, stride=4, padding=((2, 1),)),  # stride > window (gaps), an edge window mostly padding
    case((2, 2, 7, 6), window=(3, 2), stride=(2, 1), padding=((2, 0), (0, 1))),  # non-square, asymmetric pairs
    case((1, 2, 5, 6, 4), window=(2, 3, 2), stride=(1, 2, 2), padding=((1, 0), (1, 1), (0, 1))),
    case((1, 3, 4, 5, 7), window=2),  # 3-d non-overlapping, odd sizes
    case((2, 2, 7, 8), window=2, ceil_mode=True),  # ceil mode: a partial last window along h (7 = 3 * 2 + 1)
    case((1, 3, 9, 10), window=3, stride=2, padding=1, ceil_mode=True),  # ceil mode with padding
    case((3, 7, 7), window=(3, 3), stride=2, padding=1),  # no batch axis: one (C, H, W) image
    case((6, 9, 3), window=(2, 2), channel_axis=-1),  # no batch axis, channels-last, tiled
    case((0, 3, 7, 7), window=3, stride=2, padding=1),  # an empty batch through the per-phase backward
    case((0, 3, 6, 6), window=2),  # an empty batch through the reshape backward
    case((2, 0, 6, 6), window=3, stride=2, padding=1),  # no channels
    case((2, 3, 0, 5), window=(2, 2)),  # an empty spatial dim: no windows along it
)

MAX_POOL_CASES = (
    *GEOMETRY_CASES,
    case((2, 3, 9, 8), window=3, stride=1, dilation=2),  # dilated, overlapping windows
    case((2, 2, 12), window=2, stride=3, dilation=4, padding=((2, 1),)),  # dilation > stride: taps in other phases
    case((2, 2, 8, 9), window=(2, 3), stride=(2, 1), dilation=(3, 2), padding=1, ceil_mode=True),
    case((2, 9, 8, 3), window=2, stride=2, dilation=2, channel_axis=-1),  # s = k but dilated: not tiled
    case((2, 5, 6, 7), window=(2, 2, 2), dilation=(2, 1, 2), ceil_mode=True),  # unbatched 3-d, dilated, ceil mode
    # 16 channels or more, channel-first, tiled: on CPU computed channels-last inside (pooling.in_computation_layout)
    case((2, 16, 6, 9), window=2),  # with a leftover column
    case((16, 4, 6), window=(2, 2)),  # no batch axis
    case((2, 17, 7), window=2),  # 1-d, an odd channel count and a leftover sample
    case((1, 16, 4, 2, 5), window=2),  # 3-d
)

AVG_POOL_CASES = (
    *GEOMETRY_CASES,
    case((2, 3, 7, 7), window=3, stride=2, padding=1, count_include_pad=False),  # divisors: real taps only
    case((2, 2, 8), window=3, stride=2, padding=1, ceil_mode=True),  # the last window cut at in + hi: divisor 2
    case((2, 2, 7, 8), window=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
    case((2, 3, 7, 6), window=3, stride=2, padding=1, divisor_override=4),
    case((2, 3, 6, 6), window=2, divisor_override=3),  # tiled windows, another divisor
    case((3, 7), window=(3,), stride=2, padding=1, ceil_mode=True, count_include_pad=False),  # unbatched 1-d
    case((1, 5, 5, 5, 2), window=2, ceil_mode=True, count_include_pad=False, channel_axis=-1),
)

MAX_POOL = op_spec(
    convgrad.max_pool,
    autodiff.max_pool,
    pool_layout(loops.max_pool),
    pool_layout(loops.max_pool_vjp),
    MAX_POOL_CASES,
    sample_max_pool,
    make_inputs=distinct_planes,
)

AVG_POOL = op_spec(
    convgrad.avg_pool,
    autodiff.avg_pool,
    pool_layout(loops.avg_pool),
    pool_layout(loops.avg_pool_vjp),
    AVG_POOL_CASES,
    sample_avg_pool,
    linear_argnums=(0,),
)

# ---------------------------------------------------------------------------- max_unpool

UNPOOL_CASES = (
    case((2, 3, 4, 4), (2, 3, 4, 4), output_size=(7, 7)),
    case((2, 2, 5), (2, 2, 5), output_size=(6,)),
    case((1, 2, 2, 3, 2), (1, 2, 2, 3, 2), output_size=(4, 5, 3)),
    case((2, 2, 3, 3), (2, 2, 3, 3), output_size=(2, 2)),  # more values than places: many coincide
    case((2, 4, 4, 3), (2, 4, 4, 3), output_size=(7, 7), channel_axis=-1),
    case((3, 4, 4), (3, 4, 4), output_size=(7, 7)),  # no batch axis
    case((4, 4, 3), (4, 4, 3), output_size=(6, 5), channel_axis=-1),  # no batch axis, channels-last
    case((0, 2, 3, 3), (0, 2, 3, 3), output_size=(5, 5)),  # an empty batch
    case((2, 0, 3, 3), (2, 0, 3, 3), output_size=(5, 5)),  # no channels
    case((2, 2, 0, 3), (2, 2, 0, 3), output_size=(4, 4)),  # no values: a zero map
    case((2, 2, 3), (2, 2, 3), output_size=(0,)),  # an empty map: every switch out of range
)


def sample_unpool(draw: Draw) -> Case:
    """1 to 3 spatial dims, at least two values per plane (so switches can coincide), any output size."""
    n = draw.integer(1, 3)
    spatial = [draw.integer(1, 4 if n < 3 else 3) for _ in range(n)]
    spatial[0] = max(spatial[0], 2)
    shape = (draw.integer(1, 2), draw.integer(1, 3), *spatial)
    output_size = tuple(draw.integer(1, 5 if n < 3 else 3) for _ in range(n))
    layout = draw.choice(["first", "first", "last", "unbatched"])
    if layout == "last":
        return case(_channels_last(shape), _channels_last(shape), output_size=output_size, channel_axis=-1)
    if layout == "unbatched":
        return case(shape[1:], shape[1:], output_size=output_size)
    return case(shape, shape, output_size=output_size)


def unpool_inputs(rng: np.random.Generator, case: Case, dtype) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``y`` and uniform int32 switches in which the first two of every plane coincide.

    The forced repeat puts coinciding switches (overlapping windows' shared
    maxima) into every check, so a scatter that sets instead of adding fails. An
    empty map gets switches of 0, all out of range.
    """
    shape = _batched_channel_first_shape(case)
    plane = math.prod(case.options["output_size"])
    switches = rng.integers(0, max(plane, 1), shape).astype(np.int32)
    flat = switches.reshape(*shape[:2], math.prod(shape[2:]))
    if flat.shape[2] >= 2:
        flat[:, :, 1] = flat[:, :, 0]
    return _in_layout(rng.standard_normal(shape).astype(dtype), case), _in_layout(flat.reshape(shape), case)


MAX_UNPOOL = op_spec(
    convgrad.max_unpool,
    autodiff.max_unpool,
    pool_layout(loops.max_unpool),
    pool_layout(loops.max_unpool_vjp),
    UNPOOL_CASES,
    sample_unpool,
    linear_argnums=(0,),
    make_inputs=unpool_inputs,
)

# ---------------------------------------------------------------------------- adaptive pools

ADAPTIVE_CASES = (
    case((2, 3, 7, 9), output_size=(3, 4)),  # windows of 3 and 2 (7 -> 3) and 3 (9 -> 4), overlapping
    case((2, 3, 8, 6), output_size=(4, 3)),  # out divides in: a regular pool's tiled windows
    case((2, 3, 5, 5), output_size=1),  # global pooling
    case((2, 5, 6, 3), output_size=(2, None), channel_axis=-1),  # None keeps the size; channels-last
    case((2, 2, 3), output_size=(5,)),  # more windows than samples: windows repeat
    case((4, 10), output_size=(7,)),  # no batch axis
    case((1, 2, 4, 5, 6), output_size=(2, 3, 4)),  # 3-d
    case((0, 3, 6, 6), output_size=(4, 4)),  # an empty batch
    case((2, 0, 7, 7), output_size=3),  # no channels
    case((2, 3, 0, 6), output_size=(None, 4)),  # an empty spatial dim, kept empty
)


def sample_adaptive(draw: Draw) -> Case:
    """1 to 3 spatial dims of 1 to 7 samples, each pooled to 1 to 6 windows or kept (``None``); any layout."""
    n = draw.integer(1, 3)
    sizes = tuple(draw.integer(1, 7 if n < 3 else 4) for _ in range(n))
    out = tuple(draw.choice([None, draw.integer(1, 6 if n < 3 else 3)]) for _ in range(n))
    output_size = draw.choice([out, draw.integer(1, 4)]) if n > 1 else out
    shape = (draw.integer(1, 2), draw.integer(1, 3), *sizes)
    layout = draw.choice(["first", "first", "last", "unbatched"])
    if layout == "unbatched" and isinstance(output_size, tuple):
        return case(shape[1:], output_size=output_size)
    if layout == "last":
        return case(_channels_last(shape), output_size=output_size, channel_axis=-1)
    return case(shape, output_size=output_size)


ADAPTIVE_AVG_POOL = op_spec(
    convgrad.adaptive_avg_pool,
    autodiff.adaptive_avg_pool,
    pool_layout(loops.adaptive_avg_pool),
    pool_layout(loops.adaptive_avg_pool_vjp),
    ADAPTIVE_CASES,
    sample_adaptive,
    linear_argnums=(0,),
)

ADAPTIVE_MAX_POOL = op_spec(
    convgrad.adaptive_max_pool,
    autodiff.adaptive_max_pool,
    pool_layout(loops.adaptive_max_pool),
    pool_layout(loops.adaptive_max_pool_vjp),
    ADAPTIVE_CASES,
    sample_adaptive,
    make_inputs=distinct_planes,
)

SPECS = (MAX_POOL, MAX_UNPOOL, AVG_POOL, ADAPTIVE_AVG_POOL, ADAPTIVE_MAX_POOL)
