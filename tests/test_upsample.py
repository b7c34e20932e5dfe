"""Facts about convgrad.upsample beyond the registry's checks: hand-computed grids, PyTorch's rules, its errors."""

from __future__ import annotations

import doctest
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad import testing
from convgrad.ops import upsample as upsample_module
from convgrad.ops.upsample import interpolation_matrix


def test_docstring_examples():
    """The examples in upsample's docstring run and print what they say."""
    with jax.enable_x64(False):  # the examples show the default float32
        failures, attempted = doctest.testmod(upsample_module)
    assert attempted > 0 and failures == 0


def vjp_of(x, g, **options):
    y, pullback = jax.vjp(lambda x: convgrad.upsample(x, **options), jnp.asarray(x, jnp.float64))
    return np.asarray(y), np.asarray(pullback(jnp.asarray(g, jnp.float64))[0])


# ---------------------------------------------------------------------------- hand-computed examples


def test_nearest_2x_copies_each_pixel_into_a_block_and_the_gradient_sums_the_block():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    g = np.arange(16.0).reshape(1, 1, 4, 4)
    y, dx = vjp_of(x, g, scale_factor=2)
    np.testing.assert_array_equal(y[0, 0], [[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]])
    # dx[0, 0] = g[0:2, 0:2].sum() = 0 + 1 + 4 + 5, dx[0, 1] = 2 + 3 + 6 + 7, ...
    np.testing.assert_array_equal(dx[0, 0], [[10, 18], [42, 50]])


def test_bilinear_align_corners_puts_midpoints_between_corners_and_spreads_the_gradient_back():
    x = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    y, dx = vjp_of(x, np.ones((1, 1, 3, 3)), size=3, mode="bilinear", align_corners=True)
    np.testing.assert_array_equal(y[0, 0], [[1, 1.5, 2], [2, 2.5, 3], [3, 3.5, 4]])
    # each corner: itself (1) + two edge midpoints (1/2 each) + the centre (1/4)
    np.testing.assert_array_equal(dx[0, 0], [[2.25, 2.25], [2.25, 2.25]])


def test_linear_uses_the_given_scale_factor_not_in_over_out():
    """in = 3, s = 1.5: out = floor(4.5) = 4 and r = 1/1.5, while size=4 gives r = 3/4: different samples.

    On x = [0, 1, 2] linear interpolation returns the source coordinate itself:
    with s, t = (o + 1/2) / 1.5 - 1/2 = 0 (clamped), 1/2, 7/6, 11/6; with
    size=4, t = 3/4 (o + 1/2) - 1/2 = 0 (clamped), 5/8, 11/8, 17/8 -> clamped to 2.
    """
    x = np.array([[[0.0, 1.0, 2.0]]])
    by_scale = np.asarray(convgrad.upsample(x, scale_factor=1.5, mode="linear"))
    by_size = np.asarray(convgrad.upsample(x, size=4, mode="linear"))
    np.testing.assert_allclose(by_scale[0, 0], [0.0, 0.5, 7 / 6, 11 / 6], rtol=1e-15)
    np.testing.assert_allclose(by_size[0, 0], [0.0, 0.625, 1.375, 2.0], rtol=1e-15)


def test_linear_downsampling_averages_pairs_and_halves_the_gradient():
    """in = 4, size = 2: t = 2 (o + 1/2) - 1/2 = 1/2, 5/2: the mean of samples (0, 1) and (2, 3)."""
    y, dx = vjp_of(np.array([[[1.0, 3.0, 10.0, 20.0]]]), np.array([[[1.0, 2.0]]]), size=2, mode="linear")
    np.testing.assert_array_equal(y[0, 0], [2.0, 15.0])
    np.testing.assert_array_equal(dx[0, 0], [0.5, 0.5, 1.0, 1.0])


def test_nearest_and_nearest_exact_pick_different_samples():
    """3 -> 2 (r = 3/2): nearest floor(o r) = 0, 1; nearest-exact floor((o + 1/2) r) = 0, 2 (the centres)."""
    x = np.array([[[10.0, 20.0, 30.0]]])
    np.testing.assert_array_equal(convgrad.upsample(x, size=2)[0, 0], [10.0, 20.0])
    np.testing.assert_array_equal(convgrad.upsample(x, size=2, mode="nearest-exact")[0, 0], [10.0, 30.0])
    # downsampling by 2: nearest-exact reads samples 1 and 3; samples 0 and 2 get no gradient
    y, dx = vjp_of(np.array([[[1.0, 2.0, 3.0, 4.0]]]), np.array([[[5.0, 7.0]]]), scale_factor=0.5, mode="nearest-exact")
    np.testing.assert_array_equal(y[0, 0], [2.0, 4.0])
    np.testing.assert_array_equal(dx[0, 0], [0.0, 5.0, 0.0, 7.0])


