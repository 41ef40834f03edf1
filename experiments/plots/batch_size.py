"""Figures of ``experiments.batch_size``: steps against examples with the fitted hyperbola, the
noise scale at the target against batch size, and ``table.md`` (also the printed summary)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.runtime.rundir import atomic_write_bytes, save_figure


def row_line(row: dict) -> str:
    if row["lr"] is None:
        return f"B={row['batch_size']}: target not reached"
    return (
        f"B={row['batch_size']}: lr {row['lr']:.3g}, S {row['steps_mean']:.1f} ± "
        f"{row['steps_std']:.1f}, E {row['examples_mean']:.0f}, B_noise "
        f"{np.mean(row['b_noise']):.0f}, {row['seconds']:.0f} s"
    )


def table(results: dict) -> str:
    """The markdown table of a run: one row per batch size, then the fit and B_noise."""
    lines = [
        "| B | tuned lr (grid) | steps S | examples E | B_noise at target | time |",
        "|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        grid = ", ".join(f"{v:.3g}" for v in r["lrs_tried"])
        if r["lr"] is None:
            lines.append(
                f"| {r['batch_size']} | none reached ({grid}) | – | – | – | {r['seconds']:.0f} s |"
            )
            continue
        edge = " (edge)" if r.get("lr_at_edge") else ""
        bn = np.asarray(r["b_noise"])
        lines.append(
            f"| {r['batch_size']} | {r['lr']:.3g}{edge} ({grid}) | {r['steps_mean']:.1f} ± "
            f"{r['steps_std']:.1f} | {r['examples_mean']:.0f} | {bn.mean():.0f} ± "
            f"{bn.std(ddof=1) if bn.size > 1 else 0:.0f} | {r['seconds']:.0f} s |"
        )
    if "fit" in results:
        f, per = results["fit"], results.get("fit_per_seed", [])

        def spread(key):
            v = np.array([p[key] for p in per])
            return f" ± {v.std(ddof=1):.3g} over seeds" if v.size > 1 else ""

        noise = np.concatenate(
            [np.asarray(r["b_noise"]) for r in results["rows"] if r.get("b_noise")]
            or [np.array([np.nan])]
        )
        lines += [
            "",
            f"Fit (seed means): S_min = {f['s_min']:.3g}{spread('s_min')}, "
            f"E_min = {f['e_min']:.3g}{spread('e_min')}, B_crit = E_min/S_min = "
            f"{f['b_crit']:.3g}{spread('b_crit')}; rms log error {f['rms_log_error']:.3f}.",
            f"B_noise at the target, all tuned runs: median {np.nanmedian(noise):.3g} "
            f"(range {np.nanmin(noise):.3g} to {np.nanmax(noise):.3g}); "
            f"B_crit / B_noise = {f['b_crit'] / np.nanmedian(noise):.2f}.",
        ]
    return "\n".join(lines)


def plot(results: dict, run_dir: Path) -> None:
    import matplotlib.pyplot as plt

    from bpjax import scaling

    atomic_write_bytes(run_dir / "table.md", (table(results) + "\n").encode())
    rows = [r for r in results["rows"] if r["lr"] is not None]
    b = np.array([r["batch_size"] for r in rows], dtype=float)
    steps = [np.array(r["steps"], dtype=float) for r in rows]
    s = np.array([v.mean() for v in steps])
    s_err = np.array([v.std(ddof=1) if v.size > 1 else 0.0 for v in steps])

    fig, ax = plt.subplots(figsize=(6.6, 4.6))
    ax.errorbar(b * s, s, yerr=s_err, xerr=b * s_err, fmt="o", capsize=3, label="measured")
    for bi, si, ei in zip(b, s, b * s, strict=True):
        ax.annotate(f"B={int(bi)}", (ei, si), textcoords="offset points", xytext=(5, 4), fontsize=7)
    if "fit" in results:
        fit = scaling.ScalingFit(**{k: float(v) for k, v in results["fit"].items()})
        grid = np.geomspace(fit.s_min * 1.001, max(s.max(), fit.s_min * 2) * 3, 400)
        ax.plot(
            scaling.examples_on_hyperbola(fit, grid),
            grid,
            "-",
            alpha=0.7,
            label=f"fit: S_min={fit.s_min:.3g}, E_min={fit.e_min:.3g}, B_crit={fit.b_crit:.3g}",
        )
        ax.axhline(fit.s_min, ls=":", lw=1, color="gray")
        ax.axvline(fit.e_min, ls=":", lw=1, color="gray")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("examples E to the target")
    ax.set_ylabel("steps S to the target")
    ax.set_title(
        f"validation accuracy {results['target']:.2f}, tuned learning rate per B", fontsize=10
    )
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_figure(fig, run_dir / "steps_vs_examples.png")

    fig, ax = plt.subplots(figsize=(6.6, 4.2))
    for bi, r in zip(b, rows, strict=True):
        noise = np.array(r.get("b_noise", []), dtype=float)
        noise = noise[np.isfinite(noise)]
        ax.plot(np.full(noise.size, bi), noise, "o", color="C0", alpha=0.7)
    if "fit" in results:
        ax.axhline(
            float(results["fit"]["b_crit"]),
            color="C1",
            label=f"B_crit (fit) = {float(results['fit']['b_crit']):.3g}",
        )
        ax.legend(fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size B of the run")
    ax.set_ylabel("B_noise = tr(Σ)/|G|² where it reached the target")
    ax.grid(alpha=0.3, which="both")
    save_figure(fig, run_dir / "noise_scale.png")
