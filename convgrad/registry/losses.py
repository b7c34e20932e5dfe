"""Registry specs of the losses: ``softmax_cross_entropy`` and ``mse``."""

from __future__ import annotations

from typing import Any

import numpy as np

import convgrad
from convgrad import autodiff, loops
from convgrad.registry.activations import saturated_logits
from convgrad.registry.spec import Case, Draw, case, op_spec

# ---------------------------------------------------------------------------- softmax_cross_entropy


def labelled_logits(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
    """Logits (standard normal, or saturated for ``values="saturated"``) and int32 labels in ``[0, K)``."""
    logits_shape, labels_shape = case.shapes
    if case.values == "saturated":
        logits = saturated_logits(rng, logits_shape, -1)
    else:
        logits = rng.standard_normal(logits_shape)
    labels = rng.integers(0, logits_shape[-1], labels_shape).astype(np.int32)
    return logits.astype(dtype), labels


def cross_entropy_case(logits_shape: tuple[int, ...], values: str = "normal") -> Case:
    """A cross-entropy case: logits ``(..., K)`` and labels ``(...)``."""
    return case(tuple(logits_shape), tuple(logits_shape[:-1]), values=values)


CROSS_ENTROPY_CASES = (
    cross_entropy_case((8, 10)),  # a batch of 8 examples, 10 classes
    cross_entropy_case((2, 3, 4)),  # two leading axes
    cross_entropy_case((5,)),  # one example, a 0-d label
    cross_entropy_case((4, 2)),  # two classes
    cross_entropy_case((3, 7), values="saturated"),
)


def sample_cross_entropy(draw: Draw) -> Case:
    """Up to two leading axes of sizes 1 to 4, 1 to 6 classes."""
    leading = tuple(draw.integer(1, 4) for _ in range(draw.integer(0, 2)))
    return cross_entropy_case((*leading, draw.integer(1, 6)))


SOFTMAX_CROSS_ENTROPY = op_spec(
    convgrad.softmax_cross_entropy,
    autodiff.softmax_cross_entropy,
    loops.softmax_cross_entropy,
    loops.softmax_cross_entropy_vjp,
    CROSS_ENTROPY_CASES,
    sample_cross_entropy,
    make_inputs=labelled_logits,  # labels are integers: argument 0 alone is differentiable
)

# ---------------------------------------------------------------------------- mse

MSE_CASES = (case((4, 5), (4, 5)), case((2, 3, 4), (2, 3, 4)), case((6,), (6,)), case((), ()))


def sample_mse(draw: Draw) -> Case:
    """Any shape of rank 0 to 3, sizes 1 to 4, for both arguments."""
    shape = tuple(draw.integer(1, 4) for _ in range(draw.integer(0, 3)))
    return case(shape, shape)


MSE = op_spec(convgrad.mse, autodiff.mse, loops.mse, loops.mse_vjp, MSE_CASES, sample_mse, argnums=(0, 1))

SPECS = (SOFTMAX_CROSS_ENTROPY, MSE)
