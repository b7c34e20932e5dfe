"""Facts about the normalization layers beyond the registry's checks.

Hand-worked examples, the buffers' zero gradients, batch norm's affinity in evaluation,
zero-size inputs, float32 accumulation, ``shard_map``, every error message, and values,
running statistics and gradients equal to PyTorch's in float64 (when torch is
importable) on the registry's cases and on hypothesis-drawn ones. (The docstring
examples run in ``tests/test_docs.py``.)
"""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jax.sharding import Mesh, PartitionSpec

import convgrad
from convgrad import autodiff, testing
from convgrad.ops import normalization
from convgrad.registry import OPS
from convgrad.testing.strategies import HypothesisDraw
from convgrad.verify import verify_case

F64 = testing.TOLERANCES["float64"]

# ---------------------------------------------------------------------------- hand-worked examples


def test_batch_norm_training_by_hand():
    """N=2, C=1: mean 2, biased variance 1, eps=3 gives sigma 2; the three-term dx; unbiased var 2 in the buffer."""
    x, scale, offset = jnp.array([[1.0], [3.0]]), jnp.array([2.0]), jnp.array([1.0])
    running_mean, running_var = jnp.array([0.0]), jnp.array([1.0])
    (y, new_mean, new_var), vjp = jax.vjp(
        lambda *a: convgrad.batch_norm(*a, training=True, eps=3.0), x, scale, offset, running_mean, running_var
    )
    # x_hat = (x - 2) / 2 = [-0.5, 0.5]; y = 2 x_hat + 1
    np.testing.assert_array_equal(y, [[0.0], [2.0]])
    # (1 - 0.1) 0 + 0.1 * 2 and (1 - 0.1) 1 + 0.1 * (sum (x - 2)^2 / (2 - 1) = 2)
    np.testing.assert_allclose(new_mean, [0.2], rtol=1e-15)
    np.testing.assert_allclose(new_var, [1.1], rtol=1e-15)
    dx, dscale, doffset, d_mean, d_var = vjp((jnp.array([[1.0], [0.0]]), jnp.ones(1), jnp.ones(1)))
    # mean(g) = 0.5, mean(g x_hat) = -0.25: (2 / 2) ([1, 0] - 0.5 - [-0.5, 0.5] (-0.25)) = [0.375, -0.375]
    np.testing.assert_array_equal(dx, [[0.375], [-0.375]])
    np.testing.assert_array_equal(dscale, [-0.5])  # sum g x_hat
    np.testing.assert_array_equal(doffset, [1.0])  # sum g
    # the buffers' own cotangents (ones) were ignored: no gradient flows through their update
    np.testing.assert_array_equal(d_mean, [0.0])
    np.testing.assert_array_equal(d_var, [0.0])


def test_batch_norm_evaluation_by_hand():
    """The running statistics normalize (mean 1, var 1, eps=3: sigma 2) and come back as given; dx = g scale / sigma."""
    x, scale, offset = jnp.array([[1.0], [3.0]]), jnp.array([2.0]), jnp.array([1.0])
    running_mean, running_var = jnp.array([1.0]), jnp.array([1.0])
    (y, mean, var), vjp = jax.vjp(
        lambda *a: convgrad.batch_norm(*a, training=False, eps=3.0), x, scale, offset, running_mean, running_var
    )
    np.testing.assert_array_equal(y, [[1.0], [3.0]])  # 2 (x - 1) / 2 + 1
    np.testing.assert_array_equal(mean, running_mean)
    np.testing.assert_array_equal(var, running_var)
    dx, dscale, doffset, d_mean, d_var = vjp((jnp.array([[1.0], [2.0]]), jnp.ones(1), jnp.ones(1)))
    np.testing.assert_array_equal(dx, [[1.0], [2.0]])  # g * 2 / 2
    np.testing.assert_array_equal(dscale, [2.0])  # 1 * 0 + 2 * 1
    np.testing.assert_array_equal(doffset, [3.0])
    np.testing.assert_array_equal(d_mean, [0.0])
    np.testing.assert_array_equal(d_var, [0.0])


def test_layer_norm_by_hand_with_a_scale_that_varies_inside_the_group():
    """Row [1, 3], eps=3: x_hat = [-0.5, 0.5]; scale [2, 0] enters the three-term form as g_hat = g scale."""
    x, scale, offset = jnp.array([[1.0, 3.0]]), jnp.array([2.0, 0.0]), jnp.array([1.0, 5.0])
    y, vjp = jax.vjp(lambda *a: convgrad.layer_norm(a[0], 2, a[1], a[2], eps=3.0), x, scale, offset)
    np.testing.assert_array_equal(y, [[0.0, 5.0]])
    dx, dscale, doffset = vjp(jnp.array([[1.0, 0.0]]))
    # g_hat = [2, 0]: mean 1, mean(g_hat x_hat) = -0.5; (1 / 2) ([1, -1] - [-0.5, 0.5] (-0.5)) = [0.375, -0.375]
    np.testing.assert_array_equal(dx, [[0.375, -0.375]])
    np.testing.assert_array_equal(dscale, [-0.5, 0.0])
    np.testing.assert_array_equal(doffset, [1.0, 0.0])


