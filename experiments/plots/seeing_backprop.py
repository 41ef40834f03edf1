"""Figures and the printed summary of ``experiments.seeing_backprop``, from results.json alone;
non-finite values (JSON's "nan"/"inf") are gaps, and limits come from the finite values only."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from experiments.plots.lines import arr, finite_max
from experiments.runtime.rundir import save_figure

NETWORKS = ("untrained", "trained")


def summary(results: dict) -> str:
    ex = results["example"]
    lines = [f"test example {ex['index']} (a {ex['label']}), {results['source']}"]
    for net in NETWORKS:
        r, avg = results["networks"][net], results["networks"][net]["averages"]
        checks = ", ".join(f"{k} {float(v):.1e}" for k, v in r["checks"].items())
        lines.append(
            f"{net:9s}: test acc {float(r['test_accuracy']):.4f}, predicts {r['prediction']}, "
            f"cost {float(r['cost']):.4f}, cosine of its wish list to the all-mean "
            f"{float(avg['one']['cosine_to_all']):.3f} (mean of {avg['n_some']}: "
            f"{float(avg['some']['cosine_to_all']):.3f})\n           identities: {checks}"
        )
    return "\n".join(lines)


def _title(net: str, r: dict, label: int) -> str:
    return (
        f"{net} (test acc {float(r['test_accuracy']):.2f}): predicts {r['prediction']}, "
        f"target {label}, cost {float(r['cost']):.3g}"
    )


def plot(results: dict, run_dir: Path) -> None:
    for figure in (output_nudges, first_layer, hebbian, propagated, sensitivity, averages):
        figure(results, Path(run_dir))


def output_nudges(res: dict, out_dir: Path) -> None:
    import matplotlib.pyplot as plt

    label = res["example"]["label"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True, layout="constrained")
    for ax, net in zip(axes, NETWORKS, strict=True):
        r = res["networks"][net]
        nudges, acts = arr(r["output_nudges"]), arr(r["output_activations"])
        colors = ["tab:green" if j == label else "tab:red" for j in range(len(nudges))]
        ax.bar(
            range(len(nudges)), np.nan_to_num(nudges, nan=0.0, posinf=0.0, neginf=0.0), color=colors
        )
        for j, (v, a) in enumerate(zip(np.nan_to_num(nudges), acts, strict=True)):
            ax.annotate(
                f"a={a:.2f}",
                (j, v),
                ha="center",
                fontsize=7,
                va="bottom" if v >= 0 else "top",
                xytext=(0, 2 if v >= 0 else -2),
                textcoords="offset points",
            )
        ax.axhline(0, color="black", lw=0.8)
        ax.set(
            xticks=range(len(nudges)), xlabel="output neuron (digit)", title=_title(net, r, label)
        )
    axes[0].set_ylabel(r"desired nudge $-\partial C/\partial a^L_j$")
    fig.suptitle(
        f"What the example wants of the output ({res['spec']['cost']} cost): the right "
        "digit up, the rest down, each by how far it is from its target"
    )
    save_figure(fig, out_dir / "output_nudges.png")


def first_layer(res: dict, out_dir: Path) -> None:
    import matplotlib.pyplot as plt

    image = arr(res["example"]["image"]).reshape(28, 28)
    n_hidden = len(res["networks"]["untrained"]["layers"][0]["b_nudges"])
    cols = min(8, n_hidden)
    rows = -(-n_hidden // cols)
    fig, axes = plt.subplots(
        2 * rows,
        cols + 1,
        figsize=(1.6 * (cols + 1), 3.6 * rows + 0.6),
        layout="constrained",
        squeeze=False,
    )
    for block, net in enumerate(NETWORKS):
        layer = res["networks"][net]["layers"][0]
        w, b = arr(layer["w_nudges"]), arr(layer["b_nudges"])
        lim = finite_max(w)
        for r in range(rows):
            ax = axes[block * rows + r, 0]
            ax.axis("off")
            if r == 0:
                ax.imshow(image, cmap="gray_r")
                ax.set_title(f"{net}\nthe example", fontsize=8)
        for j in range(rows * cols):
            ax = axes[block * rows + j // cols, 1 + j % cols]
            ax.axis("off")
            if j < n_hidden:
                im = ax.imshow(w[j].reshape(28, 28), cmap="RdBu_r", vmin=-lim, vmax=lim)
                ax.set_title(f"neuron {j}: Δb {b[j]:+.2g}", fontsize=7)
        fig.colorbar(
            im,
            ax=axes[block * rows : (block + 1) * rows, 1:],
            shrink=0.8,
            label=f"{net}: weight nudge",
        )
    fig.suptitle(
        "First-layer weight nudges of one example, one 28x28 image per hidden neuron: "
        "the digit, scaled by the neuron's bias nudge\n(red: the weight should grow, "
        "blue: shrink; weights from blank pixels do not move)",
        fontsize=10,
    )
    save_figure(fig, out_dir / "first_layer_nudges.png")


def hebbian(res: dict, out_dir: Path) -> None:
    import matplotlib.pyplot as plt

    n_layers = len(res["networks"]["untrained"]["layers"])
    fig, axes = plt.subplots(
        2, n_layers, figsize=(4.6 * n_layers, 8), layout="constrained", squeeze=False
    )
    cmap = plt.get_cmap("tab20")
    for row, net in enumerate(NETWORKS):
        for i, layer in enumerate(res["networks"][net]["layers"]):
            ax = axes[row, i]
            w, b = np.abs(arr(layer["w_nudges"])), np.abs(arr(layer["b_nudges"]))
            a = arr(layer["source_activations"])
            for j in range(len(b)):
                color = cmap(j % 20)
                ax.scatter(a, w[j], s=5, color=color, alpha=0.6, lw=0)
                if np.isfinite(b[j]):
                    ax.plot([0, 1], [0, b[j]], color=color, lw=0.7)
            ax.set(
                xlim=(-0.02, 1.02),
                ylim=(0, 1.05 * finite_max(w, 1e-12)),
                xlabel=f"source activation $a^{{{i}}}_k$" + (" (pixel)" if i == 0 else ""),
                title=f"{net}, layer {i + 1} ({w.shape[1]} -> {w.shape[0]})",
            )
            if i == 0:
                ax.set_ylabel(r"|weight nudge| $|\partial C/\partial w_{jk}|$")
    fig.suptitle(
        "Neurons that fire together wire together: each weight's nudge is its neuron's "
        "bias nudge times the activation it comes from\n(one colour per neuron j; "
        "lines: slope |bias nudge of j|; sources outside [0, 1] are off the axes)"
    )
    save_figure(fig, out_dir / "hebbian.png")


def propagated(res: dict, out_dir: Path) -> None:
    import matplotlib.pyplot as plt

    label = res["example"]["label"]
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), layout="constrained")
    cmap = plt.get_cmap("tab10")
    for ax, net in zip(axes, NETWORKS, strict=True):
        p = res["networks"][net]["propagated"]
        asks = np.nan_to_num(arr(p["asks_by_output_neuron"]), nan=0.0, posinf=0.0, neginf=0.0)
        desire = arr(p["desire"])
        k = np.arange(asks.shape[1])
        up, down = np.zeros(len(k)), np.zeros(len(k))
        for j, row in enumerate(asks):
            pos, neg = np.clip(row, 0, None), np.clip(row, None, 0)
            kw = {
                "color": cmap(j % 10),
                "width": 0.8,
                "edgecolor": "black" if j == label else None,
                "linewidth": 1.2 if j == label else 0,
            }
            ax.bar(
                k, pos, bottom=up, label=f"digit {j}" + (" (target)" if j == label else ""), **kw
            )
            ax.bar(k, neg, bottom=down, **kw)
            up, down = up + pos, down + neg
        ax.plot(k, desire, "D", color="black", ms=6, label="sum: the desired nudge")
        ax.axhline(0, color="black", lw=0.6)
        ax.margins(y=0.08)
        ax.set(
            xticks=k,
            xlabel="last hidden layer's neuron k",
            ylabel=r"ask $-\partial C/\partial z_j \cdot w_{jk}$",
            title=_title(net, res["networks"][net], label),
        )
        ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(
        "Route 3: what each output neuron j asks of each last-hidden activation "
        "(stacked), and their sum (black), the desire passed further back"
    )
    save_figure(fig, out_dir / "propagated_wishes.png")


def sensitivity(res: dict, out_dir: Path) -> None:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        2, 2, figsize=(13, 9), layout="constrained", gridspec_kw={"width_ratios": [1.1, 1]}
    )
    for row, net in enumerate(NETWORKS):
        s = res["networks"][net]["sensitivity"]
        ax = axes[row, 0]
        y = np.arange(len(s["names"]))[::-1]
        ax.barh(
            y + 0.2,
            np.nan_to_num(-arr(s["predicted_cost_change"])),
            height=0.4,
            label=r"predicted: $\epsilon\,|\partial C/\partial\theta|$",
        )
        ax.barh(
            y - 0.2,
            np.nan_to_num(-arr(s["measured_cost_change"])),
            height=0.4,
            label="measured: C(before) - C(after)",
        )
        ax.set(
            yticks=y,
            yticklabels=s["names"],
            xlabel=f"cost decrease when moved by {s['epsilon']}",
            title=f"{net}: the example's {len(y)} most sensitive parameters",
        )
        ax.set_ylim(-2.5, len(y))  # room for the legend below the bars
        ax.legend(fontsize=8, loc="lower right")
        ax = axes[row, 1]
        for key, name in (("profile_one", "one example"), ("profile_every", "mean over all")):
            prof = s[key]
            mags = arr(prof["magnitudes"])
            share = {k: float(v) for k, v in prof["share_of_squared_norm_in_top"].items()}
            ax.loglog(
                prof["ranks"],
                np.where(np.isfinite(mags) & (mags > 0), mags, np.nan),
                label=f"{name}: top 1% hold {share['1%']:.0%}, top 10% {share['10%']:.0%} "
                r"of $|\nabla C|^2$",
            )
        ax.set(
            xlabel="rank",
            ylabel=r"$|\partial C/\partial\theta|$",
            title=f"{net}: every parameter's sensitivity, largest first\n(for the example "
            f"{s['n_exactly_zero']:,} of {s['n_parameters']:,} are exactly 0)",
        )
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle(
        "The magnitude of each gradient component is how sensitive the cost is to that parameter"
    )
    save_figure(fig, out_dir / "sensitivity.png")


def averages(res: dict, out_dir: Path) -> None:
    import matplotlib.pyplot as plt

    label = res["example"]["label"]
    fig, axes = plt.subplots(
        4,
        3,
        figsize=(12, 13),
        layout="constrained",
        gridspec_kw={"height_ratios": [1, 1.4, 1, 1.4]},
    )
    for block, net in enumerate(NETWORKS):
        avg = res["networks"][net]["averages"]
        columns = (
            ("one", "this one example"),
            ("some", f"mean over {avg['n_some']}"),
            ("every", f"mean over all {avg['n_every']:,}"),
        )
        for col, (key, name) in enumerate(columns):
            a = avg[key]
            ax = axes[2 * block, col]
            out = np.nan_to_num(arr(a["output"]), nan=0.0, posinf=0.0, neginf=0.0)
            colors = [
                "tab:green" if j == label and key == "one" else "tab:gray" for j in range(len(out))
            ]
            ax.bar(range(len(out)), out, color=colors)
            ax.axhline(0, color="black", lw=0.6)
            ax.set(
                xticks=range(len(out)),
                title=f"{net}, {name}\n|nudge| {float(a['norm']):.3g}, "
                f"cosine to all-mean {float(a['cosine_to_all']):.3f}",
            )
            if col == 0:
                ax.set_ylabel("output nudges")
            ax = axes[2 * block + 1, col]
            img = arr(a["first_layer_w"]).reshape(28, 28)
            lim = finite_max(img)
            im = ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"weight nudges of hidden neuron {avg['focus_neuron']}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(
        "One example's wish list vs the average over many: the average over all "
        "examples is the negative gradient\n(images: the first-layer neuron the full "
        "average moves most; each image has its own colour scale)"
    )
    save_figure(fig, out_dir / "averages.png")
