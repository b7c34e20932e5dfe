"""Validation of public arguments, done once at each op's boundary.

Every check raises ``TypeError`` (wrong kind of thing) or ``ValueError`` (right
kind, wrong value) with a message that starts with the op's name, names the
argument and shows its value, e.g. ``conv: groups=3 does not divide
in_channels=4``. Internals trust what these functions return.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.ops.geometry import CHANNELS_FIRST, Pair

FLOAT_DTYPES = (jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64)


def as_array(op: str, name: str, value: object) -> jax.Array:
    """``value`` as a JAX array (``TypeError`` for ``None``, strings, mappings and sets, which are no arrays)."""
    if value is None or isinstance(value, (str, bytes, dict, set)):
        raise TypeError(f"{op}: {name} must be an array, got {type(value).__name__}")
    try:
        return jnp.asarray(value)
    except TypeError as error:
        raise TypeError(f"{op}: {name} must be an array, got {type(value).__name__}") from error


def as_float_array(op: str, name: str, value: object) -> jax.Array:
    """``value`` as a JAX array of a real floating dtype (float16, bfloat16, float32, float64)."""
    array = as_array(op, name, value)
    if not jnp.issubdtype(array.dtype, jnp.floating):
        raise TypeError(
            f"{op}: {name} must have a real floating dtype (float16, bfloat16, float32, float64), "
            f"got {name}.dtype={array.dtype}"
        )
    return array


def as_int_array(op: str, name: str, value: object, what: str) -> jax.Array:
    """``value`` as a JAX array of an integer dtype, signed or unsigned, not bool (``what`` it holds: indices, ...)."""
    array = as_array(op, name, value)
    if not jnp.issubdtype(array.dtype, jnp.integer):
        raise TypeError(f"{op}: {name} must have an integer dtype ({what}), got {name}.dtype={array.dtype}")
    return array


def same_dtype(op: str, **arrays: jax.Array | None) -> None:
    """All given arrays share one dtype (convgrad never promotes silently)."""
    given = {name: a.dtype for name, a in arrays.items() if a is not None}
    if len(set(given.values())) > 1:
        shown = ", ".join(f"{name}.dtype={dtype}" for name, dtype in given.items())
        raise TypeError(f"{op}: arguments must share one dtype, got {shown}")


def as_int(op: str, name: str, value: object, minimum: int) -> int:
    """A Python ``int`` (not bool) that is at least ``minimum``."""
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be an int, got {name}={value!r}")
    try:
        integer = operator.index(value)
    except TypeError as error:
        raise TypeError(f"{op}: {name} must be an int, got {name}={value!r}") from error
    if integer < minimum:
        relation = "positive" if minimum == 1 else f">= {minimum}"
        raise ValueError(f"{op}: {name} must be {relation}, got {name}={value!r}")
    return integer


def as_tuple(op: str, name: str, value: object, n: int, minimum: int = 1) -> tuple[int, ...]:
    """An int, or a sequence of ``n`` ints, as a tuple of ``n`` ints each at least ``minimum``."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != n:
            raise ValueError(f"{op}: {name} must be an int or {n} ints (one per spatial dim), got {name}={value!r}")
        try:
            return tuple(as_int(op, name, v, minimum) for v in value)
        except (TypeError, ValueError) as error:
            raise type(error)(
                f"{op}: {name} must be an int or {n} ints each >= {minimum}, got {name}={value!r}"
            ) from None
    return (as_int(op, name, value, minimum),) * n


def as_padding(op: str, padding: object, n: int, allow_strings: bool = True) -> str | tuple[Pair, ...]:
    """``"SAME"``, ``"VALID"``, or ``n`` non-negative ``(lo, hi)`` pairs, from an int, ``n`` ints or ``n`` pairs."""
    message = (
        f"{op}: padding must be an int, {n} ints, {n} (lo, hi) pairs"
        + (', "SAME" or "VALID"' if allow_strings else "")
        + f" (all >= 0), got padding={padding!r}"
    )
    if isinstance(padding, str):
        if allow_strings and padding.upper() in ("SAME", "VALID"):
            return padding.upper()
        raise ValueError(message)
    if isinstance(padding, Sequence):
        if len(padding) != n:
            raise ValueError(message)
        pairs = []
        for entry in padding:
            if isinstance(entry, Sequence) and not isinstance(entry, str):
                if len(entry) != 2:
                    raise ValueError(message)
                pair = entry
            else:
                pair = (entry, entry)
            try:
                pairs.append(tuple(as_int(op, "padding", v, 0) for v in pair))
            except (TypeError, ValueError):
                raise (TypeError if not isinstance(entry, (int, Sequence)) else ValueError)(message) from None
        return tuple(pairs)
    try:
        p = as_int(op, "padding", padding, 0)
    except (TypeError, ValueError) as error:
        raise type(error)(message) from None
    return ((p, p),) * n


def ndim_between(op: str, name: str, array: jax.Array, low: int, high: int, what: str) -> None:
    """``low <= array.ndim <= high``."""
    if not low <= array.ndim <= high:
        raise ValueError(f"{op}: {name} must have {low} to {high} dims ({what}), got {name}.shape={tuple(array.shape)}")


def groups_divide(op: str, groups: int, channels_name: str, channels: int, array_name: str, shape) -> None:
    """``groups`` divides ``channels`` (read from ``array_name``, whose shape the message shows)."""
    if channels % groups:
        raise ValueError(
            f"{op}: groups={groups} does not divide {channels_name}={channels} ({array_name}.shape={tuple(shape)})"
        )


def bias_shape(op: str, b: jax.Array | None, out_channels: int) -> None:
    """``b`` is absent or has shape ``(out_channels,)``."""
    if b is not None and b.shape != (out_channels,):
        raise ValueError(f"{op}: b must have shape (out_channels,)=({out_channels},), got b.shape={tuple(b.shape)}")