def test_group_norm_and_instance_norm_by_hand():
    """Groups [1, 3] and [5, 7] each normalize to [-0.5, 0.5] with eps=3; instance norm per (n, c)."""
    np.testing.assert_array_equal(
        convgrad.group_norm(jnp.array([[1.0, 3.0, 5.0, 7.0]]), 2, eps=3.0), [[-0.5, 0.5, -0.5, 0.5]]
    )
    x = jnp.array([[[1.0, 3.0], [0.0, -2.0]]])
    np.testing.assert_array_equal(
        convgrad.instance_norm(x, jnp.array([1.0, 4.0]), jnp.array([0.0, 1.0]), eps=3.0), [[[-0.5, 0.5], [3.0, -1.0]]]
    )


def test_group_norm_with_one_group_per_channel_is_instance_norm_and_with_one_group_is_layer_norm():
    rng = np.random.default_rng(0)
    x, scale, offset = rng.standard_normal((2, 4, 3)), rng.standard_normal(4), rng.standard_normal(4)
    g = rng.standard_normal(x.shape)
    group_c, vjp_c = jax.vjp(lambda *a: convgrad.group_norm(a[0], 4, a[1], a[2]), x, scale, offset)
    instance, vjp_i = jax.vjp(convgrad.instance_norm, x, scale, offset)
    np.testing.assert_allclose(group_c, instance, rtol=1e-14, atol=1e-14)
    for a, b in zip(vjp_c(g), vjp_i(g)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-14)
    # one group: layer norm over (C, L) followed by a per-channel affine map
    layer = convgrad.layer_norm(x, (4, 3)) * scale[:, None] + offset[:, None]
    np.testing.assert_allclose(convgrad.group_norm(x, 1, scale, offset), layer, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("name", ["batch_norm", "layer_norm", "group_norm", "instance_norm"])
def test_input_gradient_sums_to_zero_over_every_group(name):
    """``y`` does not change when a constant is added to a group, so ``dx`` sums to 0 over each group."""
    rng = np.random.default_rng(1)
    x, g = rng.standard_normal((3, 4, 5)), rng.standard_normal((3, 4, 5))
    scale = rng.standard_normal(4)
    ops = {
        "batch_norm": (lambda x: convgrad.batch_norm(x, scale, None, None, None, training=True)[0], (0, 2)),
        "layer_norm": (lambda x: convgrad.layer_norm(x, (4, 5), scale[:, None] * np.ones(5)), (1, 2)),
        "group_norm": (lambda x: convgrad.group_norm(x, 2, scale), None),
        "instance_norm": (lambda x: convgrad.instance_norm(x, scale), (2,)),
    }
    fn, axes = ops[name]
    (dx,) = jax.vjp(fn, x)[1](g)
    if axes is None:  # group_norm: groups of 2 channels
        sums = np.asarray(dx).reshape(3, 2, 2, 5).sum(axis=(2, 3))
    else:
        sums = np.asarray(dx).sum(axis=axes)
    np.testing.assert_allclose(sums, 0.0, atol=1e-13)
    assert np.max(np.abs(dx)) > 0.1


# ---------------------------------------------------------------------------- the running statistics are buffers


@pytest.mark.parametrize("training", [True, False])
def test_running_statistics_get_zero_cotangents_from_the_op_and_its_twin(training):
    rng = np.random.default_rng(2)
    args = (rng.standard_normal((4, 3, 2)), rng.standard_normal(3), rng.standard_normal(3))
    buffers = (rng.standard_normal(3), rng.uniform(0.5, 2.0, 3))
    cotangents = (rng.standard_normal((4, 3, 2)), rng.standard_normal(3), rng.standard_normal(3))
    for op in (convgrad.batch_norm, autodiff.batch_norm):
        _, vjp = jax.vjp(lambda *a, op=op: op(*a, training=training), *args, *buffers)
        grads = vjp(cotangents)
        np.testing.assert_array_equal(grads[3], np.zeros(3))
        np.testing.assert_array_equal(grads[4], np.zeros(3))
        assert np.max(np.abs(grads[0])) > 0.1


def test_no_gradient_flows_through_the_running_statistics_update():
    """A loss of the updated running statistics has zero gradient with respect to ``x``, as in PyTorch."""
    x = np.random.default_rng(3).standard_normal((5, 2))
    loss = lambda x: jnp.sum(convgrad.batch_norm(x, None, None, jnp.zeros(2), jnp.ones(2), training=True)[2])
    np.testing.assert_array_equal(jax.grad(loss)(x), np.zeros((5, 2)))


def test_batch_norm_in_evaluation_is_affine_in_x():
    """The adjoint identity ``<A u, c> = <u, A^T c>`` for ``A u = f(u) - f(0)``: the VJP transposes the linear part."""
    rng = np.random.default_rng(4)
    scale, offset, mean, var = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal(3), np.full(3, 0.7)
    f = lambda x: convgrad.batch_norm(x, scale, offset, mean, var, training=False, channel_axis=-1)[0]
    shape = (2, 4, 3)
    linear = lambda u: f(u) - f(jnp.zeros(shape))
    transpose = lambda c: jax.vjp(f, jnp.zeros(shape))[1](c)[0]
    check = testing.check_adjoint(linear, transpose, shape, shape, dtype=jnp.float64)
    assert check.error <= F64.rtol


def test_batch_norm_in_training_is_not_affine_in_x():
    """The adjoint identity fails in training (the statistics move with x): the check above can fail."""
    scale = np.ones(3)
    f = lambda x: convgrad.batch_norm(x, scale, None, None, None, training=True)[0]
    shape = (4, 3)
    x0 = jnp.asarray(np.random.default_rng(5).standard_normal(shape))
    with pytest.raises(AssertionError, match="check_adjoint"):
        testing.check_adjoint(
            lambda u: f(u) - f(x0), lambda c: jax.vjp(f, x0)[1](c)[0], shape, shape, dtype=jnp.float64
        )


def test_every_check_catches_a_dropped_third_term(mutate):
    """Without ``- x_hat mean(g_hat x_hat)`` the input gradient is wrong by O(1): the registry's checks fail."""

    def two_terms(g, x_hat, inv_sigma, scale, geometry):
        g_hat = normalization.scaled_cotangent(g, scale, geometry)
        dx = inv_sigma * (g_hat - jnp.mean(g_hat, axis=geometry.axes, keepdims=True))
        return dx.reshape(geometry.shape).astype(g.dtype)

    mutate(normalization, "batch_statistics_input_grad", two_terms)
    for name in ("batch_norm", "layer_norm", "group_norm", "instance_norm"):
        result = verify_case(OPS[name], OPS[name].cases[0], "float64", transforms=False)
        assert not result.passed and "argument 0 (x)" in result.failure, (name, result.failure)


def test_evaluation_accepts_eps_zero_as_pytorch_does():
    """Only training needs ``eps > 0`` (a constant channel has variance 0); evaluation divides by the running var."""
    y, _, _ = convgrad.batch_norm(
        jnp.array([[1.0], [3.0]]), None, None, jnp.ones(1), jnp.full(1, 4.0), training=False, eps=0
    )
    np.testing.assert_array_equal(y, [[0.0], [1.0]])


# ---------------------------------------------------------------------------- zero-size inputs


@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (2, 3, 0)])
def test_batch_norm_on_an_empty_batch_leaves_the_running_statistics_unchanged(shape):
    """As PyTorch: an empty ``y`` and empty ``dx``; zero ``dscale``/``doffset``; the running statistics as given."""
    x = jnp.zeros(shape)
    mean, var = jnp.array([0.5, -1.0, 2.0]), jnp.array([1.0, 2.0, 3.0])
    scale, offset = jnp.ones(3), jnp.ones(3)
    (y, new_mean, new_var), vjp = jax.vjp(
        lambda *a: convgrad.batch_norm(*a, training=True), x, scale, offset, mean, var
    )
    assert y.shape == shape
    np.testing.assert_array_equal(new_mean, mean)
    np.testing.assert_array_equal(new_var, var)
    dx, dscale, doffset, _, _ = vjp((jnp.zeros(shape), jnp.ones(3), jnp.ones(3)))
    assert dx.shape == shape
    np.testing.assert_array_equal(dscale, np.zeros(3))
    np.testing.assert_array_equal(doffset, np.zeros(3))


