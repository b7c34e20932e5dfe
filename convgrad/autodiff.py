"""The same ops written with plain lax / jax.nn, for ``jax.grad`` to differentiate.

These are the autodiff references of the verification suite and the
``--grads autodiff`` path of training: no ``custom_vjp`` anywhere here, so every
gradient of these functions comes from JAX's own differentiation rules. Their
arguments mean what they mean in :mod:`convgrad`; layouts are channel-first
unless ``dimension_numbers`` says otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
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