@pytest.mark.parametrize("mode", ["nearest", "linear"])
def test_an_axis_whose_size_does_not_change_is_copied_whatever_the_scale(mode):
    """in = 4, s = 1.2: out = floor(4.8) = 4 = in, and PyTorch's rules copy the axis (not floor(o / 1.2))."""
    x = np.array([[[1.0, 2.0, 3.0, 4.0]]])
    y, dx = vjp_of(x, x * 10, scale_factor=1.2, mode=mode)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(dx, x * 10)


def test_nearest_out_twice_in_uses_o_over_2_whatever_the_scale():
    """in = 4, s = 2.1: out = 8 = 2 in, so output o reads o // 2 (floor(o / 2.1) would read 0 at o = 2)."""
    y = convgrad.upsample(np.array([[[1.0, 2.0, 3.0, 4.0]]]), scale_factor=2.1)
    np.testing.assert_array_equal(y[0, 0], [1, 1, 2, 2, 3, 3, 4, 4])


# ---------------------------------------------------------------------------- properties

CONFIGURATIONS = [
    ((2, 3, 5), {"scale_factor": 2.5, "mode": "nearest"}),
    ((2, 3, 4, 6), {"size": (7, 3), "mode": "nearest-exact"}),
    ((1, 2, 3, 4), {"scale_factor": (1.5, 0.5), "mode": "bilinear"}),
    ((1, 2, 3, 4), {"size": (5, 2), "mode": "bilinear", "align_corners": True}),
    ((1, 2, 2, 3, 4), {"scale_factor": (2, 1.7, 0.5), "mode": "trilinear"}),
]


@pytest.mark.parametrize(("shape", "options"), CONFIGURATIONS)
def test_constants_stay_constant_and_the_gradient_keeps_its_total(shape, options):
    """Every row of every A_d sums to 1: a constant input gives the constant, and sum(dx) = sum(g)."""
    y, dx = vjp_of(
        np.full(shape, 3.0),
        np.ones(jax.eval_shape(lambda: convgrad.upsample(jnp.ones(shape), **options)).shape),
        **options,
    )
    np.testing.assert_allclose(y, 3.0, rtol=1e-15)
    np.testing.assert_allclose(dx.sum(), y.size, rtol=1e-14)


@pytest.mark.parametrize(("shape", "options"), CONFIGURATIONS)
def test_channels_last_is_channel_first_with_the_axes_moved(shape, options):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    y = np.asarray(convgrad.upsample(x, **options))
    g = rng.standard_normal(y.shape)
    y_first, dx_first = vjp_of(x, g, **options)
    y_last, dx_last = vjp_of(np.moveaxis(x, 1, -1), np.moveaxis(g, 1, -1), channel_axis=-1, **options)
    np.testing.assert_allclose(np.moveaxis(y_last, -1, 1), y_first, rtol=1e-15)
    np.testing.assert_allclose(np.moveaxis(dx_last, -1, 1), dx_first, rtol=1e-14)


@pytest.mark.parametrize("shape", [(0, 2, 3, 3), (2, 0, 3, 3)])
def test_zero_size_batch_or_channels(shape):
    y, dx = vjp_of(np.zeros(shape), np.zeros((*shape[:2], 6, 6)), scale_factor=2, mode="bilinear")
    assert y.shape == (*shape[:2], 6, 6) and dx.shape == shape


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact", "linear"])
def test_each_matrix_row_has_one_or_two_sources_whose_weights_sum_to_one(mode):
    """Nearest rows are one 1; linear rows at most two nonzeros, in [0, 1], on neighbouring samples."""
    for in_size, out_size, align in itertools.product(range(1, 6), range(1, 9), (False, True)):
        if mode != "linear" and align:
            continue
        matrix = interpolation_matrix(mode, in_size, out_size, None, align)
        if matrix is None:
            assert out_size == in_size
            continue
        np.testing.assert_allclose(matrix.sum(axis=1), 1.0, rtol=1e-15)
        for row in matrix:
            sources = np.flatnonzero(row)
            assert len(sources) == 1 if mode != "linear" else 1 <= len(sources) <= 2
            assert sources[-1] - sources[0] <= 1 and np.all((row >= 0) & (row <= 1))