@pytest.mark.parametrize(
    "fn, shape",
    [
        (lambda x, s, b: convgrad.batch_norm(x, s, b, jnp.zeros(3), jnp.ones(3), training=False)[0], (0, 3, 2)),
        (lambda x, s, b: convgrad.layer_norm(x, 3, s, b), (0, 3)),
        (lambda x, s, b: convgrad.group_norm(x, 3, s, b), (0, 3, 2)),
        (lambda x, s, b: convgrad.group_norm(x, 1, s, b), (2, 3, 0)),
        (lambda x, s, b: convgrad.instance_norm(x, s, b), (2, 3, 0)),
        (lambda x, s, b: convgrad.instance_norm(x, s, b, channel_axis=-1), (0, 4, 3)),
    ],
)
def test_zero_size_inputs_give_zero_size_results_and_gradients(fn, shape):
    x, scale, offset = jnp.zeros(shape), jnp.ones(3), jnp.ones(3)
    y, vjp = jax.vjp(fn, x, scale, offset)
    assert y.shape == shape
    dx, dscale, doffset = vjp(jnp.zeros(shape))
    assert dx.shape == shape
    np.testing.assert_array_equal(dscale, np.zeros(3))
    np.testing.assert_array_equal(doffset, np.zeros(3))


def test_zero_channels_give_empty_results():
    x = jnp.zeros((4, 0))
    y, mean, var = convgrad.batch_norm(x, None, None, jnp.zeros(0), jnp.ones(0), training=True)
    assert y.shape == (4, 0) and mean.shape == (0,) and var.shape == (0,)
    assert convgrad.layer_norm(x, 0).shape == (4, 0)
    assert convgrad.group_norm(x, 1).shape == (4, 0)


