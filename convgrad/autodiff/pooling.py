"""The pooling ops in plain lax (``reduce_window``, ``.at[].add``, slices, means), for ``jax.grad`` to differentiate."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.autodiff.convolutions import lax_padding, per_dim
from convgrad.ops.geometry import adaptive_window_end, adaptive_window_start, pool_output_size


def _batched(x, spatial_from) -> tuple[jax.Array, bool]:
    """``(x, True)``, or ``(x[None], False)`` when a tuple ``window`` / ``output_size`` says ``x`` has no batch axis."""
    if isinstance(spatial_from, Sequence) and x.ndim == len(spatial_from) + 1:
        return x[None], False
    return x, True


def _unbatched(y, batched: bool):
    return y if batched else y[0]


def _moved(x, channel_axis):
    """``x`` channel-first: the pooling here is written for ``(N, C, *spatial)``."""
    return x if channel_axis == 1 else jnp.moveaxis(x, -1, 1)


def _moved_back(y, channel_axis):
    return y if channel_axis == 1 else jnp.moveaxis(y, 1, -1)


def _window_arguments(x, window, stride, padding, dilation, ceil_mode):
    """lax's per-axis window, strides, padding and dilation; the high padding grown for ceil mode's last window."""
    n = x.ndim - 2
    window = per_dim(window, n)
    stride = window if stride is None else per_dim(stride, n)
    dilation = per_dim(dilation, n)
    pads = []
    for size, k, s, (lo, hi), d in zip(x.shape[2:], window, stride, lax_padding(padding, n), dilation):
        out = pool_output_size(size, k, s, (lo, hi), d, ceil_mode)
        pads.append((lo, max(hi, (out - 1) * s + (k - 1) * d + 1 - size - lo)))
    return (1, 1, *window), (1, 1, *stride), [(0, 0), (0, 0), *pads], (1, 1, *dilation)


def _empty_pool(x, window, stride, padding, dilation, ceil_mode):
    """The zero-size result of a pooling whose input is empty (no windows along an empty spatial dim)."""
    n = x.ndim - 2
    window, dilation = per_dim(window, n), per_dim(dilation, n)
    stride = window if stride is None else per_dim(stride, n)
    out = [
        pool_output_size(i, k, s, p, d, ceil_mode)
        for i, k, s, p, d in zip(x.shape[2:], window, stride, lax_padding(padding, n), dilation)
    ]
    return jnp.zeros((*x.shape[:2], *out), x.dtype)


def max_pool(x, window, stride=None, padding=0, *, dilation=1, ceil_mode=False, channel_axis=1) -> jax.Array:
    """``lax.reduce_window`` with ``max`` from ``-inf`` (so padding counts as ``-inf``); ``y`` only, no switches.

    The initial values are NumPy constants, so lax recognises the monoid and
    uses its differentiable ``reduce_window_max`` / ``reduce_window_sum``.
    """
    x, batched = _batched(x, window)
    x = _moved(x, channel_axis)
    if x.size == 0:
        y = _empty_pool(x, window, stride, padding, dilation, ceil_mode)
    else:
        dims, strides, pads, dilations = _window_arguments(x, window, stride, padding, dilation, ceil_mode)
        if all(d == 1 for d in dilations):
            y = lax.reduce_window(x, np.array(-np.inf, x.dtype), lax.max, dims, strides, pads)
        else:  # lax has no VJP for a dilated max window: the max over the stacked tap slices of the padded input
            y = _dilated_max(x, dims, strides, pads, dilations)
    return _unbatched(_moved_back(y, channel_axis), batched)


def _dilated_max(x, dims, strides, pads, dilations):
    """``max_t x_pad[.., i s + t d, ..]``: ``jnp.max`` over the stacked strided slices of the ``-inf``-padded input."""
    x_pad = lax.pad(x, np.array(-np.inf, x.dtype), [(lo, hi, 0) for lo, hi in pads])
    out = [(size - (k - 1) * d - 1) // s + 1 for size, k, s, d in zip(x_pad.shape, dims, strides, dilations)]
    taps = []
    for t in itertools.product(*map(range, dims)):
        start = [tt * d for tt, d in zip(t, dilations)]
        limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, strides)]
        taps.append(lax.slice(x_pad, start, limit, strides))
    return jnp.max(jnp.stack(taps), axis=0)


def avg_pool(
    x, window, stride=None, padding=0, *, ceil_mode=False, count_include_pad=True, divisor_override=None, channel_axis=1
) -> jax.Array:
    """``lax.reduce_window`` with ``add`` from 0, over the window's count of (padded, or real) taps, or the override."""
    x, batched = _batched(x, window)
    x = _moved(x, channel_axis)
    if x.size == 0:
        return _unbatched(_moved_back(_empty_pool(x, window, stride, padding, 1, ceil_mode), channel_axis), batched)
    dims, strides, pads, _ = _window_arguments(x, window, stride, padding, 1, ceil_mode)
    total = lax.reduce_window(x, np.array(0, x.dtype), lax.add, dims, strides, pads)
    if divisor_override is not None:
        divisor = divisor_override
    else:
        n = x.ndim - 2
        ones = jnp.ones((1, 1, *x.shape[2:]), x.dtype)
        if count_include_pad:  # padding counts, the ceil-mode extension past it does not
            given = [(0, 0), (0, 0), *lax_padding(padding, n)]
            ones = lax.pad(ones, np.array(1, x.dtype), [(lo, hi, 0) for lo, hi in given])
            pads = [(0, hi - given_hi) for (_, hi), (_, given_hi) in zip(pads, given)]
        divisor = lax.reduce_window(ones, np.array(0, x.dtype), lax.add, dims, strides, pads)
    return _unbatched(_moved_back(total / divisor, channel_axis), batched)


