"""``dense`` in plain JAX, for ``jax.grad`` to differentiate."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def dense(x, w, b=None) -> jax.Array:
    """``x @ w + b`` over the last axis of ``x``."""
    y = jnp.matmul(x, w)
    return y if b is None else y + b
