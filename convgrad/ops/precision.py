"""The one precision rule the ops share: where they sum, they sum in at least float32."""

from __future__ import annotations

import jax.numpy as jnp


def accumulator_dtype(dtype) -> jnp.dtype:
    """``promote_types(dtype, float32)``: float32 for 16-bit inputs, the input's own dtype otherwise."""
    return jnp.promote_types(dtype, jnp.float32)
