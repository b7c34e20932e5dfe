"""Facts about adaptive_avg_pool and adaptive_max_pool beyond the registry's four-way checks.

The windows by hand (PyTorch's rule, overlapping where ``out`` does not divide ``in``),
``None`` output sizes, global pooling, ties and NaN, both formulations, inputs without a
batch axis, zero-size inputs, bad inputs, the docstrings, and mutation tests.
"""

from __future__ import annotations

import doctest

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad.ops import adaptive_pooling
from convgrad.ops.geometry import AdaptivePoolGeometry
from convgrad.registry import OPS
from convgrad.verify import verify_case


def _pool_and_grad(op, x, g, output_size, **options):
    @jax.jit
    def run(x, g):
        y, vjp = jax.vjp(lambda x: jax.tree.leaves(op(x, output_size, **options))[0], x)
        return y, vjp(g)[0]

    return run(x, g)


def test_windows_follow_pytorchs_rule():
    """7 samples to 3 windows, [floor(7 i / 3), ceil(7 (i + 1) / 3)): [0, 3), [2, 5), [4, 7); 3 samples to 5 windows:
    [0, 1), [0, 2), [1, 2), [1, 3), [2, 3)."""
    geometry = AdaptivePoolGeometry((7, 3), (3, 5))
    assert geometry.starts == ((0, 2, 4), (0, 0, 1, 1, 2))
    assert geometry.ends == ((3, 5, 7), (1, 2, 2, 3, 3))


def test_adaptive_average_by_hand():
    """7 samples to 3 overlapping windows of 3: x2 and x4 are in two windows each."""
    x = jnp.arange(7.0).reshape(1, 1, 7)
    y, dx = _pool_and_grad(convgrad.adaptive_avg_pool, x, jnp.array([[[3.0, 6.0, 9.0]]]), 3)
    np.testing.assert_allclose(y[0, 0], [1, 3, 5], rtol=1e-15)  # means of 0 1 2, 2 3 4, 4 5 6
    np.testing.assert_allclose(dx[0, 0], [1, 1, 3, 2, 5, 3, 3], rtol=1e-15)  # g / 3 to each tap; x2: 1 + 2


def test_adaptive_max_by_hand():
    """The same windows over 5 0 1 2 9 0 3: maxima 5 (x0), 9 (x4), 9 (x4); x4's gradient is the sum of two."""
    x = jnp.array([[[5.0, 0.0, 1.0, 2.0, 9.0, 0.0, 3.0]]])
    y, switches = convgrad.adaptive_max_pool(x, 3)
    np.testing.assert_array_equal(y[0, 0], [5, 9, 9])
    np.testing.assert_array_equal(switches[0, 0], [0, 4, 4])
    _, dx = _pool_and_grad(convgrad.adaptive_max_pool, x, jnp.array([[[1.0, 10.0, 100.0]]]), 3)
    np.testing.assert_array_equal(dx[0, 0], [1, 0, 0, 0, 110, 0, 0])


def test_ties_first_maximum_in_raster_order_and_nan_wins():
    """A 3x3 plane to 2x2 windows of 2x2 (overlapping at the centre): ties go to the first in raster order."""
    x = jnp.array([[[[1.0, 4.0, 4.0], [4.0, 4.0, 0.0], [2.0, np.nan, 3.0]]]])
    y, switches = convgrad.adaptive_max_pool(x, (2, 2))
    # windows rows [0, 2) x cols [0, 2): 1 4 / 4 4 -> first 4 at (0, 1); [0, 2) x [1, 3): 4 4 / 4 0 -> (0, 1);
    # [1, 3) x [0, 2): 4 4 / 2 nan -> nan at (2, 1); [1, 3) x [1, 3): 4 0 / nan 3 -> nan at (2, 1)
    np.testing.assert_array_equal(switches[0, 0], [[1, 1], [7, 7]])
    assert y[0, 0, 0, 0] == 4 and np.isnan(y[0, 0, 1]).all()


