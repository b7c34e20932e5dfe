"""Facts about convgrad.conv_transpose beyond the registry's four-way checks.

It is the transpose (adjoint) of conv and equals conv's input gradient; it is a
correlation of the padded, zero-inserted input with the flipped, channel-swapped
kernel (the seed example, step by step); it agrees with PyTorch's
ConvTranspose on hand-computed cases; the checks catch a missing flip, a missing
swap and an averaged bias gradient; bad inputs raise clear errors.
"""

from __future__ import annotations

import doctest
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax import lax

import convgrad
from convgrad import autodiff, loops, testing
from convgrad.ops import conv_textbook
from convgrad.ops import conv_transpose as conv_transpose_module
from convgrad.registry import OPS
from convgrad.registry.convolutions import conv_transpose_case
from convgrad.testing.strategies import HypothesisDraw
from convgrad.verify import verify_case


def _draw_config(draw: HypothesisDraw):
    """Shapes of ``x (N, C, *in)``, ``w (C, O/G, *k)``, ``z (N, O, *out)`` and the options, from drawn ints.

    ``output_padding < stride``: then conv maps ``out`` samples back to exactly ``in`` (the adjoint is exact).
    """
    n = draw.integer(1, 3)
    groups = draw.choice([1, 2, 3])
    group_in, group_out = draw.integer(1, 2), draw.integer(1, 2)
    dims = []
    for _ in range(n):
        i, k, s, d = draw.integer(1, 3), draw.integer(1, 3), draw.integer(1, 3), draw.integer(1, 2)
        e = draw.integer(0, s - 1)
        footprint = (i - 1) * s + (k - 1) * d + 1
        p = draw.integer(0, min(2, (footprint + e - 1) // 2))
        dims.append((i, k, s, p, e, d, footprint - 2 * p + e))
    in_spatial, kernel, stride, padding, output_padding, dilation, out_spatial = zip(*dims)
    batch = draw.integer(1, 2)
    conv_options = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (
        (batch, groups * group_in, *in_spatial),
        (groups * group_in, group_out, *kernel),
        (batch, groups * group_out, *out_spatial),
        conv_options,
        output_padding,
    )


@given(data=st.data())
def test_adjoint_of_conv(data):
    """<conv(z, w), x> == <z, conv_transpose(x, w)> for the same w, stride, padding, dilation and groups."""
    x_shape, w_shape, z_shape, options, output_padding = _draw_config(HypothesisDraw(data))
    w = jnp.asarray(np.random.default_rng(0).standard_normal(w_shape))
    testing.check_adjoint(
        lambda z: convgrad.conv(z, w, **options),
        lambda x: convgrad.conv_transpose(x, w, output_padding=output_padding, **options),
        z_shape,
        x_shape,
        dtype=jnp.float64,
    )


@given(data=st.data())
def test_equals_the_input_gradient_of_conv(data):
    """conv_transpose(x, w) is the VJP of z -> conv(z, w) at cotangent x."""
    x_shape, w_shape, z_shape, options, output_padding = _draw_config(HypothesisDraw(data))
    rng = np.random.default_rng(1)
    x, w, z = (jnp.asarray(rng.standard_normal(shape)) for shape in (x_shape, w_shape, z_shape))
    _, vjp = jax.vjp(lambda z: convgrad.conv(z, w, **options), z)
    testing.assert_close(
        convgrad.conv_transpose(x, w, output_padding=output_padding, **options),
        vjp(x)[0],
        what="conv_transpose vs the input gradient of conv",
    )


def _explicit_steps(x, w, *, stride, padding, output_padding, dilation, groups):
    """zero_insert -> pad by d (k - 1) - p low, d (k - 1) - p + output_padding high -> stride-1 correlation
    (padding VALID) with flip_and_swap(w) at dilation d. Returns every intermediate."""
    x_up = convgrad.zero_insert(x, stride)
    pads = [
        (d * (k - 1) - p, d * (k - 1) - p + e, 0) for k, p, e, d in zip(w.shape[2:], padding, output_padding, dilation)
    ]
    x_pad = lax.pad(x_up, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *pads])  # a negative side crops
    w_t = convgrad.flip_and_swap(w, groups)
    y = lax.conv_general_dilated(
        x_pad, w_t, (1,) * len(stride), "VALID", rhs_dilation=dilation, feature_group_count=groups
    )
    return x_up, x_pad, w_t, y


def test_seed_example_step_by_step():
    """3x7x7 * (one 3x3x3 filter, stride 2) -> 1x3x3; conv_transpose maps 1x3x3 back to 3x7x7 with the same w:
    zero-inserted 1x5x5, padded to 1x9x9 (2 each side), kernel flipped and swapped to (3, 1, 3, 3)."""
    rng = np.random.default_rng(0)
    w = jnp.asarray(rng.standard_normal((1, 3, 3, 3)))
    assert convgrad.conv(jnp.zeros((1, 3, 7, 7)), w, stride=2).shape == (1, 1, 3, 3)

    z = jnp.asarray(rng.standard_normal((1, 1, 3, 3)))
    options = dict(stride=(2, 2), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1)
    z_up, z_pad, w_t, y = _explicit_steps(z, w, **options)
    assert z_up.shape == (1, 1, 5, 5)
    np.testing.assert_array_equal(z_up[..., ::2, ::2], z)  # the samples, s apart ...
    assert jnp.count_nonzero(z_up) == jnp.count_nonzero(z)  # ... and zeros between them
    assert z_pad.shape == (1, 1, 9, 9)
    assert w_t.shape == (3, 1, 3, 3)
    np.testing.assert_array_equal(w_t[:, 0], w[0, :, ::-1, ::-1])
    assert y.shape == (1, 3, 7, 7)
    testing.assert_close(convgrad.conv_transpose(z, w, stride=2), y, what="conv_transpose vs explicit steps")


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "options"),
    [
        ((2, 3, 4), (3, 2, 3), dict(stride=(3,), padding=(1,), output_padding=(2,), dilation=(1,), groups=1)),
        (
            (1, 4, 3, 4),
            (4, 3, 2, 3),
            dict(stride=(2, 1), padding=(2, 1), output_padding=(1, 1), dilation=(2, 2), groups=2),
        ),
        (
            (1, 2, 2, 3, 2),
            (2, 2, 1, 2, 2),
            dict(stride=(2, 1, 3), padding=(1, 0, 1), output_padding=(1, 0, 0), dilation=(1, 3, 1), groups=2),
        ),
    ],
    ids=["1d", "2d-groups-dilation", "3d-padding-beyond-kernel"],
)
def test_is_a_correlation_over_the_zero_inserted_input(x_shape, w_shape, options):
    """conv_transpose == correlation(pad(zero_insert(x)), flip_and_swap(w)), with groups, dilation, output_padding."""
    rng = np.random.default_rng(2)
    x, w = jnp.asarray(rng.standard_normal(x_shape)), jnp.asarray(rng.standard_normal(w_shape))
    *_, y = _explicit_steps(x, w, **options)
    testing.assert_close(convgrad.conv_transpose(x, w, **options), y, what="conv_transpose vs explicit steps")


