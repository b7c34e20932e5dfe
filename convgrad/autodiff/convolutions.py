"""``conv``, ``conv_transpose``, ``pad`` and lax's convolutions in plain lax, for ``jax.grad`` to differentiate."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from convgrad.ops.geometry import CHANNELS_FIRST

# PyTorch's padding_mode names -> jnp.pad's
JNP_PAD_MODES = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def per_dim(value, n: int) -> tuple:
    """``value`` if it is a sequence (one entry per spatial dim), else ``n`` copies of it."""
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else (value,) * n


def lax_padding(padding, n: int):
    """lax's own ``"SAME"``/``"SAME_LOWER"``/``"VALID"`` strings, or explicit (lo, hi) pairs."""
    if isinstance(padding, str):
        return padding.upper()
    return [tuple(p) if isinstance(p, Sequence) else (p, p) for p in per_dim(padding, n)]


def pad(x, pad_width, mode="zeros") -> jax.Array:
    """``jnp.pad`` with PyTorch's mode names; negative zeros-mode widths crop (``lax.pad``)."""
    pairs = lax_padding(pad_width, x.ndim)
    if mode == "zeros":
        return lax.pad(x, jnp.zeros((), x.dtype), [(lo, hi, 0) for lo, hi in pairs])
    return jnp.pad(x, pairs, mode=JNP_PAD_MODES[mode])


def conv(
    x, w, b=None, *, stride=1, padding=0, dilation=1, groups=1, dimension_numbers=None, padding_mode="zeros"
) -> jax.Array:
    """``lax.conv_general_dilated`` plus a broadcast bias; ``jnp.pad`` first for the other padding modes."""
    n = w.ndim - 2
    if dimension_numbers is None:
        dimension_numbers = CHANNELS_FIRST[n]
    lhs_layout, rhs_layout, out_layout = dimension_numbers
    unbatched = x.ndim == w.ndim - 1
    if unbatched:
        x = jnp.expand_dims(x, lhs_layout.index("N"))
    stride, dilation = per_dim(stride, n), per_dim(dilation, n)
    padding = lax_padding(padding, n)
    if padding_mode != "zeros":
        spatial = [c for c in rhs_layout if c not in "OI"]
        in_spatial = [x.shape[lhs_layout.index(c)] for c in spatial]
        kernel = [(w.shape[rhs_layout.index(c)] - 1) * d + 1 for c, d in zip(spatial, dilation)]
        pairs = lax.padtype_to_pads(in_spatial, kernel, stride, padding) if isinstance(padding, str) else padding
        full = [(0, 0)] * x.ndim
        for c, pair in zip(spatial, pairs):
            full[lhs_layout.index(c)] = tuple(pair)
        x = jnp.pad(x, full, mode=JNP_PAD_MODES[padding_mode])
        padding = [(0, 0)] * n
    y = lax.conv_general_dilated(
        x,
        w,
        window_strides=stride,
        padding=padding,
        rhs_dilation=dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=groups,
    )
    if b is not None:
        channel_axis = out_layout.index("C")
        y = y + jnp.reshape(b, [-1 if axis == channel_axis else 1 for axis in range(y.ndim)])
    return jnp.squeeze(y, out_layout.index("N")) if unbatched else y


def conv_transpose(
    x,
    w,
    b=None,
    *,
    stride=1,
    padding=0,
    output_padding=0,
    dilation=1,
    groups=1,
    dimension_numbers=None,
    output_size=None,
) -> jax.Array:
    """PyTorch's ConvTranspose: the ``s``-dilated input (``lhs_dilation``) padded by ``d (k - 1) - p`` low and
    ``d (k - 1) - p + output_padding`` high, correlated with the kernel flipped in space and with in/out
    channels swapped per group, ``(C, O/G, *k) -> (O, C/G, *k)``. Other layouts are moved to channel-first
    and back; ``output_size`` picks ``output_padding = size - ((in - 1) s - 2 p + d (k - 1) + 1)``."""
    n = w.ndim - 2
    first = ("NC" + "DHW"[3 - n :], "IO" + "DHW"[3 - n :], "NC" + "DHW"[3 - n :])
    lhs_layout, rhs_layout, out_layout = first if dimension_numbers is None else dimension_numbers
    unbatched = x.ndim == w.ndim - 1
    if unbatched:
        x = jnp.expand_dims(x, lhs_layout.index("N"))
    spatial = [c for c in rhs_layout if c not in "OI"]
    x = jnp.transpose(x, [lhs_layout.index(c) for c in "NC" + "".join(spatial)])
    w = jnp.transpose(w, [rhs_layout.index(c) for c in "IO" + "".join(spatial)])
    stride, padding, output_padding, dilation = (per_dim(v, n) for v in (stride, padding, output_padding, dilation))
    kernel = w.shape[2:]
    if output_size is not None:
        sizes = list(output_size)
        if len(sizes) != n:
            if unbatched:
                sizes.insert(out_layout.index("N"), 0)
            sizes = [sizes[out_layout.index(c)] for c in spatial]
        output_padding = tuple(
            size - ((i - 1) * s - 2 * p + d * (k - 1) + 1)
            for size, i, s, p, d, k in zip(sizes, x.shape[2:], stride, padding, dilation, kernel)
        )
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
    if b is not None:
        y = y + jnp.reshape(b, (1, -1, *(1,) * n))
    y = jnp.transpose(y, [("NC" + "".join(spatial)).index(c) for c in out_layout])
    return jnp.squeeze(y, out_layout.index("N")) if unbatched else y


def conv_general_dilated(lhs, rhs, window_strides, padding, **options) -> jax.Array:
    """``jax.lax.conv_general_dilated`` itself: lax's own transpose rules give its gradient."""
    return lax.conv_general_dilated(lhs, rhs, window_strides, padding, **options)


def lax_conv_transpose(lhs, rhs, strides, padding, **options) -> jax.Array:
    """``jax.lax.conv_transpose`` itself."""
    return lax.conv_transpose(lhs, rhs, strides, padding, **options)
