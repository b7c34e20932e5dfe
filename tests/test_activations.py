"""Facts about relu's three rules, sigmoid, tanh, softmax and log_softmax beyond the registry's checks."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff, loops, testing
from convgrad.ops import activations
from convgrad.registry import OPS
from convgrad.verify import verify_case

# ---------------------------------------------------------------------------- relu

# mixed signs of x and g (and one x exactly 0) so that the three rules all differ
X = np.array([2.0, -1.0, 3.0, -2.0, 0.0])
G = np.array([-1.0, 2.0, 4.0, -3.0, 5.0])
RELU_BY_HAND = {
    "gradient": [-1.0, 0.0, 4.0, 0.0, 0.0],  # g where x > 0 (and 0 at x = 0)
    "deconvnet": [0.0, 2.0, 4.0, 0.0, 5.0],  # g where g > 0, whatever x
    "guided": [0.0, 0.0, 4.0, 0.0, 0.0],  # g where x > 0 and g > 0
}


@pytest.mark.parametrize("rule", activations.RELU_RULES)
def test_relu_rules_by_hand(rule):
    """Same forward for every rule; each backward is the hand-written vector and the loop reference's."""
    y, vjp = jax.vjp(lambda x: convgrad.relu(x, rule), X)
    np.testing.assert_array_equal(y, [2.0, 0.0, 3.0, 0.0, 0.0])
    (dx,) = vjp(G)
    np.testing.assert_array_equal(dx, RELU_BY_HAND[rule])
    np.testing.assert_array_equal(loops.relu_vjp(X, G, rule)[0], RELU_BY_HAND[rule])


def test_relu_gradient_rule_is_jax_nn_relu_derivative_including_zero():
    """The "gradient" rule is the derivative jax.nn.relu uses, 0 at x = 0 included."""
    (dx,) = jax.vjp(jax.nn.relu, X)[1](G)
    np.testing.assert_array_equal(dx, RELU_BY_HAND["gradient"])
    assert jax.grad(convgrad.relu)(0.0) == 0.0


@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
def test_relu_visualization_rules_match_their_definitions_under_jit_and_vmap(rule):
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((2, 3, 4)), rng.standard_normal((2, 3, 4))
    vjp = jax.jit(jax.vmap(lambda x, g: jax.vjp(lambda x: convgrad.relu(x, rule), x)[1](g)[0]))
    np.testing.assert_array_equal(vjp(x, g), loops.relu_vjp(x, g, rule)[0])


def test_deconvnet_ignores_the_forward_input():
    """The deconvnet rule sends back max(g, 0) whether x is positive or negative."""
    deconvnet = lambda x: jax.vjp(lambda x: convgrad.relu(x, "deconvnet"), x)[1](G)[0]
    np.testing.assert_array_equal(deconvnet(X), deconvnet(-X))


def test_relu_saves_only_what_its_rule_reads():
    """gradient/guided keep a boolean mask of x > 0; deconvnet keeps nothing from the forward."""
    assert activations._relu_fwd("deconvnet", jnp.asarray(X))[1] is None
    for rule in ("gradient", "guided"):
        mask = activations._relu_fwd(rule, jnp.asarray(X))[1]
        assert mask.dtype == jnp.bool_
        np.testing.assert_array_equal(mask, X > 0)


@pytest.mark.parametrize("rule", ["deconvnet", "guided"])
def test_relu_visualization_rules_are_not_derivatives(rule):
    """Finite differences disagree with them: they are saliency rules, not gradients."""
    x = np.array([1.5, -0.7, 2.0, -1.2])
    with pytest.raises(AssertionError, match="finite differences"):
        testing.check_vjp(lambda x: convgrad.relu(x, rule), (x,), cotangent=jnp.array([-1.0, 2.0, 1.0, 0.5]))


def test_checks_catch_a_relu_gradient_that_ignores_the_mask(mutate):
    """The bug: the "gradient" rule passes g through where x < 0."""
    mutate(activations, "gradient_rule", lambda g, positive: g)
    spec = OPS["relu"]
    result = verify_case(spec, spec.cases[0], "float64", transforms=False)
    assert not result.passed
    assert "argument 0 (x)" in result.failure


# ---------------------------------------------------------------------------- sigmoid, tanh


