"""The wish list: its identities with backprop and jax.grad, its averages, and the experiment."""

import itertools
import uuid

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import wish_list as wl
from bpjax.spec import Spec
from tests.helpers import max_rel_err, random_problem

ARCHITECTURES = [(3, 1), (7, 6, 5, 3)]

WISH_LIST = jax.jit(wl.wish_list)
MEAN_WISH_LIST = jax.jit(wl.mean_wish_list)
GRAD = jax.jit(jax.grad(bpjax.example_cost))
GRAD_OF_COST = jax.jit(jax.grad(bpjax.cost))
# The reference for every identity: per-example jax.grad, never the library's own gradients.
PER_EXAMPLE_AUTODIFF = jax.jit(jax.vmap(jax.grad(bpjax.example_cost), in_axes=(None, 0, 0)))
MOMENTS = jax.jit(wl.gradient_moments, static_argnames=("chunk_size", "method"))
AGREEMENT = jax.jit(wl.minibatch_agreement)


def negate(tree):
    return jax.tree.map(jnp.negative, tree)


def cost_from_layer(params, first, a, y):
    """The example's cost as a function of layer ``first``'s input activations ``a``."""
    for layer in params[first:]:
        a = bpjax.sigmoid(layer["w"] @ a + layer["b"])
    return jnp.sum((a - y) ** 2)


DESIRE = jax.grad(cost_from_layer, argnums=2)


def cost_through_one_neuron(params, first, j, a, y):
    """The example's cost as a function of layer ``first``'s inputs ``a``, where only neuron j's
    weighted input sees ``a`` (the other neurons see a constant copy): its gradient is the part
    of -dC/da that neuron j asks for (route 3 of neuron j)."""
    w, b = params[first]["w"], params[first]["b"]
    z = (w @ jax.lax.stop_gradient(a) + b).at[j].set(w[j] @ a + b[j])
    return cost_from_layer(params, first + 1, bpjax.sigmoid(z), y)


ASKED_BY_NEURON = jax.grad(cost_through_one_neuron, argnums=3)


@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=str)
def test_the_wish_list_is_minus_backprop_and_minus_autodiff(x64, sizes):
    params, xs, ys = random_problem(0, sizes, batch=3, dtype=jnp.float64)
    for x, y in zip(xs, ys, strict=True):
        nudges = wl.parameter_nudges(WISH_LIST(params, x, y))
        chex.assert_trees_all_equal_shapes_and_dtypes(nudges, params)
        assert max_rel_err(nudges, negate(GRAD(params, x, y))) <= 1e-10


