"""bpjax.grads: per-example gradients and their mean, by autodiff and by hand, equal jax.grad."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax.grads import make_grad_fn
from bpjax.spec import Spec
from tests.helpers import max_rel_err, random_problem, tiered

pytestmark = pytest.mark.usefixtures("strict_dtypes")

# (sizes, batch): 1 to 4 layers, widths 1 to 784, a batch of one and larger ones.
PROBLEMS = [
    ((1, 1), 1),
    ((3, 1), 7),
    ((5, 4, 3), 64),
    ((7, 40, 1, 2, 3), 7),
    ((784, 16, 16, 10), 64),
]
BATCH_SIZES = [1, 64]

# Compiled once per shape: eager op-by-op dispatch would dominate the test time.
PER_EXAMPLE = jax.jit(bpjax.per_example_grads, static_argnames="method")
MEAN_GRAD = jax.jit(bpjax.mean_grad, static_argnames="method")
GRAD_OF_COST = jax.jit(jax.grad(bpjax.cost))
GRAD = jax.jit(jax.grad(bpjax.example_cost))
PER_EXAMPLE_AUTODIFF = jax.jit(jax.vmap(jax.grad(bpjax.example_cost), in_axes=(None, 0, 0)))
EXAMPLE_GRAD = jax.jit(bpjax.example_grad, static_argnums=3)
FORWARD_TRACE = jax.jit(jax.vmap(bpjax.forward_trace, in_axes=(None, 0)))
COST_AND_GRAD = jax.jit(jax.value_and_grad(bpjax.cost), static_argnames="spec")


@pytest.mark.parametrize("method", bpjax.EXAMPLE_METHODS)
@pytest.mark.parametrize("sizes", tiered([(5, 4, 3), (784, 16, 16, 10)], [(5, 4, 3)]), ids=str)
def test_example_grad_equals_jax_grad_of_the_example_cost(x64, method, sizes):
    params, xs, ys = random_problem(0, sizes, batch=2, dtype=jnp.float64)
    for x, y in zip(xs, ys, strict=True):
        g = EXAMPLE_GRAD(params, x, y, method)
        chex.assert_trees_all_equal_shapes_and_dtypes(g, params)
        assert max_rel_err(g, GRAD(params, x, y)) <= 1e-10


@pytest.mark.parametrize(
    "sizes, batch",
    tiered(PROBLEMS, [((5, 4, 3), 64), ((784, 16, 16, 10), 64)], several=True),
    ids=str,
)
def test_per_example_grads_are_each_examples_jax_grad_and_average_to_the_mean_gradient(
    x64, sizes, batch
):
    params, xs, ys = random_problem(3, sizes, batch=batch, dtype=jnp.float64)
    grad_of_mean = GRAD_OF_COST(params, xs, ys)
    one_by_one = PER_EXAMPLE_AUTODIFF(params, xs, ys)
    for method in bpjax.EXAMPLE_METHODS:
        per_example = PER_EXAMPLE(params, xs, ys, method=method)
        chex.assert_trees_all_equal_shapes(
            per_example, jax.tree.map(lambda p: jnp.zeros((batch, *p.shape)), params)
        )
        assert max_rel_err(per_example, one_by_one) <= 1e-10
        mean_of_per_example = jax.tree.map(lambda g: g.mean(axis=0), per_example)
        assert max_rel_err(mean_of_per_example, grad_of_mean) <= 1e-10
        assert max_rel_err(MEAN_GRAD(params, xs, ys, method=method), grad_of_mean) <= 1e-10


@pytest.mark.parametrize("method", bpjax.EXAMPLE_METHODS)
@pytest.mark.parametrize("batch", BATCH_SIZES)
def test_jitted_mean_grad_equals_the_gradient_of_the_mean_cost_and_traces_once(method, batch):
    params, xs, ys = random_problem(4, (784, 16, 16, 10), batch=batch, init="scaled")
    chex.clear_trace_counter()  # the counter is keyed by function name across parametrizations

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(params, xs, ys):
        return bpjax.mean_grad(params, xs, ys, method=method)

    _, xs2, ys2 = random_problem(5, (784, 16, 16, 10), batch=batch)
    for x, y in ((xs, ys), (xs2, ys2)):  # new data, same shapes: must not trace again
        jitted = step(params, x, y)
        chex.assert_trees_all_close(jitted, GRAD_OF_COST(params, x, y), rtol=1e-4, atol=1e-6)
        assert max_rel_err(jitted, GRAD_OF_COST(params, x, y)) <= 1e-5


def saturated_perfect_params(n_in, labels_to_output=10, margin=60.0):
    """A network whose output is (numerically) exactly one_hot(3) for every input."""
    w = jnp.zeros((labels_to_output, n_in))
    b = jnp.full((labels_to_output,), -margin).at[3].set(margin)
    return [{"w": w, "b": b}]


@pytest.mark.parametrize("method", bpjax.EXAMPLE_METHODS)
def test_perfect_prediction_has_zero_cost_and_zero_gradient(method, key):
    params = saturated_perfect_params(5)
    xs = jax.random.uniform(key, (4, 5))
    ys = bpjax.one_hot(jnp.full((4,), 3))
    assert float(bpjax.cost(params, xs, ys)) < 1e-30
    grads = bpjax.mean_grad(params, xs, ys, method=method)
    assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree.leaves(grads)) < 1e-20


def max_abs_err(a, b) -> float:
    """max |a - b| over every leaf, in float64 numpy (a may be float32, b float64)."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    return max(
        float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
        for x, y in pairs
    )


