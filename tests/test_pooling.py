"""Facts about max_pool, max_unpool and avg_pool beyond the registry's four-way checks.

Hand-computed examples (ties, NaN, -inf padding, coinciding switches, dilation,
ceil mode, the average's divisors), the switches against the loop reference, the
adjoint identity of max_unpool, both max-pool backward paths, inputs without a
batch axis, zero-size inputs, integer outputs and inputs under autodiff, bad
inputs, oversized requests, the docstrings, and mutation tests: each injects one
real bug and asserts the checks catch it. The comparisons with PyTorch are in
``tests/test_pytorch_parity.py``; the adaptive pools in ``tests/test_adaptive_pooling.py``.
"""

from __future__ import annotations

import doctest
import math
import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convgrad
from convgrad import loops, testing
from convgrad.ops import pool_windows, pooling
from convgrad.ops.geometry import PoolGeometry
from convgrad.registry import OPS
from convgrad.testing.strategies import HypothesisDraw
from convgrad.verify import verify_case
from tests.compile_flags import with_xla_defaults

ROOT = Path(__file__).resolve().parents[1]

NAN, INF = float("nan"), float("inf")


def _plane(rows) -> jax.Array:
    """A (1, 1, *shape) input from nested lists."""
    return jnp.asarray(rows, jnp.float64)[None, None]


@partial(jax.jit, static_argnums=(2, 3, 4))
def _max_pool_vjp(x, g, window, stride=None, padding=0):
    """``(y, switches, dx)`` for cotangent ``g``, as one compiled program (much faster than op by op)."""
    (y, switches), vjp = jax.vjp(lambda x: convgrad.max_pool(x, window, stride, padding), x)
    return y, switches, vjp((g, np.zeros(switches.shape, jax.dtypes.float0)))[0]


def _ones_out(x, window, stride=None, padding=0):
    """A cotangent of ones shaped like max_pool's output."""
    y = jax.eval_shape(lambda x: convgrad.max_pool(x, window, stride, padding)[0], x)
    return jnp.ones(y.shape, y.dtype)


# ---------------------------------------------------------------------------- hand-computed examples


def test_max_pool_2x2_by_hand():
    x = _plane([[1, 2, 5, 3], [4, 0, 1, 1], [7, 8, 2, 9], [6, 3, 4, 2]])
    y, switches, dx = _max_pool_vjp(x, _plane([[1.0, 2.0], [3.0, 4.0]]), 2)
    # windows {1, 2, 4, 0}, {5, 3, 1, 1}, {7, 8, 6, 3}, {2, 9, 4, 2}: maxima 4, 5, 8, 9 at
    # (h, w) = (1, 0), (0, 2), (2, 1), (2, 3), i.e. flat h * 4 + w = 4, 2, 9, 11
    np.testing.assert_array_equal(y[0, 0], [[4, 5], [8, 9]])
    np.testing.assert_array_equal(switches[0, 0], [[4, 2], [9, 11]])
    assert switches.dtype == jnp.int32
    # each cotangent goes to its window's maximum, everything else gets 0
    np.testing.assert_array_equal(dx[0, 0], [[0, 0, 2, 0], [1, 0, 0, 0], [0, 3, 0, 4], [0, 0, 0, 0]])


def _check_first_max_wins_ties(channels_last=False):
    """Tiled 2x2 windows (the reshape path), in either layout."""
    x = _plane([[3, 3, 0, 0], [3, 1, 2, 2], [5, 5, -1, 4], [5, 5, 4, -1]])
    if channels_last:
        (y, switches), vjp = jax.vjp(lambda x: convgrad.max_pool(x, 2, channel_axis=-1), jnp.moveaxis(x, 1, -1))
        dx = vjp((jnp.ones(y.shape, y.dtype), np.zeros(switches.shape, jax.dtypes.float0)))[0]
        y, switches, dx = (jnp.moveaxis(a, -1, 1) for a in (y, switches, dx))
    else:
        y, switches, dx = _max_pool_vjp(x, _ones_out(x, 2), 2)
    # top-left {3, 3 / 3, 1}: the first 3 is (0, 0) -> 0; top-right {0, 0 / 2, 2}: the first 2 is (1, 2) -> 6
    # bottom-left all 5: (2, 0) -> 8; bottom-right {-1, 4 / 4, -1}: the first 4 is (2, 3) -> 11, not (3, 2) -> 14
    np.testing.assert_array_equal(y[0, 0], [[3, 2], [5, 4]])
    np.testing.assert_array_equal(switches[0, 0], [[0, 6], [8, 11]])
    # and the gradient goes to that first maximum only
    np.testing.assert_array_equal(dx[0, 0], [[1, 0, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1], [0, 0, 0, 0]])


def _check_first_max_wins_ties_overlapping():
    """Overlapping windows (the generic path): 3 wide, stride 1, over 2 5 5 1 5."""
    x = jnp.array([[[2.0, 5.0, 5.0, 1.0, 5.0]]])
    _, switches, dx = _max_pool_vjp(x, jnp.ones((1, 1, 3)), 3, 1)
    # windows {2,5,5} {5,5,1} {5,1,5}: first maxima at 1, 1, 2; the gradient adds at 1
    np.testing.assert_array_equal(switches[0, 0], [1, 1, 2])
    np.testing.assert_array_equal(dx[0, 0], [0, 2, 1, 0, 0])


@pytest.mark.parametrize("channels_last", [False, True])
def test_ties_first_maximum_in_raster_order_wins(channels_last):
    _check_first_max_wins_ties(channels_last)


def test_ties_first_maximum_wins_in_overlapping_windows():
    _check_first_max_wins_ties_overlapping()


def test_nan_propagates_and_its_switch_is_the_first_nan():
    x = _plane([[1, NAN, 5, 0], [NAN, 3, 0, 7]])
    y, switches, dx = _max_pool_vjp(x, _ones_out(x, 2), 2)
    # left window {1, NaN / NaN, 3}: y is NaN, the first NaN in raster order is (0, 1) -> 1
    # (PyTorch's kernels keep the last one, (1, 0) -> 4); right window {5, 0 / 0, 7}: 7 at (1, 3) -> 7
    assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 7
    np.testing.assert_array_equal(switches[0, 0], [[1, 7]])
    np.testing.assert_array_equal(dx[0, 0], [[0, 1, 0, 0], [0, 0, 0, 1]])


def test_padding_is_minus_infinity():
    """Windows of padding and negative inputs pick an input (zero padding would give 0)."""
    x = _plane([[-5, -2], [-3, -4]])
    # window 2, stride 2, padding 1: four windows, each holding one input element (a corner)
    y, switches, _ = _max_pool_vjp(x, _ones_out(x, 2, 2, 1), 2, 2, 1)
    np.testing.assert_array_equal(y[0, 0], [[-5, -2], [-3, -4]])
    np.testing.assert_array_equal(switches[0, 0], [[0, 1], [2, 3]])