@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=str)
def test_every_route_against_autodiff_through_the_activations(x64, sizes):
    """Desires -dC/da^l from jax.grad of the cost as a function of a^l; then route 1 is the
    desire through sigma'(z), route 2 that times the source activation, route 3 sums to the
    previous layer's desire, neuron j's part being route 1 of j times w_jk."""
    params, xs, ys = random_problem(1, sizes, batch=2, dtype=jnp.float64)
    for x, y in zip(xs, ys, strict=True):
        wishes = WISH_LIST(params, x, y)
        zs, activations = bpjax.forward_trace(params, x)
        desires = wl.activation_desires(wishes)
        np.testing.assert_allclose(
            wishes.output, -DESIRE(params, len(params), activations[-1], y), rtol=1e-12
        )
        for i, (layer, w_layer) in enumerate(zip(wishes.layers, params, strict=True)):
            a_prev = activations[i]
            wanted_prev = -DESIRE(params, i, a_prev, y)
            wanted_here = -DESIRE(params, i + 1, activations[i + 1], y)
            np.testing.assert_allclose(desires[i], wanted_here, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(layer.a_prev, wanted_prev, rtol=1e-10, atol=1e-14)
            through_sigma = jax.vjp(jax.nn.sigmoid, zs[i])[1](wanted_here)[0]
            np.testing.assert_allclose(layer.b, through_sigma, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(
                layer.w, jnp.outer(through_sigma, a_prev), rtol=1e-10, atol=1e-14
            )
            asked = jnp.stack(
                [-ASKED_BY_NEURON(params, i, j, a_prev, y) for j in range(w_layer["w"].shape[0])]
            )
            np.testing.assert_allclose(layer.a_prev_by_neuron, asked, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(
                jnp.sum(layer.a_prev_by_neuron, axis=0), layer.a_prev, rtol=1e-10, atol=1e-14
            )
        # The first layer's route 3 is the input's desire: -dC/dx.
        np.testing.assert_allclose(
            wishes.layers[0].a_prev,
            -jax.grad(bpjax.example_cost, argnums=1)(params, x, y),
            rtol=1e-10,
            atol=1e-14,
        )


def test_the_right_output_is_pushed_up_and_the_rest_down_by_their_distance():
    params, xs, ys = random_problem(7, (784, 16, 16, 10), batch=50, init="standard")
    out = jax.vmap(WISH_LIST, in_axes=(None, 0, 0))(params, xs, ys).output
    target = ys == 1
    assert bool(jnp.all(jnp.where(target, out > 0, out < 0)))
    # Sized by the distance to the target: -dC/da = 2 (y - a), so |nudge| < 2.
    outputs = bpjax.forward_batch(params, xs)
    minus_dC_da = -jax.vmap(jax.grad(lambda a, y: jnp.sum((a - y) ** 2)))(outputs, ys)
    np.testing.assert_allclose(out, minus_dC_da, rtol=1e-5, atol=1e-7)
    assert float(jnp.max(jnp.abs(out))) < 2.0


@pytest.mark.parametrize("sizes", ARCHITECTURES, ids=str)
@pytest.mark.parametrize("batch", [1, 9])
def test_the_average_wish_list_is_the_mean_of_wish_lists_and_minus_the_mean_gradient(
    x64, sizes, batch
):
    params, xs, ys = random_problem(2, sizes, batch=batch, dtype=jnp.float64)
    mean = MEAN_WISH_LIST(params, xs, ys)
    stacked = jax.vmap(wl.wish_list, in_axes=(None, 0, 0))(params, xs, ys)
    chex.assert_trees_all_close(
        mean, jax.tree.map(lambda t: t.mean(axis=0), stacked), rtol=1e-10, atol=1e-14
    )
    minus_grad = negate(GRAD_OF_COST(params, xs, ys))
    assert max_rel_err(wl.parameter_nudges(mean), minus_grad) <= 1e-10


@pytest.mark.parametrize("chunk_size", [5, 100])
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
    assert max_rel_err(naive, exact) > 1.0  # the failure guarded against is real


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
        expected = wl.expected_minibatch_error(total_variance, n, b)
        np.testing.assert_allclose(np.mean(errors), expected, rtol=1e-10, atol=1e-20)
    assert float(wl.expected_minibatch_error(total_variance, n, n)) == 0.0


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
    rows = np.asarray(wl.minibatch_draws(jax.random.key(0), n, batch_size, draws))
    assert rows.shape == (draws, batch_size)
    assert rows.min() >= 0 and rows.max() < n
    assert all(len(set(r)) == batch_size for r in rows)
    per_epoch = n // batch_size
    for start in range(0, draws, per_epoch):
        epoch = rows[start : start + per_epoch].ravel()
        assert len(set(epoch)) == len(epoch)
    with pytest.raises(ValueError, match="batch_size"):
        wl.minibatch_draws(jax.random.key(0), n, n + 1, 1)


SPECS = [
    Spec("tanh", "softmax", "log_likelihood"),
    Spec("relu", "sigmoid", "cross_entropy"),
    Spec("identity", "tanh", "quadratic_half"),
    Spec("sigmoid", "softmax", "quadratic"),
]


def cost_after(params, first, a, y, spec):
    """The example's cost as a function of layer ``first``'s input activations ``a``
    (``first`` < L), through the spec's activations and cost."""
    acts = spec.layer_activations(len(params))
    for layer, act in zip(params[first:], acts[first:], strict=True):
        z = layer["w"] @ a + layer["b"]
        a = act.f(z)
    return spec.cost_function.cost(z, a, y)


@pytest.mark.parametrize("spec", SPECS, ids=str)
def test_every_route_against_autodiff_for_each_spec(x64, spec):
    """The spec's wish list: nudges = -jax.grad; each desire = -jax.grad of the cost w.r.t. the
    activations; route 1 = the desire through jax.vjp of the activation function."""
    params, xs, ys = random_problem(1, (7, 6, 5, 3), batch=2, dtype=jnp.float64)
    grad = jax.grad(lambda p, x, y: bpjax.example_cost(p, x, y, spec=spec))
    desire = jax.grad(lambda a, first, y: cost_after(params, first, a, y, spec))
    acts = spec.layer_activations(len(params))
    for x, y in zip(xs, ys, strict=True):
        wishes = wl.wish_list(params, x, y, spec=spec)
        assert max_rel_err(wl.parameter_nudges(wishes), negate(grad(params, x, y))) <= 1e-10
        zs, activations = bpjax.forward_trace(params, x, spec=spec)
        desires = wl.activation_desires(wishes)
        for i, layer in enumerate(wishes.layers):
            if i < len(params) - 1:
                np.testing.assert_allclose(
                    desires[i], -desire(activations[i + 1], i + 1, y), rtol=1e-10, atol=1e-14
                )
            np.testing.assert_allclose(
                layer.a_prev, -desire(activations[i], i, y), rtol=1e-10, atol=1e-14
            )
            through = jax.vjp(acts[i].f, zs[i])[1](desires[i])[0]
            np.testing.assert_allclose(layer.b, through, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(
                layer.w, jnp.outer(through, activations[i]), rtol=1e-10, atol=1e-14
            )
    mean = wl.mean_wish_list(params, xs, ys, spec=spec)
    stacked = jax.vmap(lambda x, y: wl.wish_list(params, x, y, spec=spec))(xs, ys)
    chex.assert_trees_all_close(
        mean, jax.tree.map(lambda t: t.mean(axis=0), stacked), rtol=1e-10, atol=1e-14
    )


def test_a_cost_without_dC_da_is_refused_by_the_wish_list():
    name = f"no_output_grad_{uuid.uuid4().hex[:8]}"
    bpjax.register_cost(
        name, lambda z, a, y: jnp.sum((a - y) ** 2), lambda z, a, y, out: out.vjp(z, a, 2 * (a - y))
    )
    params, xs, ys = random_problem(0, (3, 2), batch=2)
    with pytest.raises(ValueError, match="has no hand-written dC/da"):
        wl.wish_list(params, xs[0], ys[0], spec=Spec(cost=name))
