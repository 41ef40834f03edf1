"""Figures of ``experiments.train``: cost and accuracy per epoch on every split."""

from __future__ import annotations

from pathlib import Path

from experiments.plots.lines import series_figure

SPLITS = ("train", "validation", "test")


def plot(results: dict, run_dir: Path) -> None:
    history = results["history"]
    epochs = [r["epoch"] for r in history]
    for metric, ylabel, logy in (
        ("cost", f"cost ({results['spec']['cost']})", True),
        ("accuracy", "accuracy", False),
    ):
        series = {
            split: (epochs, [r[f"{split}_{metric}"] for r in history])
            for split in SPLITS
            if f"{split}_{metric}" in history[0]
        }
        series_figure(series, "epoch", ylabel, run_dir / f"{metric}_vs_epoch.png", logy=logy)
