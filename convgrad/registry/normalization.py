"""Registry specs of the normalization layers: ``batch_norm``, ``layer_norm``, ``group_norm``, ``instance_norm``.

The checks call every op as ``f(*arrays, **options)``. ``layer_norm``'s
``normalized_shape`` and ``group_norm``'s ``num_groups`` are positional, before
the arrays ``scale`` and ``offset``, so their specs call the ops, twins and loops
through :func:`static_as_keyword`, which takes them as keywords. ``batch_norm``
compares its first output, ``y``, in every check (its running statistics are
compared with PyTorch's in ``tests/test_normalization.py``); its running statistics
are arrays of the case but not among ``argnums``: they are buffers, with zero
cotangents. Every op is affine in ``scale`` and ``offset`` (``linear_argnums``);
batch norm in evaluation is affine in ``x`` too, which
``tests/test_normalization.py`` checks with the adjoint identity.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

import convgrad
from convgrad import autodiff, loops
from convgrad.registry.spec import Case, Draw, case, op_spec

# Normalization divides by sigma = sqrt(var + eps); central differences with step h
# are off by about (h / sigma)^2 relative, h ~ 1e-5 in float64. A group of a few
# standard normal values can have a variance near 0 (two values differ by less than
# 0.2 about once in nine draws), so inputs are redrawn until every group of two or
# more elements has var >= 0.01 (sigma >= 0.1): the error stays below 1e-8, far
# under the 1e-6 the check allows. (A real bug is off by O(1) whatever the spread.)
MIN_VARIANCE = 0.01

# A group of exactly two elements normalizes them to about -1 and 1 whatever they are:
# x_hat = +-sqrt(var / (var + eps)), whose derivative is O(eps / var). The input
# gradient is then a difference of O(1) terms that cancel to O(eps / var), and float32
# computes it to ~1e-7 absolute, i.e. to 1e-7 var / eps relative: with eps = 1e-5 far
# beyond float32's tolerance, for any implementation (float64 still resolves it). So
# the cases and samplers give such groups a large eps, which keeps the gradient O(1).
TWO_ELEMENT_EPS = 0.5


def conditioned_eps(count: int, eps: float) -> float:
    """``eps``, or :data:`TWO_ELEMENT_EPS` for groups of ``count = 2`` elements."""
    return TWO_ELEMENT_EPS if count == 2 else eps


def statistics_view(case: Case, op: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(view, axes)``: ``x`` reshaped to ``view`` has one normalization group per index of the other axes."""
    shape, options = case.shapes[0], case.options
    if op == "layer_norm":
        k = len(options["normalized_shape"])
        return shape, tuple(range(len(shape) - k, len(shape)))
    axis = options.get("channel_axis", 1) % len(shape)
    if op == "batch_norm":
        return shape, tuple(d for d in range(len(shape)) if d != axis)
    if op == "group_norm":
        groups = options["num_groups"]
        view = (*shape[:axis], groups, shape[axis] // groups, *shape[axis + 1 :])
        return view, tuple(d for d in range(1, len(view)) if d != axis)
    return shape, tuple(d for d in range(1, len(shape)) if d != axis)  # instance_norm


def normalization_inputs(op: str, positive: tuple[int, ...] = ()):
    """``make_inputs``: ``x`` standard normal with every group spread (:data:`MIN_VARIANCE`), parameters normal.

    The arguments at ``positive`` (``running_var``) are uniform in ``[0.5, 2]``.
    """

    def make(rng: np.random.Generator, case: Case, dtype: Any) -> tuple[Any, ...]:
        view, axes = statistics_view(case, op)
        for _ in range(1000):
            x = rng.standard_normal(case.shapes[0])
            if x.size == 0 or math.prod(view[a] for a in axes) < 2:
                break
            if np.min(np.var(x.reshape(view), axis=axes)) >= MIN_VARIANCE:
                break
        arrays = [x.astype(dtype)]
        for i, shape in enumerate(case.shapes[1:], start=1):
            if shape is None:
                arrays.append(None)
            elif i in positive:
                arrays.append(rng.uniform(0.5, 2.0, shape).astype(dtype))
            else:
                arrays.append(rng.standard_normal(shape).astype(dtype))
        return tuple(arrays)

    return make


def static_as_keyword(fn: Callable[..., Any], static: str, vjp: bool = False) -> Callable[..., Any]:
    """``fn(x, STATIC, scale, offset, ...)`` called as ``f(x, scale, offset, ..., STATIC=value)``.

    With ``vjp=True``, ``fn`` is a loop VJP returning ``(dx, None, dscale,
    doffset)``; the adapter drops the ``None`` of the static argument.
    """

    @functools.wraps(fn)
    def call(x, scale, offset, *rest, **options):
        value = options.pop(static)
        out = fn(x, value, scale, offset, *rest, **options)
        return (out[0], *out[2:]) if vjp else out

    del call.__wrapped__  # the adapter's own signature names the arguments in failure messages
    return call


def _channels(shape: tuple[int, ...], channel_axis: int) -> int:
    return shape[channel_axis % len(shape)]


# ---------------------------------------------------------------------------- batch_norm


def batch_norm_case(
    x_shape: tuple[int, ...], *, scale: bool = True, offset: bool = True, running: bool = True, **options: Any
) -> Case:
    """A batch-norm case: ``x`` and, per flag, ``scale``, ``offset`` and both running statistics, each ``(C,)``."""
    c = (_channels(x_shape, options.get("channel_axis", 1)),)
    return case(
        tuple(x_shape),
        c if scale else None,
        c if offset else None,
        c if running else None,
        c if running else None,
        **options,
    )


BATCH_NORM_CASES = (
    batch_norm_case((4, 3), training=True),  # (N, C), every argument
    batch_norm_case((4, 3), training=False),  # evaluation: the running statistics normalize
    batch_norm_case((2, 3, 4, 5), training=True),  # spatial batch norm
    batch_norm_case((2, 4, 5, 3), training=True, channel_axis=-1),  # channels-last
    batch_norm_case((1, 3, 2, 4), training=True, channel_axis=2, offset=False),  # a middle axis, one example
    batch_norm_case((2, 3, 4), training=False, channel_axis=-1, scale=False),  # evaluation, channels-last
    batch_norm_case((5, 2), training=True, scale=False, offset=False, running=False),  # nothing tracked, no parameters
    batch_norm_case((6, 1), training=True, momentum=1.0, eps=1e-3),  # one channel
    batch_norm_case((2, 2), training=True, momentum=0.0, eps=TWO_ELEMENT_EPS),  # two values per channel, the fewest
    # zero-size: no values per channel (the running statistics stay as given, dscale = doffset = 0), no channels
    batch_norm_case((0, 3, 4, 4), training=True),  # an empty batch
    batch_norm_case((0, 4, 3), training=True, channel_axis=-1),  # an empty batch, channels-last
    batch_norm_case((2, 3, 0, 4), training=True),  # no spatial samples
    batch_norm_case((2, 0, 4), training=True),  # no channels: every array empty
    batch_norm_case((0, 3), training=False),  # evaluation on an empty batch
    batch_norm_case((2, 0, 3), training=False, channel_axis=-1),  # evaluation, no spatial samples, channels-last
)


def sample_batch_norm(draw: Draw) -> Case:
    """2 to 4 axes of sizes 1 to 3, any channel axis, either mode, each optional array present or not."""
    ndim = draw.integer(2, 4)
    shape = [draw.integer(1, 3) for _ in range(ndim)]
    channel_axis = draw.choice([*range(1, ndim), *range(-ndim + 1, 0)])
    training = draw.choice([True, False])
    axis = channel_axis % ndim
    count = math.prod(s for d, s in enumerate(shape) if d != axis)
    if training and count == 1:
        shape[0], count = 2, 2  # training needs two values per channel
    eps = draw.choice([1e-5, 1e-3])
    return batch_norm_case(
        tuple(shape),
        scale=draw.choice([True, False]),
        offset=draw.choice([True, False]),
        running=draw.choice([True, False]) if training else True,
        training=training,
        momentum=draw.choice([0.0, 0.1, 0.5, 1.0]),
        eps=conditioned_eps(count, eps) if training else eps,
        channel_axis=channel_axis,
    )


BATCH_NORM = op_spec(
    convgrad.batch_norm,
    autodiff.batch_norm,
    loops.batch_norm,
    loops.batch_norm_vjp,
    BATCH_NORM_CASES,
    sample_batch_norm,
    argnums=(0, 1, 2),
    linear_argnums=(1, 2),
    make_inputs=normalization_inputs("batch_norm", positive=(4,)),
)

# ---------------------------------------------------------------------------- layer_norm


def layer_norm_case(x_shape: tuple[int, ...], k: int, *, scale: bool = True, offset: bool = True, **options) -> Case:
    """A layer-norm case over the trailing ``k`` axes; ``scale`` and ``offset`` shaped like them."""
    trailing = tuple(x_shape[len(x_shape) - k :])
    return case(
        tuple(x_shape), trailing if scale else None, trailing if offset else None, normalized_shape=trailing, **options
    )


LAYER_NORM_CASES = (
    layer_norm_case((4, 5), 1),  # one leading axis: a row per example
    layer_norm_case((2, 3, 4), 2),  # two trailing axes: scale varies inside a group
    layer_norm_case((3,), 1),  # a single vector
    layer_norm_case((2, 3, 4), 3, offset=False, eps=1e-3),  # every axis: one group
    layer_norm_case((2, 3), 1, scale=False, offset=False),
    layer_norm_case((3, 1), 1),  # one element per group: y = offset, dx = 0
    # zero-size: no groups (dscale = doffset = 0), or empty groups (empty parameters)
    layer_norm_case((0, 4), 1),  # an empty batch
    layer_norm_case((2, 0, 3), 1),  # no rows: a (3,) scale that nothing reads
    layer_norm_case((3, 0), 1),  # no features: normalized_shape (0,), empty parameters
    layer_norm_case((2, 0, 3), 2),  # normalized over (0, 3): empty groups
)


def sample_layer_norm(draw: Draw) -> Case:
    """1 to 4 axes of sizes 1 to 4, any number of them normalized, each parameter present or not."""
    ndim = draw.integer(1, 4)
    shape = tuple(draw.integer(1, 4) for _ in range(ndim))
    k = draw.integer(1, ndim)
    return layer_norm_case(
        shape,
        k,
        scale=draw.choice([True, False]),
        offset=draw.choice([True, False]),
        eps=conditioned_eps(math.prod(shape[ndim - k :]), draw.choice([1e-5, 1e-3])),
    )


LAYER_NORM = op_spec(
    static_as_keyword(convgrad.layer_norm, "normalized_shape"),
    static_as_keyword(autodiff.layer_norm, "normalized_shape"),
    static_as_keyword(loops.layer_norm, "normalized_shape"),
    static_as_keyword(loops.layer_norm_vjp, "normalized_shape", vjp=True),
    LAYER_NORM_CASES,
    sample_layer_norm,
    argnums=(0, 1, 2),
    linear_argnums=(1, 2),
    make_inputs=normalization_inputs("layer_norm"),
    name="layer_norm",
)

# ---------------------------------------------------------------------------- group_norm


def per_channel_case(x_shape: tuple[int, ...], *, scale: bool = True, offset: bool = True, **options) -> Case:
    """A group- or instance-norm case: ``x`` and ``(C,)`` parameters, per flag."""
    c = (_channels(x_shape, options.get("channel_axis", 1)),)
    return case(tuple(x_shape), c if scale else None, c if offset else None, **options)


GROUP_NORM_CASES = (
    per_channel_case((2, 6, 4), num_groups=3),
    per_channel_case((2, 4, 3, 3), num_groups=2),  # 2-d spatial
    per_channel_case((2, 3, 3, 4), num_groups=2, channel_axis=-1),  # channels-last
    per_channel_case((2, 6, 5), num_groups=1, offset=False),  # one group: layer norm over (C, L), per-channel scale
    per_channel_case((2, 4, 3), num_groups=4, scale=False, eps=1e-3),  # a group per channel: instance norm
    per_channel_case((3, 4), num_groups=2, eps=TWO_ELEMENT_EPS),  # (N, C): groups of two channels
    per_channel_case((1, 2), num_groups=2),  # one element per group (PyTorch refuses it): y = offset
    # zero-size: dscale = doffset = 0 (PyTorch's dscale over no spatial samples is NaN), or empty parameters
    per_channel_case((0, 4, 3), num_groups=2),  # an empty batch
    per_channel_case((2, 4, 0), num_groups=2),  # no spatial samples
    per_channel_case((2, 0, 3, 4), num_groups=2, channel_axis=-1),  # no spatial samples, channels-last
    per_channel_case((2, 0, 3), num_groups=1),  # no channels: one group of none
    per_channel_case((2, 0, 3), num_groups=3),  # no channels: three groups of none
)


def sample_group_norm(draw: Draw) -> Case:
    """1 to 3 groups of 1 to 3 channels, 0 to 2 spatial axes of sizes 1 to 3, any channel axis."""
    groups, per_group = draw.integer(1, 3), draw.integer(1, 3)
    spatial = [draw.integer(1, 3) for _ in range(draw.integer(0, 2))]
    n = draw.integer(1, 3)
    if draw.choice([True, False]):
        shape, channel_axis = (n, groups * per_group, *spatial), 1
    else:
        shape, channel_axis = (n, *spatial, groups * per_group), -1
    return per_channel_case(
        shape,
        scale=draw.choice([True, False]),
        offset=draw.choice([True, False]),
        num_groups=groups,
        eps=conditioned_eps(per_group * math.prod(spatial), draw.choice([1e-5, 1e-3])),
        channel_axis=channel_axis,
    )


GROUP_NORM = op_spec(
    static_as_keyword(convgrad.group_norm, "num_groups"),
    static_as_keyword(autodiff.group_norm, "num_groups"),
    static_as_keyword(loops.group_norm, "num_groups"),
    static_as_keyword(loops.group_norm_vjp, "num_groups", vjp=True),
    GROUP_NORM_CASES,
    sample_group_norm,
    argnums=(0, 1, 2),
    linear_argnums=(1, 2),
    make_inputs=normalization_inputs("group_norm"),
    name="group_norm",
)

# ---------------------------------------------------------------------------- instance_norm

INSTANCE_NORM_CASES = (
    per_channel_case((2, 3, 4)),
    per_channel_case((2, 3, 2, 3)),  # 2-d spatial
    per_channel_case((2, 3, 3, 2), channel_axis=-1),  # channels-last
    per_channel_case((1, 1, 5), scale=False, offset=False),  # one example, one channel
    per_channel_case((2, 2, 2, 2, 2), offset=False, eps=1e-3),  # 3-d spatial
    per_channel_case((2, 2, 3, 4), channel_axis=2),  # a middle axis
    # zero-size (PyTorch 2.13 raises an IndexError for an empty batch or no channels; lax's rules apply)
    per_channel_case((0, 3, 4)),  # an empty batch: dscale = doffset = 0
    per_channel_case((2, 3, 0)),  # no spatial samples
    per_channel_case((2, 0, 4, 3), channel_axis=-1),  # no spatial samples, channels-last
    per_channel_case((2, 0, 4)),  # no channels: empty parameters
)


def sample_instance_norm(draw: Draw) -> Case:
    """1 to 2 spatial axes of sizes 1 to 3 (more than one element), 1 to 3 channels, any channel axis."""
    spatial = [draw.integer(1, 3) for _ in range(draw.integer(1, 2))]
    if math.prod(spatial) == 1:
        spatial[0] = 2  # one spatial element is an error, as in PyTorch
    n, c = draw.integer(1, 2), draw.integer(1, 3)
    if draw.choice([True, False]):
        shape, channel_axis = (n, c, *spatial), 1
    else:
        shape, channel_axis = (n, *spatial, c), -1
    return per_channel_case(
        shape,
        scale=draw.choice([True, False]),
        offset=draw.choice([True, False]),
        eps=conditioned_eps(math.prod(spatial), draw.choice([1e-5, 1e-3])),
        channel_axis=channel_axis,
    )


INSTANCE_NORM = op_spec(
    convgrad.instance_norm,
    autodiff.instance_norm,
    loops.instance_norm,
    loops.instance_norm_vjp,
    INSTANCE_NORM_CASES,
    sample_instance_norm,
    argnums=(0, 1, 2),
    linear_argnums=(1, 2),
    make_inputs=normalization_inputs("instance_norm"),
)

SPECS = (BATCH_NORM, LAYER_NORM, GROUP_NORM, INSTANCE_NORM)
