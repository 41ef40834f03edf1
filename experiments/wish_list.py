"""One test example's wish list, on an untrained and a trained network, as numbers and pictures.

Usage::

    python -m experiments.wish_list                    # real MNIST, the first test "2"
    python -m experiments.wish_list --digit 7          # the first test 7
    python -m experiments.wish_list --index 1234 --epochs 10 --out runs/wl
    python -m experiments.wish_list --quick            # embedded 4,000-digit set

The trained network is the untrained one after ``--epochs`` (default 5) epochs of SGD (B=100,
eta=3, hand backward pass). For the chosen example, with ``bpjax.wish_list``, the experiment
writes ``results.json`` first and then, from it, to ``--out`` (default runs/wish_list/<timestamp>):

- ``output_nudges.png``: -dC/da^L = 2 (y - a^L): up for the right digit, down for the rest,
  each as long as twice the distance to its target.
- ``first_layer_nudges.png``: each first-hidden-layer neuron's 784 weight nudges as a 28x28 image.
  For one example they are the digit itself scaled by the neuron's bias nudge: only the weights
  from inked pixels move (route 2).
- ``hebbian.png``: |weight nudge| against the activation the weight comes from, every layer: each
  neuron's points lie on a line through 0 whose slope is its |bias nudge|.
- ``propagated_wishes.png``: what each output neuron asks of each last-hidden-layer activation
  (route 3, stacked), and their sum: that layer's desire, which it passes further back.
- ``sensitivity.png``: the parameters with the largest |dC/dtheta|, and the cost change measured
  when each alone moves by ``--epsilon`` the way the example wishes, beside epsilon |dC/dtheta|;
  and every parameter's |dC/dtheta| by rank.
- ``averages.png``: one example's wish list beside the average over ``--average-over`` (100)
  random training examples and over all of them (the negative gradient).

The identities are measured too: the wish list's parameter nudges vs -backprop, the average over
all training examples vs -jax.grad of the mean cost, and each weight nudge vs (its neuron's
desire through sigma') x (its source activation), and printed. Runtime: about 9 s on real MNIST
on this 2-core machine when it is otherwise idle (figures and compiling dominate; the numbers take
~4 s), about 8 s with ``--quick``.

Measured (real MNIST, seed 0, test example 1, a "2"; 5 epochs give test accuracy 0.940):

- untrained (cost 3.29, predicts 8): the output nudges are +0.54 for the 2 and -0.30 ... -1.80
  for the rest; the example's wish list has cosine 0.81 with the average over all 60,000
  (every example wants every output down), the mean of 100 already 0.997.
- trained (cost 0.013, predicts 2): nudges +0.23 for the 2, at most -0.04 elsewhere; only three
  first-layer neurons (5, 11, 12) carry the wish, the others' sigma' is ~0. Its wish list has
  cosine 0.20 with the all-example average, the mean of 100 0.49.
- moving each of the 15 most sensitive parameters alone by 0.05 changes the cost by 0.98-1.01
  (untrained) and 0.94 (trained) times epsilon |dC/dtheta|; for one example 9,904 (untrained) and
  10,070 (trained) of the 13,002 gradient entries are exactly 0 (weights from blank pixels).
- identities (float32): nudges = -backprop exactly; all-example average vs -jax.grad of the
  mean cost <= 3.6e-7 relative; weight nudge vs desire x sigma' x source <= 1.3e-7.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

import bpjax
from bpjax import wish_list
from bpjax.data import SOURCES, load_mnist
from bpjax.data.errors import MissingDependencyError, MnistFormatError, MnistNotFoundError
from bpjax.train import make_evaluate, make_sgd_epoch, make_train_step
from experiments.common import (
    atomic_write_json,
    make_run_dir,
    mnist_sizes_or_exit,
    package_versions,
    save_figure,
    to_device,
    use_agg_backend,
)

NAME = "wish_list"
NETWORKS = ("untrained", "trained")


@dataclasses.dataclass(frozen=True)
class Config:
    source: str = "auto"
    sizes: tuple[int, ...] = (784, 16, 16, 10)
    index: int | None = None  # test example by index ...
    digit: int | None = 2  # ... or the first test example of this digit
    epochs: int = 5
    batch_size: int = 100
    eta: float = 3.0
    average_over: int = 100
    top_k: int = 15
    epsilon: float = 0.05
    seed: int = 0
    quick: bool = False
    out: str | None = None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.wish_list", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--source", default=None, choices=SOURCES,
                        help="MNIST source (default auto; mnist5k with --quick)")
    parser.add_argument("--sizes", default="784,16,16,10",
                        help="layer sizes: 784 first, 10 last, at least one hidden layer")
    pick = parser.add_mutually_exclusive_group()
    pick.add_argument("--index", type=int, default=None, help="the test example's index")
    pick.add_argument("--digit", type=int, default=None,
                      help="the first test example of this digit (default 2)")
    parser.add_argument("--epochs", type=int, default=5, help="SGD epochs for the trained network")
    parser.add_argument("--batch-size", type=int, default=100, help="SGD mini-batch size")
    parser.add_argument("--eta", type=float, default=3.0, help="SGD learning rate")
    parser.add_argument("--average-over", type=int, default=100,
                        help="average the wish lists of this many random training examples")
    parser.add_argument("--top-k", type=int, default=15, help="most sensitive parameters shown")
    parser.add_argument("--epsilon", type=float, default=0.05,
                        help="step each sensitive parameter alone by this, the way it is wished")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed")
    parser.add_argument("--quick", action="store_true", help="embedded mnist5k: a few seconds")
    parser.add_argument("--out", default=None, help="output directory (must be new or empty)")
    return parser


def parse_args(parser: argparse.ArgumentParser, argv=None) -> Config:
    args = parser.parse_args(argv)
    sizes = mnist_sizes_or_exit(parser, args.sizes, min_layers=3)
    if args.digit is not None and not 0 <= args.digit <= 9:
        parser.error(f"--digit must be 0..9, got {args.digit}")
    if args.index is not None and args.index < 0:
        parser.error(f"--index must be >= 0, got {args.index}")
    if args.epochs < 0 or args.batch_size < 1 or args.average_over < 1 or args.top_k < 1:
        parser.error("--epochs must be >= 0; --batch-size, --average-over, --top-k >= 1")
    for flag, value in (("--eta", args.eta), ("--epsilon", args.epsilon)):
        if not (math.isfinite(value) and value > 0):
            parser.error(f"{flag} must be a positive number, got {value}")
    return Config(
        source=args.source or ("mnist5k" if args.quick else "auto"),
        sizes=sizes,
        index=args.index,
        digit=None if args.index is not None else (2 if args.digit is None else args.digit),
        epochs=args.epochs,
        batch_size=args.batch_size,
        eta=args.eta,
        average_over=args.average_over,
        top_k=args.top_k,
        epsilon=args.epsilon,
        seed=args.seed,
        quick=args.quick,
        out=args.out,
    )


def train(params, data: dict, cfg: Config, key: jax.Array):
    """``cfg.epochs`` epochs of SGD with the hand backward pass; returns the trained params."""
    optimizer = optax.sgd(cfg.eta)
    opt_state = optimizer.init(params)
    epoch_fn = make_sgd_epoch(make_train_step(optimizer, method="backprop"), cfg.batch_size)
    for epoch in range(cfg.epochs):
        params, opt_state, _ = epoch_fn(
            params, opt_state, data["x_train"], data["y_train"], jax.random.fold_in(key, epoch)
        )
    return params


def parameter_names(params) -> list[str]:
    """A name for every entry of ``ravel_pytree(params)``, in its order: ``w2[3,7]``, ``b1[0]``."""
    names = []
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        layer, kind = path[0].idx + 1, path[1].key
        for index in np.ndindex(leaf.shape):
            names.append(f"{kind}{layer}[{','.join(map(str, index))}]")
    return names


def rel_diff(a, b) -> jax.Array:
    """max |a - b| / max |b| over two pytrees."""
    pairs = zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    diff = jnp.max(jnp.stack([jnp.max(jnp.abs(x - y)) for x, y in pairs]))
    return diff / jnp.max(jnp.stack([jnp.max(jnp.abs(y)) for y in jax.tree.leaves(b)]))


def cosine(a, b) -> jax.Array:
    return wish_list.tree_dot(a, b) / (wish_list.tree_norm(a) * wish_list.tree_norm(b))


def rank_profile(values: np.ndarray, points: int = 200) -> dict:
    """|values| sorted descending at ~``points`` log-spaced ranks, and the top shares of sum v^2."""
    mags = np.sort(np.abs(values))[::-1]
    ranks = np.unique(np.geomspace(1, len(mags), points).round().astype(int))
    share = np.cumsum(mags**2) / np.sum(mags**2)
    top = {f"{p}%": float(share[max(1, round(len(mags) * p / 100)) - 1]) for p in (1, 10)}
    return {"ranks": ranks, "magnitudes": mags[ranks - 1], "share_of_squared_norm_in_top": top}


@functools.partial(jax.jit, static_argnames="top_k")
def analyse(params, x, y, xs_some, ys_some, xs_all, ys_all, epsilon, top_k: int) -> dict:
    """The numbers behind the figures for one network and example ``x`` (n_in,), ``y`` one-hot:
    its wish list, the mean over ``xs_some`` and over ``xs_all``, the sensitivity of the top-k
    parameters and the identities, all in one compiled function."""
    one = wish_list.wish_list(params, x, y)
    some = wish_list.mean_wish_list(params, xs_some, ys_some)
    every = wish_list.mean_wish_list(params, xs_all, ys_all)
    zs, activations = bpjax.forward_trace(params, x)
    base_cost = bpjax.example_cost(params, x, y)

    # "The magnitude of each component tells you how sensitive the cost is": move each of the
    # top-k parameters alone by epsilon the way the example wishes and measure the cost change.
    flat_params, unravel = ravel_pytree(params)
    flat = {name: ravel_pytree(wish_list.parameter_nudges(w))[0]
            for name, w in (("one", one), ("some", some), ("every", every))}
    _, top = jax.lax.top_k(jnp.abs(flat["one"]), top_k)

    def moved_cost(i):
        step = epsilon * jnp.sign(flat["one"][i])
        return bpjax.example_cost(unravel(flat_params.at[i].add(step)), x, y)

    desires = wish_list.activation_desires(one)
    minus = functools.partial(jax.tree.map, jnp.negative)
    nudges_every = wish_list.parameter_nudges(every)
    return {
        "one": one, "some": some, "every": every, "flat": flat, "top": top,
        "cost": base_cost,
        "activations": activations,
        "cost_changes": jax.vmap(moved_cost)(top) - base_cost,
        "cosine_to_all": {name: cosine(wish_list.parameter_nudges(w), nudges_every)
                          for name, w in (("one", one), ("some", some), ("every", every))},
        "checks": {
            "one_vs_minus_backprop": rel_diff(
                wish_list.parameter_nudges(one), minus(bpjax.backprop(params, x, y))),
            "every_vs_minus_grad_of_mean_cost": rel_diff(
                nudges_every, minus(jax.grad(bpjax.cost)(params, xs_all, ys_all))),
            "w_nudge_vs_desire_sigma_prime_source": jnp.max(jnp.stack([
                rel_diff(layer.w, jnp.outer(act.vjp(z, a, d), a_prev))
                for layer, d, act, z, a, a_prev in
                zip(one.layers, desires, bpjax.Spec().layer_activations(len(params)), zs,
                    activations[1:], activations[:-1], strict=True)])),
            "route3_sum_vs_a_prev": jnp.max(jnp.stack([
                rel_diff(jnp.sum(layer.a_prev_by_neuron, axis=0), layer.a_prev)
                for layer in one.layers])),
        },
    }


def explain(params, data: dict, index: int, subset: jax.Array, cfg: Config) -> dict:
    """Everything the figures show for one network: the example's wishes, averages, checks."""
    x = data["x_test"][index]
    label = int(data["y_test"][index])
    y = bpjax.one_hot(jnp.asarray(label), cfg.sizes[-1], dtype=x.dtype)
    ys_train = bpjax.one_hot(data["y_train"], cfg.sizes[-1], dtype=x.dtype)
    r = jax.device_get(analyse(params, x, y, data["x_train"][subset], ys_train[subset],
                               data["x_train"], ys_train, cfg.epsilon, cfg.top_k))
    one, activations, top = r["one"], r["activations"], r["top"]
    magnitudes = np.abs(r["flat"]["one"])
    names = parameter_names(params)
    # The first-layer neuron whose average weight nudge is largest: the one the data moves most.
    focus = int(np.argmax(np.sum(r["every"].layers[0].w ** 2, axis=1)))
    averages = {
        name: {"output": r[name].output, "first_layer_w": r[name].layers[0].w[focus],
               "cosine_to_all": float(r["cosine_to_all"][name]),
               "norm": float(np.linalg.norm(r["flat"][name]))}
        for name in ("one", "some", "every")
    }
    return {
        "cost": float(r["cost"]),
        "prediction": int(np.argmax(activations[-1])),
        "output_activations": activations[-1],
        "output_nudges": one.output,
        "layers": [
            {"b_nudges": layer.b, "w_nudges": layer.w, "source_activations": a_prev}
            for layer, a_prev in zip(one.layers, activations[:-1], strict=True)
        ],
        "propagated": {
            "asks_by_output_neuron": one.layers[-1].a_prev_by_neuron,
            "desire": one.layers[-1].a_prev,
        },
        "sensitivity": {
            "names": [names[i] for i in top],
            "gradient_magnitudes": magnitudes[top],
            "predicted_cost_change": -cfg.epsilon * magnitudes[top],
            "measured_cost_change": r["cost_changes"],
            "n_parameters": int(magnitudes.size),
            "n_exactly_zero": int(np.sum(magnitudes == 0)),
            "profile_one": rank_profile(r["flat"]["one"]),
            "profile_every": rank_profile(r["flat"]["every"]),
        },
        "averages": {"focus_neuron": focus, "n_some": int(subset.shape[0]),
                     "n_every": int(data["x_train"].shape[0]), **averages},
        "checks": {name: float(v) for name, v in r["checks"].items()},
    }