def test_docstring_examples():
    """The seed example in conv_transpose's docstring (and zero_insert's) runs and prints what it says."""
    with jax.enable_x64(False):  # the examples show the default float32
        failures, attempted = doctest.testmod(conv_transpose_module)
    assert attempted > 0 and failures == 0


# PyTorch's ConvTranspose1d semantics, computed by hand. x = [1, 2], w = [1, 10, 100] (one channel each).
# stride 2: x[0] drops w at positions 0, 1, 2 and x[1] drops 2 w at 2, 3, 4, overlapping at 2:
#   y_full = [1, 10, 100, 0, 0] + [0, 0, 2, 20, 200] = [1, 10, 102, 20, 200]   (out = (2-1)*2 + 3 = 5)
# padding 1 crops one sample from each side: [10, 102, 20]                       (out = 5 - 2 = 3)
# padding 1, output_padding 1 keeps one more at the high end: [10, 102, 20, 200] (out = 4)
# padding 0, output_padding 1 runs past y_full: [1, 10, 102, 20, 200, 0]         (out = 6)
# stride 1, dilation 2 (taps 2 apart): x[0] w -> 0, 2, 4 and x[1] w -> 1, 3, 5:
#   [1, 0, 10, 0, 100, 0] + [0, 2, 0, 20, 0, 200] = [1, 2, 10, 20, 100, 200]
# and output_padding 1 (allowed: 1 < max(stride 1, dilation 2)): [1, 2, 10, 20, 100, 200, 0]
HAND_CASES = [
    (dict(stride=2), [1, 10, 102, 20, 200]),
    (dict(stride=2, padding=1), [10, 102, 20]),
    (dict(stride=2, padding=1, output_padding=1), [10, 102, 20, 200]),
    (dict(stride=2, output_padding=1), [1, 10, 102, 20, 200, 0]),
    (dict(dilation=2), [1, 2, 10, 20, 100, 200]),
    (dict(dilation=2, output_padding=1), [1, 2, 10, 20, 100, 200, 0]),
]


