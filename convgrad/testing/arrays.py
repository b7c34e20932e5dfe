"""What the checks treat as an array, as floating, and how they lift it to float64; the shared jit cache.

These are the small rules every check shares (``check_vjp``, ``convgrad verify``):
one definition each.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def is_array(a: Any) -> bool:
    """A JAX or NumPy array (or NumPy scalar): anything with a ``shape`` and a ``dtype``."""
    return hasattr(a, "shape") and hasattr(a, "dtype")


def is_float(a: Any) -> bool:
    """An array of a floating dtype (float16, bfloat16, float32, float64)."""
    return is_array(a) and jnp.issubdtype(a.dtype, jnp.floating)


def float64_available() -> bool:
    """Whether the default backend computes in float64 (every backend but TPU)."""
    return jax.default_backend() != "tpu"


def as_float64(a: Any) -> Any:
    """A floating array as a float64 JAX array (call it under ``jax.enable_x64(True)``); anything else unchanged."""
    if is_float(a):
        return jnp.asarray(np.asarray(a, np.float64))
    return a


def replace_at(values: Sequence[Any], positions: Sequence[int], replacements: Sequence[Any]) -> tuple[Any, ...]:
    """``values`` as a tuple with ``values[positions[k]] = replacements[k]``."""
    values = list(values)
    for position, replacement in zip(positions, replacements):
        values[position] = replacement
    return tuple(values)


@functools.lru_cache(maxsize=1024)
def jitted(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``jax.jit(fn)``, cached per function so that repeated checks share compilations."""
    return jax.jit(fn)