def test_minus_infinity_inputs_never_pick_padding():
    """All inputs -inf: each window picks its first INPUT element, (max(i - 1, 0), max(j - 1, 0)) here."""
    x = jnp.full((1, 1, 2, 2), -INF)
    y, switches, dx = _max_pool_vjp(x, _ones_out(x, 2, 1, 1), 2, 1, 1)  # 3x3 windows over the 4x4 padded plane
    assert np.all(y == -INF)
    np.testing.assert_array_equal(switches[0, 0], [[0, 0, 1], [0, 0, 1], [2, 2, 3]])
    # the gradient lands on inputs: x[0, 0] is picked 4 times, x[0, 1] and x[1, 0] twice, x[1, 1] once
    np.testing.assert_array_equal(dx[0, 0], [[4, 2], [2, 1]])


def _check_coinciding_switches_add():
    x = jnp.array([[[1.0, 5.0, 2.0, 0.0, 3.0]]])
    y, switches, dx = _max_pool_vjp(x, jnp.array([[[1.0, 10.0, 100.0]]]), 3, 1)
    # windows [1, 5, 2], [5, 2, 0], [2, 0, 3]: the first two both pick the 5 at index 1
    np.testing.assert_array_equal(y[0, 0], [5, 5, 3])
    np.testing.assert_array_equal(switches[0, 0], [1, 1, 4])
    np.testing.assert_array_equal(dx[0, 0], [0, 11, 0, 0, 100])  # 1 + 10 at the shared 5, not one of them
    # max_unpool adds there too (PyTorch's MaxUnpool would write one of the two 5s)
    np.testing.assert_array_equal(convgrad.max_unpool(y, switches, (5,))[0, 0], [0, 10, 0, 0, 3])


def test_overlapping_windows_add_where_switches_coincide():
    _check_coinciding_switches_add()


def test_avg_pool_counts_padding_in_the_mean():
    x = jnp.ones((1, 1, 2, 2))
    # window 2, stride 2, padding 1: each window holds one input (a corner) and three padded zeros: 1 / 4
    y, vjp = jax.vjp(lambda x: convgrad.avg_pool(x, 2, 2, 1), x)
    np.testing.assert_array_equal(y[0, 0], [[0.25, 0.25], [0.25, 0.25]])
    np.testing.assert_array_equal(vjp(jnp.ones_like(y))[0][0, 0], [[0.25, 0.25], [0.25, 0.25]])
    # overlapping 2x2 windows, stride 1, on arange(9): y[0, 0] = (0 + 1 + 3 + 4) / 4; the centre is in all four
    x = jnp.arange(9.0).reshape(1, 1, 3, 3)
    y, vjp = jax.vjp(lambda x: convgrad.avg_pool(x, 2, 1), x)
    np.testing.assert_array_equal(y[0, 0], [[2, 3], [5, 6]])
    np.testing.assert_array_equal(vjp(jnp.ones_like(y))[0][0, 0], [[1, 2, 1], [2, 4, 2], [1, 2, 1]] * np.array(0.25))


def test_out_of_range_switches_are_dropped():
    """Documented: a switch outside [0, P), negative included, lands nowhere and gets no gradient."""
    y = jnp.array([[[1.0, 2.0, 4.0, 8.0]]])
    switches = jnp.array([[[-1, 3, 4, 0]]])  # P = 4: -1 and 4 are outside
    x, vjp = jax.vjp(lambda y: convgrad.max_unpool(y, switches, (4,)), y)
    np.testing.assert_array_equal(x[0, 0], [8, 0, 0, 2])
    np.testing.assert_array_equal(vjp(jnp.array([[[1.0, 10.0, 100.0, 1000.0]]]))[0][0, 0], [0, 1000, 0, 1])


def _pool_and_grad(op, x, g, **options):
    """``op(x, **options)``'s first output and the VJP of ``g`` through it, as one compiled program."""

    @jax.jit
    def run(x, g):
        y, vjp = jax.vjp(lambda x: jax.tree.leaves(op(x, **options))[0], x)
        return y, vjp(g)[0]

    return run(x, g)


def test_dilated_window_skips_samples():
    """Window 2, dilation 2, stride 1 over 1 9 3 2 5: windows {x0, x2}, {x1, x3}, {x2, x4}."""
    row = jnp.array([[[1.0, 9.0, 3.0, 2.0, 5.0]]])
    y, switches = convgrad.max_pool(row, 2, 1, dilation=2)
    np.testing.assert_array_equal(y[0, 0], [3, 9, 5])
    np.testing.assert_array_equal(switches[0, 0], [2, 1, 4])
    _, dx = _pool_and_grad(convgrad.max_pool, row, jnp.array([[[1.0, 10.0, 100.0]]]), window=2, stride=1, dilation=2)
    np.testing.assert_array_equal(dx[0, 0], [0, 10, 1, 0, 100])


def test_dilated_windows_overlap_and_add():
    """Window 2, dilation 3, stride 1, padding 1 over 6 samples: (6 + 2 - 4) + 1 = 5 windows, taps (-1, 2), (0, 3),
    (1, 4), (2, 5), (3, 6); the last reads the high padding at 6."""
    row = jnp.array([[[0.0, 1.0, 7.0, 2.0, 3.0, 4.0]]])
    y, switches = convgrad.max_pool(row, 2, 1, 1, dilation=3)
    # (pad, 7) -> 7 at 2; (0, 2) -> 2 at 3; (1, 3) -> 3 at 4; (7, 4) -> 7 at 2; (2, pad) -> 2 at 3
    np.testing.assert_array_equal(y[0, 0], [7, 2, 3, 7, 2])
    np.testing.assert_array_equal(switches[0, 0], [2, 3, 4, 2, 3])
    g = jnp.array([[[1.0, 10.0, 100.0, 1000.0, 10000.0]]])
    _, dx = _pool_and_grad(convgrad.max_pool, row, g, window=2, stride=1, padding=1, dilation=3)
    np.testing.assert_array_equal(dx[0, 0], [0, 0, 1001, 10010, 100, 0])  # windows 0 and 3 share x2, 1 and 4 x3


def test_a_huge_dilation_and_padding_build_no_padded_copy():
    """Window 2, dilation 10^6, high padding 10^6 on a 3x3 plane: each window's second tap reads padding, so y = x.

    A padded copy of the input would hold (10^6 + 3)^2 values (4 TB in float32); the taps are
    slices of the input with their padded windows filled in, and so are the backward's phases.
    """
    x = jnp.arange(9.0).reshape(1, 1, 3, 3)
    options = {"window": 2, "stride": 1, "padding": ((0, 10**6), (0, 10**6)), "dilation": 10**6}
    y, switches = jax.jit(lambda x: convgrad.max_pool(x, **options))(x)
    np.testing.assert_array_equal(y, x)
    np.testing.assert_array_equal(switches[0, 0], np.arange(9).reshape(3, 3))
    _, dx = _pool_and_grad(convgrad.max_pool, x, 2 * x, **options)
    np.testing.assert_array_equal(dx, 2 * x)


def test_ceil_mode_adds_the_partial_window():
    """Window 2 over 5 samples: floor gives 2 windows, ceil 3; the third holds x4 alone."""
    row = jnp.array([[[1.0, 9.0, 3.0, 2.0, 5.0]]])
    assert convgrad.max_pool(row, 2)[0].shape == (1, 1, 2)
    y, switches = convgrad.max_pool(row, 2, ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [9, 3, 5])
    np.testing.assert_array_equal(switches[0, 0], [1, 2, 4])
    # the average of the partial window divides by 1, its one sample, however count_include_pad is set
    for count_include_pad in (True, False):
        y = convgrad.avg_pool(row, 2, ceil_mode=True, count_include_pad=count_include_pad)
        np.testing.assert_array_equal(y[0, 0], [5, 2.5, 5])


