"""``dropout`` in plain JAX, for ``jax.grad`` to differentiate: the same mask from the same key, times the scale."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def dropout(x, rate, key, *, training=True) -> jax.Array:
    """``x * keep / (1 - rate)`` with ``keep = bernoulli(key, float32(1 - rate), x.shape)``; ``x`` when not training.

    A raw ``uint32`` key is wrapped into the typed key it spells, so both forms
    draw the same mask.
    """
    if not training or rate == 0:
        return x
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    keep = jax.random.bernoulli(key, np.float32(1 - rate), x.shape)
    return x * keep.astype(x.dtype) / (1 - rate)
