"""Registry specs of the pooling ops: ``max_pool``, ``max_unpool``, ``avg_pool``: cases, samplers, specs."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

import convgrad
from convgrad import autodiff, loops
from convgrad.loops.layouts import channel_axis_in_layout
from convgrad.registry.spec import Case, Draw, case, op_spec


def _channels_last(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(N, C, *spatial)`` as ``(N, *spatial, C)``."""
    return (shape[0], *shape[2:], shape[1])


def _channel_first_shape(case: Case, index: int = 0) -> tuple[int, ...]:
    """Argument ``index``'s shape in channel-first order, whatever the case's layout."""
    shape = case.shapes[index]
    return shape if case.options.get("channel_axis", 1) == 1 else (shape[0], shape[-1], *shape[1:-1])


def _in_layout(array: np.ndarray, case: Case) -> np.ndarray:
    """A channel-first array in the case's layout."""
    return array if case.options.get("channel_axis", 1) == 1 else np.moveaxis(array, 1, -1)


POOL_CASES = (
    case((2, 3, 7, 7), window=3, stride=2, padding=1),  # overlapping windows, padding: the per-phase backward
    case((2, 3, 6, 9), window=2),  # non-overlapping 2x2 with a leftover column: the reshape backward
    case((2, 6, 9, 3), window=2, channel_axis=-1),  # the same, channels-last
    case((2, 7, 7, 3), window=3, stride=2, padding=1, channel_axis=-1),  # per-phase backward, channels-last
    case((2, 2, 11), window=3, stride=4, padding=((2, 1),)),  # stride > window (gaps), an edge window mostly padding
    case((2, 2, 7, 6), window=(3, 2), stride=(2, 1), padding=((2, 0), (0, 1))),  # non-square, asymmetric pairs
    case((1, 2, 5, 6, 4), window=(2, 3, 2), stride=(1, 2, 2), padding=((1, 0), (1, 1), (0, 1))),
    case((1, 3, 4, 5, 7), window=2),  # 3-d non-overlapping, odd sizes
)


def sample_pool(draw: Draw) -> Case:
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


def distinct_planes(rng: np.random.Generator, case: Case, dtype) -> tuple[np.ndarray]:
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


MAX_POOL = op_spec(
    convgrad.max_pool,
    autodiff.max_pool,
    channel_axis_in_layout(loops.max_pool),
    channel_axis_in_layout(loops.max_pool_vjp),
    POOL_CASES,
    sample_pool,
    make_inputs=distinct_planes,
)

AVG_POOL = op_spec(
    convgrad.avg_pool,
    autodiff.avg_pool,
    channel_axis_in_layout(loops.avg_pool),
    channel_axis_in_layout(loops.avg_pool_vjp),
    POOL_CASES,
    sample_pool,
    linear_argnums=(0,),
)


UNPOOL_CASES = (
    case((2, 3, 4, 4), (2, 3, 4, 4), output_size=(7, 7)),
    case((2, 2, 5), (2, 2, 5), output_size=(6,)),
    case((1, 2, 2, 3, 2), (1, 2, 2, 3, 2), output_size=(4, 5, 3)),
    case((2, 2, 3, 3), (2, 2, 3, 3), output_size=(2, 2)),  # more values than places: many coincide
    case((2, 4, 4, 3), (2, 4, 4, 3), output_size=(7, 7), channel_axis=-1),
)


def sample_unpool(draw: Draw) -> Case:
    """1 to 3 spatial dims, at least two values per plane (so switches can coincide), any output size."""
    n = draw.integer(1, 3)
    spatial = [draw.integer(1, 4 if n < 3 else 3) for _ in range(n)]
    spatial[0] = max(spatial[0], 2)
    shape = (draw.integer(1, 2), draw.integer(1, 3), *spatial)
    output_size = tuple(draw.integer(1, 5 if n < 3 else 3) for _ in range(n))
    if draw.choice([False, False, True]):
        return case(_channels_last(shape), _channels_last(shape), output_size=output_size, channel_axis=-1)
    return case(shape, shape, output_size=output_size)


def unpool_inputs(rng: np.random.Generator, case: Case, dtype) -> tuple[np.ndarray, np.ndarray]:
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


MAX_UNPOOL = op_spec(
    convgrad.max_unpool,
    autodiff.max_unpool,
    channel_axis_in_layout(loops.max_unpool),
    channel_axis_in_layout(loops.max_unpool_vjp),
    UNPOOL_CASES,
    sample_unpool,
    linear_argnums=(0,),
    make_inputs=unpool_inputs,
)

SPECS = (MAX_POOL, MAX_UNPOOL, AVG_POOL)