def test_ceil_mode_never_starts_a_window_in_the_high_padding():
    """5 samples, window 2, stride 2, padding 1: ceil((5 + 2 - 2) / 2) + 1 = 4 windows would start at padded 6,
    the high padding (6 >= 5 + 1), so there are 3, starting at -1, 1, 3 (PyTorch's rule)."""
    row = jnp.array([[[1.0, 9.0, 3.0, 2.0, 5.0]]])
    y, switches = convgrad.max_pool(row, 2, 2, 1, ceil_mode=True)
    np.testing.assert_array_equal(y[0, 0], [1, 9, 5])
    np.testing.assert_array_equal(switches[0, 0], [0, 1, 4])
    np.testing.assert_array_equal(convgrad.avg_pool(row, 2, 2, 1, ceil_mode=True)[0, 0], [0.5, 6, 3.5])


def test_average_divisors_by_hand():
    """Ones, window 3, stride 2, padding 1, ceil mode, 8 samples: windows start at -1, 1, 3, 5, 7.

    The last, [7, 8, 9], reaches past the padded input (9 samples): PyTorch's divisor counts the
    taps up to ``in + hi`` (2), so it averages x7 and one pad: 1/2. The first holds a pad: 2/3.
    ``count_include_pad=False`` divides by the real taps only; ``divisor_override`` by its value.
    """
    x = jnp.ones((1, 1, 8))
    options = {"window": 3, "stride": 2, "padding": 1, "ceil_mode": True}
    g = jnp.array([[[3.0, 3.0, 3.0, 3.0, 2.0]]])
    y, dx = _pool_and_grad(convgrad.avg_pool, x, g, **options)
    np.testing.assert_allclose(y[0, 0], [2 / 3, 1, 1, 1, 1 / 2], rtol=1e-15)
    # each g / D back to the window's real taps: x0 gets 3/3; x1 3/3 + 3/3; ...; x7 3/3 + 2/2
    np.testing.assert_allclose(dx[0, 0], [1, 2, 1, 2, 1, 2, 1, 2], rtol=1e-15)
    y, dx = _pool_and_grad(convgrad.avg_pool, x, g, count_include_pad=False, **options)
    np.testing.assert_allclose(y[0, 0], [1, 1, 1, 1, 1], rtol=1e-15)
    np.testing.assert_allclose(dx[0, 0], [1.5, 2.5, 1, 2, 1, 2, 1, 3], rtol=1e-15)  # x1: 3/2 + 3/3; x7: 3/3 + 2/1
    y, dx = _pool_and_grad(convgrad.avg_pool, x, g, divisor_override=2, **options)
    np.testing.assert_allclose(y[0, 0], [1, 1.5, 1.5, 1.5, 0.5], rtol=1e-15)
    np.testing.assert_allclose(dx[0, 0], [1.5, 3, 1.5, 3, 1.5, 3, 1.5, 2.5], rtol=1e-15)


@pytest.mark.parametrize(
    ("op", "x_shape", "options"),
    [
        (convgrad.max_pool, (3, 7, 7), {"window": (3, 3), "stride": 2, "padding": 1}),
        (convgrad.max_pool, (7, 7, 3), {"window": (2, 2), "channel_axis": -1}),
        (convgrad.avg_pool, (2, 9), {"window": (3,), "stride": 2, "ceil_mode": True, "count_include_pad": False}),
        (convgrad.max_pool, (2, 4, 5, 6), {"window": (2, 2, 2), "dilation": (1, 2, 1)}),
    ],
    ids=["max-2d", "max-channels-last", "avg-1d", "max-3d"],
)
def test_an_input_without_batch_axis_is_one_example(op, x_shape, options):
    """A tuple window of n entries reads a rank n + 1 input as one example: the batch of one, its axis dropped."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal(x_shape))
    g = jnp.asarray(
        np.random.default_rng(1).standard_normal(
            jax.eval_shape(lambda x: jax.tree.leaves(op(x, **options))[0], x).shape
        )
    )
    y, dx = _pool_and_grad(op, x, g, **options)
    y_batched, dx_batched = _pool_and_grad(op, x[None], g[None], **options)
    np.testing.assert_array_equal(y, y_batched[0])
    np.testing.assert_array_equal(dx, dx_batched[0])
    if op is convgrad.max_pool:
        np.testing.assert_array_equal(op(x, **options)[1], op(x[None], **options)[1][0])


def test_an_int_window_reads_the_input_as_batched():
    """Documented: with an int window, (3, 8, 8) is a batch of 3 signals of 8 channels; a tuple makes it an image."""
    x = jnp.ones((3, 8, 8))
    assert convgrad.max_pool(x, 2)[0].shape == (3, 8, 4)
    assert convgrad.max_pool(x, (2, 2))[0].shape == (3, 4, 4)
    assert convgrad.avg_pool(x, 2).shape == (3, 8, 4)
    assert convgrad.avg_pool(x, (2, 2)).shape == (3, 4, 4)


def test_max_unpool_without_batch_axis():
    y = jnp.array([[5.0, 7.0], [1.0, 2.0]])  # (C, 2) with output_size (4,): two planes of 4
    switches = jnp.array([[1, 3], [0, 0]])
    np.testing.assert_array_equal(convgrad.max_unpool(y, switches, (4,)), [[0, 5, 0, 7], [3, 0, 0, 0]])


# ---------------------------------------------------------------------------- properties


@given(data=st.data())
def test_switches_match_the_loop_reference_with_ties_nan_and_infinities(data):
    """Random configurations; inputs from {-inf, 0, 1, 2, NaN} so windows are full of ties."""
    case = OPS["max_pool"].sample(HypothesisDraw(data))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.choice(np.array([-INF, 0.0, 1.0, 2.0, NAN]), size=case.shapes[0], p=[0.1, 0.3, 0.3, 0.25, 0.05])
    y, switches = jax.jit(lambda x: convgrad.max_pool(x, **case.options))(x)
    expected_y, expected_switches = OPS["max_pool"].loop_forward(x, **case.options)  # loops, in the case's layout
    np.testing.assert_array_equal(y, expected_y)  # NaNs in the same places
    np.testing.assert_array_equal(switches, expected_switches)


@given(data=st.data())
def test_max_unpool_is_the_adjoint_of_the_gather(data):
    """<max_unpool(y, s), x> == <y, gather(x, s)> with gather(x, s)[n, c, i] = x.reshape(N, C, P)[n, c, s[n, c, i]]."""
    case = OPS["max_unpool"].sample(HypothesisDraw(data))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    _, switches = OPS["max_unpool"].inputs(rng, case, np.float64)
    output_size = case.options["output_size"]
    batch, channels = switches.shape[:2]

    @jax.jit
    def gather(x):
        flat = jnp.take_along_axis(x.reshape(batch, channels, -1), switches.reshape(batch, channels, -1), axis=-1)
        return flat.reshape(switches.shape)

    testing.check_adjoint(
        gather,
        jax.jit(lambda y: convgrad.max_unpool(y, switches, output_size)),
        (batch, channels, *output_size),
        switches.shape,
        dtype=jnp.float64,
    )


# ---------------------------------------------------------------------------- the two max-pool backward paths


def _geometry(shape, window, stride=None, padding=0, channel_axis=1, dilation=1, ceil_mode=False) -> PoolGeometry:
    x = np.zeros(shape)
    return pooling.pool_arguments("max_pool", x, window, stride, padding, channel_axis, dilation, ceil_mode)[1]


NON_OVERLAPPING = [((2, 3, 9), 2), ((2, 3, 6, 7), (2, 3)), ((1, 2, 5, 4, 7), 2)]


@pytest.mark.parametrize("channels_last", [False, True], ids=["channel-first", "channels-last"])
@pytest.mark.parametrize(("shape", "window"), NON_OVERLAPPING, ids=["1d", "2d", "3d"])
def test_reshape_backward_equals_the_scatter(shape, window, channels_last):
    """Tiled windows (s = k, no padding) take the select-and-reshape dx from the saved taps; it equals the scatter."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    axis = 1
    if channels_last:
        x, axis = np.moveaxis(x, 1, -1), -1
    geometry = pooling.pool_arguments("max_pool", x, window, None, 0, axis)[1]
    assert geometry.non_overlapping
    x = jnp.asarray(x)
    y = jax.eval_shape(lambda x: convgrad.max_pool(x, window, channel_axis=axis)[0], x)
    g = jnp.asarray(rng.standard_normal(y.shape))

    @jax.jit
    def both(x, g):
        (_, switches), vjp = jax.vjp(lambda x: convgrad.max_pool(x, window, channel_axis=axis), x)
        dx = vjp((g, np.zeros(switches.shape, jax.dtypes.float0)))[0]
        taps = pooling.max_pool_forward(x, geometry)[1]
        scattered = convgrad.max_unpool(g, switches, geometry.in_spatial, channel_axis=axis)
        return dx, pooling.max_pool_input_grad_tiled(g, taps, geometry), scattered, taps

    dx, tiled, scattered, taps = both(x, g)
    assert taps.dtype == jnp.uint8  # the compact switches: one byte per output
    np.testing.assert_array_equal(tiled, scattered)
    np.testing.assert_array_equal(dx, tiled)


