"""Central finite differences of a function of flat leaves, batched into one compiled program per function.

A function here is ``flat(differentiated, carried)``: a tuple of the floating leaves
being differentiated and a tuple of everything else the call needs (see
:mod:`convgrad.testing.layout`).

- :func:`directions_program`: ``v`` = a few random directions, one leaf at a time;
  returns ``<ct, Jv>`` and ``|ct * Jv|`` per direction (the directional check). One
  ``lax.scan`` over the perturbed points, evaluating ``flat`` once per step, so the
  function appears once in the program (compiled about as fast as ``jax.jit(flat)``)
  and only its forward pass runs, never a batching rule: consecutive steps evaluate
  ``x + h v`` and ``x - h v``, and the scan carries the first output to the second step,
  which forms ``(f(x + h v) - f(x - h v)) / 2h``.
- :func:`columns_program`: ``v`` = each element of each leaf in turn (the columns of the
  Jacobian); returns ``<ct, J e_i>`` and ``|ct * J e_i|`` per element, or the whole
  column. Thousands of points, so evaluated in chunks under ``jax.vmap`` (the forward's
  batching rule does run there).

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

from convgrad.testing.arrays import is_float

Flat = Callable[[tuple[Any, ...], tuple[Any, ...]], Any]


@functools.lru_cache(maxsize=512)
def directions_program(flat: Flat) -> Callable[..., tuple[jax.Array, jax.Array]]:
    """``run(differentiated, carried, cotangent, directions, leaf_of, row_of, steps) -> (dots, norms)``, jit-compiled.

    ``directions[l]`` holds directions for leaf ``l`` (shape ``(K_l, *leaf)``),
    ``steps[l]`` its step ``h``. Entry ``q`` of the results moves leaf
    ``leaf_of[q]`` alone along ``v = directions[leaf_of[q]][row_of[q]]``:
    ``<ct, (f(x + h v) - f(x - h v)) / 2h>`` and the 2-norm of
    ``ct * (f(x + h v) - f(x - h v)) / 2h``.
    """

    def run(differentiated, carried, cotangent, directions, leaf_of, row_of, steps):
        def point(p):
            pair = p // 2
            leaf, row = leaf_of[pair], row_of[pair]
            sign = (1 - 2 * (p % 2)).astype(steps.dtype)
            moved = tuple(
                jnp.where(leaf == other, base + sign * steps[other] * _row(directions[other], row), base)
                for other, base in enumerate(differentiated)
            )
            return leaf, moved

        points = 2 * leaf_of.shape[0]
        return _central_differences(flat, differentiated, carried, cotangent, point, points, steps)

    return jax.jit(run)


@functools.lru_cache(maxsize=512)
def columns_program(flat: Flat, whole_columns: bool) -> Callable[..., Any]:
    """``run(differentiated, carried, cotangent, leaf_of, element_of, steps)``, jit-compiled.

    Column ``q`` moves element ``element_of[q]`` (of the flattened leaf
    ``leaf_of[q]``) by ``steps[leaf]``. Returns ``(dots, norms)`` per column as
    :func:`directions_program` does, or, when ``whole_columns``, the columns
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

    return jax.jit(run)


# mode="jacobian" evaluates its columns in chunks of about this many values (inputs and outputs, both signs)
CHUNK_ELEMENTS = 2**21


def _row(directions, row):
    """``directions[row]``, the index clamped (a leaf not being moved may have fewer rows)."""
    return directions[jnp.minimum(row, directions.shape[0] - 1)]


def _emit(ct, difference, dtype, whole_columns):
    """The column itself, or ``(<ct, column>, |ct * column|)``."""
    if whole_columns:
        return jnp.concatenate([d.ravel() for d in difference]) if difference else jnp.zeros(0, dtype)
    dot = sum((jnp.vdot(c.astype(d.dtype), d) for c, d in zip(ct, difference)), jnp.zeros((), dtype))
    squares = sum((jnp.sum((c.astype(d.dtype) * d) ** 2) for c, d in zip(ct, difference)), jnp.zeros((), dtype))
    return dot.astype(dtype), jnp.sqrt(squares).astype(dtype)


def _central_differences(flat, differentiated, carried, cotangent, point, points, steps):
    """The scan: evaluate ``flat`` at each point; at odd steps form the central difference with the carried output."""
    shapes = jax.tree.leaves(jax.eval_shape(flat, differentiated, carried))
    floating = [i for i, s in enumerate(shapes) if is_float(s)]
    ct = [jax.tree.leaves(cotangent)[i] for i in floating]

    def outputs(x):
        leaves = jax.tree.leaves(flat(x, carried))
        return [leaves[i] for i in floating]

    def body(previous, p):
        leaf, x = point(p)
        current = outputs(x)
        h = steps[leaf]
        difference = [(a - b) / (2 * h).astype(a.dtype) for a, b in zip(previous, current)]
        emitted = _emit(ct, difference, steps.dtype, whole_columns=False)
        return current, emitted

    initial = [jnp.zeros(shapes[i].shape, shapes[i].dtype) for i in floating]
    _, emitted = lax.scan(body, initial, jnp.arange(points, dtype=jnp.int32))
    return jax.tree.map(lambda e: e[1::2], emitted)


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
