"""The table and figures of ``experiments.compare_optimizers``, from its results alone.

``accuracy_vs_epoch.png``: test accuracy of each optimizer's best rate (chosen on validation),
seed mean with a +-1 std band. ``sensitivity.png``: final test accuracy (seed mean +- std) against
the learning rate, a star at the chosen rate. Diverged runs and non-finite values are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _floats(values) -> np.ndarray:
    """JSON numbers, None and "nan"/"inf" strings as a float array (None -> NaN)."""
    return np.vectorize(lambda v: np.nan if v is None else float(v), otypes=[float])(
        np.asarray(values, dtype=object)
    )


def plot(results: dict, run_dir: Path) -> None:
    import matplotlib.pyplot as plt

    from experiments.runtime.rundir import save_figure

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rec in results["optimizers"].items():
        best = rec["summary"]["best_lr"]
        if best is None:  # every run diverged: nothing to draw
            continue
        finite = _floats(rec["history"]["finite"]).min(axis=0) >= 1
        runs = np.isclose(_floats(rec["learning_rates"]), best) & finite
        acc = _floats(rec["history"]["test_accuracy"])[:, runs]
        epochs = np.arange(1, acc.shape[0] + 1)
        mean, std = acc.mean(axis=1), acc.std(axis=1)
        (line,) = ax.plot(epochs, 100 * mean, label=f"{name} (lr {best:.3g})")
        ax.fill_between(
            epochs, 100 * (mean - std), 100 * (mean + std), color=line.get_color(), alpha=0.2
        )
    target = results["setup"]["target"]
    ax.axhline(100 * target, color="gray", ls=":", lw=1, label=f"{target:.0%} (3Blue1Brown)")
    ax.set(
        xlabel="epoch",
        ylabel="test accuracy (%)",
        title="Test accuracy at each optimizer's best learning rate (mean ± std over seeds)",
    )
    finals = [
        s["best_single_run_test"]
        for s in (r["summary"] for r in results["optimizers"].values())
        if s["best_single_run_test"] is not None
    ]
    ax.set_ylim(max(min(100 * min(finals, default=0.9) - 5, 90), 0), 100)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    save_figure(fig, run_dir / "accuracy_vs_epoch.png")

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rec in results["optimizers"].items():
        per_rate = rec["summary"]["per_rate"]
        lr = _floats([r["learning_rate"] for r in per_rate])
        mean = _floats([r["final_test_mean"] for r in per_rate])
        std = _floats([r["final_test_std"] for r in per_rate])
        keep = np.isfinite(mean) & np.isfinite(std)
        if not keep.any():
            continue
        (line,) = ax.plot(lr[keep], 100 * mean[keep], marker="o", ms=3, label=name)
        ax.fill_between(
            lr[keep],
            100 * (mean - std)[keep],
            100 * (mean + std)[keep],
            color=line.get_color(),
            alpha=0.15,
        )
        s = rec["summary"]
        if s["best_lr"] is not None:
            ax.plot(
                [s["best_lr"]],
                [100 * float(s["test_mean"])],
                marker="*",
                ms=11,
                color=line.get_color(),
            )
    ax.set_xscale("log")
    ax.set(
        xlabel="learning rate (peak)",
        ylabel="final test accuracy (%)",
        title="Learning-rate sensitivity (★ = rate chosen on validation)",
    )
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3, which="both")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    save_figure(fig, run_dir / "sensitivity.png")


def table_rows(records: dict) -> list[dict]:
    """One row of strings per optimizer (the printed table, also kept in results.json)."""
    rows = []
    for name, rec in records.items():
        s = rec["summary"]
        best_run = s["best_single_run_test"]
        row = {
            "optimizer": name,
            "best lr": "—",
            "val acc": "—",
            "test acc": "all diverged",
            "best run": "—" if best_run is None else f"{100 * best_run:.2f}",
        }
        if s["best_lr"] is not None:
            edge = " (edge)" if s["best_lr_at_grid_edge"] else ""
            row.update(
                {
                    "best lr": f"{s['best_lr']:.3g}{edge}",
                    "val acc": f"{100 * s['validation_mean']:.2f}",
                    "test acc": f"{100 * s['test_mean']:.2f} ± {100 * s['test_std']:.2f}",
                }
            )
        for th, r in s["reach"].items():
            th = float(th)
            row[f"ep→{th:.0%}"] = "—" if r["epochs"] is None else str(r["epochs"])
            row[f"s→{th:.0%}"] = "—" if r["seconds"] is None else f"{r['seconds']:.2f}"
        row["diverged"] = f"{s['diverged_runs']}/{s['runs']}"
        row["sweep s"] = f"{rec['train_time_s'][-1]:.1f}"
        rows.append(row)
    return rows


def summary(results: dict) -> str:
    """The table (markdown, which reads fine in a terminal) and what it was measured on."""
    rows, setup = results["table"], results["setup"]
    cols = list(rows[0])
    widths = [max(len(c), *(len(r[c]) for r in rows)) for c in cols]

    def line(cells):
        return "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True)) + " |"

    reached = ", ".join(
        f"{n} {r['summary']['runs_reaching_target']}" for n, r in results["optimizers"].items()
    )
    return "\n".join(
        [
            f"{setup['model']} model, {setup['epochs']} epochs, batch {setup['batch_size']}, "
            f"{setup['schedule']} schedule, weight decay {float(setup['weight_decay']):g}; "
            f"data {setup['source']}",
            f"best lr by validation; test acc mean ± std over {setup['seeds']} seeds; s = seconds "
            "per run (the sweep's training time / its runs)",
            line(cols),
            line(["-" * w for w in widths]),
            *(line([r[c] for c in cols]) for r in rows),
            f"runs with test accuracy >= {setup['target']:.0%} at the end: {reached}",
        ]
    )
