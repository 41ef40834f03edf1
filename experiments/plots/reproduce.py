"""Figures of ``experiments.reproduce``: every row's test accuracy per epoch (seed mean and
range), and ``table.md``, the table drawn from the same results."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.runtime.rundir import atomic_write_bytes, save_figure


def plot(results: dict, run_dir: Path) -> None:
    import matplotlib.pyplot as plt

    from experiments.reproduce import table

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
