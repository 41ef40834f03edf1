"""bpjax.network: the forward pass follows the math and the spec, one example or a batch."""

import warnings

import chex
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from tests.helpers import random_problem, tiered

pytestmark = pytest.mark.usefixtures("strict_dtypes")


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


@pytest.mark.parametrize("batch", tiered([1, 7, 64], [7]))
def test_forward_batch_and_predict_are_forward_per_example(batch):
    params, xs, _ = random_problem(1, (784, 16, 16, 10), batch=batch)
    out = bpjax.forward_batch(params, xs)
    chex.assert_shape(out, (batch, 10))
    one_by_one = np.stack([np.asarray(bpjax.forward(params, x)) for x in xs])
    np.testing.assert_allclose(out, one_by_one, rtol=1e-5, atol=1e-6)  # float32 sum orders
    predicted = bpjax.predict(params, xs)
    chex.assert_type(predicted, jnp.int32)
    np.testing.assert_array_equal(predicted, np.argmax(np.asarray(out), axis=1))


def test_sigmoid_is_safe_at_large_z():
    z = jnp.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = np.asarray(bpjax.sigmoid(z))
        sp = np.asarray(bpjax.sigmoid_prime(z))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(sp))
    assert s[0] == 0.0 and s[-1] == 1.0 and s[3] == 0.5
    assert np.all(sp >= 0) and sp[3] == 0.25