@pytest.mark.parametrize("method", bpjax.EXAMPLE_METHODS)
@pytest.mark.parametrize("scale", tiered([30.0, 500.0], [500.0]))
def test_gradients_at_saturated_sigmoids_equal_a_float64_autodiff_reference(method, scale):
    """Weights scaled up until many |z| are beyond 30 (scale 500: all of them), where float32
    rounds sigma(z) to 0 or 1 and a naive exp(-z) overflows: the float32 gradients are finite
    and equal float64 jax.grad, to 1e-4 of the largest entry (or float32's smallest normal
    number, when the true gradients are all below it)."""
    params, xs, ys = random_problem(7, (8, 6, 3), batch=5)
    params = jax.tree.map(lambda p: scale * p, params)
    zs, _ = FORWARD_TRACE(params, xs)
    assert all(np.mean(np.abs(z) > 30) >= 0.3 for z in zs)  # saturated
    grads = PER_EXAMPLE(params, xs, ys, method=method)
    mean = MEAN_GRAD(params, xs, ys, method=method)
    chex.assert_tree_all_finite((grads, mean))
    tiny = float(np.finfo(np.float32).tiny)
    with jax.enable_x64(True):
        p64, x64_, y64 = jax.tree.map(lambda t: np.asarray(t, np.float64), (params, xs, ys))
        ref = PER_EXAMPLE_AUTODIFF(p64, x64_, y64)
        ref_mean = GRAD_OF_COST(p64, x64_, y64)
        for got, want in ((grads, ref), (mean, ref_mean)):
            peak = max(float(np.max(np.abs(g))) for g in jax.tree.leaves(want))
            assert max_abs_err(got, want) <= 1e-4 * peak + tiny


@pytest.mark.parametrize(
    "call",
    [
        bpjax.mean_grad,
        bpjax.per_example_grads,
        lambda p, xs, ys, method: bpjax.example_grad(p, xs[0], ys[0], method),
    ],
    ids=["mean_grad", "per_example_grads", "example_grad"],
)
def test_an_unknown_method_lists_the_valid_ones(call):
    params, xs, ys = random_problem(0, (4, 3), batch=2)
    with pytest.raises(ValueError, match=r"unknown gradient method 'magic'; choose one of \("):
        call(params, xs, ys, method="magic")


# --- make_grad_fn: every method in the registry gives the mean cost and the mean gradient -------

SPECS = [
    Spec("tanh", "softmax", "log_likelihood"),
    Spec("relu", "sigmoid", "cross_entropy"),
    Spec("sigmoid", "identity", "quadratic_half"),
]


@pytest.mark.parametrize(
    "method, spec",
    tiered(
        [(m, s) for m in bpjax.METHODS for s in SPECS],
        [(m, SPECS[i % len(SPECS)]) for i, m in enumerate(bpjax.METHODS)],  # each method once
        several=True,
    ),
    ids=str,
)
def test_every_grad_method_follows_the_spec(x64, spec, method):
    params, x, y = random_problem(0, (6, 5, 4), batch=30, dtype=jnp.float64)
    c, g = jax.jit(make_grad_fn(method, spec=spec))(params, x, y)
    cost, grad = COST_AND_GRAD(params, x, y, spec=spec)
    np.testing.assert_allclose(c, cost, rtol=1e-13)
    assert max_rel_err(g, grad) < 1e-10


@pytest.mark.parametrize("method", [m for m in bpjax.METHODS if m.startswith("vmap")])
def test_per_example_methods_equal_the_plain_vmap_grad_average(x64, method):
    params, xs, ys = random_problem(0, (20, 8, 6, 10), batch=33, dtype=jnp.float64)
    plain = jax.tree.map(lambda g: g.mean(0), PER_EXAMPLE(params, xs, ys, method="autodiff"))
    cost, grads = jax.jit(make_grad_fn(method))(params, xs, ys)
    assert max_rel_err(grads, plain) < 1e-12
    np.testing.assert_allclose(cost, COST_AND_GRAD(params, xs, ys)[0], rtol=1e-12)


def test_backprop_with_an_apply_fn_is_refused():
    with pytest.raises(ValueError, match="use 'autodiff' with apply_fn"):
        make_grad_fn("backprop", apply_fn=bpjax.forward_batch)
