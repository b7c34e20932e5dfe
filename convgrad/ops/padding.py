"""Padding with PyTorch's four modes, each with a hand-derived VJP: the adjoint of the padding.

Read top to bottom: the public ``pad``, its forward (which saves nothing), its backward (the
derivation as code), ``defvjp``; then the per-axis pieces, one forward and one backward per
mode. :func:`convgrad.conv` calls ``pad`` for ``padding_mode="reflect" | "replicate" |
"circular"`` and convolves the padded input with no further padding, as PyTorch's ``Conv*d``
does.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from convgrad.ops import arguments
from convgrad.ops.geometry import Pair
from convgrad.ops.precision import accumulator_dtype

PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def pad(x: ArrayLike, pad_width: int | tuple[int | Pair, ...], mode: str = "zeros") -> jax.Array:
    r"""Pad every axis of ``x`` by ``(lo, hi)`` samples: zeros, a mirror image, copies of the edge, or a wrap-around.

    Along one axis of ``n`` samples, output ``q`` (``0 <= q < lo + n + hi``)
    takes input sample ``m(q)`` of ``j = q - lo`` (the position relative to the
    input), by PyTorch's ``torch.nn.functional.pad`` / ``Conv*d(padding_mode=...)``::

        zeros:      y[q] = x[j]  if 0 <= j < n, else 0       (lo, hi < 0 crop, as in lax.pad)
        reflect:    m = -j if j < 0;  2 (n - 1) - j if j >= n   (the edge sample is not repeated)
        replicate:  m = clip(j, 0, n - 1)
        circular:   m = j mod n

    Axes are padded one after another (the map is separable); ``y[..., q, ...] =
    x[..., m(q), ...]`` along each.

    **Gradient.** Each output sample is a copy of one input sample, so the VJP
    adds every cotangent sample back onto the input sample it was copied from:
    ``dx[m] = sum_{q : m(q) = m} g[q]``. Per mode, with ``g_lo = g[:lo]``,
    ``g_mid = g[lo : lo + n]`` and ``g_hi = g[lo + n :]``:

    * zeros: ``dx = g_mid`` (the padding's cotangent reaches nothing);
    * reflect: the two borders fold back onto the interior, mirrored:
      ``dx[m] = g_mid[m] + g_lo[lo - m] [1 <= m <= lo] + g_hi[n - 2 - m] [n - 1 - hi <= m <= n - 2]``;
    * replicate: each border is summed into its edge sample:
      ``dx[0] += sum(g_lo)``, ``dx[n - 1] += sum(g_hi)``;
    * circular: the borders wrap round and add: ``g_lo`` onto the last ``lo``
      samples, ``g_hi`` onto the first ``hi``.

    The map is linear, and the adjoint identity ``<pad(x), g> = <x, dx>`` holds.

    Args:
      x: the array to pad, any rank, floating dtype.
      pad_width: one ``(lo, hi)`` pair per axis of ``x`` (an int ``p`` for
        ``(p, p)``; one int for every axis). Negative values crop in ``"zeros"``
        mode only.
      mode: ``"zeros"``, ``"reflect"``, ``"replicate"`` or ``"circular"``
        (PyTorch's ``padding_mode`` names; ``jnp.pad``'s ``"constant"``,
        ``"reflect"``, ``"edge"``, ``"wrap"``).

    Returns:
      ``y``, with ``lo + n + hi`` samples along each axis, in ``x``'s dtype.

    Raises:
      TypeError: ``x`` is not a floating array, or ``pad_width`` holds a non-int.
      ValueError: ``mode`` is unknown; ``pad_width`` has the wrong length; a
        negative width outside ``"zeros"`` mode; ``reflect`` wider than ``n - 1``
        (PyTorch's limit); ``circular`` wider than ``n``; ``replicate`` or
        ``reflect`` of an empty axis; the result too large for memory.

    Examples:
      Reflect does not repeat the edge sample, replicate does, circular wraps:

      >>> import jax, jax.numpy as jnp
      >>> from convgrad import pad
      >>> x = jnp.array([1.0, 2.0, 3.0, 4.0])
      >>> pad(x, [(2, 1)], "reflect")
      Array([3., 2., 1., 2., 3., 4., 3.], dtype=float32)
      >>> pad(x, [(2, 1)], "replicate")
      Array([1., 1., 1., 2., 3., 4., 4.], dtype=float32)
      >>> pad(x, [(2, 1)], "circular")
      Array([3., 4., 1., 2., 3., 4., 1.], dtype=float32)

      A cotangent of ones counts how often each sample was copied (``x[2]`` three times):

      >>> jax.vjp(lambda x: pad(x, [(2, 1)], "reflect"), x)[1](jnp.ones(7))[0]
      Array([1., 2., 3., 1.], dtype=float32)

    References:
      ``torch.nn.functional.pad`` and ``torch.nn.Conv2d``'s ``padding_mode``
      (https://pytorch.org/docs/stable/generated/torch.nn.functional.pad.html).
    """
    x = arguments.as_float_array("pad", "x", x)
    pairs = pad_arguments("pad", x.shape, pad_width, mode, "pad_width")
    arguments.fits_in_memory(
        "pad", "output", [n + lo + hi for n, (lo, hi) in zip(x.shape, pairs)], x.dtype, f"pad_width={pad_width!r}"
    )
    return _pad(mode, pairs, x)


@partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _pad(mode: str, pairs: tuple[Pair, ...], x: jax.Array) -> jax.Array:
    return pad_forward(x, pairs, mode)


def _pad_fwd(mode, pairs, x):
    """Save nothing: the map is linear and its transpose needs only the widths (static) and ``x``'s shape."""
    return pad_forward(x, pairs, mode), None


def _pad_bwd(mode, pairs, residuals, g):
    """``dx``: each axis's border cotangents added back where they were copied from, the last axis first.

    (No sum over devices: each sample of ``y`` is a copy of a sample of ``x`` on the same device, so under
    ``shard_map`` ``g`` varies over exactly the axes ``x`` does.)
    """
    for axis in reversed(range(g.ndim)):
        lo, hi = pairs[axis]
        if lo or hi:
            g = AXIS_MODES[mode][1](g, axis, lo, hi)
    return (g,)


_pad.defvjp(_pad_fwd, _pad_bwd)


def pad_forward(x: jax.Array, pairs: tuple[Pair, ...], mode: str) -> jax.Array:
    """``y``: the axes padded one after another by the mode's per-axis rule."""
    if mode == "zeros":
        return lax.pad(x, jnp.zeros((), x.dtype), [(lo, hi, 0) for lo, hi in pairs])
    for axis, (lo, hi) in enumerate(pairs):
        if lo or hi:
            x = AXIS_MODES[mode][0](x, axis, lo, hi)
    return x


def zeros_grad(g: jax.Array, axis: int, lo: int, hi: int) -> jax.Array:
    """``dx = g[lo : lo + n]``: the padding reaches nothing (a negative width, which cropped, pads zeros back)."""
    widths = [(0, 0, 0)] * g.ndim
    widths[axis] = (-lo, -hi, 0)
    return lax.pad(g, jnp.zeros((), g.dtype), widths)


def reflect(x: jax.Array, axis: int, lo: int, hi: int) -> jax.Array:
    """``[x[lo], ..., x[1], x[0], ..., x[n-1], x[n-2], ..., x[n-1-hi]]`` along ``axis``."""
    n = x.shape[axis]
    left = lax.rev(lax.slice_in_dim(x, 1, lo + 1, axis=axis), (axis,))
    right = lax.rev(lax.slice_in_dim(x, n - 1 - hi, n - 1, axis=axis), (axis,))
    return lax.concatenate([left, x, right], axis)


def reflect_grad(g: jax.Array, axis: int, lo: int, hi: int) -> jax.Array:
    """``dx = g_mid + (g_lo mirrored onto samples 1..lo) + (g_hi mirrored onto samples n-1-hi..n-2)``."""
    n = g.shape[axis] - lo - hi
    g_lo, g_mid, g_hi = _borders(g, axis, lo, hi)
    folded_lo = _place(lax.rev(g_lo, (axis,)), axis, 1, n - 1 - lo)
    folded_hi = _place(lax.rev(g_hi, (axis,)), axis, n - 1 - hi, 1)
    return g_mid + folded_lo + folded_hi


def replicate(x: jax.Array, axis: int, lo: int, hi: int) -> jax.Array:
    """``[x[0]] * lo + x + [x[n-1]] * hi`` along ``axis``."""
    n = x.shape[axis]
    first, last = lax.slice_in_dim(x, 0, 1, axis=axis), lax.slice_in_dim(x, n - 1, n, axis=axis)
    shape = lambda k: tuple(k if a == axis else size for a, size in enumerate(x.shape))
    return lax.concatenate([jnp.broadcast_to(first, shape(lo)), x, jnp.broadcast_to(last, shape(hi))], axis)


def replicate_grad(g: jax.Array, axis: int, lo: int, hi: int) -> jax.Array:
    """``dx = g_mid``, plus ``sum(g_lo)`` at sample 0 and ``sum(g_hi)`` at sample n-1 (summed in at least float32)."""
    n = g.shape[axis] - lo - hi
    g_lo, g_mid, g_hi = _borders(g, axis, lo, hi)
    acc = accumulator_dtype(g.dtype)
    lo_sum = jnp.sum(g_lo, axis=axis, keepdims=True, dtype=acc).astype(g.dtype)
    hi_sum = jnp.sum(g_hi, axis=axis, keepdims=True, dtype=acc).astype(g.dtype)
    return g_mid + _place(lo_sum, axis, 0, n - 1) + _place(hi_sum, axis, n - 1, 0)


def circular(x: jax.Array, axis: int, lo: int, hi: int) -> jax.Array:
    """``x[n-lo:] + x + x[:hi]`` along ``axis``."""
    n = x.shape[axis]
    return lax.concatenate([lax.slice_in_dim(x, n - lo, n, axis=axis), x, lax.slice_in_dim(x, 0, hi, axis=axis)], axis)


def circular_grad(g: jax.Array, axis: int, lo: int, hi: int) -> jax.Array:
    """``dx = g_mid + (g_lo onto the last lo samples) + (g_hi onto the first hi samples)``."""
    n = g.shape[axis] - lo - hi
    g_lo, g_mid, g_hi = _borders(g, axis, lo, hi)
    return g_mid + _place(g_lo, axis, n - lo, 0) + _place(g_hi, axis, 0, n - hi)


# mode: (forward along one axis, its VJP along that axis)
AXIS_MODES = {
    "zeros": (None, zeros_grad),
    "reflect": (reflect, reflect_grad),
    "replicate": (replicate, replicate_grad),
    "circular": (circular, circular_grad),
}


def _borders(g: jax.Array, axis: int, lo: int, hi: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(g[:lo], g[lo : lo + n], g[lo + n :])`` along ``axis``."""
    size = g.shape[axis]
    return (
        lax.slice_in_dim(g, 0, lo, axis=axis),
        lax.slice_in_dim(g, lo, size - hi, axis=axis),
        lax.slice_in_dim(g, size - hi, size, axis=axis),
    )


def _place(part: jax.Array, axis: int, before: int, after: int) -> jax.Array:
    """``part`` with ``before`` zeros ahead of it and ``after`` behind it along ``axis``."""
    widths = [(0, 0, 0)] * part.ndim
    widths[axis] = (before, after, 0)
    return lax.pad(part, jnp.zeros((), part.dtype), widths)


def pad_arguments(
    op: str, shape: tuple[int, ...], pad_width: object, mode: object, name: str, shown: object = None, axes=None
) -> tuple[Pair, ...]:
    """Checked ``(lo, hi)`` pairs, one per axis of ``shape``, for ``mode``.

    ``name`` is the argument the widths came from and ``shown`` its value as given
    (``"pad_width"``; for ``conv``, ``"padding"``, whose pairs it resolved
    already, and ``axes``, the spatial axes, which the message counts).
    """
    if not isinstance(mode, str) or mode not in PADDING_MODES:
        label = "mode" if op == "pad" else "padding_mode"
        raise ValueError(f"{op}: {label}={mode!r} is not one of {list(PADDING_MODES)}")
    if op == "pad":
        pairs = arguments.as_signed_padding(op, pad_width, len(shape), (), name="pad_width")
    else:
        pairs = pad_width  # conv resolved them already
    shown = pad_width if shown is None else shown
    label = "mode" if op == "pad" else "padding_mode"
    for axis, (n, (lo, hi)) in enumerate(zip(shape, pairs)):
        place = f"axis {axis}" if axes is None or axis not in axes else f"spatial dim {list(axes).index(axis)}"
        where = f"{name}={shown!r} along {place} of size {n}"
        if mode == "zeros":
            if n + lo + hi < 0:
                raise ValueError(f"{op}: {where} crops more than the axis holds ({n} + {lo} + {hi} < 0)")
            continue
        if lo < 0 or hi < 0:
            raise ValueError(f"{op}: {label}={mode!r} needs widths >= 0, got {where}")
        if lo == hi == 0:
            continue
        if n == 0:
            raise ValueError(f"{op}: {label}={mode!r} cannot pad an empty axis: {where}")
        if mode == "reflect" and max(lo, hi) > n - 1:
            raise ValueError(f"{op}: {label}='reflect' needs widths < the axis size {n}, got {where}")
        if mode == "circular" and max(lo, hi) > n:
            raise ValueError(f"{op}: {label}='circular' needs widths <= the axis size {n} (one wrap), got {where}")
    return tuple(pairs)