@pytest.mark.parametrize(("options", "expected"), HAND_CASES, ids=[str(o) for o, _ in HAND_CASES])
def test_hand_computed_1d(options, expected):
    x, w = jnp.array([[[1.0, 2.0]]]), jnp.array([[[1.0, 10.0, 100.0]]])
    np.testing.assert_array_equal(convgrad.conv_transpose(x, w, **options)[0, 0], expected)
    np.testing.assert_array_equal(loops.conv_transpose(x, w, **options)[0, 0], expected)


def test_hand_computed_gradients_with_output_padding_at_least_stride():
    """x = [1, 2], w = [1, 10, 100], stride 1, dilation 2, output_padding 1, g = [1, 2, 3, 4, 5, 6, 7].

    dx[i] = sum_k g[i + 2k] w[k]: dx[0] = 1 + 10*3 + 100*5 = 531, dx[1] = 2 + 10*4 + 100*6 = 642; g[6] = 7 sits
    in the output_padding sample, which no input reached, so it reaches no input (the forward conv of g would
    have a third output: it is cropped). dw[k] = sum_i x[i] g[i + 2k] = [1+4, 3+8, 5+12] = [5, 11, 17].
    db = sum g = 28.
    """
    x, w, b = jnp.array([[[1.0, 2.0]]]), jnp.array([[[1.0, 10.0, 100.0]]]), jnp.zeros(1)
    _, vjp = jax.vjp(lambda x, w, b: convgrad.conv_transpose(x, w, b, dilation=2, output_padding=1), x, w, b)
    dx, dw, db = vjp(jnp.arange(1.0, 8.0).reshape(1, 1, 7))
    np.testing.assert_array_equal(dx[0, 0], [531, 642])
    np.testing.assert_array_equal(dw[0, 0], [5, 11, 17])
    np.testing.assert_array_equal(db, [28])


def test_hand_computed_channels_and_groups():
    """Two input channels x = [[1, 2], [3, 4]], w[0] = [1, 1], w[1] = [10, 0] (w (2, 1, 2)), stride 1.

    groups 1: one output channel, the channels add: [1, 3, 2] + [30, 40, 0] = [31, 43, 2].
    groups 2: channel c feeds only output channel c: [[1, 3, 2], [30, 40, 0]], plus b = [0.5, -1].
    """
    x = jnp.array([[[1.0, 2.0], [3.0, 4.0]]])
    w = jnp.array([[[1.0, 1.0]], [[10.0, 0.0]]])
    np.testing.assert_array_equal(convgrad.conv_transpose(x, w)[0], [[31, 43, 2]])
    y = convgrad.conv_transpose(x, w, jnp.array([0.5, -1.0]), groups=2)
    np.testing.assert_array_equal(y[0], [[1.5, 3.5, 2.5], [29, 39, -1]])


# ---------------------------------------------------------------------------- mutations

# C/G == O/G == 2, so a kernel that is flipped but not swapped still has the right shape
MUTATION_CASE = conv_transpose_case((2, 4, 4, 3), (4, 2, 3, 2), stride=2, padding=1, output_padding=1, groups=2)


