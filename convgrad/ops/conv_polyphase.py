"""The polyphase formulation of a strided convolution's input gradient: ``prod(s)`` stride-1 convolutions.

``conv(..., formulation="polyphase")`` computes the forward and the weight gradient as the
textbook does and the input gradient by :func:`conv_input_grad_polyphase`; ``"auto"``
picks it on CPU for strided layers, where it was measured faster (see
:mod:`convgrad.ops.conv_formulations` and ``docs/performance.md``).

**Why.** The textbook input gradient inserts ``s - 1`` zeros between cotangent samples
(``lhs_dilation = s``) and correlates the result with the flipped kernel: along each
strided axis most of its multiplications are by those zeros (3 of 4 for a 3x3 kernel at
stride 2, in 2-D). Split the input gradient by the *phase* of its positions instead,
and each phase is a stride-1 correlation of the cotangent itself with the few kernel
taps that reach that phase: the same multiplications without the zeros.

**The derivation**, one spatial dim (every dim splits the same way, and the phases of
``n`` dims are the ``prod(s)`` tuples of per-dim phases). The forward with input ``x``
(``in`` samples), kernel ``w`` (``k`` taps), stride ``s``, dilation ``d`` and padding
``(lo, hi)`` reads position ``m = i s + t d - lo`` of ``x`` with tap ``t`` for output
``i``, so::

    dx[m] = sum over (i, t) with i s + t d = m + lo  of  w[t] g[i]

Write the padded position ``p = m + lo`` as ``p = j s + r``, phase ``r`` in ``[0, s)``.
Tap ``t`` reaches phase ``r`` exactly when ``t d = r (mod s)``, at ``i = j - q_t`` with
``q_t = (t d - r) / s``. Those taps form the progression ``t = t0 + L u`` with
``L = s / gcd(s, d)``, and along it ``q_t = q0 + D u`` with ``D = d / gcd(s, d)``, so::

    dx_r[j] = sum_u w[t0 + L u] g[j - q0 - D u]          (u = 0 .. n_r - 1)

a stride-1 convolution of ``g`` with the sub-kernel ``w[t0::L]`` (``n_r`` taps), dilated
by ``D``: the textbook input gradient at stride 1, i.e. ``g`` padded by
``q0 + D (n_r - 1)`` low and correlated with the flipped, channel-swapped sub-kernel
(:func:`~convgrad.ops.conv_textbook.flip_and_swap`, with the layer's groups). A phase no
tap reaches (``n_r = 0``, e.g. every odd phase of a stride-2 1x1 convolution) is zero.

Shapes, per spatial dim: each phase has ``J = ceil((in + lo) / s)`` positions
``j``, so ``g`` is padded high by ``J - out - q0`` (negative values crop, as in lax). The
phases interleave into ``J s`` padded positions (a stack and a reshape: ``p = j s + r``),
which are cropped to the ``in`` positions of ``x``, ``p`` in ``[lo, lo + in)``. A negative
``lo`` crops ``x``: its first ``-lo`` samples are read by no window, their gradient is
zero, and the phases are those of the remaining ``in + lo`` samples at ``lo = 0`` (none
remain when ``-lo >= in``: then ``dx`` is zero).

Layout: any (the phase convolutions use the textbook input gradient's dimension numbers,
the stack and reshape follow the input's spatial axes). lax's extra arguments (an input
dilation, batch groups, a precision or a result type) are computed by the textbook input
gradient.

References:
  Vaidyanathan, "Multirate Systems and Filter Banks" (1993), section 4.3, the polyphase
  decomposition; Dumoulin & Visin, "A guide to convolution arithmetic for deep learning"
  (2016), section 4.
"""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
from jax import lax

from convgrad.ops.conv_textbook import conv_input_grad, flip_and_swap
from convgrad.ops.geometry import ConvGeometry


