"""bpjax.activations: each hand-written derivative equals autodiff of its function."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bpjax
from bpjax.activations import activation_names, get_activation
from tests.helpers import tiered

pytestmark = pytest.mark.usefixtures("strict_dtypes")

BUILT_IN = ("sigmoid", "tanh", "relu", "identity", "softmax")
ELEMENTWISE = [n for n in BUILT_IN if get_activation(n).f_prime is not None]
Z = jnp.array([-1000.0, -100.0, -30.0, -2.5, -0.3, 0.1, 0.7, 3.0, 30.0, 100.0, 1000.0])


def test_the_built_ins_are_registered():
    assert set(BUILT_IN) <= set(activation_names())
    assert get_activation("softmax").output_only
    assert not any(get_activation(n).output_only for n in ELEMENTWISE)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_f_prime_equals_autodiff_of_f(x64, name):
    act = get_activation(name)
    z = Z.astype(jnp.float64)
    auto = jax.vmap(jax.grad(act.f))(z)
    np.testing.assert_allclose(act.f_prime(z), auto, rtol=1e-14, atol=1e-300)
    v = jnp.linspace(-2.0, 2.0, z.size)
    np.testing.assert_allclose(
        act.vjp(z, act.f(z), v), jax.vjp(act.f, z)[1](v)[0], rtol=1e-14, atol=1e-300
    )


@settings(max_examples=20, deadline=None)
@given(z=st.floats(-50, 50), name=st.sampled_from(ELEMENTWISE))
def test_property_f_prime_is_the_slope_of_f(z, name):
    with jax.enable_x64(True):
        act = get_activation(name)
        eps = 1e-6
        if name == "relu" and abs(z) < 2 * eps:
            return  # the kink: no slope to compare with
        slope = (act.f(jnp.float64(z + eps)) - act.f(jnp.float64(z - eps))) / (2 * eps)
        np.testing.assert_allclose(act.f_prime(jnp.float64(z)), slope, rtol=1e-6, atol=1e-9)


def test_relu_derivative_at_zero_is_zero_like_jax():
    act = get_activation("relu")
    assert float(act.f_prime(jnp.float32(0.0))) == 0.0 == float(jax.grad(jax.nn.relu)(0.0))


@pytest.mark.parametrize("name", BUILT_IN)
def test_saturated_inputs_give_finite_values_and_derivatives(name):
    act = get_activation(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = act.f(Z)
        d = act.vjp(Z, a, jnp.ones_like(Z))
    assert bool(jnp.all(jnp.isfinite(a if name != "identity" else Z)))
    assert bool(jnp.all(jnp.isfinite(d)))


@pytest.mark.parametrize("batch_shape", tiered([(), (4,)], [(4,)]))
def test_softmax_vjp_is_the_jacobian_transpose_product(x64, key, batch_shape):
    act = get_activation("softmax")
    k1, k2 = jax.random.split(key)
    z = 3 * jax.random.normal(k1, (*batch_shape, 5), dtype=jnp.float64)
    v = jax.random.normal(k2, (*batch_shape, 5), dtype=jnp.float64)
    a = act.f(z)
    np.testing.assert_allclose(jnp.sum(a, axis=-1), 1.0, rtol=1e-15)
    expected = jax.vjp(act.f, z)[1](v)[0]
    np.testing.assert_allclose(act.vjp(z, a, v), expected, rtol=1e-12, atol=1e-15)


def test_sigmoid_is_the_network_default():
    z = jnp.linspace(-5.0, 5.0, 11)
    np.testing.assert_array_equal(bpjax.sigmoid(z), get_activation("sigmoid").f(z))
    np.testing.assert_array_equal(bpjax.sigmoid_prime(z), get_activation("sigmoid").f_prime(z))


def test_unknown_activation_lists_the_valid_names():
    with pytest.raises(ValueError, match=r"unknown activation 'gelu'; choose one of \("):
        get_activation("gelu")
