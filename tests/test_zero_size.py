"""Zero-size arrays in every convolution op, every formulation, forward and VJP: lax's shapes, sums over nothing.

An empty batch, no input channels, no output channels, an input with no samples along a
spatial dim, and an output with no samples (no window fits). The expected values are lax's
(``convgrad.autodiff``'s twins, differentiated by ``jax.vjp``): empty arrays, or zeros plus
the bias where the output has elements but the sums have no terms; gradients of zeros, and
the bias gradient the sum of the cotangent.
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
    [("conv", formulation, kind) for formulation in ("textbook", "im2col", "winograd", "auto") for kind in CONV_KINDS]
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
