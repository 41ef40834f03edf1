"""A reduction over the rows of a data set, a chunk at a time, inside one ``lax.scan``.

Full-batch gradients and the per-example gradient variance both need every example, but not
every example's intermediates at once: folding chunks bounds memory by one chunk however large
N is, and a scan compiles the chunk's program once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import jax
import jax.numpy as jnp

State = TypeVar("State")


def fold_chunks(
    chunk_stats: Callable[[jax.Array, int], Any],
    merge: Callable[[State, int, Any], State],
    init: State,
    n: int,
    chunk_size: int,
) -> State:
    """Fold ``merge(state, size, chunk_stats(start, size))`` over rows ``[0, n)`` in chunks.

    ``chunk_stats(start, size)`` computes one chunk's statistics from rows
    ``[start, start + size)`` (``start`` a traced int, ``size`` a Python int: use
    ``lax.dynamic_slice_in_dim``). The ``n // chunk_size`` full chunks run in one ``lax.scan``;
    a last, smaller chunk takes the remainder. ``chunk_size`` is clipped to ``[1, n]``.
    """
    chunk_size = max(1, min(int(chunk_size), n))
    n_full = n // chunk_size

    def body(state, i):
        return merge(state, chunk_size, chunk_stats(i * chunk_size, chunk_size)), None

    state, _ = jax.lax.scan(body, init, jnp.arange(n_full))
    rest = n - n_full * chunk_size
    if rest:
        state = merge(state, rest, chunk_stats(n_full * chunk_size, rest))
    return state
