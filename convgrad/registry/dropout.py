"""Registry spec of ``dropout``: cases, sampler, the inputs (an array and a raw PRNG key) and the spec.

``verify`` passes the arrays positionally and a case's keyword arguments by name, so
the arguments of ``dropout(x, rate, key, *, training)`` arrive as ``(x, key)`` and
``rate=..., training=...``; :func:`key_by_name` hands the key over by name. The key is
a raw ``uint32`` ``jax.random.PRNGKey`` (an integer array, which the loop reference can
receive as NumPy); typed keys are tested in ``tests/test_dropout.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import numpy as np

import convgrad
from convgrad import autodiff, loops
from convgrad.registry.spec import Case, Draw, case, op_spec


def key_by_name(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn(x, rate, key, ...)`` called as ``f(x, key, *rest, rate=..., **options)`` (how ``verify`` calls it)."""

    def call(x, key, *rest, rate, **options):
        return fn(x, rate, key, *rest, **options)

    call.__name__ = fn.__name__
    return call


def loop_vjp_by_name(x, key, g, *, rate, **options):
    """:func:`convgrad.loops.dropout_vjp` for the spec's arguments ``(x, key)``: ``(dx, None)``."""
    dx, _, _ = loops.dropout_vjp(x, rate, key, g, **options)
    return dx, None


DROPOUT_CASES = (
    case((4, 5), rate=0.5),
    case((2, 3, 4, 4), rate=0.1),  # an NCHW activation
    case((64,), rate=0.9),  # most entries dropped, the kept ones scaled by 10
    case((3, 4), rate=0.0),  # rate 0: the identity, no mask drawn
    case((2, 3, 5), rate=0.5, training=False),  # evaluation: the identity
    case((1,), rate=0.25),
    # zero-size: an empty mask
    case((0, 3), rate=0.5),  # an empty batch
    case((3, 0), rate=0.5),  # no features
    case((0,), rate=0.9),  # an empty vector
    case((0, 3), rate=0.0),  # rate 0: the identity on nothing
    case((2, 0, 4), rate=0.5, training=False),  # evaluation
)


def sample_dropout(draw: Draw) -> Case:
    """Rank 1 to 4, sizes 1 to 4; a rate from 0 to 0.9; now and then evaluation mode."""
    shape = tuple(draw.integer(1, 4) for _ in range(draw.integer(1, 4)))
    rate = draw.choice([0.0, 0.1, 0.25, 0.5, 0.75, 0.9])
    return case(shape, rate=rate, training=draw.choice([True, True, True, False]))


def array_and_key(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
    """Standard normal ``x`` of the case's shape and a raw key ``jax.random.PRNGKey(seed)`` with a drawn seed."""
    (shape,) = case.shapes
    seed = int(rng.integers(2**31))
    return rng.standard_normal(shape).astype(dtype), np.asarray(jax.random.PRNGKey(seed))


DROPOUT = op_spec(
    key_by_name(convgrad.dropout),
    key_by_name(autodiff.dropout),
    key_by_name(loops.dropout),
    loop_vjp_by_name,
    DROPOUT_CASES,
    sample_dropout,
    argnums=(0,),
    linear_argnums=(0,),
    make_inputs=array_and_key,
    name="dropout",
)

SPECS = (DROPOUT,)
