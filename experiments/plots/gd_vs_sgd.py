"""Figures of ``experiments.gd_vs_sgd``, drawn from its results.json alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.plots.lines import finite_xy, series_figure

STYLES = {
    "sgd": ("SGD (mini-batch)", "tab:red"),
    "gd": ("full-batch GD", "tab:blue"),
    "gd_equal_time": ("full-batch GD, equal time", "tab:cyan"),
}


def plot(results: dict, run_dir: Path) -> None:
    history = results["history"]
    cost = f"training cost ({results['spec']['cost']})"

    def lines(key, x_key, names=STYLES):
        return {
            STYLES[n][0]: ([r[x_key] for r in history[n]], [r[key] for r in history[n]])
            for n in names
            if history.get(n)
        }

    styles = {label: {"color": color} for label, color in STYLES.values()}
    by_epoch = lines("train_cost", "epoch", ("sgd", "gd"))
    sgd = history["sgd"]
    if sgd and sgd[0].get("minibatch_cost"):
        per = len(sgd[0]["minibatch_cost"])
        xs = [r["epoch"] - 1 + (i + 1) / per for r in sgd for i in range(per)]
        by_epoch["SGD mini-batch cost"] = (xs, [c for r in sgd for c in r["minibatch_cost"]])
        styles["SGD mini-batch cost"] = {"color": "tab:red", "alpha": 0.25, "lw": 0.8}
    series_figure(by_epoch, "epoch", cost, run_dir / "cost_vs_epoch.png", logy=True, styles=styles)
    series_figure(
        lines("train_cost", "train_time_s"),
        "training wall time (s, compile excluded)",
        cost,
        run_dir / "cost_vs_time.png",
        logy=True,
        styles=styles,
    )
    series_figure(
        lines("test_accuracy", "epoch", ("sgd", "gd")),
        "epoch",
        "test accuracy",
        run_dir / "accuracy_vs_epoch.png",
        styles=styles,
    )
    if "whole" in results.get("trajectory", {}):
        trajectories(results["trajectory"], run_dir / "trajectories.png")
    if "to_target" in results:
        to_target(results["to_target"], run_dir)


def trajectories(traj: dict, path: Path) -> None:
    """Both paths over the cost surface's contours on their PCA plane, and the close-up."""
    import matplotlib.pyplot as plt

    from experiments.runtime.rundir import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(12, 5.2))
    panels = (
        (axes[0], traj["whole"], "the whole run (PCA of both paths)"),
        (
            axes[1],
            traj["start"],
            "the start: GD's steps and SGD's first epoch (their own PCA plane)",
        ),
    )
    for ax, view, title in panels:
        cost = np.array(view["cost"], dtype=float)
        cost[~np.isfinite(cost) | (cost <= 0)] = np.nan  # left blank, not drawn
        if np.isfinite(cost).any():
            cs = ax.contourf(
                view["u"], view["v"], np.log10(cost), levels=20, cmap="viridis", alpha=0.85
            )
            fig.colorbar(cs, ax=ax, label="log10 training cost (on the plane)")
        coords = view["coords"]
        first = np.array(coords["sgd_first_epoch"], dtype=float)
        ax.plot(
            *finite_xy(first[:, 0], first[:, 1]),
            ".-",
            color="tab:orange",
            lw=0.8,
            ms=2,
            label=f"SGD's first epoch, every {traj['path_every']} steps: the drunk man",
        )
        for name in ("sgd", "gd"):
            if name in coords:
                pts = np.array(coords[name], dtype=float)
                ax.plot(
                    *finite_xy(pts[:, 0], pts[:, 1]),
                    "o-",
                    color=STYLES[name][1],
                    ms=3,
                    lw=1.2,
                    label=f"{STYLES[name][0]}, per epoch",
                )
        ax.plot(*first[0], "k*", ms=12, label="shared start")
        ax.set_xlim(view["u"][0], view["u"][-1])
        ax.set_ylim(view["v"][0], view["v"][-1])
        ev = view["explained_variance"]
        ax.set_xlabel(f"PC 1 ({100 * ev[0]:.0f}% of the points' variance)")
        ax.set_ylabel(f"PC 2 ({100 * ev[1]:.0f}%)")
        ax.set_title(title, fontsize=10)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("The careful man (full-batch GD) and the drunk man (SGD)")
    save_figure(fig, path)


def to_target(tt: dict, run_dir: Path) -> None:
    """``--to-target``: accuracy and training cost of the tuned arms against example-gradients
    and against training seconds (both log axes)."""
    for x_key, xlabel, name in (
        ("examples", "example-gradients processed", "examples"),
        ("seconds", "training wall time (s, compile and evaluation excluded)", "time"),
    ):
        compute_figure(tt, x_key, xlabel, run_dir / f"to_target_vs_{name}.png")


