"""Training: steps, the scanned SGD epoch, full-batch GD, evaluation."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

import bpjax
from bpjax import train
from bpjax.data import load_mnist
from bpjax.spec import Spec
from tests.helpers import max_rel_err, random_problem, tiered


def problem(n=240, sizes=(20, 8, 6, 10), seed=0, dtype=jnp.float32):
    params, x, ys = random_problem(seed, sizes, batch=n, dtype=dtype, init="scaled")
    labels = jnp.asarray(np.argmax(np.asarray(ys), axis=1).astype(np.int32))
    return params, x, labels


@pytest.mark.parametrize(
    "method, optimizer",
    tiered(
        [("autodiff", "sgd"), ("backprop", "adam"), ("backprop", "sgd"), ("autodiff", "adam")],
        [("autodiff", "sgd"), ("backprop", "adam")],
        several=True,
    ),
)
def test_train_step_lowers_the_cost_on_a_fixed_batch(method, optimizer):
    optimizer = {"sgd": optax.sgd(3.0), "adam": optax.adam(1e-2)}[optimizer]
    params, x, labels = problem()
    y = bpjax.one_hot(labels)
    step = jax.jit(train.make_train_step(optimizer, method))
    opt_state = optimizer.init(params)
    before = float(bpjax.cost(params, x, y))
    for _ in range(20):
        params, opt_state, metrics = step(params, opt_state, x, y)
    assert bool(metrics["finite"])
    assert float(bpjax.cost(params, x, y)) < 0.9 * before


@pytest.mark.parametrize("batch_size", tiered([1, 7, 40], [7]))
def test_scan_epoch_equals_a_python_loop_of_the_same_steps(batch_size):
    params, x, labels = problem(n=120)
    opt = optax.sgd(0.5)
    step = train.make_train_step(opt)
    key = jax.random.key(3)
    p_scan, _, m_scan = train.make_sgd_epoch(step, batch_size)(
        params, opt.init(params), x, labels, key
    )
    p_loop, s_loop, costs = params, opt.init(params), []
    jstep = jax.jit(step)
    for idx in bpjax.data.epoch_batches(key, x.shape[0], batch_size):
        p_loop, s_loop, m = jstep(p_loop, s_loop, x[idx], bpjax.one_hot(labels[idx]))
        costs.append(m["cost"])
    chex.assert_shape(m_scan["cost"], (120 // batch_size,))
    np.testing.assert_allclose(m_scan["cost"], jnp.stack(costs), rtol=1e-5, atol=1e-7)
    chex.assert_trees_all_close(p_scan, p_loop, rtol=1e-5, atol=1e-6)


@pytest.mark.slow  # two compiled epochs
def test_autodiff_and_backprop_give_the_same_trajectory(x64):
    params, x, labels = problem(n=300, dtype=jnp.float64)
    opt = optax.sgd(3.0)
    results = {}
    for method in bpjax.EXAMPLE_METHODS:
        epoch = train.make_sgd_epoch(train.make_train_step(opt, method), 10)
        p, s = params, opt.init(params)
        for k in jax.random.split(jax.random.key(0), 3):
            p, s, m = epoch(p, s, x, labels, k)
        results[method] = (p, m["cost"])
    assert max_rel_err(results["backprop"][0], results["autodiff"][0]) < 1e-10
    np.testing.assert_allclose(results["backprop"][1], results["autodiff"][1], rtol=1e-10)


@pytest.mark.parametrize("chunk_size", tiered([1000, 300, 64, 7], []))
def test_chunked_full_batch_gradient_equals_unchunked(x64, chunk_size):
    params, x, labels = problem(n=300, dtype=jnp.float64)
    for method in bpjax.EXAMPLE_METHODS:
        grad_fn = train.make_grad_fn(method)
        full = jax.jit(train.full_batch_cost_and_grad, static_argnums=(0, 4))
        c, g = full(grad_fn, params, x, labels, chunk_size)
        y = bpjax.one_hot(labels, dtype=jnp.float64)
        np.testing.assert_allclose(c, bpjax.cost(params, x, y), rtol=1e-12)
        assert max_rel_err(g, jax.grad(bpjax.cost)(params, x, y)) < 1e-12


@pytest.mark.slow  # a compiled full-batch step
def test_full_batch_step_equals_an_optax_sgd_step_on_the_full_gradient(x64):
    params, x, labels = problem(n=250, dtype=jnp.float64)
    opt = optax.sgd(2.0)
    gd_step = train.make_full_batch_step(opt, chunk_size=100)
    new, _, metrics = gd_step(params, opt.init(params), x, labels)
    y = bpjax.one_hot(labels, dtype=jnp.float64)
    full = jax.grad(bpjax.cost)(params, x, y)
    expected = jax.tree.map(lambda p, g: p - 2.0 * g, params, full)
    assert max_rel_err(new, expected) < 1e-12
    np.testing.assert_allclose(metrics["cost"], bpjax.cost(params, x, y), rtol=1e-12)


def test_evaluate_matches_cost_and_accuracy():
    params, x, labels = problem()
    ev = train.make_evaluate()(params, x, labels)
    np.testing.assert_allclose(ev["cost"], bpjax.cost(params, x, bpjax.one_hot(labels)), rtol=1e-6)
    np.testing.assert_allclose(ev["accuracy"], bpjax.accuracy(params, x, labels))


def test_a_diverging_step_is_flagged_in_its_metrics(key):
    params, x, labels = problem()
    params = jax.tree.map(lambda p: p.at[..., 0].set(jnp.nan), params)
    opt = optax.sgd(1.0)
    _, _, m = train.make_sgd_epoch(train.make_train_step(opt), 60)(
        params, opt.init(params), x, labels, key
    )
    assert not bool(jnp.any(m["finite"]))


SPECS = [
    Spec("tanh", "softmax", "log_likelihood"),
    Spec("relu", "sigmoid", "cross_entropy"),
    Spec("sigmoid", "identity", "quadratic_half"),
]


@pytest.mark.parametrize("spec", tiered(SPECS, SPECS[1:2]), ids=str)
def test_train_step_evaluate_and_full_batch_step_follow_the_spec(x64, spec):
    params, x, labels = problem(n=100, sizes=(6, 5, 4), dtype=jnp.float64)
    y = bpjax.one_hot(labels, 4, dtype=jnp.float64)
    opt = optax.adam(5e-2)
    step = jax.jit(train.make_train_step(opt, "backprop", spec=spec))
    p, s = params, opt.init(params)
    before = float(bpjax.cost(params, x, y, spec=spec))
    for _ in range(20):
        p, s, m = step(p, s, x, y)
    assert bool(m["finite"]) and float(bpjax.cost(p, x, y, spec=spec)) < 0.97 * before
    ev = train.make_evaluate(n_classes=4, spec=spec)(p, x, labels)
    np.testing.assert_allclose(ev["cost"], bpjax.cost(p, x, y, spec=spec), rtol=1e-13)
    np.testing.assert_allclose(ev["accuracy"], bpjax.accuracy(p, x, labels, spec=spec))
    gd = train.make_full_batch_step(optax.sgd(0.5), chunk_size=30, n_classes=4, spec=spec)
    new, _, metrics = gd(params, optax.sgd(0.5).init(params), x, labels)
    full = jax.grad(lambda q: bpjax.cost(q, x, y, spec=spec))(params)
    assert max_rel_err(new, jax.tree.map(lambda q, g: q - 0.5 * g, params, full)) < 1e-12
    np.testing.assert_allclose(metrics["cost"], before, rtol=1e-12)


def test_a_jitted_train_step_traces_once_per_spec():
    params, x, labels = problem(n=20, sizes=(6, 5, 4))
    y = bpjax.one_hot(labels, 4)
    opt = optax.sgd(0.1)
    traces = []

    @functools.partial(jax.jit, static_argnames="spec")
    def step(params, opt_state, xb, yb, spec):
        traces.append(spec)
        return train.make_train_step(opt, "backprop", spec=spec)(params, opt_state, xb, yb)

    spec = Spec("tanh", "softmax", "log_likelihood")
    p, s, _ = step(params, opt.init(params), x, y, spec=spec)
    p, s, _ = step(p, s, x + 0.5, y, spec=Spec.from_dict(spec.to_dict()))  # equal, new object
    assert traces == [spec]
    step(p, s, x, y, spec=Spec())
    assert len(traces) == 2


@pytest.mark.slow
@pytest.mark.parametrize("method", bpjax.EXAMPLE_METHODS)
@pytest.mark.parametrize(
    "spec, lr",
    [
        (Spec(), 3.0),
        (Spec(cost="quadratic_half"), 6.0),
        (Spec(cost="cross_entropy"), 0.5),
        (Spec(output="softmax", cost="log_likelihood"), 0.5),
    ],
    ids=str,
)
def test_each_cost_learns_mnist5k(key, spec, lr, method):
    ds = load_mnist("mnist5k", verbose=False)
    x, labels = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = bpjax.init_params(key, (784, 30, 10))
    opt = optax.sgd(lr)
    epoch = train.make_sgd_epoch(train.make_train_step(opt, method, spec=spec), 10)
    s = opt.init(params)
    for e in range(3):
        params, s, m = epoch(params, s, x, labels, jax.random.key(e))
    assert bool(jnp.all(m["finite"]))
    acc = train.make_evaluate(spec=spec)(params, jnp.asarray(ds.x_test), jnp.asarray(ds.y_test))
    assert float(acc["accuracy"]) > 0.8  # chance is 0.1


# --- the fast paths equal the plain ones: per-example formulations, finite flags, donation ---


def test_all_finite_flags_nan_and_inf_but_not_huge_values():
    for value, finite in (
        (1.0, True),
        (3e38, True),
        (np.nan, False),
        (np.inf, False),
        (-np.inf, False),
    ):
        tree = [{"w": jnp.ones((3, 4)).at[1, 2].set(value), "b": jnp.zeros(3)}]
        assert bool(jax.jit(train.all_finite)(tree)) is finite


@pytest.mark.slow  # one more compiled epoch
def test_donated_epoch_gives_the_same_result():
    params, x, labels = problem(n=40)
    tx = optax.sgd(1.0)
    step = train.make_train_step(tx)
    p = jax.tree.map(jnp.asarray, params)
    plain = train.make_sgd_epoch(step, 8)(
        p, tx.init(p), jnp.asarray(x), jnp.asarray(labels), jax.random.key(0)
    )
    q = jax.tree.map(jnp.copy, p)
    donated = train.make_sgd_epoch(step, 8, donate=True)(
        q, tx.init(q), jnp.asarray(x), jnp.asarray(labels), jax.random.key(0)
    )
    assert max_rel_err(donated[0], plain[0]) == 0


def _diverging_problem():
    params, x, labels = problem(n=80)
    # An infinite learning rate at step 5 and only there: the params turn non-finite mid-epoch.
    tx = optax.sgd(lambda count: jnp.where(count == 5, jnp.inf, 0.1))
    return jax.tree.map(jnp.asarray, params), jnp.asarray(x), jnp.asarray(labels), tx


@pytest.mark.slow  # a compiled epoch
def test_epoch_finite_flags_are_per_step_exact_when_params_diverge_mid_epoch():
    params, x, labels, tx = _diverging_problem()
    step = train.make_train_step(tx)
    key = jax.random.key(0)
    _, _, m = train.make_sgd_epoch(step, 8)(params, tx.init(params), x, labels, key)
    p, s, flags = params, tx.init(params), []
    for idx in bpjax.data.epoch_batches(key, 80, 8):
        p, s, mi = jax.jit(step)(p, s, x[idx], bpjax.one_hot(labels[idx]))
        flags.append(bool(mi["finite"]))
    assert flags[:5] == [True] * 5 and not any(flags[5:])
    np.testing.assert_array_equal(m["finite"], flags)


@pytest.mark.slow  # a vmapped epoch
def test_vmapped_epochs_flag_each_run_as_alone():
    params, x, labels, tx = _diverging_problem()
    step = train.make_train_step(tx)
    key = jax.random.key(0)
    broken = jax.tree.map(lambda a: a.at[0].set(jnp.nan), params)  # non-finite from the start
    epoch = train.make_sgd_epoch(step, 8)
    alone = [epoch(p, tx.init(p), x, labels, key)[2]["finite"] for p in (params, broken)]
    runs = jax.tree.map(lambda a, b: jnp.stack([a, b]), params, broken)
    vmapped = jax.jit(jax.vmap(lambda p: train.sgd_epoch(step, p, tx.init(p), x, labels, key, 8)))(
        runs
    )
    np.testing.assert_array_equal(vmapped[2]["finite"], jnp.stack(alone))
    assert bool(alone[0][0]) and not bool(jnp.any(alone[1]))


def blow_up():
    """An optimizer whose first update is +inf: the cost it was taken at is finite, the params
    after it are not, so only the params check can notice."""
    return optax.chain(optax.sgd(1.0), optax.scale(jnp.inf))


@pytest.mark.parametrize("runner", ["step", "epoch_of_one_step", "full_batch_step"])
def test_params_that_turn_non_finite_after_a_finite_cost_are_flagged(key, runner):
    params, x, labels = problem(n=40)
    y = bpjax.one_hot(labels)
    opt = blow_up()
    if runner == "step":
        new, _, m = jax.jit(train.make_train_step(opt))(params, opt.init(params), x, y)
    elif runner == "epoch_of_one_step":
        new, _, m = train.make_sgd_epoch(train.make_train_step(opt), 40)(
            params, opt.init(params), x, labels, key
        )
    else:
        new, _, m = train.make_full_batch_step(opt, chunk_size=16)(
            params, opt.init(params), x, labels
        )
    assert bool(jnp.all(jnp.isfinite(m["cost"])))
    assert not bool(jnp.all(jnp.isfinite(ravel_pytree(new)[0])))
    assert not bool(jnp.any(m["finite"]))
