"""Zero-size arrays in every op family, every convolution formulation, forward and VJP: lax's shapes, sums over nothing.

An empty batch, no input channels, no output channels, an input with no samples along a
spatial dim, and an output with no samples (no window fits). The expected values are lax's
(``convgrad.autodiff``'s twins, differentiated by ``jax.vjp``): empty arrays, or zeros plus
the bias where the output has elements but the sums have no terms; gradients of zeros, and
the bias gradient the sum of the cotangent. The other families (normalization, upsampling,
dropout, activations, losses) are held to lax's twins and to PyTorch's F.* where PyTorch
computes them; their registry cases keep ``convgrad verify`` on the same inputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff

# kind: (x shape, w shape, options) for conv, 3x3 kernels so that every formulation applies
CONV_KINDS = {
    "batch": ((0, 3, 6, 6), (4, 3, 3, 3), dict(padding=1)),
    "in_channels": ((2, 0, 6, 6), (4, 0, 3, 3), dict(padding=1)),
    "out_channels": ((2, 3, 6, 6), (0, 3, 3, 3), dict(padding=1)),
    "spatial": ((2, 3, 0, 6), (4, 3, 3, 3), dict(padding=((1, 1), (1, 1)))),  # y: 0 + 2 - 2 = 0 rows
    "output": ((2, 3, 2, 6), (4, 3, 3, 3), dict(padding=0)),  # a 3x3 window does not fit in 2 rows
}
TRANSPOSE_KINDS = {
    "batch": ((0, 3, 4, 4), (3, 2, 3, 3), dict(stride=2, padding=1)),
    "in_channels": ((2, 0, 4, 4), (0, 2, 3, 3), dict(stride=2)),
    "out_channels": ((2, 3, 4, 4), (3, 0, 3, 3), dict(stride=2)),
    "spatial": ((2, 3, 0, 4), (3, 2, 3, 3), dict(stride=2)),  # y keeps d (k - 1) = 2 rows: the bias
    "output": ((2, 3, 1, 4), (3, 2, 3, 3), dict(padding=(2, 0))),  # (1 - 1) + 3 - 4 < 0: no rows
}
LAX_KINDS = {
    "batch": ((0, 3, 6, 6), (4, 3, 3, 3), dict(window_strides=(1, 1), padding="SAME")),
    "in_channels": ((2, 0, 6, 6), (4, 0, 3, 3), dict(window_strides=(1, 1), padding=((1, 1), (0, 0)))),
    "out_channels": ((2, 3, 6, 6), (0, 3, 3, 3), dict(window_strides=(2, 1), padding="VALID")),
    "spatial": ((2, 3, 6, 0), (4, 3, 3, 3), dict(window_strides=(1, 1), padding=((0, 0), (1, 2)), lhs_dilation=(1, 2))),
    "output": ((4, 3, 2, 6), (4, 3, 3, 3), dict(window_strides=(1, 1), padding="VALID", batch_group_count=2)),
}
LAX_TRANSPOSE_KINDS = {
    "batch": ((0, 4, 4, 3), (3, 3, 3, 2), dict(strides=(2, 2), padding="SAME")),
    "in_channels": ((2, 4, 4, 0), (3, 3, 0, 2), dict(strides=(2, 2), padding="VALID")),
    "spatial": ((2, 0, 4, 3), (3, 3, 3, 2), dict(strides=(2, 2), padding="VALID")),
}
PAD_KINDS = {
    "batch": ((0, 3, 4), dict(pad_width=((0, 0), (1, 1), (2, 1)), mode="reflect")),
    "spatial": ((2, 3, 0), dict(pad_width=((0, 0), (1, 1), (2, 1)), mode="zeros")),
}

CASES = (
    [
        ("conv", formulation, kind)
        for formulation in ("textbook", "im2col", "winograd", "polyphase", "auto")
        for kind in CONV_KINDS
    ]
    + [("conv_transpose", "textbook", kind) for kind in TRANSPOSE_KINDS]
    + [("lax.conv_general_dilated", "auto", kind) for kind in LAX_KINDS]
    + [("lax.conv_transpose", "auto", kind) for kind in LAX_TRANSPOSE_KINDS]
    + [("pad", "-", kind) for kind in PAD_KINDS]
)


def _functions(op, formulation, kind):
    """``(convgrad's function, its plain-lax twin, the arguments)``."""
    rng = np.random.default_rng(0)
    normal = lambda shape: jnp.asarray(rng.standard_normal(shape))
    if op == "pad":
        shape, options = PAD_KINDS[kind]
        return (lambda x: convgrad.pad(x, **options)), (lambda x: autodiff.pad(x, **options)), (normal(shape),)
    if op.startswith("lax."):
        kinds = LAX_KINDS if op == "lax.conv_general_dilated" else LAX_TRANSPOSE_KINDS
        x_shape, w_shape, options = kinds[kind]
        mine = getattr(convgrad.lax, op[4:])
        twin = getattr(jax.lax, op[4:])
        return (
            (lambda x, w: mine(x, w, **options)),
            (lambda x, w: twin(x, w, **options)),
            (normal(x_shape), normal(w_shape)),
        )
    kinds = CONV_KINDS if op == "conv" else TRANSPOSE_KINDS
    x_shape, w_shape, options = kinds[kind]
    out_channels = w_shape[0] if op == "conv" else w_shape[1]
    args = (normal(x_shape), normal(w_shape), normal(out_channels))
    extra = dict(formulation=formulation) if op == "conv" else {}
    mine = lambda x, w, b: getattr(convgrad, op)(x, w, b, **options, **extra)
    twin = lambda x, w, b: getattr(autodiff, op)(x, w, b, **options)
    return mine, twin, args


@pytest.mark.parametrize("direction", ["forward", "vjp"])
@pytest.mark.parametrize(("op", "formulation", "kind"), CASES, ids=["-".join(c) for c in CASES])
def test_zero_size(op, formulation, kind, direction):
    mine, twin, args = _functions(op, formulation, kind)
    expected, twin_vjp = jax.vjp(twin, *args)
    if direction == "forward":
        y = mine(*args)
        assert y.shape == expected.shape and y.dtype == expected.dtype
        np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)
        return
    y, vjp = jax.vjp(mine, *args)
    g = jnp.asarray(np.random.default_rng(1).standard_normal(y.shape))
    for got, want, arg in zip(vjp(g), twin_vjp(g), args):
        assert got.shape == want.shape == arg.shape and got.dtype == arg.dtype
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------- the other families
#
# Normalization, upsampling, dropout, activations and losses on an empty batch, no channels (or
# features, or classes) and no spatial samples: convgrad's forward and VJP against lax's (the
# plain-lax twin under jax.vjp), and against PyTorch's F.* when torch is importable. Every
# differentiable float argument gets a gradient; labels are closed over.