# ---------------------------------------------------------------------------- precision, dtypes, transforms


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_16_bit_statistics_accumulate_in_float32(dtype):
    """512 values near 300 sum to ~1.5e5, beyond float16's 65504: a 16-bit sum would overflow or round coarsely."""
    rng = np.random.default_rng(6)
    x = (300.0 + rng.standard_normal((1, 512))).astype(dtype)
    x64 = np.asarray(x, np.float64)
    expected = (x64 - x64.mean()) / np.sqrt(x64.var() + 1e-5)
    y, vjp = jax.vjp(lambda x: convgrad.layer_norm(x, 512), x)
    assert y.dtype == dtype
    testing.assert_close(y, expected, what=f"layer_norm in {jnp.dtype(dtype).name}")
    assert vjp(jnp.ones_like(y))[0].dtype == dtype


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
def test_outputs_and_gradients_keep_their_dtypes(dtype):
    x, c = jnp.arange(8, dtype=dtype).reshape(2, 2, 2), jnp.ones(2, dtype)
    outputs, vjp = jax.vjp(lambda *a: convgrad.batch_norm(*a, training=True), x, c, c, c, c)
    assert [o.dtype for o in outputs] == [dtype] * 3
    assert [g.dtype for g in vjp(tuple(jnp.ones_like(o) for o in outputs))] == [dtype] * 5


def test_batch_norm_under_jit_with_the_mode_closed_over():
    rng = np.random.default_rng(7)
    args = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal(3), np.zeros(3), np.ones(3)
    for training in (True, False):
        eager = convgrad.batch_norm(*args, training=training)
        jitted = jax.jit(lambda *a, training=training: convgrad.batch_norm(*a, training=training))(*args)
        for e, j in zip(eager, jitted):
            np.testing.assert_allclose(j, e, rtol=1e-14)


SHARD_MAP_OPS = {
    "batch_norm": lambda x, s, b: convgrad.batch_norm(
        x, s, b, jnp.zeros(3), jnp.ones(3), training=True, channel_axis=-1
    )[0],
    "batch_norm_evaluation": lambda x, s, b: convgrad.batch_norm(
        x, s, b, jnp.zeros(3), jnp.ones(3), training=False, channel_axis=-1
    )[0],
    "layer_norm": lambda x, s, b: convgrad.layer_norm(x, 3, s, b, eps=1e-3),
    "group_norm": lambda x, s, b: convgrad.group_norm(x, 3, s, b, channel_axis=-1),
    "instance_norm": lambda x, s, b: convgrad.instance_norm(x, s, b, channel_axis=-1),
}


@pytest.mark.parametrize("name", list(SHARD_MAP_OPS))
def test_under_shard_map_the_replicated_parameters_get_their_summed_gradient(name):
    """``x`` split over ``data``, ``scale``/``offset`` replicated, ``check_vma`` on: the gradients of one device.

    A backward that did not sum the replicated operands' cotangents (``like_primal``)
    would be refused by JAX's type check, on any number of devices.
    """
    op = SHARD_MAP_OPS[name]
    rng = np.random.default_rng(8)
    x, scale, offset = rng.standard_normal((4, 2, 3)), rng.standard_normal(3), rng.standard_normal(3)
    mesh = Mesh(np.array(jax.devices()[:1]), ("data",))
    loss = lambda x, s, b: jnp.sum(jnp.sin(op(x, s, b)))
    mapped = jax.shard_map(
        lambda x, s, b: jax.lax.psum(loss(x, s, b), "data"),
        mesh=mesh,
        in_specs=(PartitionSpec("data"), PartitionSpec(), PartitionSpec()),
        out_specs=PartitionSpec(),
    )
    sharded = jax.jit(jax.grad(mapped, argnums=(0, 1, 2)))(x, scale, offset)
    plain = jax.grad(loss, argnums=(0, 1, 2))(x, scale, offset)
    for s, p in zip(sharded, plain):
        np.testing.assert_allclose(s, p, rtol=1e-13, atol=1e-14)


# ---------------------------------------------------------------------------- errors


def _bn(**overrides):
    arguments = dict(
        x=jnp.ones((4, 3)),
        scale=jnp.ones(3),
        offset=jnp.ones(3),
        running_mean=jnp.zeros(3),
        running_var=jnp.ones(3),
        training=True,
    )
    arguments.update(overrides)
    x, s, b, m, v = (arguments.pop(k) for k in ("x", "scale", "offset", "running_mean", "running_var"))
    return lambda: convgrad.batch_norm(x, s, b, m, v, **arguments)


