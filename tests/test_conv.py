"""Facts about convgrad.conv beyond the registry's four-way checks: the seed example, layouts, transforms, errors."""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import autodiff
from convgrad.ops.conv_textbook import flip_and_swap


def test_seed_example_multichannel_gradients():
    """3x3x3 input, one 2x2x3 filter: 2x2 output; dx is 3x3x3, dw 2x2x3, db the SUM of the 2x2 cotangent."""
    x = jnp.arange(27.0).reshape(1, 3, 3, 3)
    w = jnp.array([[[[1.0, 2.0], [3.0, 4.0]], [[0.0, 1.0], [1.0, 0.0]], [[-1.0, 0.0], [0.0, 2.0]]]])  # (1, 3, 2, 2)
    b = jnp.array([0.5])
    g = jnp.array([[[[1.0, 2.0], [3.0, 4.0]]]])  # cotangent of the 2x2 output

    y, vjp = jax.vjp(convgrad.conv, x, w, b)
    dx, dw, db = vjp(g)
    assert y.shape == (1, 1, 2, 2) and dx.shape == (1, 3, 3, 3) and dw.shape == (1, 3, 2, 2) and db.shape == (1,)

    # forward by hand: y[0,0] = b + sum_c sum_taps x[c, tap] w[c, tap]
    assert y[0, 0, 0, 0] == 0.5 + sum(
        float(x[0, c, i, j] * w[0, c, i, j]) for c in range(3) for i in range(2) for j in range(2)
    )
    # bias gradient: b is added to all four outputs, so it collects all four cotangents: 1+2+3+4 = 10, not the mean 2.5
    assert db[0] == 10.0
    # weight gradient: dw[c, kh, kw] = sum_ij x[c, i+kh, j+kw] g[i, j]
    assert dw[0, 1, 0, 1] == sum(float(x[0, 1, i, j + 1] * g[0, 0, i, j]) for i in range(2) for j in range(2))
    # input gradient at the centre pixel: all four windows cover it, each through a different tap, so the
    # cotangent meets the kernel flipped: w[1,1] g[0,0] + w[1,0] g[0,1] + w[0,1] g[1,0] + w[0,0] g[1,1]
    c = 0
    assert dx[0, c, 1, 1] == 4 * 1 + 3 * 2 + 2 * 3 + 1 * 4
    # a corner pixel is covered by one window through one tap
    assert dx[0, c, 0, 0] == w[0, c, 0, 0] * g[0, 0, 0, 0]


def test_flip_and_swap_per_group():
    """w_t[g C/G + c', o', k] = w[g O/G + o', c', K-1-k]: spatial flip, in/out swap inside each group only."""
    groups, out_per_group, in_per_group = 2, 3, 2
    w = jnp.arange(groups * out_per_group * in_per_group * 2 * 3, dtype=jnp.float32).reshape(6, 2, 2, 3)
    w_t = flip_and_swap(w, groups)
    assert w_t.shape == (groups * in_per_group, out_per_group, 2, 3)
    for g in range(groups):
        for o in range(out_per_group):
            for c in range(in_per_group):
                np.testing.assert_array_equal(w_t[g * in_per_group + c, o], w[g * out_per_group + o, c, ::-1, ::-1])


def test_flip_and_swap_in_channels_last_layout():
    """The same operation on an HWIO kernel, via its dimension numbers."""
    w = jnp.arange(4 * 2 * 3 * 2, dtype=jnp.float32).reshape(4, 2, 3, 2)  # OIHW with groups=2
    hwio = jnp.transpose(w, (2, 3, 1, 0))
    rhs_spec = (3, 2, 0, 1)  # O, I, H, W axes of an HWIO array
    np.testing.assert_array_equal(flip_and_swap(hwio, 2, rhs_spec), jnp.transpose(flip_and_swap(w, 2), (2, 3, 1, 0)))


