"""The same ops written with plain lax / jax.nn, for ``jax.grad`` to differentiate.

These are the autodiff references of the verification suite and the
``--grads autodiff`` path of training: no ``custom_vjp`` anywhere here, so every
gradient of these functions comes from JAX's own differentiation rules. Their
arguments mean what they mean in :mod:`convgrad`; layouts are channel-first
unless ``dimension_numbers`` says otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def _per_dim(value, n: int) -> tuple:
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,) * n


def _lax_padding(padding, n: int):
    """lax's own ``"SAME"``/``"VALID"`` strings, or explicit (lo, hi) pairs."""
    if isinstance(padding, str):
        return padding.upper()
    return [tuple(p) if isinstance(p, Sequence) else (p, p) for p in _per_dim(padding, n)]


def conv(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, dimension_numbers=None) -> jax.Array:
    """``lax.conv_general_dilated`` plus a broadcast bias."""
    n = w.ndim - 2
    if dimension_numbers is None:
        dimension_numbers = ("NC" + "DHW"[3 - n :], "OI" + "DHW"[3 - n :], "NC" + "DHW"[3 - n :])
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=_per_dim(stride, n),
        padding=_lax_padding(padding, n),
        rhs_dilation=_per_dim(dilation, n),
        dimension_numbers=dimension_numbers,
        feature_group_count=groups,
    )
    if b is None:
        return y
    channel_axis = dimension_numbers[2].index("C")
    return y + jnp.reshape(b, [-1 if axis == channel_axis else 1 for axis in range(y.ndim)])


def conv_transpose(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1) -> jax.Array:
    """PyTorch's ConvTranspose: the ``s``-dilated input (``lhs_dilation``) padded by ``d (k - 1) - p`` low and
    ``d (k - 1) - p + output_padding`` high, correlated with the kernel flipped in space and with in/out
    channels swapped per group, ``(C, O/G, *k) -> (O, C/G, *k)``."""
    n = w.ndim - 2
    stride, padding, output_padding, dilation = (_per_dim(v, n) for v in (stride, padding, output_padding, dilation))
    kernel = w.shape[2:]
    in_channels, group_out = w.shape[:2]
    flipped = jnp.flip(w, axis=tuple(range(2, w.ndim)))
    blocks = flipped.reshape(groups, in_channels // groups, group_out, *kernel)
    w_t = jnp.swapaxes(blocks, 1, 2).reshape(groups * group_out, in_channels // groups, *kernel)
    pads = [(d * (k - 1) - p, d * (k - 1) - p + e) for k, p, e, d in zip(kernel, padding, output_padding, dilation)]
    layout = "NC" + "DHW"[3 - n :]
    y = lax.conv_general_dilated(
        x,
        w_t,
        window_strides=(1,) * n,
        padding=pads,
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=(layout, "OI" + "DHW"[3 - n :], layout),
        feature_group_count=groups,
    )
    if b is None:
        return y
    return y + jnp.reshape(b, (1, -1, *(1,) * n))


def _window_arguments(x, window, stride, padding, channel_axis):
    """lax's per-axis window, strides and padding: nothing pooled over batch and channels."""
    n = x.ndim - 2
    window = _per_dim(window, n)
    stride = window if stride is None else _per_dim(stride, n)
    pads = _lax_padding(padding, n)
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


def dense(x, w, b=None) -> jax.Array:
    """``x @ w + b`` over the last axis of ``x``."""
    y = jnp.matmul(x, w)
    return y if b is None else y + b


def relu(x) -> jax.Array:
    """``jax.nn.relu``: its derivative is the "gradient" rule (0 at ``x = 0``); the visualization rules have none."""
    return jax.nn.relu(x)


def sigmoid(x) -> jax.Array:
    return jax.nn.sigmoid(x)


def tanh(x) -> jax.Array:
    return jnp.tanh(x)


def softmax(x, axis=-1) -> jax.Array:
    return jax.nn.softmax(x, axis=axis)


def log_softmax(x, axis=-1) -> jax.Array:
    return jax.nn.log_softmax(x, axis=axis)


def softmax_cross_entropy(logits, labels) -> jax.Array:
    """``-log_softmax(logits)[label]`` per example, picked with ``take_along_axis`` (labels must be in range)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, jnp.expand_dims(labels, -1), axis=-1)[..., 0]


def mse(y, target) -> jax.Array:
    """``mean((y - target)^2)`` over all elements."""
    return jnp.mean(jnp.square(y - target))