OVERLAPPING = [
    ((1, 2, 9), 3, 1, 0, {}),  # stride 1: one phase, three shifted copies; a batch of one (padded to two chunks)
    ((3, 2, 12, 11), 3, 2, 1, {}),  # the ResNet stem's 3x3/2 pad 1: four phases of 1, 2, 2 and 4 copies; 3 examples
    ((2, 3, 11, 8), (3, 2), (2, 3), ((2, 0), (0, 1)), {}),  # gaps along w (k < s): a phase no window reaches
    ((2, 1, 5, 6, 7), 2, (1, 2, 2), ((1, 0), (1, 1), (0, 1)), {}),  # 3-d
    ((2, 2, 13, 12), 3, 2, 2, {"dilation": 2}),  # dilation 2, stride 2: every tap in phase 0, shifted by t
    ((2, 2, 14), 3, 2, 1, {"dilation": 3}),  # dilation 3, stride 2: the taps alternate phases
    ((2, 2, 9, 10), 3, 2, 1, {"ceil_mode": True}),  # ceil mode: the last windows run past the padding
    ((1, 2, 3), 2, 5, 0, {}),  # stride > input: one position per phase, phases past the input dropped
]


@pytest.mark.parametrize("channels_last", [False, True], ids=["channel-first", "channels-last"])
@pytest.mark.parametrize(
    ("shape", "window", "stride", "padding", "options"),
    OVERLAPPING,
    ids=["1d", "stem", "gaps", "3d", "dilated", "dilated-phases", "ceil", "stride-past-input"],
)
def test_phase_backward_equals_the_scatter(shape, window, stride, padding, options, channels_last):
    """Any other geometry takes the per-phase dx from the saved taps; it equals the scatter-add to the switches.

    The cotangent holds small integers, so every sum is exact in float64 whatever its order,
    and the two must agree bit for bit.
    """
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape)
    axis = 1
    if channels_last:
        x, axis = np.moveaxis(x, 1, -1), -1
    geometry = pooling.pool_arguments("max_pool", x, window, stride, padding, axis, **options)[1]
    assert not geometry.non_overlapping
    pool = partial(convgrad.max_pool, window=window, stride=stride, padding=padding, channel_axis=axis, **options)
    x = jnp.asarray(x)
    g = jnp.asarray(rng.integers(-8, 9, jax.eval_shape(pool, x)[0].shape).astype(np.float64))

    @jax.jit
    def both(x, g):
        (_, switches), vjp = jax.vjp(pool, x)
        dx = vjp((g, np.zeros(switches.shape, jax.dtypes.float0)))[0]
        taps = pooling.max_pool_forward(x, geometry)[1]
        scattered = convgrad.max_unpool(g, switches, geometry.in_spatial, channel_axis=axis)
        return dx, pooling.max_pool_input_grad_phases(g, taps, geometry), scattered, taps

    dx, phases, scattered, taps = both(x, g)
    assert taps.dtype == jnp.uint8
    np.testing.assert_array_equal(phases, scattered)
    np.testing.assert_array_equal(dx, phases)


def test_registry_cases_cover_both_backward_paths_in_both_layouts():
    geometries = [_geometry(case.shapes[0], **case.options) for case in OPS["max_pool"].cases]
    assert {(g.non_overlapping, g.channels_last) for g in geometries} == {(a, b) for a in (0, 1) for b in (0, 1)}


def test_registry_cases_cover_every_new_argument():
    """Each new switch is in some default case, and so are inputs without a batch axis and zero-size ones."""
    max_cases, avg_cases = OPS["max_pool"].cases, OPS["avg_pool"].cases
    assert any(case.options.get("dilation", 1) != 1 for case in max_cases)
    assert any(case.options.get("ceil_mode") for case in max_cases)
    assert any(case.options.get("ceil_mode") for case in avg_cases)
    assert any(case.options.get("count_include_pad") is False for case in avg_cases)
    assert any(case.options.get("divisor_override") for case in avg_cases)
    for cases in (max_cases, avg_cases):
        window_tuples = [c for c in cases if isinstance(c.options["window"], tuple)]
        assert any(len(c.shapes[0]) == len(c.options["window"]) + 1 for c in window_tuples)  # no batch axis
        zero = {i if i < 2 else "spatial" for c in cases for i, size in enumerate(c.shapes[0]) if size == 0}
        assert zero == {0, 1, "spatial"}


# ---------------------------------------------------------------------------- integer outputs and inputs under autodiff


