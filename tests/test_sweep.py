"""bpjax.sweep: many runs trained in one program give the numbers of the runs trained one by one,
on one device or with the runs split over several."""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bpjax import Spec, init_params
from bpjax.data import load_mnist
from bpjax.optimizers import learning_rate_of, make_sweep_optimizer
from bpjax.sweep import (
    init_runs,
    make_sweep_epoch,
    run_grid,
    runs_mesh,
    seed_keys,
    take_run,
    train_sequential,
    train_sweep,
)
from tests.helpers import made_once, max_rel_err

ROOT = Path(__file__).resolve().parents[1]
SIZES = (8, 6, 5, 3)
SOFTMAX = Spec(hidden="tanh", output="softmax", cost="log_likelihood")


def toy_data(dtype):
    """A small learnable problem: the label is the argmax of three fixed linear features."""
    kx, kw = jax.random.split(jax.random.key(42))
    x = jax.random.uniform(kx, (96, SIZES[0]), dtype=dtype)
    labels = jnp.argmax(x @ jax.random.normal(kw, (SIZES[0], SIZES[-1]), dtype=dtype), axis=1)
    return x[:64], labels[:64], {"val": (x[64:], labels[64:])}


def init_fn_for(dtype):
    return lambda key: init_params(key, SIZES, dtype=dtype)


def test_run_grid_is_learning_rate_major():
    lrs, seeds = run_grid([0.1, 1.0], [3, 4, 5])
    np.testing.assert_array_equal(lrs, [0.1, 0.1, 0.1, 1.0, 1.0, 1.0])
    np.testing.assert_array_equal(seeds, [3, 4, 5, 3, 4, 5])
    with pytest.raises(ValueError, match="at least one"):
        run_grid([], [0])


SWEEPS = [  # optimizer, schedule, one order per run, gradient method, model
    ("sgd", "constant", False, "autodiff", Spec()),  # all runs' products at once, one order
    ("adam", "constant", True, "autodiff", Spec()),  # ... one order per run
    ("nesterov", "cosine", False, "backprop", Spec()),  # bpjax.train's step vmapped over runs
    ("momentum", "constant", True, "backprop", Spec()),
    ("adam", "constant", False, "autodiff", SOFTMAX),  # an activation that mixes its neurons
]


