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


def conv_forward_in_layout(loop_forward: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    """``loop_forward(x, w, b, **options)`` on arrays laid out as ``dimension_numbers`` says."""

    def forward(x, w, b, dimension_numbers=None, **options):
        if dimension_numbers is None:
            return loop_forward(x, w, b, **options)
        lhs, rhs, out = dimension_numbers
        first = CHANNELS_FIRST[np.ndim(w) - 2]
        y = loop_forward(to_channel_first(x, lhs, first[0]), to_channel_first(w, rhs, first[1]), b, **options)
        return from_channel_first(y, first[2], out)

    return forward


def conv_vjp_in_layout(loop_vjp: Callable[..., tuple[Any, ...]]) -> Callable[..., tuple[Any, ...]]:
    """``loop_vjp(x, w, b, g, **options) -> (dx, dw, db)`` for arrays laid out as ``dimension_numbers`` says."""

    def vjp(x, w, b, g, dimension_numbers=None, **options):
        if dimension_numbers is None:
            return loop_vjp(x, w, b, g, **options)
        lhs, rhs, out = dimension_numbers
        first = CHANNELS_FIRST[np.ndim(w) - 2]
        dx, dw, db = loop_vjp(
            to_channel_first(x, lhs, first[0]),
            to_channel_first(w, rhs, first[1]),
            b,
            to_channel_first(g, out, first[2]),
            **options,
        )
        return from_channel_first(dx, first[0], lhs), from_channel_first(dw, first[1], rhs), db

    return vjp


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
