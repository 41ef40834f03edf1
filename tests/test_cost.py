"""bpjax.cost: each cost's hand-written BP1 and dC/da equal autodiff; stable at saturation."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax
from bpjax.cost import cost_names, get_cost, mean_output_cost
from bpjax.spec import Spec, allowed_specs
from tests.helpers import random_problem, tiered

pytestmark = pytest.mark.usefixtures("strict_dtypes")

BUILT_IN = ("quadratic", "quadratic_half", "cross_entropy", "log_likelihood")
# (output, cost) pairs the built-in costs allow.
PAIRS = sorted({(s.output, s.cost) for s in allowed_specs() if s.cost in BUILT_IN})


def problem(seed, n=5, dtype=jnp.float64, scale=3.0):
    rng = np.random.default_rng(seed)
    z = np.asarray(scale * rng.standard_normal(n), np.dtype(dtype))
    y = np.eye(n, dtype=np.dtype(dtype))[rng.integers(0, n)]
    return jnp.asarray(z), jnp.asarray(y)


def test_the_built_ins_are_registered():
    assert set(BUILT_IN) <= set(cost_names())
    assert get_cost("cross_entropy").outputs == ("sigmoid",)
    assert get_cost("log_likelihood").outputs == ("softmax",)
    assert get_cost("quadratic").outputs is None


@pytest.mark.parametrize("output, name", PAIRS, ids=str)
@pytest.mark.parametrize("seed", tiered([0, 1, 2], fast=[0]))
def test_output_delta_equals_autodiff_through_the_output_activation(x64, output, name, seed):
    c = get_cost(name)
    act = Spec(output=output, cost=name).output_activation
    z, y = problem(seed)
    of_z = lambda z: c.cost(z, act.f(z), y)  # noqa: E731
    np.testing.assert_allclose(
        c.output_delta(z, act.f(z), y, act), jax.grad(of_z)(z), rtol=1e-12, atol=1e-15
    )


@pytest.mark.parametrize("output, name", PAIRS, ids=str)
def test_output_grad_is_dC_da(x64, output, name):
    """dC/da against autodiff of the cost written in a: the formula a quadratic cost is written
    in, and the textbook log form for the costs computed from z."""
    c = get_cost(name)
    act = Spec(output=output, cost=name).output_activation
    z, y = problem(3, scale=1.0)
    a = act.f(z)
    in_a = {
        "quadratic": lambda a: jnp.sum((a - y) ** 2),
        "quadratic_half": lambda a: 0.5 * jnp.sum((a - y) ** 2),
        "cross_entropy": lambda a: -jnp.sum(y * jnp.log(a) + (1 - y) * jnp.log(1 - a)),
        "log_likelihood": lambda a: -jnp.sum(y * jnp.log(a)),
    }[name]
    np.testing.assert_allclose(c.cost(z, a, y), in_a(a), rtol=1e-12)
    np.testing.assert_allclose(c.output_grad(z, a, y), jax.grad(in_a)(a), rtol=1e-10)


def reference(name, z, y):
    """The textbook formula in float64 numpy (naive, but exact enough for |z| <= 100)."""
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    if name == "cross_entropy":
        e = np.exp(-z)
        a, one_minus_a = 1 / (1 + e), e / (1 + e)
        return -np.sum(y * np.log(a) + (1 - y) * np.log(one_minus_a))
    a = np.exp(z - z.max()) / np.sum(np.exp(z - z.max()))
    return -np.sum(y * np.log(a))


@pytest.mark.parametrize(
    "name, output", [("cross_entropy", "sigmoid"), ("log_likelihood", "softmax")]
)
@pytest.mark.parametrize(
    "dtype", tiered([jnp.float32, jnp.float64], [jnp.float32]), ids=["f32", "f64"]
)
def test_saturated_outputs_give_finite_costs_and_gradients(name, output, dtype):
    """z of +-100 saturates the outputs (a rounds to 0 or 1): a cost taken as log(a) would be
    inf; computed from z it stays finite and matches the float64 reference."""
    with jax.enable_x64(dtype == jnp.float64):
        spec = Spec(output=output, cost=name)
        c, act = spec.cost_function, spec.output_activation
        z = jnp.array([100.0, -100.0, 0.5, -100.0], dtype=dtype)
        for target in range(4):
            y = bpjax.one_hot(jnp.asarray(target), 4, dtype=dtype)
            a = act.f(z)
            value = c.cost(z, a, y)
            np.testing.assert_allclose(value, reference(name, z, y), rtol=1e-6)
            delta = c.output_delta(z, a, y, act)
            auto = jax.grad(lambda z, y=y: c.cost(z, act.f(z), y))(z)
            chex.assert_tree_all_finite((value, delta, auto))
            np.testing.assert_allclose(delta, auto, rtol=1e-6, atol=1e-30)


def test_quadratic_half_is_half_the_quadratic_and_so_are_its_gradients(x64):
    params, xs, ys = random_problem(0, (5, 4, 3), batch=6, dtype=jnp.float64)
    full, half = Spec(), Spec(cost="quadratic_half")
    np.testing.assert_allclose(
        bpjax.cost(params, xs, ys, spec=half), bpjax.cost(params, xs, ys) / 2, rtol=1e-15
    )
    chex.assert_trees_all_close(
        bpjax.backprop_mean(params, xs, ys, spec=half),
        jax.tree.map(lambda g: g / 2, bpjax.backprop_mean(params, xs, ys, spec=full)),
        rtol=1e-15,
    )


@pytest.mark.parametrize(
    "spec",
    [Spec(), Spec("tanh", "softmax", "log_likelihood"), Spec("relu", "sigmoid", "cross_entropy")],
    ids=str,
)
def test_example_cost_and_cost_follow_the_spec(x64, spec):
    params, xs, ys = random_problem(1, (6, 5, 4), batch=7, dtype=jnp.float64)
    zs, outs = jax.vmap(lambda x: bpjax.forward_trace(params, x, spec=spec))(xs)
    per_example = jnp.stack(
        [bpjax.example_cost(params, x, y, spec=spec) for x, y in zip(xs, ys, strict=True)]
    )
    expected = [
        reference(spec.cost, z, y)
        if spec.cost != "quadratic"
        else np.sum((np.asarray(a) - np.asarray(y)) ** 2)
        for z, a, y in zip(zs[-1], outs[-1], ys, strict=True)
    ]
    np.testing.assert_allclose(per_example, expected, rtol=1e-12)
    np.testing.assert_allclose(bpjax.cost(params, xs, ys, spec=spec), np.mean(expected), rtol=1e-12)
    np.testing.assert_allclose(
        mean_output_cost(zs[-1], outs[-1], ys, spec=spec), np.mean(expected), rtol=1e-12
    )


def test_mismatched_shapes_fail_clearly():
    with pytest.raises(ValueError, match="must have the same shape"):
        mean_output_cost(jnp.zeros((2, 3)), jnp.zeros((2, 3)), jnp.zeros((2, 4)), spec=Spec())
    with pytest.raises(ValueError, match=r"unknown cost 'l1'; choose one of"):
        get_cost("l1")


@pytest.mark.parametrize("batch", tiered([1, 7, 64], fast=[7]))
def test_cost_is_the_mean_example_cost_and_accuracy_the_fraction_right(batch):
    params, xs, ys = random_problem(1, (784, 16, 16, 10), batch=batch)
    out = np.asarray(bpjax.forward_batch(params, xs), np.float64)
    example_cost = jax.jit(bpjax.example_cost)  # one compile, B calls
    per_example = jnp.stack([example_cost(params, x, y) for x, y in zip(xs, ys, strict=True)])
    np.testing.assert_allclose(per_example, ((out - np.asarray(ys)) ** 2).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(bpjax.cost(params, xs, ys), per_example.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        bpjax.squared_error(jnp.asarray(out, jnp.float32), ys), per_example.mean(), rtol=1e-5
    )
    labels = jnp.argmax(ys, axis=1)
    expected = np.mean(np.argmax(out, axis=1) == np.asarray(labels))
    assert float(bpjax.accuracy(params, xs, labels)) == pytest.approx(expected)


@pytest.mark.slow  # a compile per drawn shape
@settings(max_examples=8, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 10), min_size=2, max_size=4),
    seed=st.integers(0, 2**31 - 1),
    batch=st.integers(1, 8),
)
def test_property_cost_is_between_zero_and_n_outputs(sizes, seed, batch):
    params, xs, ys = random_problem(seed, sizes, batch=batch)
    c = float(jax.jit(bpjax.cost)(params, xs, ys))
    # each a_j is in (0, 1) and y is one-hot, so 0 <= C_x <= n_out
    assert 0.0 <= c <= sizes[-1]


def test_one_hot_and_a_bad_labels_shape():
    np.testing.assert_array_equal(
        bpjax.one_hot(jnp.array([2, 0]), 3), [[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    )
    params, xs, ys = random_problem(0, (8, 4, 3), batch=5)
    with pytest.raises(ValueError, match="labels must have shape"):
        bpjax.accuracy(params, xs, ys)
