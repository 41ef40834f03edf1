"""The training driver ``bpjax.fit``: epochs, timing, finiteness, callbacks, resuming."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax
from bpjax import train
from bpjax.fit import Diverged, fit


def toy_epoch(bad_epoch=None, bad="cost"):
    """An epoch function over a scalar 'params': adds 1; at ``bad_epoch`` the cost (or the
    params, with a finite cost) turns NaN."""

    @jax.jit
    def epoch(params, opt_state, e):
        broken = e == (bad_epoch if bad_epoch is not None else -1)
        new = params + 1.0
        cost = jnp.stack([params, params + 0.5])
        if bad == "cost":
            cost = jnp.where(broken, jnp.nan, cost)
        else:
            new = jnp.where(broken, jnp.inf, new)
        finite = jnp.isfinite(cost) & jnp.isfinite(new)
        return new, opt_state + 1, {"cost": cost, "finite": finite}

    return epoch


def test_fit_runs_the_epochs_and_reports_each():
    seen = []
    result = fit(
        toy_epoch(),
        jnp.float32(0),
        jnp.int32(0),
        epochs=3,
        epoch_args=lambda e: (e,),
        evaluate=lambda p: {"value": float(p)},
        on_epoch=lambda e, p, s, hist, m: seen.append((e, float(p), len(hist))),
    )
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [r["value"] for r in result.history] == [1.0, 2.0, 3.0]
    assert [r["step_cost"] for r in result.history] == [0.25, 1.25, 2.25]
    assert seen == [(1, 1.0, 1), (2, 2.0, 2), (3, 3.0, 3)]
    times = [r["train_time_s"] for r in result.history]
    assert times == sorted(times) and result.compile_s > 0
    assert int(result.opt_state) == 3


def test_fit_continues_from_a_history():
    first = fit(toy_epoch(), jnp.float32(0), jnp.int32(0), epochs=2, epoch_args=lambda e: (e,))
    rest = fit(
        toy_epoch(),
        first.params,
        first.opt_state,
        epochs=4,
        start_epoch=2,
        history=first.history,
        epoch_args=lambda e: (e,),
    )
    whole = fit(toy_epoch(), jnp.float32(0), jnp.int32(0), epochs=4, epoch_args=lambda e: (e,))
    assert [r["step_cost"] for r in rest.history] == [r["step_cost"] for r in whole.history]
    assert rest.history[-1]["train_time_s"] >= first.history[-1]["train_time_s"]


@pytest.mark.parametrize(
    "bad, words", [("cost", "the cost became nan"), ("params", "the params became NaN/inf")]
)
def test_a_non_finite_epoch_raises_with_the_last_finite_state(bad, words):
    with pytest.raises(Diverged, match=words) as err:
        fit(
            toy_epoch(bad_epoch=2, bad=bad),
            jnp.float32(0),
            jnp.int32(0),
            epochs=5,
            epoch_args=lambda e: (e,),
        )
    assert err.value.epoch == 3  # epoch index 2 is the third epoch
    assert float(err.value.params) == 2.0 and int(err.value.opt_state) == 2
    assert [r["epoch"] for r in err.value.history] == [1, 2]


def test_check_finite_off_keeps_going():
    result = fit(
        toy_epoch(bad_epoch=0),
        jnp.float32(0),
        jnp.int32(0),
        epochs=2,
        epoch_args=lambda e: (e,),
        check_finite=False,
    )
    assert np.isnan(result.history[0]["step_cost"])


def test_until_stops_early():
    result = fit(
        toy_epoch(),
        jnp.float32(0),
        jnp.int32(0),
        epochs=100,
        epoch_args=lambda e: (e,),
        until=lambda row: row["epoch"] == 4,
    )
    assert len(result.history) == 4


@pytest.mark.slow  # end to end on real digits
def test_fit_trains_a_real_network_and_the_cost_falls(key):
    ds = bpjax.data.load_mnist(source="mnist5k", verbose=False)
    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    params = bpjax.init_params(key, (784, 16, 10))
    tx = optax.sgd(3.0)
    epoch_fn = train.make_sgd_epoch(train.make_train_step(tx), 20)
    eval_fn = train.make_evaluate()
    result = fit(
        epoch_fn,
        params,
        tx.init(params),
        epochs=3,
        epoch_args=lambda e: (x, y, jax.random.fold_in(jax.random.key(1), e)),
        evaluate=lambda p: {"accuracy": float(eval_fn(p, x, y)["accuracy"])},
    )
    costs = [r["step_cost"] for r in result.history]
    assert costs[-1] < costs[0] and result.history[-1]["accuracy"] > 0.6


def test_a_real_epoch_whose_params_overflow_raises_diverged_naming_the_params(key):
    """The params check end to end: train.make_sgd_epoch's ``finite`` flag through fit's guard,
    with every cost finite (one step per epoch; the third step's update is +inf)."""
    k_p, k_x, k_y = jax.random.split(key, 3)
    params = bpjax.init_params(k_p, (6, 4, 3))
    x = jax.random.uniform(k_x, (8, 6))
    labels = jax.random.randint(k_y, (8,), 0, 3)
    blow_up_at_step_3 = optax.chain(
        optax.sgd(0.1), optax.scale_by_schedule(lambda n: jnp.where(n == 2, jnp.inf, 1.0))
    )
    epoch_fn = train.make_sgd_epoch(train.make_train_step(blow_up_at_step_3), 8, n_classes=3)
    with pytest.raises(Diverged, match=r"epoch 3, step 1: the params became NaN/inf") as err:
        fit(
            epoch_fn,
            params,
            blow_up_at_step_3.init(params),
            epochs=5,
            epoch_args=lambda e: (x, labels, jax.random.key(e)),
        )
    assert err.value.epoch == 3 and len(err.value.history) == 2
    assert bool(train.all_finite(err.value.params))
