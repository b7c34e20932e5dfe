"""The one rule the backwards share for ``shard_map``: a replicated value's cotangent is a sum.

Inside ``jax.shard_map`` (with its default ``check_vma=True``) the type of every
array records the mesh axes over which it *varies* from device to device. Take
``dense(x, w)`` with ``x`` a device's own slice of the batch (varying over
``data``) and ``w`` the same on every device (not varying). The per-device loss is
``L_d(w) = l(x_d @ w)`` and the total is ``L = sum_d L_d``: one ``w`` feeds every
device's term, so

    dL/dw = sum_d dL_d/dw = sum_d x_d^T g_d,

a ``psum`` over ``data`` of what the backward computes on each device. JAX's own
primitives get this sum from the broadcast JAX inserts in front of them (its
transpose is the ``psum``); a ``custom_vjp`` gets no such broadcast, so its
backward must take the sum itself, and JAX checks that it did: the cotangent must
vary over exactly the axes its primal varies over. Outside ``shard_map`` types
record no axes and :func:`like_primal` returns the cotangent unchanged.
"""

from __future__ import annotations

import jax
from jax import lax


def varying_axes(a: jax.Array) -> frozenset[str]:
    """The ``shard_map`` mesh axes over which ``a`` varies (empty outside ``shard_map``)."""
    aval = jax.typeof(a)
    if hasattr(aval, "vma"):  # jax < 0.8 named the set ``vma``
        return frozenset(aval.vma)
    manual = getattr(aval, "manual_axis_type", None)
    return frozenset(manual.varying) if manual is not None else frozenset()


def like_primal(cotangent: jax.Array, primal: jax.Array) -> jax.Array:
    """``cotangent`` summed over the axes it varies over and ``primal`` does not.

    The sum is the derivation of the module docstring. The converse, an axis that
    ``primal`` varies over and ``cotangent`` does not, needs no sum: the same
    cotangent reaches every device's copy, and it is only retyped as varying.
    """
    have, want = varying_axes(cotangent), varying_axes(primal)
    if extra := tuple(sorted(have - want)):
        cotangent = lax.psum(cotangent, extra)
    if missing := tuple(sorted(want - have)):
        cotangent = lax.pcast(cotangent, missing, to="varying")
    return cotangent