def max_unpool(y, switches, output_size, *, channel_axis=1) -> jax.Array:
    """``.at[].add`` of ``y`` at its switches into zero planes of ``prod(output_size)``; out-of-range ones dropped."""
    y, batched = _batched(y, output_size)
    switches = switches if batched else switches[None]
    y, switches = _moved(y, channel_axis), _moved(switches, channel_axis)
    batch, channels = y.shape[:2]
    plane, count = math.prod(output_size), math.prod(y.shape[2:])
    if batch * channels == 0 or plane == 0 or count == 0:
        x = jnp.zeros((batch, channels, *output_size), y.dtype)
    else:
        switches = jnp.reshape(switches, (batch * channels, count))
        switches = jnp.where((switches >= 0) & (switches < plane), switches, plane)
        rows = jnp.arange(batch * channels)[:, None]
        x = (
            jnp.zeros((batch * channels, plane), y.dtype)
            .at[rows, switches]
            .add(y.reshape(batch * channels, count), mode="drop")
        )
        x = x.reshape(batch, channels, *output_size)
    return _unbatched(_moved_back(x, channel_axis), batched)


def _adaptive(reduce, x, output_size, channel_axis):
    """``reduce`` (``jnp.mean`` or ``jnp.max``) over each adaptive window, one spatial dim at a time (it separates)."""
    x, batched = _batched(x, output_size)
    x = _moved(x, channel_axis)
    n = x.ndim - 2
    entries = output_size if isinstance(output_size, Sequence) else (output_size,) * n
    for d, (size, entry) in enumerate(zip(x.shape[2:], entries)):
        out, axis = size if entry is None else entry, 2 + d
        if x.size == 0 or out == 0:
            x = jnp.zeros((*x.shape[:axis], out, *x.shape[axis + 1 :]), x.dtype)
            continue
        windows = [
            reduce(
                lax.slice_in_dim(x, adaptive_window_start(i, size, out), adaptive_window_end(i, size, out), axis=axis),
                axis=axis,
            )
            for i in range(out)
        ]
        x = jnp.stack(windows, axis=axis)
    return _unbatched(_moved_back(x, channel_axis), batched)


def adaptive_avg_pool(x, output_size, *, channel_axis=1) -> jax.Array:
    """The mean over each adaptive window: along each spatial dim, ``mean(x[a_i : b_i])``, stacked."""
    return _adaptive(jnp.mean, x, output_size, channel_axis)


def adaptive_max_pool(x, output_size, *, channel_axis=1) -> jax.Array:
    """The maximum over each adaptive window (``y`` only, no switches), one spatial dim at a time."""
    return _adaptive(jnp.max, x, output_size, channel_axis)
