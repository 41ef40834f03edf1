"""bpjax.sweep: many runs vmapped in one program give the numbers of the runs trained one by one."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bpjax import init_params
from bpjax.data import load_mnist
from bpjax.optimizers import learning_rate_of, make_sweep_optimizer
from bpjax.sweep import (
    init_runs,
    run_grid,
    seed_keys,
    take_run,
    train_sequential,
    train_sweep,
)
from tests.helpers import max_rel_err

SIZES = (8, 6, 5, 3)


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


@pytest.mark.parametrize(
    "name, schedule, per_run_order",
    [("sgd", "constant", False), ("adam", "constant", True), ("nesterov", "cosine", False)],
)
def test_vmapped_sweep_equals_separate_runs(x64, name, schedule, per_run_order):
    x, labels, eval_sets = toy_data(jnp.float64)
    epochs, batch_size = 3, 16
    tx = make_sweep_optimizer(name, schedule=schedule, total_steps=epochs * 64 // batch_size)
    lrs, seeds = run_grid([0.05, 0.5], [0, 1])
    order_key = seed_keys(seeds + 100) if per_run_order else jax.random.key(9)
    kwargs = dict(
        epochs=epochs, batch_size=batch_size, order_key=order_key, eval_sets=eval_sets, n_classes=3
    )
    args = (tx, init_fn_for(jnp.float64), lrs, seed_keys(seeds), x, labels)
    together = train_sweep(*args, **kwargs)
    apart = train_sequential(*args, **kwargs)

    assert set(together.history) == {"train_cost", "finite", "val_cost", "val_accuracy"}
    for metric, values in together.history.items():
        assert values.shape == (epochs, 4)
        np.testing.assert_allclose(values, apart.history[metric], rtol=1e-10, atol=1e-12)
    assert max_rel_err(together.params, apart.params) < 1e-10
    np.testing.assert_allclose(learning_rate_of(together.opt_state), lrs)
    # The runs are really different runs: learning rates and seeds change the outcome.
    final_cost = together.history["train_cost"][-1]
    assert len(np.unique(np.round(final_cost, 10))) == 4


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


@pytest.mark.parametrize(
    "change, message",
    [
        ({"learning_rates": [0.1]}, "one learning rate per run"),
        ({"keys": jax.random.key(0)}, "1-d array"),
        ({"epochs": 0}, "epochs must be >= 1"),
        ({"batch_size": 65}, "batch_size must be in"),
        ({"order_key": seed_keys([1, 2, 3])}, "order_key must be one key or 2 keys"),
        ({"optimizer": optax.sgd(0.1)}, "holds no learning rate"),
    ],
)
@pytest.mark.parametrize("trainer", [train_sweep, train_sequential])
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
