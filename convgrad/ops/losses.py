"""Losses with hand-derived VJPs: ``softmax_cross_entropy`` (PyTorch's ``cross_entropy``) and ``mse``.

Each op reads top to bottom: public function, ``_fwd`` (what it saves, and
why), ``_bwd`` (the derivation as code), ``defvjp``, then the small named
functions the backward is made of. Sums are accumulated in at least float32.

Cross-entropy in one line: every form of it (class indices or probabilities,
class weights, label smoothing) is ``loss[n] = sum_c u[n, c] (-log p[n, c])``
for a per-example TARGET WEIGHT ``u >= 0`` that does not depend on the logits,
so its logit gradient is always ``p[n, k] sum_c u[n, c] - u[n, k]``
(:func:`cross_entropy_logits_grad`).
"""

from __future__ import annotations

import dataclasses
import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.activations import shifted_logits
from convgrad.ops.precision import accumulator_dtype
from convgrad.ops.replicas import like_primal

REDUCTIONS = ("none", "mean", "sum")

# ---------------------------------------------------------------------------- softmax_cross_entropy


@dataclasses.dataclass(frozen=True)
class CrossEntropyConfig:
    """The static choices of one cross-entropy: class axis, how labels are read, smoothing, reduction."""

    axis: int  # the class axis of logits, in [0, logits.ndim)
    probabilities: bool  # labels are class probabilities shaped like logits (else integer class indices)
    ignore_index: int | None
    label_smoothing: float
    reduction: str