ERRORS = [
    # batch_norm
    (_bn(training=1), TypeError, "batch_norm: training must be a bool (True or False), got training=1"),
    (_bn(training=jnp.array(True)), TypeError, "batch_norm: training must be a bool"),
    (_bn(momentum=1.5), ValueError, "batch_norm: momentum must be in [0, 1], got momentum=1.5"),
    (_bn(momentum=-0.1), ValueError, "batch_norm: momentum must be in [0, 1], got momentum=-0.1"),
    (_bn(momentum=float("nan")), ValueError, "batch_norm: momentum must be in [0, 1], got momentum=nan"),
    (_bn(momentum="0.1"), TypeError, "batch_norm: momentum must be a real number, got momentum='0.1'"),
    (_bn(momentum=True), TypeError, "batch_norm: momentum must be a real number, got momentum=True"),
    (_bn(eps=0.0), ValueError, "batch_norm: eps must be in (0, inf), got eps=0.0"),
    (_bn(eps=float("inf")), ValueError, "batch_norm: eps must be in (0, inf), got eps=inf"),
    (_bn(eps=-1e-5, training=False), ValueError, "batch_norm: eps must be in [0, inf), got eps=-1e-05"),
    (_bn(eps=None), TypeError, "batch_norm: eps must be a real number, got eps=None"),
    (_bn(x=jnp.ones(3)), ValueError, "batch_norm: x must be at least 2-d (N, C, *spatial), got x.shape=(3,)"),
    (_bn(x=jnp.ones((4, 3), jnp.int32)), TypeError, "batch_norm: x must have a real floating dtype"),
    (_bn(x="x"), TypeError, "batch_norm: x must be an array, got str"),
    (_bn(channel_axis=0), ValueError, "batch_norm: channel_axis=0 must be an axis of x other than the batch axis 0"),
    (_bn(channel_axis=2), ValueError, "batch_norm: channel_axis=2 must be an axis of x other than the batch axis 0: "),
    (_bn(channel_axis=-2), ValueError, r"batch_norm: channel_axis=-2 must be an axis .* for x.shape=\(4, 3\)"),
    (_bn(channel_axis=1.0), TypeError, "batch_norm: channel_axis must be an int, got channel_axis=1.0"),
    (_bn(channel_axis=True), TypeError, "batch_norm: channel_axis must be an int, got channel_axis=True"),
    (_bn(scale=jnp.ones(4)), ValueError, r"batch_norm: scale must have shape \(C,\) with C=x.shape\[1\], i.e. \(3,\)"),
    (_bn(offset=jnp.ones((3, 1))), ValueError, r"batch_norm: offset must have shape .* got offset.shape=\(3, 1\)"),
    (_bn(running_mean=jnp.zeros(2)), ValueError, r"batch_norm: running_mean must have shape .* \(3,\), got"),
    (_bn(running_var=jnp.ones(4)), ValueError, r"batch_norm: running_var must have shape .* got running_var.shape"),
    (
        _bn(scale=jnp.ones(3, jnp.float32), x=jnp.ones((4, 3), jnp.float64)),
        TypeError,
        "batch_norm: arguments must share one dtype",
    ),
    (_bn(running_var=None), ValueError, "batch_norm: running_mean and running_var must be given together"),
    (
        _bn(running_mean=None, running_var=None, training=False),
        ValueError,
        "batch_norm: training=False normalizes with the running statistics, so running_mean and running_var",
    ),
    (
        _bn(x=jnp.ones((1, 3))),
        ValueError,
        r"batch_norm: training needs more than 1 value per channel .* x.shape=\(1, 3\) with channel_axis=1$",
    ),
    (
        _bn(x=jnp.ones((1, 1, 3)), channel_axis=-1),
        ValueError,
        r"batch_norm: training needs more than 1 value per channel .* x.shape=\(1, 1, 3\) with channel_axis=-1",
    ),
    # layer_norm
    (lambda: convgrad.layer_norm(jnp.ones((2, 3)), 4), ValueError, "layer_norm: normalized_shape=4 does not match"),
    (
        lambda: convgrad.layer_norm(jnp.ones((2, 3)), (2, 3, 1)),
        ValueError,
        r"layer_norm: normalized_shape=\(2, 3, 1\) does not match the trailing axes of x.shape=\(2, 3\)",
    ),
    (lambda: convgrad.layer_norm(jnp.ones((2, 3)), ()), ValueError, "layer_norm: normalized_shape must hold at least"),
    (
        lambda: convgrad.layer_norm(jnp.ones((2, 3)), (-3,)),
        ValueError,
        r"layer_norm: normalized_shape must .* each >= 0, got normalized_shape=\(-3,\)",
    ),
    (lambda: convgrad.layer_norm(jnp.ones((2, 3)), 3.0), TypeError, "layer_norm: normalized_shape must be an int or"),
    (
        lambda: convgrad.layer_norm(jnp.ones((2, 3)), (True,)),
        TypeError,
        "layer_norm: normalized_shape must be an int or",
    ),
    (lambda: convgrad.layer_norm(jnp.ones((2, 3)), "3"), TypeError, "layer_norm: normalized_shape must be an int"),
    (
        lambda: convgrad.layer_norm(jnp.ones((2, 3)), 3, jnp.ones(2)),
        ValueError,
        r"layer_norm: scale must have shape normalized_shape=\(3,\), i.e. \(3,\), got scale.shape=\(2,\)",
    ),
    (lambda: convgrad.layer_norm(jnp.ones((2, 3)), 3, None, jnp.ones((1, 3))), ValueError, "layer_norm: offset must"),
    (
        lambda: convgrad.layer_norm(jnp.ones((2, 3)), 3, eps=0),
        ValueError,
        r"layer_norm: eps must be in \(0, inf\), got eps=0$",
    ),
    (lambda: convgrad.layer_norm(jnp.ones(3, jnp.int32), 3), TypeError, "layer_norm: x must have a real floating"),
    (lambda: convgrad.layer_norm(jnp.ones(3), 3, [1, 2, 3]), TypeError, "layer_norm: scale must have a real float"),
    # group_norm
    (
        lambda: convgrad.group_norm(jnp.ones((2, 4, 5)), 3),
        ValueError,
        r"group_norm: num_groups=3 does not divide the channels C=4 \(x.shape=\(2, 4, 5\), channel_axis=1\)",
    ),
    (lambda: convgrad.group_norm(jnp.ones((2, 4)), 0), ValueError, "group_norm: num_groups must be positive, got"),
    (lambda: convgrad.group_norm(jnp.ones((2, 4)), 2.0), TypeError, "group_norm: num_groups must be an int, got"),
    (lambda: convgrad.group_norm(jnp.ones(4), 2), ValueError, "group_norm: x must be at least 2-d"),
    (
        lambda: convgrad.group_norm(jnp.ones((2, 4)), 2, jnp.ones(2)),
        ValueError,
        r"group_norm: scale must have shape \(C,\) with C=x.shape\[1\], i.e. \(4,\), got scale.shape=\(2,\)",
    ),
    (lambda: convgrad.group_norm(jnp.ones((2, 4)), 2, eps=-1.0), ValueError, "group_norm: eps must be in"),
    (lambda: convgrad.group_norm(jnp.ones((2, 4)), 2, channel_axis=0), ValueError, "group_norm: channel_axis=0"),
    # instance_norm
    (lambda: convgrad.instance_norm(jnp.ones((2, 3))), ValueError, "instance_norm: x must be at least 3-d"),
    (
        lambda: convgrad.instance_norm(jnp.ones((2, 3, 1, 1))),
        ValueError,
        r"instance_norm: needs more than 1 spatial element per channel .* x.shape=\(2, 3, 1, 1\)",
    ),
    (lambda: convgrad.instance_norm(jnp.ones((2, 3, 4)), jnp.ones(4)), ValueError, "instance_norm: scale must have"),
    (
        lambda: convgrad.instance_norm(jnp.ones((2, 3, 4)), None, jnp.ones(3), channel_axis=-1),
        ValueError,
        r"instance_norm: offset must have shape \(C,\) with C=x.shape\[2\], i.e. \(4,\)",
    ),
    (lambda: convgrad.instance_norm(jnp.ones((2, 3, 4)), eps="1"), TypeError, "instance_norm: eps must be a real"),
    (lambda: convgrad.instance_norm(jnp.ones((2, 3, 4)), channel_axis=3), ValueError, "instance_norm: channel_axis=3"),
]