def test_switches_output_takes_no_gradient():
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 3, 6, 6)))
    # a loss of y only: one unit of gradient per window
    dx = jax.jit(jax.grad(lambda x: convgrad.max_pool(x, 3, 2, 1)[0].sum()))(x)
    assert dx.shape == x.shape and float(dx.sum()) == 2 * 3 * 3 * 3
    # a loss that ignores y (uses only the integer switches): no gradient flows through max_pool
    dx = jax.jit(jax.grad(lambda x: jnp.sum(x**2) + convgrad.max_pool(x, 3, 2, 1)[1].sum().astype(x.dtype)))(x)
    np.testing.assert_array_equal(dx, 2 * x)
    # jax.vjp's function takes a float0 cotangent for the switches (_max_pool_vjp passes one)
    g = jnp.ones((2, 3, 3, 3))
    _, switches, dx = _max_pool_vjp(x, g, 3, 2, 1)
    np.testing.assert_array_equal(dx, jax.jit(convgrad.max_unpool, static_argnums=2)(g, switches, (6, 6)))


def test_max_unpool_differentiates_in_y_with_integer_switches():
    y = jnp.asarray(np.random.default_rng(0).standard_normal((1, 2, 2, 2)))
    switches = jnp.array([[[[0, 3], [3, 8]], [[1, 1], [7, 2]]]], jnp.int32)
    weights = jnp.arange(2 * 9.0).reshape(1, 2, 3, 3)

    @jax.jit
    def grads(y, switches):
        dy = jax.grad(lambda y, s: jnp.vdot(convgrad.max_unpool(y, s, (3, 3)), weights))(y, switches)
        _, vjp = jax.vjp(lambda y, s: convgrad.max_unpool(y, s, (3, 3)), y, switches)
        return dy, vjp(weights)[1]

    dy, dswitches = grads(y, switches)
    # d/dy[n, c, i] = weights[n, c, switches[n, c, i]]
    np.testing.assert_array_equal(dy, [[[[0, 3], [3, 8]], [[10, 10], [16, 11]]]])
    assert dswitches.dtype == jax.dtypes.float0 and dswitches.shape == switches.shape


def test_switches_under_jit_and_vmap():
    """The registry checks the float output under jit and vmap; this checks the integer switches."""
    xs = np.random.default_rng(0).standard_normal((3, 2, 2, 5, 5))
    batched = jax.jit(jax.vmap(lambda x: convgrad.max_pool(x, 3, 2, 1)))(xs)[1]
    for i in range(3):
        np.testing.assert_array_equal(batched[i], loops.max_pool(xs[i], 3, 2, 1)[1])


def test_gradients_under_checkpoint():
    """jax.checkpoint (not covered by the registry) recomputes the forward and gives the same gradients."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 2, 6, 6)))
    switches = jnp.asarray(np.random.default_rng(1).integers(0, 36, (2, 2, 6, 6)), jnp.int32)

    def loss(x):
        pooled = convgrad.max_pool(x, 3, 2, 1)[0] + convgrad.max_pool(x, 2)[0][:, :, :3, :3]  # both backward paths
        return jnp.sum(jnp.sin(pooled)) + jnp.sum(jnp.sin(convgrad.avg_pool(x, (3, 2), 1, ((1, 0), (0, 1)))))

    unpool = lambda x: jnp.sum(jnp.sin(convgrad.max_unpool(x, switches, (6, 6))))
    for f in (loss, unpool):
        plain, remat = jax.jit(jax.grad(f))(x), jax.jit(jax.grad(jax.checkpoint(f)))(x)
        np.testing.assert_array_equal(remat, plain)
        assert float(jnp.abs(plain).sum()) > 0


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
def test_dtypes(dtype):
    x = jax.ShapeDtypeStruct((1, 2, 4, 4), dtype)
    y, switches = jax.eval_shape(lambda x: convgrad.max_pool(x, 2), x)
    assert y.dtype == dtype and switches.dtype == jnp.int32
    assert jax.eval_shape(lambda x: convgrad.avg_pool(x, 2), x).dtype == dtype
    assert jax.eval_shape(lambda y, s: convgrad.max_unpool(y, s, (4, 4)), y, switches).dtype == dtype
    assert jax.eval_shape(jax.grad(lambda x: convgrad.max_pool(x, 2)[0].sum()), x).dtype == dtype


# ---------------------------------------------------------------------------- zero-size inputs

ZERO_SIZE = [
    # (op, input shape, options, result shape): lax's and PyTorch's shapes; no windows along an empty spatial dim.
    # The VJPs marked "raised" raised before (ZeroDivisionError, or "output would be empty"); the others keep working.
    (convgrad.max_pool, (0, 3, 7, 7), {"window": 3, "stride": 2, "padding": 1}, (0, 3, 4, 4)),  # raised
    (convgrad.max_pool, (0, 3, 6, 6), {"window": 2}, (0, 3, 3, 3)),
    (convgrad.max_pool, (2, 0, 7, 7), {"window": 3, "stride": 2, "padding": 1}, (2, 0, 4, 4)),  # raised
    (convgrad.max_pool, (2, 3, 0, 5), {"window": (2, 2)}, (2, 3, 0, 2)),  # raised
    (convgrad.max_pool, (0, 7, 7, 3), {"window": 3, "stride": 2, "dilation": 2, "channel_axis": -1}, (0, 2, 2, 3)),
    (
        convgrad.avg_pool,
        (0, 3, 7, 7),
        {"window": 3, "stride": 2, "padding": 1, "count_include_pad": False},
        (0, 3, 4, 4),
    ),
    (convgrad.avg_pool, (2, 0, 6, 6), {"window": 2}, (2, 0, 3, 3)),
    (convgrad.avg_pool, (2, 3, 0, 6), {"window": 2, "stride": 2}, (2, 3, 0, 3)),  # raised
    (convgrad.avg_pool, (3, 0), {"window": (2,), "ceil_mode": True}, (3, 0)),  # raised
]


@pytest.mark.parametrize(
    ("op", "shape", "options", "expected"), ZERO_SIZE, ids=[f"{o.__name__}-{s}" for o, s, *_ in ZERO_SIZE]
)
def test_zero_size_inputs_give_zero_size_results_and_gradients(op, shape, options, expected):
    """Forward and VJP of an empty input, under jit: empty results of lax's shape, an empty gradient of the input's."""
    x = jnp.zeros(shape)
    y, dx = _pool_and_grad(op, x, jnp.zeros(expected), **options)
    assert y.shape == expected and dx.shape == shape
    if op is convgrad.max_pool:
        assert op(x, **options)[1].shape == expected


@pytest.mark.parametrize(
    ("y_shape", "output_size"),
    [((0, 2, 3, 3), (5, 5)), ((2, 0, 3, 3), (5, 5)), ((2, 2, 0, 3), (4, 4)), ((2, 2, 3), (0,))],
    ids=["no batch", "no channels", "no values", "empty map"],
)
def test_zero_size_max_unpool(y_shape, output_size):
    """An empty batch or channel set (which raised ZeroDivisionError), no values (a zero map), an empty map (which
    raised: output sizes had to be positive)."""
    y = jnp.ones(y_shape)
    switches = jnp.zeros(y_shape, jnp.int32)
    x, vjp = jax.vjp(lambda y: convgrad.max_unpool(y, switches, output_size), y)
    assert x.shape == (*y_shape[:2], *output_size) and not np.any(x)
    (dy,) = vjp(jnp.ones(x.shape))
    assert dy.shape == y_shape and not np.any(dy)  # an empty map: every switch out of range, no gradient


# ---------------------------------------------------------------------------- oversized requests

_OVERSIZED = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))  # a 4 GiB address space: an allocation would fail
import jax.numpy as jnp, convgrad
try:
    convgrad.max_unpool(jnp.zeros((1, 1, 2, 2)), jnp.zeros((1, 1, 2, 2), jnp.int32), (10**6, 10**6))
except ValueError as error:
    print(error)
"""


