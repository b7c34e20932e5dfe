"""A batch split into equal chunks and run in a loop: shared by Winograd's convolutions and max pooling.

Two reasons to loop over a batch that XLA could process at once:

* locality: Winograd's transformed tiles are 4x an image; a chunk whose tiles stay in
  cache runs faster than the whole batch streamed through memory;
* materialization: a loop's results are written to memory once. XLA fuses a cheap
  elementwise producer into each of its consumers and recomputes it there; the max-pool
  backward reads each window's saved tap several times, and without the loop XLA
  recomputes the forward's running maximum for every read (measured in
  ``docs/performance.md``). XLA removes a loop of one iteration, so that use asks for at
  least two chunks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax


def map_batch_chunks(f: Callable[[Any], Any], operands: Any, most: int | None = None, min_chunks: int = 1) -> Any:
    """``f`` over ``k`` equal batch chunks of ``operands`` in a loop; each result stacked on a new axis 1.

    A chunk holds at most ``most`` images (any number when ``None``, at least one) and
    at most ``ceil(N / min_chunks)``. It is the largest divisor of the batch within that
    limit if that is at least half of it; otherwise ``ceil(N / ceil(N / limit))``
    images, with the batch zero-padded to whole chunks (and to ``min_chunks`` chunks).
    The caller crops the padded examples' results (:func:`in_batch_order`). An empty
    batch is one empty chunk, run without a loop.

    Chunk ``j`` holds examples ``j, j + k, j + 2k, ...``: the batch is reshaped to
    ``(chunk, k, ...)`` and the loop indexes axis 1, so that a batch sharded over devices
    along axis 0 stays sharded (each device loops over its own examples) instead of being
    gathered. A result ``r`` of chunk ``j`` lands at ``[:, j]`` of the
    ``(r.shape[0], k, *r.shape[1:])`` output, so batch-shaped results reshape back to the
    batch order.
    """
    batch = jax.tree.leaves(operands)[0].shape[0]
    if batch == 0:  # an empty batch is one empty chunk: nothing to loop over
        return jax.tree.map(lambda r: r[:, None], f(operands))
    limit = max(1, min(batch if most is None else most, -(-batch // min_chunks)))
    chunk = max(d for d in range(1, min(batch, limit) + 1) if batch % d == 0)
    if 2 * chunk < min(batch, limit):
        chunk = -(-batch // -(-batch // limit))
    chunks = max(-(-batch // chunk), min_chunks)
    if chunks == 1:
        return jax.tree.map(lambda r: r[:, None], f(operands))
    padded = jax.tree.map(lambda a: jnp.pad(a, [(0, chunks * chunk - batch)] + [(0, 0)] * (a.ndim - 1)), operands)
    strided = jax.tree.map(lambda a: a.reshape(chunk, chunks, *a.shape[1:]), padded)

    def one_chunk(j, out):
        result = f(jax.tree.map(lambda a: lax.dynamic_index_in_dim(a, j, axis=1, keepdims=False), strided))
        return jax.tree.map(lambda o, r: lax.dynamic_update_index_in_dim(o, r, j, axis=1), out, result)

    shapes = jax.eval_shape(f, jax.tree.map(lambda a: a[:, 0], strided))
    out = jax.tree.map(lambda r: jnp.zeros((r.shape[0], chunks, *r.shape[1:]), r.dtype), shapes)
    return lax.fori_loop(0, chunks, one_chunk, out)


def in_batch_order(stacked: jax.Array, batch: int) -> jax.Array:
    """A batch-shaped result of :func:`map_batch_chunks`, ``(chunk, k, ...)``, back to ``(N, ...)``, padding cropped."""
    return stacked.reshape(-1, *stacked.shape[2:])[:batch]
