"""The training driver: run compiled epochs, time them, check finiteness, evaluate, call back.

    epoch_fn = make_sgd_epoch(make_train_step(optax.sgd(3.0)), batch_size=10)
    result = fit(epoch_fn, params, opt_state, epochs=30,
                 epoch_args=lambda e: (x, labels, jax.random.fold_in(key, e)),
                 evaluate=lambda p: {"test_acc": float(eval_fn(p, x_test, y_test)["accuracy"])})
    result.history[-1]   # {"epoch": 30, "step_cost": ..., "train_time_s": ..., "test_acc": ...}

``epoch_fn`` is a jitted ``(params, opt_state, *args) -> (params, opt_state, metrics)`` whose
metrics hold at least ``"cost"`` and ``"finite"`` per step (``make_sgd_epoch``,
``make_full_batch_step``, a sweep epoch). It is compiled ahead of time, once, so
``compile_s`` is separate from ``train_s`` (the epochs' wall time, device work included) and
``eval_s`` (``evaluate``). A non-finite epoch raises ``Diverged`` carrying the last finite state;
``on_epoch(epoch, params, opt_state, history, metrics)`` runs after every epoch (``history[-1]``
is the epoch's row) (checkpoints,
progress, a stop request: it may raise to end the run there).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np

Row = dict[str, Any]


class Diverged(FloatingPointError):
    """Training produced a NaN/inf; ``params``/``opt_state`` are the last finite state, after
    ``epoch`` - 1 epochs (``epoch`` is the first bad one, counted from 1), whose rows are
    ``history``."""

    def __init__(self, message: str, epoch: int, params, opt_state, history):
        super().__init__(message)
        self.epoch, self.params, self.opt_state = epoch, params, opt_state
        self.history = history


class FitResult(NamedTuple):
    params: Any
    opt_state: Any
    history: list[Row]  # one row per epoch, earlier rows (``history=``) included
    compile_s: float
    train_s: float  # wall time of this call's epochs, cumulative with ``history``'s
    eval_s: float


def mean_cost(metrics: Mapping[str, Any]) -> Row:
    """The default epoch summary: ``step_cost``, the mean over the epoch's steps of the cost
    each step descended (its mini-batch's, or the full training cost for GD), before the step."""
    return {"step_cost": float(np.mean(np.asarray(metrics["cost"], dtype=np.float64)))}


def first_bad_step(metrics: Mapping[str, Any]) -> int | None:
    """Index of the first step whose ``finite`` flag is False, or None if all are finite."""
    finite = np.asarray(metrics["finite"]).reshape(-1)
    return None if finite.all() else int(np.argmin(finite))


def fit(
    epoch_fn,
    params,
    opt_state,
    *,
    epochs: int,
    start_epoch: int = 0,
    epoch_args: Callable[[int], Sequence[Any]] = lambda epoch: (),
    evaluate: Callable[[Any], Row] | None = None,
    on_epoch: Callable[[int, Any, Any, list[Row], Any], None] | None = None,
    summarize: Callable[[Any], Row] = mean_cost,
    check_finite: bool = True,
    history: Sequence[Row] = (),
    until: Callable[[Row], bool] | None = None,
) -> FitResult:
    """Epochs ``start_epoch + 1 .. epochs`` of ``epoch_fn``; see the module docstring.

    ``epoch_args(e)`` gives epoch ``e``'s extra arguments (0-based; e.g. its shuffle key).
    ``summarize(metrics)`` makes the row's training figures (default: ``mean_cost``).
    ``check_finite=False`` leaves non-finite epochs to the caller (a sweep reports diverged runs
    instead of stopping). ``until(row)`` ends training early once it returns True.
    """
    if epochs < start_epoch:
        raise ValueError(f"epochs={epochs} is before start_epoch={start_epoch}")
    history = list(history)
    if start_epoch >= epochs:
        return FitResult(params, opt_state, history, 0.0, _last(history, "train_time_s"), 0.0)
    t0 = time.perf_counter()
    compiled = epoch_fn.lower(params, opt_state, *epoch_args(start_epoch)).compile()
    compile_s = time.perf_counter() - t0
    train_s, eval_s = _last(history, "train_time_s"), 0.0
    for e in range(start_epoch, epochs):
        t0 = time.perf_counter()
        new_params, new_opt_state, metrics = compiled(params, opt_state, *epoch_args(e))
        metrics = jax.device_get(metrics)  # waits for the epoch: its time is device time too
        train_s += time.perf_counter() - t0
        bad = first_bad_step(metrics) if check_finite else None
        if bad is not None:
            cost = float(np.asarray(metrics["cost"]).reshape(-1)[bad])
            what = (
                f"the cost became {cost}"
                if not np.isfinite(cost)
                else f"the params became NaN/inf (cost before that update {cost:.6g})"
            )
            raise Diverged(
                f"diverged in epoch {e + 1}, step {bad + 1}: {what}",
                e + 1,
                params,
                opt_state,
                list(history),
            )
        params, opt_state = new_params, new_opt_state
        row = {"epoch": e + 1, **summarize(metrics), "train_time_s": train_s}
        if evaluate is not None:
            t0 = time.perf_counter()
            row.update(evaluate(params))
            eval_s += time.perf_counter() - t0
        history.append(row)
        if on_epoch is not None:
            on_epoch(e + 1, params, opt_state, history, metrics)
        if until is not None and until(row):
            break
    return FitResult(params, opt_state, history, compile_s, train_s, eval_s)


def _last(history: Sequence[Row], key: str) -> float:
    return float(history[-1][key]) if history else 0.0
