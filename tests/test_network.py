"""Forward pass, cost and the public API's shape contract."""

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax
from tests.helpers import random_problem


@pytest.mark.parametrize("init", bpjax.INITS)
@pytest.mark.parametrize("sizes", [(784, 16, 16, 10), (784, 30, 10), (3, 1)], ids=str)
def test_init_params_shapes_and_scale(init, sizes):
    params = bpjax.init_params(jax.random.key(0), sizes, init=init)
    assert bpjax.layer_sizes(params) == sizes
    for layer, n_in, n_out in zip(params, sizes[:-1], sizes[1:], strict=True):
        chex.assert_shape(layer["w"], (n_out, n_in))
        chex.assert_shape(layer["b"], (n_out,))
        chex.assert_type(layer["w"], jnp.float32)
    w = params[0]["w"]
    expected_std = 1 / np.sqrt(sizes[0]) if init == "scaled" else 1.0
    if w.size > 1000:
        assert abs(float(jnp.std(w)) / expected_std - 1) < 0.1


def test_init_is_deterministic_for_a_key_and_differs_across_keys():
    a = bpjax.init_params(jax.random.key(1), (5, 4, 3))
    b = bpjax.init_params(jax.random.key(1), (5, 4, 3))
    c = bpjax.init_params(jax.random.key(2), (5, 4, 3))
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a[0]["w"], c[0]["w"])


@pytest.mark.parametrize(
    "hidden, output, reference",
    [
        ("tanh", "softmax", lambda z: np.exp(z - z.max()) / np.sum(np.exp(z - z.max()))),
        ("relu", "identity", lambda z: z),
        ("identity", "relu", lambda z: np.maximum(z, 0)),
    ],
)
def test_forward_trace_follows_the_spec(hidden, output, reference):
    hidden_ref = {"tanh": np.tanh, "relu": lambda z: np.maximum(z, 0), "identity": lambda z: z}
    spec = bpjax.Spec(
        hidden=hidden, output=output, cost="log_likelihood" if output == "softmax" else "quadratic"
    )
    params, xs, _ = random_problem(0, (6, 5, 4, 3), batch=3)
    zs, activations = bpjax.forward_trace(params, xs[0], spec=spec)
    for i, (layer, z, a_next) in enumerate(zip(params, zs, activations[1:], strict=True)):
        np.testing.assert_allclose(z, layer["w"] @ activations[i] + layer["b"], rtol=1e-6)
        f = reference if i == len(params) - 1 else hidden_ref[hidden]
        np.testing.assert_allclose(a_next, f(np.asarray(z)), rtol=1e-6, atol=1e-7)
    out = bpjax.forward_batch(params, xs, spec=spec)
    np.testing.assert_allclose(out[0], activations[-1], rtol=1e-6)
    np.testing.assert_array_equal(bpjax.predict(params, xs, spec=spec), np.argmax(out, axis=1))


def test_forward_trace_matches_the_math():
    params, xs, _ = random_problem(0, (6, 5, 4, 3), batch=1)
    zs, activations = bpjax.forward_trace(params, xs[0])
    assert len(zs) == 3 and len(activations) == 4
    a = xs[0]
    for layer, z, a_next in zip(params, zs, activations[1:], strict=True):
        np.testing.assert_allclose(z, layer["w"] @ a + layer["b"], rtol=1e-6)
        np.testing.assert_allclose(a_next, 1 / (1 + np.exp(-np.asarray(z))), rtol=1e-6)
        a = a_next
    np.testing.assert_allclose(bpjax.forward(params, xs[0]), activations[-1])


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_batched_forward_cost_and_accuracy(batch):
    params, xs, ys = random_problem(1, (784, 16, 16, 10), batch=batch)
    out = bpjax.forward_batch(params, xs)
    chex.assert_shape(out, (batch, 10))
    per_example = jnp.stack([bpjax.example_cost(params, x, y) for x, y in zip(xs, ys, strict=True)])
    np.testing.assert_allclose(bpjax.cost(params, xs, ys), per_example.mean(), rtol=1e-5)
    np.testing.assert_allclose(
        per_example, ((out - ys) ** 2).sum(axis=1), rtol=1e-5
    )  # no 1/2 factor
    labels = jnp.argmax(ys, axis=1)
    expected = np.mean(np.argmax(np.asarray(out), axis=1) == np.asarray(labels))
    assert float(bpjax.accuracy(params, xs, labels)) == pytest.approx(expected)
    np.testing.assert_array_equal(bpjax.predict(params, xs), np.argmax(np.asarray(out), axis=1))


def test_sigmoid_is_safe_at_large_z():
    z = jnp.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = np.asarray(bpjax.sigmoid(z))
        sp = np.asarray(bpjax.sigmoid_prime(z))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(sp))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert np.all(sp >= 0) and sp[3] == 0.25


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


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p, xs, ys: bpjax.forward(p, xs), "one example of shape"),
        (lambda p, xs, ys: bpjax.forward_batch(p, xs[:, :5]), "batch of shape"),
        (lambda p, xs, ys: bpjax.cost(p, xs, ys[:, :2]), "one-hot targets of shape"),
        (lambda p, xs, ys: bpjax.example_cost(p, xs[0], ys[0, :2]), "one-hot target of shape"),
        (lambda p, xs, ys: bpjax.mean_grad(p, xs, ys, method="magic"), "unknown gradient method"),
        (lambda p, xs, ys: bpjax.per_example_grads(p, xs[:0], ys[:0]), "empty"),
        (lambda p, xs, ys: bpjax.accuracy(p, xs, ys), "labels must have shape"),
        (lambda p, xs, ys: bpjax.backprop(p[::-1], xs[0], ys[0]), "inputs but layer"),
    ],
)
def test_wrong_shapes_give_clear_errors(call, message):
    params, xs, ys = random_problem(0, (8, 4, 3), batch=5)
    with pytest.raises(ValueError, match=message):
        call(params, xs, ys)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sizes": (784,)}, "at least an input and an output"),
        ({"sizes": (784, 0, 10)}, ">= 1"),
        ({"sizes": (3, 2), "init": "xavier"}, "unknown init"),
    ],
)
def test_bad_init_arguments_give_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        bpjax.init_params(jax.random.key(0), **kwargs)