def softmax_cross_entropy(
    logits: ArrayLike,
    labels: ArrayLike,
    *,
    axis: int = -1,
    weight: ArrayLike | None = None,
    ignore_index: int | None = None,
    label_smoothing: float = 0.0,
    reduction: str = "none",
) -> jax.Array:
    r"""Cross-entropy of ``softmax(logits)`` along ``axis`` against class labels: PyTorch's ``F.cross_entropy``.

    Write ``n`` for one example (an index into every axis of ``logits`` but
    ``axis``), ``c`` for a class (``C`` of them), ``log p[n, c] = z[n, c] -
    log sum_k exp(z[n, k])`` with ``z = logits - max_k logits`` (so no
    exponential exceeds 1; logits of magnitude ``1e4`` give finite, exact
    losses), ``w`` the class weights (all 1 without ``weight``) and
    ``e = label_smoothing``. With integer class indices ``t[n]``::

        loss[n] = (1 - e) w[t[n]] (-log p[n, t[n]]) + (e / C) sum_c w[c] (-log p[n, c])      (0 if t[n] = ignore_index)

    and with class probabilities ``t[n, c]`` (``labels`` floating, shaped like
    ``logits``), smoothed to ``t~ = (1 - e) t + e / C``::

        loss[n] = sum_c w[c] t~[n, c] (-log p[n, c])

    ``reduction="none"`` (the default) returns ``loss[n]``; ``"sum"`` their
    sum; ``"mean"`` PyTorch's weighted mean: the sum over ``D``, where ``D =
    sum_{n : t[n] != ignore_index} w[t[n]]`` for class indices and the number
    of examples for probabilities (so with no ``weight`` and nothing ignored,
    the plain mean; with nothing to average over, NaN).

    Both forms are ``loss[n] = sum_c u[n, c] (-log p[n, c])`` with a target
    weight ``u`` (``w[c] ((1 - e) [c = t[n]] + e / C)``, or ``w[c] t~[n, c]``)
    that does not depend on the logits. With ``G[n]`` the cotangent reaching
    ``loss[n]`` (``g[n]``; ``g`` for ``"sum"``; ``g / D`` for ``"mean"``)::

        dlogits[n, k] = G[n] (p[n, k] sum_c u[n, c] - u[n, k])

    (the unsmoothed, unweighted case: ``p - onehot``). For probability
    targets, ``dlabels[n, c] = G[n] (1 - e) w[c] (-log p[n, c])``. The class
    weights get ``dweight[c] = sum_n G[n] q[n, c] (-log p[n, c])`` with ``q = u / w``
    (``dloss[n]/dw[c]`` over ``-log p[n, c]``), less ``mean sum_n G[n] [t[n] = c]``
    for a ``"mean"`` over class indices, whose divisor ``D`` depends on ``w`` too.
    Integer labels get a ``float0`` cotangent.

    Out-of-range labels: a class index ``t < 0`` or ``t >= C`` (other than
    ``ignore_index``) cannot be rejected under ``jit``, so it is given a defined,
    loud result instead: its loss, its row of ``dlogits`` and all of ``dweight``
    are NaN (and a reduced loss, which includes it, is NaN). Negative labels do
    NOT wrap around as NumPy indices would. Labels of any integer dtype index
    correctly for any number of classes (``uint8`` labels over 300 classes).

    Args:
      logits: ``(..., C, ...)``, at least 1-d, the classes along ``axis``.
        Floating dtype; any size may be 0.
      labels: integer class indices shaped like ``logits`` without ``axis``, or
        class probabilities (floating, ``logits``' dtype) shaped like ``logits``.
      axis: the class axis (``-1``, the default, or ``1`` for PyTorch's
        ``(N, C, d1, ...)`` inputs).
      weight: ``(C,)`` class weights in ``logits``' dtype, or ``None``.
      ignore_index: a class index whose examples contribute nothing (class
        indices only), or ``None`` (PyTorch's default is -100; convgrad ignores
        nothing unless told).
      label_smoothing: ``e`` in ``[0, 1]``.
      reduction: ``"none"``, ``"mean"`` or ``"sum"``.

    Returns:
      The losses in ``logits``' dtype: shaped like ``logits`` without ``axis``
      for ``"none"``, a scalar otherwise; accumulated in at least float32.

    Raises:
      TypeError: ``logits`` not floating; ``labels`` neither integer nor
        floating, or floating in another dtype; ``weight`` of another dtype;
        ``ignore_index`` not an int; ``label_smoothing`` not a number.
      ValueError: ``labels`` (or probabilities) of the wrong shape; ``weight``
        not ``(C,)``; ``label_smoothing`` outside ``[0, 1]``; an unknown
        ``reduction``; ``ignore_index`` with probability targets; ``axis`` out of range.

    Examples:
      Logits ``[0, log 3]`` give ``p = [1/4, 3/4]``: label 0 costs ``log 4``,
      label 1 ``log 4/3``; the gradient is ``p - onehot``:

      >>> import math, jax, jax.numpy as jnp
      >>> from convgrad import softmax_cross_entropy
      >>> logits = jnp.array([[0.0, math.log(3.0)], [0.0, math.log(3.0)]])
      >>> softmax_cross_entropy(logits, jnp.array([0, 1]))
      Array([1.3862944 , 0.28768203], dtype=float32)
      >>> jax.grad(lambda z: softmax_cross_entropy(z, jnp.array([0, 1]), reduction="sum"))(logits).round(6)
      Array([[-0.75,  0.75],
             [ 0.25, -0.25]], dtype=float32)

      Weight 3 on class 1: the weighted mean is ``(log 4 + 3 log 4/3) / (1 + 3)``;
      an ignored example drops out of it:

      >>> w = jnp.array([1.0, 3.0])
      >>> softmax_cross_entropy(logits, jnp.array([0, 1]), weight=w, reduction="mean")
      Array(0.56233513, dtype=float32)
      >>> softmax_cross_entropy(logits, jnp.array([0, 1]), ignore_index=0, reduction="mean")
      Array(0.28768203, dtype=float32)

    References:
      PyTorch, ``torch.nn.CrossEntropyLoss``:
      https://pytorch.org/docs/stable/generated/torch.nn.CrossEntropyLoss.html ;
      label smoothing: Szegedy et al., "Rethinking the Inception Architecture
      for Computer Vision" (2016).
    """
    logits, labels, weight, config = cross_entropy_arguments(
        "softmax_cross_entropy", logits, labels, axis, weight, ignore_index, label_smoothing, reduction
    )
    return _softmax_cross_entropy(config, logits, labels, weight)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _softmax_cross_entropy(
    config: CrossEntropyConfig, logits: jax.Array, labels: jax.Array, weight: jax.Array | None
) -> jax.Array:
    return _softmax_cross_entropy_fwd(config, logits, labels, weight)[0]