RM, RV = np.array([0.5, -1.0, 2.0]), np.array([1.0, 2.0, 3.0])  # running statistics of three channels
W = np.linspace(0.5, 2.0, 5)  # class weights of five classes
LABELS = {"batch": np.zeros(0, np.int64), "spatial": np.zeros((2, 0), np.int64)}


# kind: (argument shapes, convgrad's function, the twin's, PyTorch's (or why PyTorch differs))
FAMILY_KINDS = {
    "batch_norm-batch": (
        ((0, 3, 4, 4), (3,), (3,)),
        lambda x, s, b: convgrad.batch_norm(x, s, b, jnp.asarray(RM), jnp.asarray(RV), training=True)[0],
        lambda x, s, b: autodiff.batch_norm(x, s, b, jnp.asarray(RM), jnp.asarray(RV), training=True)[0],
        lambda F, x, s, b: F.batch_norm(x, _t(RM), _t(RV), s, b, training=True),
    ),
    "batch_norm-spatial": (
        ((2, 3, 0, 4), (3,), (3,)),
        lambda x, s, b: convgrad.batch_norm(x, s, b, jnp.asarray(RM), jnp.asarray(RV), training=True)[0],
        lambda x, s, b: autodiff.batch_norm(x, s, b, jnp.asarray(RM), jnp.asarray(RV), training=True)[0],
        lambda F, x, s, b: F.batch_norm(x, _t(RM), _t(RV), s, b, training=True),
    ),
    "batch_norm-channels": (
        ((2, 0, 4), (0,), (0,)),
        lambda x, s, b: convgrad.batch_norm(x, s, b, jnp.zeros(0), jnp.ones(0), training=True)[0],
        lambda x, s, b: autodiff.batch_norm(x, s, b, jnp.zeros(0), jnp.ones(0), training=True)[0],
        "PyTorch 2.13 raises IndexError (select(): index 0 out of range) given a weight of no channels",
    ),
    "layer_norm-batch": (
        ((0, 4), (4,), (4,)),
        lambda x, s, b: convgrad.layer_norm(x, 4, s, b),
        lambda x, s, b: autodiff.layer_norm(x, (4,), s, b),
        lambda F, x, s, b: F.layer_norm(x, (4,), s, b),
    ),
    "layer_norm-features": (
        ((3, 0), (0,), (0,)),
        lambda x, s, b: convgrad.layer_norm(x, 0, s, b),
        lambda x, s, b: autodiff.layer_norm(x, (0,), s, b),
        lambda F, x, s, b: F.layer_norm(x, (0,), s, b),
    ),
    "group_norm-batch": (
        ((0, 4, 3), (4,), (4,)),
        lambda x, s, b: convgrad.group_norm(x, 2, s, b),
        lambda x, s, b: autodiff.group_norm(x, 2, s, b),
        lambda F, x, s, b: F.group_norm(x, 2, s, b),
    ),
    "group_norm-spatial": (
        ((2, 4, 0), (4,), (4,)),
        lambda x, s, b: convgrad.group_norm(x, 2, s, b),
        lambda x, s, b: autodiff.group_norm(x, 2, s, b),
        "PyTorch 2.13's weight gradient over no spatial samples is NaN (its mean over nothing enters); "
        "convgrad's, like lax's, is the sum over no terms, 0",
    ),
    "group_norm-channels": (
        ((2, 0, 3), (0,), (0,)),
        lambda x, s, b: convgrad.group_norm(x, 1, s, b),
        lambda x, s, b: autodiff.group_norm(x, 1, s, b),
        lambda F, x, s, b: F.group_norm(x, 1, s, b),
    ),
    "instance_norm-batch": (
        ((0, 3, 4), (3,), (3,)),
        lambda x, s, b: convgrad.instance_norm(x, s, b),
        lambda x, s, b: autodiff.instance_norm(x, s, b),
        "PyTorch 2.13 raises IndexError (select(): index 0 out of range) for an empty batch with a weight",
    ),
    "instance_norm-spatial": (
        ((2, 3, 0), (3,), (3,)),
        lambda x, s, b: convgrad.instance_norm(x, s, b),
        lambda x, s, b: autodiff.instance_norm(x, s, b),
        lambda F, x, s, b: F.instance_norm(x, weight=s, bias=b),
    ),
    "instance_norm-channels": (
        ((2, 0, 4), (0,), (0,)),
        lambda x, s, b: convgrad.instance_norm(x, s, b),
        lambda x, s, b: autodiff.instance_norm(x, s, b),
        "PyTorch 2.13 raises IndexError (select(): index 0 out of range) for no channels with a weight",
    ),
    "upsample-batch": (
        ((0, 2, 3, 3),),
        lambda x: convgrad.upsample(x, scale_factor=2, mode="bilinear"),
        lambda x: autodiff.upsample(x, scale_factor=2, mode="bilinear"),
        lambda F, x: F.interpolate(x, scale_factor=2, mode="bilinear"),
    ),
    "upsample-batch-nearest": (
        ((0, 2, 3),),
        lambda x: convgrad.upsample(x, size=5),
        lambda x: autodiff.upsample(x, size=5),
        lambda F, x: F.interpolate(x, size=5),
    ),
    "upsample-channels": (
        ((2, 0, 3, 3),),
        lambda x: convgrad.upsample(x, size=(5, 4), mode="bilinear"),
        lambda x: autodiff.upsample(x, size=(5, 4), mode="bilinear"),
        "PyTorch 2.13 raises RuntimeError (Non-empty 4D data tensor expected) for no channels",
    ),
    "dropout-batch": (
        ((0, 3),),
        lambda x: convgrad.dropout(x, 0.5, jax.random.key(0)),
        lambda x: autodiff.dropout(x, 0.5, jax.random.key(0)),
        lambda F, x: F.dropout(x, 0.5),
    ),
    "dropout-features": (
        ((3, 0),),
        lambda x: convgrad.dropout(x, 0.5, jax.random.key(0)),
        lambda x: autodiff.dropout(x, 0.5, jax.random.key(0)),
        lambda F, x: F.dropout(x, 0.5),
    ),
    "relu-batch": (((0, 5),), convgrad.relu, autodiff.relu, lambda F, x: F.relu(x)),
    "sigmoid-middle": (((2, 0, 3),), convgrad.sigmoid, autodiff.sigmoid, lambda F, x: F.sigmoid(x)),
    "tanh-vector": (((0,),), convgrad.tanh, autodiff.tanh, lambda F, x: F.tanh(x)),
    "softmax-batch": (
        ((0, 5),),
        lambda x: convgrad.softmax(x, axis=-1),
        lambda x: autodiff.softmax(x, axis=-1),
        lambda F, x: F.softmax(x, dim=-1),
    ),
    "log_softmax-classes": (
        ((3, 0),),
        lambda x: convgrad.log_softmax(x, axis=-1),
        lambda x: autodiff.log_softmax(x, axis=-1),
        lambda F, x: F.log_softmax(x, dim=-1),
    ),
    "cross_entropy-batch": (
        ((0, 5),),
        lambda z: convgrad.softmax_cross_entropy(z, jnp.asarray(LABELS["batch"])),
        lambda z: autodiff.softmax_cross_entropy(z, jnp.asarray(LABELS["batch"])),
        lambda F, z: F.cross_entropy(z, _t(LABELS["batch"]), reduction="none"),
    ),
    "cross_entropy-batch-sum": (  # the weights are constants here: PyTorch does not differentiate them
        ((0, 5),),
        lambda z: convgrad.softmax_cross_entropy(
            z, jnp.asarray(LABELS["batch"]), weight=jnp.asarray(W), reduction="sum"
        ),
        lambda z: autodiff.softmax_cross_entropy(
            z, jnp.asarray(LABELS["batch"]), weight=jnp.asarray(W), reduction="sum"
        ),
        lambda F, z: F.cross_entropy(z, _t(LABELS["batch"]), weight=_t(W), reduction="sum"),
    ),
    "cross_entropy-batch-mean": (  # 0 / 0: NaN, with an empty gradient
        ((0, 5),),
        lambda z: convgrad.softmax_cross_entropy(z, jnp.asarray(LABELS["batch"]), reduction="mean"),
        lambda z: autodiff.softmax_cross_entropy(z, jnp.asarray(LABELS["batch"]), reduction="mean"),
        lambda F, z: F.cross_entropy(z, _t(LABELS["batch"]), reduction="mean"),
    ),
    "cross_entropy-spatial": (
        ((2, 5, 0),),
        lambda z: convgrad.softmax_cross_entropy(z, jnp.asarray(LABELS["spatial"]), axis=1, label_smoothing=0.1),
        lambda z: autodiff.softmax_cross_entropy(z, jnp.asarray(LABELS["spatial"]), axis=1, label_smoothing=0.1),
        lambda F, z: F.cross_entropy(z, _t(LABELS["spatial"]), reduction="none", label_smoothing=0.1),
    ),
    "cross_entropy-probabilities-classes": (
        ((3, 0), (3, 0)),
        lambda z, p: convgrad.softmax_cross_entropy(z, p),
        lambda z, p: autodiff.softmax_cross_entropy(z, p),
        lambda F, z, p: F.cross_entropy(z, p, reduction="none"),
    ),
    "mse-sum": (
        ((0, 3), (0, 3)),
        lambda y, t: convgrad.mse(y, t, reduction="sum"),
        lambda y, t: autodiff.mse(y, t, reduction="sum"),
        lambda F, y, t: F.mse_loss(y, t, reduction="sum"),
    ),
    "mse-mean": (  # the mean of no elements: NaN, with empty gradients
        ((2, 0, 3), (2, 0, 3)),
        lambda y, t: convgrad.mse(y, t),
        lambda y, t: autodiff.mse(y, t),
        lambda F, y, t: F.mse_loss(y, t),
    ),
}


