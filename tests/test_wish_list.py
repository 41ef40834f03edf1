"""The wish list: its identities with backprop and jax.grad, its averages, and the experiment."""

import functools
import uuid

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax import wish_list as wl
from bpjax.spec import Spec
from tests.helpers import max_rel_err, random_problem, tiered

ARCHITECTURES = [(3, 1), (7, 6, 5, 3)]

WISH_LIST = jax.jit(wl.wish_list)
MEAN_WISH_LIST = jax.jit(wl.mean_wish_list)
GRAD = jax.jit(jax.grad(bpjax.example_cost))
GRAD_OF_COST = jax.jit(jax.grad(bpjax.cost))
# The reference for every identity: per-example jax.grad, never the library's own gradients.
PER_EXAMPLE_AUTODIFF = jax.jit(jax.vmap(jax.grad(bpjax.example_cost), in_axes=(None, 0, 0)))
WISH_LISTS = jax.jit(jax.vmap(wl.wish_list, in_axes=(None, 0, 0)))  # one compiled program


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


@pytest.mark.parametrize("sizes", tiered(ARCHITECTURES, ARCHITECTURES[1:]), ids=str)
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
    out = WISH_LISTS(params, xs, ys).output
    target = ys == 1
    assert bool(jnp.all(jnp.where(target, out > 0, out < 0)))
    # Sized by the distance to the target: -dC/da = 2 (y - a), so |nudge| < 2.
    outputs = bpjax.forward_batch(params, xs)
    minus_dC_da = -jax.vmap(jax.grad(lambda a, y: jnp.sum((a - y) ** 2)))(outputs, ys)
    np.testing.assert_allclose(out, minus_dC_da, rtol=1e-5, atol=1e-7)
    assert float(jnp.max(jnp.abs(out))) < 2.0


@pytest.mark.parametrize("sizes", tiered(ARCHITECTURES, ARCHITECTURES[:1]), ids=str)
@pytest.mark.parametrize("batch", tiered([1, 9], [9]))
def test_the_average_wish_list_is_the_mean_of_wish_lists_and_minus_the_mean_gradient(
    x64, sizes, batch
):
    params, xs, ys = random_problem(2, sizes, batch=batch, dtype=jnp.float64)
    mean = MEAN_WISH_LIST(params, xs, ys)
    stacked = WISH_LISTS(params, xs, ys)
    chex.assert_trees_all_close(
        mean, jax.tree.map(lambda t: t.mean(axis=0), stacked), rtol=1e-10, atol=1e-14
    )
    minus_grad = negate(GRAD_OF_COST(params, xs, ys))
    assert max_rel_err(wl.parameter_nudges(mean), minus_grad) <= 1e-10


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


@pytest.mark.parametrize("spec", tiered(SPECS, SPECS[1:2]), ids=str)
def test_every_route_against_autodiff_for_each_spec(x64, spec):
    """The spec's wish list: nudges = -jax.grad; each desire = -jax.grad of the cost w.r.t. the
    activations; route 1 = the desire through jax.vjp of the activation function."""
    params, xs, ys = random_problem(1, (7, 6, 5, 3), batch=2, dtype=jnp.float64)
    # Each compiled once: eager, every operation would compile on its own.
    grad = jax.jit(jax.grad(lambda p, x, y: bpjax.example_cost(p, x, y, spec=spec)))
    desire = jax.jit(
        jax.grad(lambda a, first, y: cost_after(params, first, a, y, spec)), static_argnums=1
    )
    wish_list = jax.jit(functools.partial(wl.wish_list, spec=spec))
    trace = jax.jit(functools.partial(bpjax.forward_trace, spec=spec))
    acts = spec.layer_activations(len(params))
    vjp = jax.jit(lambda i, z, d: jax.vjp(acts[i].f, z)[1](d)[0], static_argnums=0)
    for x, y in zip(xs, ys, strict=True):
        wishes = wish_list(params, x, y)
        assert max_rel_err(wl.parameter_nudges(wishes), negate(grad(params, x, y))) <= 1e-10
        zs, activations = trace(params, x)
        desires = wl.activation_desires(wishes)
        for i, layer in enumerate(wishes.layers):
            if i < len(params) - 1:
                np.testing.assert_allclose(
                    desires[i], -desire(activations[i + 1], i + 1, y), rtol=1e-10, atol=1e-14
                )
            np.testing.assert_allclose(
                layer.a_prev, -desire(activations[i], i, y), rtol=1e-10, atol=1e-14
            )
            through = vjp(i, zs[i], desires[i])
            np.testing.assert_allclose(layer.b, through, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(
                layer.w, np.outer(through, activations[i]), rtol=1e-10, atol=1e-14
            )
    mean = jax.jit(functools.partial(wl.mean_wish_list, spec=spec))(params, xs, ys)
    stacked = jax.jit(jax.vmap(wish_list, in_axes=(None, 0, 0)))(params, xs, ys)
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
