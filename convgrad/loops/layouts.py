"""Layout adapters: the loop references are channel-first; these run them on arrays in any other layout.

The loops are written once, in the order of the definitions (``N, C, *spatial`` and
``O, C/G, *k``). An op called with lax's ``dimension_numbers`` or with
``channel_axis=-1`` is checked against the same loops, its arrays moved to
channel-first and the results moved back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from convgrad.ops.geometry import CHANNELS_FIRST


def to_channel_first(a: np.ndarray, layout: str, canonical: str) -> np.ndarray:
    """Transpose ``a`` from ``layout`` (e.g. ``"NHWC"``) to ``canonical`` (e.g. ``"NCHW"``)."""
    return np.transpose(a, [layout.index(c) for c in canonical])


def from_channel_first(a: np.ndarray, canonical: str, layout: str) -> np.ndarray:
    """Inverse of :func:`to_channel_first`."""
    return np.transpose(a, [canonical.index(c) for c in layout])


def conv_forward_in_layout(loop_forward: Callable[..., np.ndarray], kernel: str = "OI") -> Callable[..., np.ndarray]:
    """``loop_forward(x, w, b, **options)`` on arrays laid out as ``dimension_numbers`` says, ``x`` batched or not.

    ``kernel`` names the loop's kernel axes before the spatial ones: ``"OI"`` for
    ``conv`` (``O, C/G, *k``), ``"IO"`` for ``conv_transpose`` (``C, O/G, *k``).
    An unbatched ``x`` (one axis fewer than ``w``) gets its batch axis where the
    layout's ``N`` stands, and loses it again in the result.
    """

    def forward(x, w, b, dimension_numbers=None, **options):
        lhs, rhs, out = _layouts(dimension_numbers, np.ndim(w), kernel)
        first = _canonical(rhs, kernel)
        unbatched = np.ndim(x) == np.ndim(w) - 1
        x = np.expand_dims(x, lhs.index("N")) if unbatched else x
        y = loop_forward(to_channel_first(x, lhs, first[0]), to_channel_first(w, rhs, first[1]), b, **options)
        y = from_channel_first(y, first[2], out)
        return np.squeeze(y, out.index("N")) if unbatched else y

    return forward


def conv_vjp_in_layout(loop_vjp: Callable[..., tuple[Any, ...]], kernel: str = "OI") -> Callable[..., tuple[Any, ...]]:
    """``loop_vjp(x, w, b, g, **options) -> (dx, dw, db)`` for arrays laid out as ``dimension_numbers`` says."""

    def vjp(x, w, b, g, dimension_numbers=None, **options):
        lhs, rhs, out = _layouts(dimension_numbers, np.ndim(w), kernel)
        first = _canonical(rhs, kernel)
        unbatched = np.ndim(x) == np.ndim(w) - 1
        if unbatched:
            x, g = np.expand_dims(x, lhs.index("N")), np.expand_dims(g, out.index("N"))
        dx, dw, db = loop_vjp(
            to_channel_first(x, lhs, first[0]),
            to_channel_first(w, rhs, first[1]),
            b,
            to_channel_first(g, out, first[2]),
            **options,
        )
        dx = from_channel_first(dx, first[0], lhs)
        return (np.squeeze(dx, lhs.index("N")) if unbatched else dx), from_channel_first(dw, first[1], rhs), db

    return vjp


def _layouts(dimension_numbers, ndim: int, kernel: str) -> tuple[str, str, str]:
    """The three layout strings; the default is channel-first, with the kernel's axes in the loop's order."""
    if dimension_numbers is not None:
        return tuple(dimension_numbers)
    lhs, _, out = CHANNELS_FIRST[ndim - 2]
    return lhs, kernel + lhs[2:], out


def _canonical(rhs: str, kernel: str) -> tuple[str, str, str]:
    """Channel-first strings over ``rhs``'s own spatial letters, in ``rhs``'s spatial order (lax's rule)."""
    spatial = "".join(c for c in rhs if c not in "OI")
    return "NC" + spatial, kernel + spatial, "NC" + spatial


def lax_in_layout(
    loop: Callable[..., Any], arrays: int, default: Callable[[int], Any] | None = None
) -> Callable[..., Any]:
    """A loop over lax's canonical order (``N C *``, ``O I *``, ``N C *``) for any ``dimension_numbers``.

    ``None``, a ``lax.ConvDimensionNumbers`` or three strings (their specs by lax's
    rule: the batch and feature axes, then the spatial axes in the kernel's order).
    The first two arrays are ``lhs`` and ``rhs``; a third (a cotangent) is laid out
    as the output. The results, one array (the output) or two (``dlhs``, ``drhs``),
    are laid back out. ``default(ndim)`` gives the layout when none is (``None``: lax's ``NC*``, ``OI*``, ``NC*``).
    """

    def run(*args, dimension_numbers=None, **options):
        given, rest = args[:arrays], args[arrays:]
        if dimension_numbers is None and default is not None:
            dimension_numbers = default(np.ndim(given[0]))
        lhs_spec, rhs_spec, out_spec = lax_specs(dimension_numbers, np.ndim(given[0]))
        specs = (lhs_spec, rhs_spec, out_spec)
        canonical = [np.transpose(a, spec) for a, spec in zip(given, specs)]
        result = loop(*canonical, *rest, **options)
        if isinstance(result, tuple):
            return tuple(np.transpose(r, np.argsort(spec)) for r, spec in zip(result, specs))
        return np.transpose(result, np.argsort(out_spec))

    return run


def lax_specs(dimension_numbers, ndim: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """``(lhs_spec, rhs_spec, out_spec)``: for each array the axis of batch / out-feature, feature / in-feature,
    then the spatial axes in the kernel's order."""
    if dimension_numbers is None:
        return (tuple(range(ndim)),) * 3
    if not isinstance(dimension_numbers[0], str):  # a lax.ConvDimensionNumbers
        return tuple(tuple(spec) for spec in dimension_numbers)
    lhs, rhs, out = dimension_numbers
    spatial = [c for c in rhs if c not in "OI"]
    return (
        (lhs.index("N"), lhs.index("C"), *(lhs.index(c) for c in spatial)),
        (rhs.index("O"), rhs.index("I"), *(rhs.index(c) for c in spatial)),
        (out.index("N"), out.index("C"), *(out.index(c) for c in spatial)),
    )


def channel_axis_in_layout(loop: Callable[..., Any]) -> Callable[..., Any]:
    """A channel-first loop for ``channel_axis=1`` or ``-1``: channels-last arrays are moved there and back.

    Arrays of rank 3 or more are moved (pooling's inputs, values and switches); the
    results, an array or a tuple of arrays and ``None``, are moved back.
    """

    def run(*arrays, channel_axis=1, **options):
        if channel_axis == 1:
            return loop(*arrays, **options)
        out = loop(*(np.moveaxis(a, -1, 1) if np.ndim(a) >= 3 else a for a in arrays), **options)
        back = lambda a: None if a is None else np.moveaxis(a, 1, -1)
        return tuple(back(o) for o in out) if isinstance(out, tuple) else back(out)

    return run
