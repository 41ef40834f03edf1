"""Choosing the best learning rate of a learning-rate x seed sweep on the validation split.

A sweep's ``history`` maps a metric to its per-epoch values of every run, shape (epochs, R),
with ``finite`` (1 while the run stayed finite), ``validation_accuracy`` and ``test_accuracy``;
run r trained at ``learning_rates[r]``. Test accuracy is reported, never used to choose.
"""

from __future__ import annotations

import numpy as np

THRESHOLDS = (0.90, 0.95)  # test accuracies whose epochs/seconds to reach are reported
TARGET = 0.96  # 3Blue1Brown's figure for this network


def optimizer_record(learning_rates, seeds, rows) -> dict:
    """One optimizer's results: its runs, their per-epoch metrics (epochs, R), the summary."""
    history = {k: [row[k] for row in rows] for k in rows[0] if k not in ("epoch", "train_time_s")}
    seconds = [row["train_time_s"] for row in rows]
    return {
        "learning_rates": learning_rates,
        "seeds": seeds,
        "train_time_s": seconds,
        "history": history,
        "summary": summarize(learning_rates, history, seconds),
    }


def summarize(learning_rates, history: dict, train_time_s) -> dict:
    """The best rate: the highest seed-mean final VALIDATION accuracy among the rates whose runs
    all stayed finite (a diverged run evaluates at chance or NaN: it must never win); that rate's
    test accuracy, and the epochs/seconds until its seed-mean test accuracy reaches THRESHOLDS.
    ``history``: metric -> (epochs, R) values; ``train_time_s``: cumulative seconds per epoch."""
    lrs = np.asarray(learning_rates, dtype=float)
    h = {k: np.asarray(v, dtype=float) for k, v in history.items()}
    finite = h["finite"].min(axis=0) >= 1  # (R,): every epoch of the run stayed finite
    rates = sorted(set(lrs.tolist()))

    def mean(values):
        return float(values.mean()) if values.size else None

    per_rate = []
    for lr in rates:
        ok = (lrs == lr) & finite
        test = h["test_accuracy"][-1, ok]
        per_rate.append(
            {
                "learning_rate": lr,
                "runs": int((lrs == lr).sum()),
                "diverged_runs": int(((lrs == lr) & ~finite).sum()),
                "final_validation_mean": mean(h["validation_accuracy"][-1, ok]),
                "final_test_mean": mean(test),
                "final_test_std": float(test.std(ddof=1)) if test.size > 1 else 0.0,
            }
        )
    final_test = h["test_accuracy"][-1, finite]
    out = {
        "runs": len(lrs),
        "diverged_runs": int((~finite).sum()),
        "per_rate": per_rate,
        "best_lr": None,
        "best_lr_at_grid_edge": False,
        "reach": {f"{th:.2f}": {"epochs": None, "seconds": None} for th in THRESHOLDS},
        "best_single_run_test": float(final_test.max()) if final_test.size else None,
        "runs_reaching_target": int((final_test >= TARGET).sum()),
    }
    eligible = [i for i, r in enumerate(per_rate) if r["diverged_runs"] == 0]
    if not eligible:
        return out
    best = max(eligible, key=lambda i: per_rate[i]["final_validation_mean"])  # ties: lowest rate
    curve = h["test_accuracy"][:, lrs == rates[best]].mean(axis=1)
    per_run_s = np.asarray(train_time_s, dtype=float) / len(lrs)
    for th in THRESHOLDS:
        hit = np.flatnonzero(curve >= th)
        out["reach"][f"{th:.2f}"] = {
            "epochs": int(hit[0]) + 1 if hit.size else None,
            "seconds": float(per_run_s[hit[0]]) if hit.size else None,
        }
    chosen = per_rate[best]
    return {
        **out,
        "best_lr": rates[best],
        "best_lr_at_grid_edge": len(rates) > 1 and best in (0, len(rates) - 1),
        "validation_mean": chosen["final_validation_mean"],
        "test_mean": chosen["final_test_mean"],
        "test_std": chosen["final_test_std"],
    }
