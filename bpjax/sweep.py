"""Many training runs at once: the train step ``vmap``-ed over a leading run axis R.

Each run has its own initial params (its init key) and its own learning rate (kept in
``opt_state`` by ``bpjax.optimizers.make_sweep_optimizer``), so one compiled program trains a
whole learning-rate x seed grid::

    tx = make_sweep_optimizer("adam")
    lrs, seeds = run_grid([1e-3, 3e-3, 1e-2], [0, 1, 2])            # R = 9 runs
    init_fn = lambda key: init_params(key, (784, 16, 16, 10))
    result = train_sweep(tx, init_fn, lrs, seed_keys(seeds), x, labels, epochs=5,
                         batch_size=100, order_key=jax.random.key(0),
                         eval_sets={"test": (x_test, y_test)})
    result.history["test_accuracy"]                                  # (epochs, R)

Mini-batch order: ``order_key`` one key -> every run sees the same batches (each epoch's
batches are gathered once and shared, and the first layer's R products fold into one matrix
product); ``order_key`` of shape (R,) -> each run has its own order. Epoch e shuffles with
``fold_in(order_key, e)``.

``train_sequential`` takes the same arguments and trains the runs one after another with
``bpjax.train``'s single-run epoch; it gives the same numbers (to float rounding) and is the
baseline the vmapped sweep is measured against.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from bpjax.optimizers import set_learning_rate
from bpjax.spec import DEFAULT_SPEC, Spec
from bpjax.train import ApplyFn, evaluate, make_evaluate, make_sgd_epoch, make_train_step, sgd_epoch

InitFn = Callable[[jax.Array], Any]  # key -> params of one run
EvalSets = Mapping[str, tuple[jax.Array, jax.Array]]  # name -> (x (N, n_in), labels (N,))
# Called after every epoch with (epoch index, that epoch's metrics {name: (R,) numpy array}).
OnEpoch = Callable[[int, dict[str, np.ndarray]], None]


class SweepResult(NamedTuple):
    """Final ``params`` and ``opt_state`` with a leading run axis R; ``history`` maps a metric
    name to a float64 numpy array (epochs, R): ``train_cost`` (mean mini-batch cost of the
    epoch, before each update), ``finite`` (1.0 while every step stayed finite), and
    ``<set>_cost`` / ``<set>_accuracy`` for every evaluation set, after the epoch."""

    params: Any
    opt_state: Any
    history: dict[str, np.ndarray]


def run_grid(
    learning_rates: Sequence[float], seeds: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Every (learning rate, seed) pair, learning-rate major: two arrays of length
    ``len(learning_rates) * len(seeds)``; run ``i`` has rate ``i // n_seeds`` and seed
    ``i % n_seeds``."""
    lrs = np.asarray(learning_rates, dtype=np.float64).reshape(-1)
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
    if lrs.size == 0 or seeds.size == 0:
        raise ValueError("a sweep needs at least one learning rate and one seed")
    return np.repeat(lrs, seeds.size), np.tile(seeds, lrs.size)


def seed_keys(seeds: Sequence[int]) -> jax.Array:
    """One PRNG key per run, ``jax.random.key(seed)``: shape (R,)."""
    return jax.vmap(jax.random.key)(jnp.asarray(np.asarray(seeds), dtype=jnp.uint32))


def take_run(tree, i: int):
    """Run ``i`` of a pytree whose leaves have a leading run axis."""
    return jax.tree.map(lambda leaf: leaf[i], tree)


def init_one(optimizer: optax.GradientTransformation, init_fn: InitFn, key, learning_rate=None):
    """One run's ``(params, opt_state)``; ``learning_rate`` set in the state unless None."""
    params = init_fn(key)
    opt_state = optimizer.init(params)
    if learning_rate is not None:
        opt_state = set_learning_rate(opt_state, learning_rate)
    return params, opt_state


