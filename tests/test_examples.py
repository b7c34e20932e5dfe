"""The Flax and Equinox examples in docs/examples: convgrad's convolutions inside those libraries' modules.

Skipped, with the reason, when flax or equinox is not installed (they are optional extras:
``pip install ".[flax]"``, ``".[equinox]"``) or real MNIST is absent.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import testing

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


def _example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses (equinox's modules) look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def flax_example():
    pytest.importorskip("flax", reason="flax is an optional extra: pip install '.[flax]'")
    return _example("flax_mnist")


@pytest.fixture(scope="module")
def equinox_example():
    pytest.importorskip("equinox", reason="equinox is an optional extra: pip install '.[equinox]'")
    return _example("equinox_conv")


def test_flax_gradients_equal_lax_default(flax_example):
    """The same nnx model (same initial parameters) with conv_general_dilated=convgrad.lax's and with lax's
    default: every parameter's gradient agrees to float32 tolerance (the CPU formulations round differently)."""
    rng = np.random.default_rng(0)
    with jax.enable_x64(False):
        x = jnp.asarray(rng.standard_normal((8, 28, 28, 1)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
        ours = flax_example.gradients(convgrad.lax.conv_general_dilated, x, y)
        theirs = flax_example.gradients(jax.lax.conv_general_dilated, x, y)
        for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
            testing.assert_close(a, b, what="nnx.Conv gradient, convgrad vs lax")


def test_flax_convnet_trains_on_mnist(flax_example, mnist_path):
    """300 Adam steps of batch 64 on real MNIST: above 95% test accuracy (97.7% measured)."""
    with jax.enable_x64(False):
        result = flax_example.main(["--data-dir", str(mnist_path), "--steps", "300"])
    assert result["test_accuracy"] > 0.95
    assert result["max_gradient_difference_vs_lax"] < testing.TOLERANCES["float32"].rtol


def test_equinox_conv2d_equals_eqx_nn_conv2d(equinox_example):
    """The example's Conv2d (convgrad.conv on one (C, H, W) example) and eqx.nn.Conv2d with the same kernel and
    bias, vmapped over a batch: the same values and the same gradients of x, kernel and bias."""
    import equinox as eqx

    key = jax.random.key(0)
    with jax.enable_x64(False):
        ours = equinox_example.Conv2d(3, 5, 3, 1, key=key)
        theirs = eqx.nn.Conv2d(3, 5, 3, padding=1, key=key)
        theirs = eqx.tree_at(lambda m: (m.weight, m.bias), theirs, (ours.weight, ours.bias.reshape(5, 1, 1)))
        x = jax.random.normal(jax.random.key(1), (4, 3, 8, 7))
        g = jax.random.normal(jax.random.key(2), (4, 5, 8, 7))
        loss = lambda model, x: jnp.vdot(jax.vmap(model)(x), g)
        value, grads = jax.value_and_grad(lambda m, x: loss(m, x), argnums=(0, 1))(ours, x)
        value_eqx, grads_eqx = jax.value_and_grad(lambda m, x: loss(m, x), argnums=(0, 1))(theirs, x)
        testing.assert_close(value, value_eqx, what="loss")
        testing.assert_close(grads[1], grads_eqx[1], what="dx")
        testing.assert_close(grads[0].weight, grads_eqx[0].weight, what="d weight")
        testing.assert_close(grads[0].bias, grads_eqx[0].bias.reshape(5), what="d bias")


def test_equinox_convnet_trains_on_mnist(equinox_example, mnist_path):
    """60 Adam steps already classify most of the test set (93.0% measured; 97.6% after 300 steps)."""
    with jax.enable_x64(False):
        result = equinox_example.main(["--data-dir", str(mnist_path), "--steps", "60"])
    assert result["test_accuracy"] > 0.85
