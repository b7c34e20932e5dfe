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

from convgrad.ops.geometry import ConvGeometry, conv_output_size
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
    in at least float32.
    """
    dn, groups = geometry.dn, geometry.groups
    wide = accumulator_dtype(x.dtype)
    x_last = jnp.transpose(x, (dn.lhs_spec[0], *dn.lhs_spec[2:], dn.lhs_spec[1]))  # (N, *in, C)
    w_last = jnp.transpose(w, (*dn.rhs_spec[2:], dn.rhs_spec[1], dn.rhs_spec[0]))  # (*k, C/G, O)
    pads = [(0, 0, 0), *((lo, hi, 0) for lo, hi in geometry.padding), (0, 0, 0)]
    x_pad = lax.pad(x_last, jnp.zeros((), x.dtype), pads)
    kernel_spatial, group_in, out_channels = w_last.shape[:-2], w_last.shape[-2], w_last.shape[-1]
    sizes = zip(x_last.shape[1:-1], kernel_spatial, geometry.stride, geometry.padding, geometry.dilation)
    out_spatial = tuple(conv_output_size(*size) for size in sizes)
    x_groups = x_pad.reshape(*x_pad.shape[:-1], groups, group_in)  # channel c = g C/G + c'
    w_groups = w_last.reshape(*kernel_spatial, group_in, groups, out_channels // groups).astype(wide)
    y = None
    for tap in itertools.product(*map(range, kernel_spatial)):
        start = tuple(t * d for t, d in zip(tap, geometry.dilation))
        limit = tuple(b0 + (o - 1) * s + 1 for b0, o, s in zip(start, out_spatial, geometry.stride))
        rows = lax.slice(
            x_groups, (0, *start, 0, 0), (x_groups.shape[0], *limit, groups, group_in), (1, *geometry.stride, 1, 1)
        ).astype(wide)  # (N, *out, G, C/G)
        for c in range(group_in):
            term = rows[..., c : c + 1] * w_groups[(*tap, c)]  # (N, *out, G, 1) * (G, O/G)
            y = term if y is None else y + term
    y = y.reshape(*y.shape[:-2], out_channels)  # (N, *out, O)
    if b is not None:
        y = y + b.astype(wide)
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
    images. It copies ``C/G * prod(k)`` slices of the input, so for wide layers
    the textbook convolution is faster (see ``docs/performance.md``).
    """
    dn, groups = geometry.dn, geometry.groups
    x_cn = jnp.transpose(x, (dn.lhs_spec[1], dn.lhs_spec[0], *dn.lhs_spec[2:]))  # (C, N, *in)
    x_pad = lax.pad(x_cn, jnp.zeros((), x.dtype), [(0, 0, 0), (0, 0, 0), *((lo, hi, 0) for lo, hi in geometry.padding)])
    g_last = jnp.transpose(g, (dn.out_spec[0], *dn.out_spec[2:], dn.out_spec[1]))  # (N, *out, O)
    out_spatial = g_last.shape[1:-1]
    taps = []
    for tap in itertools.product(*map(range, kernel_spatial)):
        start = tuple(t * d for t, d in zip(tap, geometry.dilation))
        limit = tuple(b + (o - 1) * s + 1 for b, o, s in zip(start, out_spatial, geometry.stride))
        taps.append(lax.slice(x_pad, (0, 0, *start), (*x_pad.shape[:2], *limit), (1, 1, *geometry.stride)))
    channels, positions = x_cn.shape[0], math.prod(g_last.shape[:-1])
    cols = jnp.stack(taps, axis=1).reshape(groups, channels // groups * len(taps), positions)  # rows (c', k)
    g_groups = g_last.reshape(positions, groups, g_last.shape[-1] // groups)
    dw = lax.dot_general(cols, g_groups, (((2,), (0,)), ((0,), (1,))))  # (G, C/G * prod(k), O/G)
    dw = dw.reshape(groups, channels // groups, *kernel_spatial, -1)
    dw = jnp.moveaxis(dw, -1, 1).reshape(-1, channels // groups, *kernel_spatial)  # (O, C/G, *k)
    return jnp.transpose(dw, np.argsort(dn.rhs_spec))  # laid out like w
