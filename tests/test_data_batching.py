"""shuffle and epoch_batches: a uniform permutation and one epoch's shuffled minibatch indices,
as pure functions of a key."""

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bpjax.data import batching, epoch_batches, shuffle

# A uniform shuffle fails these chi-square tests with probability P_MIN each; a biased one (a
# pass that ignores its digit, a tie rule applied too often) fails them surely at these sizes.
P_MIN = 1e-4


def stats():
    """scipy.stats, imported when a test needs it (about 1 s: every xdist worker collects this
    module)."""
    from scipy import stats

    return stats


def many_shuffles(n: int, count: int, seed: int = 0) -> np.ndarray:
    """(count, n) permutations from ``count`` independent keys, in one vmapped call."""
    keys = jax.random.split(jax.random.key(seed), count)
    return np.asarray(jax.jit(jax.vmap(lambda k: shuffle(k, n)))(keys))


def permutation_counts(perms: np.ndarray) -> np.ndarray:
    n = perms.shape[1]
    index = {p: i for i, p in enumerate(itertools.permutations(range(n)))}
    return np.bincount([index[tuple(p)] for p in perms.tolist()], minlength=math.factorial(n))


@pytest.mark.parametrize("radix", [True, False], ids=["radix-passes", "key-words"])
def test_all_120_orders_of_5_are_equally_likely(monkeypatch, radix):
    if not radix:  # the path for n > 2**24, forced here on a small n
        monkeypatch.setattr(batching, "_MAX_RADIX_PASSES", 0)
    counts = permutation_counts(many_shuffles(5, 24_000))
    assert counts.min() > 0
    assert stats().chisquare(counts).pvalue > P_MIN


@pytest.mark.parametrize("n", [64, 300])  # 2 radix passes each: the composition is exercised
def test_every_example_lands_in_every_position_equally_often(n):
    perms = many_shuffles(n, 6_000, seed=n)
    # counts[i, j]: how often example i landed in position j; expected 6000 / n each.
    counts = np.zeros((n, n), np.int64)
    np.add.at(counts, (perms, np.arange(n)[None, :]), 1)
    assert stats().chisquare(counts.ravel()).pvalue > P_MIN


@pytest.mark.slow  # many shuffles
def test_pairs_are_ordered_either_way_equally_often_and_neighbours_are_uncorrelated():
    n, count = 70_000, 40  # 4 radix passes of 15-bit digits
    perms = many_shuffles(n, count, seed=1)
    position = np.argsort(perms, axis=1)
    # Each of n - 1 index-adjacent pairs (i, i + 1): i before i + 1 half the time. A tie rule
    # (index order) applied too often would push this up.
    before = (position[:, :-1] < position[:, 1:]).sum()
    assert stats().binomtest(int(before), count * (n - 1)).pvalue > P_MIN
    # Neighbouring positions hold unrelated examples: their index correlation is ~N(0, 1/n).
    r = [np.corrcoef(p[:-1], p[1:])[0, 1] for p in perms]
    assert abs(np.mean(r)) * np.sqrt(count * n) < 4.5


def test_shuffle_is_a_deterministic_permutation_per_key_and_jits():
    jitted = jax.jit(shuffle, static_argnums=1)
    for n in (1, 2, 65_536, 65_537):  # 65,536 is the last n with 16-bit positions
        a = jitted(jax.random.key(n), n)
        assert a.dtype == jnp.int32 and a.shape == (n,)
        np.testing.assert_array_equal(np.sort(a), np.arange(n))
        np.testing.assert_array_equal(a, jitted(jax.random.key(n), n))
    assert not np.array_equal(shuffle(jax.random.key(0), 100), shuffle(jax.random.key(1), 100))


@pytest.mark.parametrize(("n", "error"), [(0, ValueError), (-3, ValueError), (2.0, TypeError)])
def test_shuffle_rejects_bad_sizes(n, error):
    with pytest.raises(error, match="n"):
        shuffle(jax.random.key(0), n)


def test_shape_and_dtype():
    batches = epoch_batches(jax.random.key(0), 10, 3)
    assert batches.shape == (3, 3) and batches.dtype == jnp.int32


