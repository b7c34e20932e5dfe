"""NumPy loop reference of ``dropout``: the mask drawn from the key (part of the definition), then entry by entry.

The mask is the only JAX call here: ``jax.random.bernoulli(key, float32(1 - rate),
x.shape)``, the definition in ``convgrad.dropout``'s docstring. Everything after it is
float64 NumPy, entry by entry.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def keep_mask(key, rate, shape) -> np.ndarray:
    """``keep[i] = u[i] < 1 - rate`` for ``u = uniform(key, shape, float32)``, as a NumPy bool array."""
    key = jnp.asarray(key)
    if not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(key)
    return np.asarray(jax.random.bernoulli(key, np.float32(1 - rate), tuple(shape)))


def dropout(x, rate, key, *, training=True) -> np.ndarray:
    """``y[i] = x[i] / (1 - rate)`` where ``keep[i]``, else 0; ``y = x`` when not training or ``rate = 0``."""
    x = np.asarray(x, np.float64)
    if not training or rate == 0:
        return x.copy()
    keep = keep_mask(key, rate, x.shape)
    y = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        if keep[i]:
            y[i] = x[i] / (1 - rate)
    return y


def dropout_vjp(x, rate, key, g, *, training=True) -> tuple[np.ndarray, None, None]:
    """``(dx, None, None)``: each kept ``y[i] = x[i] / (1 - rate)`` sends ``g[i] / (1 - rate)`` back; dropped send 0."""
    g = np.asarray(g, np.float64)
    if not training or rate == 0:
        return g.copy(), None, None
    keep = keep_mask(key, rate, np.shape(x))
    dx = np.zeros_like(g)
    for i in np.ndindex(g.shape):
        if keep[i]:
            dx[i] = g[i] / (1 - rate)
    return dx, None, None
