"""Train R runs together (vmapped) until they reach a target on an evaluation set.

    runs = train_to_target(tx, params, opt_state, x, labels, order_keys, batch_size=64,
                           eval_set=(x_val, y_val), target=0.9, eval_every=40, max_steps=20_000,
                           spec=spec, stop=lambda hit: hit.all())
    runs.steps            # (R,) steps at which each run first met the target (nan: never)

``params``/``opt_state`` carry a leading run axis R (``bpjax.sweep.init_runs``); every run has
its own shuffle (``order_keys`` (R,); epoch e shuffles with ``fold_in(key, e)``, the batches of
``bpjax.data.epoch_batches``). Training runs in compiled chunks of ``eval_every`` steps
(``step_chunks.make_chunk``); after each chunk every run is evaluated, so a run's steps to the
target are known to ``eval_every`` steps, refined by linear interpolation of the metric between
the two evaluations around the crossing. Training ends when ``stop(hit)`` ((R,) bools) is True,
or after ``max_steps``. With ``batch_size`` equal to the data size every step is a full-batch
gradient-descent step on all of ``x`` (no shuffle, no gather).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.runtime.step_chunks import make_chunk


class TargetRuns(NamedTuple):
    steps: np.ndarray  # (R,) float: interpolated steps to the target, nan if never reached
    params_at_target: list[Any]  # per run: params after the chunk that reached it, or None
    history: dict[str, np.ndarray]  # "step" (n_evals,), "metric" (n_evals, R), "cost" (n, R)
    params: Any  # final, with the run axis
    seconds: float


def _crossing(prev_step, prev_value, step, value, target, sign) -> float:
    """The interpolated step where the metric crossed ``target`` (``sign`` +1: rising)."""
    a, b = sign * (prev_value - target), sign * (value - target)
    if np.isfinite(prev_value) and a >= 0:
        return float(prev_step)
    if not np.isfinite(prev_value) or b == a:
        return float(step)
    return float(prev_step + (step - prev_step) * (-a) / (b - a))


def train_to_target(
    tx,
    params,
    opt_state,
    x,
    labels,
    order_keys,
    *,
    batch_size: int,
    eval_set,
    target: float,
    eval_every: int,
    max_steps: int,
    spec,
    metric: str = "accuracy",
    method: str = "autodiff",
    stop: Callable[[np.ndarray], bool] | None = None,
) -> TargetRuns:
    """Train until ``stop(hit)`` (default: every run hit) or ``max_steps``; see the module
    docstring. ``metric``: ``"accuracy"`` (reach >= target) or ``"cost"`` (reach <= target)."""
    from bpjax.data import epoch_batches
    from bpjax.train import make_evaluate, make_train_step

    if metric not in ("accuracy", "cost"):
        raise ValueError(f"metric must be 'accuracy' or 'cost', got {metric!r}")
    n = labels.shape[0]
    if not 1 <= batch_size <= n:
        raise ValueError(f"batch_size must be in [1, {n}], got {batch_size}")
    stop = stop or (lambda hit: bool(hit.all()))
    sign = 1.0 if metric == "accuracy" else -1.0
    step_fn = make_train_step(tx, method, spec=spec)
    chunk = make_chunk(step_fn, batch_size, n)
    evaluate = jax.jit(jax.vmap(make_evaluate(spec=spec), in_axes=(0, None, None)))
    orders_of = jax.jit(jax.vmap(lambda k: epoch_batches(k, n, batch_size)))
    per_epoch = n // batch_size

    def measure(p):
        return np.asarray(evaluate(p, *eval_set)[metric], dtype=np.float64)

    t0 = time.perf_counter()
    r = order_keys.shape[0]
    value = measure(params)
    steps = np.full(r, np.nan)
    at_target: list[Any] = [None] * r
    hist = {"step": [0], "metric": [value], "cost": [np.full(r, np.nan)]}
    hit = sign * (value - target) >= 0
    steps[hit] = 0.0
    done, step, epoch = bool(stop(hit)), 0, 0
    while not done and step < max_steps:
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(order_keys, epoch)
        orders = orders_of(keys) if batch_size < n else jnp.zeros((r, 1, 1), jnp.int32)
        j = 0
        while j < per_epoch and not done and step < max_steps:
            k = min(eval_every, per_epoch - j, max_steps - step)
            args = (params, opt_state, x, labels, orders, np.int32(j), np.int32(k))
            params, opt_state, cost = chunk(*args)
            prev, prev_step = value, step
            j, step = j + k, step + k
            value = measure(params)
            hist["step"].append(step)
            hist["metric"].append(value)
            hist["cost"].append(np.asarray(cost, dtype=np.float64))
            new = (sign * (value - target) >= 0) & ~hit
            for i in np.flatnonzero(new):
                steps[i] = _crossing(prev_step, prev[i], step, value[i], target, sign)
                at_target[i] = jax.tree.map(lambda a, i=i: a[i], params)
            hit |= new
            done = bool(stop(hit))
        epoch += 1
    history = {
        "step": np.asarray(hist["step"]),
        "metric": np.stack(hist["metric"]),
        "cost": np.stack(hist["cost"]),
    }
    return TargetRuns(steps, at_target, history, params, time.perf_counter() - t0)
