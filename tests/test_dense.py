"""Facts about convgrad.dense beyond the registry's checks: a hand-worked layer, per-example gradients, errors."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff
from convgrad.ops import dense as dense_module
from convgrad.registry import OPS
from convgrad.verify import verify_case


def test_hand_worked_layer_and_its_three_gradients():
    """A 2x3 input through a 3x2 layer; db is the column sum of g (4, 6), not its mean (2, 3)."""
    x = jnp.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    w = jnp.array([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0]])
    b = jnp.array([10.0, 20.0])
    g = jnp.array([[1.0, 2.0], [3.0, 4.0]])
    y, vjp = jax.vjp(convgrad.dense, x, w, b)
    dx, dw, db = vjp(g)
    # y = x w + b: row 0 is [1 + 3, 2 - 3] + b = [14, 19]; row 1 is [4 + 6, 5 - 6] + b = [20, 19]
    np.testing.assert_array_equal(y, [[14.0, 19.0], [20.0, 19.0]])
    # dx = g w^T, w^T = [[1, 0, 1], [0, 1, -1]]: row 0 [1, 2, 1 - 2], row 1 [3, 4, 3 - 4]
    np.testing.assert_array_equal(dx, [[1.0, 2.0, -1.0], [3.0, 4.0, -1.0]])
    # dw = x^T g: dw[i, o] = x[0, i] g[0, o] + x[1, i] g[1, o], e.g. dw[0] = [1 + 12, 2 + 16]
    np.testing.assert_array_equal(dw, [[13.0, 18.0], [17.0, 24.0], [21.0, 30.0]])
    # b is added to both rows, so it collects both rows' cotangents: [1 + 3, 2 + 4]
    np.testing.assert_array_equal(db, [4.0, 6.0])


def test_weight_and_bias_gradients_contract_every_leading_axis():
    """On a (2, 3, 4) input, dw and db equal those of the same 6 rows laid out as (6, 4)."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((4, 5)), rng.standard_normal(5)
    g = rng.standard_normal((2, 3, 5))
    _, dw, db = jax.vjp(convgrad.dense, x, w, b)[1](g)
    _, dw_flat, db_flat = jax.vjp(convgrad.dense, x.reshape(6, 4), w, b)[1](g.reshape(6, 5))
    np.testing.assert_allclose(dw, dw_flat, rtol=1e-14)
    np.testing.assert_allclose(db, db_flat, rtol=1e-14)
    np.testing.assert_allclose(db, g.sum(axis=(0, 1)), rtol=1e-14)


def test_per_example_weight_gradients_under_vmap():
    """vmap of the weight gradient over examples gives one outer product x_i g_i^T per example."""
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((5, 4)), rng.standard_normal((4, 3)), rng.standard_normal(3)
    loss = lambda w, x_i: jnp.sum(jnp.sin(convgrad.dense(x_i, w, b)))
    per_example = jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0)))(w, x)
    g = np.cos(x @ w + b)  # d loss / d y for each example
    np.testing.assert_allclose(per_example, np.einsum("ni,no->nio", x, g), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(per_example.sum(0), jax.grad(lambda w: loss(w, x))(w), rtol=1e-13)


def test_under_checkpoint():
    rng = np.random.default_rng(2)
    args = rng.standard_normal((3, 4)), rng.standard_normal((4, 2)), rng.standard_normal(2)
    loss = lambda f: lambda x, w, b: jnp.sum(f(x, w, b) ** 3)
    got = jax.jit(jax.grad(jax.checkpoint(loss(convgrad.dense)), argnums=(0, 1, 2)))(*args)
    want = jax.grad(loss(autodiff.dense), argnums=(0, 1, 2))(*args)
    for g, e in zip(got, want):
        np.testing.assert_allclose(g, e, rtol=1e-13)


def test_output_and_gradient_dtypes_follow_the_input():
    for dtype in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64):
        x, w, b = jnp.ones((2, 3), dtype), jnp.ones((3, 4), dtype), jnp.ones(4, dtype)
        y, vjp = jax.vjp(convgrad.dense, x, w, b)
        assert y.dtype == dtype
        assert [g.dtype for g in vjp(jnp.ones_like(y))] == [dtype] * 3


def _bias_mean(g):
    return jnp.mean(g, axis=tuple(range(g.ndim - 1)))


def test_checks_catch_a_bias_gradient_averaged_over_the_batch(mutate):
    """The classic bug: db = mean of g over the batch instead of its sum."""
    mutate(dense_module, "dense_bias_grad", _bias_mean)
    spec = OPS["dense"]
    result = verify_case(spec, spec.cases[0], "float64", transforms=False)
    assert not result.passed
    assert "argument 2 (b)" in result.failure


X, W = np.zeros((2, 5), np.float32), np.zeros((5, 3), np.float32)
BAD_INPUTS = [
    ((X, np.zeros((4, 3), np.float32)), ValueError, r"x.shape\[-1\]=5 does not match w.shape\[0\]=4"),
    ((np.zeros((), np.float32), W), ValueError, r"x must be at least 1-d \(\.\.\., in\), got x.shape=\(\)"),
    ((X, np.zeros(5, np.float32)), ValueError, r"w must have 2 dims \(in, out\), got w.shape=\(5,\)"),
    ((X, np.zeros((5, 3, 1), np.float32)), ValueError, r"w must have 2 dims \(in, out\), got w.shape=\(5, 3, 1\)"),
    ((X, W, np.zeros(4, np.float32)), ValueError, r"b must have shape \(out,\)=\(3,\), got b.shape=\(4,\)"),
    ((X, W, np.zeros((1, 3), np.float32)), ValueError, r"b must have shape \(out,\)=\(3,\), got b.shape=\(1, 3\)"),
    ((X.astype(np.int32), W), TypeError, "x must have a real floating dtype .* x.dtype=int32"),
    ((X, W.astype(np.complex64)), TypeError, "w must have a real floating dtype .* w.dtype=complex64"),
    ((X, W.astype(np.float64)), TypeError, "must share one dtype, got x.dtype=float32, w.dtype=float64"),
    ((X, W, np.zeros(3, np.float16)), TypeError, "must share one dtype, got .* b.dtype=float16"),
    (("x", W), TypeError, "x must be an array, got str"),
    ((X, None), TypeError, "w must be an array, got NoneType"),
]


@pytest.mark.parametrize(("args", "error", "message"), BAD_INPUTS, ids=[m[:40] for *_, m in BAD_INPUTS])
def test_bad_input_raises_a_clear_error(args, error, message):
    """Each raises before XLA sees anything, naming the argument and its value; under jit too."""
    with pytest.raises(error, match=r"^dense: .*" + message):
        convgrad.dense(*args)
    if all(isinstance(a, np.ndarray) for a in args):
        with pytest.raises(error, match=re.escape("dense: ")):
            jax.jit(convgrad.dense)(*args)