def _swap_only(w, groups=1, rhs_spec=None):
    blocks = w.reshape(groups, w.shape[0] // groups, *w.shape[1:])
    return jnp.swapaxes(blocks, 1, 2).reshape(-1, w.shape[0] // groups, *w.shape[2:])


def _flip_only(w, groups=1, rhs_spec=None):
    return lax.rev(w, tuple(range(2, w.ndim)))


def _bias_mean(g, geometry):
    return jnp.mean(g, axis=(0, *range(2, g.ndim)))


# conv_transpose's forward is conv_input_grad and its backward uses conv_bias_grad: both pieces of the textbook
# formulation, looked up in conv_textbook.py (so each patch reaches conv_transpose as it reaches conv)
MUTANTS = {
    "missing kernel flip": (conv_textbook, "flip_and_swap", _swap_only, "forward value"),
    "missing channel swap": (conv_textbook, "flip_and_swap", _flip_only, "forward value"),
    "bias gradient averaged": (conv_textbook, "conv_bias_grad", _bias_mean, r"argument 2 \(b\)"),
}


def _loop_comparison(case):
    """Forward and the three gradients of conv_transpose vs the NumPy scatter-loop reference, in float64."""
    rng = np.random.default_rng(3)
    args = [rng.standard_normal(shape) for shape in case.shapes]
    y, vjp = jax.vjp(lambda *a: convgrad.conv_transpose(*a, **case.options), *map(jnp.asarray, args))
    g = rng.standard_normal(y.shape)
    testing.assert_close(y, loops.conv_transpose(*args, **case.options), what="forward vs loop reference")
    expected = loops.conv_transpose_vjp(*args, g, **case.options)
    for i, (got, want) in enumerate(zip(vjp(jnp.asarray(g)), expected)):
        testing.assert_close(got, want, what=f"argument {i} vs loop reference")


def test_mutation_case_passes_unmutated():
    assert verify_case(OPS["conv_transpose"], MUTATION_CASE, "float64", transforms=False).passed
    _loop_comparison(MUTATION_CASE)


@pytest.mark.parametrize("mutant", list(MUTANTS))
def test_checks_catch_the_bug(mutate, mutant):
    module, name, replacement, symptom = MUTANTS[mutant]
    mutate(module, name, replacement)
    result = verify_case(OPS["conv_transpose"], MUTATION_CASE, "float64")
    assert not result.passed and re.search(symptom, result.failure), result.failure
    with pytest.raises(AssertionError, match="vs loop reference"):
        _loop_comparison(MUTATION_CASE)


# ---------------------------------------------------------------------------- transforms


def _loss(x, w, b):
    return jnp.sum(jnp.sin(convgrad.conv_transpose(x, w, b, stride=2, padding=1, output_padding=1, groups=2)))


def _reference_loss(x, w, b):
    return jnp.sum(jnp.sin(autodiff.conv_transpose(x, w, b, stride=2, padding=1, output_padding=1, groups=2)))


@pytest.fixture
def problem():
    rng = np.random.default_rng(4)
    return rng.standard_normal((3, 4, 4, 4)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(6)


def test_under_jit_and_checkpoint(problem):
    expected = jax.grad(_reference_loss, argnums=(0, 1, 2))(*problem)
    for transformed in (
        jax.jit(jax.grad(_loss, argnums=(0, 1, 2))),
        jax.grad(jax.checkpoint(_loss), argnums=(0, 1, 2)),
    ):
        for got, want in zip(transformed(*problem), expected):
            testing.assert_close(got, want, what="gradient under jit / checkpoint vs autodiff")


def test_per_example_gradients_under_vmap(problem):
    """vmap over examples of the weight gradient equals a Python loop over examples."""
    x, w, b = problem
    per_example = jax.vmap(jax.grad(lambda xi, w: _loss(xi[None], w, b), argnums=1), in_axes=(0, None))(x, w)
    looped = jnp.stack([jax.grad(_reference_loss, argnums=1)(x[i : i + 1], w, b) for i in range(x.shape[0])])
    testing.assert_close(per_example, looped, what="per-example weight gradients")


def test_output_dtype_follows_input():
    for dtype in (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64):
        x, w, b = jnp.ones((1, 2, 3), dtype), jnp.ones((2, 3, 2), dtype), jnp.ones(3, dtype)
        y, vjp = jax.vjp(lambda x, w, b: convgrad.conv_transpose(x, w, b, stride=2), x, w, b)
        assert y.dtype == dtype
        assert all(g.dtype == dtype for g in vjp(jnp.ones_like(y)))


# ---------------------------------------------------------------------------- bad inputs

X, W = np.zeros((2, 4, 5, 5), np.float32), np.zeros((4, 3, 3, 3), np.float32)  # O = 3 * groups
BAD_INPUTS = [
    (
        (X, W),
        {"stride": 2, "output_padding": 2},
        ValueError,
        r"output_padding=2 must be smaller than max\(stride, dilation\) .* got 2 >= max\(2, 1\) along spatial dim 0",
    ),
    ((X, W), {"output_padding": 1}, ValueError, r"output_padding=1 .* got 1 >= max\(1, 1\) along spatial dim 0"),
    (
        (X, W),
        {"stride": 2, "dilation": (1, 2), "output_padding": (0, 2)},
        ValueError,
        r"output_padding=\(0, 2\) .* got 2 >= max\(2, 2\) along spatial dim 1",
    ),
    ((X, W), {"output_padding": -1}, ValueError, "output_padding must be >= 0, got output_padding=-1"),
    ((X, W), {"padding": -1}, ValueError, "padding must be >= 0, got padding=-1"),
    ((X, W), {"padding": (1, -1)}, ValueError, r"padding must be an int or 2 ints each >= 0, got padding=\(1, -1\)"),
    ((X, W), {"padding": ((1, 1), (0, 0))}, TypeError, r"padding must be an int or 2 ints .* padding=\(\(1, 1\)"),
    ((X, W), {"padding": "SAME"}, TypeError, "padding must be an int, got padding='SAME'"),
    ((X, W), {"groups": 3}, ValueError, r"groups=3 does not divide in_channels=4 \(x.shape=\(2, 4, 5, 5\)\)"),
    ((X, W), {"groups": 0}, ValueError, "groups must be positive, got groups=0"),
    (
        (X, np.zeros((6, 3, 3, 3), np.float32)),
        {},
        ValueError,
        r"channel mismatch: x has in_channels=4 but w.shape=\(6, 3, 3, 3\) has 6 input channels",
    ),
    ((X, W), {"stride": 0}, ValueError, "stride must be positive, got stride=0"),
    ((X, W), {"stride": (1, 2, 3)}, ValueError, r"stride must be an int or 2 ints .* got stride=\(1, 2, 3\)"),
    ((X, W), {"dilation": 0}, ValueError, "dilation must be positive, got dilation=0"),
    (
        (np.zeros((2, 4, 1, 5), np.float32), W),
        {"padding": 3},
        ValueError,
        r"padding=3 crops more than the output holds along spatial dim 0: .* = -1 < 0 samples",
    ),
    (
        (np.zeros((2, 4, 5, 1), np.float32), np.zeros((4, 3, 3, 2), np.float32)),
        {"padding": (0, 3)},
        ValueError,
        r"crops more than the output holds along spatial dim 1: .* = -3 < 0 samples",
    ),
    ((X, W[:, :, :0]), {}, ValueError, r"every kernel spatial size must be positive, got kernel \(0, 3\)"),
    ((X, W), {"stride": 2, "output_size": (10, 11)}, ValueError, r"requested output_size=\(10, 11\), but valid sizes"),
    (
        (X, W),
        {"stride": 2, "output_size": (9, 12)},
        ValueError,
        r"valid sizes range from \(11, 11\) to \(12, 12\) \(for an input of spatial size \(5, 5\)\)",
    ),
    ((X, W), {"stride": 2, "output_size": (11, 11), "output_padding": 1}, ValueError, "output_padding or output_size"),
    ((X, W), {"output_size": (11, 11, 11)}, ValueError, r"output_size must be 2 ints >= 0 .* got output_size=\(11, 11"),
    ((X, W), {"output_size": (11, "a")}, TypeError, "output_size must be 2 ints"),
    ((X, W), {"dimension_numbers": ("NHWC", "HWIO")}, TypeError, "dimension_numbers must be None or three layout"),
    ((X, W), {"dimension_numbers": ("NHWC", "HWXO", "NHWC")}, ValueError, "kernel layout 'HWXO' must contain"),
    (
        (X, W),
        {"dimension_numbers": ("NHWC", "HWIO", "NHWC")},
        ValueError,
        r"channel mismatch: x has in_channels=5 but w.shape=\(4, 3, 3, 3\) has 3 input channels",
    ),
    ((X[0, 0], W), {}, ValueError, r"x and w must have the same rank .*, or 3 for one unbatched .* x.shape=\(5, 5\)"),
    ((X, W[0, 0]), {}, ValueError, r"w must have 3 to 5 dims \(\(C_in, C_out/groups, \*kernel\) .* w.shape=\(3, 3\)"),
    ((X.astype(np.int32), W), {}, TypeError, "x must have a real floating dtype .* x.dtype=int32"),
    ((X, W.astype(np.complex64)), {}, TypeError, "w must have a real floating dtype .* w.dtype=complex64"),
    ((X, W.astype(np.float64)), {}, TypeError, "must share one dtype, got x.dtype=float32, w.dtype=float64"),
    (
        (X, W, np.zeros(3, np.float64)),
        {},
        TypeError,
        "must share one dtype, got x.dtype=float32, w.dtype=float32, b.dtype=float64",
    ),
    (
        (X, W, np.zeros(6, np.float32)),
        {},
        ValueError,
        r"b must have shape \(out_channels,\)=\(3,\), got b.shape=\(6,\)",
    ),
    (("x", W), {}, TypeError, "x must be an array, got str"),
]


@pytest.mark.parametrize(("args", "kwargs", "error", "message"), BAD_INPUTS, ids=[m[:40] for *_, m in BAD_INPUTS])
def test_bad_input_raises_a_clear_error(args, kwargs, error, message):
    """Each raises ValueError/TypeError naming the argument and its value before XLA sees it, under jit too."""
    with pytest.raises(error, match=r"^conv_transpose: .*" + message):
        convgrad.conv_transpose(*args, **kwargs)
    if all(isinstance(a, np.ndarray) for a in args):
        with pytest.raises(error, match=re.escape("conv_transpose: ")):
            jax.jit(lambda *a: convgrad.conv_transpose(*a, **kwargs))(*args)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((np.zeros((2, 3)), 2), ValueError, r"zero_insert: x must be \(N, C, \*spatial\) .* x.shape=\(2, 3\)"),
        ((np.zeros((1, 1, 3)), 0), ValueError, "zero_insert: stride must be positive, got stride=0"),
    ],
)
def test_zero_insert_bad_input(args, error, message):
    with pytest.raises(error, match=message):
        convgrad.zero_insert(*args)


# ---------------------------------------------------------------------------- layouts, output_size, unbatched, empty


def test_output_size_picks_the_output_padding_by_hand():
    """x = [1, 2], w = [1, 10, 100], stride 2: the footprint is 5 samples; output_size 6 is output_padding 1
    (one zero past y_full), as in HAND_CASES; sizes 5 and 6 are reachable ((in - 1) s + k + [0, s - 1])."""
    x, w = jnp.array([[[1.0, 2.0]]]), jnp.array([[[1.0, 10.0, 100.0]]])
    np.testing.assert_array_equal(
        convgrad.conv_transpose(x, w, stride=2, output_size=(6,))[0, 0], [1, 10, 102, 20, 200, 0]
    )
    np.testing.assert_array_equal(
        convgrad.conv_transpose(x, w, stride=2, output_size=[1, 1, 5])[0, 0], [1, 10, 102, 20, 200]
    )


def test_output_size_matches_torch():
    """torch.nn.ConvTranspose2d.forward(x, output_size=...) with stride, padding, dilation and groups."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    module = torch.nn.ConvTranspose2d(4, 6, (3, 2), stride=(3, 2), padding=(1, 0), dilation=(1, 2), groups=2)
    module = module.double()
    with torch.no_grad():
        module.weight.copy_(torch.tensor(w))
        module.bias.copy_(torch.tensor(b))
    for size in [(7, 11), (8, 12), (9, 11)]:
        xt = torch.tensor(x, requires_grad=True)
        yt = module(xt, output_size=size)
        g = rng.standard_normal(tuple(yt.shape))
        yt.backward(torch.tensor(g))
        options = dict(stride=(3, 2), padding=(1, 0), dilation=(1, 2), groups=2, output_size=size)
        y, vjp = jax.vjp(lambda x, w, b, options=options: convgrad.conv_transpose(x, w, b, **options), x, w, b)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(vjp(g)[0], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
        module.zero_grad()


@pytest.mark.parametrize("layout", [("NHWC", "HWIO", "NHWC"), ("CHWN", "OIWH", "NWHC")])
def test_layouts_agree_with_channel_first(layout):
    """conv_transpose in another layout is the channel-first one transposed, value and gradients: I marks w's
    axis of input channels, O its axis of output channels per group."""
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((2, 4, 3, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(6)
    lhs, rhs, out = layout
    to = lambda a, src, dst: np.transpose(a, [src.index(c) for c in dst])
    options = dict(stride=2, padding=(1, 0), output_padding=(1, 0), groups=2)
    y, vjp = jax.vjp(lambda x, w, b: convgrad.conv_transpose(x, w, b, **options), x, w, b)
    # per-dim arguments follow the kernel's spatial order ("OIWH": W first)
    order = [c for c in rhs if c in "HW"]
    in_order = {k: tuple(v["HW".index(c)] for c in order) for k, v in options.items() if isinstance(v, tuple)}
    f = lambda x, w, b: convgrad.conv_transpose(x, w, b, dimension_numbers=layout, **{**options, **in_order})
    y_l, vjp_l = jax.vjp(f, to(x, "NCHW", lhs), to(w, "IOHW", rhs), b)
    np.testing.assert_allclose(y_l, to(y, "NCHW", out), rtol=1e-12)
    g = rng.standard_normal(y.shape)
    dx, dw, db = vjp(g)
    dx_l, dw_l, db_l = vjp_l(to(g, "NCHW", out))
    np.testing.assert_allclose(dx_l, to(dx, "NCHW", lhs), rtol=1e-12)
    np.testing.assert_allclose(dw_l, to(dw, "IOHW", rhs), rtol=1e-12)
    np.testing.assert_allclose(db_l, db, rtol=1e-12)


def test_unbatched_input_is_one_example():
    rng = np.random.default_rng(7)
    x, w = rng.standard_normal((1, 3, 4, 4)), rng.standard_normal((3, 2, 3, 3))
    y1, vjp1 = jax.vjp(lambda x: convgrad.conv_transpose(x, w, stride=2, output_size=(9, 10)), x)
    y, vjp = jax.vjp(lambda x: convgrad.conv_transpose(x, w, stride=2, output_size=(2, 9, 10)), x[0])
    np.testing.assert_allclose(y, y1[0], rtol=1e-12)
    g = rng.standard_normal(y.shape)
    np.testing.assert_allclose(vjp(g)[0], vjp1(g[None])[0][0], rtol=1e-12)


def test_an_output_with_no_samples_is_empty_with_zero_gradients():
    """in 1, k 3, padding 2: (1 - 1) * 1 + 3 - 4 = -1 by PyTorch's formula, which lax clamps to 0 samples."""
    x, w, b = jnp.ones((2, 4, 1, 5)), jnp.ones((4, 3, 3, 3)), jnp.ones(3)
    y, vjp = jax.vjp(lambda x, w, b: convgrad.conv_transpose(x, w, b, padding=(2, 0)), x, w, b)
    assert y.shape == (2, 3, 0, 7) == autodiff.conv_transpose(x, w, b, padding=(2, 0)).shape
    dx, dw, db = vjp(jnp.ones_like(y))
    assert not dx.any() and not dw.any() and not db.any() and db.shape == (3,)
