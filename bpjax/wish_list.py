"""One example's wish list, made inspectable, and how well a mini-batch's average approximates all.

For one example with target ``y`` the cost C wishes each output activation to move toward its
target: its desired nudge is ``-dC/da^L`` (``2 (y - a^L)`` for the default quadratic cost), up for
the right digit, down for the rest. A neuron j of layer l with desire ``d_j = -dC/da_j`` wants its
weighted input to grow by ``d_j f'(z_j)`` (= ``-delta_j``; f is the layer's activation from the
``spec``, for a softmax output the vjp ``a * (d - a . d)``), and ``z_j = sum_k w_jk a_k + b_j``
grows through three routes:

    route 1, its bias          nudge  -dC/db_j  = d_j f'(z_j)                            BP3
    route 2, its weights       nudge  -dC/dw_jk = d_j f'(z_j) a_k   (Hebbian: in         BP4
                               proportion to the activation each weight comes from)
    route 3, the previous      neuron j asks activation k for  d_j f'(z_j) w_jk; summed
             activations       over the layer's neurons j this is -dC/da_k, the previous   BP2
                               layer's desire, which it passes back in turn.

Everything is computed from the forward pass, the hand backward pass (``bpjax.backprop``) and
the cost's hand-written ``dC/da^L`` (``bpjax.cost``); the tests check it against ``jax.grad``.
Averaged over examples the parameter nudges are the negative gradient (``mean_wish_list``).
A mini-batch's average approximates the average over all N examples; ``gradient_moments`` gives
the spread of the per-example gradients, ``expected_minibatch_error`` the error it predicts,
``minibatch_agreement`` the error measured.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from bpjax.backprop import backprop_trace, mean_layer_grads
from bpjax.checks import check_batch, check_example
from bpjax.chunks import fold_chunks
from bpjax.data.batching import epoch_batches
from bpjax.grads import mean_grad, per_example_grads
from bpjax.params import Params
from bpjax.spec import DEFAULT_SPEC, Spec


class LayerWishes(NamedTuple):
    """One layer's wishes (layer maps n_in -> n_out), for one example or averaged over several."""

    b: jax.Array  # (n_out,) route 1: bias nudges, -dC/db; each neuron's desire through f'
    w: jax.Array  # (n_out, n_in) route 2: weight nudges, -dC/dw = b a_prev^T
    a_prev_by_neuron: jax.Array  # (n_out, n_in) route 3: row j is what neuron j asks of a_prev
    a_prev: jax.Array  # (n_in,) route 3 summed over the rows: -dC/da_prev, the previous desire


class WishList(NamedTuple):
    """All of one example's wishes; a pytree, so vmap, average or ``jax.tree.map`` it."""

    output: jax.Array  # (n_out,) desired nudges of the output activations, -dC/da^L
    layers: tuple[LayerWishes, ...]  # one per layer, first hidden layer first


def _layer_wishes(w: jax.Array, b_nudge: jax.Array, w_nudge: jax.Array) -> LayerWishes:
    # Route 3 is linear in b_nudge with w fixed, so the same formula serves one example and a mean.
    return LayerWishes(
        b=b_nudge,
        w=w_nudge,
        a_prev_by_neuron=b_nudge[:, None] * w,
        a_prev=w.T @ b_nudge,
    )


def _output_grad(spec: Spec):
    grad = spec.cost_function.output_grad
    if grad is None:
        raise ValueError(
            f"cost {spec.cost!r} has no hand-written dC/da^L, which the wish list needs; "
            "register it with output_grad="
        )
    return grad


def wish_list(params: Params, x: jax.Array, y: jax.Array, *, spec: Spec = DEFAULT_SPEC) -> WishList:
    """The wish list of one example ``x`` (n_in,) with one-hot target ``y`` (n_out,).

    Its parameter nudges are exactly ``-backprop(params, x, y, spec=spec)``; see
    ``parameter_nudges``.
    """
    check_example(params, x, y)
    output_grad = _output_grad(spec)
    zs, activations, deltas = backprop_trace(params, x, y, spec=spec)
    layers = tuple(
        _layer_wishes(layer["w"], -delta, -jnp.outer(delta, a_prev))
        for layer, delta, a_prev in zip(params, deltas, activations[:-1], strict=True)
    )
    return WishList(output=-output_grad(zs[-1], activations[-1], y), layers=layers)


def mean_wish_list(
    params: Params, xs: jax.Array, ys: jax.Array, *, spec: Spec = DEFAULT_SPEC
) -> WishList:
    """The average of ``wish_list`` over a batch ``xs`` (B, n_in), ``ys`` (B, n_out).

    Never materialises B per-example (n_out, n_in) matrices: the mean weight nudge is one matrix
    product ``-delta^T a / B`` a layer and route 3 is linear in the bias nudges, so the per-example
    arrays held are vectors no wider than the input ``xs`` itself.
    """
    check_batch(params, xs, ys)
    output_grad = _output_grad(spec)
    trace = lambda p, x, y: backprop_trace(p, x, y, spec=spec)  # noqa: E731
    zs, activations, deltas = jax.vmap(trace, in_axes=(None, 0, 0))(params, xs, ys)
    layers = tuple(
        _layer_wishes(layer["w"], -g["b"], -g["w"])
        for layer, g in zip(params, mean_layer_grads(deltas, activations), strict=True)
    )
    output = -jnp.mean(jax.vmap(output_grad)(zs[-1], activations[-1], ys), axis=0)
    return WishList(output=output, layers=layers)


def parameter_nudges(wishes: WishList) -> Params:
    """Routes 1 and 2 as a params pytree ``[{"w", "b"}, ...]``: the negative gradient."""
    return [{"w": layer.w, "b": layer.b} for layer in wishes.layers]


def activation_desires(wishes: WishList) -> list[jax.Array]:
    """``-dC/da^l`` (n_l,) of every layer's neurons, first hidden layer first, output last.

    Layer l's desire is what layer l + 1 asks of it (its summed route 3); the output's is
    ``wishes.output``. Through f' it becomes layer l's bias nudge.
    """
    return [layer.a_prev for layer in wishes.layers[1:]] + [wishes.output]


# --- The average over all examples, and how far a mini-batch's average strays from it. ----------


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
