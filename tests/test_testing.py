"""convgrad.testing catches real VJP bugs, each of the four checks on its own, and passes correct VJPs."""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff, loops, testing
from convgrad.ops import conv_textbook
from convgrad.testing import adjoint, compare, vjp

# square groups (C/G == O/G) so that a kernel with unswapped channels still has the right shape
OPTIONS = dict(stride=2, padding=((1, 0), (2, 1)), groups=2)


def _problem(dtype=np.float64):
    rng = np.random.default_rng(0)
    return (
        rng.standard_normal((2, 6, 7, 8)).astype(dtype),
        rng.standard_normal((6, 3, 3, 2)).astype(dtype),
        rng.standard_normal(6).astype(dtype),
    )


def _conv(x, w, b):
    return convgrad.conv(x, w, b, **OPTIONS)


def _flip_only(w, groups=1, rhs_spec=None):
    return jax.lax.rev(w, (2, 3))


def _swap_only(w, groups=1, rhs_spec=None):
    blocks = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
    return jnp.swapaxes(blocks, 1, 2).reshape(-1, w.shape[0] // groups, *w.shape[2:])


def _bias_mean(g, geometry):
    return jnp.mean(g, axis=(0, 2, 3))


MUTANTS = {
    "missing kernel flip": ("flip_and_swap", _swap_only, 0),
    "missing channel swap": ("flip_and_swap", _flip_only, 0),
    "bias gradient averaged": ("conv_bias_grad", _bias_mean, 2),
}


def _autodiff_check(args, _):
    testing.check_vjp(_conv, args, reference=lambda x, w, b: autodiff.conv(x, w, b, **OPTIONS), numerical=False)


def _numerical_check(args, _):
    testing.check_vjp(_conv, args, numerical=True, linear_argnums=(0, 1, 2))


def _loop_check(args, argnum):
    y, vjp = jax.vjp(_conv, *args)
    g = np.random.default_rng(1).standard_normal(y.shape)
    expected = loops.conv_vjp(*args, g, **OPTIONS)
    testing.assert_close(vjp(g)[argnum], expected[argnum], what=f"argument {argnum} vs loop reference")


def _adjoint_check(args, argnum):
    y = jax.eval_shape(_conv, *args)

    def linear_part(u):
        zero = [*args]
        zero[argnum] = jnp.zeros_like(u)
        with_u = [*args]
        with_u[argnum] = u
        return _conv(*with_u) - _conv(*zero)

    testing.check_adjoint(
        linear_part, lambda c: jax.vjp(_conv, *args)[1](c)[argnum], args[argnum].shape, y.shape, dtype=jnp.float64
    )


CHECKS = {
    "autodiff": _autodiff_check,
    "finite differences": _numerical_check,
    "loop": _loop_check,
    "adjoint": _adjoint_check,
}


@pytest.mark.parametrize("check", list(CHECKS))
@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_each_check_catches_each_bug(mutate, mutant, check):
    name, replacement, argnum = MUTANTS[mutant]
    mutate(conv_textbook, name, replacement)
    with pytest.raises(AssertionError):
        CHECKS[check](_problem(), argnum)


@pytest.mark.parametrize("check", list(CHECKS))
def test_checks_pass_the_correct_vjp(check):
    for argnum in range(3):
        CHECKS[check](_problem(), argnum)


def test_failure_message_names_argument_check_and_errors(mutate):
    mutate(conv_textbook, "conv_bias_grad", _bias_mean)
    with pytest.raises(
        AssertionError,
        match=r"argument 2 \(b\): VJP vs jax.vjp\(reference\): \d+ / 6 elements mismatched(.|\n)*"
        r"max abs error .* at index \(\d,\): actual .*, expected (.|\n)*max rel error .* > rtol",
    ):
        testing.check_vjp(
            _conv, _problem(), reference=lambda x, w, b: autodiff.conv(x, w, b, **OPTIONS), numerical=False
        )
    with pytest.raises(AssertionError, match=r"argument 2 \(b\): VJP vs central finite differences"):
        testing.check_vjp(_conv, _problem(), numerical=True)


def test_correct_float32_vjp_is_not_flagged():
    """float32 custom VJP vs float64 reference and float64 finite differences, dtype tolerances."""
    record = testing.check_vjp(_conv, _problem(np.float32), reference=lambda x, w, b: autodiff.conv(x, w, b, **OPTIONS))
    assert [leaf.path for leaf in record.leaves] == ["x", "w", "b"]
    assert all(leaf.dtype == "float32" for leaf in record.leaves)
    assert record.max_reference_error < testing.TOLERANCES["float32"].rtol
    assert record.max_numerical_error < testing.TOLERANCES["float32"].rtol


# A user's own custom_vjp, as in the README.
@jax.custom_vjp
def softplus(x):
    return jnp.logaddexp(x, 0.0)


def _softplus_fwd(x):
    return softplus(x), x


def _softplus_bwd(x, g):
    return (g * jax.nn.sigmoid(x),)


softplus.defvjp(_softplus_fwd, _softplus_bwd)


@jax.custom_vjp
def broken_softplus(x):
    return jnp.logaddexp(x, 0.0)


broken_softplus.defvjp(lambda x: (broken_softplus(x), x), lambda x, g: (g * jax.nn.sigmoid(-x),))


def test_user_custom_vjp():
    x = jnp.linspace(-3.0, 3.0, 11, dtype=jnp.float32)
    testing.check_vjp(softplus, (x,), reference=jax.nn.softplus)
    with pytest.raises(AssertionError, match=r"argument 0 \(x\)"):
        testing.check_vjp(broken_softplus, (x,), reference=jax.nn.softplus)
    with pytest.raises(AssertionError, match="finite differences"):
        testing.check_vjp(broken_softplus, (x,))


def test_integer_outputs_get_float0_cotangents():
    """A custom_vjp returning (values, indices) checks like any other: indices take no part."""

    @jax.custom_vjp
    def top(x):
        return jnp.max(x, axis=-1), jnp.argmax(x, axis=-1).astype(jnp.int32)

    def fwd(x):
        return top(x), x

    def bwd(x, cts):
        g, _ = cts
        return (jax.nn.one_hot(jnp.argmax(x, axis=-1), x.shape[-1], dtype=x.dtype) * g[..., None],)

    top.defvjp(fwd, bwd)
    x = np.random.default_rng(0).standard_normal((4, 5))
    record = testing.check_vjp(top, (x,), reference=lambda x: (jnp.max(x, axis=-1), jnp.argmax(x, axis=-1)))
    assert record.max_reference_error < 1e-12


def test_check_adjoint_catches_a_wrong_transpose():
    a = np.random.default_rng(0).standard_normal((3, 5))
    testing.check_adjoint(lambda x: a @ x, lambda y: a.T @ y, (5,), (3,), dtype=jnp.float64)
    with pytest.raises(AssertionError, match="<f\\(x\\), y>"):
        testing.check_adjoint(lambda x: a @ x, lambda y: a[:, ::-1].T @ y, (5,), (3,), dtype=jnp.float64)


def test_tolerance_for_rejects_non_float():
    with pytest.raises(TypeError, match="tolerance_for: no tolerance for dtype=int32"):
        testing.tolerance_for(jnp.int32)


@pytest.mark.parametrize("module", [compare, adjoint, vjp], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    with jax.enable_x64(False):  # the examples show the default float32
        failures, attempted = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert attempted > 0 and failures == 0


def test_instruments_compile_without_a_compiler_option_this_xla_does_not_know(monkeypatch):
    """XLA rejects an unknown compile option (``No such compile option``); the instruments drop it instead."""
    from convgrad.testing import arrays

    monkeypatch.setitem(arrays.FAST_COMPILE_OPTIONS, "xla_cpu_no_such_option", True)
    arrays._known_fast_compile_options.cache_clear()
    try:
        known = arrays.fast_compile_options("cpu")
        assert "xla_cpu_no_such_option" not in known
        if jax.default_backend() == "cpu":  # the options were tried on the default backend
            assert known.get("xla_backend_optimization_level") == 0
        assert arrays.fast_compile_options("gpu") == {}
        assert float(arrays.instrument_jit(lambda x: 2 * x)(np.float32(1.5))) == 3.0
    finally:
        monkeypatch.undo()
        arrays._known_fast_compile_options.cache_clear()


def test_check_vjp_compiles_the_programs_under_test_with_the_options_given():
    """The options reach XLA (an unknown one is XLA's error); anything but a mapping is a TypeError."""
    args = (np.linspace(-1.0, 1.0, 5),)
    with pytest.raises(jax.errors.JaxRuntimeError, match="xla_no_such_option"):
        testing.check_vjp(jnp.sin, args, reference=jnp.sin, compiler_options={"xla_no_such_option": True})
    with pytest.raises(TypeError, match=r"check_vjp: compiler_options=\[1\]"):
        testing.check_vjp(jnp.sin, args, reference=jnp.sin, compiler_options=[1])
    fast = testing.check_vjp(jnp.sin, args, reference=jnp.sin, compiler_options=testing.fast_compile_options())
    default = testing.check_vjp(jnp.sin, args, reference=jnp.sin)
    assert fast.max_reference_error <= 4 * np.finfo(np.float64).eps
    assert default.max_reference_error <= 4 * np.finfo(np.float64).eps
