"""Facts about softmax_cross_entropy and mse beyond the registry's checks, and an MLP built from the new ops."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff, loops
from convgrad.ops import losses
from convgrad.registry import OPS
from convgrad.verify import verify_case

# ---------------------------------------------------------------------------- softmax_cross_entropy

HUGE = [1e4, 0.0, -1e4]


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32, jnp.float64])
def test_cross_entropy_of_huge_logits_is_exact(dtype):
    """Logits [1e4, 0, -1e4] with labels 0, 1, 2: losses 1e4 - logit = 0, 1e4, 2e4 (plus log(1 + e^-1e4 + ...) = 0).

    softmax is exactly [1, 0, 0], so dlogits = p - onehot = [0, 0, 0], [1, -1, 0], [1, 0, -1]. float16 holds 1e4
    (and 2e4) exactly too.
    """
    logits = jnp.array([HUGE] * 3, dtype)
    labels = jnp.array([0, 1, 2])
    loss, vjp = jax.vjp(lambda z: convgrad.softmax_cross_entropy(z, labels), logits)
    np.testing.assert_array_equal(loss, [0.0, 1e4, 2e4])
    np.testing.assert_array_equal(loss, loops.softmax_cross_entropy(np.array([HUGE] * 3), np.array([0, 1, 2])))
    (dlogits,) = vjp(jnp.ones(3, dtype))
    np.testing.assert_array_equal(dlogits, [[0.0, 0.0, 0.0], [1.0, -1.0, 0.0], [1.0, 0.0, -1.0]])


def test_cross_entropy_by_hand():
    """Logits [0, log 3]: p = [1/4, 3/4]. Label 0 costs log 4, label 1 log(4/3); dlogits = g (p - onehot)."""
    logits = jnp.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
    labels = jnp.array([0, 1])
    loss, vjp = jax.vjp(lambda z: convgrad.softmax_cross_entropy(z, labels), logits)
    np.testing.assert_allclose(loss, [math.log(4.0), math.log(4.0 / 3.0)], rtol=1e-15)
    # g = [2, -1]: row 0 is 2 [1/4 - 1, 3/4] = [-3/2, 3/2]; row 1 is -1 [1/4, 3/4 - 1] = [-1/4, 1/4]
    (dlogits,) = vjp(jnp.array([2.0, -1.0]))
    np.testing.assert_allclose(dlogits, [[-1.5, 1.5], [-0.25, 0.25]], rtol=1e-15)


def test_cross_entropy_hessian_is_diag_p_minus_p_p_transpose():
    """Grad of the hand-derived VJP: for p = [1/4, 3/4] the Hessian diag(p) - p p^T is [[3, -3], [-3, 3]] / 16."""
    loss = lambda z: convgrad.softmax_cross_entropy(z, jnp.array(1))
    hessian = jax.jit(jax.jacrev(jax.grad(loss)))(jnp.array([0.0, math.log(3.0)]))
    np.testing.assert_allclose(hessian, np.array([[3.0, -3.0], [-3.0, 3.0]]) / 16, rtol=1e-14)


def test_cross_entropy_second_order_through_a_batch_mean():
    """Reverse over reverse through mean(CE(dense(x))): matches autodiff, for the weights and the input."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal((4, 3)), rng.standard_normal((3, 5))
    labels, v = jnp.array([0, 4, 2, 2]), rng.standard_normal((3, 5))

    def hvp(dense, cross_entropy):
        loss = lambda x, w: jnp.mean(cross_entropy(dense(x, w), labels))
        return jax.grad(lambda x, w: jnp.vdot(jax.grad(loss, argnums=1)(x, w), v), argnums=(0, 1))(x, w)

    got = jax.jit(lambda: hvp(convgrad.dense, convgrad.softmax_cross_entropy))()
    for g, e in zip(got, hvp(autodiff.dense, autodiff.softmax_cross_entropy)):
        np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


def test_labels_get_a_float0_cotangent():
    _, vjp = jax.vjp(convgrad.softmax_cross_entropy, jnp.zeros((2, 3)), jnp.array([0, 2]))
    _, dlabels = vjp(jnp.ones(2))
    assert dlabels.dtype == jax.dtypes.float0 and dlabels.shape == (2,)


def test_out_of_range_labels_give_nan_rows_and_leave_the_others_alone():
    """Labels 3 and -1 with K = 3 cannot be rejected under jit: their losses and gradient rows are NaN."""
    logits = jnp.array([[0.0, math.log(3.0), 0.0]] * 3)
    f = jax.jit(lambda z: convgrad.softmax_cross_entropy(z, jnp.array([1, 3, -1])))
    loss, vjp = jax.vjp(f, logits)
    assert np.isnan(loss[1:]).all()
    np.testing.assert_allclose(loss[0], math.log(5.0 / 3.0), rtol=1e-15)  # p = [1, 3, 1] / 5
    (dlogits,) = vjp(jnp.ones(3))
    assert np.isnan(dlogits[1:]).all()
    np.testing.assert_allclose(dlogits[0], [0.2, 0.6 - 1.0, 0.2], rtol=1e-14)


def _without_g(g, probs, labels):
    return (probs - losses.label_mask(labels, probs.shape[-1])).astype(g.dtype)


def _plus_onehot(g, probs, labels):
    return (g[..., None] * (probs + losses.label_mask(labels, probs.shape[-1]))).astype(g.dtype)


