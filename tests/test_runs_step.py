"""bpjax.runs_step: R runs' step on a shared mini-batch equals each run's own step."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax
from bpjax.runs_step import make_runs_step, runs_costs, runs_product
from bpjax.spec import Spec
from tests.helpers import max_rel_err, random_problem

SIZES = (6, 5, 4, 3)


def stacked_runs(n_runs, dtype=jnp.float64):
    """R runs' params (leading run axis) and one shared mini-batch."""
    runs = [random_problem(seed, SIZES, batch=7, dtype=dtype) for seed in range(n_runs)]
    params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[r[0] for r in runs])
    _, xb, yb = runs[0]
    return params, xb, yb


def test_runs_product_shared_and_per_run_equal_a_loop(x64):
    params, xb, _ = stacked_runs(3)
    w = params[0]["w"]  # (R, n_out, n_in)
    a = xb.T  # (n_in, B)
    loop = np.stack([np.asarray(w[r]) @ np.asarray(a) for r in range(3)])
    np.testing.assert_allclose(runs_product(w, a), loop, rtol=1e-13)
    per_run = jnp.stack([a] * 3)
    np.testing.assert_allclose(runs_product(w, per_run), loop, rtol=1e-13)
    # The per-run product's hand-written vjp: both cotangents equal autodiff's of the plain matmul.
    v = jnp.ones((3, w.shape[1], a.shape[1]))
    got = jax.vjp(runs_product, w, per_run)[1](v)
    want = jax.vjp(jnp.matmul, w, per_run)[1](v)
    assert max_rel_err(got, want) < 1e-13


@pytest.mark.parametrize("spec", [Spec(), Spec("tanh", "softmax", "log_likelihood")], ids=str)
def test_runs_costs_are_each_runs_cost(x64, spec):
    params, xb, yb = stacked_runs(3)
    costs = jax.jit(runs_costs, static_argnames="spec")(params, xb, yb, spec=spec)
    for r in range(3):
        run = jax.tree.map(lambda leaf, r=r: leaf[r], params)
        np.testing.assert_allclose(costs[r], bpjax.cost(run, xb, yb, spec=spec), rtol=1e-13)


@pytest.mark.parametrize("optimizer", [optax.sgd(0.5), optax.adam(0.01)], ids=["sgd", "adam"])
def test_one_step_of_every_run_is_each_runs_own_step(x64, optimizer):
    params, xb, yb = stacked_runs(3)
    opt_state = jax.vmap(optimizer.init)(params)
    new, new_state, costs = jax.jit(make_runs_step(optimizer))(params, opt_state, xb, yb)
    step = jax.jit(bpjax.train.make_train_step(optimizer))
    for r in range(3):
        run = jax.tree.map(lambda leaf, r=r: leaf[r], (params, opt_state))
        want_params, want_state, metrics = step(*run, xb, yb)
        got = jax.tree.map(lambda leaf, r=r: leaf[r], (new, new_state))
        assert max_rel_err(got[0], want_params) < 1e-12
        np.testing.assert_allclose(costs[r], metrics["cost"], rtol=1e-13)
