"""check_vjp on each bug class of a user's own VJP: the planted bug raises, naming where; the right version passes.

The classes: a wrong pytree leaf, a static argument, a wrong second output, a wrong
``custom_jvp`` rule, a wrong batching rule, a wrong second derivative, and a wrong
Jacobian entry (``mode="jacobian"``). A single wrong element among 10,000 is in
``tests/test_checker_detection.py``.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from convgrad.testing import check_vjp

RNG = np.random.default_rng(0)
PARAMS = {"w": jnp.asarray(RNG.standard_normal((4, 3)) / 2), "b": jnp.asarray(RNG.standard_normal(3))}
X = jnp.asarray(RNG.standard_normal((5, 4)))


# ---------------------------------------------------------------------------- a wrong pytree leaf


def _layer_in_plain_jax(params, x):
    return jnp.tanh(x @ params["w"] + params["b"])


def _layer(bias_grad_scale: float):
    """A dense tanh layer ``f(params, x)`` with a hand-written VJP; its bias gradient times ``bias_grad_scale``."""

    @jax.custom_vjp
    def layer(params, x):
        return _layer_in_plain_jax(params, x)

    def fwd(params, x):
        y = layer(params, x)
        return y, (params, x, y)

    def bwd(saved, g):
        params, x, y = saved
        dz = g * (1 - y**2)
        return {"w": x.T @ dz, "b": bias_grad_scale * dz.sum(0)}, dz @ params["w"].T

    layer.defvjp(fwd, bwd)
    return layer


@pytest.mark.parametrize("reference", [None, _layer_in_plain_jax], ids=["finite differences", "reference"])
def test_a_wrong_pytree_leaf_is_caught_and_named(reference):
    check_vjp(_layer(1.0), (PARAMS, X), reference=reference)
    with pytest.raises(AssertionError, match=r"argument 0 \(params\['b'\]\)") as failure:
        check_vjp(_layer(100.0), (PARAMS, X), reference=reference)
    assert re.search(r"at index \(\d+,\)", str(failure.value)), str(failure.value)


def test_every_floating_leaf_of_every_argument_is_checked():
    record = check_vjp(_layer(1.0), (PARAMS, X))
    assert [(leaf.argnum, leaf.path) for leaf in record.leaves] == [(0, "params['b']"), (0, "params['w']"), (1, "x")]
    assert all(leaf.numerical_error is not None for leaf in record.leaves)


def test_argnums_selects_whole_arguments():
    record = check_vjp(_layer(100.0), (PARAMS, X), argnums=1)  # the wrong bias gradient is not looked at
    assert [leaf.path for leaf in record.leaves] == ["x"]


def test_tuple_arguments_and_integer_and_boolean_leaves_are_carried():
    """Integer and boolean leaves are passed through, never differentiated; tuple leaves are named by index."""

    def masked_scale(state, pair):
        a, b = pair
        return jnp.where(state["mask"], a * state["w"], b) * state["count"]

    state = {"w": jnp.arange(1.0, 4.0), "count": jnp.int32(3), "mask": jnp.array([True, False, True])}
    pair = (jnp.array([0.5, -1.0, 2.0]), jnp.array([1.0, 2.0, 3.0]))
    record = check_vjp(masked_scale, (state, pair))
    assert [leaf.path for leaf in record.leaves] == ["state['w']", "pair[0]", "pair[1]"]


def test_pytree_outputs_with_integer_leaves_get_float0_cotangents():
    @jax.custom_vjp
    def top(x):
        return {"values": jnp.max(x, axis=-1), "index": jnp.argmax(x, axis=-1)}

    def fwd(x):
        return top(x), x

    def bwd(x, cts):
        return (jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1], dtype=x.dtype) * cts["values"][..., None],)

    top.defvjp(fwd, bwd)
    x = jnp.asarray(RNG.standard_normal((4, 5)))
    record = check_vjp(top, (x,), reference=lambda x: {"values": jnp.max(x, -1), "index": jnp.argmax(x, -1)})
    assert record.max_reference_error < 1e-12


# ---------------------------------------------------------------------------- static arguments


def _power(right: bool):
    @functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
    def power(x, n):
        return x**n

    def fwd(x, n):
        return power(x, n), x

    def bwd(n, x, g):
        return (g * n * x ** (n - 1 if right else n),)

    power.defvjp(fwd, bwd)
    return power


def test_nondiff_argnums_functions_are_checked_as_called():
    """A Python int is static by default: closed over, never traced (else: JAX's UnexpectedTracerError)."""
    x = jnp.linspace(0.5, 2.0, 7)
    record = check_vjp(_power(True), (x, 3))
    assert [leaf.path for leaf in record.leaves] == ["x"]
    with pytest.raises(AssertionError, match=r"argument 0 \(x\): VJP vs central finite differences"):
        check_vjp(_power(False), (x, 3))


def test_strings_and_none_are_static():
    def activation(x, name, bias):
        y = jnp.tanh(x) if name == "tanh" else jax.nn.sigmoid(x)
        return y if bias is None else y + bias

    check_vjp(activation, (X, "tanh", None), reference=lambda x, name, bias: jnp.tanh(x))


def test_static_values_that_compare_equal_are_not_confused():
    """0.0 == -0.0 and 1 == 1.0 == True, but a function may tell them apart: each call sees its own."""

    def signed(x, s):
        return x * (jnp.copysign(1.0, s) if isinstance(s, float) else 3.0)

    x = jnp.linspace(0.5, 1.0, 3)
    for s, factor in ((0.0, 1.0), (-0.0, -1.0), (1, 3.0), (1.0, 1.0)):
        record = check_vjp(signed, (x, s), cotangent=jnp.ones(3), reference=lambda x, s, factor=factor: factor * x)
        assert record.max_reference_error == 0.0


def test_static_argnums_closes_over_an_array():
    """An argument the function reads with NumPy cannot be traced; static_argnums closes over it."""
    table = np.array([1.0, 2.0, 4.0])

    def scaled(x, table):
        return x * float(np.sum(table))

    with pytest.raises(jax.errors.ConcretizationTypeError):
        check_vjp(scaled, (X, table), argnums=0)
    record = check_vjp(scaled, (X, table), static_argnums=1)
    assert [leaf.path for leaf in record.leaves] == ["x"]


# ---------------------------------------------------------------------------- a wrong second output


def _polar(right: bool):
    @jax.custom_vjp
    def polar(x):
        return jnp.cos(x), jnp.sin(x)

    def bwd(x, cts):
        g_cos, g_sin = cts
        return (-g_cos * jnp.sin(x) + (g_sin * jnp.cos(x) if right else 0.0),)

    polar.defvjp(lambda x: (polar(x), x), bwd)
    return polar


@pytest.mark.parametrize(
    "reference", [None, lambda x: (jnp.cos(x), jnp.sin(x))], ids=["finite differences", "reference"]
)
def test_a_vjp_that_drops_the_second_output_is_caught(reference):
    x = jnp.linspace(-2.0, 2.0, 9)
    check_vjp(_polar(True), (x,), reference=reference)
    with pytest.raises(AssertionError, match=r"argument 0 \(x\)"):
        check_vjp(_polar(False), (x,), reference=reference)


# ---------------------------------------------------------------------------- a wrong custom_jvp rule


def _softplus_jvp(right: bool):
    @jax.custom_jvp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    @softplus.defjvp
    def rule(primals, tangents):
        (x,), (t,) = primals, tangents
        return softplus(x), jax.nn.sigmoid(x if right else -x) * t

    return softplus


def test_a_wrong_custom_jvp_rule_is_caught():
    """jax.vjp of a custom_jvp function transposes its rule: the VJP checked is the rule's."""
    x = jnp.linspace(-3.0, 3.0, 11)
    check_vjp(_softplus_jvp(True), (x,), reference=jax.nn.softplus, order=2)
    with pytest.raises(AssertionError, match=r"argument 0 \(x\): VJP vs central finite differences"):
        check_vjp(_softplus_jvp(False), (x,))
    with pytest.raises(AssertionError, match=r"argument 0 \(x\): VJP vs jax.vjp\(reference\)"):
        check_vjp(_softplus_jvp(False), (x,), reference=jax.nn.softplus)


# ---------------------------------------------------------------------------- a wrong batching rule


def _times(right: bool):
    """``a * b`` whose batching rule, when wrong, pairs each ``a`` with the reversed batch of ``b``."""

    @jax.custom_batching.custom_vmap
    def times(a, b):
        return a * b

    @times.def_vmap
    def rule(axis_size, in_batched, a, b):
        a_batched, b_batched = in_batched
        a = a if a_batched else jnp.broadcast_to(a, (axis_size, *a.shape))
        b = b if b_batched else jnp.broadcast_to(b, (axis_size, *b.shape))
        return a * (b if right else jnp.flip(b, 0)), True

    return times


def _sine(times):
    @jax.custom_vjp
    def sine(x):
        return jnp.sin(x)

    sine.defvjp(lambda x: (sine(x), x), lambda x, g: (times(g, jnp.cos(x)),))
    return sine


def test_a_wrong_batching_rule_is_caught_by_check_batched():
    x = jnp.linspace(-2.0, 2.0, 9)
    wrong = _sine(_times(False))
    check_vjp(wrong, (x,), reference=jnp.sin)  # unbatched, the VJP is right
    check_vjp(_sine(_times(True)), (x,), reference=jnp.sin, check_batched=True)
    with pytest.raises(AssertionError, match=r"argument 0 \(x\): VJP under jax.vmap, problem \d of 2, vs alone"):
        check_vjp(wrong, (x,), check_batched=True)


def test_check_batched_takes_the_other_problems_from_batch_args():
    x = jnp.linspace(-2.0, 2.0, 9)
    wrong = _sine(_times(False))
    check_vjp(wrong, (x,), check_batched=True, batch_args=[(x,)])  # the same problem twice: flipping is invisible
    with pytest.raises(AssertionError, match=r"VJP under jax\.vmap"):
        check_vjp(wrong, (x,), check_batched=True, batch_args=[(x + 1.0,), (x - 1.0,)])


# ---------------------------------------------------------------------------- a wrong second derivative


def _sine_with_cosine(cosine):
    @jax.custom_vjp
    def sine(x):
        return jnp.sin(x)

    sine.defvjp(lambda x: (sine(x), x), lambda x, g: (g * cosine(x),))
    return sine


@jax.custom_jvp
def _cosine_with_wrong_derivative(x):
    return jnp.cos(x)


@_cosine_with_wrong_derivative.defjvp
def _cosine_rule(primals, tangents):
    (x,), (t,) = primals, tangents
    return jnp.cos(x), jnp.sin(x) * t  # should be -sin(x) t


@pytest.mark.parametrize("reference", [None, jnp.sin], ids=["finite differences", "reference"])
def test_a_wrong_second_derivative_is_caught_by_order_2(reference):
    x = jnp.linspace(-2.0, 2.0, 9)
    wrong = _sine_with_cosine(_cosine_with_wrong_derivative)
    check_vjp(wrong, (x,), reference=reference)  # the VJP itself is right
    record = check_vjp(_sine_with_cosine(jnp.cos), (x,), reference=reference, order=2)
    assert [leaf.path for leaf in record.second_order.leaves] == ["x"]
    with pytest.raises(AssertionError, match=r"check_vjp, order 2 .*: argument 0 \(x\)"):
        check_vjp(wrong, (x,), reference=reference, order=2)


# ---------------------------------------------------------------------------- mode="jacobian"


def _cumulative(wrong_entry: bool):
    """``cumsum`` with a VJP (reverse cumsum) whose entry d y[3] / d x[1] is 2 when ``wrong_entry``, not 1."""

    @jax.custom_vjp
    def cumulative(x):
        return jnp.cumsum(x)

    def bwd(_, g):
        grad = jnp.cumsum(g[::-1])[::-1]
        return (grad.at[1].add(g[3]) if wrong_entry else grad,)

    cumulative.defvjp(lambda x: (cumulative(x), None), bwd)
    return cumulative


def test_jacobian_mode_compares_the_whole_jacobian_and_names_the_entry():
    x = jnp.linspace(-1.0, 1.0, 6)
    record = check_vjp(_cumulative(False), (x,), mode="jacobian", linear_argnums=(0,))
    assert record.mode == "jacobian"
    with pytest.raises(
        AssertionError,
        match=r"Jacobian \(6 x 6\)(.|\n)*1 / 36 elements mismatched(.|\n)*"
        r"at index \(d output\[3\] / d x\[1\]\): actual 2, expected 1",
    ):
        check_vjp(_cumulative(True), (x,), mode="jacobian", linear_argnums=(0,))


def test_jacobian_mode_rejects_a_leaf_beyond_its_limit(monkeypatch):
    from convgrad.testing import vjp

    monkeypatch.setattr(vjp, "JACOBIAN_MAX_COLUMNS", 5)
    with pytest.raises(ValueError, match=r"mode='jacobian': argument 0 \(x\) has 6 elements"):
        check_vjp(_cumulative(False), (jnp.ones(6),), mode="jacobian")


# ---------------------------------------------------------------------------- the checker's own arguments


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (dict(mode="slow"), ValueError, r"check_vjp: mode='slow'"),
        (dict(directions=0), ValueError, r"check_vjp: directions=0"),
        (dict(order=3), ValueError, r"check_vjp: order=3"),
        (dict(argnums=2), ValueError, r"check_vjp: argnums=2 names no argument of the 2 given"),
        (dict(argnums=0, static_argnums=0), ValueError, r"argument 0 \(params\) is in both argnums and static_argnums"),
        (dict(numerical=False), ValueError, r"reference=None and numerical=False compare the VJP with nothing"),
    ],
)
def test_bad_checker_arguments_are_named(options, error, message):
    with pytest.raises(error, match=message):
        check_vjp(_layer(1.0), (PARAMS, X), **options)


def test_nothing_floating_to_differentiate_is_an_error():
    with pytest.raises(ValueError, match="no floating array among the arguments"):
        check_vjp(lambda x, n: x * n, (2.0, 3))
    with pytest.raises(TypeError, match=r"argument 1 \(n\) has no floating array leaf"):
        check_vjp(lambda x, n: x * n, (jnp.ones(3), jnp.arange(3)), argnums=(0, 1))
