"""Facts about convgrad.dropout beyond the registry's checks: its mask, its keys, PyTorch's formula, its errors."""

from __future__ import annotations

import doctest
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff, loops, testing
from convgrad.ops import dropout as dropout_module


def test_docstring_examples():
    """The example in dropout's docstring runs and prints what it says."""
    with jax.enable_x64(False):  # the example shows the default float32
        failures, attempted = doctest.testmod(dropout_module)
    assert attempted > 0 and failures == 0


@pytest.mark.parametrize("rate", [0.1, 0.5, 0.8])
def test_each_entry_is_dropped_or_scaled_and_the_gradient_has_the_same_mask(rate):
    """y[i] is 0 or x[i] / (1 - rate); dx[i] is 0 or g[i] / (1 - rate), at exactly the same i."""
    rng = np.random.default_rng(0)
    x, g = rng.uniform(1.0, 2.0, (6, 7)), rng.uniform(1.0, 2.0, (6, 7))  # no zeros: a zero output means dropped
    y, vjp = jax.vjp(lambda x: convgrad.dropout(x, rate, jax.random.key(3)), x)
    (dx,) = vjp(g)
    kept = np.asarray(y) != 0
    assert 0 < kept.sum() < kept.size
    np.testing.assert_allclose(np.where(kept, y, x / (1 - rate)), x / (1 - rate), rtol=1e-15)
    np.testing.assert_array_equal(np.asarray(dx) != 0, kept)
    np.testing.assert_allclose(np.where(kept, dx, g / (1 - rate)), g / (1 - rate), rtol=1e-15)


def test_kept_fraction_is_one_minus_rate():
    """Over 10^5 entries the kept fraction is within 5 standard deviations of 1 - rate (a fixed key: no flakes)."""
    n, rate = 100_000, 0.3
    kept = float(np.mean(np.asarray(convgrad.dropout(jnp.ones(n), rate, jax.random.key(0))) != 0))
    assert abs(kept - (1 - rate)) < 5 * np.sqrt(rate * (1 - rate) / n)


def test_evaluation_and_rate_zero_are_the_identity_with_the_identity_gradient():
    x, g = jnp.arange(1.0, 7.0), jnp.arange(10.0, 16.0)
    for kwargs in ({"rate": 0.5, "training": False}, {"rate": 0.0}):
        y, vjp = jax.vjp(lambda x, kwargs=kwargs: convgrad.dropout(x, key=jax.random.key(0), **kwargs), x)
        np.testing.assert_array_equal(y, x)
        np.testing.assert_array_equal(vjp(g)[0], g)
    np.testing.assert_array_equal(convgrad.dropout(x, 0.5, None, training=False), x)  # no mask: no key needed


def test_typed_and_raw_keys_draw_the_same_mask():
    """jax.random.key(s) and jax.random.PRNGKey(s) are the same key: the same output, eager and under jit."""
    x = jnp.arange(1.0, 41.0)
    typed = convgrad.dropout(x, 0.5, jax.random.key(7))
    raw = convgrad.dropout(x, 0.5, jax.random.PRNGKey(7))
    np.testing.assert_array_equal(typed, raw)
    np.testing.assert_array_equal(jax.jit(lambda k: convgrad.dropout(x, 0.5, k))(jax.random.PRNGKey(7)), typed)
    assert not np.array_equal(typed, convgrad.dropout(x, 0.5, jax.random.key(8)))


def test_the_mask_does_not_depend_on_dtype_or_x64():
    """The mask is drawn from float32 uniforms whatever the input's dtype and jax_enable_x64."""
    key = jax.random.key(1)
    masks = []
    for dtype in ("float16", "bfloat16", "float32", "float64"):
        masks.append(np.asarray(convgrad.dropout(jnp.ones(50, dtype), 0.4, key)) != 0)
    with jax.enable_x64(False):
        masks.append(np.asarray(convgrad.dropout(jnp.ones(50), 0.4, key)) != 0)
    for mask in masks[1:]:
        np.testing.assert_array_equal(mask, masks[0])


