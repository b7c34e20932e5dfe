"""Normalization layers with hand-derived VJPs: ``batch_norm``, ``layer_norm``, ``group_norm``, ``instance_norm``.

The four differ only in which elements share one mean and one variance (a
*normalization group*) and which share one ``scale`` and one ``offset``:

* ``batch_norm``: statistics per channel ``c``, over the batch and space;
  parameters per channel;
* ``layer_norm``: statistics per leading index, over the trailing axes;
  parameters per trailing index;
* ``group_norm``: statistics per ``(n, group of C/G channels)``, over the
  group's channels and space; parameters per channel;
* ``instance_norm``: statistics per ``(n, c)``, over space; parameters per channel.

So they share one core, written once: :class:`Normalization` says which axes;
:func:`normalize_by_batch_statistics` (with :func:`batch_moments`,
:func:`normalized`, :func:`scale_and_shift`) is the forward, and
:func:`batch_statistics_grads` (the three-term input gradient,
:func:`batch_statistics_input_grad`, and the scale and offset gradients as sums,
:func:`parameter_grads`) the backward. Read top to bottom: ``batch_norm`` with
its two custom VJPs (training: batch statistics; evaluation: running
statistics), then ``layer_norm``, ``group_norm`` and ``instance_norm`` and the
custom VJP they share (:func:`_normalize`), then the pieces, the geometries and
the argument checks.

Statistics and gradients are computed in at least float32
(:func:`~convgrad.ops.precision.accumulator_dtype`); results come back in the
input's dtype. The derivation of the input gradient is in ``docs/derivations.md``.
"""

from __future__ import annotations

import dataclasses
import math
import operator
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.precision import accumulator_dtype
from convgrad.ops.replicas import like_primal


@dataclasses.dataclass(frozen=True)
class Normalization:
    """Everything static about one normalization: which elements share statistics, which share parameters.

    ``x`` (shape ``shape``) is viewed as ``view`` (the same shape, except that
    ``group_norm`` splits the channel axis into ``(G, C/G)``); the mean and the
    variance are taken over the ``axes`` of the view, one per index of the
    remaining axes. ``scale`` and ``offset`` (shape ``parameter_shape``) are
    viewed as ``parameter_view``, which broadcasts against the view: it has
    the view's size on the parameter axes and 1 elsewhere.
    """

    shape: tuple[int, ...]
    view: tuple[int, ...]
    axes: tuple[int, ...]
    parameter_shape: tuple[int, ...]
    parameter_view: tuple[int, ...]
    eps: float

    @property
    def count(self) -> int:
        """``M``: how many elements share one mean and variance (the product of the statistics axes' sizes)."""
        return math.prod(self.view[a] for a in self.axes)

    @property
    def parameter_axes(self) -> tuple[int, ...]:
        """The view's axes that one scale (offset) element is broadcast over: its gradient sums over them."""
        return tuple(d for d, size in enumerate(self.parameter_view) if size == 1)


# ---------------------------------------------------------------------------- batch_norm