def pick_example(parser, cfg: Config, labels: np.ndarray) -> int:
    if cfg.index is not None:
        if cfg.index >= len(labels):
            parser.error(f"--index {cfg.index} is out of range: the test set has {len(labels)}")
        return cfg.index
    hits = np.flatnonzero(labels == cfg.digit)
    if not len(hits):
        parser.error(f"no test example of digit {cfg.digit}")
    return int(hits[0])


# --- Figures, from the results JSON. ----------------------------------------------------------

def _title(net: str, r: dict, label: int) -> str:
    return (f"{net} (test acc {r['test_accuracy']:.2f}): predicts {r['prediction']}, "
            f"target {label}, cost {r['cost']:.3f}")


def plot_output_nudges(res: dict, out_dir) -> None:
    import matplotlib.pyplot as plt

    label = res["example"]["label"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True, layout="constrained")
    for ax, net in zip(axes, NETWORKS, strict=True):
        r = res["networks"][net]
        nudges, acts = np.array(r["output_nudges"]), np.array(r["output_activations"])
        colors = ["tab:green" if j == label else "tab:red" for j in range(len(nudges))]
        ax.bar(range(len(nudges)), nudges, color=colors)
        for j, (v, a) in enumerate(zip(nudges, acts, strict=True)):
            ax.annotate(f"a={a:.2f}", (j, v), ha="center", fontsize=7,
                        va="bottom" if v >= 0 else "top", xytext=(0, 2 if v >= 0 else -2),
                        textcoords="offset points")
        ax.axhline(0, color="black", lw=0.8)
        ax.set(xticks=range(len(nudges)), xlabel="output neuron (digit)",
               title=_title(net, r, label))
    axes[0].set_ylabel(r"desired nudge $-\partial C/\partial a^L_j = 2(y_j - a_j)$")
    fig.suptitle("What the example wants of the output: the right digit up, the rest down, "
                 "each in proportion to its distance from the target")
    save_figure(fig, out_dir / "output_nudges.png")