def test_twin_and_loop_reference_draw_the_op_s_mask():
    """The mask is part of the definition: the twin and the loops, given the same key, give the same output."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 4, 5))
    key = jax.random.PRNGKey(11)
    y = convgrad.dropout(x, 0.25, key)
    testing.assert_close(autodiff.dropout(jnp.asarray(x), 0.25, key), np.asarray(y), what="twin")
    testing.assert_close(y, loops.dropout(x, 0.25, np.asarray(key)), what="loops")


def test_zero_size_input():
    y, vjp = jax.vjp(lambda x: convgrad.dropout(x, 0.5, jax.random.key(0)), jnp.zeros((0, 3)))
    assert y.shape == (0, 3) and vjp(jnp.zeros((0, 3)))[0].shape == (0, 3)


def test_the_backward_reuses_the_saved_mask_under_jit_and_vmap():
    """A batch of inputs under vmap, one key: each example's VJP is its forward's mask times g, scaled."""
    rng = np.random.default_rng(2)
    x, g = rng.uniform(1.0, 2.0, (3, 20)), rng.standard_normal((3, 20))
    key = jax.random.key(5)

    def vjp(x, g):
        y, pullback = jax.vjp(lambda x: convgrad.dropout(x, 0.5, key), x)
        return y, pullback(g)[0]

    y, dx = jax.jit(jax.vmap(vjp))(x, g)
    np.testing.assert_allclose(dx, np.where(np.asarray(y) != 0, 2 * g, 0.0), rtol=1e-15)


# ---------------------------------------------------------------------------- PyTorch

TORCH_CONFIGURATIONS = 40


def test_matches_pytorch_given_its_mask():
    """float64, 40 random shapes and rates: given the mask PyTorch drew, convgrad's forward and VJP are PyTorch's.

    ``torch.ops.aten.native_dropout`` returns its output and boolean mask;
    convgrad's custom VJP function takes a mask as an argument, so both are
    evaluated on the same mask: values equal ``F.dropout``'s, gradients equal
    autograd's through ``F.dropout`` (the same kernel).
    """
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for trial in range(TORCH_CONFIGURATIONS):
        shape = tuple(int(s) for s in rng.integers(1, 6, rng.integers(1, 5)))
        rate = float(rng.choice([0.1, 0.25, 0.5, 0.75, 0.9]))
        x, g = rng.standard_normal(shape), rng.standard_normal(shape)
        torch.manual_seed(trial)
        xt = torch.tensor(x, requires_grad=True)
        yt, mask = torch.ops.aten.native_dropout(xt, rate, True)
        yt.backward(torch.tensor(g))
        keep = jnp.asarray(mask.numpy())
        y, vjp = jax.vjp(partial(dropout_module._dropout, rate, keep=keep), jnp.asarray(x))
        testing.assert_close(y, yt.detach().numpy(), what=f"{shape}, rate {rate}: values")
        testing.assert_close(vjp(jnp.asarray(g))[0], xt.grad.numpy(), what=f"{shape}, rate {rate}: gradients")
        assert mask.dtype == torch.bool


# ---------------------------------------------------------------------------- errors

KEY = jax.random.key(0)


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((jnp.ones(3), 1.0, KEY), {}, ValueError, r"rate must be in \[0, 1\), got rate=1.0"),
        ((jnp.ones(3), -0.1, KEY), {}, ValueError, r"rate must be in \[0, 1\), got rate=-0.1"),
        ((jnp.ones(3), float("nan"), KEY), {}, ValueError, r"rate must be in \[0, 1\), got rate=nan"),
        ((jnp.ones(3), "0.5", KEY), {}, TypeError, r"rate must be a Python float .* got rate='0.5'"),
        ((jnp.ones(3), True, KEY), {}, TypeError, r"rate must be a Python float .* got rate=True"),
        ((jnp.ones(3), 0.5, KEY), {"training": 1}, TypeError, r"training must be a bool, got training=1"),
        ((jnp.ones(3), 0.5, None), {}, TypeError, r"key must be a JAX PRNG key.* got NoneType"),
        ((jnp.ones(3), 0.5, 3), {}, TypeError, r"key must be a JAX PRNG key.* got int"),
        ((jnp.ones(3), 0.5, jnp.ones(2)), {}, TypeError, r"key must be a JAX PRNG key.* got key.dtype=float"),
        ((jnp.ones(3), 0.5, jnp.zeros(3, jnp.uint32)), {}, ValueError, r"key.shape=\(3,\)"),
        ((jnp.ones(3), 0.5, jax.random.split(KEY, 2)), {}, ValueError, r"single PRNG key of shape \(\), got key.shape"),
        ((jnp.ones((2, 2), jnp.uint32), 0.5, KEY), {}, TypeError, r"x must have a real floating dtype"),
    ],
)
def test_bad_input_raises_a_clear_error(args, kwargs, error, message):
    with jax.enable_x64(False), pytest.raises(error, match=r"^dropout: .*" + message):
        convgrad.dropout(*args, **kwargs)


def test_a_traced_rate_is_refused():
    with pytest.raises(TypeError, match=r"^dropout: rate must be a Python float in \[0, 1\) \(static, not traced\)"):
        jax.jit(lambda rate: convgrad.dropout(jnp.ones(3), rate, KEY))(0.5)