def test_an_unpool_output_too_large_for_memory_is_a_value_error_before_xla_sees_it():
    """``output_size=(10**6, 10**6)`` raised an OverflowError naming neither; in a process that cannot allocate it."""
    done = subprocess.run(
        [sys.executable, "-c", _OVERSIZED],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.fullmatch(
        r"max_unpool: output_size=\(1000000, 1000000\) makes the output \(1, 1, 1000000, 1000000\) float32, "
        r"4000000000000 bytes, more than the [0-9]+ bytes of memory this process can use\n",
        done.stdout,
    ), done.stdout


# ---------------------------------------------------------------------------- docstrings

PUBLIC_POOLS = [convgrad.max_pool, convgrad.max_unpool, convgrad.avg_pool]


@pytest.mark.parametrize("op", PUBLIC_POOLS, ids=lambda op: op.__name__)
def test_docstring_ends_with_raises_examples_references_and_its_examples_run(op):
    """Issue 14: ``Raises:``, a runnable ``Examples:`` block and ``References:``, in that order, at the end."""
    doc = op.__doc__
    sections = [doc.index(f"\n    {name}:\n") for name in ("Args", "Returns", "Raises", "Examples", "References")]
    assert sections == sorted(sections)
    with jax.enable_x64(False):  # the examples show the default float32
        finder = doctest.DocTestFinder()
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
        for test in finder.find(op, op.__name__, globs={}):
            runner.run(test)
    assert runner.tries >= 2 and runner.failures == 0


# ---------------------------------------------------------------------------- mutation tests


def _last_max_tap(taps, real=None):
    """Bug: ties go to the LAST maximum in raster order."""
    y, tap = taps[0], jnp.zeros(taps[0].shape, jnp.int32)
    found = None if real is None else real[0]
    for t in range(1, len(taps)):
        better = (taps[t] >= y) | jnp.isnan(taps[t])
        if real is not None:
            better = real[t] & (better | ~found)
            found = found | real[t]
        y, tap = jnp.where(better, taps[t], y), jnp.where(better, t, tap)
    return y, tap


def _scatter_set(values, switches, output_size):
    """Bug: coinciding switches overwrite each other instead of adding."""
    batch, channels = values.shape[:2]
    rows = jnp.arange(batch * channels)[:, None]
    columns = switches.reshape(batch * channels, -1)
    zeros = jnp.zeros((batch * channels, math.prod(output_size)), values.dtype)
    x = zeros.at[rows, columns].set(values.reshape(batch * channels, -1))
    return x.reshape(batch, channels, *output_size)


def _phase_grad_by_scatter_set(g, taps, geometry):
    """Bug: where overlapping windows picked the same element, one of their cotangents overwrites the other."""
    assert not geometry.channels_last
    return _scatter_set(g, pooling.tap_switches(taps, geometry), geometry.in_spatial)


_AVG_POOL_DIVISORS = pooling.avg_pool_divisors  # the unmutated function


def _real_element_count(geometry, count_include_pad, divisor_override):
    """Bug: always divide by the number of real (non-padded) elements of each window (count_include_pad=False)."""
    return _AVG_POOL_DIVISORS(geometry, False, divisor_override)


def _padded_window_size(geometry, count_include_pad, divisor_override):
    """Bug: always divide by K, the window's size (ignores count_include_pad, the ceil-mode cut, the override)."""
    return math.prod(geometry.window)


def _input_grad_without_divisor(g, geometry, divisor):
    """Bug: the backward forgets the 1 / D."""
    return pool_windows.spread_to_taps(g, geometry)


def _contiguous_tap_offsets(geometry, t):
    """Bug (in the per-phase backward only): tap ``t`` placed at ``t - lo``, as if the window were contiguous."""
    return tuple(t_d - lo for t_d, (lo, _) in zip(t, geometry.padding))


def _tiled_grad_without_interleave(g, taps, geometry):
    """Bug: the window blocks are laid out one after another ((i, j, a, b)) instead of interleaved ((i, a, j, b))."""
    axes = pool_windows.window_axes(geometry)
    selected = jnp.expand_dims(taps.astype(jnp.int32), axes) == pool_windows.tap_index(geometry)
    windows = jnp.where(selected, jnp.expand_dims(g, axes), jnp.zeros((), g.dtype))
    first, n = geometry.first_spatial_axis, len(geometry.window)
    positions = [first + 2 * d for d in range(n)]
    order = [*range(first), *positions, *axes, *range(first + 2 * n, windows.ndim)]
    return pool_windows.untile(jnp.transpose(windows, order).reshape(windows.shape), geometry)


def _fails(op, index):
    """The registry's checks on one grid case, in float64, without the transforms."""
    spec = OPS[op]
    return not verify_case(spec, spec.cases[index], "float64", transforms=False).passed


def test_mutation_last_maximum_on_ties_is_caught(mutate):
    """The registry's max_pool inputs have no ties (by design, for finite differences): the hand example catches it."""
    mutate(pooling, "max_and_first_tap", _last_max_tap)
    for check in (_check_first_max_wins_ties, _check_first_max_wins_ties_overlapping):
        with pytest.raises(AssertionError):
            check()


def test_mutation_set_instead_of_add_is_caught(mutate):
    mutate(pooling, "scatter_to_switches", _scatter_set)
    assert _fails("max_unpool", 0)
    with pytest.raises(AssertionError):
        _check_coinciding_switches_add()


def test_mutation_set_instead_of_add_in_the_phase_backward_is_caught(mutate):
    """max_pool's own backward for overlapping windows, replaced by a scatter that overwrites."""
    mutate(pooling, "max_pool_input_grad_phases", _phase_grad_by_scatter_set)
    assert _fails("max_pool", 0)  # overlapping 3x3/2 windows
    with pytest.raises(AssertionError):
        _check_coinciding_switches_add()


def _avg_case(**wanted) -> int:
    """The index of the first avg_pool grid case with these options."""
    cases = OPS["avg_pool"].cases
    return next(i for i, c in enumerate(cases) if all(c.options.get(k) == v for k, v in wanted.items()))


@pytest.mark.parametrize(
    ("name", "bug", "case"),
    [
        ("avg_pool_divisors", _real_element_count, {"padding": 1, "stride": 2, "window": 3}),  # padding counts
        ("avg_pool_divisors", _padded_window_size, {"count_include_pad": False}),
        ("avg_pool_divisors", _padded_window_size, {"ceil_mode": True, "padding": 1}),  # the last window cut short
        ("avg_pool_divisors", _padded_window_size, {"divisor_override": 4}),
        ("avg_pool_divisors", lambda geometry, count_include_pad, divisor_override: 1, {"window": 2}),
        ("avg_pool_input_grad", _input_grad_without_divisor, {"window": 2}),
    ],
    ids=[
        "count only real taps",
        "ignore count_include_pad",
        "ignore the ceil cut",
        "ignore the override",
        "no 1/D",
        "no 1/D in backward",
    ],
)
def test_mutation_wrong_average_divisor_is_caught(mutate, name, bug, case):
    mutate(pooling, name, bug)
    assert _fails("avg_pool", _avg_case(**case))


def test_mutation_dilation_ignored_in_the_phase_backward_is_caught(mutate):
    mutate(pooling, "tap_offsets_of", _contiguous_tap_offsets)
    dilated = next(i for i, c in enumerate(OPS["max_pool"].cases) if c.options.get("dilation", 1) != 1)
    assert _fails("max_pool", dilated)


def test_mutation_in_the_reshape_backward_is_caught(mutate):
    mutate(pooling, "max_pool_input_grad_tiled", _tiled_grad_without_interleave)
    assert _fails("max_pool", 1)  # non-overlapping 2x2


# ---------------------------------------------------------------------------- bad inputs

X = np.zeros((2, 3, 6, 6), np.float32)
Y, S = np.zeros((2, 3, 3, 3), np.float32), np.zeros((2, 3, 3, 3), np.int32)
POOL_BAD_INPUTS = [
    ((X, 0), {}, ValueError, "window must be positive, got window=0"),
    (
        (X, 2),
        {"channel_axis": 2},
        ValueError,
        r"channel_axis must be 1 \(N, C, \*spatial\) or -1 .* got channel_axis=2",
    ),
    ((X, 2), {"channel_axis": True}, ValueError, "got channel_axis=True"),
    ((X, (2, 0)), {}, ValueError, r"window must be an int or 2 ints each >= 1, got window=\(2, 0\)"),
    ((X, (2, 2, 2, 2)), {}, ValueError, r"window must have 1 to 3 entries \(one per spatial dim\), got window="),
    (
        (X, (2,)),
        {},
        ValueError,
        r"window=\(2,\) has 1 entry \(1 spatial dim\), so x must be batched, rank 3 \(N, C and 1 spatial\), or "
        r"unbatched, rank 2 \(C and 1 spatial\), got x.shape=\(2, 3, 6, 6\)",
    ),
    ((X, 2), {"ceil_mode": 1}, TypeError, r"ceil_mode must be a bool \(True or False\), got ceil_mode=1"),
    ((X, 2), {"ceil_mode": "yes"}, TypeError, "ceil_mode must be a bool .* got ceil_mode='yes'"),
    ((X, 2), {"ceil_mode": None}, TypeError, "ceil_mode must be a bool .* got ceil_mode=None"),
    ((X, 2.0), {}, TypeError, "window must be an int, got window=2.0"),
    ((X, 2), {"stride": 0}, ValueError, "stride must be positive, got stride=0"),
    ((X, 2), {"stride": (1, -1)}, ValueError, r"stride=\(1, -1\)"),
    ((X, 2), {"padding": -1}, ValueError, "padding=-1"),
    ((X, 2), {"padding": "SAME"}, ValueError, r"padding must be an int, 2 ints, 2 \(lo, hi\) pairs \(all >= 0\)"),
    (
        (X, 2),
        {"padding": 2},
        ValueError,
        r"padding=2 must be smaller than window=2 on both sides of every spatial dim, so that every window holds "
        r"an input element; spatial dim 0 has \(lo, hi\)=\(2, 2\) and window 2",
    ),
    (
        (X, (3, 2)),
        {"padding": ((0, 1), (0, 2))},
        ValueError,
        r"spatial dim 1 has \(lo, hi\)=\(0, 2\) and window 2",
    ),
    ((X, 7), {}, ValueError, "output would be empty along spatial dim 0: input size 6 .* smaller than the window 7"),
    ((X[0, 0], 2), {}, ValueError, r"x must have 3 to 5 dims \(\(N, C, \*spatial\) .* got x.shape=\(6, 6\)"),
    ((X[0, 0, 0], 2), {}, ValueError, r"x must have 3 to 5 dims"),
    ((X.astype(np.int32), 2), {}, TypeError, "x must have a real floating dtype .* x.dtype=int32"),
    ((X.astype(np.complex64), 2), {}, TypeError, "x must have a real floating dtype .* x.dtype=complex64"),
    (("x", 2), {}, TypeError, "x must be an array, got str"),
]


@pytest.mark.parametrize("op", ["max_pool", "avg_pool"])
@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"), POOL_BAD_INPUTS, ids=[m[:40] for *_, m in POOL_BAD_INPUTS]
)
def test_bad_pool_input_raises_a_clear_error(op, args, kwargs, error, message):
    with pytest.raises(error, match=rf"^{op}: .*" + message):
        getattr(convgrad, op)(*args, **kwargs)


