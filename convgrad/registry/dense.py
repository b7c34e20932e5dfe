"""Registry spec of ``dense``: its cases, sampler and spec."""

from __future__ import annotations

import convgrad
from convgrad import autodiff, loops
from convgrad.registry.spec import Case, Draw, case, op_spec


def dense_case(x_shape: tuple[int, ...], out_features: int, bias: bool = True) -> Case:
    """A dense case from the input's shape ``(..., in)`` and the number of outputs."""
    return case(tuple(x_shape), (x_shape[-1], out_features), (out_features,) if bias else None)


DENSE_CASES = (
    dense_case((4, 5), 3),  # one leading (batch) axis
    dense_case((2, 3, 4), 5),  # two leading axes: dw and db sum over both
    dense_case((2, 2, 3, 4), 2),  # three leading axes
    dense_case((3, 6), 4, bias=False),
    dense_case((5,), 3),  # a single vector: dw is the outer product x g^T
    dense_case((1, 7), 1),  # one row, one output
    dense_case((0, 5), 3),  # an empty batch: empty dx, zero dw and db
    dense_case((2, 0), 3),  # no input features: y = b, dw empty
    dense_case((2, 4), 0),  # no outputs
)


def sample_dense(draw: Draw) -> Case:
    leading = tuple(draw.integer(1, 3) for _ in range(draw.integer(0, 3)))
    return dense_case((*leading, draw.integer(1, 6)), draw.integer(1, 6), bias=draw.choice([True, False]))


DENSE = op_spec(
    convgrad.dense,
    autodiff.dense,
    loops.dense,
    loops.dense_vjp,
    DENSE_CASES,
    sample_dense,
    argnums=(0, 1, 2),
    linear_argnums=(0, 1, 2),
)

SPECS = (DENSE,)