def test_global_pooling_is_the_mean_and_max_over_the_plane():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 5, 7)))
    np.testing.assert_allclose(convgrad.adaptive_avg_pool(x, 1), x.mean(axis=(2, 3), keepdims=True), rtol=1e-14)
    y, switches = convgrad.adaptive_max_pool(x, 1)
    np.testing.assert_array_equal(y, x.max(axis=(2, 3), keepdims=True))
    np.testing.assert_array_equal(switches[..., 0, 0], x.reshape(2, 3, -1).argmax(-1))


def test_none_keeps_a_size():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 6, 5)))
    np.testing.assert_allclose(
        convgrad.adaptive_avg_pool(x, (2, None)), x.reshape(2, 3, 2, 3, 5).mean(axis=3), rtol=1e-14
    )
    assert convgrad.adaptive_max_pool(x, (None, 7))[0].shape == (2, 3, 6, 7)


@pytest.mark.parametrize("channels_last", [False, True], ids=["channel-first", "channels-last"])
def test_both_formulations_agree_with_the_gathered_windows(channels_last):
    """When ``out`` divides ``in`` the tiled pool runs; it equals the general formulation (gathered taps, averaging
    matrices), which takes any geometry, on the same windows."""
    x = np.random.default_rng(0).standard_normal((2, 3, 8, 6))
    axis = 1
    if channels_last:
        x, axis = np.moveaxis(x, 1, -1), -1
    x = jnp.asarray(x)
    tiled = adaptive_pooling.adaptive_arguments("adaptive_max_pool", x, (4, 3), axis)[1]
    assert tiled.tiled

    @jax.jit
    def both(x):
        y_tiled, switches_tiled = convgrad.adaptive_max_pool(x, (4, 3), channel_axis=axis)
        y_general, switches_general = adaptive_pooling.adaptive_max_pool_forward(x, tiled)
        averages = convgrad.adaptive_avg_pool(x, (4, 3), channel_axis=axis)
        product = adaptive_pooling._per_dim_product(x, tiled, transpose=False)
        return y_tiled, switches_tiled, y_general, switches_general, averages, product

    y_tiled, switches_tiled, y_general, switches_general, averages, product = both(x)
    np.testing.assert_array_equal(y_tiled, y_general)
    np.testing.assert_array_equal(switches_tiled, switches_general)
    np.testing.assert_allclose(averages, product, rtol=1e-14)


def test_an_input_without_batch_axis_is_one_example():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((3, 7, 5)))
    for op in (convgrad.adaptive_avg_pool, convgrad.adaptive_max_pool):
        alone, batched = op(x, (3, 2)), op(x[None], (3, 2))
        for a, b in zip(jax.tree.leaves(alone), jax.tree.leaves(batched)):
            np.testing.assert_array_equal(a, b[0])
    assert jax.tree.leaves(convgrad.adaptive_avg_pool(x, 2))[0].shape == (3, 7, 2)  # an int: batched, 1-d


@pytest.mark.parametrize(
    ("shape", "output_size", "expected"),
    [((0, 3, 6, 6), (4, 4), (0, 3, 4, 4)), ((2, 0, 7, 7), 3, (2, 0, 3, 3)), ((2, 3, 0, 6), (None, 4), (2, 3, 0, 4))],
    ids=["no batch", "no channels", "empty dim kept"],
)
@pytest.mark.parametrize("op", [convgrad.adaptive_avg_pool, convgrad.adaptive_max_pool], ids=lambda op: op.__name__)
def test_zero_size_inputs(op, shape, output_size, expected):
    x = jnp.zeros(shape)
    y, dx = _pool_and_grad(op, x, jnp.zeros(expected), output_size)
    assert y.shape == expected and dx.shape == shape