MAX_POOL_BAD_INPUTS = [
    ((X, 2), {"dilation": 0}, ValueError, "dilation must be positive, got dilation=0"),
    ((X, 2), {"dilation": (1, 0)}, ValueError, r"dilation must be an int or 2 ints each >= 1, got dilation=\(1, 0\)"),
    (
        (np.zeros((1, 1, 2), np.float32), 2),
        {"stride": 1, "padding": 1, "dilation": 3},
        ValueError,
        "window 0 along spatial dim 0 holds no input element .* every tap reads padding",  # taps -1 and 2 of 0, 1
    ),
    (
        (X, 2),
        {"padding": 4, "dilation": 2},
        ValueError,
        r"padding=4 must be smaller than the dilated window \(k - 1\) d \+ 1 = 3 on both sides .* dilation 2",
    ),
]


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"), MAX_POOL_BAD_INPUTS, ids=[m[:30] for *_, m in MAX_POOL_BAD_INPUTS]
)
def test_bad_max_pool_input_raises_a_clear_error(args, kwargs, error, message):
    with pytest.raises(error, match=r"^max_pool: " + message):
        convgrad.max_pool(*args, **kwargs)


AVG_POOL_BAD_INPUTS = [
    ({"count_include_pad": 0}, TypeError, "count_include_pad must be a bool .* got count_include_pad=0"),
    ({"divisor_override": 0}, ValueError, "divisor_override must be a nonzero int or None, got divisor_override=0"),
    ({"divisor_override": 2.5}, TypeError, "divisor_override must be an int, got divisor_override=2.5"),
    ({"divisor_override": True}, TypeError, "divisor_override must be an int, got divisor_override=True"),
]


@pytest.mark.parametrize(
    ("kwargs", "error", "message"), AVG_POOL_BAD_INPUTS, ids=[m[:30] for *_, m in AVG_POOL_BAD_INPUTS]
)
def test_bad_avg_pool_input_raises_a_clear_error(kwargs, error, message):
    with pytest.raises(error, match=r"^avg_pool: " + message):
        convgrad.avg_pool(X, 2, **kwargs)


