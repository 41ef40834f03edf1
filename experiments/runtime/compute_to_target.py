"""Compute to a target: SGD and full-batch gradient descent, each with its learning rate tuned on
the validation split, measured in example-gradients and seconds to a validation accuracy.

    out = compare(arms, params0, data, spec=spec, levels=(0.9, 0.95), done={}, on_phase=save)

``arms`` holds an ``Arm`` for "sgd" and "gd" (a ``make_sweep_optimizer`` optimizer, its grid of
learning rates, batch size, step budget, order key, evaluation interval cap). Four phases, each
checkpointable (``on_phase(i, done)`` after phase i; ``done`` holds the finished phases' JSON
results, so a resume skips them):

1. ``select_sgd``: every SGD rate (vmapped, same initial params and shuffle) runs its whole
   budget; the rate with the highest final validation accuracy wins.
2. ``select_gd``: every GD rate runs until one reaches the lowest of ``levels`` (e.g. 90%)
   on validation, or the budget; the rate that reaches it in the fewest steps wins, or if none
   does, the one with the highest validation accuracy at the budget.
3. ``sgd`` and 4. ``gd``: the chosen rate alone (R = 1, so its seconds are one run's), SGD for
   its budget, GD until the target (the SGD winner's final validation accuracy) or its budget.

Runs are evaluated after 1, 1, 2, 2, 4, 4, ... steps (the interval doubles every two evaluations
up to the arm's cap: even points on a log axis), on the training split (cost and accuracy of the
params, no L2 term), the validation split and the test split. ``seconds`` counts the compiled
training chunks only (ahead-of-time compiled; evaluation excluded). Compute to a level is
interpolated linearly between the two evaluations around the crossing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.runtime.logged_training import (  # noqa: F401 - intervals: public here too
    SPLITS,
    Arm,
    intervals,
    train_logged,
)


def reached(hist: dict, level: float, run: int = 0, metric="validation_accuracy") -> dict:
    """Where run ``run`` first reached ``level``: steps, examples and seconds (interpolated), or
    the best it reached and the compute to that point (``"reached": False``)."""
    v = np.array([row[run] for row in hist[metric]], dtype=np.float64)
    v[~np.isfinite(v)] = -np.inf
    cols = {c: np.asarray(hist[c], dtype=np.float64) for c in ("step", "examples", "seconds")}
    hits = np.flatnonzero(v >= level)
    total = {f"{c}_total": float(a[-1]) for c, a in cols.items()}
    if hits.size == 0:
        i = int(np.argmax(v))
        return {
            "reached": False,
            "best": float(v[i]),
            **{c: float(a[i]) for c, a in cols.items()},
            **total,
        }
    i = int(hits[0])
    f = 1.0 if i == 0 or not np.isfinite(v[i - 1]) else (level - v[i - 1]) / (v[i] - v[i - 1])
    at = {c: float(a[i] if i == 0 else a[i - 1] + f * (a[i] - a[i - 1])) for c, a in cols.items()}
    return {"reached": True, "best": float(v.max()), **at, **total}


def _runs(tx, params0, lrs):
    from bpjax import sweep

    keys = jax.vmap(jax.random.key)(jnp.zeros(len(lrs), jnp.uint32))  # unused: same params0
    return sweep.init_runs(tx, lambda _: params0, keys, np.asarray(lrs, np.float64))


def _final(hist, key="validation_accuracy") -> np.ndarray:
    v = np.asarray(hist[key][-1], dtype=np.float64)
    return np.where(np.isfinite(v), v, -np.inf)


def compare(
    arms: dict[str, Arm],
    params0,
    data: dict,
    *,
    spec,
    method="autodiff",
    levels=(0.9, 0.95),
    done: dict | None = None,
    on_phase: Callable[[int, dict], None] = lambda i, done: None,
    timed: Callable[[str], Any] | None = None,
) -> dict:
    """The four phases of the module docstring; returns ``done`` completed with the table."""
    import contextlib

    done = dict(done or {})
    timed = timed or (lambda name: contextlib.nullcontext())
    sgd, gd = arms["sgd"], arms["gd"]

    def phase(i, name, body):
        if name not in done:
            with timed(f"to_target_{name}"):
                done[name] = body()
            on_phase(i, done)
        return done[name]

    def select_sgd():
        hist = train_logged(
            sgd.tx, *_runs(sgd.tx, params0, sgd.lrs), data, sgd, spec=spec, method=method
        )
        values = _final(hist)
        return {
            "split": "validation",
            "metric": "final validation accuracy",
            "lrs": list(sgd.lrs),
            "values": values.tolist(),
            "chosen": float(sgd.lrs[int(np.argmax(values))]),
            "history": hist,
        }

    sel_sgd = phase(1, "select_sgd", select_sgd)
    target, first = float(np.max(sel_sgd["values"])), min(levels)

    def select_gd():
        hist = train_logged(
            gd.tx,
            *_runs(gd.tx, params0, gd.lrs),
            data,
            gd,
            spec=spec,
            method=method,
            stop=lambda v: bool((v >= first).any()),
        )
        got = [reached(hist, first, i) for i in range(len(gd.lrs))]
        steps = np.array([g["step"] if g["reached"] else np.inf for g in got])
        if np.isfinite(steps).any():
            metric, values = f"validation steps to {100 * first:g}%", steps
            best = int(np.argmin(steps))
        else:
            metric, values = "validation accuracy at the budget", _final(hist)
            best = int(np.argmax(values))
        return {
            "split": "validation",
            "metric": metric,
            "lrs": list(gd.lrs),
            "values": [float(v) for v in values],
            "chosen": float(gd.lrs[best]),
            "history": hist,
        }

    sel_gd = phase(2, "select_gd", select_gd)

    def alone(arm, lr, stop=None):
        return lambda: train_logged(
            arm.tx, *_runs(arm.tx, params0, [lr]), data, arm, spec=spec, method=method, stop=stop
        )

    hist_sgd = phase(3, "sgd", alone(sgd, sel_sgd["chosen"]))
    hist_gd = phase(4, "gd", alone(gd, sel_gd["chosen"], lambda v: bool(v[0] >= target)))
    rows = []
    for level in levels:
        a, b = reached(hist_sgd, level), reached(hist_gd, level)
        # An arm that never reached the level used at least its whole run: a bound, not a ratio.
        bound = {(True, True): "=", (True, False): ">=", (False, True): "<="}.get(
            (a["reached"], b["reached"])
        )
        row = {"level": level, "sgd": a, "gd": b, "ratio_is": bound}
        for c in ("examples", "seconds"):
            num = b[c] if b["reached"] else b[f"{c}_total"]
            den = a[c] if a["reached"] else a[f"{c}_total"]
            row[f"{c}_ratio"] = num / den if bound and den > 0 else None
        rows.append(row)
    return {
        **done,
        "target": target,
        "levels": list(levels),
        "budget_steps": {"sgd": sgd.max_steps, "gd": gd.max_steps},
        "batch_size": {"sgd": sgd.batch_size, "gd": gd.batch_size},
        "table": rows,
    }


def run_phase(cfg, ctx, data, params0, key_sgd, steps, done, save) -> dict:
    """The ``--to-target`` comparison for a gd_vs_sgd config: SGD (the config's optimizer and
    schedule at ``cfg.sgd_lrs``) and full-batch GD (``cfg.gd_lrs``), both with its L2."""
    from bpjax.optimizers import make_sweep_optimizer
    from experiments.plots.gd_vs_sgd import to_target_table

    n = data["train"][0].shape[0]
    sgd = Arm(
        make_sweep_optimizer(
            cfg.optimizer,
            schedule=cfg.schedule,
            total_steps=cfg.epochs * steps,
            l2=cfg.weight_decay,
            **cfg.optimizer_kwargs(),
        ),
        cfg.sgd_lrs,
        cfg.batch_size,
        cfg.epochs * steps,
        key_sgd,
        max(1, steps // 5),
    )
    gd = Arm(
        make_sweep_optimizer("sgd", l2=cfg.weight_decay), cfg.gd_lrs, n, cfg.gd_budget, key_sgd, 16
    )
    out = compare(
        {"sgd": sgd, "gd": gd},
        params0,
        data,
        spec=cfg.spec(),
        method=cfg.method,
        done=done,
        on_phase=save,
        timed=ctx.phase,
    )
    out["table_md"] = to_target_table(out)
    return out
