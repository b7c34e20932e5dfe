"""map_batch_chunks: every example is processed once, in any chunking, and an empty batch gives empty results."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from convgrad.ops.batch_chunks import in_batch_order, map_batch_chunks


@pytest.mark.parametrize(("batch", "most", "min_chunks"), [(7, 3, 1), (6, 2, 1), (1, None, 2), (5, None, 2), (8, 8, 1)])
def test_batch_shaped_results_come_back_in_order(batch, most, min_chunks):
    x = jnp.arange(batch * 3.0).reshape(batch, 3)
    stacked = map_batch_chunks(lambda chunk: 2 * chunk, x, most, min_chunks)
    np.testing.assert_array_equal(in_batch_order(stacked, batch), 2 * x)


def test_sums_over_chunks_equal_the_whole_batch():
    """A reduction per chunk (as Winograd's weight gradient) summed over the chunk axis counts each example once."""
    x = jnp.arange(21.0).reshape(7, 3)
    per_chunk = map_batch_chunks(lambda chunk: chunk.sum(axis=0, keepdims=True), x, 2)
    np.testing.assert_array_equal(per_chunk.sum(axis=1)[0], x.sum(axis=0))


@pytest.mark.parametrize("min_chunks", [1, 2])
def test_an_empty_batch_gives_empty_results(min_chunks):
    x = jnp.zeros((0, 4, 5))
    stacked = map_batch_chunks(lambda chunk: (chunk + 1, chunk.sum(axis=0, keepdims=True)), x, 3, min_chunks)
    assert in_batch_order(stacked[0], 0).shape == (0, 4, 5)
    np.testing.assert_array_equal(stacked[1].sum(axis=1), np.zeros((1, 4, 5)))