def ndim_at_least(op: str, name: str, array: jax.Array, low: int, what: str) -> None:
    """``array.ndim >= low``."""
    if array.ndim < low:
        raise ValueError(f"{op}: {name} must be at least {low}-d {what}, got {name}.shape={tuple(array.shape)}")


def ndim_equal(op: str, name: str, array: jax.Array, n: int, what: str) -> None:
    """``array.ndim == n``."""
    if array.ndim != n:
        raise ValueError(
            f"{op}: {name} must have {n} dim{'s' if n != 1 else ''} {what}, got {name}.shape={tuple(array.shape)}"
        )


def as_axis(op: str, axis: object, name: str, array: jax.Array) -> int:
    """An int axis of ``array``, negative counting from the end, returned in ``[0, array.ndim)``."""
    if isinstance(axis, (bool, np.bool_)):
        raise TypeError(f"{op}: axis must be an int, got axis={axis!r}")
    try:
        index = operator.index(axis)
    except TypeError as error:
        raise TypeError(f"{op}: axis must be an int, got axis={axis!r}") from error
    ndim = array.ndim
    if not -ndim <= index < ndim:
        raise ValueError(f"{op}: axis={index} is out of range for {name}.ndim={ndim} (allowed: -{ndim} to {ndim - 1})")
    return index % ndim


def conv_operands(op: str, x, w, b, kernel_layout: str) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """``x``, ``w``, ``b`` as arrays of one floating dtype, ``w`` of rank 3 to 5 and ``x`` of ``w``'s rank.

    Shared by ``conv`` and ``conv_transpose``; ``kernel_layout`` names ``w``'s
    axes in the message (``"(O, C/groups, *kernel)"``).
    """
    x = as_float_array(op, "x", x)
    w = as_float_array(op, "w", w)
    b = None if b is None else as_float_array(op, "b", b)
    same_dtype(op, x=x, w=w, b=b)
    ndim_between(op, "w", w, 3, 5, f"{kernel_layout} with 1 to 3 spatial dims")
    if x.ndim != w.ndim:
        raise ValueError(
            f"{op}: x and w must have the same rank (batch, channel and {w.ndim - 2} spatial dims), "
            f"got x.shape={tuple(x.shape)}, w.shape={tuple(w.shape)}"
        )
    return x, w, b


def dimension_numbers_for(op: str, x_shape, w_shape, dimension_numbers) -> lax.ConvDimensionNumbers:
    """lax's dimension numbers from ``None`` (channel-first) or three layout strings, checked."""
    n = len(w_shape) - 2
    if dimension_numbers is None:
        dimension_numbers = CHANNELS_FIRST[n]
    if not (
        isinstance(dimension_numbers, (tuple, list))
        and len(dimension_numbers) == 3
        and all(isinstance(s, str) for s in dimension_numbers)
    ):
        raise TypeError(
            f"{op}: dimension_numbers must be None or three layout strings such as ('NHWC', 'HWIO', 'NHWC'), "
            f"got dimension_numbers={dimension_numbers!r}"
        )
    lhs, rhs, out = dimension_numbers
    spatial = [c for c in rhs if c not in "OI"]
    problems = []
    for name, spec, special in (("input", lhs, "NC"), ("kernel", rhs, "OI"), ("output", out, "NC")):
        if len(spec) != n + 2:
            problems.append(f"{name} layout {spec!r} has {len(spec)} letters, expected {n + 2} for a rank-{n + 2} w")
        elif len(set(spec)) != len(spec) or any(spec.count(c) != 1 for c in special):
            problems.append(f"{name} layout {spec!r} must contain {special[0]!r} and {special[1]!r} once each")
        elif sorted(c for c in spec if c not in special) != sorted(spatial):
            problems.append(f"{name} layout {spec!r} must use the kernel's spatial letters {''.join(spatial)!r}")
    if problems:
        raise ValueError(f"{op}: bad dimension_numbers={tuple(dimension_numbers)!r}: " + "; ".join(problems))
    return lax.conv_dimension_numbers(tuple(x_shape), tuple(w_shape), tuple(dimension_numbers))


def channels_last_axis(op: str, channel_axis: object, ndim: int) -> bool:
    """``channel_axis`` is 1 (channel-first) or -1 / ``ndim - 1`` (channels-last); True for channels-last."""
    if isinstance(channel_axis, bool) or not isinstance(channel_axis, int) or channel_axis not in (1, -1, ndim - 1):
        raise ValueError(
            f"{op}: channel_axis must be 1 (N, C, *spatial) or -1 (N, *spatial, C), got channel_axis={channel_axis!r}"
        )
    return channel_axis != 1


def as_bool(op: str, name: str, value: object) -> bool:
    """A Python or NumPy bool, as ``bool`` (an int, array or tracer is refused: the choice must be static)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{op}: {name} must be a bool (True or False), got {name}={value!r}")
    return bool(value)


def as_real(
    op: str,
    name: str,
    value: object,
    low: float = -np.inf,
    high: float = np.inf,
    *,
    include_low: bool = True,
    include_high: bool = True,
) -> float:
    """A real number (int or float, not bool), as ``float``, in ``[low, high]``; ``include_*=False`` opens an end."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise TypeError(f"{op}: {name} must be a real number, got {name}={value!r}")
    real = float(value)
    above = real >= low if include_low else real > low
    below = real <= high if include_high else real < high
    if np.isnan(real) or not (above and below):
        interval = f"{'[' if include_low else '('}{low:g}, {high:g}{']' if include_high else ')'}"
        raise ValueError(f"{op}: {name} must be in {interval}, got {name}={value!r}")
    return real
