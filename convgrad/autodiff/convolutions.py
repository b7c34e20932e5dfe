"""``conv`` and ``conv_transpose`` in plain lax, for ``jax.grad`` to differentiate."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from convgrad.ops.geometry import CHANNELS_FIRST


def per_dim(value, n: int) -> tuple:
    """``value`` if it is a sequence (one entry per spatial dim), else ``n`` copies of it."""
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,) * n


def lax_padding(padding, n: int):
    """lax's own ``"SAME"``/``"VALID"`` strings, or explicit (lo, hi) pairs."""
    if isinstance(padding, str):
        return padding.upper()
    return [tuple(p) if isinstance(p, Sequence) else (p, p) for p in per_dim(padding, n)]


def conv(x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, dimension_numbers=None) -> jax.Array:
    """``lax.conv_general_dilated`` plus a broadcast bias."""
    n = w.ndim - 2
    if dimension_numbers is None:
        dimension_numbers = CHANNELS_FIRST[n]
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=per_dim(stride, n),
        padding=lax_padding(padding, n),
        rhs_dilation=per_dim(dilation, n),
        dimension_numbers=dimension_numbers,
        feature_group_count=groups,
    )
    if b is None:
        return y
    channel_axis = dimension_numbers[2].index("C")
    return y + jnp.reshape(b, [-1 if axis == channel_axis else 1 for axis in range(y.ndim)])


def conv_transpose(x, w, b=None, *, stride=1, padding=0, output_padding=0, dilation=1, groups=1) -> jax.Array:
    """PyTorch's ConvTranspose: the ``s``-dilated input (``lhs_dilation``) padded by ``d (k - 1) - p`` low and
    ``d (k - 1) - p + output_padding`` high, correlated with the kernel flipped in space and with in/out
    channels swapped per group, ``(C, O/G, *k) -> (O, C/G, *k)``."""
    n = w.ndim - 2
    stride, padding, output_padding, dilation = (per_dim(v, n) for v in (stride, padding, output_padding, dilation))
    kernel = w.shape[2:]
    in_channels, group_out = w.shape[:2]
    flipped = jnp.flip(w, axis=tuple(range(2, w.ndim)))
    blocks = flipped.reshape(groups, in_channels // groups, group_out, *kernel)
    w_t = jnp.swapaxes(blocks, 1, 2).reshape(groups * group_out, in_channels // groups, *kernel)
    pads = [(d * (k - 1) - p, d * (k - 1) - p + e) for k, p, e, d in zip(kernel, padding, output_padding, dilation)]
    lhs, rhs, out = CHANNELS_FIRST[n]
    y = lax.conv_general_dilated(
        x,
        w_t,
        window_strides=(1,) * n,
        padding=pads,
        lhs_dilation=stride,
        rhs_dilation=dilation,
        dimension_numbers=(lhs, rhs, out),
        feature_group_count=groups,
    )
    if b is None:
        return y
    return y + jnp.reshape(b, (1, -1, *(1,) * n))
