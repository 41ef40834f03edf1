"""Training R runs together (vmapped) with evaluations spaced evenly on a log axis of steps:
what ``compute_to_target`` measures compute with. ``train_logged`` records, after 1, 1, 2, 2,
4, 4, ... steps (``intervals``), every split's cost and accuracy, the examples processed and the
seconds of compiled training (evaluation excluded)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from experiments.runtime.step_chunks import make_chunk

SPLITS = ("train", "validation", "test")


class Arm(NamedTuple):
    tx: Any  # bpjax.optimizers.make_sweep_optimizer(...)
    lrs: tuple[float, ...]  # the grid the validation sweep picks from
    batch_size: int  # == n: full-batch gradient descent
    max_steps: int
    order_key: jax.Array  # every run's shuffle (epoch e: fold_in(order_key, e))
    eval_cap: int  # most steps between evaluations


def intervals(total: int, cap: int) -> list[int]:
    """Steps between evaluations: 1, 1, 2, 2, 4, 4, ... (at most ``cap``), summing to ``total``."""
    out, k = [], 1
    while sum(out) < total:
        out.append(min(k, cap, total - sum(out)))
        if len(out) % 2 == 0:
            k *= 2
    return out


def train_logged(
    tx,
    params,
    opt_state,
    data: dict,
    arm: Arm,
    *,
    spec,
    method="autodiff",
    stop: Callable[[np.ndarray], bool] | None = None,
) -> dict[str, list]:
    """R runs (leading axis on ``params``/``opt_state``) for ``arm.max_steps`` steps or until
    ``stop(validation_accuracy (R,))``; the history as lists: "step", "examples", "seconds"
    (n_evals,) and "<split>_cost"/"<split>_accuracy" (n_evals, R)."""
    from bpjax.data import epoch_batches
    from bpjax.train import make_evaluate, make_train_step

    x, labels = data["train"]
    n, b = labels.shape[0], arm.batch_size
    per_epoch = n // b
    step_fn = make_train_step(tx, method, spec=spec)
    chunk = make_chunk(step_fn, b, n)
    evaluate = jax.jit(jax.vmap(make_evaluate(spec=spec), in_axes=(0, None, None)))
    r = jax.tree.leaves(params)[0].shape[0]
    keys = jnp.stack([arm.order_key] * r)

    def orders_from(epoch):  # two epochs' batches, so a chunk may run across the boundary
        if b == n:
            return jnp.zeros((r, 2, 1), jnp.int32)
        of = jax.vmap(lambda k: epoch_batches(k, n, b))
        return jnp.concatenate(
            [of(jax.vmap(jax.random.fold_in, (0, None))(keys, e)) for e in (epoch, epoch + 1)],
            axis=1,
        )

    hist: dict[str, list] = {"step": [], "examples": [], "seconds": []}

    def record(p, step, seconds):
        hist["step"].append(step)
        hist["examples"].append(step * b)
        hist["seconds"].append(seconds)
        for name in SPLITS:
            if name in data:
                m = evaluate(p, *data[name])
                for what in ("cost", "accuracy"):
                    hist.setdefault(f"{name}_{what}", []).append(
                        np.asarray(m[what], dtype=np.float64).tolist()
                    )
        return np.asarray(hist["validation_accuracy"][-1])

    compiled = None
    epoch, j, step, seconds = 0, 0, 0, 0.0
    orders = orders_from(epoch)
    value = record(params, 0, 0.0)
    for k in intervals(arm.max_steps, min(arm.eval_cap, per_epoch)):
        if stop is not None and stop(value):
            break
        if j >= per_epoch:
            epoch, j = epoch + 1, j - per_epoch
            orders = orders_from(epoch)
        args = (params, opt_state, x, labels, orders, np.int32(j), np.int32(k))
        if compiled is None:  # ahead of time, so the seconds are training alone
            compiled = chunk.lower(*args).compile()
        t0 = time.perf_counter()
        params, opt_state, _ = jax.block_until_ready(compiled(*args))
        seconds += time.perf_counter() - t0
        j, step = j + k, step + k
        value = record(params, step, seconds)
    return hist
