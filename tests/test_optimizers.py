"""bpjax.optimizers: names resolve, every optimizer lowers the cost, bad input fails clearly."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from bpjax import cost
from bpjax.optimizers import (
    OPTIMIZERS,
    SCHEDULES,
    available_optimizers,
    learning_rate_multiplier,
    learning_rate_of,
    make_optimizer,
    make_sweep_optimizer,
    optimizer_kwargs,
    set_learning_rate,
)
from bpjax.train import make_train_step
from tests.helpers import max_rel_err, random_problem, tiered

SIZES = (6, 5, 4)
# A learning rate that each optimizer handles on the small problem.
GOOD_LR = {
    "sgd": 1.0,
    "momentum": 0.3,
    "nesterov": 0.3,
    "adam": 0.03,
    "adamw": 0.03,
    "rmsprop": 0.01,
    "adagrad": 0.3,
    "lion": 0.03,
}


def train(tx, params, xs, ys, steps):
    """``steps`` full-batch steps in one compiled scan; returns (params, all steps finite)."""
    step = make_train_step(tx)

    @jax.jit
    def run(params):
        def body(carry, _):
            p, s, m = step(*carry, xs, ys)
            return (p, s), m["finite"]

        (params, _), finite = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
        return params, jnp.all(finite)

    return run(params)


def update_sequence(tx, params, n):
    """The updates ``tx`` makes over ``n`` calls with a fixed sequence of random gradients."""
    keys = jax.random.split(jax.random.key(7), n)
    state, out = tx.init(params), []
    for key in keys:
        grads = jax.tree.map(
            lambda leaf, k=key: jax.random.normal(k, leaf.shape, leaf.dtype), params
        )
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        out.append(updates)
    return out


def small_params():
    """A tiny params pytree in the default float dtype (float64 under the x64 fixture)."""
    return {"w": jnp.linspace(-1.0, 1.0, 6).reshape(2, 3), "b": jnp.array([0.5, -0.25])}


def test_compared_optimizers_are_available():
    assert set(OPTIMIZERS) <= set(available_optimizers())
    assert {"lion", "adabelief", "sgd"} <= set(available_optimizers())  # optax's, by name
    assert "lbfgs" not in available_optimizers()


@pytest.mark.parametrize("name", tiered(OPTIMIZERS + ("lion",), ["sgd", "adam", "lion"]))
def test_each_optimizer_lowers_the_cost(name):
    params, xs, ys = random_problem(0, SIZES, batch=32)
    trained, finite = train(make_optimizer(name, GOOD_LR[name]), params, xs, ys, steps=50)
    assert bool(finite)
    assert float(cost(trained, xs, ys)) < 0.8 * float(cost(params, xs, ys))


def test_every_available_name_resolves_to_an_optimizer():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # noisy_sgd warns that it wants an explicit key
        for name in available_optimizers():
            assert isinstance(make_optimizer(name, 1e-3), optax.GradientTransformation), name


@pytest.mark.parametrize("name, kwargs", [("momentum", {}), ("nesterov", {"nesterov": True})])
def test_presets_are_sgd_with_momentum(name, kwargs):
    ours = update_sequence(make_optimizer(name, 0.1), small_params(), 3)
    ref = update_sequence(optax.sgd(0.1, momentum=0.9, **kwargs), small_params(), 3)
    assert max_rel_err(ours, ref) == 0.0


def test_kwargs_reach_optax():
    ours = update_sequence(make_optimizer("adam", 0.01, b1=0.5), small_params(), 3)
    ref = update_sequence(optax.adam(0.01, b1=0.5), small_params(), 3)
    default = update_sequence(optax.adam(0.01), small_params(), 3)
    assert max_rel_err(ours, ref) == 0.0
    assert max_rel_err(ours, default) > 1e-3


def test_factory_and_ready_transformation_are_accepted():
    tx = optax.sgd(0.1)
    assert make_optimizer(tx) is tx
    assert isinstance(make_optimizer(optax.lion, 1e-3, b1=0.8), optax.GradientTransformation)


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown optimizer 'adamm'.*adam, adamax"):
        make_optimizer("adamm", 1e-3)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: make_optimizer("adam", 1e-3, beta1=0.9), "no option 'beta1'.*b1, b2"),
        (lambda: make_sweep_optimizer("sgd", nesterof=True), "no option 'nesterof'.*momentum"),
        (lambda: make_optimizer("sgd", 1.0, momentum="fast"), "'sgd' cannot make an update"),
        (lambda: make_optimizer("sgd", 1.0, learning_rate=2.0), "multiple values|learning_rate"),
        (lambda: make_optimizer("sgd", -1.0), "finite and > 0"),
        (lambda: make_optimizer("sgd", float("nan")), "finite and > 0"),
        (lambda: make_optimizer("sgd"), "needs a learning_rate"),
        (lambda: make_optimizer("lbfgs", 1.0), "line search"),
        (lambda: make_optimizer("sgd", 1.0, schedule="cos", total_steps=9), "unknown schedule"),
        (lambda: make_optimizer("sgd", 1.0, schedule="cosine"), "needs total_steps"),
        (lambda: make_optimizer(optax.sgd(1.0), 0.1), "ready GradientTransformation"),
        (lambda: set_learning_rate(optax.sgd(1.0).init({"w": jnp.ones(2)}), 0.1), "no learning"),
    ],
)
def test_bad_input_fails_clearly(call, message):
    with pytest.raises((ValueError, TypeError), match=message):
        call()


def test_optimizer_kwargs_lists_options():
    assert "weight_decay" in optimizer_kwargs("adamw")
    assert "learning_rate" not in optimizer_kwargs("adamw")


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_schedules_peak_at_one_and_end_low(schedule):
    fn = learning_rate_multiplier(schedule, total_steps=100)
    values = np.array([float(fn(t)) for t in range(101)])
    assert values.max() == pytest.approx(1.0)
    assert values[-1] == pytest.approx(1.0 if schedule == "constant" else 0.0, abs=1e-6)


@pytest.mark.parametrize(
    "name, schedule",
    tiered(
        [
            ("sgd", "warmup_cosine"),
            ("adam", "constant"),
            ("adamw", "cosine"),
            ("nesterov", "linear"),
        ],
        [("sgd", "warmup_cosine"), ("adam", "constant")],
        several=True,
    ),
)
def test_sweep_optimizer_equals_the_plain_one(x64, name, schedule):
    """The learning rate stored in opt_state (inject_hyperparams) and the schedule as a chained
    multiplier make the same updates as the optimizer built with that rate and schedule, to
    float32 rounding: optax evaluates schedules in float32, and the plain optimizer rounds
    lr * schedule there while the sweep's multiplies the float64 rate by it."""
    params = small_params()
    lr = 0.05
    plain = make_optimizer(name, lr, schedule=schedule, total_steps=10)
    sweep_tx = make_sweep_optimizer(name, schedule=schedule, total_steps=10)
    state = set_learning_rate(sweep_tx.init(params), lr)
    assert float(learning_rate_of(state)) == lr and learning_rate_of(state).dtype == jnp.float64
    with_rate = optax.GradientTransformation(sweep_tx.init, sweep_tx.update)
    with_rate = with_rate._replace(init=lambda p: set_learning_rate(sweep_tx.init(p), lr))
    ours = update_sequence(with_rate, params, 8)
    ref = update_sequence(plain, params, 8)
    assert max_rel_err(ours, ref) < 1e-6
    unscheduled = update_sequence(make_optimizer(name, lr), params, 8)
    assert (max_rel_err(ours, unscheduled) > 1e-3) == (schedule != "constant")