@pytest.mark.parametrize(
    ("n", "first", "last"),
    [
        (1, ("NCH", "OIH", "NCH"), ("NHC", "HIO", "NHC")),
        (2, ("NCHW", "OIHW", "NCHW"), ("NHWC", "HWIO", "NHWC")),
        (3, ("NCDHW", "OIDHW", "NCDHW"), ("NDHWC", "DHWIO", "NDHWC")),
    ],
)
def test_layouts_agree(n, first, last):
    """Channels-last and channel-first layouts compute the same values and gradients, transposed."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((2, 4, *(5,) * n))
    w = rng.standard_normal((6, 2, *(3,) * n))
    b = rng.standard_normal(6)
    to_last = lambda a, src, dst: jnp.transpose(a, [src.index(c) for c in dst])
    kw = dict(stride=2, padding="SAME", groups=2)
    f_first = lambda x, w, b: jnp.sum(jnp.sin(convgrad.conv(x, w, b, **kw)))
    f_last = lambda x, w, b: jnp.sum(jnp.sin(convgrad.conv(x, w, b, dimension_numbers=last, **kw)))
    xl, wl = to_last(x, first[0], last[0]), to_last(w, first[1], last[1])
    grads_first = jax.grad(f_first, argnums=(0, 1, 2))(x, w, b)
    grads_last = jax.grad(f_last, argnums=(0, 1, 2))(xl, wl, b)
    np.testing.assert_allclose(f_first(x, w, b), f_last(xl, wl, b), rtol=1e-12)
    np.testing.assert_allclose(to_last(grads_first[0], first[0], last[0]), grads_last[0], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(to_last(grads_first[1], first[1], last[1]), grads_last[1], rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(grads_first[2], grads_last[2], rtol=1e-12)


@pytest.mark.parametrize(
    ("size", "stride", "kernel", "dilation"), [(7, 2, 3, 1), (8, 3, 2, 2), (5, 1, 4, 1), (1, 3, 3, 2)]
)
def test_same_padding_keeps_ceil_size(size, stride, kernel, dilation):
    """padding="SAME" gives ceil(in / s) outputs, as lax does."""
    x = jnp.ones((1, 1, size))
    w = jnp.ones((1, 1, kernel))
    y = convgrad.conv(x, w, stride=stride, padding="same", dilation=dilation)
    assert y.shape[-1] == -(-size // stride)
    np.testing.assert_array_equal(y, autodiff.conv(x, w, stride=stride, padding="SAME", dilation=dilation))


def _loss(x, w, b):
    return jnp.sum(convgrad.conv(x, w, b, stride=2, padding=1) ** 2)


def _reference_loss(x, w, b):
    return jnp.sum(autodiff.conv(x, w, b, stride=2, padding=1) ** 2)


@pytest.fixture
def problem():
    rng = np.random.default_rng(0)
    return rng.standard_normal((2, 3, 6, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)


def test_under_jit_and_checkpoint(problem):
    expected = jax.grad(_reference_loss, argnums=(0, 1, 2))(*problem)
    for transformed in (
        jax.jit(jax.grad(_loss, argnums=(0, 1, 2))),
        jax.grad(jax.checkpoint(_loss), argnums=(0, 1, 2)),
    ):
        for got, want in zip(transformed(*problem), expected):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_per_example_gradients_under_vmap(problem):
    """vmap over examples of the weight gradient equals a Python loop over examples."""
    x, w, b = problem
    per_example = jax.vmap(jax.grad(lambda xi, w: _loss(xi[None], w, b), argnums=1), in_axes=(0, None))(x, w)
    looped = jnp.stack([jax.grad(_reference_loss, argnums=1)(x[i : i + 1], w, b) for i in range(x.shape[0])])
    np.testing.assert_allclose(per_example, looped, rtol=1e-12, atol=1e-12)


def test_hessian_vector_product(problem):
    """Reverse over reverse: d/dx of <dL/dw, v> matches autodiff."""
    x, w, b = problem
    v = np.random.default_rng(1).standard_normal(w.shape)
    hvp = lambda loss: jax.grad(lambda x: jnp.vdot(jax.grad(loss, argnums=1)(x, w, b), v))(x)
    np.testing.assert_allclose(hvp(_loss), hvp(_reference_loss), rtol=1e-11, atol=1e-11)


def test_output_dtype_follows_input():
    for dtype in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64):
        x, w, b = jnp.ones((1, 2, 4, 4), dtype), jnp.ones((3, 2, 2, 2), dtype), jnp.ones(3, dtype)
        y, vjp = jax.vjp(convgrad.conv, x, w, b)
        assert y.dtype == dtype
        assert all(g.dtype == dtype for g in vjp(jnp.ones_like(y)))


X, W = np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 4, 3, 3), np.float32)
BAD_INPUTS = [
    ((X, np.zeros((6, 3, 3, 3), np.float32)), {}, ValueError, "channel mismatch: x has in_channels=4"),
    ((X, W), {"groups": 3}, ValueError, "groups=3 does not divide in_channels=4"),
    ((X, np.zeros((6, 2, 3, 3), np.float32)), {"groups": 4}, ValueError, "groups=4 does not divide out_channels=6"),
    ((X, W), {"groups": 0}, ValueError, "groups must be positive, got groups=0"),
    ((X, W), {"stride": 0}, ValueError, "stride must be positive, got stride=0"),
    ((X, W), {"stride": (1, -2)}, ValueError, r"stride=\(1, -2\)"),
    ((X, W), {"stride": (1, 2, 3)}, ValueError, r"stride must be an int or 2 ints .* got stride=\(1, 2, 3\)"),
    ((X, W), {"stride": 1.5}, TypeError, "stride must be an int"),
    ((X, W), {"dilation": 0}, ValueError, "dilation must be positive, got dilation=0"),
    ((X, W), {"padding": -5}, ValueError, r"padding=-5 crops more than the input holds along spatial dim 0: .* < 0"),
    ((X, W), {"padding": ((1, 1), (-9, 0))}, ValueError, "crops more than the input holds along spatial dim 1"),
    ((X, W), {"padding": "FULL"}, ValueError, "padding=.FULL."),
    ((X, W), {"padding": ((1, 2, 3), (0, 0))}, ValueError, "padding="),
    ((X, W), {"padding": (1, 2, 3)}, ValueError, r"padding=\(1, 2, 3\)"),
    ((X, W), {"padding": 1.0}, TypeError, "padding=1.0"),
    ((X[0, 0], W), {}, ValueError, r"x and w must have the same rank .*, or 3 for one unbatched .* x.shape=\(8, 8\)"),
    ((X, W[:, :, :0]), {}, ValueError, r"every kernel spatial size must be positive, got kernel \(0, 3\)"),
    ((X, W), {"padding_mode": "mirror"}, ValueError, r"padding_mode='mirror' is not one of \['zeros', 'reflect'"),
    ((X, W), {"padding_mode": None}, ValueError, r"padding_mode=None is not one of"),
    (
        (X, W),
        {"padding": 8, "padding_mode": "reflect"},
        ValueError,
        r"padding_mode='reflect' needs widths < the axis size 8, got padding=8 along spatial dim 0 of size 8",
    ),
    ((X, W), {"padding": 9, "padding_mode": "circular"}, ValueError, r"'circular' needs widths <= the axis size 8"),
    (
        (X, W),
        {"padding": (-1, 1), "padding_mode": "replicate"},
        ValueError,
        r"needs widths >= 0, got padding=\(-1, 1\)",
    ),
    ((X, W[0, 0]), {}, ValueError, r"w must have 3 to 5 dims .* w.shape=\(3, 3\)"),
    ((np.zeros((1, 1, 1, 1, 1, 1, 1)), np.zeros((1, 1, 1, 1, 1, 1, 1))), {}, ValueError, "w must have 3 to 5 dims"),
    ((X.astype(np.int32), W), {}, TypeError, "x must have a real floating dtype .* x.dtype=int32"),
    ((X, W.astype(np.complex64)), {}, TypeError, "w must have a real floating dtype .* w.dtype=complex64"),
    ((X, W.astype(np.float64)), {}, TypeError, "must share one dtype, got x.dtype=float32, w.dtype=float64"),
    (
        (X, W, np.zeros(5, np.float32)),
        {},
        ValueError,
        r"b must have shape \(out_channels,\)=\(6,\), got b.shape=\(5,\)",
    ),
    (("x", W), {}, TypeError, "x must be an array, got str"),
    ((X, W), {"dimension_numbers": ("NHWC", "HWIO")}, TypeError, "dimension_numbers must be None or three layout"),
    ((X, W), {"dimension_numbers": ("NHWC", "HWOI", "NHW")}, ValueError, "output layout 'NHW' has 3 letters"),
    ((X, W), {"dimension_numbers": ("NHWC", "HWIO", "NHXC")}, ValueError, "must use the kernel's spatial letters"),
    ((X, W), {"dimension_numbers": ("NHWW", "HWIO", "NHWC")}, ValueError, "must contain 'N' and 'C' once each"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD_INPUTS, ids=[m[:40] for *_, m in BAD_INPUTS])
def test_bad_input_raises_a_clear_error(args, kwargs, error, message):
    """Each raises ValueError/TypeError naming the argument and its value before XLA sees it, under jit too."""
    with pytest.raises(error, match=r"^conv: .*" + message):
        convgrad.conv(*args, **kwargs)
    arrays = [a for a in args if isinstance(a, np.ndarray)]
    if len(arrays) == len(args):
        with pytest.raises(error, match=re.escape("conv: ")):
            jax.jit(lambda *a: convgrad.conv(*a, **kwargs))(*args)


def _convolutions(x_shape, w_shape, formulation, wrt=("w",)):
    """How many convolutions XLA runs for ``y`` and the gradients ``wrt`` (unasked gradients are dropped)."""
    x, w = jnp.ones(x_shape, jnp.float32), jnp.ones(w_shape, jnp.float32)

    def loss(x, w):
        return jnp.sum(convgrad.conv(x, w, padding=1, formulation=formulation) ** 2)

    argnums = tuple({"x": 0, "w": 1}[name] for name in wrt)
    program = jax.jit(jax.value_and_grad(loss, argnums) if argnums else loss)
    return program.lower(x, w).compile().as_text().count(" convolution(")


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the im2col formulation is chosen on CPU only")
def test_auto_formulation_uses_im2col_on_cpu_for_few_channels():
    """With one input channel "auto" computes y and dw without a convolution; dx stays one."""
    assert _convolutions((4, 1, 10, 10), (8, 1, 3, 3), "auto") == 0
    assert _convolutions((4, 1, 10, 10), (8, 1, 3, 3), "im2col") == 0
    assert _convolutions((4, 1, 10, 10), (8, 1, 3, 3), "textbook") == 2
    assert _convolutions((4, 1, 10, 10), (8, 1, 3, 3), "auto", wrt=("x", "w")) == 1
    # 8 channels x 9 taps = 72 patch rows: the textbook convolutions are faster there
    assert _convolutions((4, 8, 10, 10), (8, 8, 3, 3), "auto") == 2


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the Winograd formulation is chosen on CPU only")
def test_auto_formulation_uses_winograd_on_cpu_for_wide_3x3_layers():
    """With 32 channels "auto" computes y, dx and dw of a 3x3 stride-1 layer by Winograd, without a convolution."""
    assert _convolutions((2, 32, 6, 6), (32, 32, 3, 3), "auto", wrt=("x", "w")) == 0
    assert _convolutions((2, 32, 6, 6), (32, 32, 3, 3), "winograd", wrt=("x", "w")) == 0
    assert _convolutions((2, 32, 6, 6), (32, 32, 3, 3), "textbook", wrt=("x", "w")) == 3
    # 256 channels: the Winograd weight gradient was measured slower, so it stays a convolution
    assert _convolutions((1, 256, 4, 4), (256, 256, 3, 3), "auto", wrt=("x", "w")) == 1
    # 16 input channels: the Winograd forward was measured slower, and all three stay convolutions
    assert _convolutions((2, 16, 6, 6), (32, 16, 3, 3), "auto", wrt=("x", "w")) == 3


@pytest.mark.parametrize(
    "layout, x_axes, w_axes",  # the layout, and the transposes that take NCHW / OIHW arrays to it
    [
        (None, (0, 1, 2, 3), (0, 1, 2, 3)),
        (("NHWC", "HWIO", "NHWC"), (0, 2, 3, 1), (2, 3, 1, 0)),
        (("NWHC", "WIOH", "HCNW"), (0, 3, 2, 1), (3, 1, 0, 2)),
    ],
)
def test_formulations_agree(layout, x_axes, w_axes):
    """Forward and all three gradients of "im2col", "polyphase" and "auto" equal "textbook"'s in float64, in any
    layout (stride 2 with dilation 2 along H: every odd phase of dx is reached by no tap)."""
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((6, 1, 3, 2)), rng.standard_normal(6)
    x, w = np.transpose(x, x_axes), np.transpose(w, w_axes)
    options = dict(stride=(2, 3), padding=((1, 2), (0, 1)), dilation=(2, 1), groups=3, dimension_numbers=layout)

    def value_and_grads(formulation):
        def loss(x, w, b):
            return jnp.sum(jnp.sin(convgrad.conv(x, w, b, formulation=formulation, **options)))

        return jax.value_and_grad(loss, argnums=(0, 1, 2))(x, w, b)

    results = {formulation: value_and_grads(formulation) for formulation in ("textbook", "im2col", "polyphase", "auto")}
    for formulation in ("im2col", "polyphase", "auto"):
        for got, want in zip(jax.tree.leaves(results[formulation]), jax.tree.leaves(results["textbook"])):
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("layout", [None, ("NHWC", "HWIO", "NHWC"), ("NWHC", "WIOH", "HCNW")])
# the whole batch in one chunk; one image per chunk; 3 images per chunk, the batch of 7 zero-padded to 9
@pytest.mark.parametrize("chunk_bytes", [None, 1, 86400])
def test_winograd_agrees_with_textbook(layout, chunk_bytes, monkeypatch):
    """Forward and all three gradients of "winograd" equal "textbook"'s in float64: any layout, odd sizes,
    asymmetric padding (cropping the cotangent in the input gradient), and a batch split into chunks."""
    from convgrad.ops import conv_winograd as winograd

    if chunk_bytes is not None:
        monkeypatch.setattr(winograd, "CHUNK_BYTES", chunk_bytes)
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((7, 4, 9, 8)), rng.standard_normal((5, 4, 3, 3)), rng.standard_normal(5)
    if layout is not None:
        x = np.transpose(x, ["NCHW".index(axis) for axis in layout[0]])
        w = np.transpose(w, ["OIHW".index(axis) for axis in layout[1]])
    options = dict(padding=((3, 0), (1, 2)), dimension_numbers=layout)

    def value_and_grads(formulation):
        def loss(x, w, b):
            return jnp.sum(jnp.sin(convgrad.conv(x, w, b, formulation=formulation, **options)))

        return jax.value_and_grad(loss, argnums=(0, 1, 2))(x, w, b)

    for got, want in zip(jax.tree.leaves(value_and_grads("winograd")), jax.tree.leaves(value_and_grads("textbook"))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    "x_shape, w_shape, options",
    [
        ((2, 3, 9, 8), (4, 3, 3, 3), dict(stride=2, padding=1)),  # four phases: 2x2, 2x1, 1x2, 1x1 taps
        ((2, 2, 11), (3, 2, 5), dict(stride=3, padding=(2,), dilation=2)),  # L = 3, D = 2: taps 0, 3 / 1, 4 / 2
        ((2, 2, 9, 9), (3, 2, 1, 1), dict(stride=2)),  # 1x1: three of the four phases are reached by no tap
        ((2, 4, 8, 7), (6, 2, 3, 2), dict(stride=(2, 3), padding=((-1, 2), (2, -1)), groups=2)),  # cropping
        ((2, 3, 7, 6), (4, 3, 4, 4), dict(stride=4, padding=3)),  # one tap per phase
        ((1, 2, 5, 6, 4), (3, 2, 3, 2, 2), dict(stride=(2, 2, 1), padding=1)),  # 3-d, channels-last below too
        ((2, 2, 3), (2, 2, 2), dict(stride=2, padding=((-5, 10),))),  # the padding crops all of x: dx is zero
        # jax 0.10.2's CPU compiler aborts the process on the textbook input gradient of this geometry (and on
        # jax.grad of the same lax convolution): algebraic_simplifier "Window dimensions do not match RHS shape"
        (
            (2, 2, 2, 9, 4),
            (2, 1, 1, 3, 2),
            dict(stride=(3, 3, 2), padding=((-1, 2), (0, -1), (1, 2)), dilation=(2, 2, 1), groups=2),
        ),
    ],
)
@pytest.mark.parametrize("channels_last", [False, True])
def test_polyphase_input_gradient_equals_the_loop_reference(x_shape, w_shape, options, channels_last):
    """The polyphase dx equals the loops' one-product-at-a-time dx in float64: strides 2 to 4, dilated taps,
    phases no tap reaches, negative padding (one cropping all of x), groups, 1-d to 3-d, both layouts."""
    from convgrad import loops

    rng = np.random.default_rng(2)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    n = len(x_shape) - 2
    layout = convgrad.ops.geometry.CHANNELS_LAST[n] if channels_last else None
    to_last = lambda a, axes: np.moveaxis(a, axes, (-1,) if len(axes) == 1 else (-1, -2)) if channels_last else a
    y, vjp = jax.vjp(
        lambda x, w: convgrad.conv(x, w, formulation="polyphase", dimension_numbers=layout, **options),
        to_last(x, (1,)),
        to_last(w, (0, 1)),
    )
    g = rng.standard_normal(y.shape)
    dx = np.asarray(vjp(jnp.asarray(g))[0])
    if channels_last:
        dx, g = np.moveaxis(dx, -1, 1), np.moveaxis(g, -1, 1)
    expected = loops.conv_vjp(x, w, None, g, **options)[0]
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the polyphase formulation is chosen on CPU only")
def test_auto_formulation_uses_polyphase_on_cpu_for_strided_3x3_layers():
    """With 32 channels "auto" computes a stride-2 3x3 layer's dx without inserting zeros (no lhs dilation);
    with 1x1 kernels or one input channel, where it was measured slower, dx stays the zero-inserted convolution."""

    def dilates(x_shape, w_shape, formulation):
        x, w = jnp.ones(x_shape, jnp.float32), jnp.ones(w_shape, jnp.float32)
        loss = lambda x: jnp.sum(convgrad.conv(x, w, stride=2, padding=1, formulation=formulation) ** 2)
        return "lhs_dilate=2x2" in jax.jit(jax.grad(loss)).lower(x).compile().as_text()

    assert dilates((2, 32, 8, 8), (32, 32, 3, 3), "textbook")
    assert not dilates((2, 32, 8, 8), (32, 32, 3, 3), "polyphase")
    assert not dilates((2, 32, 8, 8), (32, 32, 3, 3), "auto")
    assert dilates((2, 32, 8, 8), (32, 32, 1, 1), "auto")
    assert dilates((2, 1, 8, 8), (32, 1, 3, 3), "auto")


def test_unknown_formulation_is_a_clear_error():
    with pytest.raises(
        ValueError,
        match=r"^conv: formulation='fast' is not one of \['auto', 'im2col', 'polyphase', 'textbook', 'winograd'\]",
    ):
        convgrad.conv(X, W, formulation="fast")


@pytest.mark.parametrize(
    "w_shape, options",
    [
        ((4, 3, 3, 3), dict(stride=2)),
        ((4, 3, 3, 3), dict(dilation=2)),
        ((6, 1, 3, 3), dict(groups=3)),
        ((4, 3, 5, 5), {}),
    ],
)
def test_winograd_outside_its_geometry_is_a_clear_error(w_shape, options):
    x = np.ones((1, 3, 8, 8), np.float32)
    with pytest.raises(ValueError, match=r"^conv: formulation='winograd' computes 2-D 3x3 convolutions with stride 1"):
        convgrad.conv(x, np.ones(w_shape, np.float32), formulation="winograd", **options)


# ---------------------------------------------------------------------------- padding modes, lax padding, unbatched

X5, W3 = jnp.array([[[1.0, 2.0, 3.0, 4.0, 5.0]]]), jnp.ones((1, 1, 3))


def test_reflect_padding_by_hand():
    """x = [1..5], 3 ones, padding 1 reflect: x_pad = [2, 1, 2, 3, 4, 5, 4], y = [5, 6, 9, 12, 13].

    With g = ones, x_pad's gradient counts the windows over each sample, [1, 2, 3, 3, 3, 2, 1]; reflect folds
    the two border samples (copies of x[1] and x[3]) back: dx = [2, 1 + 3, 3, 3 + 1, 2] = [2, 4, 3, 4, 2].
    """
    y, vjp = jax.vjp(lambda x: convgrad.conv(x, W3, padding=1, padding_mode="reflect"), X5)
    np.testing.assert_array_equal(y[0, 0], [5, 6, 9, 12, 13])
    np.testing.assert_array_equal(vjp(jnp.ones_like(y))[0][0, 0], [2, 4, 3, 4, 2])


def test_negative_padding_crops_by_hand():
    """padding (-1, 1) over [1..5] with 2 ones: x_pad = [2, 3, 4, 5, 0], y = [5, 7, 9, 5]; the cropped x[0] gets
    no gradient and the others the windows over them, dx = [0, 1, 2, 2, 2]."""
    y, vjp = jax.vjp(lambda x: convgrad.conv(x, jnp.ones((1, 1, 2)), padding=((-1, 1),)), X5)
    np.testing.assert_array_equal(y[0, 0], [5, 7, 9, 5])
    np.testing.assert_array_equal(vjp(jnp.ones_like(y))[0][0, 0], [0, 1, 2, 2, 2])


def test_same_lower_puts_the_odd_zero_low():
    """x = [1, 2, 3, 4], w = [1, 10]: one zero of padding; SAME puts it high ([21, 32, 43, 4]), SAME_LOWER low
    ([10, 21, 32, 43]), as lax does."""
    x, w = jnp.array([[[1.0, 2.0, 3.0, 4.0]]]), jnp.array([[[1.0, 10.0]]])
    np.testing.assert_array_equal(convgrad.conv(x, w, padding="SAME")[0, 0], [21, 32, 43, 4])
    np.testing.assert_array_equal(convgrad.conv(x, w, padding="same_lower")[0, 0], [10, 21, 32, 43])
    np.testing.assert_array_equal(convgrad.conv(x, w, padding="SAME_LOWER"), autodiff.conv(x, w, padding="SAME_LOWER"))


def test_no_window_fits_gives_an_empty_output_and_zero_gradients():
    """A 3x3 kernel over 2 rows: y is (N, O, 0, W'), as lax returns; dx and dw are zeros, db the empty sum."""
    x, w, b = jnp.ones((2, 4, 2, 8)), jnp.ones((6, 4, 3, 3)), jnp.ones(6)
    y, vjp = jax.vjp(convgrad.conv, x, w, b)
    assert y.shape == (2, 6, 0, 6) == autodiff.conv(x, w, b).shape
    dx, dw, db = vjp(jnp.ones_like(y))
    assert dx.shape == x.shape and dw.shape == w.shape and db.shape == b.shape
    assert not dx.any() and not dw.any() and not db.any()


@pytest.mark.parametrize("layout", [None, ("NHWC", "HWIO", "NHWC"), ("HWCN", "OIHW", "CNHW")])
def test_unbatched_input_is_one_example(layout):
    """PyTorch's rule: x with one axis fewer than w is one example; y and the gradients are the batch-of-one's,
    without the batch axis (which sits where the layout's N does)."""
    rng = np.random.default_rng(3)
    lhs, rhs, out = layout or ("NCHW", "OIHW", "NCHW")
    x = np.transpose(rng.standard_normal((1, 4, 6, 5)), ["NCHW".index(c) for c in lhs])
    w = np.transpose(rng.standard_normal((6, 2, 3, 2)), ["OIHW".index(c) for c in rhs])
    b = rng.standard_normal(6)
    kw = dict(stride=(2, 1), padding=1, groups=2, dimension_numbers=layout)
    single = np.squeeze(x, lhs.index("N"))
    y, vjp = jax.vjp(lambda x, w, b: convgrad.conv(x, w, b, **kw), single, w, b)
    y1, vjp1 = jax.vjp(lambda x, w, b: convgrad.conv(x, w, b, **kw), x, w, b)
    np.testing.assert_allclose(y, np.squeeze(y1, out.index("N")), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    grads, grads1 = vjp(g), vjp1(np.expand_dims(g, out.index("N")))
    np.testing.assert_allclose(grads[0], np.squeeze(grads1[0], lhs.index("N")), rtol=1e-12)
    np.testing.assert_allclose(grads[1], grads1[1], rtol=1e-12)
    np.testing.assert_allclose(grads[2], grads1[2], rtol=1e-12)


TORCH_PADDING_CASES = [
    # (x shape, w shape, Conv options)
    ((2, 4, 7, 6), (6, 2, 3, 3), dict(stride=2, padding=(2, 1), dilation=(1, 2), groups=2)),
    ((2, 3, 9), (4, 3, 4), dict(stride=1, padding=3, dilation=2, groups=1)),
    ((1, 2, 4, 5, 3), (2, 2, 2, 3, 2), dict(stride=1, padding=1, dilation=1, groups=1)),
    ((3, 5, 6), (4, 3, 3, 2), dict(stride=1, padding="same", dilation=1, groups=1)),  # unbatched, "same"
]


@pytest.mark.parametrize("mode", ["zeros", "reflect", "replicate", "circular"])
@pytest.mark.parametrize(("x_shape", "w_shape", "options"), TORCH_PADDING_CASES, ids=["2d", "1d", "3d", "unbatched"])
def test_padding_modes_match_torch(mode, x_shape, w_shape, options):
    """torch.nn.Conv*d(padding_mode=...): the output and the gradients of x, w and b, in float64."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(4)
    x, w, b = rng.standard_normal(x_shape), rng.standard_normal(w_shape), rng.standard_normal(w_shape[0])
    y, vjp = jax.vjp(lambda x, w, b: convgrad.conv(x, w, b, padding_mode=mode, **options), x, w, b)
    n = len(w_shape) - 2
    module = getattr(torch.nn, f"Conv{n}d")(
        w_shape[1] * options["groups"], w_shape[0], w_shape[2:], padding_mode=mode, dtype=torch.float64, **options
    )
    with torch.no_grad():
        module.weight.copy_(torch.tensor(w))
        module.bias.copy_(torch.tensor(b))
    xt = torch.tensor(x, requires_grad=True)
    yt = module(xt)
    g = rng.standard_normal(tuple(yt.shape))
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    dx, dw, db = vjp(g)
    np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dw, module.weight.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(db, module.bias.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="the im2col formulation is chosen on CPU only")
def test_auto_skips_the_im2col_weight_gradient_whose_patches_outgrow_its_operands():
    """One input channel and a 5x5 kernel (25 patch rows) but one output channel: the patch matrix would be ~10x
    the input and cotangent, so dw is a convolution; with 8 output channels (~2.6x) it stays im2col. The
    forward stays im2col either way (it builds no patch matrix)."""
    assert _convolutions((4, 1, 10, 10), (1, 1, 5, 5), "auto", wrt=()) == 0
    assert _convolutions((4, 1, 10, 10), (1, 1, 5, 5), "auto") == 1
    assert _convolutions((4, 1, 10, 10), (8, 1, 5, 5), "auto") == 0


MODULES = ["conv", "conv_textbook", "conv_transpose", "conv_lax", "padding", "conv_formulations", "conv_im2col"]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    """The Examples blocks of the convolution family's docstrings run and print what they show."""
    import doctest
    import importlib

    with jax.enable_x64(False):
        failures, _ = doctest.testmod(importlib.import_module(f"convgrad.ops.{module}"), optionflags=doctest.ELLIPSIS)
    assert failures == 0
