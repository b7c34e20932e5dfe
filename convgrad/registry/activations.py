"""Registry specs of the activations: ``relu``, ``sigmoid``, ``tanh``, ``softmax``, ``log_softmax``."""

from __future__ import annotations

from typing import Any

import numpy as np

import convgrad
from convgrad import autodiff, loops
from convgrad.registry.spec import Case, Draw, case, op_spec

# ---------------------------------------------------------------------------- elementwise: relu, sigmoid, tanh

ELEMENTWISE_CASES = (
    case((4, 5)),
    case((2, 3, 4)),
    case((7,)),
    case((2, 1, 3, 2)),
    case((0, 5)),  # zero-size: an empty batch
    case((2, 0, 3)),  # zero-size: an empty middle axis
    case((0,)),  # zero-size: an empty vector
)


def sample_elementwise(draw: Draw) -> Case:
    """Any shape of rank 1 to 4, sizes 1 to 4."""
    return case(tuple(draw.integer(1, 4) for _ in range(draw.integer(1, 4))))


def away_from_kink(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Standard normal values pushed out of (-0.1, 0.1): finite differences (steps ~1e-5) never cross 0."""
    (shape,) = case.shapes
    z = rng.standard_normal(shape)
    return ((z + np.copysign(0.1, z)).astype(dtype),)


# relu's "gradient" rule; the visualization rules are no derivatives (tests/test_activations.py)
RELU = op_spec(
    convgrad.relu,
    autodiff.relu,
    loops.relu,
    loops.relu_vjp,
    ELEMENTWISE_CASES,
    sample_elementwise,
    make_inputs=away_from_kink,
)
SIGMOID = op_spec(
    convgrad.sigmoid, autodiff.sigmoid, loops.sigmoid, loops.sigmoid_vjp, ELEMENTWISE_CASES, sample_elementwise
)
TANH = op_spec(convgrad.tanh, autodiff.tanh, loops.tanh, loops.tanh_vjp, ELEMENTWISE_CASES, sample_elementwise)

# ---------------------------------------------------------------------------- softmax, log_softmax


def saturated_logits(rng: np.random.Generator, shape: tuple[int, ...], axis: int) -> np.ndarray:
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


def logits(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Standard normal logits, or :func:`saturated_logits` for a case with ``values="saturated"``."""
    (shape,) = case.shapes
    axis = case.options["axis"]
    x = saturated_logits(rng, shape, axis) if case.values == "saturated" else rng.standard_normal(shape)
    return (x.astype(dtype),)


SOFTMAX_CASES = (
    case((3, 5), axis=-1),
    case((2, 4, 3), axis=1),
    case((4, 2, 3), axis=0),
    case((2, 3, 5), axis=-2),
    case((6,), axis=0),
    case((3, 7), axis=-1, values="saturated"),
    # zero-size
    case((0, 5), axis=-1),  # an empty batch
    case((3, 0), axis=-1),  # an empty softmax axis: no classes
    case((2, 0, 3), axis=0),  # an empty axis other than the softmax axis
    case((0,), axis=0),  # an empty vector
)


def sample_softmax(draw: Draw) -> Case:
    """Any shape of rank 1 to 3, sizes 1 to 5, any axis."""
    rank = draw.integer(1, 3)
    return case(tuple(draw.integer(1, 5) for _ in range(rank)), axis=draw.integer(-rank, rank - 1))


SOFTMAX = op_spec(
    convgrad.softmax,
    autodiff.softmax,
    loops.softmax,
    loops.softmax_vjp,
    SOFTMAX_CASES,
    sample_softmax,
    make_inputs=logits,
)
LOG_SOFTMAX = op_spec(
    convgrad.log_softmax,
    autodiff.log_softmax,
    loops.log_softmax,
    loops.log_softmax_vjp,
    SOFTMAX_CASES,
    sample_softmax,
    make_inputs=logits,
)

SPECS = (RELU, SIGMOID, TANH, SOFTMAX, LOG_SOFTMAX)