def plot_first_layer(res: dict, out_dir) -> None:
    import matplotlib.pyplot as plt

    image = np.array(res["example"]["image"]).reshape(28, 28)
    n_hidden = len(res["networks"]["untrained"]["layers"][0]["b_nudges"])
    cols = min(8, n_hidden)
    rows = -(-n_hidden // cols)
    fig, axes = plt.subplots(2 * rows, cols + 1, figsize=(1.6 * (cols + 1), 1.8 * 2 * rows + 0.6),
                             layout="constrained")
    for block, net in enumerate(NETWORKS):
        layer = res["networks"][net]["layers"][0]
        w, b = np.array(layer["w_nudges"]), np.array(layer["b_nudges"])
        lim = np.abs(w).max() or 1.0
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
        fig.colorbar(im, ax=axes[block * rows: (block + 1) * rows, 1:], shrink=0.8,
                     label=f"{net}: weight nudge")
    fig.suptitle("First-layer weight nudges of one example, one 28x28 image per hidden neuron: "
                 "the digit, scaled by the neuron's bias nudge\n(red: the weight should grow, "
                 "blue: shrink; weights from blank pixels do not move)", fontsize=10)
    save_figure(fig, out_dir / "first_layer_nudges.png")


def plot_hebbian(res: dict, out_dir) -> None:
    import matplotlib.pyplot as plt

    n_layers = len(res["networks"]["untrained"]["layers"])
    fig, axes = plt.subplots(2, n_layers, figsize=(4.6 * n_layers, 8), layout="constrained")
    cmap = plt.get_cmap("tab20")
    for row, net in enumerate(NETWORKS):
        for i, layer in enumerate(res["networks"][net]["layers"]):
            ax = axes[row, i]
            w, b = np.abs(np.array(layer["w_nudges"])), np.abs(np.array(layer["b_nudges"]))
            a = np.array(layer["source_activations"])
            for j in range(len(b)):
                color = cmap(j % 20)
                ax.scatter(a, w[j], s=5, color=color, alpha=0.6, lw=0)
                ax.plot([0, 1], [0, b[j]], color=color, lw=0.7)
            ax.set(xlim=(-0.02, 1.02), ylim=(0, 1.05 * max(w.max(), 1e-12)),
                   xlabel=f"source activation $a^{{{i}}}_k$" + (" (pixel)" if i == 0 else ""),
                   title=f"{net}, layer {i + 1} ({w.shape[1]} -> {w.shape[0]})")
            if i == 0:
                ax.set_ylabel(r"|weight nudge| $|\partial C/\partial w_{jk}|$")
    fig.suptitle("Neurons that fire together wire together: each weight's nudge is its neuron's "
                 "bias nudge times the activation it comes from\n(one colour per neuron j; "
                 "lines: slope |bias nudge of j|)")
    save_figure(fig, out_dir / "hebbian.png")


def plot_propagated(res: dict, out_dir) -> None:
    import matplotlib.pyplot as plt

    label = res["example"]["label"]
    fig, axes = plt.subplots(2, 1, figsize=(12, 8), layout="constrained")
    cmap = plt.get_cmap("tab10")
    for ax, net in zip(axes, NETWORKS, strict=True):
        p = res["networks"][net]["propagated"]
        asks, desire = np.array(p["asks_by_output_neuron"]), np.array(p["desire"])
        k = np.arange(asks.shape[1])
        up, down = np.zeros(len(k)), np.zeros(len(k))
        for j, row in enumerate(asks):
            pos, neg = np.clip(row, 0, None), np.clip(row, None, 0)
            kw = {"color": cmap(j % 10), "width": 0.8, "edgecolor": "black" if j == label else None,
                  "linewidth": 1.2 if j == label else 0}
            ax.bar(k, pos, bottom=up, label=f"digit {j}" + (" (target)" if j == label else ""),
                   **kw)
            ax.bar(k, neg, bottom=down, **kw)
            up, down = up + pos, down + neg
        ax.plot(k, desire, "D", color="black", ms=6, label="sum: the desired nudge")
        ax.axhline(0, color="black", lw=0.6)
        ax.margins(y=0.08)
        ax.set(xticks=k, xlabel="last hidden layer's neuron k",
               ylabel=r"ask $-\partial C/\partial z_j \cdot w_{jk}$",
               title=_title(net, res["networks"][net], label))
        ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle("Route 3: what each output neuron j asks of each last-hidden activation "
                 "(stacked), and their sum (black), the desire passed further back")
    save_figure(fig, out_dir / "propagated_wishes.png")


def plot_sensitivity(res: dict, out_dir) -> None:
    import matplotlib.pyplot as plt

    eps = res["config"]["epsilon"]
    fig, axes = plt.subplots(2, 2, figsize=(13, 9), layout="constrained",
                             gridspec_kw={"width_ratios": [1.1, 1]})
    for row, net in enumerate(NETWORKS):
        s = res["networks"][net]["sensitivity"]
        ax = axes[row, 0]
        y = np.arange(len(s["names"]))[::-1]
        ax.barh(y + 0.2, -np.array(s["predicted_cost_change"]), height=0.4,
                label=r"predicted: $\epsilon\,|\partial C/\partial\theta|$")
        ax.barh(y - 0.2, -np.array(s["measured_cost_change"]), height=0.4,
                label="measured: C(before) - C(after)")
        ax.set(yticks=y, yticklabels=s["names"], xlabel=f"cost decrease when moved by {eps}",
               title=f"{net}: the example's {len(y)} most sensitive parameters")
        ax.set_ylim(-2.5, len(y))  # room for the legend below the bars
        ax.legend(fontsize=8, loc="lower right")
        ax = axes[row, 1]
        for key, name in (("profile_one", "one example"), ("profile_every", "mean over all")):
            prof = s[key]
            mags = np.array(prof["magnitudes"])
            share = prof["share_of_squared_norm_in_top"]
            ax.loglog(prof["ranks"], np.where(mags > 0, mags, np.nan),
                      label=f"{name}: top 1% hold {share['1%']:.0%}, top 10% {share['10%']:.0%} "
                            r"of $|\nabla C|^2$")
        ax.set(xlabel="rank", ylabel=r"$|\partial C/\partial\theta|$",
               title=f"{net}: every parameter's sensitivity, largest first\n(for the example "
                     f"{s['n_exactly_zero']:,} of {s['n_parameters']:,} are exactly 0: "
                     "weights from blank pixels)")
        ax.legend(fontsize=8, loc="lower left")
    fig.suptitle("The magnitude of each gradient component is how sensitive the cost is to that "
                 "parameter")
    save_figure(fig, out_dir / "sensitivity.png")


def plot_averages(res: dict, out_dir) -> None:
    import matplotlib.pyplot as plt

    label = res["example"]["label"]
    fig, axes = plt.subplots(4, 3, figsize=(12, 13), layout="constrained",
                             gridspec_kw={"height_ratios": [1, 1.4, 1, 1.4]})
    for block, net in enumerate(NETWORKS):
        avg = res["networks"][net]["averages"]
        columns = (("one", "this one example"), ("some", f"mean over {avg['n_some']}"),
                   ("every", f"mean over all {avg['n_every']:,}"))
        for col, (key, name) in enumerate(columns):
            a = avg[key]
            ax = axes[2 * block, col]
            out = np.array(a["output"])
            colors = ["tab:green" if j == label and key == "one" else "tab:gray"
                      for j in range(len(out))]
            ax.bar(range(len(out)), out, color=colors)
            ax.axhline(0, color="black", lw=0.6)
            ax.set(xticks=range(len(out)),
                   title=f"{net}, {name}\n|nudge| {a['norm']:.3g}, "
                         f"cosine to all-mean {a['cosine_to_all']:.3f}")
            if col == 0:
                ax.set_ylabel("output nudges")
            ax = axes[2 * block + 1, col]
            img = np.array(a["first_layer_w"]).reshape(28, 28)
            lim = np.abs(img).max() or 1.0
            im = ax.imshow(img, cmap="RdBu_r", vmin=-lim, vmax=lim)
            ax.set(xticks=[], yticks=[])
            ax.set_title(f"weight nudges of hidden neuron {avg['focus_neuron']}", fontsize=9)
            fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("One example's wish list vs the average over many: the average over all "
                 "examples is the negative gradient\n(images: the first-layer neuron the full "
                 "average moves most; each image has its own colour scale)")
    save_figure(fig, out_dir / "averages.png")


FIGURES = (plot_output_nudges, plot_first_layer, plot_hebbian, plot_propagated,
           plot_sensitivity, plot_averages)


def main(argv=None) -> dict:
    parser = build_parser()
    cfg = parse_args(parser, argv)
    use_agg_backend()
    try:
        ds = load_mnist(cfg.source)
    except (MnistNotFoundError, MnistFormatError, MissingDependencyError, ValueError) as e:
        parser.error(str(e))
    index = pick_example(parser, cfg, ds.y_test)
    if cfg.average_over > len(ds.y_train) or cfg.batch_size > len(ds.y_train):
        parser.error(f"--average-over and --batch-size must be <= {len(ds.y_train)} examples")
    try:
        out_dir = make_run_dir(cfg.out, NAME)
    except FileExistsError as e:
        parser.error(str(e))
    start = time.perf_counter()
    data = to_device(ds)
    k_init, k_train, k_subset = jax.random.split(jax.random.key(cfg.seed), 3)
    untrained = bpjax.init_params(k_init, cfg.sizes)
    params = {"untrained": untrained, "trained": train(untrained, data, cfg, k_train)}
    subset = jax.random.choice(k_subset, len(ds.y_train), (cfg.average_over,), replace=False)
    evaluate = make_evaluate()
    networks = {}
    for net in NETWORKS:
        networks[net] = explain(params[net], data, index, subset, cfg)
        networks[net]["test_accuracy"] = float(
            evaluate(params[net], data["x_test"], data["y_test"])["accuracy"])
    results = {
        "experiment": NAME,
        "config": cfg,
        "source": ds.source,
        "example": {"index": index, "label": int(ds.y_test[index]), "image": ds.x_test[index]},
        "networks": networks,
        "seconds": time.perf_counter() - start,
        "versions": package_versions(),
    }
    atomic_write_json(out_dir / "results.json", results)
    res = json.loads((out_dir / "results.json").read_text())
    for figure in FIGURES:
        figure(res, out_dir)
    label = res["example"]["label"]
    print(f"test example {index} (a {label}), {ds.source}")
    for net in NETWORKS:
        r = res["networks"][net]
        checks = ", ".join(f"{k} {v:.1e}" for k, v in r["checks"].items())
        print(f"{net:9s}: test acc {r['test_accuracy']:.4f}, predicts {r['prediction']}, "
              f"cost {r['cost']:.4f}, cosine of its wish list to the all-mean "
              f"{r['averages']['one']['cosine_to_all']:.3f} (mean of {r['averages']['n_some']}: "
              f"{r['averages']['some']['cosine_to_all']:.3f})\n           identities: {checks}")
    print(f"wrote {out_dir} ({res['seconds']:.1f} s)", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
