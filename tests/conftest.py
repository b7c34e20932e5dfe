"""Shared test set-up: float64 on, hypothesis profiles, the ``mutate`` and ``mnist_path`` fixtures.

Hypothesis profiles: ``quick`` (default; few examples, derandomized so CI is
reproducible) and ``thorough`` (many random examples). Choose with
``CONVGRAD_HYPOTHESIS=thorough pytest``.
"""

from __future__ import annotations

import os
from pathlib import Path

from tests.compile_flags import XLA_DEFAULTS, suite_xla_flags

# Compile tests' many small programs fast: XLA's backend optimizations off and its older loop
# emitters (tests/compile_flags.py). One bug (wrong max-pool switches after a fused im2col
# convolution) showed only with XLA's defaults, so its regression test in test_pooling.py runs
# in a fresh process with them. CONVGRAD_TEST_XLA_DEFAULTS=1 keeps the defaults here too.
if not XLA_DEFAULTS:
    os.environ["XLA_FLAGS"] = suite_xla_flags(os.environ.get("XLA_FLAGS", ""))

import jax  # imported after XLA_FLAGS is set
import pytest
from hypothesis import HealthCheck, settings

from tests.mnist_location import MNIST_MISSING, mnist_dir

jax.config.update("jax_enable_x64", True)

settings.register_profile(
    "quick",
    max_examples=5,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "thorough",
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("CONVGRAD_HYPOTHESIS", "quick"))


@pytest.fixture
def mutate(monkeypatch):
    """``mutate(module, name, buggy)``: inject a bug; compiled programs are dropped before and after."""
    from convgrad.verify import clear_caches

    clear_caches()
    yield monkeypatch.setattr
    monkeypatch.undo()
    clear_caches()


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    path = mnist_dir()
    if path is None:
        pytest.skip(MNIST_MISSING)
    return path
