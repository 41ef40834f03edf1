"""bpjax.params: init_params' shapes, dtypes, scales and keys; layer_sizes; bad arguments."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax

pytestmark = pytest.mark.usefixtures("strict_dtypes")


@pytest.mark.parametrize("init", bpjax.INITS)
@pytest.mark.parametrize("sizes", [(784, 16, 16, 10), (784, 30, 10), (3, 1)], ids=str)
def test_init_params_shapes_and_layer_sizes(key, init, sizes):
    params = bpjax.init_params(key, sizes, init=init)
    assert bpjax.layer_sizes(params) == sizes
    for layer, n_in, n_out in zip(params, sizes[:-1], sizes[1:], strict=True):
        chex.assert_shape(layer["w"], (n_out, n_in))
        chex.assert_shape(layer["b"], (n_out,))
        chex.assert_type((layer["w"], layer["b"]), jnp.float32)


@pytest.mark.parametrize(
    "init, w_std", [("scaled", lambda n_in: 1 / np.sqrt(n_in)), ("standard", lambda n_in: 1.0)]
)
def test_init_scales_the_weights_by_fan_in_and_draws_unit_biases(key, init, w_std):
    # Wide layers, so the sample standard deviations are within a few percent of the true ones.
    sizes = (900, 400, 300)
    params = bpjax.init_params(key, sizes, init=init)
    for layer, n_in in zip(params, sizes[:-1], strict=True):
        assert float(jnp.std(layer["w"])) / w_std(n_in) == pytest.approx(1.0, abs=0.05)
        assert abs(float(jnp.mean(layer["w"]))) < 0.05 * w_std(n_in)
        assert float(jnp.std(layer["b"])) == pytest.approx(1.0, abs=0.15)


def test_init_honours_the_dtype(x64, key):
    params = bpjax.init_params(key, (5, 4, 3), dtype=jnp.float64)
    chex.assert_type(jax.tree.leaves(params), jnp.float64)


def test_init_is_deterministic_for_a_key_and_differs_across_keys_and_layers():
    a = bpjax.init_params(jax.random.key(1), (5, 5, 5))
    b = bpjax.init_params(jax.random.key(1), (5, 5, 5))
    c = bpjax.init_params(jax.random.key(2), (5, 5, 5))
    chex.assert_trees_all_equal(a, b)
    assert not np.allclose(a[0]["w"], c[0]["w"])
    assert not np.allclose(a[0]["w"], a[1]["w"])  # each layer its own key
    assert not np.allclose(a[0]["b"], a[1]["b"])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sizes": (784,)}, "at least an input and an output"),
        ({"sizes": (784, 0, 10)}, ">= 1"),
        ({"sizes": (3, 2), "init": "xavier"}, r"unknown init 'xavier'; choose one of \("),
    ],
)
def test_bad_init_arguments_give_clear_errors(key, kwargs, message):
    with pytest.raises(ValueError, match=message):
        bpjax.init_params(key, **kwargs)
