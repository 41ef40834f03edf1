"""Line plots shared by the experiments' figures; non-finite points are left out, not drawn."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def arr(values) -> np.ndarray:
    """A results list as floats ("nan"/"inf" strings included)."""
    return np.asarray(values, dtype=float)


def finite_max(a: np.ndarray, default: float = 1.0) -> float:
    """The largest finite |value|, or ``default`` when there is none (or it is 0)."""
    a = np.abs(a[np.isfinite(a)])
    return float(a.max()) if a.size and a.max() > 0 else default


def finite_xy(xs: Sequence, ys: Sequence) -> tuple[np.ndarray, np.ndarray]:
    """The points whose x and y are both finite (JSON's "nan"/"inf" strings included)."""
    x = np.array([float(v) for v in xs], dtype=float)
    y = np.array([float(v) for v in ys], dtype=float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def series_figure(
    series: dict[str, tuple[Sequence, Sequence]],
    xlabel: str,
    ylabel: str,
    path: Path,
    *,
    logy: bool = False,
    logx: bool = False,
    title: str = "",
    styles: dict[str, dict] | None = None,
) -> Path:
    """One axes of ``{label: (xs, ys)}`` lines, saved as a PNG at ``path``."""
    import matplotlib.pyplot as plt

    from experiments.runtime.rundir import save_figure

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, (xs, ys) in series.items():
        x, y = finite_xy(xs, ys)
        if logy:
            x, y = x[y > 0], y[y > 0]
        if len(x):
            ax.plot(x, y, label=label, **(styles or {}).get(label, {}))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    return save_figure(fig, path)