def compute_figure(tt: dict, x_key: str, xlabel: str, path: Path) -> None:
    import matplotlib.pyplot as plt

    from experiments.runtime.rundir import save_figure

    fig, (acc, cost) = plt.subplots(1, 2, figsize=(12, 4.6))
    for arm in ("sgd", "gd"):
        h, (label, color) = tt[arm], STYLES[arm]
        lr = tt[f"select_{arm}"]["chosen"]
        xs = np.array(h[x_key], dtype=float)
        keep = xs > 0  # log axis: the start (x = 0) is left out
        for key, ax, style in (
            ("test_accuracy", acc, "-"),
            ("validation_accuracy", acc, ":"),
            ("train_cost", cost, "-"),
        ):
            ys = np.array([float(r[0]) for r in h[key]])
            split = key.split("_")[0]
            ax.plot(
                *finite_xy(xs[keep], ys[keep]),
                style,
                color=color,
                label=f"{label}, lr {lr:g} ({split})",
            )
    for level in tt["levels"]:
        acc.axhline(level, color="gray", lw=0.6, ls="--")
    acc.set_ylim(max(0.0, min(0.8, acc.get_ylim()[0])), 1.0)
    acc.set_ylabel("accuracy")
    cost.set_ylabel("training cost (no L2 term)")
    cost.set_yscale("log")
    for ax in (acc, cost):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=7)
    fig.suptitle(
        "Learning rates tuned on validation: SGD vs full-batch GD "
        f"(target {100 * tt['target']:.2f}% validation)"
    )
    save_figure(fig, path)


def summary(results: dict) -> str:
    head = (
        f"{'method':16} {'epochs':>6} {'steps':>7} {'train cost':>10} {'test cost':>9} "
        f"{'test acc':>8} {'best acc':>8} {'train s':>8}"
    )
    lines = [head, "-" * len(head)]
    for name, rows in results["history"].items():
        last, steps = rows[-1], results["steps_per_epoch"].get(name, 1)
        best = max(float(r["test_accuracy"]) for r in rows)
        lines.append(
            f"{name:16} {last['epoch']:>6} {last['epoch'] * steps:>7} "
            f"{float(last['train_cost']):>10.4f} {float(last['test_cost']):>9.4f} "
            f"{100 * float(last['test_accuracy']):>7.2f}% {100 * best:>7.2f}% "
            f"{last['train_time_s']:>8.2f}"
        )
    if "to_target" in results:
        lines += ["", results["to_target"]["table_md"]]
    t = results["timing_s"]
    lines.append("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in t.items()))
    return "\n".join(lines)


def to_target_table(tt: dict) -> str:
    """The markdown table of ``compute_to_target.compare``'s result."""
    sel = {a: tt[f"select_{a}"] for a in ("sgd", "gd")}
    lines = [
        f"Learning rates chosen on the validation split: SGD {sel['sgd']['chosen']:g} "
        f"(grid {', '.join(f'{v:g}' for v in sel['sgd']['lrs'])}; {sel['sgd']['metric']}), "
        f"GD {sel['gd']['chosen']:g} (grid {', '.join(f'{v:g}' for v in sel['gd']['lrs'])}; "
        f"{sel['gd']['metric']}). Target: {100 * tt['target']:.2f}% validation (SGD's "
        f"final); GD budget {tt['budget_steps']['gd']} full-batch steps.",
        "",
        "| validation accuracy | SGD example-gradients | SGD seconds | GD example-gradients "
        "| GD seconds | GD / SGD examples | GD / SGD seconds |",
        "|---|---|---|---|---|---|---|",
    ]

    def cell(r):
        note = "" if r["reached"] else f" (best {100 * r['best']:.2f}%)"
        return f"{r['examples']:,.0f}{note}", f"{r['seconds']:.2f}"

    for row in tt["table"]:
        (ea, sa), (eb, sb) = cell(row["sgd"]), cell(row["gd"])
        sign = {"=": "", ">=": "> ", "<=": "< "}.get(row["ratio_is"], "")
        ratio = [
            f"{sign}{row[k]:.3g}×" if row[k] is not None else "–"
            for k in ("examples_ratio", "seconds_ratio")
        ]
        lines.append(
            f"| {100 * row['level']:.0f}% | {ea} | {sa} | {eb} | {sb} | {ratio[0]} | {ratio[1]} |"
        )
    for arm in ("sgd", "gd"):
        h = tt[arm]
        lines.append(
            f"\n{arm.upper()} at the end: {h['step'][-1]} steps, {h['examples'][-1]:,} "
            f"example-gradients, {h['seconds'][-1]:.1f} s; test accuracy "
            f"{100 * h['test_accuracy'][-1][0]:.2f}%, training cost "
            f"{h['train_cost'][-1][0]:.4f}."
        )
    return "\n".join(lines)
