"""Losses with hand-derived VJPs: ``softmax_cross_entropy`` (integer labels) and ``mse``.

Each op reads top to bottom: public function, ``_fwd`` (what it saves, and
why), ``_bwd`` (the derivation as code), ``defvjp``, then the small named
functions the backward is made of. Sums are accumulated in at least float32.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.activations import shifted_logits
from convgrad.ops.precision import accumulator_dtype
from convgrad.ops.replicas import like_primal

# ---------------------------------------------------------------------------- softmax_cross_entropy


def softmax_cross_entropy(logits: ArrayLike, labels: ArrayLike) -> jax.Array:
    r"""Cross-entropy of ``softmax(logits)`` against integer class labels, per example.

    With ``K`` classes indexed by ``k``, one example's loss is the negative
    log-probability of its label ``l``::

        loss = -log softmax(logits)[l] = log sum_k exp(logits[k]) - logits[l]

    computed as ``log sum_k exp(z[k]) - z[l]`` with ``z = logits - max_k
    logits[k]``: no exponential exceeds 1, ``log sum_k exp(z[k])`` lies in
    ``[0, log K]``, and ``z[l]`` is one difference of two logits (exactly 0
    for the top class), so logits of magnitude ``1e4`` give finite losses,
    exact up to one rounding (``logits = [1e4, 0, -1e4]`` costs 0, 1e4 and
    2e4 for labels 0, 1, 2).

    For a cotangent ``g`` shaped like the loss, with ``p = softmax(logits)``::

        dlogits[..., k] = g[...] (p[..., k] - [k == l[...]])

    (the probabilities minus the one-hot label, scaled by each example's
    ``g``). The labels are integers and get a ``float0`` (empty) cotangent.

    Out-of-range labels: a label ``l < 0`` or ``l >= K`` cannot be rejected
    under ``jit`` (its value is not known when the function is traced), so it is
    given a defined, loud result instead: that example's loss and its row of
    ``dlogits`` are NaN. Negative labels do NOT wrap around as NumPy indices
    would; there is no "ignore" label.

    Args:
      logits: ``(..., K)``, at least 1-d, ``K >= 1``. Floating dtype.
      labels: ``(...)`` (``logits.shape[:-1]``), the class of each example.
        Integer dtype.

    Returns:
      The per-example losses, ``(...)``, in the dtype of ``logits``; average
      them yourself (a ``mean`` puts ``1/N`` into every example's ``g``).
    """
    logits, labels = cross_entropy_arguments("softmax_cross_entropy", logits, labels)
    return _softmax_cross_entropy(logits, labels)


@jax.custom_vjp
def _softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return cross_entropy_forward(logits, labels)[0]


def _softmax_cross_entropy_fwd(logits, labels):
    """Save ``p = softmax(logits)`` in at least float32, and the labels for the one-hot.

    ``p`` comes for free from the forward's sum of exponentials. It stays in
    float32 for 16-bit logits because the gradient subtracts the one-hot from
    it: ``p[l] - 1`` cancels, and a ``p[l]`` first rounded to 16 bits would
    leave few correct bits in the difference.
    """
    loss, probs = cross_entropy_forward(logits, labels)
    return loss, (probs, labels)


def _softmax_cross_entropy_bwd(residuals, g):
    """``(dlogits, float0)``: ``dlogits = g[..., None] (p - onehot(labels))``; labels are not differentiable."""
    probs, labels = residuals
    return cross_entropy_logits_grad(g, probs, labels), np.zeros(labels.shape, jax.dtypes.float0)


_softmax_cross_entropy.defvjp(_softmax_cross_entropy_fwd, _softmax_cross_entropy_bwd)


def label_mask(labels: jax.Array, classes: int) -> jax.Array:
    """The one-hot labels as booleans, ``(..., K)``: ``[k == l]``; all False for an out-of-range label."""
    return labels[..., None] == jnp.arange(classes, dtype=labels.dtype)


def label_in_range(labels: jax.Array, classes: int) -> jax.Array:
    """``0 <= l < K`` per example."""
    return (labels >= 0) & (labels < classes)


def cross_entropy_forward(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(loss, p)``: ``loss = log sum(exp(z)) - z[l]`` (NaN for an out-of-range ``l``) and ``p = softmax(logits)``."""
    classes = logits.shape[-1]
    z = shifted_logits(logits, -1)
    e = jnp.exp(z)
    total = jnp.sum(e, axis=-1)
    label_z = jnp.sum(jnp.where(label_mask(labels, classes), z, 0), axis=-1)
    loss = jnp.where(label_in_range(labels, classes), jnp.log(total) - label_z, jnp.nan)
    return loss.astype(logits.dtype), e / total[..., None]


def cross_entropy_logits_grad(g: jax.Array, probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``dlogits[..., k] = g[...] (p[..., k] - [k == l])``; a NaN row for an out-of-range label."""
    classes = probs.shape[-1]
    onehot = label_mask(labels, classes).astype(probs.dtype)
    grad = g.astype(probs.dtype)[..., None] * (probs - onehot)
    return jnp.where(label_in_range(labels, classes)[..., None], grad, jnp.nan).astype(g.dtype)


def cross_entropy_arguments(op, logits, labels):
    """Checked ``(logits, labels)``."""
    logits = arguments.as_float_array(op, "logits", logits)
    labels = arguments.as_int_array(op, "labels", labels, "class indices")
    arguments.ndim_at_least(op, "logits", logits, 1, "(..., K)")
    if logits.shape[-1] == 0:
        raise ValueError(f"{op}: logits must have at least one class, got logits.shape={tuple(logits.shape)}")
    if labels.shape != logits.shape[:-1]:
        raise ValueError(
            f"{op}: labels.shape={tuple(labels.shape)} must equal logits.shape[:-1]={tuple(logits.shape[:-1])} "
            f"(one class index per row of logits.shape={tuple(logits.shape)})"
        )
    return logits, labels


# ---------------------------------------------------------------------------- mse


def mse(y: ArrayLike, target: ArrayLike) -> jax.Array:
    r"""Mean squared error over all ``n`` elements: ``loss = (1/n) sum_i (y[i] - target[i])^2``.

    A scalar, like PyTorch's ``MSELoss(reduction="mean")``: ``i`` runs over
    every element, batch and feature axes alike. For a scalar cotangent ``g``::

        dy[i] = g (2/n) (y[i] - target[i]),     dtarget[i] = -dy[i]

    (each element's square contributes its own derivative, scaled by the
    ``1/n`` of the mean; ``target`` enters with the opposite sign).

    Args:
      y: prediction, any non-empty shape. Floating dtype.
      target: the same shape and dtype as ``y`` (no broadcasting).

    Returns:
      The loss, a 0-d array in the dtype of ``y``, accumulated in at least
      float32.
    """
    y, target = mse_arguments("mse", y, target)
    return _mse(y, target)


@jax.custom_vjp
def _mse(y: jax.Array, target: jax.Array) -> jax.Array:
    return mse_forward(y - target)


def _mse_fwd(y, target):
    """Save the difference ``y - target``, the only thing both gradients are made of (``n`` is its size).

    ``y`` and ``target`` go along for their types only (under ``shard_map``, which devices share
    them); the backward reads no value of theirs.
    """
    diff = y - target
    return mse_forward(diff), (diff, y, target)


def _mse_bwd(residuals, g):
    """``(dy, dtarget) = (g (2/n) diff, -g (2/n) diff)``, each summed over the devices that share its argument.

    (:func:`~convgrad.ops.replicas.like_primal`: a no-op outside ``shard_map``.)
    """
    diff, y, target = residuals
    y_grad = mse_input_grad(diff, g)
    return like_primal(y_grad, y), like_primal(-y_grad, target)


_mse.defvjp(_mse_fwd, _mse_bwd)


def mse_forward(diff: jax.Array) -> jax.Array:
    """``(1/n) sum_i diff[i]^2``."""
    wide = diff.astype(accumulator_dtype(diff.dtype))
    return (jnp.sum(wide * wide) / diff.size).astype(diff.dtype)


def mse_input_grad(diff: jax.Array, g: jax.Array) -> jax.Array:
    """``dy[i] = g (2/n) diff[i]``."""
    wide = accumulator_dtype(diff.dtype)
    return (g.astype(wide) * (2 / diff.size) * diff.astype(wide)).astype(diff.dtype)


def mse_arguments(op, y, target):
    """Checked ``(y, target)``: same shape, same floating dtype, not empty."""
    y = arguments.as_float_array(op, "y", y)
    target = arguments.as_float_array(op, "target", target)
    arguments.same_dtype(op, y=y, target=target)
    if y.shape != target.shape:
        raise ValueError(
            f"{op}: y.shape={tuple(y.shape)} and target.shape={tuple(target.shape)} must match exactly "
            "(no broadcasting)"
        )
    if y.size == 0:
        raise ValueError(f"{op}: y is empty (y.shape={tuple(y.shape)}); the mean of no elements is undefined")
    return y, target