def init_runs(optimizer: optax.GradientTransformation, init_fn: InitFn, keys, learning_rates=None):
    """Stacked ``(params, opt_state)`` for R runs: ``keys`` (R,), ``learning_rates`` (R,) or None
    (then the optimizer's own rate for every run)."""
    _check_runs(keys, learning_rates)
    # Not jitted on purpose: eager vmap compiles each random-number primitive once per shape and
    # reuses it for every later sweep, where a fresh jit would recompile the whole init.
    if learning_rates is None:
        return jax.vmap(lambda k: init_one(optimizer, init_fn, k))(keys)
    lrs = jnp.asarray(np.asarray(learning_rates))
    return jax.vmap(lambda k, lr: init_one(optimizer, init_fn, k, lr))(keys, lrs)


def _check_runs(keys, learning_rates) -> None:
    if keys.ndim != 1 or keys.shape[0] < 1:
        raise ValueError(f"keys must be a 1-d array of R >= 1 PRNG keys, got shape {keys.shape}")
    if learning_rates is not None and np.shape(learning_rates) != keys.shape:
        raise ValueError(
            f"need one learning rate per run: {np.shape(learning_rates)} rates "
            f"for {keys.shape[0]} keys"
        )


def epoch_metrics(
    params,
    cost_per_step,
    finite_per_step,
    eval_sets: EvalSets,
    apply_fn,
    n_classes: int,
    *,
    spec: Spec = DEFAULT_SPEC,
) -> dict[str, jax.Array]:
    """One run's per-epoch summary: mean train cost, all-finite flag, and each eval set's
    cost and accuracy (scalars)."""
    out = {"train_cost": jnp.mean(cost_per_step), "finite": jnp.all(finite_per_step)}
    for name, (x, labels) in eval_sets.items():
        metrics = evaluate(params, x, labels, apply_fn, n_classes, spec=spec)
        out[f"{name}_cost"] = metrics["cost"]
        out[f"{name}_accuracy"] = metrics["accuracy"]
    return out


def make_sweep_epoch(
    optimizer: optax.GradientTransformation,
    batch_size: int,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    n_classes: int = 10,
    *,
    spec: Spec = DEFAULT_SPEC,
):
    """One compiled epoch of all runs, evaluation included:
    ``epoch(params, opt_state, x, labels, key, eval_sets) -> (params, opt_state, metrics)``.

    ``params``/``opt_state`` have a leading run axis R; ``x`` (N, n_in), ``labels`` (N,) and
    ``eval_sets`` are shared; ``key`` is one key (shared batch order) or (R,) keys. Every metric
    of ``epoch_metrics`` comes back with shape (R,). ``spec``: the model (``bpjax.Spec``).
    """
    step = make_train_step(optimizer, method, apply_fn, spec=spec)

    def one_run(params, opt_state, x, labels, key, eval_sets):
        params, opt_state, m = sgd_epoch(
            step, params, opt_state, x, labels, key, batch_size, n_classes
        )
        summary = epoch_metrics(
            params, m["cost"], m["finite"], eval_sets, apply_fn, n_classes, spec=spec
        )
        return params, opt_state, summary

    @jax.jit
    def epoch(params, opt_state, x, labels, key, eval_sets):
        key_axis = None if key.ndim == 0 else 0
        return jax.vmap(one_run, in_axes=(0, 0, None, None, key_axis, None))(
            params, opt_state, x, labels, key, eval_sets
        )

    return epoch


def epoch_key(order_key: jax.Array, epoch: int) -> jax.Array:
    """Epoch ``epoch``'s shuffle key(s): ``fold_in(order_key, epoch)``, for one key or (R,)."""
    if order_key.ndim == 0:
        return jax.random.fold_in(order_key, epoch)
    return jax.vmap(jax.random.fold_in, in_axes=(0, None))(order_key, epoch)


def _check_training(epochs: int, batch_size: int, n: int, order_key, n_runs: int) -> None:
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if not 1 <= batch_size <= n:
        raise ValueError(
            f"batch_size must be in [1, {n}] (the training set size), got {batch_size}"
        )
    if order_key.ndim not in (0, 1) or (order_key.ndim == 1 and order_key.shape[0] != n_runs):
        raise ValueError(f"order_key must be one key or {n_runs} keys, got shape {order_key.shape}")


