"""Facts about convgrad.lax: lax's exact signatures, hand-computed lhs dilation and batch groups, lax's dtype rules,
and a clear error for every argument."""

from __future__ import annotations

import inspect
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

import convgrad
import convgrad.lax as clax


@pytest.mark.parametrize("name", ["conv_general_dilated", "conv_transpose"])
def test_signature_is_lax_s(name):
    """The same parameters, in the same order, with the same defaults: a drop-in for any caller, Flax's included."""
    mine, theirs = inspect.signature(getattr(clax, name)), inspect.signature(getattr(lax, name))
    assert [(p.name, p.kind, p.default) for p in mine.parameters.values()] == [
        (p.name, p.kind, p.default) for p in theirs.parameters.values()
    ]


def test_reachable_from_the_package():
    assert convgrad.lax.conv_general_dilated is clax.conv_general_dilated


def test_lhs_dilation_by_hand():
    """x = [1, 2, 3] dilated by 2 is [1, 0, 2, 0, 3]; padded by (1, -1): [0, 1, 0, 2, 0]; 2 taps [1, 10]:
    y = [10, 1, 20, 2]. With g = [1, 2, 3, 4] the dilated, padded input's gradient is [1, 10 + 2, 20 + 3,
    30 + 4, 40] = [1, 12, 23, 34, 40]; x's samples sit at padded positions 1, 3 (and 5, cropped): [12, 34, 0].
    dw[k] = sum_i x_pad[i + k] g[i] = [0 + 2 + 0 + 8, 1 + 0 + 6 + 0] = [10, 7]."""
    x, w = jnp.array([[[1.0, 2.0, 3.0]]]), jnp.array([[[1.0, 10.0]]])
    f = lambda x, w: clax.conv_general_dilated(x, w, (1,), [(1, -1)], lhs_dilation=(2,))
    y, vjp = jax.vjp(f, x, w)
    np.testing.assert_array_equal(y[0, 0], [10, 1, 20, 2])
    dx, dw = vjp(jnp.array([[[1.0, 2.0, 3.0, 4.0]]]))
    np.testing.assert_array_equal(dx[0, 0], [12, 34, 0])
    np.testing.assert_array_equal(dw[0, 0], [10, 7])


def test_batch_groups_by_hand():
    """batch_group_count=2 over a batch of 4: output channel o reads batch block o // (O/2), i.e. channels 0, 1
    read examples 0, 1 and channels 2, 3 examples 2, 3; the output batch is 2. One 1-tap kernel per channel,
    w = [1, 2, 3, 4]: y[n', o] = w[o] x[2 (o // 2) + n']. The gradient of x[2 b + n'] sums its group's channels:
    dx[b N' + n'] = sum_{o in group b} g[n', o] w[o]; dw[o] = sum_{n'} x[2 (o // 2) + n'] g[n', o]."""
    x = jnp.array([1.0, 10.0, 100.0, 1000.0]).reshape(4, 1, 1)
    w = jnp.array([1.0, 2.0, 3.0, 4.0]).reshape(4, 1, 1)
    y, vjp = jax.vjp(lambda x, w: clax.conv_general_dilated(x, w, (1,), "VALID", batch_group_count=2), x, w)
    np.testing.assert_array_equal(y[..., 0], [[1, 2, 300, 400], [10, 20, 3000, 4000]])
    g = jnp.ones((2, 4, 1))
    dx, dw = vjp(g)
    np.testing.assert_array_equal(dx.ravel(), [1 + 2, 1 + 2, 3 + 4, 3 + 4])
    np.testing.assert_array_equal(dw.ravel(), [11, 11, 1100, 1100])


