"""The losses in plain JAX, for ``jax.grad`` to differentiate."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def softmax_cross_entropy(
    logits, labels, *, axis=-1, weight=None, ignore_index=None, label_smoothing=0.0, reduction="none"
) -> jax.Array:
    """``-log_softmax`` against the (smoothed, weighted) targets: labels picked with ``take_along_axis`` (in range).

    Class indices: ``(1 - e) w[t] (-log p[t]) + (e / C) sum_c w[c] (-log p[c])``, 0 where
    ignored; probabilities: ``sum_c w[c] ((1 - e) t[c] + e / C) (-log p[c])``. The mean
    divides by the summed weights of the kept labels, or by the number of examples.
    """
    log_probs = jnp.moveaxis(jax.nn.log_softmax(logits, axis=axis), axis, -1)
    classes = log_probs.shape[-1]
    w = jnp.ones(classes, log_probs.dtype) if weight is None else weight
    e = label_smoothing
    uniform = e / classes if classes else 0.0  # no classes: every sum over them is empty
    if jnp.issubdtype(labels.dtype, jnp.floating):
        targets = (1 - e) * jnp.moveaxis(labels, axis, -1) + uniform
        losses = -jnp.sum(w * targets * log_probs, axis=-1)
        divisor = losses.size
    else:
        ignored = jnp.zeros(labels.shape, bool) if ignore_index is None else labels == ignore_index
        index = jnp.where(ignored, 0, labels).astype(jnp.int32)
        picked = jnp.take_along_axis(log_probs, index[..., None], axis=-1)[..., 0]
        losses = -(1 - e) * w[index] * picked - uniform * jnp.sum(w * log_probs, axis=-1)
        losses = jnp.where(ignored, 0, losses)
        divisor = jnp.sum(jnp.where(ignored, 0, w[index]))
    if reduction == "none":
        return losses
    if reduction == "sum":
        return jnp.sum(losses)
    return jnp.sum(losses) / divisor


def mse(y, target, *, reduction="mean") -> jax.Array:
    """``(y - target)^2``, its sum, or its mean over all elements."""
    squares = jnp.square(y - target)
    if reduction == "none":
        return squares
    return jnp.sum(squares) if reduction == "sum" else jnp.mean(squares)
