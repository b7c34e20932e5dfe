"""Every registry op, through every check: the default grid, 16-bit dtypes, and hypothesis-drawn cases."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
from convgrad.registry import OPS
from convgrad.testing.strategies import HypothesisDraw
from convgrad.verify import verify_case
from tests.compile_flags import XLA_DEFAULTS

# `convgrad verify` runs every case in float32 and float64. Here the quick profile runs each case in
# one of the two, alternating along an op's cases (so every op meets both, and every case its
# transforms), and the thorough profile both, as verify does.
THOROUGH = os.environ.get("CONVGRAD_HYPOTHESIS", "quick") == "thorough"
GRID = [
    (name, index, dtype)
    for name, spec in OPS.items()
    for index in range(len(spec.cases))
    for dtype in (("float32", "float64") if THOROUGH else (("float32", "float64")[index % 2],))
]


@pytest.mark.parametrize(("name", "index", "dtype"), GRID, ids=[f"{d}-{n}-{i}" for n, i, d in GRID])
def test_grid_case(name, index, dtype):
    """Four-way check plus vmap and grad-of-grad on each default case (the transforms once per case)."""
    spec = OPS[name]
    result = verify_case(
        spec, spec.cases[index], dtype, transforms=dtype == "float32" or not THOROUGH, xla_defaults=XLA_DEFAULTS
    )
    assert result.passed, result.failure


LOW_PRECISION = [(name, index) for name, spec in OPS.items() for index in range(min(2, len(spec.cases)))]


@pytest.mark.parametrize(("name", "index"), LOW_PRECISION, ids=[f"{n}-{i}" for n, i in LOW_PRECISION])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision(name, index, dtype):
    """16-bit dtypes, held to the documented tolerance table against float64 references."""
    spec = OPS[name]
    if dtype not in spec.dtypes:
        pytest.skip(f"{name} does not support {dtype}")
    result = verify_case(spec, spec.cases[index], dtype, transforms=False, xla_defaults=XLA_DEFAULTS)
    assert result.passed, result.failure


@pytest.mark.parametrize("name", list(OPS))
@given(data=st.data())
def test_random_case(name, data):
    """Property: on any drawn configuration the four checks agree."""
    spec = OPS[name]
    case = spec.sample(HypothesisDraw(data))
    dtype = data.draw(st.sampled_from(["float32", "float64"]))
    result = verify_case(spec, case, dtype, transforms=False, xla_defaults=XLA_DEFAULTS)
    assert result.passed, f"{case}: {result.failure}"


def test_every_public_op_is_registered():
    """A public differentiable op without a registry entry is unverified: fail."""
    not_ops = {"flip_and_swap", "zero_insert"}  # pieces of the derivations, tested in their own modules
    public = {name for name in convgrad.__all__ if callable(getattr(convgrad, name)) and name not in not_ops}
    assert public <= set(OPS), f"public ops missing from the registry: {sorted(public - set(OPS))}"