# ---------------------------------------------------------------------------- PyTorch

TORCH_CONFIGURATIONS = 120
LINEAR_MODE = {1: "linear", 2: "bilinear", 3: "trilinear"}
SCALES = [0.3, 0.5, 0.7, 1.0, 1.2, 1.5, 1 / 3, 2.0, 2.1, 2.5, 2.9, 3.0, 4.0]


def random_configuration(rng):
    """Shape, options, and whether PyTorch's 1-D / 3-D nearest forward skips the shortcut its backward takes."""
    n = int(rng.integers(1, 4))
    spatial = tuple(int(s) for s in rng.integers(1, 7 if n < 3 else 5, n))
    mode = str(rng.choice(["nearest", "nearest-exact", LINEAR_MODE[n]]))
    options = {"mode": mode}
    if mode == LINEAR_MODE[n] and rng.random() < 0.5:
        options["align_corners"] = True
    if rng.random() < 0.5:
        options["size"] = tuple(int(s) for s in rng.integers(1, 10 if n < 3 else 6, n))
        outputs, scales = options["size"], (None,) * n
    else:
        scales = tuple(float(s) if i * s >= 1 else 1.0 for i, s in zip(spatial, rng.choice(SCALES, n)))
        options["scale_factor"] = scales
        outputs = tuple(int(np.floor(i * s)) for i, s in zip(spatial, scales))
    shortcut = [(o == i and s != 1.0) or (o == 2 * i and s != 2.0) for i, o, s in zip(spatial, outputs, scales) if s]
    skipped = mode == "nearest" and n != 2 and any(shortcut)
    return (int(rng.integers(1, 3)), int(rng.integers(1, 4)), *spatial), options, skipped


def test_matches_pytorch_interpolate_in_float64():
    """120 random configurations: values and gradients equal F.interpolate's (autograd) in float64.

    Where PyTorch's 1-D or 3-D nearest forward skips the shortcut that its
    backward takes (see the docstring), the gradients still equal PyTorch's and
    the values are checked as the adjoint of PyTorch's backward:
    ``<upsample(x), g> = <x, torch_dx(g)>``.
    """
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(17)
    skipped = 0
    for _ in range(TORCH_CONFIGURATIONS):
        shape, options, forward_differs = random_configuration(rng)
        x = rng.standard_normal(shape)
        xt = torch.tensor(x, requires_grad=True)
        yt = F.interpolate(xt, **options)
        g = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(g))
        y, dx = vjp_of(x, g, **options)
        what = f"{shape} {options}"
        testing.assert_close(jnp.asarray(dx), xt.grad.numpy(), what=f"{what}: gradient vs PyTorch")
        if forward_differs:
            skipped += 1
            np.testing.assert_allclose(np.vdot(y, g), np.vdot(x, xt.grad.numpy()), rtol=1e-12, err_msg=what)
        else:
            testing.assert_close(jnp.asarray(y), yt.detach().numpy(), what=f"{what}: values vs PyTorch")
    assert skipped < TORCH_CONFIGURATIONS // 4