@pytest.mark.parametrize(
    "name, schedule, per_run_order, method, spec",
    [
        s if i < 1 else pytest.param(*s, marks=pytest.mark.slow)  # each compiles two programs
        for i, s in enumerate(SWEEPS)
    ],
)
def test_sweep_equals_separate_runs(x64, name, schedule, per_run_order, method, spec):
    x, labels, eval_sets = toy_data(jnp.float64)
    epochs, batch_size = 3, 16
    tx = make_sweep_optimizer(name, schedule=schedule, total_steps=epochs * 64 // batch_size)
    lrs, seeds = run_grid([0.05, 0.5], [0, 1])
    order_key = seed_keys(seeds + 100) if per_run_order else jax.random.key(9)
    kwargs = dict(
        epochs=epochs,
        batch_size=batch_size,
        order_key=order_key,
        eval_sets=eval_sets,
        n_classes=3,
        method=method,
        spec=spec,
    )
    args = (tx, init_fn_for(jnp.float64), lrs, seed_keys(seeds), x, labels)
    together = train_sweep(*args, **kwargs)
    apart = train_sequential(*args, **kwargs)

    assert set(together.history) == {"train_cost", "finite", "val_cost", "val_accuracy"}
    for metric, values in together.history.items():
        assert values.shape == (epochs, 4)
        np.testing.assert_allclose(values, apart.history[metric], rtol=1e-10, atol=1e-12)
    assert max_rel_err(together.params, apart.params) < 1e-10
    assert max_rel_err(together.opt_state, apart.opt_state) < 1e-10
    np.testing.assert_allclose(learning_rate_of(together.opt_state), lrs)
    # The runs are really different runs: learning rates and seeds change the outcome.
    final_cost = together.history["train_cost"][-1]
    assert len(np.unique(np.round(final_cost, 10))) == 4


@pytest.mark.slow  # two epochs of six runs, then six plain trainings
def test_sweep_runs_match_a_plain_optax_training(x64):
    """A run inside the sweep is exactly the run bpjax.train would do with optax.adam(lr)."""
    from bpjax.train import make_sgd_epoch, make_train_step

    x, labels, _ = toy_data(jnp.float64)
    lrs, seeds = run_grid([0.01, 0.1], [5])
    order_key = jax.random.key(1)
    result = train_sweep(
        make_sweep_optimizer("adam"),
        init_fn_for(jnp.float64),
        lrs,
        seed_keys(seeds),
        x,
        labels,
        epochs=2,
        batch_size=16,
        order_key=order_key,
        n_classes=3,
    )
    for r, lr in enumerate(lrs):
        tx = optax.adam(lr)
        params = init_fn_for(jnp.float64)(jax.random.key(int(seeds[r])))
        opt_state = tx.init(params)
        epoch = make_sgd_epoch(make_train_step(tx), 16, n_classes=3)
        for e in range(2):
            key = jax.random.fold_in(order_key, e)
            params, opt_state, _ = epoch(params, opt_state, x, labels, key)
        assert max_rel_err(take_run(result.params, r), params) < 1e-10


@pytest.mark.parametrize("method", ["autodiff", pytest.param("backprop", marks=pytest.mark.slow)])
@pytest.mark.slow  # a sweep and a separate run
def test_a_diverging_run_is_flagged_as_the_separate_run_is(method):
    """``finite`` comes from the costs and one check of the final params (no per-step check):
    the same flags as bpjax.train's checked steps, run by run."""
    x, labels, eval_sets = toy_data(jnp.float32)
    kwargs = dict(
        epochs=2,
        batch_size=16,
        order_key=jax.random.key(3),
        eval_sets=eval_sets,
        n_classes=3,
        method=method,
    )
    # An infinite rate: the first update makes the params inf or NaN.
    args = (make_sweep_optimizer("sgd"), init_fn_for(jnp.float32), [0.5, np.inf], seed_keys([0, 0]))
    together = train_sweep(*args, x, labels, **kwargs)
    apart = train_sequential(*args, x, labels, **kwargs)
    np.testing.assert_array_equal(together.history["finite"], [[1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_array_equal(together.history["finite"], apart.history["finite"])
    np.testing.assert_allclose(
        together.history["val_cost"][:, 0], apart.history["val_cost"][:, 0], rtol=1e-5
    )
    assert not np.isfinite(np.asarray(together.params[0]["w"][1])).all()


@pytest.mark.slow  # compiles and reads the HLO
def test_one_order_makes_the_first_layer_one_matrix_product():
    """With one batch order and bpjax's network the R first-layer products w x^T are one
    (R n_1, n_in) @ (n_in, B) product; through bpjax.train's step (method="backprop") they are
    R products, batched over the runs."""
    x, labels, _ = toy_data(jnp.float32)
    tx = make_sweep_optimizer("sgd")
    params, opt_state = init_runs(tx, init_fn_for(jnp.float32), seed_keys([0, 1, 2]))
    wide = f"tensor<{3 * SIZES[1]}x{SIZES[0]}xf32>"  # the stacked first-layer weights

    def program(method, key):
        epoch = make_sweep_epoch(tx, 16, method, n_classes=3)
        return epoch.lower(params, opt_state, x, labels, key, {}).as_text()

    assert wide in program("autodiff", jax.random.key(0))
    assert wide not in program("backprop", jax.random.key(0))
    assert wide not in program("autodiff", seed_keys([4, 5, 6]))  # one order a run: R products


@pytest.mark.slow  # two sweeps
def test_shard_runs_on_one_device_is_the_plain_sweep():
    x, labels, eval_sets = toy_data(jnp.float32)
    args = (make_sweep_optimizer("sgd"), init_fn_for(jnp.float32), [0.1, 1.0], seed_keys([0, 1]))
    kwargs = dict(
        epochs=2, batch_size=16, order_key=jax.random.key(2), eval_sets=eval_sets, n_classes=3
    )
    plain = train_sweep(*args, x, labels, **kwargs)
    split = train_sweep(*args, x, labels, **kwargs, shard_runs=runs_mesh(jax.devices()[:1]))
    for a, b in zip(jax.tree.leaves(split), jax.tree.leaves(plain), strict=True):
        np.testing.assert_array_equal(a, b)  # the same program on the same shapes


@pytest.mark.slow  # end to end on real digits
def test_sweep_learns_mnist5k():
    """End to end on real digits: 6 runs of a 784-16-10 sigmoid net, 3 epochs on 2,000 images."""
    ds = load_mnist("mnist5k", verbose=False)
    x, labels = jnp.asarray(ds.x_train[:2000]), jnp.asarray(ds.y_train[:2000])
    test = (jnp.asarray(ds.x_test), jnp.asarray(ds.y_test))
    lrs, seeds = run_grid([0.01, 3.0], [0, 1, 2])
    result = train_sweep(
        make_sweep_optimizer("sgd"),
        lambda k: init_params(k, (784, 16, 10)),
        lrs,
        seed_keys(seeds),
        x,
        labels,
        epochs=3,
        batch_size=20,
        order_key=jax.random.key(0),
        eval_sets={"test": test},
    )
    acc = result.history["test_accuracy"]
    assert acc.shape == (3, 6)
    assert np.all(result.history["finite"] == 1.0)
    assert np.all(acc[-1, 3:] > 0.8)  # lr 3: learns
    assert np.all(acc[-1, :3] < 0.5)  # lr 0.01: barely moves in 300 steps


def test_init_runs_stacks_runs_with_their_rates():
    tx = make_sweep_optimizer("momentum")
    keys = seed_keys([0, 1, 0])
    params, opt_state = init_runs(tx, init_fn_for(jnp.float32), keys, [1.0, 2.0, 3.0])
    assert params[0]["w"].shape == (3, SIZES[1], SIZES[0])
    np.testing.assert_array_equal(learning_rate_of(opt_state), [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(params[0]["w"][0], params[0]["w"][2])  # same seed, same init
    assert not np.array_equal(params[0]["w"][0], params[0]["w"][1])


BAD = [
    ({"learning_rates": [0.1]}, "one learning rate per run"),
    ({"keys": jax.random.key(0)}, "1-d array"),
    ({"epochs": 0}, "epochs must be >= 1"),
    ({"batch_size": 65}, "batch_size must be in"),
    ({"order_key": seed_keys([1, 2, 3])}, "order_key must be one key or 2 keys"),
    ({"optimizer": optax.sgd(0.1)}, "holds no learning rate"),
]


@pytest.mark.parametrize(
    "trainer, change, message",
    [(t, c, m) for t in (train_sweep, train_sequential) for c, m in BAD]
    + [
        (
            train_sweep,
            {"shard_runs": jax.make_mesh((1,), ("data",))},
            "needs a 'runs' axis",
        )
    ],
)
def test_bad_sweeps_fail_clearly(trainer, change, message):
    x, labels, _ = toy_data(jnp.float32)
    args = dict(
        optimizer=make_sweep_optimizer("sgd"),
        init_fn=init_fn_for(jnp.float32),
        learning_rates=[0.1, 0.2],
        keys=seed_keys([0, 1]),
        x=x,
        labels=labels,
        epochs=1,
        batch_size=16,
        order_key=jax.random.key(0),
        n_classes=3,
    )
    args.update(change)
    with pytest.raises(ValueError, match=message):
        trainer(**args)


# --- The run axis split over 8 CPU devices, in a subprocess (tests/sweep_worker.py) -----------


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """The worker's measurements, run once per session (whichever xdist worker asks first)."""
    # The suite's XLA flags (tests/conftest.py: cheap compiles) kept, the device count added.
    xla_flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", XLA_FLAGS=xla_flags.strip())

    def run_worker(out):
        done = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "sweep_worker.py"), str(out)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return made_once(tmp_path_factory, "sweep_eight", run_worker)[1]


@pytest.mark.slow
@pytest.mark.parametrize("order", ["shared", "per_run"])
@pytest.mark.parametrize("method", ["autodiff", "backprop"])
def test_runs_split_over_eight_devices_equal_the_one_device_sweep(eight, order, method):
    assert eight["n_devices"] == 8
    r = eight[f"{order}_{method}"]
    assert r["moved"] > 0.1  # otherwise "equal" would prove little
    assert r["params_rel_err"] < 1e-12  # float64
    assert r["history_max_abs_err"] < 1e-12 and r["history_keys_equal"] and r["finite_equal"]
    assert r["w_spec"] == "P('runs',)" and r["w_devices"] == 8 and r["w_shape"] == [16, 8, 20]


@pytest.mark.slow
def test_runs_split_over_a_smaller_mesh_and_uneven_splits_fail(eight):
    assert eight["four_devices"]["w_devices"] == 4
    assert eight["four_devices"]["params_rel_err"] < 1e-12
    message = eight["uneven_error"]
    assert "12 runs" in message and "8 devices" in message and "multiple of 8" in message


@pytest.mark.slow
def test_split_runs_need_no_communication(eight):
    assert eight["hlo_collectives"] == 0


@pytest.mark.slow
def test_a_split_epoch_trains_through_fit(eight):
    """bpjax.fit compiles ahead of time and calls the executable with unplaced arrays."""
    assert eight["fit_params_rel_err"] < 1e-12


@pytest.mark.slow
def test_compare_optimizers_shard_runs(eight):
    assert eight["cli_history_max_abs_err"] < 1e-5  # float32, other GEMM shapes
    status, line = eight["cli_uneven"]
    assert status == 2 and line.startswith("compare_optimizers: error: --shard-runs: ")
    assert "6 runs of sgd" in line and "8 devices" in line
