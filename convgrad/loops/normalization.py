"""NumPy loop references of the normalization layers, written from PyTorch's definitions.

Every element of ``x`` belongs to one normalization group (the elements that share a
mean and a variance) and is served by one ``scale`` and one ``offset`` element. Each op
says which, as two functions of an element's index (:func:`_members` groups the indices);
:func:`normalize_groups` then computes every group's statistics as explicit sums, and
:func:`normalize_groups_vjp` walks that computation backwards node by node (``x_hat``,
``sigma``, ``var``, the deviations ``x - mean``, ``mean``), the chain rule one term at a
time, never the simplified three-term formula of :mod:`convgrad.ops.normalization`. Any
``channel_axis`` is just another index position: no layout adapter is needed. Float64.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

Index = tuple[int, ...]


def _members(shape: tuple[int, ...], group_of: Callable[[Index], object]) -> dict[object, list[Index]]:
    """Every index of ``shape``, grouped by ``group_of(index)`` (a group with no element does not appear)."""
    groups: dict[object, list[Index]] = {}
    for index in np.ndindex(*shape):
        groups.setdefault(group_of(index), []).append(index)
    return groups


def group_statistics(x: np.ndarray, members: list[Index]) -> tuple[float, float]:
    """``mean = (1 / M) sum x`` and the biased ``var = (1 / M) sum (x - mean)^2`` over one group's ``M`` elements."""
    total = 0.0
    for i in members:
        total += x[i]
    mean = total / len(members)
    squares = 0.0
    for i in members:
        squares += (x[i] - mean) ** 2
    return mean, squares / len(members)


def normalize_groups(x, groups, parameter_of, scale, offset, eps, statistics=None):
    """``y[i] = scale[p(i)] (x[i] - mean) / sqrt(var + eps) + offset[p(i)]`` for every group's elements.

    ``statistics`` (``{group: (mean, var)}``) replaces the groups' own (batch
    norm in evaluation). Returns ``y`` and the statistics used.
    """
    x = np.asarray(x, np.float64)
    y = np.zeros(x.shape)
    used = {}
    for key, members in groups.items():
        mean, var = group_statistics(x, members) if statistics is None else statistics[key]
        sigma = math.sqrt(var + eps)
        for i in members:
            p = parameter_of(i)
            y[i] = (1.0 if scale is None else scale[p]) * (x[i] - mean) / sigma + (0.0 if offset is None else offset[p])
        used[key] = (mean, var)
    return y, used


def normalize_groups_vjp(x, groups, parameter_of, scale, offset, eps, g, statistics=None):
    """``(dx, dscale, doffset)`` of :func:`normalize_groups`, backwards through each node of the computation.

    Forward per group: ``mean = sum x / M``; ``d[i] = x[i] - mean``;
    ``var = sum d^2 / M``; ``sigma = sqrt(var + eps)``; ``x_hat[i] = d[i] / sigma``;
    ``y[i] = scale[p(i)] x_hat[i] + offset[p(i)]``. Backward, in reverse order:
    each node's cotangent is the sum over the nodes it fed. With given
    ``statistics`` (evaluation) ``mean`` and ``var`` are constants and the
    walk stops at ``d``.
    """
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    dx = np.zeros(x.shape)
    dscale = None if scale is None else np.zeros(np.shape(scale))
    doffset = None if offset is None else np.zeros(np.shape(offset))
    for key, members in groups.items():
        m = len(members)
        mean, var = group_statistics(x, members) if statistics is None else statistics[key]
        sigma = math.sqrt(var + eps)
        d = {i: x[i] - mean for i in members}
        # y[i] = scale x_hat[i] + offset
        dx_hat = {}
        for i in members:
            p = parameter_of(i)
            if doffset is not None:
                doffset[p] += g[i]
            if dscale is not None:
                dscale[p] += g[i] * d[i] / sigma
            dx_hat[i] = g[i] * (1.0 if scale is None else scale[p])
        # x_hat[i] = d[i] / sigma
        dd = {i: dx_hat[i] / sigma for i in members}
        if statistics is not None:  # mean and var are given: x reaches y only through d
            for i in members:
                dx[i] += dd[i]
            continue
        dsigma = 0.0
        for i in members:
            dsigma += -dx_hat[i] * d[i] / sigma**2
        # sigma = sqrt(var + eps)
        dvar = dsigma / (2 * sigma)
        # var = sum_i d[i]^2 / M
        for i in members:
            dd[i] += dvar * 2 * d[i] / m
        # d[i] = x[i] - mean
        dmean = 0.0
        for i in members:
            dx[i] += dd[i]
            dmean -= dd[i]
        # mean = sum_i x[i] / M
        for i in members:
            dx[i] += dmean / m
    return dx, dscale, doffset


# ---------------------------------------------------------------------------- batch_norm


