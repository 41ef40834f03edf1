"""bpjax.flax_mlp: the Flax NNX MLP is bpjax's network (outputs, gradients, training)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import bpjax
from bpjax.flax_mlp import MLP, from_bpjax, make_apply_fn, make_init_fn, to_bpjax
from bpjax.optimizers import make_sweep_optimizer
from bpjax.spec import Spec
from bpjax.sweep import run_grid, seed_keys, train_sweep
from bpjax.train import make_grad_fn, make_train_step
from tests.helpers import max_rel_err, random_problem, tiered

SIZES = (7, 5, 4, 3)
# Every built-in activation, hidden and at the output, and every built-in cost.
SPECS = [
    Spec(),
    Spec("tanh", "identity", "quadratic_half"),
    Spec("relu", "sigmoid", "cross_entropy"),
    Spec("identity", "softmax", "log_likelihood"),
    Spec("sigmoid", "relu", "quadratic"),
]


def test_conversion_round_trips_and_transposes():
    params, _, _ = random_problem(0, SIZES, batch=1)
    state = from_bpjax(params)
    layers = nnx.to_pure_dict(state)["layers"]
    np.testing.assert_array_equal(layers[0]["kernel"], params[0]["w"].T)
    assert layers[2]["kernel"].shape == (4, 3)
    back = to_bpjax(state)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    assert max_rel_err(back, params) == 0.0


def output_layer(params, xs, spec):
    zs, activations = jax.vmap(lambda x: bpjax.forward_trace(params, x, spec=spec))(xs)
    return zs[-1], activations[-1]


@pytest.mark.parametrize("spec", tiered(SPECS, SPECS[2:4]), ids=str)
@pytest.mark.parametrize("sizes", tiered([SIZES, (5, 2), (4, 9, 9, 9, 2)], [(4, 9, 9, 9, 2)]))
def test_same_weights_same_outputs(x64, sizes, spec):
    """apply_fn gives z^L, the module a^L, both equal to bpjax's network with the same spec."""
    params, xs, _ = random_problem(1, sizes, batch=6, dtype=jnp.float64)
    z, a = output_layer(params, xs, spec)
    ours = jax.jit(make_apply_fn(sizes, spec=spec))(from_bpjax(params), xs)
    assert ours.dtype == jnp.float64
    np.testing.assert_allclose(ours, z, rtol=1e-13, atol=1e-14)
    graphdef, _ = nnx.split(MLP(sizes, rngs=nnx.Rngs(0), param_dtype=jnp.float64, spec=spec))
    model = nnx.merge(graphdef, from_bpjax(params))
    np.testing.assert_allclose(model(xs), a, rtol=1e-13, atol=1e-14)


def test_same_outputs_in_float32():
    params, xs, _ = random_problem(2, SIZES, batch=6)
    ours = make_apply_fn(SIZES)(from_bpjax(params), xs)
    np.testing.assert_allclose(
        jax.nn.sigmoid(ours), bpjax.forward_batch(params, xs), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("spec", tiered(SPECS, SPECS[3:4]), ids=str)
def test_same_weights_same_gradients(x64, spec):
    params, xs, ys = random_problem(3, SIZES, batch=8, dtype=jnp.float64)
    grad_fn = make_grad_fn(apply_fn=make_apply_fn(SIZES, spec=spec), spec=spec)
    flax_cost, flax_grad = jax.jit(grad_fn)(from_bpjax(params), xs, ys)
    np.testing.assert_allclose(flax_cost, bpjax.cost(params, xs, ys, spec=spec), rtol=1e-13)
    auto = jax.grad(lambda p: bpjax.cost(p, xs, ys, spec=spec))(params)
    assert max_rel_err(to_bpjax(flax_grad), auto) < 1e-12
    assert max_rel_err(to_bpjax(flax_grad), bpjax.backprop_mean(params, xs, ys, spec=spec)) < 1e-12


def test_training_with_another_spec_than_the_apply_fn_was_built_for_is_refused():
    apply_fn = make_apply_fn(SIZES, spec=Spec(hidden="tanh"))
    assert apply_fn.spec == Spec(hidden="tanh")
    with pytest.raises(ValueError, match="apply_fn was built for spec tanh/sigmoid/quadratic"):
        make_train_step(optax.sgd(1.0), apply_fn=apply_fn)


@pytest.mark.slow  # two train steps compiled
def test_training_step_follows_the_pure_network(x64):
    """Five adam steps through make_train_step(apply_fn=...) == five steps of bpjax's network."""
    params, xs, ys = random_problem(4, SIZES, batch=8, dtype=jnp.float64)
    tx = optax.adam(0.05)
    flax_step = jax.jit(make_train_step(tx, apply_fn=make_apply_fn(SIZES)))
    pure_step = jax.jit(make_train_step(tx, method="backprop"))
    state, fs = from_bpjax(params), tx.init(from_bpjax(params))
    p, ps = params, tx.init(params)
    for _ in range(5):
        state, fs, fm = flax_step(state, fs, xs, ys)
        p, ps, pm = pure_step(p, ps, xs, ys)
        assert float(fm["cost"]) == pytest.approx(float(pm["cost"]), rel=1e-12)
    assert max_rel_err(to_bpjax(state), p) < 1e-10


@pytest.mark.slow  # two sweeps trained
def test_flax_sweep_matches_pure_sweep():
    """The vmapped sweep trains the Flax model to the same accuracies as bpjax's network."""
    params, xs, ys = random_problem(5, SIZES, batch=64)
    labels = jnp.argmax(ys, axis=1)
    lrs, seeds = run_grid([0.5, 2.0], [0, 1])
    common = dict(
        epochs=2,
        batch_size=16,
        order_key=jax.random.key(0),
        n_classes=3,
        eval_sets={"train": (xs, labels)},
    )
    tx = make_sweep_optimizer("sgd")
    flax_run = train_sweep(
        tx,
        make_init_fn(SIZES),
        lrs,
        seed_keys(seeds),
        xs,
        labels,
        apply_fn=make_apply_fn(SIZES),
        **common,
    )
    pure_run = train_sweep(
        tx, lambda k: bpjax.init_params(k, SIZES), lrs, seed_keys(seeds), xs, labels, **common
    )
    np.testing.assert_allclose(
        flax_run.history["train_cost"], pure_run.history["train_cost"], rtol=1e-5
    )
    assert max_rel_err(to_bpjax(flax_run.params), pure_run.params) < 1e-4


@pytest.mark.slow  # flax init compiled
def test_module_built_directly_has_flax_init():
    model = MLP(SIZES, rngs=nnx.Rngs(0))
    params = to_bpjax(nnx.state(model, nnx.Param))
    assert bpjax.layer_sizes(params) == SIZES
    assert all(float(jnp.max(jnp.abs(layer["b"]))) == 0.0 for layer in params)  # zero biases
    out = model(jnp.ones((2, SIZES[0])))
    assert out.shape == (2, 3) and bool(jnp.all((out > 0) & (out < 1)))


def test_bad_input_fails_clearly():
    apply_fn = make_apply_fn(SIZES)
    state = make_init_fn(SIZES)(jax.random.key(0))
    with pytest.raises(ValueError, match=r"shape \(B, 7\)"):
        apply_fn(state, jnp.ones((2, 6)))
    with pytest.raises(ValueError, match="sizes"):
        MLP((7,), rngs=nnx.Rngs(0))
