"""How far a mini-batch's average gradient strays from the average over every example.

Each example's gradient is its (negated) wish list; SGD steps along the mean of B of them. Over
N examples they have a mean ``g`` and a spread: ``gradient_moments`` gives both (per-example
gradients by ``vmap``, a chunk at a time), ``expected_minibatch_error`` the error
``E ||g_B - g||^2`` they predict for a batch of B, and ``minibatch_agreement`` the error measured
on batches drawn as SGD draws them (``minibatch_draws``).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bpjax.checks import check_batch
from bpjax.chunks import fold_chunks
from bpjax.data.batching import epoch_batches
from bpjax.grads import mean_grad, per_example_grads
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec


def tree_dot(a, b) -> jax.Array:
    """Sum over every leaf of the elementwise product: the inner product of two pytrees."""
    return sum(jnp.vdot(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def tree_norm(a) -> jax.Array:
    """Euclidean norm of a pytree, all its leaves taken as one vector."""
    return jnp.sqrt(tree_dot(a, a))


class GradientMoments(NamedTuple):
    """Mean and spread of the N per-example gradients (wish lists, negated) of a data set."""

    mean: Params  # the mean gradient, the params' structure
    variance: Params  # per-parameter variance over the examples, 1/N normalised (population)

    def total_variance(self) -> jax.Array:
        """``sigma^2 = (1/N) sum_i ||g_i - g_mean||^2``, summed over every parameter."""
        return sum(jnp.sum(v) for v in jax.tree.leaves(self.variance))


def gradient_moments(
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    chunk_size: int = 100,
    method: str = "backprop",
    *,
    spec: Spec = DEFAULT_SPEC,
) -> GradientMoments:
    """Mean and per-parameter variance of the per-example gradients of ``xs`` (N, n_in), ``ys``.

    The per-example gradients come from ``per_example_grads`` (vmap) a chunk at a time inside a
    ``lax.scan``, so at most ``chunk_size`` per-example copies of the parameters exist at once (all
    60,000 of a 784-16-16-10 network would take 3 GB in float32). Chunks are merged with Chan et
    al.'s pairwise update of (mean, sum of squared deviations), which stays accurate in float32
    where ``E[g^2] - E[g]^2`` would cancel. Jit it with ``chunk_size``, ``method`` and ``spec``
    static.
    """
    check_batch(params, xs, ys)
    n = xs.shape[0]

    def chunk_stats(start, size):
        xc = jax.lax.dynamic_slice_in_dim(xs, start, size)
        yc = jax.lax.dynamic_slice_in_dim(ys, start, size)
        g = per_example_grads(params, xc, yc, method=method, spec=spec)
        mean = jax.tree.map(lambda t: jnp.mean(t, axis=0), g)
        m2 = jax.tree.map(lambda t, m: jnp.sum((t - m[None]) ** 2, axis=0), g, mean)
        return mean, m2

    def merge(state, size, stats):
        count, mean, m2 = state
        mean_b, m2_b = stats
        total = count + size
        diff = jax.tree.map(jnp.subtract, mean_b, mean)
        mean = jax.tree.map(lambda m, d: m + d * (size / total), mean, diff)
        m2 = jax.tree.map(lambda a, b, d: a + b + d**2 * (count * size / total), m2, m2_b, diff)
        return total, mean, m2

    zeros = jax.tree.map(jnp.zeros_like, params)
    state = fold_chunks(chunk_stats, merge, (jnp.zeros((), xs.dtype), zeros, zeros), n, chunk_size)
    _, mean, m2 = state
    return GradientMoments(mean=mean, variance=jax.tree.map(lambda t: t / n, m2))


def expected_minibatch_error(total_variance, n: int, batch_size):
    """``E ||g_B - g_mean||^2`` for the mean ``g_B`` of B examples drawn without replacement.

    Equal to ``(sigma^2 / B) (N - B) / (N - 1)`` with ``sigma^2`` the total (1/N) variance: the
    1/B of independent draws, times the finite-population factor that makes it 0 at B = N.
    Exact as the average over all size-B subsets. Works elementwise on arrays of batch sizes.
    """
    batch_size = jnp.asarray(batch_size, dtype=jnp.result_type(float))
    return total_variance / batch_size * (n - batch_size) / max(n - 1, 1)


def minibatch_draws(key: jax.Array, n: int, batch_size: int, draws: int) -> jax.Array:
    """``draws`` mini-batches of ``batch_size`` distinct indices into n examples: (draws, B) int32.

    The rows are consecutive batches of SGD epochs (``bpjax.data.epoch_batches``): disjoint
    within an epoch, and as many epochs, each freshly shuffled, as ``draws`` needs.
    """
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size={batch_size} must be in [1, N={n}]")
    per_epoch = n // batch_size
    epochs = -(-draws // per_epoch)
    keys = jax.random.split(key, epochs)
    rows = jnp.concatenate([epoch_batches(k, n, batch_size) for k in keys])
    return rows[:draws]


def minibatch_agreement(
    params: Params,
    xs: jax.Array,
    ys: jax.Array,
    full_grad: Params,
    batches: jax.Array,
    *,
    spec: Spec = DEFAULT_SPEC,
) -> dict[str, jax.Array]:
    """How close mini-batch gradients come to ``full_grad``, the mean gradient over all of xs.

    ``xs`` (N, n_in), ``ys`` (N, n_out); ``batches`` (R, B) int, one mini-batch's example indices
    a row (``minibatch_draws``). Each batch's gradient is the hand backward pass's mean
    (``bpjax.mean_grad``). Returns ``{"cosine", "relative_error", "squared_error"}``, each (R,):
    the cosine similarity to ``full_grad``, ``||g_B - g|| / ||g||`` and ``||g_B - g||^2``.
    Batches run one after another (``lax.map``), so memory is one batch's.
    """
    check_batch(params, xs, ys)
    full_norm = tree_norm(full_grad)

    def one_batch(idx):
        g = mean_grad(params, xs[idx], ys[idx], method="backprop", spec=spec)
        err = jax.tree.map(jnp.subtract, g, full_grad)
        sq = tree_dot(err, err)
        return {
            "cosine": tree_dot(g, full_grad) / (tree_norm(g) * full_norm),
            "relative_error": jnp.sqrt(sq) / full_norm,
            "squared_error": sq,
        }

    return jax.lax.map(one_batch, batches)
