"""The im2col formulation of conv's forward and weight gradient: products with the patch matrix.

A row of the patch matrix is one (input channel ``c'``, kernel tap ``k``) pair: the strided
slice of the padded input that the tap reads. The forward sums the rows times the kernel
without building the matrix; the weight gradient is one GEMM over it. Much faster on CPU
when a group's patch has few rows (a first layer); :mod:`convgrad.ops.conv_formulations`
says when ``"auto"`` picks it. The input gradient stays textbook.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.ops.geometry import ConvGeometry, conv_general_output_size
from convgrad.ops.precision import accumulator_dtype


def conv_forward_im2col(x: jax.Array, w: jax.Array, b: jax.Array | None, geometry: ConvGeometry) -> jax.Array:
    """``y``: the same sum as :func:`conv_forward`, one im2col patch row at a time, the matrix never built.

    A row of the patch matrix is one (input channel ``c'``, kernel tap ``k``)
    pair: the strided slice ``x_pad[n, *(i s + k d), c]`` that the tap reads, in
    channels-last order. The forward is the patch matrix times the kernel,
    written as a sum over its rows of the row times that row of the kernel::

        y[n, *i, o] = b[o] + sum_{c', k} x_pad[n, *(i s + k d), g(o) C/G + c'] w[o, c', *k]

    XLA fuses the ``C/G * prod(k)`` broadcast products into one loop that reads
    the input's slices and writes each output once (with the bias added), with
    no patch matrix in memory. It pays when there are few rows (a first layer);
    for wide layers the textbook convolution is faster. The products are summed
    in at least float32. Each row is read from the unpadded input
    (:func:`tap_reader`), so nothing larger than an output channel is built
    however wide the padding.
    """
    dn, groups = geometry.dn, geometry.groups
    acc = accumulator_dtype(x.dtype)
    x_last = jnp.transpose(x, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))  # (N, *in, C)
    w_last = jnp.transpose(w, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))  # (*k, C/G, O)
    kernel_spatial, group_in, out_channels = w_last.shape[:-2], w_last.shape[-2], w_last.shape[-1]
    out_spatial = _out_spatial(x_last.shape[1:-1], kernel_spatial, geometry)
    w_groups = w_last.reshape(*kernel_spatial, group_in, groups, out_channels // groups).astype(acc)
    y = None
    read = tap_reader(x_last, 1, out_spatial, geometry)
    for tap in itertools.product(*map(range, kernel_spatial)):
        rows = read(tap)  # (N, *out, C), or None: only padding
        if rows is None:
            continue
        rows = rows.reshape(*rows.shape[:-1], groups, group_in).astype(acc)  # channel c = g C/G + c'
        for c in range(group_in):
            term = rows[..., c : c + 1] * w_groups[(*tap, c)]  # (N, *out, G, 1) * (G, O/G)
            y = term if y is None else y + term
    if y is None:  # every tap reads only padding
        y = jnp.zeros((x.shape[dn.lhs_spec[0]], *out_spatial, groups, out_channels // groups), acc)
    y = y.reshape(*y.shape[:-2], out_channels)  # (N, *out, O)
    if b is not None:
        y = y + b.astype(acc)
    where = (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1])  # the output axis of each axis of y
    return jnp.transpose(y.astype(x.dtype), [where.index(axis) for axis in range(y.ndim)])


def conv_weight_grad_im2col(
    x: jax.Array, g: jax.Array, geometry: ConvGeometry, kernel_spatial: tuple[int, ...]
) -> jax.Array:
    """``dw``: the same sum as :func:`conv_weight_grad`, as one matrix product over explicit patches.

    For each kernel tap ``k`` the strided slice of the padded input that tap
    reads, ``x_pad[c, n, *(i s + k d)]``, is one row block of the patch matrix
    ``cols[(c', k), (n, *i)]`` (``C/G * prod(k)`` rows per group, one column per
    output position); then per group

        dw[(c', k), o'] = sum_{(n, *i)} cols[(c', k), (n, *i)] g[(n, *i), o']

    is a single GEMM contracting all ``N * prod(out)`` positions at once, in
    place of a convolution whose "kernel" is the whole cotangent. It pays when
    ``cols`` is small (few input channels): a first layer on grayscale or RGB
    images. It copies ``C/G * prod(k)`` slices of the input (:func:`patch_elements`),
    so for wide layers the textbook convolution is faster (see
    ``docs/performance.md``).
    """
    dn, groups = geometry.dn, geometry.groups
    x_cn = jnp.transpose(x, (dn.lhs_spec[1], dn.lhs_spec[0], *dn.lhs_spec[2:]))  # (C, N, *in)
    g_last = jnp.transpose(g, (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1]))  # (N, *out, O)
    out_spatial = g_last.shape[1:-1]
    read = tap_reader(x_cn, 2, out_spatial, geometry)
    taps = []
    for tap in itertools.product(*map(range, kernel_spatial)):
        rows = read(tap)  # (C, N, *out), or None: only padding
        taps.append(jnp.zeros((*x_cn.shape[:2], *out_spatial), x.dtype) if rows is None else rows)
    channels, positions = x_cn.shape[0], math.prod(g_last.shape[:-1])
    cols = jnp.stack(taps, axis=1).reshape(groups, channels // groups * len(taps), positions)  # rows (c', k)
    g_groups = g_last.reshape(positions, groups, g_last.shape[-1] // groups)
    dw = lax.dot_general(cols, g_groups, (((2,), (0,)), ((0,), (1,))))  # (G, C/G * prod(k), O/G)
    dw = dw.reshape(groups, channels // groups, *kernel_spatial, -1)
    dw = jnp.moveaxis(dw, -1, 1).reshape(-1, channels // groups, *kernel_spatial)  # (O, C/G, *k)
    return jnp.transpose(dw, np.argsort(dn.rhs_spec))  # laid out like w


def tap_reader(x: jax.Array, first_axis: int, out_spatial: tuple[int, ...], geometry: ConvGeometry):
    """``read(k)``: ``x_pad[..., *(i s + k d), ...]`` for ``i < out``, what tap ``k`` reads (``None``: only padding).

    The spatial axes of ``x`` are ``first_axis, first_axis + 1, ...``. When the
    padded input is at most :data:`PAD_ONCE_MAX_RATIO` times the input, it is
    built once and each tap is a strided slice of it (the fastest on CPU).
    Otherwise (a padding or a dilation far wider than the input) each tap's
    slice is read from the unpadded input and padded by itself: along each
    spatial dim, output ``i`` reads input sample ``m = i s + k d - lo``; the
    outputs whose ``m`` lies in ``[0, in)`` are one strided slice of ``x``, the
    others read padding, so the slice is zero-padded by their counts. Nothing
    larger than one tap's rows is built then, however wide the padding.
    """
    axes = range(first_axis, first_axis + len(out_spatial))
    spatial = tuple(x.shape[a] for a in axes)
    padded = math.prod(n + lo + hi for n, (lo, hi) in zip(spatial, geometry.padding))

    def per_axis(values, fill):
        full = [fill] * x.ndim
        for axis, value in zip(axes, values):
            full[axis] = value
        return full

    if padded <= PAD_ONCE_MAX_RATIO * max(1, math.prod(spatial)):
        x_pad = lax.pad(x, jnp.zeros((), x.dtype), per_axis(((lo, hi, 0) for lo, hi in geometry.padding), (0, 0, 0)))

        def read_padded(tap):
            start = [t * d for t, d in zip(tap, geometry.dilation)]
            limit = [b + (o - 1) * s + 1 for b, o, s in zip(start, out_spatial, geometry.stride)]
            return lax.slice(x_pad, per_axis(start, 0), _limits(x_pad.shape, axes, limit), per_axis(geometry.stride, 1))

        return read_padded

    def read_unpadded(tap):
        starts, limits, steps, pads = [], [], [], []
        for size, k, d, s, (lo, _), out in zip(
            spatial, tap, geometry.dilation, geometry.stride, geometry.padding, out_spatial
        ):
            offset = k * d - lo  # output i reads input sample i s + offset
            first = max(0, -(offset // s))  # the first i with i s + offset >= 0: ceil(-offset / s)
            last = min(out - 1, (size - 1 - offset) // s)  # the last i with i s + offset <= size - 1
            if last < first:
                return None
            starts.append(first * s + offset)
            limits.append(last * s + offset + 1)
            steps.append(s)
            pads.append((first, out - 1 - last, 0))
        rows = lax.slice(x, per_axis(starts, 0), _limits(x.shape, axes, limits), per_axis(steps, 1))
        return lax.pad(rows, jnp.zeros((), x.dtype), per_axis(pads, (0, 0, 0)))

    return read_unpadded


def _limits(shape, axes, limits) -> list[int]:
    """``shape`` with ``limits`` on the spatial ``axes``: the ``limit_indices`` of a slice over whole other axes."""
    full = list(shape)
    for axis, limit in zip(axes, limits):
        full[axis] = limit
    return full


# Above this ratio of padded to unpadded input the im2col formulation reads each tap from the unpadded input
# (a padding of 10**6 around a 5x5 image would otherwise build a 2-million-square array). Typical "SAME"
# paddings of first layers (28x28 -> 30x30) stay far below it and keep the pad-once slices, the faster way.
PAD_ONCE_MAX_RATIO = 4


def patch_elements(x_shape, kernel_spatial, g_shape, geometry: ConvGeometry) -> int:
    """The size of :func:`conv_weight_grad_im2col`'s patch matrix: ``C prod(k)`` rows of ``N prod(out)`` samples."""
    dn = geometry.dn
    positions = g_shape[dn.out_spec[0]] * math.prod(geometry.out_spatial_of(g_shape))
    return x_shape[dn.lhs_spec[1]] * math.prod(kernel_spatial) * positions


def _out_spatial(in_spatial, kernel_spatial, geometry: ConvGeometry) -> tuple[int, ...]:
    sizes = zip(in_spatial, kernel_spatial, geometry.stride, geometry.padding, geometry.dilation)
    return tuple(conv_general_output_size(*size) for size in sizes)