@pytest.mark.parametrize(("call", "error", "message"), ERRORS, ids=[m[:60] for _, _, m in ERRORS])
def test_bad_arguments_raise_clear_errors(call, error, message):
    with pytest.raises(error, match="^" + (message if "\\" in message or ".*" in message else re.escape(message))):
        call()


# ---------------------------------------------------------------------------- against PyTorch, float64


def _torch_layout(a: np.ndarray, axis: int) -> np.ndarray:
    """Channel axis moved to 1, where PyTorch's batch, group and instance norms read it; C-contiguous.

    Contiguous because ``torch.tensor`` keeps a NumPy view's strides, and PyTorch 2.13's
    ``F.instance_norm`` backward returns wrong ``dx``, ``dweight`` and ``dbias`` (not
    merely rounded: ``dbias`` is not the sum of the cotangent) for some strided
    cotangents, e.g. ``np.moveaxis(g, 3, 1)`` of shape ``(1, 2, 1, 2)``, strides
    ``(4, 1, 2, 2)`` in elements. A contiguous copy of the same values gives the right ones.
    """
    return np.ascontiguousarray(np.moveaxis(a, axis, 1))


def torch_reference(name: str, arrays, options, g):
    """PyTorch's values, running statistics and gradients for one registry case (arrays in the case's layout)."""
    torch = pytest.importorskip("torch")
    functional = torch.nn.functional
    x, scale, offset, *buffers = arrays
    axis = options.get("channel_axis", 1) % x.ndim

    def leaf(a):
        return None if a is None else torch.tensor(np.asarray(a, np.float64), requires_grad=True)

    tensors = {"scale": leaf(scale), "offset": leaf(offset)}
    if name == "layer_norm":
        tensors["x"] = leaf(x)
        y = functional.layer_norm(
            tensors["x"], options["normalized_shape"], tensors["scale"], tensors["offset"], eps=options.get("eps", 1e-5)
        )
        y.backward(torch.tensor(g))
        results = {"y": y.detach().numpy()}
    else:
        tensors["x"] = leaf(_torch_layout(np.asarray(x), axis))
        kwargs = {"weight": tensors["scale"], "bias": tensors["offset"], "eps": options.get("eps", 1e-5)}
        if name == "batch_norm":
            mean, var = (None if b is None else torch.tensor(np.array(b, np.float64)) for b in buffers)
            y = functional.batch_norm(
                tensors["x"], mean, var, training=options["training"], momentum=options.get("momentum", 0.1), **kwargs
            )
        elif name == "group_norm":
            if scale is None and offset is not None:
                # PyTorch 2.13's group_norm backward fails with weight=None and a bias ("tensor does not have a
                # device"); a weight of ones that takes no gradient is the same function
                kwargs["weight"] = torch.ones(x.shape[axis], dtype=torch.float64)
            y = functional.group_norm(tensors["x"], options["num_groups"], **kwargs)
        else:
            y = functional.instance_norm(tensors["x"], **kwargs)
        y.backward(torch.tensor(_torch_layout(np.asarray(g), axis)))
        results = {"y": np.moveaxis(y.detach().numpy(), 1, axis)}
        if name == "batch_norm" and mean is not None:
            results["running_mean"], results["running_var"] = mean.numpy(), var.numpy()
    for key in ("x", "scale", "offset"):
        if tensors[key] is not None:
            grad = tensors[key].grad.numpy()
            results[f"d{key}"] = np.moveaxis(grad, 1, axis) if key == "x" and name != "layer_norm" else grad
    return results


