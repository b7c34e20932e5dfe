"""The pooling ops in plain lax (``reduce_window``, ``.at[].add``), for ``jax.grad`` to differentiate."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.autodiff.convolutions import lax_padding, per_dim


def _window_arguments(x, window, stride, padding, channel_axis):
    """lax's per-axis window, strides and padding: nothing pooled over batch and channels."""
    n = x.ndim - 2
    window = per_dim(window, n)
    stride = window if stride is None else per_dim(stride, n)
    pads = lax_padding(padding, n)
    if channel_axis == 1:
        return (1, 1, *window), (1, 1, *stride), [(0, 0), (0, 0), *pads]
    return (1, *window, 1), (1, *stride, 1), [(0, 0), *pads, (0, 0)]


def max_pool(x, window, stride=None, padding=0, *, channel_axis=1) -> jax.Array:
    """``lax.reduce_window`` with ``max`` from ``-inf`` (so padding counts as ``-inf``); ``y`` only, no switches.

    The initial values are NumPy constants, so lax recognises the monoid and
    uses its differentiable ``reduce_window_max`` / ``reduce_window_sum``.
    """
    dims, strides, pads = _window_arguments(x, window, stride, padding, channel_axis)
    return lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, dims, strides, pads)


def avg_pool(x, window, stride=None, padding=0, *, channel_axis=1) -> jax.Array:
    """``lax.reduce_window`` with ``add`` from 0, over ``K = prod(window)`` (zero padding counted)."""
    dims, strides, pads = _window_arguments(x, window, stride, padding, channel_axis)
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, dims, strides, pads)
    return total / math.prod(dims)


def max_unpool(y, switches, output_size, *, channel_axis=1) -> jax.Array:
    """``.at[].add`` of ``y`` at its switches into zero planes of ``prod(output_size)``; out-of-range ones dropped."""
    if channel_axis != 1:
        moved = max_unpool(jnp.moveaxis(y, -1, 1), jnp.moveaxis(switches, -1, 1), output_size)
        return jnp.moveaxis(moved, 1, -1)
    batch, channels = y.shape[:2]
    plane = math.prod(output_size)
    switches = jnp.reshape(switches, (batch * channels, -1))
    switches = jnp.where((switches >= 0) & (switches < plane), switches, plane)
    rows = jnp.arange(batch * channels)[:, None]
    x = (
        jnp.zeros((batch * channels, plane), y.dtype)
        .at[rows, switches]
        .add(y.reshape(batch * channels, -1), mode="drop")
    )
    return x.reshape(batch, channels, *output_size)