def train_sweep(
    optimizer: optax.GradientTransformation,
    init_fn: InitFn,
    learning_rates,
    keys: jax.Array,
    x: jax.Array,
    labels: jax.Array,
    *,
    epochs: int,
    batch_size: int,
    order_key: jax.Array,
    eval_sets: EvalSets | None = None,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    n_classes: int = 10,
    on_epoch: OnEpoch | None = None,
    spec: Spec = DEFAULT_SPEC,
) -> SweepResult:
    """Train R runs together, one compiled (vmapped) program call per epoch.

    ``learning_rates`` (R,) (or None: the optimizer's own), ``keys`` (R,) init keys for
    ``init_fn``; ``x`` (N, n_in), ``labels`` (N,); ``order_key`` one key or (R,) keys (see the
    module docstring). ``optimizer`` must come from ``make_sweep_optimizer`` when
    ``learning_rates`` is given; ``spec`` is the model (``bpjax.Spec``). Returns a ``SweepResult``.
    """
    eval_sets = dict(eval_sets or {})
    _check_runs(keys, learning_rates)
    _check_training(epochs, batch_size, x.shape[0], order_key, keys.shape[0])
    params, opt_state = init_runs(optimizer, init_fn, keys, learning_rates)
    epoch_fn = make_sweep_epoch(optimizer, batch_size, method, apply_fn, n_classes, spec=spec)
    rows = []
    for e in range(epochs):
        params, opt_state, metrics = epoch_fn(
            params, opt_state, x, labels, epoch_key(order_key, e), eval_sets
        )
        row = {name: np.asarray(value, dtype=np.float64) for name, value in metrics.items()}
        rows.append(row)
        if on_epoch is not None:
            on_epoch(e, row)
    return SweepResult(params, opt_state, _stack_rows(rows))


def train_sequential(
    optimizer: optax.GradientTransformation,
    init_fn: InitFn,
    learning_rates,
    keys: jax.Array,
    x: jax.Array,
    labels: jax.Array,
    *,
    epochs: int,
    batch_size: int,
    order_key: jax.Array,
    eval_sets: EvalSets | None = None,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    n_classes: int = 10,
    on_epoch: OnEpoch | None = None,
    spec: Spec = DEFAULT_SPEC,
) -> SweepResult:
    """``train_sweep``'s runs one after another with ``bpjax.train.make_sgd_epoch`` (one
    compiled single-run epoch and one compiled evaluation, reused by every run).

    Same arguments and result layout as ``train_sweep``; ``on_epoch`` is called after each
    epoch of each run with that run's metrics as (1,) arrays.
    """
    eval_sets = dict(eval_sets or {})
    _check_runs(keys, learning_rates)
    n_runs = keys.shape[0]
    _check_training(epochs, batch_size, x.shape[0], order_key, n_runs)
    step = make_train_step(optimizer, method, apply_fn, spec=spec)
    epoch_fn = make_sgd_epoch(step, batch_size, n_classes)
    eval_fn = make_evaluate(apply_fn, n_classes, spec=spec)
    lrs = None if learning_rates is None else jnp.asarray(np.asarray(learning_rates))
    finals, histories = [], []
    for r in range(n_runs):
        params, opt_state = init_one(optimizer, init_fn, keys[r], None if lrs is None else lrs[r])
        run_key = order_key if order_key.ndim == 0 else order_key[r]
        rows = []
        for e in range(epochs):
            params, opt_state, m = epoch_fn(
                params, opt_state, x, labels, jax.random.fold_in(run_key, e)
            )
            row = {"train_cost": jnp.mean(m["cost"]), "finite": jnp.all(m["finite"])}
            for name, (xe, le) in eval_sets.items():
                metrics = eval_fn(params, xe, le)
                row[f"{name}_cost"] = metrics["cost"]
                row[f"{name}_accuracy"] = metrics["accuracy"]
            row = {k: np.asarray(v, dtype=np.float64).reshape(1) for k, v in row.items()}
            rows.append(row)
            if on_epoch is not None:
                on_epoch(e, row)
        finals.append((params, opt_state))
        histories.append(_stack_rows(rows))
    params, opt_state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *finals)
    history = {k: np.concatenate([h[k] for h in histories], axis=1) for k in histories[0]}
    return SweepResult(params, opt_state, history)


def _stack_rows(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.stack([row[name] for row in rows]) for name in rows[0]}