def convgrad_results(name: str, arrays, options, g):
    """convgrad's values, running statistics and gradients (float64) for one registry case."""
    spec = OPS[name]
    x, scale, offset, *buffers = (None if a is None else jnp.asarray(a) for a in arrays)
    out, vjp = jax.vjp(lambda *d: spec.fn(*d, *buffers, **options), x, scale, offset)
    results = {"y": np.asarray(out[0] if name == "batch_norm" else out)}
    if name == "batch_norm":
        if out[1] is not None:
            results["running_mean"], results["running_var"] = np.asarray(out[1]), np.asarray(out[2])
        cotangent = (jnp.asarray(g), *(None if o is None else jnp.zeros_like(o) for o in out[1:]))
    else:
        cotangent = jnp.asarray(g)
    for key, grad in zip(("dx", "dscale", "doffset"), vjp(cotangent)):
        if grad is not None:
            results[key] = np.asarray(grad)
    return results


def torch_refuses(name: str, shape, options) -> bool:
    """PyTorch's ``F.group_norm`` raises when ``N (C/G) prod(spatial) = 1``: convgrad's documented difference."""
    if name != "group_norm":
        return False
    axis = options.get("channel_axis", 1) % len(shape)
    spatial = math.prod(s for d, s in enumerate(shape) if d not in (0, axis))
    return shape[0] * shape[axis] // options["num_groups"] * spatial == 1


def torch_fails_on_empty(name: str, arrays, options) -> bool:
    """Where PyTorch 2.13 fails on a zero-size ``x`` that convgrad takes as lax does (tests/test_zero_size.py).

    ``F.batch_norm`` with no channels, and ``F.instance_norm`` with an empty batch or no channels,
    raise ``IndexError`` when given a weight or a bias; ``F.group_norm``'s weight gradient over no
    spatial samples is NaN where the sum over no terms is 0.
    """
    x, scale, offset = arrays[:3]
    if x.size != 0 or (scale is None and offset is None):
        return False
    axis = options.get("channel_axis", 1) % x.ndim
    spatial = math.prod(s for d, s in enumerate(x.shape) if d not in (0, axis))
    if name == "batch_norm":
        return x.shape[axis] == 0
    if name == "instance_norm":
        return x.shape[0] == 0 or x.shape[axis] == 0
    if name == "group_norm":
        return spatial == 0 and x.shape[0] * x.shape[axis] > 0 and scale is not None
    return False


def empty_results(name: str, arrays, options) -> dict[str, np.ndarray]:
    """A zero-size ``x``'s results by hand: an empty ``y`` and ``dx``, zero ``dscale`` and ``doffset`` (sums over no
    terms), and the running statistics as given (PyTorch's: a mean over no values does not update them)."""
    x, scale, offset, *buffers = arrays
    expected = {"y": np.zeros(x.shape), "dx": np.zeros(x.shape)}
    if name == "batch_norm" and buffers[0] is not None:
        expected["running_mean"], expected["running_var"] = np.asarray(buffers[0]), np.asarray(buffers[1])
    if scale is not None:
        expected["dscale"] = np.zeros(np.shape(scale))
    if offset is not None:
        expected["doffset"] = np.zeros(np.shape(offset))
    return expected


