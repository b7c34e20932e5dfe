"""Central finite differences of a function of flat leaves: a few directions, or every column of the Jacobian.

A function here is ``flat(differentiated, carried)``: a tuple of the floating leaves
being differentiated and a tuple of everything else the call needs (see
:mod:`convgrad.testing.layout`).

- :func:`directional_differences`: a few random directions of one leaf; returns
  ``<ct, Jv>`` and ``|ct * Jv|`` per direction (the directional check). Each point is
  one call of :func:`forward_program`, the jit-compiled forward pass alone: it compiles
  as fast as ``jax.jit(flat)`` (a program that scans over the points compiles several
  times slower), is shared by every direction and leaf, and runs no batching rule.
- :func:`columns_program`: every element of every leaf in turn (the columns of the
  Jacobian); returns ``<ct, J e_i>`` and ``|ct * J e_i|`` per element, or the whole
  column. Thousands of points, so one program evaluates them in chunks under
  ``jax.vmap`` (the forward's batching rule does run there).

Call them under ``jax.enable_x64(True)`` on float64 leaves: the differences are taken in
the dtype of the leaves they are given.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from convgrad.testing.arrays import instrument_jit, is_float, on_device, replace_at

Flat = Callable[[tuple[Any, ...], tuple[Any, ...]], Any]


@functools.lru_cache(maxsize=512)
def forward_program(flat: Flat) -> Callable[[tuple, tuple], list[jax.Array]]:
    """``run(differentiated, carried) -> [floating outputs]``: the forward pass, jit-compiled."""

    def run(differentiated, carried):
        return [leaf for leaf in jax.tree.leaves(flat(differentiated, carried)) if is_float(leaf)]

    return instrument_jit(run)


def directional_differences(
    flat: Flat,
    differentiated: tuple[Any, ...],
    carried: tuple[Any, ...],
    cotangent: Any,
    leaf: int,
    directions: np.ndarray,
    step: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leaf ``leaf`` moved alone along each ``v`` of ``directions`` (shape ``(K, *leaf)``) by ``+-step``.

    Returns ``<ct, (f(x + h v) - f(x - h v)) / 2h>`` and the 2-norm of
    ``ct * (f(x + h v) - f(x - h v)) / 2h`` per direction, in float64, and the
    directions actually taken, ``((x + h v) - (x - h v)) / 2h`` after rounding to
    the leaf's dtype (``v`` itself in float64, to rounding).
    """
    evaluate = forward_program(flat)
    base = np.asarray(differentiated[leaf])
    dtype = base.dtype
    out_shape = jax.tree.leaves(jax.eval_shape(flat, differentiated, carried))
    ct = [np.asarray(c, np.float64) for c, s in zip(jax.tree.leaves(cotangent), out_shape) if is_float(s)]
    dots, norms, taken = [], [], []
    for v in directions:
        plus, minus = (base + step * v).astype(dtype), (base - step * v).astype(dtype)
        f_plus = evaluate(replace_at(differentiated, (leaf,), (on_device(plus),)), carried)
        f_minus = evaluate(replace_at(differentiated, (leaf,), (on_device(minus),)), carried)
        difference = [
            (np.asarray(a, np.float64) - np.asarray(b, np.float64)) / (2 * step) for a, b in zip(f_plus, f_minus)
        ]
        dots.append(sum(float(np.vdot(c, d)) for c, d in zip(ct, difference)))
        norms.append(float(np.sqrt(sum(np.sum((c * d) ** 2) for c, d in zip(ct, difference)))))
        taken.append((plus.astype(np.float64) - minus.astype(np.float64)) / (2 * step))
    return np.asarray(dots), np.asarray(norms), np.asarray(taken)


@functools.lru_cache(maxsize=512)
def columns_program(flat: Flat, whole_columns: bool) -> Callable[..., Any]:
    """``run(differentiated, carried, cotangent, leaf_of, element_of, steps)``, jit-compiled.

    Column ``q`` moves element ``element_of[q]`` (of the flattened leaf
    ``leaf_of[q]``) by ``steps[leaf]``. Returns ``(dots, norms)`` per column as
    :func:`directional_differences` does, or, when ``whole_columns``, the columns
    themselves: ``(f(x + h e_i) - f(x - h e_i)) / 2h`` over every floating output,
    flattened and concatenated, one row per column. Thousands of columns: they
    are evaluated in chunks under ``jax.vmap`` (``lax.map``'s ``batch_size``), about
    :data:`CHUNK_ELEMENTS` input and output values per chunk.
    """

    def run(differentiated, carried, cotangent, leaf_of, element_of, steps):
        shapes = jax.tree.leaves(jax.eval_shape(flat, differentiated, carried))
        floating = [i for i, s in enumerate(shapes) if is_float(s)]
        ct = [jax.tree.leaves(cotangent)[i] for i in floating]
        values = sum(a.size for a in differentiated) + sum(shapes[i].size for i in floating)

        def column(q):
            leaf, element = leaf_of[q], element_of[q]

            def outputs(sign):
                moved = []
                for other, base in enumerate(differentiated):
                    if base.size == 0:
                        moved.append(base)
                        continue
                    index = jnp.minimum(element, base.size - 1)
                    shifted = base.ravel().at[index].add(sign * steps[other]).reshape(base.shape)
                    moved.append(jnp.where(leaf == other, shifted, base))
                leaves = jax.tree.leaves(flat(tuple(moved), carried))
                return [leaves[i] for i in floating]

            plus_minus = jax.vmap(outputs)(jnp.asarray([1.0, -1.0], steps.dtype))
            h = steps[leaf]
            difference = [(pair[0] - pair[1]) / (2 * h).astype(pair.dtype) for pair in plus_minus]
            return _emit(ct, difference, steps.dtype, whole_columns)

        batch = max(1, min(leaf_of.shape[0], CHUNK_ELEMENTS // max(1, 2 * values)))
        return lax.map(column, jnp.arange(leaf_of.shape[0], dtype=jnp.int32), batch_size=batch)

    return instrument_jit(run)


# mode="jacobian" evaluates its columns in chunks of about this many values (inputs and outputs, both signs)
CHUNK_ELEMENTS = 2**21


def _emit(ct, difference, dtype, whole_columns):
    """The column itself, or ``(<ct, column>, |ct * column|)``."""
    if whole_columns:
        return jnp.concatenate([d.ravel() for d in difference]) if difference else jnp.zeros(0, dtype)
    dot = sum((jnp.vdot(c.astype(d.dtype), d) for c, d in zip(ct, difference)), jnp.zeros((), dtype))
    squares = sum((jnp.sum((c.astype(d.dtype) * d) ** 2) for c, d in zip(ct, difference)), jnp.zeros((), dtype))
    return dot.astype(dtype), jnp.sqrt(squares).astype(dtype)


def step_sizes(leaves: tuple[np.ndarray, ...], linear: tuple[bool, ...]) -> np.ndarray:
    """``h`` per leaf: 1 where the function is affine in it (exact), else ``eps^(1/3) * max(1, max|x|)``.

    ``eps`` is the leaf's own dtype's (the dtype the differences are taken in).
    ``eps^(1/3)`` balances the truncation error ``h^2 |f'''|`` against the
    rounding error ``eps |f| / h`` of central differences.
    """
    steps = []
    for leaf, affine in zip(leaves, linear):
        if affine:
            steps.append(1.0)
            continue
        eps = float(jnp.finfo(leaf.dtype).eps)
        steps.append(eps ** (1 / 3) * max(1.0, float(np.max(np.abs(np.asarray(leaf, np.float64)), initial=0.0))))
    return np.asarray(steps)
