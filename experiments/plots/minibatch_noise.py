"""The figure of ``experiments.minibatch_noise``, from its results.json alone.

Non-finite values (a zero or diverged mean gradient: JSON's "nan"/"inf") are left out.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.runtime.rundir import save_figure


def arr(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


def plot(results: dict, run_dir: Path) -> None:
    """``noise_vs_batch_size.png``: relative error and cosine of g_B to g against B."""
    import matplotlib.pyplot as plt

    n = results["n_train"]
    points = results["checkpoints"]
    fig, (ax_err, ax_cos) = plt.subplots(1, 2, figsize=(14, 5.5), layout="constrained")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    curve = np.unique(np.geomspace(1, max(n - 1, 1), 400).round())
    markers = "osD^v<>"
    shifts = 1.12 ** (np.arange(len(points)) - (len(points) - 1) / 2)  # side by side on log x
    full_rows, measured, lowest = [], [], [-0.05]
    for i, (shift, cp) in enumerate(zip(shifts, points, strict=True)):
        color, marker = colors[i % len(colors)], markers[i % len(markers)]
        fill = color if marker == "o" else "none"
        rows = [r for r in cp["batches"] if r["batch_size"] < n]
        full_rows += [r for r in cp["batches"] if r["batch_size"] == n]
        bs = arr([r["batch_size"] for r in rows])
        g2, var = float(cp["grad_norm"]) ** 2, float(cp["total_variance"])
        label = (
            f"after {cp['epoch']} epochs (test acc {float(cp['test_accuracy']):.2f}): "
            f"$\\sigma^2/|g|^2$ = {float(cp['noise_scale']):.3g}"
        )
        for r in rows:  # the spread of the draws: each draw's relative error, faint
            errs = arr(r["relative_errors"])
            ax_err.scatter(
                np.full(len(errs), r["batch_size"]),
                np.where(errs > 0, errs, np.nan),
                s=6,
                color=color,
                alpha=0.3,
                lw=0,
            )
        rms = arr([r["rms_relative_error"] for r in rows])
        measured += [v for v in rms if np.isfinite(v) and v > 0]
        ax_err.plot(bs, np.where(rms > 0, rms, np.nan), marker, color=color, label=label, mfc=fill)
        if np.isfinite(g2) and np.isfinite(var) and g2 > 0:
            finite_pop = var / curve * (n - curve) / max(n - 1, 1) / g2
            ax_err.plot(curve, np.sqrt(finite_pop), "-", color=color, lw=1.5)
            ax_err.plot(curve, np.sqrt(var / curve / g2), ":", color=color, lw=1)
            ax_cos.plot(curve, 1 / np.sqrt(1 + finite_pop), "--", color=color, lw=1.2)
        cos = arr([r["mean_cosine"] for r in rows])
        lo = cos - arr([r["min_cosine"] for r in rows])
        hi = arr([r["max_cosine"] for r in rows]) - cos
        lowest += [v - 0.05 for v in arr([r["min_cosine"] for r in rows]) if np.isfinite(v)]
        ok = np.isfinite(cos) & np.isfinite(lo) & np.isfinite(hi)
        ax_cos.errorbar(
            bs[ok] * shift,
            cos[ok],
            yerr=[lo[ok], hi[ok]],
            fmt=marker,
            color=color,
            capsize=2,
            label=label,
            mfc=fill,
        )
    # Fixed limits where nothing finite was measured: log axes refuse to autoscale on nothing.
    ax_err.set_ylim(*((min(measured) / 5, None) if measured else (1e-2, 1e2)))
    for ax in (ax_err, ax_cos):
        ax.set_xlim(0.7, 1.4 * n)
    ax_err.axhline(1.0, color="grey", lw=0.8)
    ax_err.set(
        xscale="log",
        yscale="log",
        xlabel="mini-batch size B",
        ylabel=r"relative error $\|g_B - g\| / \|g\|$",
        title="Mini-batch gradient error: dots RMS over draws (faint: each draw)\n"
        r"solid: predicted $\sqrt{\sigma^2 (N-B) / (B (N-1))}/\|g\|$,"
        r" dotted: $\sigma/(\sqrt{B}\,\|g\|)$",
    )
    ax_cos.set(
        xscale="log",
        xlabel="mini-batch size B",
        ylim=(min(lowest), 1.05),
        ylabel=r"cosine similarity of $g_B$ to $g$",
        title="Mini-batch gradient direction: mean, min-max over draws\n"
        r"dashed: $1/\sqrt{1 + \mathrm{predicted\ relative\ error}^2}$",
    )
    ax_err.legend(fontsize=8, loc="lower left")
    ax_cos.axhline(0, color="grey", lw=0.8)
    ax_cos.legend(fontsize=8, loc="lower right")
    worst = [v for v in arr([r["rms_relative_error"] for r in full_rows]) if np.isfinite(v)]
    if worst:
        ax_err.text(
            0.99,
            0.98,
            f"B = N = {n:,}: relative error <= {max(worst):.1e}\n(float rounding only)",
            transform=ax_err.transAxes,
            ha="right",
            va="top",
            fontsize=8,
        )
    source = results["source"].split(" (")[0].split(":")[0]  # "idx", "mnist5k", ...: no paths
    fig.suptitle(
        f"How well a mini-batch approximates the gradient over all N = {n:,} training "
        f"examples (MNIST, {source}; {results['spec']['hidden']}/"
        f"{results['spec']['output']}/{results['spec']['cost']})",
        fontsize=11,
    )
    save_figure(fig, Path(run_dir) / "noise_vs_batch_size.png")
