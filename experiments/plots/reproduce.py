"""Figures of ``experiments.reproduce``: every row's test accuracy per epoch (seed mean and
range), and ``table.md``, the table drawn from the same results (also the printed summary)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.runtime.rundir import atomic_write_bytes, save_figure


def _stat(values) -> str:
    v = 100 * np.asarray(values, dtype=np.float64)
    return f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2f}"


def _measured(row: dict) -> np.ndarray:
    """The runs' numbers comparable with the published one (its metric)."""
    key = {"peak test": "peak_test", "test": "final_test", "validation": "final_validation"}[
        row["metric"]
    ]
    return np.asarray(row["per_run"].get(key, row["per_run"]["final_test"]))


def row_line(row: dict) -> str:
    return (
        f"{row['name']}: published {row['published']:.2f}%, measured "
        f"{_stat(_measured(row))}% ({row['metric']}), {row['seconds']:.0f} s"
    )


def table(rows: list[dict]) -> str:
    """The markdown table of the rows (accuracies in %, mean ± std over seeds)."""
    head = (
        "| row | published | measured (same metric) | final test | peak test (epoch) | "
        "test at best val. | seeds | time |"
    )
    lines = [head, "|" + "---|" * 8]
    for r in rows:
        pr = r["per_run"]
        peak_epochs = ",".join(str(e) for e in pr["peak_test_epoch"])
        best_val = _stat(pr["test_at_best_validation"]) if "test_at_best_validation" in pr else "–"
        lines.append(
            f"| {r['name']} | {r['published']:.2f} ({r['metric']}) | {_stat(_measured(r))} | "
            f"{_stat(pr['final_test'])} | {_stat(pr['peak_test'])} ({peak_epochs}) | "
            f"{best_val} | {len(r['seeds'])} | {r['seconds']:.0f} s |"
        )
    return "\n".join(lines)


def plot(results: dict, run_dir: Path) -> None:
    import matplotlib.pyplot as plt

    atomic_write_bytes(run_dir / "table.md", (table(results["rows"]) + "\n").encode())
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for row in results["rows"]:
        acc = 100 * np.asarray(row["history"]["test_accuracy"], dtype=np.float64)  # (epochs, R)
        epochs = np.arange(1, acc.shape[0] + 1)
        finite = np.isfinite(acc).all(axis=1)
        if not finite.any():
            continue
        (line,) = ax.plot(epochs[finite], acc[finite].mean(axis=1), label=row["name"])
        ax.fill_between(
            epochs[finite],
            acc[finite].min(axis=1),
            acc[finite].max(axis=1),
            color=line.get_color(),
            alpha=0.2,
        )
        ax.axhline(row["published"], color=line.get_color(), ls=":", lw=1)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)  (dotted: published)")
    ax.set_ylim(90, 99)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    save_figure(fig, run_dir / "accuracy_vs_epoch.png")