def test_sigmoid_and_tanh_by_hand():
    """sigmoid(log 3) = 3/4 with slope 3/4 * 1/4 = 3/16; tanh(log 2) = (2 - 1/2) / (2 + 1/2) = 3/5, slope 16/25."""
    x = jnp.array([0.0, math.log(3.0)])
    y, vjp = jax.vjp(convgrad.sigmoid, x)
    np.testing.assert_allclose(y, [0.5, 0.75], rtol=1e-15)
    np.testing.assert_allclose(vjp(jnp.array([1.0, 2.0]))[0], [0.25, 2 * 3 / 16], rtol=1e-15)
    x = jnp.array([0.0, math.log(2.0)])
    y, vjp = jax.vjp(convgrad.tanh, x)
    np.testing.assert_allclose(y, [0.0, 0.6], rtol=1e-15, atol=1e-16)
    np.testing.assert_allclose(vjp(jnp.array([1.0, 2.0]))[0], [1.0, 2 * 16 / 25], rtol=1e-15)


@pytest.mark.parametrize("op", [convgrad.sigmoid, convgrad.tanh], ids=["sigmoid", "tanh"])
@pytest.mark.parametrize("dtype", [jnp.float16, jnp.float32])
def test_saturating_activations_stay_finite(op, dtype):
    """At |x| = 1e3 the outputs saturate to their limits exactly and the gradients to 0, with no inf or NaN."""
    x = jnp.array([-1e3, 1e3], dtype)
    y, vjp = jax.vjp(op, x)
    low = 0.0 if op is convgrad.sigmoid else -1.0
    np.testing.assert_array_equal(y, [low, 1.0])
    np.testing.assert_array_equal(vjp(jnp.ones_like(y))[0], [0.0, 0.0])


# ---------------------------------------------------------------------------- softmax, log_softmax


def test_softmax_and_log_softmax_of_huge_logits_by_hand():
    """Logits of magnitude 1e4: exp(1e4) overflows, exp(0) and exp(-2e4) do not; the max is subtracted first."""
    for dtype in (jnp.float32, jnp.float64):
        np.testing.assert_array_equal(convgrad.softmax(jnp.array([1e4, 0.0, -1e4], dtype)), [1.0, 0.0, 0.0])
        np.testing.assert_array_equal(convgrad.softmax(jnp.array([1e4, 1e4, -1e4], dtype)), [0.5, 0.5, 0.0])
        # log_softmax([1e4, 1e4, 0]) = [0, 0, -1e4] - log 2
        log_2 = math.log(2.0)
        np.testing.assert_allclose(
            convgrad.log_softmax(jnp.array([1e4, 1e4, 0.0], dtype)), [-log_2, -log_2, -1e4 - log_2], rtol=1e-7
        )


def test_softmax_and_log_softmax_vjps_at_huge_logits_by_hand():
    """g = [1, 3, 5]. softmax at [1e4, 1e4, -1e4]: y = [1/2, 1/2, 0], sum(g y) = 2, dx = y (g - 2) = [-1/2, 1/2, 0].
    log_softmax at [1e4, 1e4, 0]: p = [1/2, 1/2, 0], sum(g) = 9, dx = g - 9 p = [-3.5, -1.5, 5]."""
    g = jnp.array([1.0, 3.0, 5.0], jnp.float32)
    (dx,) = jax.vjp(convgrad.softmax, jnp.array([1e4, 1e4, -1e4], jnp.float32))[1](g)
    np.testing.assert_array_equal(dx, [-0.5, 0.5, 0.0])
    (dx,) = jax.vjp(convgrad.log_softmax, jnp.array([1e4, 1e4, 0.0], jnp.float32))[1](g)
    np.testing.assert_array_equal(dx, [-3.5, -1.5, 5.0])


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vjp_at_logits_near_1e4_is_as_accurate_as_near_0(name, dtype):
    """Softmax ignores a common shift: at x + 1e4 the VJP is the loop reference's at x, to the dtype's tolerance."""
    rng = np.random.default_rng(3)
    shifted = (rng.standard_normal((3, 5)) + 1e4).astype(dtype)
    x = shifted.astype(np.float64) - 1e4  # exact: the logits the shifted ones represent
    g = rng.standard_normal((3, 5)).astype(dtype)
    y, vjp = jax.vjp(getattr(convgrad, name), jnp.asarray(shifted))
    testing.assert_close(y, getattr(loops, name)(x), what="forward")
    testing.assert_close(vjp(jnp.asarray(g))[0], getattr(loops, f"{name}_vjp")(x, g)[0], what="VJP")


def test_negative_axis_is_the_same_axis():
    x = np.random.default_rng(4).standard_normal((2, 3, 4))
    for op in (convgrad.softmax, convgrad.log_softmax):
        np.testing.assert_array_equal(op(x, axis=-2), op(x, axis=1))


