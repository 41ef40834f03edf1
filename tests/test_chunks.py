"""bpjax.chunks.fold_chunks: a chunked reduction equals the unchunked one, remainder included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bpjax.chunks import fold_chunks


def chunked_sum_and_rows(x, chunk_size):
    """(sum of x's rows, rows seen, number of merges) folded over chunks of ``chunk_size``."""

    def stats(start, size):
        return jnp.sum(jax.lax.dynamic_slice_in_dim(x, start, size), axis=0)

    def merge(state, size, chunk_sum):
        total, rows, merges = state
        return total + chunk_sum, rows + size, merges + 1

    init = (jnp.zeros(x.shape[1], x.dtype), 0, 0)
    return fold_chunks(stats, merge, init, x.shape[0], chunk_size)


@pytest.mark.parametrize("chunk_size", [1, 4, 7, 30, 31, 1000])
def test_every_row_is_folded_once_whatever_the_chunk_size(chunk_size):
    x = jnp.asarray(np.arange(30 * 3, dtype=np.float32).reshape(30, 3))
    total, rows, merges = jax.jit(chunked_sum_and_rows, static_argnums=1)(x, chunk_size)
    np.testing.assert_array_equal(total, np.asarray(x).sum(axis=0))
    assert int(rows) == 30
    size = min(chunk_size, 30)
    assert int(merges) == -(-30 // size)  # the full chunks in the scan, plus one for the rest


def test_a_chunk_size_below_one_is_one():
    x = jnp.ones((5, 2))
    _, rows, merges = chunked_sum_and_rows(x, 0)
    assert (int(rows), int(merges)) == (5, 5)