def batch_norm(x, scale, offset, running_mean, running_var, *, training, momentum=0.1, eps=1e-5, channel_axis=1):
    """``(y, running_mean, running_var)`` of ``F.batch_norm``: one group per channel, over every other axis.

    In training each channel's batch statistics normalize and update the running
    ones, ``(1 - momentum) running + momentum batch`` with the unbiased variance
    ``sum (x - mean)^2 / (M - 1)``; a channel with no element leaves them as they
    are. In evaluation the running statistics normalize.
    """
    x = np.asarray(x, np.float64)
    axis = channel_axis % x.ndim
    groups = _members(x.shape, lambda i: i[axis])
    parameter_of = lambda i: i[axis]
    if not training:
        statistics = {c: (running_mean[c], running_var[c]) for c in range(x.shape[axis])}
        y, _ = normalize_groups(x, groups, parameter_of, scale, offset, eps, statistics)
        return y, running_mean, running_var
    y, statistics = normalize_groups(x, groups, parameter_of, scale, offset, eps)
    if running_mean is None:
        return y, None, None
    new_mean, new_var = np.array(running_mean, np.float64), np.array(running_var, np.float64)
    for c, (mean, var) in statistics.items():
        m = len(groups[c])
        new_mean[c] = (1 - momentum) * running_mean[c] + momentum * mean
        new_var[c] = (1 - momentum) * running_var[c] + momentum * var * m / (m - 1)
    return y, new_mean, new_var


def batch_norm_vjp(x, scale, offset, running_mean, running_var, g, *, training, momentum=0.1, eps=1e-5, channel_axis=1):
    """``(dx, dscale, doffset, 0, 0)``: the running statistics are buffers, with zero cotangents (or ``None``)."""
    x = np.asarray(x, np.float64)
    axis = channel_axis % x.ndim
    groups = _members(x.shape, lambda i: i[axis])
    statistics = None if training else {c: (running_mean[c], running_var[c]) for c in range(x.shape[axis])}
    dx, dscale, doffset = normalize_groups_vjp(x, groups, lambda i: i[axis], scale, offset, eps, g, statistics)
    zero = lambda a: None if a is None else np.zeros(np.shape(a))
    return dx, dscale, doffset, zero(running_mean), zero(running_var)


# ---------------------------------------------------------------------------- layer_norm, group_norm, instance_norm


def layer_norm(x, normalized_shape, scale=None, offset=None, *, eps=1e-5):
    """``F.layer_norm``: one group per index of the leading axes, over the trailing ``len(normalized_shape)``."""
    x = np.asarray(x, np.float64)
    lead = x.ndim - _rank(normalized_shape)
    y, _ = normalize_groups(x, _members(x.shape, lambda i: i[:lead]), lambda i: i[lead:], scale, offset, eps)
    return y


def layer_norm_vjp(x, normalized_shape, scale, offset, g, *, eps=1e-5):
    """``(dx, None, dscale, doffset)``: ``normalized_shape`` is not differentiable."""
    x = np.asarray(x, np.float64)
    lead = x.ndim - _rank(normalized_shape)
    groups = _members(x.shape, lambda i: i[:lead])
    dx, dscale, doffset = normalize_groups_vjp(x, groups, lambda i: i[lead:], scale, offset, eps, g)
    return dx, None, dscale, doffset


def group_norm(x, num_groups, scale=None, offset=None, *, eps=1e-5, channel_axis=1):
    """``F.group_norm``: one group per ``(n, c // (C / G))``, over its ``C/G`` channels and every other axis."""
    x = np.asarray(x, np.float64)
    axis = channel_axis % x.ndim
    per_group = x.shape[axis] // num_groups
    groups = _members(x.shape, lambda i: (i[0], i[axis] // per_group))
    y, _ = normalize_groups(x, groups, lambda i: i[axis], scale, offset, eps)
    return y


def group_norm_vjp(x, num_groups, scale, offset, g, *, eps=1e-5, channel_axis=1):
    """``(dx, None, dscale, doffset)``: ``num_groups`` is not differentiable."""
    x = np.asarray(x, np.float64)
    axis = channel_axis % x.ndim
    per_group = x.shape[axis] // num_groups
    groups = _members(x.shape, lambda i: (i[0], i[axis] // per_group))
    dx, dscale, doffset = normalize_groups_vjp(x, groups, lambda i: i[axis], scale, offset, eps, g)
    return dx, None, dscale, doffset


def instance_norm(x, scale=None, offset=None, *, eps=1e-5, channel_axis=1):
    """``F.instance_norm`` with the input's statistics: one group per ``(n, c)``, over the spatial axes."""
    x = np.asarray(x, np.float64)
    axis = channel_axis % x.ndim
    y, _ = normalize_groups(x, _members(x.shape, lambda i: (i[0], i[axis])), lambda i: i[axis], scale, offset, eps)
    return y


def instance_norm_vjp(x, scale, offset, g, *, eps=1e-5, channel_axis=1):
    """``(dx, dscale, doffset)``."""
    x = np.asarray(x, np.float64)
    axis = channel_axis % x.ndim
    groups = _members(x.shape, lambda i: (i[0], i[axis]))
    return normalize_groups_vjp(x, groups, lambda i: i[axis], scale, offset, eps, g)


def _rank(normalized_shape) -> int:
    """How many trailing axes ``normalized_shape`` names (an int names one)."""
    return 1 if isinstance(normalized_shape, int) else len(normalized_shape)