def _softmax_cross_entropy_fwd(config, logits, labels, weight):
    """Save ``p`` in at least float32 (classes last) and the labels; in general ``log p``, the weights, a mean's ``D``.

    ``p`` comes for free from the forward's sum of exponentials; the logit gradient
    needs it. It stays in float32 for 16-bit logits because the gradient subtracts
    the target from ``p``: ``p[t] - 1`` cancels, and a ``p[t]`` first rounded to 16
    bits would leave few correct bits in the difference. Per-example losses of
    class indices with no weights, smoothing or ignored label (the common case, and
    ``convgrad.models``') need nothing else; otherwise ``-log p`` (not ``-log`` of a
    ``p`` that may underflow) is what the gradients of the weights and of
    probability targets need, and a mean's gradients its divisor and value.
    """
    moved = jnp.moveaxis(logits, config.axis, -1)
    if one_hot_targets(config, weight):
        loss, probs = one_hot_cross_entropy(moved, labels)
        return loss.astype(logits.dtype), (probs, None, labels, None, None, None)
    log_probs, probs = log_softmax_last(moved)
    targets = jnp.moveaxis(labels, config.axis, -1) if config.probabilities else labels
    losses = cross_entropy_losses(config, log_probs, targets, weight)
    loss, divisor = reduce_losses(config, losses, targets, weight)
    return loss.astype(logits.dtype), (probs, log_probs, targets, weight, divisor, loss)


def _softmax_cross_entropy_bwd(config, residuals, g):
    """``(dlogits, dlabels, dweight)``: the formulas of the docstring, per example scaled by ``G = dreduce(g)``."""
    probs, log_probs, targets, weight, divisor, loss = residuals
    if one_hot_targets(config, weight):  # G = g, u = onehot
        logits_grad = jnp.moveaxis(one_hot_logits_grad(g, probs, targets), -1, config.axis)
        return logits_grad.astype(g.dtype), np.zeros(targets.shape, jax.dtypes.float0), None
    scale = example_cotangents(config, g, log_probs.shape[:-1], divisor)
    u = target_weights(config, log_probs, targets, weight)
    logits_grad = jnp.moveaxis(cross_entropy_logits_grad(scale, probs, u, config, targets), -1, config.axis)
    if config.probabilities:
        labels_grad = jnp.moveaxis(probability_targets_grad(scale, log_probs, weight, config), -1, config.axis)
        labels_grad = like_primal(labels_grad.astype(targets.dtype), targets)
    else:
        labels_grad = np.zeros(targets.shape, jax.dtypes.float0)  # integer labels: no gradient
    weight_grad = None
    if weight is not None:
        weight_grad = like_primal(class_weights_grad(config, scale, log_probs, targets, divisor, loss), weight)
        weight_grad = weight_grad.astype(weight.dtype)
    return logits_grad.astype(g.dtype), labels_grad, weight_grad


_softmax_cross_entropy.defvjp(_softmax_cross_entropy_fwd, _softmax_cross_entropy_bwd)