def test_checks_catch_a_softmax_vjp_without_the_projection(mutate):
    """The bug: dx = y g, forgetting the - sum(g y) term."""
    mutate(activations, "softmax_input_grad", lambda y, g, axis: (y * g).astype(g.dtype))
    spec = OPS["softmax"]
    result = verify_case(spec, spec.cases[0], "float64", transforms=False)
    assert not result.passed
    assert "argument 0 (x)" in result.failure


# ---------------------------------------------------------------------------- all of them


ELEMENTWISE = {
    "relu": (convgrad.relu, autodiff.relu),
    "sigmoid": (convgrad.sigmoid, autodiff.sigmoid),
    "tanh": (convgrad.tanh, autodiff.tanh),
    "softmax": (lambda x: convgrad.softmax(x, axis=0), lambda x: autodiff.softmax(x, axis=0)),
    "log_softmax": (lambda x: convgrad.log_softmax(x, axis=0), lambda x: autodiff.log_softmax(x, axis=0)),
}


@pytest.mark.parametrize("name", list(ELEMENTWISE))
def test_under_checkpoint(name):
    op, reference_op = ELEMENTWISE[name]
    x = np.random.default_rng(5).standard_normal((3, 4)) + 0.05  # no entry at relu's kink
    loss = lambda f: lambda x: jnp.sum(jnp.sin(3 * f(x)))
    np.testing.assert_allclose(
        jax.jit(jax.grad(jax.checkpoint(loss(op))))(x), jax.grad(loss(reference_op))(x), rtol=1e-13, atol=1e-15
    )


F32 = np.zeros((2, 3), np.float32)
BAD_INPUTS = [
    ("relu", (F32,), {"rule": "Guided"}, ValueError, "rule='Guided' is not one of 'gradient', 'deconvnet', 'guided'"),
    ("relu", (F32,), {"rule": None}, ValueError, "rule=None is not one of 'gradient', 'deconvnet', 'guided'"),
    ("relu", (F32.astype(np.int32),), {}, TypeError, "x must have a real floating dtype .* x.dtype=int32"),
    ("sigmoid", (F32.astype(bool),), {}, TypeError, "x must have a real floating dtype .* x.dtype=bool"),
    ("tanh", ("x",), {}, TypeError, "x must be an array, got str"),
    ("softmax", (F32,), {"axis": 2}, ValueError, r"axis=2 is out of range for x.ndim=2 \(allowed: -2 to 1\)"),
    ("log_softmax", (F32,), {"axis": -3}, ValueError, r"axis=-3 is out of range for x.ndim=2 \(allowed: -2 to 1\)"),
    ("softmax", (F32,), {"axis": 1.0}, TypeError, "axis must be an int, got axis=1.0"),
    ("softmax", (F32,), {"axis": True}, TypeError, "axis must be an int, got axis=True"),
    ("log_softmax", (F32,), {"axis": (0, 1)}, TypeError, r"axis must be an int, got axis=\(0, 1\)"),
    ("softmax", (np.float32(1.0),), {}, ValueError, r"x must be at least 1-d .* got x.shape=\(\)"),
    ("softmax", (F32.astype(np.int64),), {}, TypeError, "x must have a real floating dtype .* x.dtype=int64"),
]


@pytest.mark.parametrize(
    ("op", "args", "kwargs", "error", "message"), BAD_INPUTS, ids=[f"{o}-{m[:30]}" for o, *_, m in BAD_INPUTS]
)
def test_bad_input_raises_a_clear_error(op, args, kwargs, error, message):
    """Each raises before XLA sees anything, naming the argument and its value; under jit too."""
    with pytest.raises(error, match=rf"^{op}: .*" + message):
        getattr(convgrad, op)(*args, **kwargs)
    if isinstance(args[0], np.ndarray):
        with pytest.raises(error, match=re.escape(f"{op}: ")):
            jax.jit(lambda x: getattr(convgrad, op)(x, **kwargs))(*args)


@pytest.mark.parametrize("shape", [(0, 3), (3, 0), (0,)])
@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "softmax", "log_softmax"])
def test_zero_size_inputs_give_empty_results_and_gradients(name, shape):
    """An empty batch or an empty normalization axis is valid input (as in jax.nn and PyTorch): empty y and dx."""
    x = jnp.zeros(shape, jnp.float32)
    y, vjp = jax.vjp(getattr(convgrad, name), x)
    (dx,) = vjp(jnp.ones_like(y))
    assert y.shape == shape and y.dtype == x.dtype
    assert dx.shape == shape and dx.dtype == x.dtype
