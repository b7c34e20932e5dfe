"""max_pool's computation layout: a channel-first input computed channels-last inside gives the same values.

On CPU, tiled windows over a channel-first input of at least
``pooling.CHANNELS_LAST_MIN_CHANNELS`` channels run channels-last between two transposes
(``pooling.in_computation_layout``). The registry's cases of 16 and 17 channels verify that
path's VJP four ways; these tests pin that the default call takes it, and that it agrees
exactly with the channels-last call and with the channel-first computation.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import convgrad
from convgrad.ops import pooling

CHANNELS = pooling.CHANNELS_LAST_MIN_CHANNELS

# (channel-first shape, window): tiled windows in 1-3 spatial dims, leftover samples, no batch axis
GEOMETRIES = [
    ((2, CHANNELS, 6, 9), 2),
    ((3, CHANNELS + 1, 7), 2),
    ((1, CHANNELS, 4, 2, 5), 2),
    ((CHANNELS, 4, 6), (2, 2)),
    ((2, 2 * CHANNELS, 6, 6), (3, 2)),
]


def _pool_and_grad(x, window, channel_axis, g):
    """``(y, switches, dx)`` of ``max_pool(x, window)`` for the cotangent ``g``, jit-compiled."""

    def run(x, g):
        (y, switches), vjp = jax.vjp(lambda x: convgrad.max_pool(x, window, channel_axis=channel_axis), x)
        return y, switches, vjp((g, np.zeros(switches.shape, jax.dtypes.float0)))[0]

    return jax.jit(run)(x, g)


def _input_and_cotangent(shape, window, seed):
    """Channel-first ``x`` and a cotangent shaped like its maxima, and the axis of their channels."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal(shape), jnp.float32)
    y = jax.eval_shape(lambda x: convgrad.max_pool(x, window)[0], x)
    channel = 0 if not isinstance(window, int) and len(shape) == len(window) + 1 else 1
    return x, jnp.asarray(rng.standard_normal(y.shape), jnp.float32), channel


@pytest.mark.parametrize("shape, window", GEOMETRIES)
def test_channel_first_equals_channels_last_exactly(shape, window):
    """The default channel-first call gives the channels-last call's maxima, switches and input gradient exactly."""
    x, g, channel = _input_and_cotangent(shape, window, 0)
    first = _pool_and_grad(x, window, 1, g)
    last = _pool_and_grad(jnp.moveaxis(x, channel, -1), window, -1, jnp.moveaxis(g, channel, -1))
    for a, b in zip(first, last):
        np.testing.assert_array_equal(np.asarray(a), np.moveaxis(np.asarray(b), -1, channel))


@pytest.mark.parametrize("shape, window", GEOMETRIES)
def test_channels_last_inside_equals_the_channel_first_computation(shape, window, monkeypatch):
    """The channels-last path and the channel-first computation (forced by a higher threshold) agree exactly."""
    x, g, _ = _input_and_cotangent(shape, window, 1)
    inside = _pool_and_grad(x, window, 1, g)
    monkeypatch.setattr(pooling, "CHANNELS_LAST_MIN_CHANNELS", 10**9)
    native = _pool_and_grad(x, window, 1, g)  # traced afresh: _pool_and_grad jit-compiles a new function
    for a, b in zip(inside, native):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("channels, taken", [(CHANNELS, True), (CHANNELS - 1, False)])
def test_default_call_computes_channels_last_from_the_threshold_on(channels, taken):
    """``max_pool(x, 2)`` on channel-first ``x`` transposes, forward and backward, iff ``C`` reaches the threshold."""
    x = jnp.zeros((2, channels, 4, 4), jnp.float32)
    forward = str(jax.make_jaxpr(lambda x: convgrad.max_pool(x, 2))(x))
    backward = str(jax.make_jaxpr(jax.grad(lambda x: convgrad.max_pool(x, 2)[0].sum()))(x))
    assert ("transpose" in forward) is taken
    assert ("transpose" in backward) is taken


def test_overlapping_windows_stay_channel_first():
    """Overlapping windows (measured no faster channels-last) are computed in the input's layout."""
    x = jnp.zeros((2, 4 * CHANNELS, 7, 7), jnp.float32)
    assert "transpose" not in str(jax.make_jaxpr(lambda x: convgrad.max_pool(x, 3, 2, 1))(x))