UNPOOL_BAD_INPUTS = [
    (
        (Y, S.astype(np.float32), (6, 6)),
        TypeError,
        r"switches must have an integer dtype \(flat indices into each plane\), got switches.dtype=float32",
    ),
    (
        (Y, S.astype(bool), (6, 6)),
        TypeError,
        r"switches must have an integer dtype \(flat indices into each plane\), got switches.dtype=bool",
    ),
    ((Y, "s", (6, 6)), TypeError, "switches must be an array, got str"),
    (
        (Y, S[:, :, :2], (6, 6)),
        ValueError,
        r"switches must have the shape of y, got switches.shape=\(2, 3, 2, 3\) and y.shape=\(2, 3, 3, 3\)",
    ),
    (
        (Y, S, (6,)),
        ValueError,
        r"output_size=\(6,\) has 1 entry \(1 spatial dim\), so y must be batched, rank 3 \(N, C and 1 spatial\), "
        r"or unbatched, rank 2 \(C and 1 spatial\), got y.shape=\(2, 3, 3, 3\)",
    ),
    ((Y, S, (6, -1)), ValueError, r"output_size must be a sequence of 1 to 3 ints >= 0 .* got output_size=\(6, -1\)"),
    ((Y, S, (6, 6.0)), TypeError, r"output_size must be a sequence of 1 to 3 ints >= 0 .* got output_size=\(6, 6.0\)"),
    ((Y, S, 6), TypeError, "output_size must be a sequence of 1 to 3 ints >= 0 .* got output_size=6"),
    ((Y, S, (2, 2, 2, 2)), ValueError, r"output_size must have 1 to 3 entries"),
    ((Y.astype(np.int32), S, (6, 6)), TypeError, "y must have a real floating dtype .* y.dtype=int32"),
    ((Y[0, 0], S[0, 0], (6, 6)), ValueError, r"output_size=\(6, 6\) has 2 entries .* got y.shape=\(3, 3\)"),
    (
        (Y, S.astype(np.uint8), (20, 20)),
        ValueError,
        r"output_size=\(20, 20\) has 400 positions per plane, more than switches.dtype=uint8 can index \(at most 255\)",
    ),
    (
        (Y, S, (10**6, 10**6)),
        ValueError,
        r"output_size=\(1000000, 1000000\) makes the output \(2, 3, 1000000, 1000000\) float32, 24000000000000 "
        r"bytes, more than the [0-9]+ bytes of memory this process can use",
    ),
]


@pytest.mark.parametrize(("args", "error", "message"), UNPOOL_BAD_INPUTS, ids=[m[:40] for *_, m in UNPOOL_BAD_INPUTS])
def test_bad_unpool_input_raises_a_clear_error(args, error, message):
    with pytest.raises(error, match=r"^max_unpool: " + message):
        convgrad.max_unpool(*args)


def test_bad_unpool_channel_axis():
    with pytest.raises(ValueError, match=r"^max_unpool: channel_axis must be 1 .* got channel_axis=0"):
        convgrad.max_unpool(Y, S, (6, 6), channel_axis=0)


def test_bad_input_raises_under_jit_too():
    with pytest.raises(ValueError, match=re.escape("max_pool: padding=2 must be smaller than window=2")):
        jax.jit(lambda x: convgrad.max_pool(x, 2, padding=2))(X)
    with pytest.raises(ValueError, match=re.escape("max_unpool: switches must have the shape of y")):
        jax.jit(lambda y, s: convgrad.max_unpool(y, s, (6, 6)))(Y, S[:, :, :2])


# Run with XLA's default optimizations (the suite turns the backend's off, see conftest.py), which
# is where the fused producer below is compiled as users get it.
_FUSED_PRODUCER = """
import sys
import numpy as np, jax, jax.numpy as jnp
import convgrad

channel_axis = int(sys.argv[1])
rng = np.random.default_rng(0)
x = jnp.asarray(np.maximum(rng.standard_normal((8, 1, 28, 28)), 0), jnp.float32)
w = jnp.asarray(rng.standard_normal((16, 1, 3, 3)) * 0.5, jnp.float32)
b = jnp.asarray(rng.standard_normal(16) * 0.1, jnp.float32)
layout = None if channel_axis == 1 else ("NHWC", "OIHW", "NHWC")
if layout:
    x = jnp.moveaxis(x, 1, -1)

@jax.jit
def features_and_pool(x):
    a = convgrad.relu(convgrad.conv(x, w, b, padding=1, formulation="im2col", dimension_numbers=layout))
    return a, *convgrad.max_pool(a, 2, channel_axis=channel_axis)

a, y, switches = (np.moveaxis(np.asarray(t), channel_axis, 1) for t in features_and_pool(x))
at_switches = np.take_along_axis(a.reshape(*a.shape[:2], -1), switches.reshape(*switches.shape[:2], -1), 2)
print(int(np.sum(at_switches.reshape(y.shape) != y)), y.size)
"""


@pytest.mark.parametrize("channel_axis", [1, -1])
def test_switches_hold_the_maximum_when_the_input_is_a_fused_expression(channel_axis):
    """``x[switches] == y`` exactly when ``x`` is computed in the same program by a fused sum of products.

    ``conv``'s im2col forward is such a producer. XLA may recompute it inside
    each consumer, and the computations need not agree; a selection that compared the taps
    with a separately computed maximum picked wrong taps here (131 of the
    25,088 windows, in either layout), which no test on stored
    inputs could see. In a fresh process with XLA's default flags.
    """
    env = with_xla_defaults(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", _FUSED_PRODUCER, str(channel_axis)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    wrong, windows = map(int, done.stdout.split())
    assert wrong == 0, f"{wrong} of {windows} switches point at an element that is not the window's maximum"


# The forward and the VJP of the ResNet stem's pool (3x3, stride 2, padding 1), timed interleaved,
# with XLA's default flags: the median VJP time over the median forward time.
_OVERLAPPING_VJP_COST = """
import time
import numpy as np, jax, jax.numpy as jnp
import convgrad

x = jnp.asarray(np.random.default_rng(0).standard_normal((4, 56, 56, 32)), jnp.float32)
pool = lambda x: convgrad.max_pool(x, 3, 2, 1, channel_axis=-1)[0]
g = jnp.ones(jax.eval_shape(pool, x).shape, x.dtype)
programs = [(jax.jit(pool), (x,)), (jax.jit(lambda x, g: jax.vjp(pool, x)[1](g)), (x, g))]
times = [[], []]
for repetition in range(25):
    for i, (program, args) in enumerate(programs):
        start = time.perf_counter()
        jax.block_until_ready(program(*args))
        if repetition >= 5:
            times[i].append(time.perf_counter() - start)
print(np.median(times[1]) / np.median(times[0]))
"""


def test_overlapping_max_pool_vjp_costs_a_few_forwards():
    """The backward reads the saved taps 9 times (once per window offset); XLA must not recompute them each time.

    Measured on the 2-core machine of docs/performance.md: 1.4x to 1.8x the forward's
    time. With the forward's loop over batch chunks removed, XLA fuses the running
    maximum into the backward's reads and the VJP takes 18x to 23x the forward. The
    bound sits 3x from both.
    """
    env = with_xla_defaults(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    done = subprocess.run(
        [sys.executable, "-c", _OVERLAPPING_VJP_COST], env=env, cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    ratio = float(done.stdout)
    assert ratio < 6, f"the max-pool VJP took {ratio:.1f}x its forward"
