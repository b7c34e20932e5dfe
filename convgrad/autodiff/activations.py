"""The activations from ``jax.nn`` / ``jnp``, for ``jax.grad`` to differentiate."""

from __future__ import annotations

import jax
import jax.numpy as jnp


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
