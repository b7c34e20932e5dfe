"""The losses in plain JAX, for ``jax.grad`` to differentiate."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(logits, labels) -> jax.Array:
    """``-log_softmax(logits)[label]`` per example, picked with ``take_along_axis`` (labels must be in range)."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(log_probs, jnp.expand_dims(labels, -1), axis=-1)[..., 0]


def mse(y, target) -> jax.Array:
    """``mean((y - target)^2)`` over all elements."""
    return jnp.mean(jnp.square(y - target))