def conv_input_grad_polyphase(
    g: jax.Array, w: jax.Array, geometry: ConvGeometry, in_spatial: tuple[int, ...]
) -> jax.Array:
    """``dx``: per phase ``r`` of the padded input positions, ``g`` correlated with the taps that reach ``r``.

    ``g`` is ``(N, O, *out)`` in the output layout, ``w`` ``(O, C/G, *k)`` in the kernel
    layout, the result ``(N, C, *in)`` in the input layout (the module docstring derives
    it). Products are those of the cotangent's dtype, as in the textbook input gradient.
    """
    if not geometry.plain:
        return conv_input_grad(g, w, geometry, in_spatial)
    dn = geometry.dn
    spatial_axes = dn.lhs_spec[2:]
    out_spatial = geometry.out_spatial_of(g.shape)
    kernel_spatial = geometry.kernel_spatial(w.shape)
    crops = tuple(max(0, -lo) for lo, _ in geometry.padding)  # input samples no window reads
    read = tuple(size - crop for size, crop in zip(in_spatial, crops))
    lows = tuple(max(0, lo) for lo, _ in geometry.padding)
    n_phases = tuple(geometry.stride)
    batch, channels = g.shape[dn.out_spec[0]], w.shape[dn.rhs_spec[1]] * geometry.groups
    if any(size <= 0 for size in read):  # the padding crops all of x along some axis: no window reads it
        return jnp.zeros(_in_layout(dn.lhs_spec, (batch, channels, *in_spatial)), g.dtype)
    grid = tuple(math.ceil((lo + size) / s) for lo, size, s in zip(lows, read, n_phases))  # J per dim
    w_t = w.astype(g.dtype)
    phase_shape = _in_layout(dn.lhs_spec, (batch, channels, *grid))
    phases = [
        _phase(g, w_t, geometry, phase, out_spatial, kernel_spatial, grid, phase_shape)
        for phase in itertools.product(*map(range, n_phases))
    ]
    stacked = jnp.stack(phases).reshape(*n_phases, *phase_shape)  # (*s, dx's axes with J per spatial axis)
    order = []
    for axis in range(g.ndim):  # each phase axis right after its spatial axis: p = j s + r
        order.append(len(n_phases) + axis)
        if axis in spatial_axes:
            order.append(spatial_axes.index(axis))
    merged_shape = list(phase_shape)
    for axis, s in zip(spatial_axes, n_phases):
        merged_shape[axis] *= s
    padded = jnp.transpose(stacked, order).reshape(merged_shape)  # (N, C, *(J s)) in the input layout
    for axis, lo, size, crop in zip(spatial_axes, lows, read, crops):
        padded = lax.slice_in_dim(padded, lo, lo + size, axis=axis)
        if crop:
            widths = [(0, 0)] * padded.ndim
            widths[axis] = (crop, 0)
            padded = jnp.pad(padded, widths)
    return padded


def _in_layout(lhs_spec: tuple[int, ...], canonical: tuple[int, ...]) -> tuple[int, ...]:
    """The shape ``(N, C, *spatial)`` laid out by ``lhs_spec``."""
    shape = [0] * len(canonical)
    for axis, size in zip(lhs_spec, canonical):
        shape[axis] = size
    return tuple(shape)


def _phase(g, w_t, geometry, phase, out_spatial, kernel_spatial, grid, phase_shape) -> jax.Array:
    """``dx_r`` for one phase tuple ``r``: ``g`` correlated at stride 1 with the flipped sub-kernel, or zero."""
    dn = geometry.dn
    sub_kernel, padding, dilation = w_t, [], []
    for axis, r, s, d, k, n_out, n_grid in zip(
        dn.rhs_spec[2:], phase, geometry.stride, geometry.dilation, kernel_spatial, out_spatial, grid
    ):
        taps = [t for t in range(k) if (t * d - r) % s == 0]
        if not taps:
            return jnp.zeros(phase_shape, g.dtype)
        step, spacing = s // math.gcd(s, d), d // math.gcd(s, d)  # L and D
        first, count = taps[0], len(taps)
        q0 = (first * d - r) // s
        sub_kernel = lax.slice_in_dim(sub_kernel, first, first + step * (count - 1) + 1, step, axis=axis)
        low = q0 + spacing * (count - 1)
        padding.append((low, n_grid - n_out - q0))
        dilation.append(spacing)
    return lax.conv_general_dilated(
        g,
        flip_and_swap(sub_kernel, geometry.groups, dn.rhs_spec),
        window_strides=(1,) * len(padding),
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=lax.ConvDimensionNumbers(dn.out_spec, dn.rhs_spec, dn.lhs_spec),
        feature_group_count=geometry.groups,
    )