def test_preferred_element_type_follows_lax():
    """bfloat16 operands, float32 result: the result is float32, the gradients come back in bfloat16, and the
    values equal lax's (both accumulate in float32 from the same bfloat16 products)."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 3, 6, 5)), jnp.bfloat16)
    w = jnp.asarray(rng.standard_normal((4, 3, 3, 2)), jnp.bfloat16)
    options = dict(window_strides=(1, 2), padding="SAME", preferred_element_type=jnp.float32)
    y, vjp = jax.vjp(lambda x, w: clax.conv_general_dilated(x, w, **options), x, w)
    y_lax, vjp_lax = jax.vjp(lambda x, w: lax.conv_general_dilated(x, w, **options), x, w)
    assert y.dtype == jnp.float32
    np.testing.assert_allclose(y, y_lax, rtol=1e-6, atol=1e-6)
    g = jnp.asarray(rng.standard_normal(y.shape), jnp.float32)
    for mine, theirs in zip(vjp(g), vjp_lax(g)):
        assert mine.dtype == jnp.bfloat16
        np.testing.assert_array_equal(np.asarray(mine, np.float32), np.asarray(theirs, np.float32))


L, R = np.zeros((4, 6, 5, 5), np.float32), np.zeros((4, 3, 3, 3), np.float32)
ONE = ((0, 0), (0, 0))
BAD_GENERAL = [
    ((L, R, (1, 1), ONE), {}, ValueError, r"channel mismatch: lhs has 6 features, so with feature_group_count=1"),
    ((L, R, (1, 1), ONE), {"feature_group_count": 4}, ValueError, "feature_group_count=4 does not divide the input f"),
    ((L, R[:3], (1, 1), ONE), {"feature_group_count": 2}, ValueError, r"feature_group_count=2 does not divide the k"),
    ((L[:, :3], R, (1, 1), ONE), {"batch_group_count": 3}, ValueError, r"batch_group_count=3 does not divide the kern"),
    (
        (L[:3, :3], R, (1, 1), ONE),
        {"batch_group_count": 2},
        ValueError,
        r"batch_group_count=2 does not divide the batch 3",
    ),
    ((L, R, (1, 1), ONE), {"feature_group_count": 2, "batch_group_count": 2}, ValueError, "at most one of"),
    ((L, R, (1, 1), ONE), {"batch_group_count": 0}, ValueError, "batch_group_count must be positive"),
    ((L[:, :3], R, 1, ONE), {}, TypeError, "window_strides must be a sequence of 2 ints, got window_strides=1"),
    ((L[:, :3], R, (1, 0), ONE), {}, ValueError, r"window_strides must be an int or 2 ints each >= 1"),
    ((L[:, :3], R, (1, 1), ONE), {"lhs_dilation": (1,)}, ValueError, r"lhs_dilation must be an int or 2 ints"),
    ((L[:, :3], R, (1, 1), ONE), {"rhs_dilation": (0, 1)}, ValueError, r"rhs_dilation must be an int or 2 ints"),
    ((L[:, :3], R, (1, 1), (1, 1)), {}, ValueError, r"padding must be a string or a sequence of 2 \(lo, hi\) int"),
    ((L[:, :3], R, (1, 1), "FULL"), {}, ValueError, r"padding='FULL' is not one of \['SAME', 'SAME_LOWER', 'VALID'\]"),
    ((L[:, :3], R, (1, 1), "SAME"), {"lhs_dilation": (2, 1)}, ValueError, "a string padding='SAME' is not defined"),
    ((L[:, :3], R, (1, 1), ((-4, -3), (0, 0))), {}, ValueError, "crops more than the input holds along spatial dim 0"),
    ((L[:, :3], R[..., :0], (1, 1), ONE), {}, ValueError, "every kernel spatial size must be positive"),
    ((L[:, :3], R, (1, 1), ONE), {"out_sharding": "x"}, ValueError, "out_sharding='x' is not supported"),
    ((L[:, :3], R, (1, 1), ONE), {"precision": "best"}, ValueError, "precision must be None, a lax.Precision"),
    ((L[:, :3], R, (1, 1), ONE), {"preferred_element_type": jnp.float16}, TypeError, "no narrower than the inputs'"),
    ((L[:, :3], R, (1, 1), ONE), {"preferred_element_type": jnp.int32}, TypeError, "must be a floating dtype"),
    ((L[:, :3].astype(np.int32), R, (1, 1), ONE), {}, TypeError, "lhs must have a real floating dtype"),
    ((L[:, :3], R.astype(np.float64), (1, 1), ONE), {}, TypeError, "must share one dtype"),
    ((L[:, :3], R[0], (1, 1), ONE), {}, ValueError, "lhs and rhs must have one rank of at least 2"),
    ((L[:, :3], R, (1, 1), ONE), {"dimension_numbers": ("NCHW", "OIHW")}, TypeError, "dimension_numbers must be"),
    (
        (L[:, :3], R, (1, 1), ONE),
        {"dimension_numbers": lax.ConvDimensionNumbers((0, 1, 2, 2), (0, 1, 2, 3), (0, 1, 2, 3))},
        ValueError,
        "must hold a permutation of the 4 axes",
    ),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD_GENERAL, ids=[m[:40] for *_, m in BAD_GENERAL])
def test_conv_general_dilated_bad_input(args, kwargs, error, message):
    """Each raises before XLA sees it, with the op's name, the argument and its value, under jit too."""
    with pytest.raises(error, match=r"^lax\.conv_general_dilated: .*" + message):
        clax.conv_general_dilated(*args, **kwargs)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    with pytest.raises(error, match=re.escape("lax.conv_general_dilated: ")):
        jax.jit(lambda lhs, rhs: clax.conv_general_dilated(lhs, rhs, *args[2:], **kwargs))(*arrays)


BAD_TRANSPOSE = [
    ((L[:, :3], R, (2, 2), "SAME"), {"transpose_kernel": 1}, TypeError, "transpose_kernel must be a bool"),
    ((L[:, :3], R, (2, 2), "SAME"), {"use_consistent_padding": "yes"}, TypeError, "use_consistent_padding must be"),
    ((L[:, :3], R, 2, "SAME"), {}, TypeError, "strides must be a sequence of 2 ints, got strides=2"),
    (
        (L[:, :3], R, (2, 2), "same"),
        {"dimension_numbers": ("NCHW", "OIHW", "NCHW")},
        ValueError,
        "padding='same' is not",
    ),
    ((L[:, :3], R, (2, 2), (1, 1)), {"use_consistent_padding": True}, ValueError, "padding must be a string or a"),
    ((np.zeros((1, 2, 3, 3, 3, 3)), np.zeros((1, 2, 1, 1, 1, 1)), (1,) * 4, "SAME"), {}, ValueError, "no default"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD_TRANSPOSE, ids=[m[:40] for *_, m in BAD_TRANSPOSE])
def test_conv_transpose_bad_input(args, kwargs, error, message):
    with pytest.raises(error, match=r"^lax\.conv_transpose: .*" + message):
        clax.conv_transpose(*args, **kwargs)


def test_zero_spatial_dims_are_a_matrix_product():
    """lax allows no spatial dims: ``NC`` times ``OI`` is ``x @ w.T``; with 2 feature groups, block-diagonal."""
    x, w = jnp.arange(12.0).reshape(3, 4), jnp.arange(10.0).reshape(5, 2)[:4]
    y = clax.conv_general_dilated(x, w, (), (), feature_group_count=2)
    expected = np.concatenate(
        [np.asarray(x[:, :2]) @ np.asarray(w[:2]).T, np.asarray(x[:, 2:]) @ np.asarray(w[2:]).T], 1
    )
    np.testing.assert_array_equal(y, expected)