def test_pytorch_nearest_1d_forward_skips_the_shortcut_its_backward_takes():
    """The documented difference: in = 3, s = 1.2 (out = 3). PyTorch's 1-D forward reads floor(o / 1.2) = 0, 0, 1,
    its backward routes g as a copy; convgrad copies both ways, as PyTorch's 2-D kernel does."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    xt = torch.tensor([[[1.0, 2.0, 3.0]]], dtype=torch.float64, requires_grad=True)
    yt = F.interpolate(xt, scale_factor=1.2)
    yt.backward(torch.tensor([[[10.0, 20.0, 30.0]]], dtype=torch.float64))
    assert yt.tolist() == [[[1.0, 1.0, 2.0]]] and xt.grad.tolist() == [[[10.0, 20.0, 30.0]]]
    y2d = F.interpolate(xt.detach()[:, :, None, :], scale_factor=(1.0, 1.2))
    assert y2d.tolist() == [[[[1.0, 2.0, 3.0]]]]
    y, dx = vjp_of(np.array([[[1.0, 2.0, 3.0]]]), np.array([[[10.0, 20.0, 30.0]]]), scale_factor=1.2)
    assert y.tolist() == [[[1.0, 2.0, 3.0]]] and dx.tolist() == [[[10.0, 20.0, 30.0]]]


# ---------------------------------------------------------------------------- errors

X1, X2, X3 = np.ones((1, 1, 4)), np.ones((1, 1, 4, 4)), np.ones((1, 1, 2, 2, 2))


@pytest.mark.parametrize(
    ("x", "kwargs", "error", "message"),
    [
        (X2, {}, ValueError, r"give exactly one of size and scale_factor, got size=None, scale_factor=None"),
        (X2, {"size": 8, "scale_factor": 2}, ValueError, r"give exactly one of size and scale_factor, got size=8"),
        (
            X2,
            {"size": 8, "align_corners": True},
            ValueError,
            r"align_corners is only for the linear modes, got align_corners=True with mode='nearest'",
        ),
        (
            X2,
            {"size": 8, "mode": "nearest-exact", "align_corners": False},
            ValueError,
            r"align_corners is only for the linear modes",
        ),
        (
            X1,
            {"size": 8, "mode": "bilinear"},
            ValueError,
            r"mode='bilinear' interpolates 2 spatial dim\(s\), but x has 1 .* use 'linear'",
        ),
        (
            X2,
            {"size": 8, "mode": "trilinear"},
            ValueError,
            r"mode='trilinear' interpolates 3 spatial dim\(s\), but x has 2 .* use 'bilinear'",
        ),
        (X3, {"size": 8, "mode": "linear"}, ValueError, r"mode='linear' interpolates 1 spatial dim\(s\), but x has 3"),
        (
            X2,
            {"size": 8, "mode": "bicubic"},
            ValueError,
            r"mode='bicubic' is not one of 'nearest', 'nearest-exact', 'linear'",
        ),
        (X2, {"size": 8, "mode": None}, TypeError, r"mode must be a string"),
        (
            X2,
            {"size": 8, "mode": "bilinear", "align_corners": 1},
            TypeError,
            r"align_corners must be a bool or None, got align_corners=1",
        ),
        (
            X2,
            {"size": (8, 8, 8)},
            ValueError,
            r"size must be an int or 2 ints \(one per spatial dim\), got size=\(8, 8, 8\)",
        ),
        (X2, {"size": 0}, ValueError, r"size must be positive, got size=0"),
        (X2, {"size": (4, -1)}, ValueError, r"size must be an int or 2 ints each >= 1, got size=\(4, -1\)"),
        (X2, {"size": 2.5}, TypeError, r"size must be an int, got size=2.5"),
        (
            X2,
            {"scale_factor": 0},
            ValueError,
            r"scale_factor must be a positive number or 2 of them .* got scale_factor=0",
        ),
        (X2, {"scale_factor": -2.0}, ValueError, r"scale_factor must be .* got scale_factor=-2.0"),
        (X2, {"scale_factor": float("nan")}, ValueError, r"scale_factor must be .* got scale_factor=nan"),
        (X2, {"scale_factor": float("inf")}, ValueError, r"scale_factor must be .* got scale_factor=inf"),
        (
            X2,
            {"scale_factor": (2, 2, 2)},
            ValueError,
            r"scale_factor must be a positive number or 2 of them .* got scale_factor=\(2, 2, 2\)",
        ),
        (X2, {"scale_factor": True}, TypeError, r"scale_factor must be .* got scale_factor=True"),
        (X2, {"scale_factor": "2"}, TypeError, r"scale_factor must be .* got scale_factor='2'"),
        (
            X2,
            {"scale_factor": 0.2},
            ValueError,
            r"scale_factor=0.2 gives an empty output along spatial dim 0: floor\(4 \* 0.2\) = 0",
        ),
        (
            np.ones((4, 4)),
            {"size": 2},
            ValueError,
            r"x must have 3 to 5 dims \(\(N, C, \*spatial\) with 1 to 3 spatial dims\), got x.shape=\(4, 4\)",
        ),
        (
            np.ones((1, 1, 0, 3)),
            {"size": 2},
            ValueError,
            r"every spatial dim of x must be at least 1, got x.shape=\(1, 1, 0, 3\)",
        ),
        (np.ones((1, 1, 4), np.int32), {"size": 2}, TypeError, r"x must have a real floating dtype"),
        (X2, {"size": 2, "channel_axis": 0}, ValueError, r"channel_axis must be 1 \(N, C, \*spatial\) or -1"),
    ],
)
def test_bad_input_raises_a_clear_error(x, kwargs, error, message):
    with pytest.raises(error, match=r"^upsample: " + message):
        convgrad.upsample(x, **kwargs)