@pytest.mark.parametrize("bug", [_without_g, _plus_onehot], ids=["missing g", "softmax plus onehot"])
def test_checks_catch_wrong_cross_entropy_vjps(mutate, bug):
    mutate(losses, "cross_entropy_logits_grad", bug)
    spec = OPS["softmax_cross_entropy"]
    result = verify_case(spec, spec.cases[0], "float64", transforms=False)
    assert not result.passed
    assert "argument 0 (logits)" in result.failure


# ---------------------------------------------------------------------------- mse


def test_mse_by_hand():
    """The mean over all 4 elements: diff = [[1, 0], [-2, 0]], loss (1 + 4) / 4; dy = g 2 diff / 4, dtarget = -dy."""
    y, target = jnp.array([[1.0, 2.0], [3.0, 4.0]]), jnp.array([[0.0, 2.0], [5.0, 4.0]])
    loss, vjp = jax.vjp(convgrad.mse, y, target)
    assert loss.shape == () and loss == 1.25
    dy, dtarget = vjp(jnp.array(3.0))
    np.testing.assert_array_equal(dy, [[1.5, 0.0], [-3.0, 0.0]])
    np.testing.assert_array_equal(dtarget, [[-1.5, 0.0], [3.0, 0.0]])


# ---------------------------------------------------------------------------- an MLP of the new ops


def _mlp(dense, activation, params, x):
    w1, b1, w2, b2 = params
    return dense(activation(dense(x, w1, b1)), w2, b2)


MLPS = {
    "relu, cross-entropy": (
        lambda p, x, t: jnp.mean(convgrad.softmax_cross_entropy(_mlp(convgrad.dense, convgrad.relu, p, x), t)),
        lambda p, x, t: jnp.mean(autodiff.softmax_cross_entropy(_mlp(autodiff.dense, autodiff.relu, p, x), t)),
    ),
    "tanh, mse": (
        lambda p, x, t: convgrad.mse(_mlp(convgrad.dense, convgrad.tanh, p, x), t),
        lambda p, x, t: autodiff.mse(_mlp(autodiff.dense, autodiff.tanh, p, x), t),
    ),
}


@pytest.mark.parametrize("name", list(MLPS))
def test_mlp_gradients_match_autodiff_under_jit_and_checkpoint(name):
    rng = np.random.default_rng(1)
    params = [rng.standard_normal(s) for s in ((6, 8), (8,), (8, 4), (4,))]
    x = rng.standard_normal((5, 6))
    target = jnp.array([0, 3, 1, 1, 2]) if "cross" in name else rng.standard_normal((5, 4))
    loss, reference_loss = MLPS[name]
    want = jax.grad(reference_loss)(params, x, target)
    for transformed in (jax.jit(jax.grad(loss)), jax.grad(jax.checkpoint(loss))):
        for g, e in zip(transformed(params, x, target), want):
            np.testing.assert_allclose(g, e, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------- errors

LOGITS = np.zeros((4, 3), np.float32)
LABELS = np.zeros(4, np.int32)
BAD_INPUTS = [
    (
        "softmax_cross_entropy",
        (LOGITS, LABELS.astype(np.float32)),
        TypeError,
        r"labels must have an integer dtype \(class",
    ),
    (
        "softmax_cross_entropy",
        (LOGITS, LABELS.astype(bool)),
        TypeError,
        "labels must have an integer dtype .* labels.dtype=bool",
    ),
    (
        "softmax_cross_entropy",
        (LOGITS, np.zeros(3, np.int32)),
        ValueError,
        r"labels.shape=\(3,\) must equal logits.shape\[:-1\]=\(4,\)",
    ),
    ("softmax_cross_entropy", (LOGITS, np.zeros((4, 3), np.int32)), ValueError, r"labels.shape=\(4, 3\) must equal"),
    ("softmax_cross_entropy", (LOGITS.astype(np.int32), LABELS), TypeError, "logits must have a real floating dtype"),
    ("softmax_cross_entropy", (np.float32(0.0), LABELS[0]), ValueError, r"logits must be at least 1-d \(\.\.\., K\)"),
    (
        "softmax_cross_entropy",
        (np.zeros((4, 0), np.float32), LABELS),
        ValueError,
        "logits must have at least one class",
    ),
    ("softmax_cross_entropy", (LOGITS, "cat"), TypeError, "labels must be an array, got str"),
    ("mse", (LOGITS, LOGITS[None]), ValueError, r"y.shape=\(4, 3\) and target.shape=\(1, 4, 3\) must match exactly"),
    ("mse", (LOGITS, LOGITS[:, :1]), ValueError, r"no broadcasting"),
    (
        "mse",
        (LOGITS, LOGITS.astype(np.float64)),
        TypeError,
        "must share one dtype, got y.dtype=float32, target.dtype=float64",
    ),
    (
        "mse",
        (LOGITS, LOGITS.astype(np.int32)),
        TypeError,
        "target must have a real floating dtype .* target.dtype=int32",
    ),
    ("mse", (LOGITS[:0], LOGITS[:0]), ValueError, r"y is empty \(y.shape=\(0, 3\)\)"),
]


@pytest.mark.parametrize(
    ("op", "args", "error", "message"), BAD_INPUTS, ids=[f"{o}-{m[:30]}" for o, *_, m in BAD_INPUTS]
)
def test_bad_input_raises_a_clear_error(op, args, error, message):
    """Each raises before XLA sees anything, naming the argument and its value; under jit too."""
    with pytest.raises(error, match=rf"^{op}: .*" + message):
        getattr(convgrad, op)(*args)
    if all(isinstance(a, np.ndarray) for a in args):
        with pytest.raises(error, match=re.escape(f"{op}: ")):
            jax.jit(getattr(convgrad, op))(*args)