BAD_INPUTS = [
    ((np.zeros((2, 3, 6, 6)), 0), ValueError, "output_size must be a positive int, .* got output_size=0"),
    ((np.zeros((2, 3, 6, 6)), (2, 0)), ValueError, r"output_size must be a positive int.* got output_size=\(2, 0\)"),
    ((np.zeros((2, 3, 6, 6)), (2, -1)), ValueError, r"output_size must be a positive int.* got output_size=\(2, -1\)"),
    ((np.zeros((2, 3, 6, 6)), 2.5), TypeError, "output_size must be a positive int.* got output_size=2.5"),
    ((np.zeros((2, 3, 6, 6)), None), TypeError, "output_size must be an int or a sequence of ints and None"),
    ((np.zeros((2, 3, 6, 6)), (2,)), ValueError, r"output_size=\(2,\) has 1 entry .* got x.shape=\(2, 3, 6, 6\)"),
    ((np.zeros((2, 3, 0, 6)), (2, 2)), ValueError, r"x is empty along spatial dim 0 .* output_size=2 windows"),
    ((np.zeros((2, 3, 6, 6), np.int32), 2), TypeError, "x must have a real floating dtype"),
    ((np.zeros((6, 6)), 2), ValueError, r"x must have 3 to 5 dims"),
    (
        (np.zeros((2, 3, 6, 6)), (10**6, 10**6)),
        ValueError,
        r"output_size=\(1000000, 1000000\) makes the output \(2, 3, 1000000, 1000000\) float64, 48000000000000 bytes",
    ),
]


@pytest.mark.parametrize("op", ["adaptive_avg_pool", "adaptive_max_pool"])
@pytest.mark.parametrize(("args", "error", "message"), BAD_INPUTS, ids=[m[:30] for *_, m in BAD_INPUTS])
def test_bad_input_raises_a_clear_error(op, args, error, message):
    with pytest.raises(error, match=rf"^{op}: " + message):
        getattr(convgrad, op)(*args)


@pytest.mark.parametrize("op", [convgrad.adaptive_avg_pool, convgrad.adaptive_max_pool], ids=lambda op: op.__name__)
def test_docstring_ends_with_raises_examples_references_and_its_examples_run(op):
    doc = op.__doc__
    sections = [doc.index(f"\n    {name}:\n") for name in ("Args", "Returns", "Raises", "Examples", "References")]
    assert sections == sorted(sections)
    with jax.enable_x64(False):
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in doctest.DocTestFinder().find(op, op.__name__, globs={}):
            runner.run(test)
    assert runner.tries >= 2 and runner.failures == 0


# ---------------------------------------------------------------------------- mutation tests


def _floor_end_matrix(in_size, out_size):
    """Bug: windows end at floor((i + 1) in / out), so they never overlap (and may miss samples)."""
    a = np.zeros((out_size, in_size))
    for i in range(out_size):
        start, end = i * in_size // out_size, max((i + 1) * in_size // out_size, i * in_size // out_size + 1)
        a[i, start:end] = 1.0 / (end - start)
    return a


def _fails(op, index):
    spec = OPS[op]
    return not verify_case(spec, spec.cases[index], "float64", transforms=False).passed


def test_mutation_floor_window_end_is_caught(mutate):
    mutate(adaptive_pooling, "averaging_matrix", _floor_end_matrix)
    assert _fails("adaptive_avg_pool", 0)  # 7 -> 3 and 9 -> 4: overlapping windows


def test_mutation_scatter_that_sets_is_caught(mutate):
    def scatter_set(values, switches, output_size):
        batch, channels = values.shape[:2]
        rows = jnp.arange(batch * channels)[:, None]
        flat = jnp.zeros((batch * channels, int(np.prod(output_size))), values.dtype)
        flat = flat.at[rows, switches.reshape(batch * channels, -1)].set(values.reshape(batch * channels, -1))
        return flat.reshape(batch, channels, *output_size)

    mutate(adaptive_pooling, "scatter_to_switches", scatter_set)
    assert _fails("adaptive_max_pool", 4)  # 3 samples to 5 windows: switches coincide
