"""bpjax.gradient_noise: the spread of per-example gradients and a mini-batch's error, against
direct computations in float64."""

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import gradient_noise as gn
from tests.helpers import max_rel_err, random_problem, tiered

# The reference: per-example jax.grad, never the library's own gradients.
PER_EXAMPLE_AUTODIFF = jax.jit(jax.vmap(jax.grad(bpjax.example_cost), in_axes=(None, 0, 0)))
GRAD_OF_COST = jax.jit(jax.grad(bpjax.cost))
MOMENTS = jax.jit(gn.gradient_moments, static_argnames=("chunk_size", "method"))
AGREEMENT = jax.jit(gn.minibatch_agreement)


@pytest.mark.parametrize("chunk_size", tiered([5, 100], [5]))
def test_gradient_moments_in_chunks_equal_the_direct_mean_and_variance(x64, chunk_size):
    params, xs, ys = random_problem(3, (6, 5, 3), batch=23, dtype=jnp.float64)
    per_example = PER_EXAMPLE_AUTODIFF(params, xs, ys)
    moments = MOMENTS(params, xs, ys, chunk_size=chunk_size)
    chex.assert_trees_all_close(
        moments.mean, jax.tree.map(lambda g: g.mean(0), per_example), rtol=1e-10, atol=1e-14
    )
    chex.assert_trees_all_close(
        moments.variance, jax.tree.map(lambda g: g.var(0), per_example), rtol=1e-10, atol=1e-14
    )
    centred = jax.tree.map(lambda g, m: g - m[None], per_example, moments.mean)
    total = jnp.mean(
        sum(jnp.sum(c**2, axis=tuple(range(1, c.ndim))) for c in jax.tree.leaves(centred))
    )
    np.testing.assert_allclose(moments.total_variance(), total, rtol=1e-10)


@pytest.mark.slow  # two precisions, a naive reference
def test_gradient_moments_stay_accurate_in_float32_when_examples_nearly_agree():
    """Near-copies of one example: the gradients' mean is ~1e3 times their spread, so
    E[g^2] - E[g]^2 cancels in float32; the chunked, centred merge must not."""
    params, xs, ys = random_problem(4, (6, 4, 3), batch=1, init="scaled")
    noise = jax.random.normal(jax.random.key(1), (300, 6))
    xs32, ys32 = xs + 1e-3 * noise, jnp.repeat(ys, 300, axis=0)
    moments = MOMENTS(params, xs32, ys32, chunk_size=7)
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda t: t.astype(jnp.float64), params)
        g64 = PER_EXAMPLE_AUTODIFF(p64, xs32.astype(jnp.float64), ys32.astype(jnp.float64))
        exact = jax.tree.map(lambda g: np.asarray(g.var(0)), g64)
        naive = jax.tree.map(
            lambda g: np.asarray(
                jnp.mean(g.astype(jnp.float32) ** 2, 0) - jnp.mean(g.astype(jnp.float32), 0) ** 2
            ),
            g64,
        )
    assert max_rel_err(moments.variance, exact) < 1e-2
    assert max_rel_err(naive, exact) > 0.5  # the failure guarded against is real


def flat_per_example(params, xs, ys):
    """Per-example gradients as rows of a float64 numpy matrix (B, n_params)."""
    grads = PER_EXAMPLE_AUTODIFF(params, xs, ys)
    return np.concatenate(
        [np.asarray(g, np.float64).reshape(xs.shape[0], -1) for g in jax.tree.leaves(grads)], axis=1
    )


def test_the_expected_minibatch_error_is_exact_over_all_subsets(x64):
    n = 6
    params, xs, ys = random_problem(5, (4, 3, 2), batch=n, dtype=jnp.float64)
    flat = flat_per_example(params, xs, ys)
    mean = flat.mean(axis=0)
    total_variance = MOMENTS(params, xs, ys, chunk_size=4).total_variance()
    for b in range(1, n + 1):
        errors = [
            np.sum((flat[list(s)].mean(axis=0) - mean) ** 2)
            for s in itertools.combinations(range(n), b)
        ]
        expected = gn.expected_minibatch_error(total_variance, n, b)
        np.testing.assert_allclose(np.mean(errors), expected, rtol=1e-10, atol=1e-20)
    assert float(gn.expected_minibatch_error(total_variance, n, n)) == 0.0


@pytest.mark.slow  # a direct loop over mini-batches
def test_minibatch_agreement_against_direct_computation(x64):
    n = 12
    params, xs, ys = random_problem(6, (5, 4, 3), batch=n, dtype=jnp.float64)
    full = jax.grad(bpjax.cost)(params, xs, ys)
    singles = AGREEMENT(params, xs, ys, full, jnp.arange(n)[:, None])
    flat = flat_per_example(params, xs, ys)
    flat_full = flat.mean(axis=0)
    np.testing.assert_allclose(
        singles["squared_error"], np.sum((flat - flat_full) ** 2, axis=1), rtol=1e-10
    )
    cos = flat @ flat_full / (np.linalg.norm(flat, axis=1) * np.linalg.norm(flat_full))
    np.testing.assert_allclose(singles["cosine"], cos, rtol=1e-10)
    everything = AGREEMENT(params, xs, ys, full, jnp.arange(n)[None, ::-1])
    assert float(everything["relative_error"][0]) < 1e-12
    np.testing.assert_allclose(everything["cosine"], 1.0, rtol=1e-12)


@pytest.mark.parametrize(("n", "batch_size", "draws"), [(10, 3, 3), (10, 3, 7), (10, 10, 4)])
def test_minibatch_draws_are_distinct_examples_disjoint_within_an_epoch(n, batch_size, draws):
    rows = np.asarray(gn.minibatch_draws(jax.random.key(0), n, batch_size, draws))
    assert rows.shape == (draws, batch_size)
    assert rows.min() >= 0 and rows.max() < n
    assert all(len(set(r)) == batch_size for r in rows)
    per_epoch = n // batch_size
    for start in range(0, draws, per_epoch):
        epoch = rows[start : start + per_epoch].ravel()
        assert len(set(epoch)) == len(epoch)
    with pytest.raises(ValueError, match="batch_size"):
        gn.minibatch_draws(jax.random.key(0), n, n + 1, 1)