def one_element_groups(name: str, case) -> bool:
    """Whether each normalization group of the case holds one element (``x_hat = 0``: ``y = offset``, ``dx = 0``)."""
    shape, options = case.shapes[0], case.options
    if name == "layer_norm":
        return math.prod(options["normalized_shape"]) == 1
    if name == "group_norm":
        axis = options.get("channel_axis", 1) % len(shape)
        spatial = math.prod(s for d, s in enumerate(shape) if d not in (0, axis))
        return shape[axis] // options["num_groups"] * spatial == 1
    return False  # batch norm trains on two or more; instance norm refuses one


def reference_atol(name: str, case, arrays, g) -> float | None:
    """The absolute error of PyTorch's own float64 result where every exact value is 0 (``None``: the dtype's).

    PyTorch computes ``y = x (rstd w) + (b - mean rstd w)``, so its ``x_hat`` of a
    one-element group is not exactly 0 but a rounding ``~ eps |x| rstd``, with ``rstd``
    up to ``1 / sqrt(eps)`` (316 for 1e-5): ~1e-13, above the float64 ``atol``,
    and ``dscale`` sums such terms times ``g``. convgrad's ``x - mean`` is exactly 0
    there. With no value of order 1 to be relative to, the comparison allows that
    rounding (summed over every element) and no more; any other case uses the table.
    """
    if not one_element_groups(name, case):
        return None
    x, scale = np.asarray(arrays[0]), arrays[1]
    w = 1.0 if scale is None else max(1.0, float(np.max(np.abs(scale), initial=0.0)))
    rstd = 1 / math.sqrt(case.options.get("eps", 1e-5))
    per_element = 4 * np.finfo(np.float64).eps * max(1.0, float(np.max(np.abs(x)))) * rstd * w
    return max(F64.atol, per_element * float(np.sum(np.abs(g))))


def assert_equals_torch(name: str, case, seed: int = 0) -> None:
    spec = OPS[name]
    rng = np.random.default_rng(seed)
    arrays = spec.inputs(rng, case, np.float64)
    g = rng.standard_normal(case.shapes[0])
    options = case.options
    with jax.enable_x64(True):
        ours = convgrad_results(name, arrays, options, g)
    if torch_refuses(name, case.shapes[0], options):
        shape, offset = case.shapes[0], arrays[2]
        axis = options.get("channel_axis", 1) % len(shape)
        per_channel = [1] * len(shape)
        per_channel[axis] = shape[axis]
        expected = np.broadcast_to(0.0 if offset is None else np.reshape(offset, per_channel), shape)
        np.testing.assert_array_equal(ours["y"], expected)  # one element per group: y = offset
        return
    if np.asarray(arrays[0]).size == 0:
        expected = empty_results(name, arrays, options)
        assert set(ours) == set(expected), f"{case}: {sorted(ours)} vs {sorted(expected)}"
        for key, value in expected.items():
            assert ours[key].shape == value.shape, f"{name} {case}: {key} shape {ours[key].shape} != {value.shape}"
            np.testing.assert_array_equal(ours[key], value, err_msg=f"{name} {case}: {key}")
        if torch_fails_on_empty(name, arrays, options):
            return
    theirs = torch_reference(name, arrays, options, g)
    assert set(ours) == set(theirs), f"{case}: {sorted(ours)} vs {sorted(theirs)}"
    atol = reference_atol(name, case, arrays, g)
    for key, expected in theirs.items():
        testing.assert_close(ours[key], expected, atol=atol, what=f"{name} {case}: {key} vs PyTorch")


NAMES = ["batch_norm", "layer_norm", "group_norm", "instance_norm"]
GRID = [(name, index) for name in NAMES for index in range(len(OPS[name].cases))]


@pytest.mark.parametrize(("name", "index"), GRID, ids=[f"{n}-{i}" for n, i in GRID])
def test_registry_cases_equal_pytorch(name, index):
    """Values, running statistics and gradients of every default case equal PyTorch's, in float64."""
    pytest.importorskip("torch")
    assert_equals_torch(name, OPS[name].cases[index])


TORCH_EXAMPLES = 2 * settings.default.max_examples  # 10 per op in the quick profile, 120 in the thorough one


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=TORCH_EXAMPLES)
@given(data=st.data())
def test_random_cases_equal_pytorch(name, data):
    """Property: on registry-sampled configurations, everything equals PyTorch's in float64."""
    pytest.importorskip("torch")
    case = OPS[name].sample(HypothesisDraw(data))
    assert_equals_torch(name, case, seed=data.draw(st.integers(0, 2**16)))


def test_the_comparison_with_pytorch_catches_a_biased_running_variance(monkeypatch):
    """The torch comparison can fail: a running variance updated with the biased variance differs from PyTorch's."""
    pytest.importorskip("torch")

    def biased(running_mean, running_var, mean, variance, momentum, geometry):
        new_var = (1 - momentum) * running_var + momentum * variance.reshape(running_var.shape)
        return (1 - momentum) * running_mean + momentum * mean.reshape(running_mean.shape), new_var

    monkeypatch.setattr(normalization, "updated_running_statistics", biased)
    with pytest.raises(AssertionError, match="running_var vs PyTorch"):
        assert_equals_torch("batch_norm", OPS["batch_norm"].cases[0])