def _t(a):
    """A constant torch tensor of a NumPy array (running statistics, labels)."""
    torch = pytest.importorskip("torch")
    return torch.tensor(a)


def _family_arguments(kind):
    shapes = FAMILY_KINDS[kind][0]
    rng = np.random.default_rng(0)
    return tuple(rng.standard_normal(shape) for shape in shapes)


@pytest.mark.parametrize("direction", ["forward", "vjp"])
@pytest.mark.parametrize("kind", list(FAMILY_KINDS))
def test_zero_size_family(kind, direction):
    """convgrad's forward value, or its VJP of every argument, equals lax's: shape, dtype and values (NaN where NaN)."""
    _, mine, twin, _ = FAMILY_KINDS[kind]
    with jax.enable_x64(True):
        args = tuple(jnp.asarray(a) for a in _family_arguments(kind))
        expected, twin_vjp = jax.vjp(twin, *args)
        y, vjp = jax.vjp(mine, *args)
        assert y.shape == expected.shape and y.dtype == expected.dtype
        if direction == "forward":
            np.testing.assert_allclose(y, expected, rtol=1e-12, atol=1e-12)  # equal_nan: a mean over nothing
            return
        g = jnp.asarray(np.random.default_rng(1).standard_normal(y.shape))
        for got, want, arg in zip(vjp(g), twin_vjp(g), args):
            assert got.shape == want.shape == arg.shape and got.dtype == arg.dtype
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(FAMILY_KINDS))
def test_zero_size_family_against_pytorch(kind):
    """The same shapes and values as PyTorch's F.* forward and backward, in float64; where PyTorch differs, lax's.

    Where PyTorch 2.13 raises or gives NaN for a sum over nothing (the reasons in FAMILY_KINDS), the
    expectation is written out instead: an empty ``y`` of lax's shape, and gradients that are sums
    over no terms, zeros of each argument's shape.
    """
    torch = pytest.importorskip("torch")
    shapes, mine, twin, theirs = FAMILY_KINDS[kind]
    arrays = _family_arguments(kind)
    with jax.enable_x64(True):
        y, vjp = jax.vjp(mine, *map(jnp.asarray, arrays))
        g = np.random.default_rng(1).standard_normal(y.shape)
        grads = vjp(jnp.asarray(g))
        lax_shape = jax.eval_shape(twin, *map(jnp.asarray, arrays)).shape
    if isinstance(theirs, str):  # PyTorch differs: lax's empty y, and the sums over no terms, by hand
        assert y.shape == lax_shape and y.size == 0
        for grad, shape in zip(grads, shapes):
            np.testing.assert_array_equal(grad, np.zeros(shape))
        return
    tensors = [torch.tensor(a, requires_grad=True) for a in arrays]
    out = theirs(torch.nn.functional, *tensors)
    out.backward(torch.tensor(g))
    assert y.shape == tuple(out.shape)
    np.testing.assert_allclose(y, out.detach().numpy(), rtol=1e-12, atol=1e-12)
    for grad, tensor in zip(grads, tensors):
        assert tensor.grad is not None, "PyTorch gave no gradient"
        assert grad.shape == tuple(tensor.grad.shape)
        np.testing.assert_allclose(grad, tensor.grad.numpy(), rtol=1e-12, atol=1e-12)
