"""The normalization layers in plain JAX, for ``jax.grad`` to differentiate.

Each computes ``mean``, the biased ``var`` and ``(x - mean) / sqrt(var + eps)`` with
``jnp`` reductions over its normalization axes, in at least float32, and lets JAX
differentiate all of it. The running statistics of ``batch_norm`` are buffers: their
update and, in evaluation, their use pass through ``lax.stop_gradient``, so that JAX
gives them the zero cotangents convgrad's VJP gives them (and PyTorch, which does not
differentiate them). Arguments mean what they mean in :mod:`convgrad`; no checks.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax import lax

from convgrad.ops.precision import accumulator_dtype


def batch_norm(
    x, scale, offset, running_mean, running_var, *, training, momentum=0.1, eps=1e-5, channel_axis=1
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """``(y, running_mean, running_var)``: statistics per channel over every other axis."""
    axis = channel_axis % x.ndim
    axes = tuple(d for d in range(x.ndim) if d != axis)
    per_channel = tuple(x.shape[axis] if d == axis else 1 for d in range(x.ndim))
    x_acc = _widen(x)
    if training:
        mean = jnp.mean(x_acc, axis=axes, keepdims=True)
        var = jnp.var(x_acc, axis=axes, keepdims=True)
        count = math.prod(x.shape[d] for d in axes)
        if running_mean is not None and count > 0:
            unbiased = var.reshape(-1) * count / (count - 1)
            new_mean = (1 - momentum) * running_mean + momentum * mean.reshape(-1)
            new_var = (1 - momentum) * running_var + momentum * unbiased
            running_mean = lax.stop_gradient(new_mean.astype(running_mean.dtype))
            running_var = lax.stop_gradient(new_var.astype(running_var.dtype))
    else:
        running_mean, running_var = lax.stop_gradient(running_mean), lax.stop_gradient(running_var)
        mean = _widen(running_mean).reshape(per_channel)
        var = _widen(running_var).reshape(per_channel)
    y = _affine((x_acc - mean) / jnp.sqrt(var + eps), scale, offset, per_channel)
    return y.astype(x.dtype), running_mean, running_var


def layer_norm(x, normalized_shape, scale=None, offset=None, *, eps=1e-5) -> jax.Array:
    """Statistics over the trailing ``len(normalized_shape)`` axes; ``scale``/``offset`` shaped like them."""
    k = 1 if isinstance(normalized_shape, int) else len(normalized_shape)
    axes = tuple(range(x.ndim - k, x.ndim))
    x_acc = _widen(x)
    mean = jnp.mean(x_acc, axis=axes, keepdims=True)
    var = jnp.var(x_acc, axis=axes, keepdims=True)
    return _affine((x_acc - mean) / jnp.sqrt(var + eps), scale, offset, x.shape[x.ndim - k :]).astype(x.dtype)


def group_norm(x, num_groups, scale=None, offset=None, *, eps=1e-5, channel_axis=1) -> jax.Array:
    """``x`` reshaped to split channels into ``(G, C/G)``; statistics per ``(n, group)``."""
    axis = channel_axis % x.ndim
    channels = x.shape[axis]
    grouped = _widen(x).reshape(*x.shape[:axis], num_groups, channels // num_groups, *x.shape[axis + 1 :])
    axes = tuple(d for d in range(1, grouped.ndim) if d != axis)
    mean = jnp.mean(grouped, axis=axes, keepdims=True)
    var = jnp.var(grouped, axis=axes, keepdims=True)
    x_hat = ((grouped - mean) / jnp.sqrt(var + eps)).reshape(x.shape)
    per_channel = tuple(channels if d == axis else 1 for d in range(x.ndim))
    return _affine(x_hat, scale, offset, per_channel).astype(x.dtype)


def instance_norm(x, scale=None, offset=None, *, eps=1e-5, channel_axis=1) -> jax.Array:
    """Statistics per ``(n, c)`` over the spatial axes."""
    axis = channel_axis % x.ndim
    axes = tuple(d for d in range(1, x.ndim) if d != axis)
    x_acc = _widen(x)
    mean = jnp.mean(x_acc, axis=axes, keepdims=True)
    var = jnp.var(x_acc, axis=axes, keepdims=True)
    per_channel = tuple(x.shape[axis] if d == axis else 1 for d in range(x.ndim))
    return _affine((x_acc - mean) / jnp.sqrt(var + eps), scale, offset, per_channel).astype(x.dtype)


def _widen(a: jax.Array) -> jax.Array:
    """``a`` in its accumulator dtype (16-bit values in float32), so sums accumulate there as in convgrad's ops."""
    return a.astype(accumulator_dtype(a.dtype))


def _affine(x_hat, scale, offset, parameter_shape) -> jax.Array:
    """``scale x_hat + offset`` with the parameters reshaped to broadcast (``None``: 1 and 0)."""
    if scale is not None:
        x_hat = x_hat * _widen(scale).reshape(parameter_shape)
    if offset is not None:
        x_hat = x_hat + _widen(offset).reshape(parameter_shape)
    return x_hat