def test_covers_every_example_exactly_once_when_batch_size_divides_n():
    batches = epoch_batches(jax.random.key(1), 60, 10)
    assert batches.shape == (6, 10)
    assert np.array_equal(np.sort(np.asarray(batches).ravel()), np.arange(60))


def test_drops_the_remainder_and_repeats_nothing_otherwise():
    flat = np.asarray(epoch_batches(jax.random.key(2), 23, 5)).ravel()
    assert flat.size == 20 and np.unique(flat).size == 20
    assert flat.min() >= 0 and flat.max() < 23


def test_the_dropped_examples_differ_between_epochs():
    keys = jax.random.split(jax.random.key(3), 8)
    dropped = [set(range(10)) - set(np.asarray(epoch_batches(k, 10, 4)).ravel()) for k in keys]
    assert all(len(d) == 2 for d in dropped)
    assert len({frozenset(d) for d in dropped}) > 1
    # Over a few epochs every example is seen: none is left out for good.
    seen = set().union(*(set(range(10)) - d for d in dropped))
    assert seen == set(range(10))


def test_deterministic_for_a_key_and_different_for_another():
    a = epoch_batches(jax.random.key(4), 100, 10)
    assert np.array_equal(a, epoch_batches(jax.random.key(4), 100, 10))
    assert not np.array_equal(a, epoch_batches(jax.random.key(5), 100, 10))


def test_batches_are_the_shuffle_cut_into_rows():
    key = jax.random.key(8)
    np.testing.assert_array_equal(epoch_batches(key, 23, 5).ravel(), shuffle(key, 23)[:20])


def test_jit_with_static_sizes_matches_eager_and_accepts_raw_keys():
    jitted = jax.jit(epoch_batches, static_argnums=(1, 2))
    for key in (jax.random.key(6), jax.random.PRNGKey(6)):
        assert np.array_equal(jitted(key, 50, 7), epoch_batches(key, 50, 7))


def test_a_whole_epoch_runs_inside_lax_scan():
    x = jnp.arange(12.0) * 10

    def step(total, batch):
        return total + x[batch].sum(), batch.shape[0]

    @jax.jit
    def epoch(key):
        return jax.lax.scan(step, jnp.float32(0), epoch_batches(key, 12, 4))

    total, sizes = epoch(jax.random.key(7))
    assert float(total) == float(x.sum())
    assert sizes.tolist() == [4, 4, 4]


@pytest.mark.parametrize(
    ("n", "batch_size", "error", "message"),
    [
        (10, 0, ValueError, r"batch_size=0 must be in \[1, n=10\]"),
        (10, 11, ValueError, r"batch_size=11 must be in \[1, n=10\]"),
        (0, 1, ValueError, "n=0: need at least one example"),
        (10, 2.0, TypeError, "batch_size must be a static Python int"),
        (10.0, 2, TypeError, "n must be a static Python int"),
        (10, True, TypeError, "batch_size must be an int"),
    ],
)
def test_bad_sizes_raise_clear_errors(n, batch_size, error, message):
    with pytest.raises(error, match=message):
        epoch_batches(jax.random.key(0), n, batch_size)


def test_traced_sizes_are_rejected_clearly():
    with pytest.raises(TypeError, match="batch_size must be a static Python int"):
        jax.jit(epoch_batches, static_argnums=1)(jax.random.key(0), 10, 5)


# Each new (n, batch_size) costs a ~0.3 s compile, so few examples; the edge cases
# (batch_size 1, batch_size == n, n == 1) are among the boundary values hypothesis tries early.
@pytest.mark.slow  # a compile per drawn shape
@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 40),
    batch_size=st.integers(1, 40),
    seed=st.integers(0, 2**32 - 1),
)
def test_property_each_index_at_most_once_and_all_when_divisible(n, batch_size, seed):
    batch_size = min(batch_size, n)
    batches = np.asarray(epoch_batches(jax.random.key(seed), n, batch_size))
    steps = n // batch_size
    assert batches.shape == (steps, batch_size)
    flat = batches.ravel()
    assert np.unique(flat).size == flat.size == n - n % batch_size
    assert flat.min() >= 0 and flat.max() < n
    if n % batch_size == 0:
        assert np.array_equal(np.sort(flat), np.arange(n))
