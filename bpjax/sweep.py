"""Many training runs at once: one compiled program trains R runs along a leading run axis.

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

Mini-batch order: ``order_key`` one key -> every run sees the same batches (each step's batch
is gathered once and shared, and the first layer's R products are one matrix product);
``order_key`` of shape (R,) -> each run has its own order. Epoch e shuffles with
``fold_in(order_key, e)``.

How a step is computed (``bpjax.runs_step``): with one batch order, bpjax's own network and
``method="autodiff"``, ``runs_costs`` writes the forward pass of all R runs at once,
column-wise (``z = w a + b`` with ``a`` of shape (n_in, B) per run, the first layer one matrix
product for all runs), and
``jax.grad`` of the sum of the runs' mean costs gives every run its own gradient. Otherwise
(``apply_fn``, another ``method``, one order per run) ``bpjax.train``'s step is ``vmap``-ped over
the runs. Both give each run the numbers of ``train_sequential`` up to float rounding; the
sweep pays off with one order, where the runs share each batch (see docs/performance.md).

``shard_runs=True`` splits the run axis over every device (a 1-D ``jax.sharding.Mesh``, axis
``"runs"``; ``runs_mesh``), data replicated: each device trains R / n_devices runs, with no
communication. R must be a multiple of the device count (a ValueError says so otherwise).

``train_sequential`` takes the same arguments and trains the runs one after another with
``bpjax.train``'s single-run epoch; it is the baseline the sweep is tested and measured against.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from bpjax.cost import one_hot
from bpjax.data.batching import epoch_batches
from bpjax.data.pixels import as_inputs, input_dtype, take_rows
from bpjax.optimizers import set_learning_rate
from bpjax.runs_step import RunsStep, make_runs_step
from bpjax.spec import DEFAULT_SPEC, Spec
from bpjax.train import (
    ApplyFn,
    all_finite,
    evaluate,
    make_evaluate,
    make_sgd_epoch,
    make_train_step,
)

InitFn = Callable[[jax.Array], Any]  # key -> params of one run
EvalSets = Mapping[str, tuple[jax.Array, jax.Array]]  # name -> (x (N, n_in), labels (N,))
# Called after every epoch with (epoch index, that epoch's metrics {name: (R,) numpy array}).
OnEpoch = Callable[[int, dict[str, np.ndarray]], None]

RUNS = "runs"  # the mesh axis the run axis is split over


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


# --- One epoch of every run --------------------------------------------------------------------


def sweep_epoch(
    runs_step: RunsStep,
    params,
    opt_state,
    x,
    labels,
    key,
    batch_size: int,
    n_classes: int = 10,
):
    """One epoch of all R runs in one ``lax.scan``: ``(params, opt_state, metrics)``.

    ``x`` (N, n_in) in any image form (``bpjax.data.as_inputs``), ``labels`` (N,); ``key`` one
    key (one order: each step's batch gathered once) or (R,) keys. ``metrics``: ``train_cost``
    and ``finite``, each (R,). The batches are ``bpjax.data.epoch_batches``, as in
    ``bpjax.train.sgd_epoch``.
    """
    n = x.shape[0]
    dtype = input_dtype(params, x)
    if key.ndim == 0:
        batches = epoch_batches(key, n, batch_size)  # (steps, B)
    else:  # (steps, R, B)
        batches = jnp.swapaxes(jax.vmap(lambda k: epoch_batches(k, n, batch_size))(key), 0, 1)

    def body(carry, idx):
        flat = idx.reshape(-1)
        xb = as_inputs(take_rows(x, flat), dtype).reshape(*idx.shape, -1)
        yb = one_hot(labels[flat], n_classes, dtype=dtype).reshape(*idx.shape, n_classes)
        params, opt_state, cost = runs_step(*carry, xb, yb)
        return (params, opt_state), cost

    (params, opt_state), costs = jax.lax.scan(body, (params, opt_state), batches)
    # optax adds each update to the params, and NaN or inf plus anything stays NaN or inf: finite
    # final params mean every step's params were finite. So "every step finite" is one check of
    # the final params, with no per-step check and no replay (bpjax.train.sgd_epoch's are for
    # per-step flags, which a sweep does not report).
    finite = jnp.all(jnp.isfinite(costs), axis=0) & jax.vmap(all_finite)(params)
    return params, opt_state, {"train_cost": jnp.mean(costs, axis=0), "finite": finite}


def runs_mesh(devices=None) -> Mesh:
    """A 1-D mesh with axis ``"runs"`` over ``devices`` (default: every device)."""
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("runs_mesh needs at least one device")
    return jax.make_mesh((len(devices),), (RUNS,), axis_types=(AxisType.Auto,), devices=devices)


def _mesh_of(shard_runs: bool | Mesh) -> Mesh | None:
    if isinstance(shard_runs, Mesh):
        if RUNS not in shard_runs.axis_names:
            raise ValueError(
                f"the mesh needs a {RUNS!r} axis (runs_mesh), got {shard_runs.axis_names}"
            )
        return shard_runs
    return runs_mesh() if shard_runs else None


def check_runs_split(n_runs: int, mesh: Mesh) -> None:
    """ValueError unless ``n_runs`` splits evenly over the mesh's ``"runs"`` axis."""
    n_devices = mesh.shape[RUNS]
    if n_runs % n_devices:
        raise ValueError(
            f"{n_runs} runs do not split over the {n_devices} devices of the {RUNS!r} mesh axis; "
            f"use a multiple of {n_devices} runs, or a mesh of fewer devices "
            "(shard_runs=runs_mesh(jax.devices()[:k]))"
        )


class _Placed:
    """``fn`` (jitted, lowered or compiled) called with its arguments placed by ``place`` first;
    ``lower(...).compile()`` keeps placing them, as ``bpjax.fit``'s ahead-of-time compile needs.
    """

    def __init__(self, fn, place):
        self.fn, self.place = fn, place

    def __call__(self, *args):
        return self.fn(*self.place(*args))

    def lower(self, *args):
        return _Placed(self.fn.lower(*self.place(*args)), self.place)

    def compile(self):
        return _Placed(self.fn.compile(), self.place)

    def as_text(self) -> str:
        return self.fn.as_text()


def _split_over_runs(epoch, mesh: Mesh) -> _Placed:
    """``epoch`` with its run axis split over ``mesh``: params, opt_state and a (R,) key by
    runs, the data and evaluation sets whole on every device. Each device runs ``epoch`` on its
    own runs; nothing is communicated."""
    runs, whole = P(RUNS), P()

    @jax.jit
    def split(params, opt_state, x, labels, key, eval_sets):
        key_spec = whole if key.ndim == 0 else runs
        specs = (runs, runs, whole, whole, key_spec, whole)
        return jax.shard_map(epoch, mesh=mesh, in_specs=specs, out_specs=runs)(
            params, opt_state, x, labels, key, eval_sets
        )

    def place(params, opt_state, x, labels, key, eval_sets):
        check_runs_split(jax.tree.leaves(params)[0].shape[0], mesh)
        by_runs, on_all = NamedSharding(mesh, runs), NamedSharding(mesh, whole)
        # A no-op for arrays already placed so (train_sweep places the data once).
        return (
            *jax.device_put((params, opt_state), by_runs),
            *jax.device_put((x, labels), on_all),
            jax.device_put(key, on_all if key.ndim == 0 else by_runs),
            jax.device_put(eval_sets, on_all),
        )

    return _Placed(split, place)


def make_sweep_epoch(
    optimizer: optax.GradientTransformation,
    batch_size: int,
    method: str = "autodiff",
    apply_fn: ApplyFn | None = None,
    n_classes: int = 10,
    *,
    spec: Spec = DEFAULT_SPEC,
    shard_runs: bool | Mesh = False,
):
    """One compiled epoch of all runs, evaluation included:
    ``epoch(params, opt_state, x, labels, key, eval_sets) -> (params, opt_state, metrics)``.

    ``params``/``opt_state`` have a leading run axis R; ``x`` (N, n_in), ``labels`` (N,) and
    ``eval_sets`` are shared; ``key`` is one key (shared batch order) or (R,) keys. ``metrics``:
    ``train_cost``, ``finite`` and each eval set's ``<set>_cost`` / ``<set>_accuracy``, all (R,).
    ``spec``: the model (``bpjax.Spec``). ``shard_runs``: True splits the runs over every device,
    or give a mesh with a ``"runs"`` axis (``runs_mesh``); R must be a multiple of its size.
    """
    runs_step = make_runs_step(optimizer, method, apply_fn, spec=spec)

    def evaluate_runs(params, x, labels):
        one = functools.partial(evaluate, apply_fn=apply_fn, n_classes=n_classes, spec=spec)
        return jax.vmap(one, in_axes=(0, None, None))(params, x, labels)

    def epoch(params, opt_state, x, labels, key, eval_sets):
        params, opt_state, metrics = sweep_epoch(
            runs_step, params, opt_state, x, labels, key, batch_size, n_classes
        )
        for name, (xe, le) in eval_sets.items():
            m = evaluate_runs(params, xe, le)
            metrics[f"{name}_cost"], metrics[f"{name}_accuracy"] = m["cost"], m["accuracy"]
        return params, opt_state, metrics

    mesh = _mesh_of(shard_runs)
    return jax.jit(epoch) if mesh is None else _split_over_runs(epoch, mesh)


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
    shard_runs: bool | Mesh = False,
) -> SweepResult:
    """Train R runs together, one compiled program call per epoch (``make_sweep_epoch``).

    ``learning_rates`` (R,) (or None: the optimizer's own), ``keys`` (R,) init keys for
    ``init_fn``; ``x`` (N, n_in), ``labels`` (N,); ``order_key`` one key or (R,) keys (see the
    module docstring). ``optimizer`` must come from ``make_sweep_optimizer`` when
    ``learning_rates`` is given; ``spec`` is the model (``bpjax.Spec``); ``shard_runs`` as in
    ``make_sweep_epoch``. Returns a ``SweepResult``.
    """
    eval_sets = dict(eval_sets or {})
    _check_runs(keys, learning_rates)
    _check_training(epochs, batch_size, x.shape[0], order_key, keys.shape[0])
    mesh = _mesh_of(shard_runs)
    if mesh is not None:
        check_runs_split(keys.shape[0], mesh)
        # Once here, not every epoch: the data and evaluation sets, whole on every device.
        x, labels, eval_sets = jax.device_put((x, labels, eval_sets), NamedSharding(mesh, P()))
    params, opt_state = init_runs(optimizer, init_fn, keys, learning_rates)
    epoch_fn = make_sweep_epoch(
        optimizer, batch_size, method, apply_fn, n_classes, spec=spec, shard_runs=mesh or False
    )
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