def log_softmax_last(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(log p, p)`` over the last axis: ``z - log sum_k exp(z[k])`` and ``exp(z) / sum_k exp(z[k])``.

    ``z = logits - max``, in at least float32; both from the one sum of exponentials.
    """
    z = shifted_logits(logits, -1).astype(accumulator_dtype(logits.dtype))
    e = jnp.exp(z)
    total = jnp.sum(e, axis=-1, keepdims=True)
    return z - jnp.log(total), e / total


def one_hot_targets(config: CrossEntropyConfig, weight) -> bool:
    """Per-example losses of class indices with no weights, no smoothing, nothing ignored: ``u`` is the one-hot."""
    return (
        config.reduction == "none"
        and not config.probabilities
        and weight is None
        and not config.label_smoothing
        and config.ignore_index is None
    )


def one_hot_cross_entropy(logits: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(loss, p)``: ``loss = log sum_k exp(z[k]) - z[t]`` (NaN for an out-of-range ``t``), ``p = softmax(logits)``.

    The one-hot case of :func:`cross_entropy_losses` with ``z = logits - max``: ``z[t]`` is
    one difference of two logits (exactly 0 for the top class), so logits of magnitude
    ``1e4`` give exact losses.
    """
    classes = logits.shape[-1]
    z = shifted_logits(logits, -1)
    e = jnp.exp(z)
    total = jnp.sum(e, axis=-1)
    label_z = jnp.sum(jnp.where(label_mask(labels, classes), z, 0), axis=-1)
    loss = jnp.where(class_index(labels, classes)[1], jnp.log(total) - label_z, jnp.nan)
    return loss, e / total[..., None]


def one_hot_logits_grad(g: jax.Array, probs: jax.Array, labels: jax.Array) -> jax.Array:
    """``dlogits[n, k] = g[n] (p[n, k] - [k = t[n]])``: :func:`cross_entropy_logits_grad` with ``u`` the one-hot."""
    classes = probs.shape[-1]
    grad = g.astype(probs.dtype)[..., None] * (probs - label_mask(labels, classes).astype(probs.dtype))
    return jnp.where(class_index(labels, classes)[1][..., None], grad, jnp.nan)


def class_index(labels: jax.Array, classes: int) -> tuple[jax.Array, jax.Array]:
    """``(index, valid)``: each label as an int32 class index (0 where invalid) and whether ``0 <= t < C``.

    Compared in the labels' own dtype only where ``C`` fits it (``uint8`` labels
    over 300 classes are all below ``C``), then widened: a class range is never
    built in a dtype that cannot hold it.
    """
    info = jnp.iinfo(labels.dtype)
    valid = labels >= 0 if info.min < 0 else jnp.ones(labels.shape, bool)
    if classes <= info.max:
        valid = valid & (labels < classes)
    return jnp.where(valid, labels, 0).astype(jnp.int32), valid


def ignored_labels(labels: jax.Array, ignore_index: int | None) -> jax.Array:
    """``t == ignore_index`` per example (all False without one, or when the dtype cannot hold it)."""
    info = jnp.iinfo(labels.dtype)
    if ignore_index is None or not info.min <= ignore_index <= info.max:
        return jnp.zeros(labels.shape, bool)
    return labels == ignore_index


def label_mask(labels: jax.Array, classes: int) -> jax.Array:
    """The one-hot labels as booleans, ``(..., C)``: ``[c == t]``; all False for an out-of-range label."""
    index, valid = class_index(labels, classes)
    return (index[..., None] == jnp.arange(classes, dtype=jnp.int32)) & valid[..., None]


def class_weights(weight: jax.Array | None, classes: int, dtype) -> jax.Array:
    """``w``, ``(C,)`` in ``dtype``: the given weights, or ones."""
    return jnp.ones(classes, dtype) if weight is None else weight.astype(dtype)


def cross_entropy_losses(config: CrossEntropyConfig, log_probs: jax.Array, targets: jax.Array, weight) -> jax.Array:
    """``loss[n]`` of the docstring (not reduced), in ``log_probs``' dtype; NaN for an out-of-range class index.

    For class indices the label's term is picked with a select, not multiplied by a
    one-hot, so a ``-inf`` logit of another class costs nothing (``0 * inf`` would be NaN).
    """
    classes, e = log_probs.shape[-1], config.label_smoothing
    w = class_weights(weight, classes, log_probs.dtype)
    if config.probabilities:
        smoothed = (1 - e) * targets.astype(log_probs.dtype) + (e / classes if classes else 0.0)
        return -jnp.sum(w * smoothed * log_probs, axis=-1)
    mask = label_mask(targets, classes)
    label_term = jnp.sum(jnp.where(mask, w * log_probs, 0), axis=-1)
    losses = -(1 - e) * label_term
    if e > 0:
        losses = losses - (e / classes) * jnp.sum(w * log_probs, axis=-1)
    valid = class_index(targets, classes)[1]
    ignored = ignored_labels(targets, config.ignore_index)
    return jnp.where(ignored, 0, jnp.where(valid, losses, jnp.nan))


def reduce_losses(config: CrossEntropyConfig, losses: jax.Array, targets: jax.Array, weight) -> tuple[jax.Array, ...]:
    """``(loss, D)``: the losses as ``reduction`` says, and the mean's divisor ``D`` (``None`` unless ``"mean"``).

    ``D = sum_{n not ignored} w[t[n]]`` for class indices (NaN weight for an out-of-range
    ``t``; 1 each without weights), the number of examples for probabilities.
    """
    if config.reduction == "none":
        return losses, None
    total = jnp.sum(losses)
    if config.reduction == "sum":
        return total, None
    if config.probabilities:
        divisor = jnp.asarray(math.prod(losses.shape), losses.dtype)
    else:
        kept_weights = jnp.where(
            ignored_labels(targets, config.ignore_index), 0, label_weights(targets, weight, losses.dtype)
        )
        divisor = jnp.sum(kept_weights)
    return total / divisor, divisor


def label_weights(labels: jax.Array, weight: jax.Array | None, dtype) -> jax.Array:
    """``w[t[n]]`` per example in ``dtype``: 1 without weights, NaN for an out-of-range label with them."""
    if weight is None:
        return jnp.ones(labels.shape, dtype)
    index, valid = class_index(labels, weight.shape[0])
    picked = weight.astype(dtype)[index] if weight.shape[0] else jnp.zeros(labels.shape, dtype)
    return jnp.where(valid, picked, jnp.nan)


def example_cotangents(config: CrossEntropyConfig, g: jax.Array, shape: tuple[int, ...], divisor) -> jax.Array:
    """``G[n]``, the cotangent reaching each ``loss[n]``: ``g[n]``, or ``g`` (sum), or ``g / D`` (mean), broadcast."""
    g_acc = g.astype(accumulator_dtype(g.dtype))
    if config.reduction == "none":
        return g_acc
    if config.reduction == "mean":
        g_acc = g_acc / divisor
    return jnp.broadcast_to(g_acc, shape)


def target_weights(config: CrossEntropyConfig, log_probs: jax.Array, targets: jax.Array, weight) -> jax.Array:
    """``u[n, c]``: ``w[c] ((1 - e) [c = t[n]] + e / C)`` (0 for ignored, out-of-range rows), or ``w[c] t~[n, c]``."""
    classes, e = log_probs.shape[-1], config.label_smoothing
    w = class_weights(weight, classes, log_probs.dtype)
    if config.probabilities:
        return w * ((1 - e) * targets.astype(log_probs.dtype) + (e / classes if classes else 0.0))
    q = (1 - e) * label_mask(targets, classes).astype(log_probs.dtype) + (e / classes if classes else 0.0)
    kept = class_index(targets, classes)[1] & ~ignored_labels(targets, config.ignore_index)
    return jnp.where(kept[..., None], w * q, 0)


def cross_entropy_logits_grad(scale: jax.Array, probs: jax.Array, u: jax.Array, config, targets) -> jax.Array:
    """``dlogits[n, k] = G[n] (p[n, k] sum_c u[n, c] - u[n, k])``; a NaN row for an out-of-range class index.

    An ignored example's row is 0 (its ``u`` is), also where ``G`` is infinite: a mean over no kept
    example (``D = 0``) is NaN, and its gradient 0, as in PyTorch.
    """
    grad = scale[..., None] * (probs * jnp.sum(u, axis=-1, keepdims=True) - u)
    if config.probabilities:
        return grad
    ignored = ignored_labels(targets, config.ignore_index)
    valid = class_index(targets, probs.shape[-1])[1] | ignored
    return jnp.where(valid[..., None], jnp.where(ignored[..., None], 0, grad), jnp.nan)


def probability_targets_grad(scale: jax.Array, log_probs: jax.Array, weight, config) -> jax.Array:
    """``dlabels[n, c] = G[n] (1 - e) w[c] (-log p[n, c])``: the loss is affine in the probability targets."""
    w = class_weights(weight, log_probs.shape[-1], log_probs.dtype)
    return scale[..., None] * (1 - config.label_smoothing) * w * -log_probs


def class_weights_grad(config, scale, log_probs, targets, divisor, loss) -> jax.Array:
    """``dweight[c] = sum_n G[n] q[n, c] (-log p[n, c])``, less ``(mean / D) sum_n G[n] D [t[n] = c]`` for a mean.

    ``q[n, c] = dloss[n]/dw[c] / (-log p[n, c])`` is ``u / w``: the smoothed one-hot or
    the smoothed probabilities. The label's term is a select (as in the forward). For a
    mean over class indices ``D = sum_n w[t[n]]`` depends on ``w`` too: ``dmean/dw[c] =
    (dsum/dw[c] - mean dD/dw[c]) / D`` with ``dD/dw[c]`` the number of kept labels of class ``c``.
    """
    classes, e = log_probs.shape[-1], config.label_smoothing
    lead = tuple(range(log_probs.ndim - 1))
    if config.probabilities:
        smoothed = (1 - e) * targets.astype(log_probs.dtype) + (e / classes if classes else 0.0)
        return jnp.sum(scale[..., None] * smoothed * -log_probs, axis=lead)
    mask = label_mask(targets, classes)
    valid = class_index(targets, classes)[1]
    ignored = ignored_labels(targets, config.ignore_index)
    kept = (valid & ~ignored)[..., None]
    per_class = (1 - e) * jnp.where(mask, -log_probs, 0)
    if e > 0:
        per_class = per_class + (e / classes) * -log_probs
    if config.reduction == "mean":
        per_class = per_class - jnp.where(mask, loss, 0)  # G = g / D already carries the 1 / D
    grad = jnp.sum(jnp.where(kept, scale[..., None] * per_class, 0), axis=lead)
    return jnp.where(jnp.any(~valid & ~ignored), jnp.nan, grad)


def cross_entropy_arguments(op, logits, labels, axis, weight, ignore_index, label_smoothing, reduction):
    """Checked ``(logits, labels, weight, config)``."""
    logits = arguments.as_float_array(op, "logits", logits)
    arguments.ndim_at_least(op, "logits", logits, 1, "(..., C, ...)")
    axis = arguments.as_axis(op, axis, "logits", logits)
    classes = logits.shape[axis]
    labels = arguments.as_array(op, "labels", labels)
    probabilities = bool(jnp.issubdtype(labels.dtype, jnp.floating))
    if probabilities:
        arguments.same_dtype(op, logits=logits, labels=labels)
        if labels.shape != logits.shape:
            raise ValueError(
                f"{op}: probability targets must have the shape of logits, got labels.shape={tuple(labels.shape)} "
                f"and logits.shape={tuple(logits.shape)}"
            )
    else:
        labels = arguments.as_int_array(op, "labels", labels, "class indices, or floating class probabilities")
        expected = logits.shape[:axis] + logits.shape[axis + 1 :]
        if labels.shape != expected:
            raise ValueError(
                f"{op}: labels.shape={tuple(labels.shape)} must equal logits.shape without axis {axis}, "
                f"{tuple(expected)} (one class index per example of logits.shape={tuple(logits.shape)})"
            )
    if weight is not None:
        weight = arguments.as_float_array(op, "weight", weight)
        arguments.same_dtype(op, logits=logits, weight=weight)
        if weight.shape != (classes,):
            raise ValueError(
                f"{op}: weight must have shape (C,)=({classes},), one weight per class along axis {axis}, "
                f"got weight.shape={tuple(weight.shape)}"
            )
    if ignore_index is not None:
        if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(ignore_index, (int, np.integer)):
            raise TypeError(f"{op}: ignore_index must be an int or None, got ignore_index={ignore_index!r}")
        if probabilities:
            raise ValueError(
                f"{op}: ignore_index={ignore_index!r} applies to class-index labels only, and labels are "
                f"probabilities (labels.dtype={labels.dtype})"
            )
        ignore_index = int(ignore_index)
    label_smoothing = arguments.as_real(op, "label_smoothing", label_smoothing, 0.0, 1.0)
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of 'none', 'mean', 'sum', got reduction={reduction!r}")
    return logits, labels, weight, CrossEntropyConfig(axis, probabilities, ignore_index, label_smoothing, reduction)


# ---------------------------------------------------------------------------- mse


def mse(y: ArrayLike, target: ArrayLike, *, reduction: str = "mean") -> jax.Array:
    r"""Squared error, averaged (the default), summed or per element: PyTorch's ``MSELoss(reduction=...)``.

    With ``diff[i] = y[i] - target[i]`` over all ``n`` elements (batch and
    feature axes alike)::

        "none": loss[i] = diff[i]^2      "sum": loss = sum_i diff[i]^2      "mean": loss = (1/n) sum_i diff[i]^2

    For a cotangent ``g`` shaped like the loss, each element's square
    contributes its own derivative, scaled by the reduction's (``1`` for
    ``"none"`` and ``"sum"``, ``1/n`` for ``"mean"``); ``target`` enters with
    the opposite sign::

        dy[i] = 2 G[i] diff[i],     dtarget[i] = -dy[i],      G = g, g, g / n

    (``G[i] = g[i]`` elementwise for ``"none"``). The mean of no elements is
    NaN, as in PyTorch and NumPy.

    Args:
      y: prediction, any shape (sizes may be 0). Floating dtype.
      target: the same shape and dtype as ``y`` (no broadcasting).
      reduction: ``"mean"``, ``"sum"`` or ``"none"``.

    Returns:
      The loss in ``y``'s dtype: a 0-d array, or ``y``'s shape for ``"none"``;
      sums accumulate in at least float32.

    Raises:
      TypeError: an argument is not a floating array, or the dtypes differ.
      ValueError: the shapes differ; an unknown ``reduction``.

    Examples:
      ``diff = [1, -2]``: mean ``(1 + 4) / 2``, gradient ``2 diff / 2``:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import mse
      >>> y, target = jnp.array([1.0, 2.0]), jnp.array([0.0, 4.0])
      >>> mse(y, target), mse(y, target, reduction="sum"), mse(y, target, reduction="none")
      (Array(2.5, dtype=float32), Array(5., dtype=float32), Array([1., 4.], dtype=float32))
      >>> jax.grad(mse)(y, target)
      Array([ 1., -2.], dtype=float32)

    References:
      PyTorch, ``torch.nn.MSELoss``: https://pytorch.org/docs/stable/generated/torch.nn.MSELoss.html
    """
    y, target = mse_arguments("mse", y, target, reduction)
    return _mse(reduction, y, target)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _mse(reduction: str, y: jax.Array, target: jax.Array) -> jax.Array:
    return mse_forward(y - target, reduction)


def _mse_fwd(reduction, y, target):
    """Save the difference ``y - target``, the only thing both gradients are made of (``n`` is its size).

    ``y`` and ``target`` go along for their types only (under ``shard_map``, which devices share
    them); the backward reads no value of theirs.
    """
    diff = y - target
    return mse_forward(diff, reduction), (diff, y, target)


def _mse_bwd(reduction, residuals, g):
    """``(dy, dtarget) = (2 G diff, -2 G diff)``, each summed over the devices that share its argument.

    (:func:`~convgrad.ops.replicas.like_primal`: a no-op outside ``shard_map``.)
    """
    diff, y, target = residuals
    y_grad = mse_input_grad(diff, g, reduction)
    return like_primal(y_grad, y), like_primal(-y_grad, target)


_mse.defvjp(_mse_fwd, _mse_bwd)


def mse_forward(diff: jax.Array, reduction: str) -> jax.Array:
    """``diff^2``, or its sum, or its sum over ``n`` (NaN for ``n = 0``)."""
    diff_acc = diff.astype(accumulator_dtype(diff.dtype))
    squares = diff_acc * diff_acc
    if reduction == "none":
        return squares.astype(diff.dtype)
    total = jnp.sum(squares)
    if reduction == "mean":
        total = total / diff.size if diff.size else jnp.full((), jnp.nan, total.dtype)
    return total.astype(diff.dtype)


def mse_input_grad(diff: jax.Array, g: jax.Array, reduction: str) -> jax.Array:
    """``dy[i] = 2 G[i] diff[i]`` with ``G = g`` (none, sum) or ``g / n`` (mean)."""
    acc = accumulator_dtype(diff.dtype)
    scale = 2 / diff.size if reduction == "mean" and diff.size else 2
    return (g.astype(acc) * scale * diff.astype(acc)).astype(diff.dtype)


def mse_arguments(op, y, target, reduction):
    """Checked ``(y, target)``: same shape, same floating dtype; a known reduction."""
    y = arguments.as_float_array(op, "y", y)
    target = arguments.as_float_array(op, "target", target)
    arguments.same_dtype(op, y=y, target=target)
    if y.shape != target.shape:
        raise ValueError(
            f"{op}: y.shape={tuple(y.shape)} and target.shape={tuple(target.shape)} must match exactly "
            "(no broadcasting)"
        )
    if not isinstance(reduction, str) or reduction not in REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of 'none', 'mean', 'sum', got reduction={reduction!r}")
    return y, target