def batch_norm(
    x: ArrayLike,
    scale: ArrayLike | None,
    offset: ArrayLike | None,
    running_mean: ArrayLike | None,
    running_var: ArrayLike | None,
    *,
    training: bool,
    momentum: float = 0.1,
    eps: float = 1e-5,
    channel_axis: int = 1,
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    r"""Batch normalization, as ``torch.nn.functional.batch_norm``; returns ``(y, running_mean, running_var)``.

    One mean and one variance per channel ``c``, over the batch and every
    spatial position. In 2-D (``x`` of shape ``(N, C, H, W)``, ``M = N H W``
    elements per channel), in TRAINING::

        mean[c] = (1 / M) sum_{n, h, w} x[n, c, h, w]
        var[c]  = (1 / M) sum_{n, h, w} (x[n, c, h, w] - mean[c])^2            (biased)
        sigma[c] = sqrt(var[c] + eps)
        x_hat[n, c, h, w] = (x[n, c, h, w] - mean[c]) / sigma[c]
        y[n, c, h, w] = scale[c] x_hat[n, c, h, w] + offset[c]

        running_mean'[c] = (1 - momentum) running_mean[c] + momentum mean[c]
        running_var'[c]  = (1 - momentum) running_var[c]  + momentum var[c] M / (M - 1)   (unbiased)

    and in EVALUATION the running statistics normalize, and come back unchanged::

        y[n, c, h, w] = scale[c] (x[n, c, h, w] - running_mean[c]) / sqrt(running_var[c] + eps) + offset[c]

    For a cotangent ``g`` shaped like ``y`` (sums over ``n, h, w``)::

        doffset[c] = sum g[n, c, h, w]
        dscale[c]  = sum g[n, c, h, w] x_hat[n, c, h, w]

        training:   dx[n, c, h, w] = (scale[c] / sigma[c]) (g[n, c, h, w] - (1 / M) sum g
                                                              - x_hat[n, c, h, w] (1 / M) sum g x_hat)
        evaluation: dx[n, c, h, w] = g[n, c, h, w] scale[c] / sqrt(running_var[c] + eps)

    In training every ``x`` moves ``mean`` and ``sigma``, which takes out of
    ``g`` its mean and its component along ``x_hat`` (the three-term form; the
    derivation is in ``docs/derivations.md``). In evaluation the op is affine in
    ``x``. A ``None`` ``scale`` means 1 and a ``None`` ``offset`` 0.

    The running statistics are buffers, not parameters, as in PyTorch (where
    they cannot require grad): no gradient flows through their update, and
    ``running_mean`` and ``running_var`` get ZERO cotangents, in evaluation too.

    Any ``channel_axis`` other than the batch axis 0: the statistics run over
    every other axis (``(N, C)``, ``(N, C, *spatial)``, ``(N, *spatial, C)``,
    ...). A batch with no elements per channel (``N = 0`` or an empty spatial
    axis) gives an empty ``y`` and, in training, leaves the running statistics
    unchanged, as PyTorch does (their mean over zero elements is undefined);
    ``dscale`` and ``doffset`` are then zeros. Training on exactly one element
    per channel is an error, as in PyTorch (its unbiased variance divides by 0).

    Deliberate differences from ``F.batch_norm``: ``scale`` and ``offset`` come
    before the running statistics; the updated statistics are returned, not
    written in place (JAX arrays are immutable); ``momentum=None`` (PyTorch's
    cumulative moving average) is not offered.

    Args:
      x: input, at least 2-d: ``(N, C, *spatial)`` for ``channel_axis=1``.
        Floating dtype.
      scale: ``(C,)`` or ``None`` (PyTorch's ``weight``). Same dtype as ``x``.
      offset: ``(C,)`` or ``None`` (PyTorch's ``bias``).
      running_mean: ``(C,)``, or ``None`` in training (nothing is tracked).
      running_var: ``(C,)``, or ``None`` together with ``running_mean``.
      training: a bool: normalize by the batch statistics and update the
        running ones (``True``) or normalize by the running ones (``False``).
      momentum: weight of the new batch statistics, in ``[0, 1]``.
      eps: added to the variance; ``> 0`` in training, ``>= 0`` in evaluation.
      channel_axis: the channel axis, any axis but 0 (negative counts from the end).

    Returns:
      ``(y, running_mean, running_var)``: ``y`` shaped and typed like ``x``; the
      updated running statistics in training (``None`` where none were given),
      the given ones in evaluation.

    Raises:
      TypeError: a non-array or non-floating ``x``, ``scale``, ``offset`` or
        running statistic; mixed dtypes; a non-bool ``training``; a non-real
        ``momentum`` or ``eps``; a non-int ``channel_axis``.
      ValueError: ``x`` below 2-d; ``channel_axis`` out of range or 0;
        ``scale``, ``offset`` or a running statistic not of shape ``(C,)``;
        only one of the running statistics given; ``training=False`` without
        running statistics; ``momentum`` outside ``[0, 1]``; ``eps`` out of
        range; training on one element per channel.

    Examples:
      Two examples, one channel: mean 2, biased variance 1, so with ``eps=3``
      ``sigma = 2``; the unbiased variance 2 moves ``running_var`` from 1 to
      ``0.9 + 0.1 * 2``:

      >>> import jax.numpy as jnp, convgrad
      >>> y, mean, var = convgrad.batch_norm(
      ...     jnp.array([[1.0], [3.0]]), None, None, jnp.zeros(1), jnp.ones(1), training=True, eps=3.0)
      >>> y
      Array([[-0.5],
             [ 0.5]], dtype=float32)
      >>> mean, var
      (Array([0.2], dtype=float32), Array([1.1], dtype=float32))

    References:
      S. Ioffe and C. Szegedy, "Batch Normalization: Accelerating Deep Network
      Training by Reducing Internal Covariate Shift", ICML 2015;
      https://pytorch.org/docs/stable/generated/torch.nn.functional.batch_norm.html
      and ``torch.nn.BatchNorm2d``.
    """
    x, scale, offset, running_mean, running_var, training, momentum, geometry = batch_norm_arguments(
        "batch_norm", x, scale, offset, running_mean, running_var, training, momentum, eps, channel_axis
    )
    if training:
        return _batch_norm_training(geometry, momentum, x, scale, offset, running_mean, running_var)
    return _batch_norm_evaluation(geometry, x, scale, offset, running_mean, running_var)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _batch_norm_training(geometry, momentum, x, scale, offset, running_mean, running_var):
    return _batch_norm_training_fwd(geometry, momentum, x, scale, offset, running_mean, running_var)[0]


def _batch_norm_training_fwd(geometry, momentum, x, scale, offset, running_mean, running_var):
    """The shared forward, plus the running statistics' update; saves what :func:`_normalize_fwd` saves.

    That is ``x``, ``scale``, ``offset`` and the per-channel ``mean`` and
    ``1 / sigma``, and the running statistics themselves (``(C,)`` each), so
    that the backward can give them zero cotangents of their type.
    """
    y, mean, variance, inv_sigma = normalize_by_batch_statistics(x, scale, offset, geometry)
    running = updated_running_statistics(running_mean, running_var, mean, variance, momentum, geometry)
    return (y, *running), (x, scale, offset, mean, inv_sigma, running_mean, running_var)


def _batch_norm_training_bwd(geometry, momentum, residuals, cotangents):
    """``(dx, dscale, doffset)`` of the core; zeros for the running statistics, whose update carries no gradient."""
    x, scale, offset, mean, inv_sigma, running_mean, running_var = residuals
    g, _, _ = cotangents  # the updated running statistics' cotangents: buffers pass none back
    dx, dscale, doffset = batch_statistics_grads(g, x, scale, offset, mean, inv_sigma, geometry)
    return dx, dscale, doffset, buffer_cotangent(running_mean), buffer_cotangent(running_var)


_batch_norm_training.defvjp(_batch_norm_training_fwd, _batch_norm_training_bwd)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _batch_norm_evaluation(geometry, x, scale, offset, running_mean, running_var):
    return _batch_norm_evaluation_fwd(geometry, x, scale, offset, running_mean, running_var)[0]


def _batch_norm_evaluation_fwd(geometry, x, scale, offset, running_mean, running_var):
    """``y = scale (x - running_mean) / sqrt(running_var + eps) + offset``; the running statistics come back as given.

    Saves ``x``, ``scale``, ``offset`` and the per-channel ``running_mean`` and
    ``1 / sigma`` (viewed to broadcast, in at least float32): ``dx`` needs only
    ``scale / sigma`` and ``dscale`` the recomputed ``x_hat``.
    """
    mean = running_mean.reshape(geometry.parameter_view).astype(accumulator_dtype(x.dtype))
    inv_sigma = lax.rsqrt(running_var.reshape(geometry.parameter_view).astype(mean.dtype) + geometry.eps)
    y = scale_and_shift(normalized(x, mean, inv_sigma, geometry), scale, offset, geometry, x.dtype)
    return (y, running_mean, running_var), (x, scale, offset, mean, inv_sigma, running_mean, running_var)


def _batch_norm_evaluation_bwd(geometry, residuals, cotangents):
    """``dx = g scale / sigma`` (the statistics are constants), the parameter sums, zeros for the running statistics."""
    x, scale, offset, mean, inv_sigma, running_mean, running_var = residuals
    g, _, _ = cotangents
    x_hat = normalized(x, mean, inv_sigma, geometry)
    dx = running_statistics_input_grad(g, inv_sigma, scale, geometry)
    dscale, doffset = parameter_grads(g, x_hat, scale, offset, geometry)
    return (
        like_primal(dx, x),
        _like_primal_or_none(dscale, scale),
        _like_primal_or_none(doffset, offset),
        buffer_cotangent(running_mean),
        buffer_cotangent(running_var),
    )


_batch_norm_evaluation.defvjp(_batch_norm_evaluation_fwd, _batch_norm_evaluation_bwd)


def updated_running_statistics(running_mean, running_var, mean, variance, momentum, geometry):
    """``(1 - m) running + m batch``, with the batch variance made unbiased (times ``M / (M - 1)``).

    ``None`` stays ``None``; an empty batch (``M = 0``) leaves both unchanged,
    as in PyTorch. Computed in at least float32, returned in the running
    statistics' dtype.
    """
    if running_mean is None or geometry.count == 0:
        return running_mean, running_var
    m = geometry.count
    unbiased = variance * (m / (m - 1))
    new_mean = (1 - momentum) * running_mean.astype(mean.dtype) + momentum * mean.reshape(running_mean.shape)
    new_var = (1 - momentum) * running_var.astype(mean.dtype) + momentum * unbiased.reshape(running_var.shape)
    return new_mean.astype(running_mean.dtype), new_var.astype(running_var.dtype)


def running_statistics_input_grad(g, inv_sigma, scale, geometry) -> jax.Array:
    """``dx = g scale / sigma`` with ``sigma`` from the running variance: the transpose of an elementwise affine map."""
    return (scaled_cotangent(g, scale, geometry) * inv_sigma).reshape(geometry.shape).astype(g.dtype)


def buffer_cotangent(buffer: jax.Array | None) -> jax.Array | None:
    """The zero cotangent of a running statistic (``None`` for an absent one), typed like it under ``shard_map``."""
    return None if buffer is None else like_primal(jnp.zeros_like(buffer), buffer)


# ---------------------------------------------------------------------------- layer_norm, group_norm, instance_norm


def layer_norm(
    x: ArrayLike,
    normalized_shape: int | Sequence[int],
    scale: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
) -> jax.Array:
    r"""Layer normalization over the trailing axes, as ``torch.nn.functional.layer_norm``.

    With ``normalized_shape = (D_1, ..., D_k)`` the trailing ``k`` axes of
    ``x``, write ``r`` for one index into the leading axes and ``i`` for one
    into the trailing ones (``M = D_1 ... D_k``)::

        mean[r] = (1 / M) sum_i x[r, i]        var[r] = (1 / M) sum_i (x[r, i] - mean[r])^2
        x_hat[r, i] = (x[r, i] - mean[r]) / sqrt(var[r] + eps)
        y[r, i] = scale[i] x_hat[r, i] + offset[i]

    For a cotangent ``g`` shaped like ``y``, with ``g_hat[r, i] = g[r, i] scale[i]``::

        dx[r, i] = (1 / sigma[r]) (g_hat[r, i] - (1 / M) sum_j g_hat[r, j]
                                   - x_hat[r, i] (1 / M) sum_j g_hat[r, j] x_hat[r, j])
        dscale[i] = sum_r g[r, i] x_hat[r, i]          doffset[i] = sum_r g[r, i]

    (``scale`` varies inside a normalization group here, so it enters the
    three-term form through ``g_hat``.) ``None`` for ``scale`` means 1, for
    ``offset`` 0. One element per group (``M = 1``) gives ``x_hat = 0`` and
    ``y = offset``; zero-size inputs give zero-size results.

    Args:
      x: input, ``(..., *normalized_shape)``. Floating dtype.
      normalized_shape: an int or a non-empty sequence of ints: the shape of
        the trailing axes to normalize over.
      scale: ``normalized_shape``-shaped, or ``None`` (PyTorch's ``weight``).
      offset: ``normalized_shape``-shaped, or ``None`` (PyTorch's ``bias``).
      eps: added to the variance, ``> 0``.

    Returns:
      ``y``, shaped and typed like ``x``.

    Raises:
      TypeError: a non-array or non-floating ``x``, ``scale`` or ``offset``;
        mixed dtypes; ``normalized_shape`` not an int or sequence of ints; a
        non-real ``eps``.
      ValueError: an empty ``normalized_shape`` or one that does not match the
        trailing axes of ``x``; ``scale``/``offset`` not of that shape;
        ``eps <= 0``.

    Examples:
      Each row normalized on its own (row 0: mean 2, variance 1; row 1: mean
      0, variance 4; ``eps=3`` makes the sigmas 2 and ``sqrt(7)``):

      >>> import jax.numpy as jnp, convgrad
      >>> convgrad.layer_norm(jnp.array([[1.0, 3.0], [-2.0, 2.0]]), 2, eps=3.0)
      Array([[-0.5       ,  0.5       ],
             [-0.75592893,  0.75592893]], dtype=float32)

    References:
      J. L. Ba, J. R. Kiros and G. E. Hinton, "Layer Normalization", 2016;
      https://pytorch.org/docs/stable/generated/torch.nn.functional.layer_norm.html
      and ``torch.nn.LayerNorm``.
    """
    x, scale, offset, geometry = layer_norm_arguments("layer_norm", x, normalized_shape, scale, offset, eps)
    return _normalize(geometry, x, scale, offset)


def group_norm(
    x: ArrayLike,
    num_groups: int,
    scale: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int = 1,
) -> jax.Array:
    r"""Group normalization, as ``torch.nn.functional.group_norm``.

    The ``C`` channels are split into ``G = num_groups`` groups of ``C/G``
    consecutive channels; channel ``c = gr C/G + c'`` belongs to group ``gr``.
    One mean and variance per ``(n, gr)``, over the group's channels and every
    spatial position (``M = (C/G) H W`` in 2-D)::

        mean[n, gr] = (1 / M) sum_{c', h, w} x[n, gr C/G + c', h, w]
        var[n, gr]  = (1 / M) sum_{c', h, w} (x[n, gr C/G + c', h, w] - mean[n, gr])^2
        y[n, c, h, w] = scale[c] (x[n, c, h, w] - mean[n, gr]) / sqrt(var[n, gr] + eps) + offset[c]

    The gradients are ``layer_norm``'s with the group's elements as the
    trailing axes: with ``g_hat[n, c, h, w] = g[n, c, h, w] scale[c]`` and
    means over the group,
    ``dx = (1 / sigma[n, gr]) (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat))``;
    ``dscale[c] = sum_{n, h, w} g x_hat`` and ``doffset[c] = sum_{n, h, w} g``.
    ``G = 1`` is layer norm over ``(C, *spatial)`` with per-channel parameters;
    ``G = C`` is :func:`instance_norm`.

    Deliberate difference: PyTorch raises when ``N (C/G) prod(spatial) = 1``
    (a check borrowed from batch norm); convgrad returns ``y = offset``, what
    the formula gives for one element per group, as PyTorch does for
    ``N > 1``.

    Args:
      x: input, at least 2-d: ``(N, C, *spatial)`` for ``channel_axis=1``.
        Floating dtype.
      num_groups: ``G``, a positive int dividing ``C``.
      scale: ``(C,)`` or ``None`` (PyTorch's ``weight``).
      offset: ``(C,)`` or ``None`` (PyTorch's ``bias``).
      eps: added to the variance, ``> 0``.
      channel_axis: the channel axis, any axis but 0 (negative counts from the end).

    Returns:
      ``y``, shaped and typed like ``x``.

    Raises:
      TypeError: non-array or non-floating arrays, mixed dtypes, a non-int
        ``num_groups`` or ``channel_axis``, a non-real ``eps``.
      ValueError: ``x`` below 2-d; ``channel_axis`` out of range or 0;
        ``num_groups`` not positive or not dividing ``C``; ``scale``/``offset``
        not of shape ``(C,)``; ``eps <= 0``.

    Examples:
      Four channels in two groups; each group ``[1, 3]`` and ``[5, 7]`` has
      variance 1, so with ``eps=3`` every ``x_hat`` is ``-0.5`` or ``0.5``:

      >>> import jax.numpy as jnp, convgrad
      >>> convgrad.group_norm(jnp.array([[1.0, 3.0, 5.0, 7.0]]), 2, eps=3.0)
      Array([[-0.5,  0.5, -0.5,  0.5]], dtype=float32)

    References:
      Y. Wu and K. He, "Group Normalization", ECCV 2018;
      https://pytorch.org/docs/stable/generated/torch.nn.functional.group_norm.html
      and ``torch.nn.GroupNorm``.
    """
    x, scale, offset, geometry = group_norm_arguments("group_norm", x, num_groups, scale, offset, eps, channel_axis)
    return _normalize(geometry, x, scale, offset)


def instance_norm(
    x: ArrayLike,
    scale: ArrayLike | None = None,
    offset: ArrayLike | None = None,
    *,
    eps: float = 1e-5,
    channel_axis: int = 1,
) -> jax.Array:
    r"""Instance normalization, as ``torch.nn.functional.instance_norm`` with ``use_input_stats=True``.

    One mean and variance per ``(n, c)``, over the spatial positions only
    (``M = H W`` in 2-D); no running statistics::

        mean[n, c] = (1 / M) sum_{h, w} x[n, c, h, w]
        var[n, c]  = (1 / M) sum_{h, w} (x[n, c, h, w] - mean[n, c])^2
        x_hat[n, c, h, w] = (x[n, c, h, w] - mean[n, c]) / sqrt(var[n, c] + eps)
        y[n, c, h, w] = scale[c] x_hat[n, c, h, w] + offset[c]

    ``scale`` is constant over a group, so the input gradient is batch norm's
    three-term form with means over ``(h, w)``::

        dx = (scale[c] / sigma[n, c]) (g - mean_{h, w}(g) - x_hat mean_{h, w}(g x_hat))
        dscale[c] = sum_{n, h, w} g x_hat        doffset[c] = sum_{n, h, w} g

    It equals :func:`group_norm` with ``num_groups = C``. As in PyTorch, one
    spatial element per channel is an error (``x_hat`` would be 0 whatever
    ``x``); an empty batch or spatial axis gives an empty result.

    Args:
      x: input, ``(N, C, *spatial)`` for ``channel_axis=1``, at least one
        spatial axis. Floating dtype.
      scale: ``(C,)`` or ``None`` (PyTorch's ``weight``).
      offset: ``(C,)`` or ``None`` (PyTorch's ``bias``).
      eps: added to the variance, ``> 0``.
      channel_axis: the channel axis, any axis but 0 (negative counts from the end).

    Returns:
      ``y``, shaped and typed like ``x``.

    Raises:
      TypeError: non-array or non-floating arrays, mixed dtypes, a non-int
        ``channel_axis``, a non-real ``eps``.
      ValueError: ``x`` below 3-d; exactly one spatial element; ``channel_axis``
        out of range or 0; ``scale``/``offset`` not of shape ``(C,)``;
        ``eps <= 0``.

    Examples:
      One example, two channels of two positions; each channel has variance 1
      (``eps=3``, ``sigma = 2``), and ``scale`` stretches channel 1:

      >>> import jax.numpy as jnp, convgrad
      >>> convgrad.instance_norm(jnp.array([[[1.0, 3.0], [0.0, -2.0]]]), jnp.array([1.0, 4.0]), eps=3.0)
      Array([[[-0.5,  0.5],
              [ 2. , -2. ]]], dtype=float32)

    References:
      D. Ulyanov, A. Vedaldi and V. Lempitsky, "Instance Normalization: The
      Missing Ingredient for Fast Stylization", 2016;
      https://pytorch.org/docs/stable/generated/torch.nn.functional.instance_norm.html
      and ``torch.nn.InstanceNorm2d``.
    """
    x, scale, offset, geometry = instance_norm_arguments("instance_norm", x, scale, offset, eps, channel_axis)
    return _normalize(geometry, x, scale, offset)


@partial(jax.custom_vjp, nondiff_argnums=(0,))
def _normalize(geometry: Normalization, x: jax.Array, scale: jax.Array | None, offset: jax.Array | None) -> jax.Array:
    return _normalize_fwd(geometry, x, scale, offset)[0]


def _normalize_fwd(geometry, x, scale, offset):
    """``y = scale x_hat + offset`` with ``x_hat = (x - mean) / sigma`` over each normalization group.

    Saves ``x``, ``scale``, ``offset`` (which marks that one exists) and the
    per-group ``mean`` and ``1 / sigma`` (one number each per group, in at least
    float32), as PyTorch's native kernel does: the backward recomputes ``x_hat``
    from them in one elementwise pass instead of keeping a second full-size
    array, in float32 for 16-bit inputs.
    """
    y, mean, _, inv_sigma = normalize_by_batch_statistics(x, scale, offset, geometry)
    return y, (x, scale, offset, mean, inv_sigma)


def _normalize_bwd(geometry, residuals, g):
    """``(dx, dscale, doffset)``: the three-term input gradient and the two sums, per the module's derivation."""
    x, scale, offset, mean, inv_sigma = residuals
    return batch_statistics_grads(g, x, scale, offset, mean, inv_sigma, geometry)


_normalize.defvjp(_normalize_fwd, _normalize_bwd)


def batch_statistics_grads(g, x, scale, offset, mean, inv_sigma, geometry):
    """``(dx, dscale, doffset)`` of ``y = scale (x - mean) / sigma + offset`` with ``mean``, ``sigma`` from ``x``.

    The three-term input gradient (:func:`batch_statistics_input_grad`) and the
    parameter sums (:func:`parameter_grads`), each cotangent summed over the
    devices that share its argument under ``shard_map``
    (:func:`~convgrad.ops.replicas.like_primal`; a no-op outside it).
    """
    x_hat = normalized(x, mean, inv_sigma, geometry)
    dx = batch_statistics_input_grad(g, x_hat, inv_sigma, scale, geometry)
    dscale, doffset = parameter_grads(g, x_hat, scale, offset, geometry)
    return like_primal(dx, x), _like_primal_or_none(dscale, scale), _like_primal_or_none(doffset, offset)


# ---------------------------------------------------------------------------- the pieces, forward then backward


def normalize_by_batch_statistics(x, scale, offset, geometry: Normalization):
    """``(y, mean, var, 1 / sigma)``: ``y = scale (x - mean) / sigma + offset`` with ``x``'s own statistics."""
    mean, variance = batch_moments(x, geometry)
    inv_sigma = lax.rsqrt(variance + geometry.eps)
    y = scale_and_shift(normalized(x, mean, inv_sigma, geometry), scale, offset, geometry, x.dtype)
    return y, mean, variance, inv_sigma


def batch_moments(x: jax.Array, geometry: Normalization) -> tuple[jax.Array, jax.Array]:
    """``mean`` and biased ``var`` over the statistics axes (kept, size 1), in at least float32.

    Two passes, ``var = mean((x - mean)^2)``: no cancellation of ``mean(x^2) -
    mean^2`` when the mean is large against the spread.
    """
    x_acc = x.reshape(geometry.view).astype(accumulator_dtype(x.dtype))
    mean = jnp.mean(x_acc, axis=geometry.axes, keepdims=True)
    variance = jnp.mean(jnp.square(x_acc - mean), axis=geometry.axes, keepdims=True)
    return mean, variance


def normalized(x: jax.Array, mean: jax.Array, inv_sigma: jax.Array, geometry: Normalization) -> jax.Array:
    """``x_hat = (x - mean) / sigma`` in the view, in the statistics' (at least float32) dtype."""
    return (x.reshape(geometry.view).astype(mean.dtype) - mean) * inv_sigma


def scale_and_shift(x_hat, scale, offset, geometry: Normalization, dtype) -> jax.Array:
    """``y = scale x_hat + offset`` (either may be ``None``), back in ``x``'s shape and ``dtype``."""
    y = x_hat
    if scale is not None:
        y = y * scale.reshape(geometry.parameter_view).astype(x_hat.dtype)
    if offset is not None:
        y = y + offset.reshape(geometry.parameter_view).astype(x_hat.dtype)
    return y.reshape(geometry.shape).astype(dtype)


def scaled_cotangent(g: jax.Array, scale: jax.Array | None, geometry: Normalization) -> jax.Array:
    """``g_hat = g scale``, the cotangent of ``x_hat``, in the view and in at least float32."""
    g_hat = g.reshape(geometry.view).astype(accumulator_dtype(g.dtype))
    return g_hat if scale is None else g_hat * scale.reshape(geometry.parameter_view).astype(g_hat.dtype)


def batch_statistics_input_grad(g, x_hat, inv_sigma, scale, geometry: Normalization) -> jax.Array:
    """``dx = (1 / sigma) (g_hat - mean(g_hat) - x_hat mean(g_hat x_hat))``, means over each normalization group.

    ``g_hat = g scale`` (:func:`scaled_cotangent`). Where ``scale`` is constant
    over a group (batch and instance norm) this is
    ``(scale / sigma) (g - mean(g) - x_hat mean(g x_hat))``.
    """
    g_hat = scaled_cotangent(g, scale, geometry)
    mean_g = jnp.mean(g_hat, axis=geometry.axes, keepdims=True)
    mean_gx = jnp.mean(g_hat * x_hat, axis=geometry.axes, keepdims=True)
    return (inv_sigma * (g_hat - mean_g - x_hat * mean_gx)).reshape(geometry.shape).astype(g.dtype)


def parameter_grads(g, x_hat, scale, offset, geometry: Normalization) -> tuple[jax.Array | None, jax.Array | None]:
    """``dscale = sum g x_hat`` and ``doffset = sum g`` over every element one parameter serves (sums, not means).

    ``None`` for an absent parameter. Accumulated in at least float32, returned
    in the parameter's dtype.
    """
    g_view = g.reshape(geometry.view).astype(x_hat.dtype)
    axes = geometry.parameter_axes
    shape = geometry.parameter_shape
    dscale = None if scale is None else jnp.sum(g_view * x_hat, axis=axes).reshape(shape).astype(scale.dtype)
    doffset = None if offset is None else jnp.sum(g_view, axis=axes).reshape(shape).astype(offset.dtype)
    return dscale, doffset


def _like_primal_or_none(cotangent: jax.Array | None, primal: jax.Array | None) -> jax.Array | None:
    return None if primal is None else like_primal(cotangent, primal)


# ---------------------------------------------------------------------------- geometries


def channel_geometry(shape: tuple[int, ...], channel_axis: int, statistics_axes: tuple[int, ...], eps: float):
    """A :class:`Normalization` with one scale and offset per channel (batch and instance norm)."""
    parameter_view = tuple(size if d == channel_axis else 1 for d, size in enumerate(shape))
    return Normalization(shape, shape, statistics_axes, (shape[channel_axis],), parameter_view, eps)


def grouped_geometry(shape: tuple[int, ...], num_groups: int, channel_axis: int, eps: float) -> Normalization:
    """Group norm's :class:`Normalization`: the channel axis viewed as ``(G, C/G)``, statistics over all but n and G."""
    channels = shape[channel_axis]
    split = (num_groups, channels // num_groups)
    view = (*shape[:channel_axis], *split, *shape[channel_axis + 1 :])
    axes = tuple(d for d in range(1, len(view)) if d != channel_axis)
    parameter_view = tuple(size if d in (channel_axis, channel_axis + 1) else 1 for d, size in enumerate(view))
    return Normalization(shape, view, axes, (channels,), parameter_view, eps)


def trailing_geometry(shape: tuple[int, ...], k: int, eps: float) -> Normalization:
    """Layer norm's :class:`Normalization`: statistics and parameters over the trailing ``k`` axes."""
    lead = len(shape) - k
    parameter_view = (1,) * lead + shape[lead:]
    return Normalization(shape, shape, tuple(range(lead, len(shape))), shape[lead:], parameter_view, eps)


# ---------------------------------------------------------------------------- arguments


def batch_norm_arguments(op, x, scale, offset, running_mean, running_var, training, momentum, eps, channel_axis):
    """Checked arrays, ``training``, ``momentum`` and the :class:`Normalization` of ``batch_norm``."""
    training = arguments.as_bool(op, "training", training)
    momentum = arguments.as_real(op, "momentum", momentum, 0.0, 1.0)
    eps = arguments.as_real(op, "eps", eps, 0.0, math.inf, include_low=not training, include_high=False)
    x, axis = _channel_input(op, x, channel_axis, 2, "(N, C, *spatial)")
    names = ("scale", "offset", "running_mean", "running_var")
    arrays = [_optional_float_array(op, name, a) for name, a in zip(names, (scale, offset, running_mean, running_var))]
    arguments.same_dtype(op, x=x, **dict(zip(names, arrays)))
    for name, a in zip(names, arrays):
        _parameter_shape(op, name, a, (x.shape[axis],), f"(C,) with C=x.shape[{axis}]")
    scale, offset, running_mean, running_var = arrays
    if (running_mean is None) != (running_var is None):
        raise ValueError(
            f"{op}: running_mean and running_var must be given together, got "
            f"running_mean={'None' if running_mean is None else 'an array'} and "
            f"running_var={'None' if running_var is None else 'an array'}"
        )
    if not training and running_mean is None:
        raise ValueError(
            f"{op}: training=False normalizes with the running statistics, so running_mean and running_var must "
            "be given, got running_mean=None and running_var=None"
        )
    geometry = channel_geometry(x.shape, axis, tuple(d for d in range(x.ndim) if d != axis), eps)
    if training and geometry.count == 1:
        raise ValueError(
            f"{op}: training needs more than 1 value per channel (its unbiased variance divides by M - 1), "
            f"got x.shape={tuple(x.shape)} with channel_axis={channel_axis}"
        )
    return x, scale, offset, running_mean, running_var, training, momentum, geometry


def layer_norm_arguments(op, x, normalized_shape, scale, offset, eps):
    """Checked arrays and the :class:`Normalization` of ``layer_norm``."""
    eps = arguments.as_real(op, "eps", eps, 0.0, math.inf, include_low=False, include_high=False)
    x = arguments.as_float_array(op, "x", x)
    trailing = _normalized_shape(op, normalized_shape)
    k = len(trailing)
    if k > x.ndim or tuple(x.shape[x.ndim - k :]) != trailing:
        raise ValueError(
            f"{op}: normalized_shape={normalized_shape!r} does not match the trailing axes of x.shape="
            f"{tuple(x.shape)} (x must end in {trailing})"
        )
    scale, offset = _parameters(op, x, scale, offset, trailing, f"normalized_shape={trailing}")
    return x, scale, offset, trailing_geometry(tuple(x.shape), k, eps)


def group_norm_arguments(op, x, num_groups, scale, offset, eps, channel_axis):
    """Checked arrays and the :class:`Normalization` of ``group_norm``."""
    eps = arguments.as_real(op, "eps", eps, 0.0, math.inf, include_low=False, include_high=False)
    x, axis = _channel_input(op, x, channel_axis, 2, "(N, C, *spatial)")
    num_groups = arguments.as_int(op, "num_groups", num_groups, 1)
    channels = x.shape[axis]
    if channels % num_groups:
        raise ValueError(
            f"{op}: num_groups={num_groups} does not divide the channels C={channels} "
            f"(x.shape={tuple(x.shape)}, channel_axis={channel_axis})"
        )
    scale, offset = _parameters(op, x, scale, offset, (channels,), f"(C,) with C=x.shape[{axis}]")
    return x, scale, offset, grouped_geometry(tuple(x.shape), num_groups, axis, eps)


def instance_norm_arguments(op, x, scale, offset, eps, channel_axis):
    """Checked arrays and the :class:`Normalization` of ``instance_norm``."""
    eps = arguments.as_real(op, "eps", eps, 0.0, math.inf, include_low=False, include_high=False)
    x, axis = _channel_input(op, x, channel_axis, 3, "(N, C, *spatial) with at least one spatial axis")
    spatial = tuple(d for d in range(1, x.ndim) if d != axis)
    if math.prod(x.shape[d] for d in spatial) == 1:
        raise ValueError(
            f"{op}: needs more than 1 spatial element per channel (one alone normalizes to 0), "
            f"got x.shape={tuple(x.shape)} with channel_axis={channel_axis}"
        )
    scale, offset = _parameters(op, x, scale, offset, (x.shape[axis],), f"(C,) with C=x.shape[{axis}]")
    return x, scale, offset, channel_geometry(tuple(x.shape), axis, spatial, eps)


def _channel_input(op, x, channel_axis, min_ndim, what) -> tuple[jax.Array, int]:
    """The checked input and its channel axis in ``[1, x.ndim)`` (axis 0 is the batch)."""
    x = arguments.as_float_array(op, "x", x)
    arguments.ndim_at_least(op, "x", x, min_ndim, what)
    if isinstance(channel_axis, (bool, np.bool_)):
        raise TypeError(f"{op}: channel_axis must be an int, got channel_axis={channel_axis!r}")
    try:
        index = operator.index(channel_axis)
    except TypeError as error:
        raise TypeError(f"{op}: channel_axis must be an int, got channel_axis={channel_axis!r}") from error
    if not -x.ndim <= index < x.ndim or index % x.ndim == 0:
        raise ValueError(
            f"{op}: channel_axis={channel_axis!r} must be an axis of x other than the batch axis 0: 1 to "
            f"{x.ndim - 1} or -1 to -{x.ndim - 1} for x.shape={tuple(x.shape)}"
        )
    return x, index % x.ndim


def _normalized_shape(op, normalized_shape) -> tuple[int, ...]:
    """``normalized_shape`` as a non-empty tuple of non-negative ints (an int is a 1-tuple)."""
    if isinstance(normalized_shape, Sequence) and not isinstance(normalized_shape, str):
        entries = tuple(normalized_shape)
    else:
        entries = (normalized_shape,)
    message = f"{op}: normalized_shape must be an int or a sequence of ints, got normalized_shape={normalized_shape!r}"
    if any(isinstance(e, (bool, np.bool_)) for e in entries):
        raise TypeError(message)
    try:
        sizes = tuple(operator.index(e) for e in entries)
    except TypeError as error:
        raise TypeError(message) from error
    if not sizes or min(sizes) < 0:
        raise ValueError(
            f"{op}: normalized_shape must hold at least one size, each >= 0, got normalized_shape={normalized_shape!r}"
        )
    return sizes


def _parameters(op, x, scale, offset, shape, what):
    """Checked ``scale`` and ``offset``: ``None`` or floating arrays of ``shape``, in ``x``'s dtype."""
    scale = _optional_float_array(op, "scale", scale)
    offset = _optional_float_array(op, "offset", offset)
    arguments.same_dtype(op, x=x, scale=scale, offset=offset)
    _parameter_shape(op, "scale", scale, shape, what)
    _parameter_shape(op, "offset", offset, shape, what)
    return scale, offset


def _optional_float_array(op, name, value) -> jax.Array | None:
    return None if value is None else arguments.as_float_array(op, name, value)


def _parameter_shape(op, name, array, shape, what) -> None:
    if array is not None and tuple(array.shape) != tuple(shape):
        raise ValueError(f"{op}: {name} must have shape {what}, i.e. {tuple(shape)}, got {name}.shape={array.shape}")
