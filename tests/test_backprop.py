"""The hand-derived backward pass equals jax.grad and finite differences."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax
from bpjax.spec import Spec
from tests.helpers import max_rel_err, random_problem, tiered

pytestmark = pytest.mark.usefixtures("strict_dtypes")

# 1 to 4 layers, widths 1 to 40, and the two classic MNIST architectures.
ARCHITECTURES = [
    (1, 1),
    (3, 1),
    (5, 4, 3),
    (2, 40, 1),
    (7, 40, 1, 2, 3),
    (10, 3, 5, 7, 2),
    (784, 30, 10),
    (784, 16, 16, 10),
]

# Compiled once per shape: eager op-by-op dispatch would dominate the test time.
BACKPROP = jax.jit(bpjax.backprop)
GRAD = jax.jit(jax.grad(bpjax.example_cost))


@pytest.mark.parametrize(
    "sizes", tiered(ARCHITECTURES, fast=[(5, 4, 3), (7, 40, 1, 2, 3), (784, 16, 16, 10)]), ids=str
)
def test_backprop_equals_autodiff_float64(x64, sizes):
    params, xs, ys = random_problem(0, sizes, batch=3, dtype=jnp.float64)
    for x, y in zip(xs, ys, strict=True):
        hand = BACKPROP(params, x, y)
        auto = GRAD(params, x, y)
        chex.assert_trees_all_equal_structs(hand, params)
        chex.assert_trees_all_equal_shapes_and_dtypes(hand, params)
        assert max_rel_err(hand, auto) <= 1e-10


@pytest.mark.parametrize("sizes", tiered(ARCHITECTURES, fast=[(784, 16, 16, 10)]), ids=str)
def test_backprop_equals_autodiff_float32(sizes):
    params, xs, ys = random_problem(1, sizes, batch=3, init="scaled")
    for x, y in zip(xs, ys, strict=True):
        hand = BACKPROP(params, x, y)
        auto = GRAD(params, x, y)
        chex.assert_trees_all_equal_shapes_and_dtypes(hand, params)
        assert max_rel_err(hand, auto) <= 1e-5


def central_differences(f, params, eps=1e-6):
    """dC/dtheta for every scalar parameter by (C(theta + eps) - C(theta - eps)) / 2 eps."""
    leaves, treedef = jax.tree.flatten(params)
    grads = []
    for i, leaf in enumerate(leaves):
        flat = np.asarray(leaf).ravel()
        g = np.zeros_like(flat)
        for j in range(flat.size):
            shifted = []
            for sign in (1.0, -1.0):
                bumped = flat.copy()
                bumped[j] += sign * eps
                new_leaves = list(leaves)
                new_leaves[i] = bumped.reshape(leaf.shape)  # NumPy: no device copy to compile
                shifted.append(float(f(jax.tree.unflatten(treedef, new_leaves))))
            g[j] = (shifted[0] - shifted[1]) / (2 * eps)
        grads.append(g.reshape(leaf.shape))
    return jax.tree.unflatten(treedef, grads)


@pytest.mark.parametrize(
    "sizes",
    tiered([(3, 1), (4, 3, 2), (5, 4, 3, 2), (3, 2, 2, 2, 3)], fast=[(3, 2, 2, 2, 3)]),
    ids=str,
)
def test_backprop_and_autodiff_equal_finite_differences(x64, sizes):
    params, xs, ys = random_problem(2, sizes, batch=1, dtype=jnp.float64)
    x, y = xs[0], ys[0]
    cost_fn = jax.jit(lambda p: bpjax.example_cost(p, x, y))
    numeric = central_differences(cost_fn, params)
    assert max_rel_err(BACKPROP(params, x, y), numeric) <= 1e-7
    assert max_rel_err(GRAD(params, x, y), numeric) <= 1e-7


def test_vmap_of_backprop_equals_vmap_of_grad(x64):
    params, xs, ys = random_problem(6, (6, 5, 4), batch=9, dtype=jnp.float64)
    hand = jax.jit(jax.vmap(bpjax.backprop, in_axes=(None, 0, 0)))(params, xs, ys)
    auto = jax.jit(jax.vmap(jax.grad(bpjax.example_cost), in_axes=(None, 0, 0)))(params, xs, ys)
    assert max_rel_err(hand, auto) <= 1e-10


@pytest.mark.parametrize("sizes", tiered([(784, 16, 16, 10), (5, 4, 3)], fast=[(5, 4, 3)]), ids=str)
def test_each_weight_nudge_is_proportional_to_the_activation_it_comes_from(x64, sizes):
    """Hebbian (BP3, BP4): backprop's dC/dw_jk = delta_j a_k, its delta_j = dC/db_j is
    backprop_deltas' error, and both equal jax.grad's."""
    params, xs, ys = random_problem(8, sizes, batch=1, dtype=jnp.float64)
    x, y = xs[0], ys[0]
    hand = bpjax.backprop(params, x, y)
    activations, deltas = bpjax.backprop_deltas(params, x, y)
    auto = jax.grad(bpjax.example_cost)(params, x, y)
    _, forward_activations = bpjax.forward_trace(params, x)
    chex.assert_trees_all_close(activations, forward_activations, rtol=1e-15)
    for g, g_auto, delta, a_prev in zip(hand, auto, deltas, activations[:-1], strict=True):
        np.testing.assert_allclose(g["b"], delta, rtol=1e-15)  # BP3
        np.testing.assert_allclose(g["w"], jnp.outer(delta, a_prev), rtol=1e-15)  # BP4
        np.testing.assert_allclose(delta, g_auto["b"], rtol=1e-10, atol=1e-300)
        np.testing.assert_allclose(g["w"], g_auto["w"], rtol=1e-10, atol=1e-300)


@pytest.mark.slow  # a compile per drawn network
@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 12), min_size=2, max_size=5),
    seed=st.integers(0, 2**31 - 1),
    scale=st.floats(0.1, 10.0),
)
def test_property_backprop_equals_autodiff_for_any_network(sizes, seed, scale):
    with jax.enable_x64(True):
        params, xs, ys = random_problem(seed, sizes, batch=1, dtype=jnp.float64)
        params = jax.tree.map(lambda p: scale * p, params)
        hand = jax.jit(bpjax.backprop)(params, xs[0], ys[0])
        auto = jax.jit(jax.grad(bpjax.example_cost))(params, xs[0], ys[0])
        chex.assert_trees_all_close(hand, auto, rtol=1e-10, atol=1e-14)


# --- Every model spec: the hand backward pass against jax.grad, per example and averaged. -----

REPRESENTATIVE = [
    Spec(),
    Spec("tanh", "identity", "quadratic_half"),
    Spec("relu", "sigmoid", "cross_entropy"),
    Spec("identity", "softmax", "log_likelihood"),
    Spec("sigmoid", "softmax", "quadratic"),
]


def spec_gradients(params, xs, ys, spec):
    """Hand per-example, autodiff per-example, hand mean, and jax.grad of the mean cost."""
    return (
        bpjax.per_example_grads(params, xs, ys, method="backprop", spec=spec),
        bpjax.per_example_grads(params, xs, ys, method="autodiff", spec=spec),
        bpjax.mean_grad(params, xs, ys, method="backprop", spec=spec),
        jax.grad(lambda p: bpjax.cost(p, xs, ys, spec=spec))(params),
    )


SPEC_GRADIENTS = jax.jit(spec_gradients, static_argnames="spec")


def check_spec(spec, sizes, batch, seed):
    params, xs, ys = random_problem(seed, sizes, batch=batch, dtype=jnp.float64)
    hand, auto, hand_mean, grad_of_mean = SPEC_GRADIENTS(params, xs, ys, spec=spec)
    assert max_rel_err(hand, auto) <= 1e-10
    assert max_rel_err(hand_mean, grad_of_mean) <= 1e-10
    assert max_rel_err(jax.tree.map(lambda g: g.mean(axis=0), hand), grad_of_mean) <= 1e-10


@pytest.mark.parametrize("spec", REPRESENTATIVE, ids=str)
@pytest.mark.parametrize(
    "sizes, batch",
    tiered([((5, 3), 1), ((6, 5, 4, 3, 3), 7)], [((6, 5, 4, 3, 3), 7)], several=True),
    ids=str,
)
def test_each_spec_hand_equals_autodiff_per_example_and_averaged(x64, spec, sizes, batch):
    check_spec(spec, sizes, batch, seed=11)


@pytest.mark.parametrize("spec", tiered(REPRESENTATIVE, REPRESENTATIVE[:2]), ids=str)
def test_backprop_cost_and_mean_reports_the_spec_cost(x64, spec):
    params, xs, ys = random_problem(13, (5, 4, 3), batch=6, dtype=jnp.float64)
    c, _ = bpjax.backprop_cost_and_mean(params, xs, ys, spec=spec)
    np.testing.assert_allclose(c, bpjax.cost(params, xs, ys, spec=spec), rtol=1e-14)
