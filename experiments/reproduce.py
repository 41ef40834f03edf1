"""The books' published MNIST numbers beside ours: each row the book's exact recipe, several seeds.

    python -m experiments.reproduce                          # every row, 3 seeds each (full MNIST)
    python -m experiments.reproduce --rows ch1_30,ch3_l2_30  # some rows
    python -m experiments.reproduce --quick                  # seconds: mnist5k, 1 epoch, 2 seeds
    python -m experiments.reproduce --replot RUN_DIR         # figures + table.md from results.json

Each row of ``RECIPES`` is a published result (Nielsen, "Neural Networks and Deep Learning",
chapters 1 and 3; 3Blue1Brown, "Deep learning", chapter 2) with the recipe as an
``experiments.train`` command line, the book's values typed as printed: Nielsen's quadratic
cost has a 1/2 (``--cost quadratic_half``) so his eta is our ``--lr``; his L2 term
(lambda / 2n) sum w^2 with n = 50,000 training images is ``--weight-decay lambda/n``; his
``network.py`` and ``large_weight_initializer`` draw w, b ~ N(0, 1) (``--init standard``), his
``default_weight_initializer`` w ~ N(0, 1/n_in) (``--init scaled``); he trains on the first
50,000 training images (``--validation 10000``).

One difference is handled here rather than in ``experiments.train``: Nielsen's L2 decays only
the weights, while ``--weight-decay`` (optax ``add_decayed_weights``, unmasked) decays the biases
too. Rows here decay weights only (an optax mask) unless ``--decay-biases``; the command in each
row is then the same recipe with that one difference.

The seeds of a row train as ONE vmapped program (``bpjax.sweep.train_sweep``); seed s uses the
keys of ``experiments.train --seed s``. Per run: the test accuracy after the last epoch, at the
best test epoch (Nielsen's chapter-1 convention: "at its peak"), and at the best validation
epoch (the honest model selection); the row reports mean and std over seeds, and its wall time.

Writes ``results.json``, ``table.md`` (the table, for docs/reproductions.md) and
``accuracy_vs_epoch.png`` (test accuracy of every row, seed mean and range).
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import numpy as np

from experiments import runtime
from experiments.plots import reproduce as plots
from experiments.runtime import cli, options
from experiments.runtime.cli import flag

NIELSEN = "Nielsen, Neural Networks and Deep Learning"
CH1 = "ch. 1, 'Implementing our network to classify digits'"
CH3_CE = "ch. 3, 'Using the cross-entropy to classify MNIST digits'"
CH3_L2 = "ch. 3, 'Regularization'"
CH3_INIT = "ch. 3, 'Weight initialization'"
NETWORK_PY = "--cost quadratic_half --schedule constant --init standard --validation 10000"
NETWORK2_PY = "--cost cross_entropy --schedule constant --validation 10000"


class Recipe(NamedTuple):
    """A published result: ``published`` accuracy in %, what it measures (``metric``), where it
    is printed (``source``, ``quote``) and the recipe as ``experiments.train`` flags."""

    published: float
    metric: str  # "peak test" (best epoch on test), "test", "validation"
    source: str
    quote: str
    args: str


RECIPES: dict[str, Recipe] = {
    "ch1_30": Recipe(
        95.42,
        "peak test",
        f"{NIELSEN}, {CH1}",
        "net.SGD(training_data, 30, 10, 3.0, test_data=test_data) ... 95.42 percent at its peak "
        "('Epoch 28')",
        f"--sizes 784,30,10 --lr 3 --batch-size 10 --epochs 30 --weight-decay 0 {NETWORK_PY}",
    ),
    "ch1_100": Recipe(
        96.59,
        "peak test",
        f"{NIELSEN}, {CH1}",
        "net = network.Network([784, 100, 10]) ... this improves the results to 96.59 percent",
        f"--sizes 784,100,10 --lr 3 --batch-size 10 --epochs 30 --weight-decay 0 {NETWORK_PY}",
    ),
    "ch3_ce_30": Recipe(
        95.49,
        "test",
        f"{NIELSEN}, {CH3_CE}",
        "network2.Network([784, 30, 10], cost=network2.CrossEntropyCost); "
        "net.large_weight_initializer(); net.SGD(training_data, 30, 10, 0.5, ...) ... "
        "95.49 percent accuracy",
        f"--sizes 784,30,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 0 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_ce_100": Recipe(
        96.82,
        "test",
        f"{NIELSEN}, {CH3_CE}",
        "the case where we use 100 hidden neurons, the cross-entropy, and otherwise keep the "
        "parameters the same ... 96.82 percent",
        f"--sizes 784,100,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 0 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_l2_30": Recipe(
        96.49,
        "test",
        f"{NIELSEN}, {CH3_L2}",
        "net.SGD(training_data, 30, 10, 0.5, lmbda = 5.0, evaluation_data=test_data, ...) ... "
        "the classification accuracy on the test data ... 96.49 percent",
        f"--sizes 784,30,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_l2_100": Recipe(
        97.92,
        "validation",
        f"{NIELSEN}, {CH3_L2}",
        "100 hidden neurons ... lambda = 5.0 ... classification accuracy of 97.92 percent on the "
        "validation data",
        f"--sizes 784,100,10 --lr 0.5 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_init_standard": Recipe(
        96.0,
        "validation",
        f"{NIELSEN}, {CH3_INIT}",
        "net.large_weight_initializer(); net.SGD(training_data, 30, 10, 0.1, lmbda = 5.0, "
        "evaluation_data=validation_data, ...) ... somewhat over 96 percent",
        f"--sizes 784,30,10 --lr 0.1 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init standard {NETWORK2_PY}",
    ),
    "ch3_init_scaled": Recipe(
        96.0,
        "validation",
        f"{NIELSEN}, {CH3_INIT}",
        "the same with the default 1/sqrt(n_in) initialization ... In both cases, we end up "
        "with a classification accuracy somewhat over 96 percent",
        f"--sizes 784,30,10 --lr 0.1 --batch-size 10 --epochs 30 --weight-decay 1e-4 "
        f"--init scaled {NETWORK2_PY}",
    ),
    "3b1b": Recipe(
        96.0,
        "test",
        "3Blue1Brown, Deep learning ch. 2, 'Gradient descent, how neural networks "
        "learn' (with Nielsen's network.py, which the video points to)",
        "this network ... classifies about 96% of the new images that it's never seen before "
        "correctly",
        f"--sizes 784,16,16,10 --lr 3 --batch-size 10 --epochs 30 --weight-decay 0 {NETWORK_PY}",
    ),
    "bpjax_default": Recipe(
        96.0,
        "test",
        "the shared default recipe of experiments.train (compared with 3Blue1Brown's ~96%)",
        "",
        "--sizes 784,16,16,10",
    ),
    "bpjax_recipe": Recipe(
        96.0,
        "test",
        "experiments.recipe_search: the best of 16 recipes by validation accuracy "
        "(docs/reproductions.md); its L2 decays biases too, so run this row with --decay-biases",
        "",
        "--sizes 784,16,16,10 --hidden sigmoid --output softmax --cost log_likelihood "
        "--optimizer momentum --lr 0.1 --schedule cosine --weight-decay 1e-4 --epochs 60 "
        "--batch-size 100 --validation 10000",
    ),
}


@dataclasses.dataclass(frozen=True)
class Config(runtime.DataOptions, runtime.RunOptions):
    rows: tuple[str, ...] = flag(
        (), "rows to run (default: all): " + ", ".join(RECIPES), metavar="NAME,..."
    )
    seeds: int = flag(3, "seeds per row, trained together as one vmapped program")
    max_epochs: int = flag(0, "cap every row's epochs (0: the recipe's own)")
    decay_biases: bool = flag(
        False,
        "L2 on biases too, as experiments.train's --weight-decay "
        "does (Nielsen decays weights only)",
    )

    def check(self) -> None:
        super().check()
        unknown = [r for r in self.rows if r not in RECIPES]
        if unknown:
            raise runtime.ConfigError(
                f"--rows: unknown {', '.join(unknown)}; valid: {', '.join(RECIPES)}"
            )
        options.at_least("seeds", self.seeds)
        options.at_least("max_epochs", self.max_epochs, 0)
        if self.validation:
            raise runtime.ConfigError(
                "--validation: each row carries its recipe's own split "
                "(Nielsen's is 10000); leave --validation at 0"
            )


QUICK = {
    "source": "mnist5k",
    "seeds": 2,
    "max_epochs": 1,
    "rows": ("ch1_30", "ch3_l2_30", "bpjax_default"),
}


def train_config(recipe: Recipe):
    """The recipe's ``experiments.train`` config (parsed as the command line would be)."""
    from experiments import train

    parser = cli.build_parser(train.Config, "python -m experiments.train", "")
    try:
        given = vars(parser.parse_args(recipe.args.split()))
    except SystemExit:
        raise runtime.ConfigError(f"recipe {recipe.args!r} does not parse") from None
    cfg = train.Config(**given)
    cfg.check()
    return cfg


def command(recipe: Recipe) -> str:
    return f"python -m experiments.train {recipe.args}"


def weights_only(params) -> list[dict[str, bool]]:
    """The L2 mask of Nielsen's regulariser: decay every ``w``, no ``b``."""
    return [{"w": True, "b": False} for _ in params]


def make_optimizer(tcfg, total_steps: int, decay_biases: bool):
    """``tcfg``'s optimizer and schedule, with L2 ``tcfg.weight_decay`` on the weights only (or
    on everything, as ``experiments.train``, with ``decay_biases``)."""
    import optax

    from bpjax import optimizers

    tx = optimizers.make_optimizer(
        tcfg.optimizer,
        tcfg.lr,
        schedule=tcfg.schedule,
        total_steps=total_steps,
        **tcfg.optimizer_kwargs(),
    )
    if tcfg.weight_decay == 0:
        return tx
    mask = None if decay_biases else weights_only
    return optax.chain(optax.add_decayed_weights(tcfg.weight_decay, mask=mask), tx)


def split(pool_x, pool_y, validation: int):
    """Nielsen's split of the pooled training images: the last ``validation`` for validation."""
    n = len(pool_y) - validation
    return (pool_x[:n], pool_y[:n]), (pool_x[n:], pool_y[n:])


def run_row(name: str, cfg: Config, ctx: runtime.Context, pool, test) -> dict:
    import jax
    import jax.numpy as jnp

    import bpjax
    from bpjax import sweep

    recipe = RECIPES[name]
    tcfg = train_config(recipe)
    epochs = min(tcfg.epochs, cfg.max_epochs) if cfg.max_epochs else tcfg.epochs
    validation = tcfg.validation
    if validation >= len(pool[1]):
        if not cfg.quick:
            raise runtime.ConfigError(
                f"row {name}: --validation {validation} leaves no training images of {len(pool[1])}"
            )
        validation = len(pool[1]) // 5
    (x, labels), val = split(*pool, validation)
    x, labels = jnp.asarray(x), jnp.asarray(labels)
    eval_sets = {"test": tuple(map(jnp.asarray, test))}
    if validation:
        eval_sets["validation"] = tuple(map(jnp.asarray, val))
    spec = tcfg.spec()
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    # Seed s: the (init, order) keys of ``experiments.train --seed s``.
    pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(jnp.asarray(seeds, "uint32"))
    tx = make_optimizer(tcfg, epochs * (x.shape[0] // tcfg.batch_size), cfg.decay_biases)
    ctx.say(
        f"{name}: {len(seeds)} seeds x {epochs} epochs of {x.shape[0]} images, {tcfg.sizes} {spec}"
    )
    t0 = time.perf_counter()
    result = sweep.train_sweep(
        tx,
        lambda k: bpjax.init_params(k, tcfg.sizes, init=tcfg.init),
        None,
        pairs[:, 0],
        x,
        labels,
        epochs=epochs,
        batch_size=tcfg.batch_size,
        order_key=pairs[:, 1],
        eval_sets=eval_sets,
        method=tcfg.method,
        spec=spec,
    )
    seconds = time.perf_counter() - t0
    h = {k: np.asarray(v) for k, v in result.history.items()}  # (epochs, R)
    runs = np.arange(len(seeds))
    per_run = {
        "final_test": h["test_accuracy"][-1],
        "peak_test": h["test_accuracy"].max(axis=0),
        "peak_test_epoch": h["test_accuracy"].argmax(axis=0) + 1,
    }
    if "validation_accuracy" in h:
        best_val = h["validation_accuracy"].argmax(axis=0)
        per_run["final_validation"] = h["validation_accuracy"][-1]
        per_run["test_at_best_validation"] = h["test_accuracy"][best_val, runs]
    return {
        "name": name,
        "published": recipe.published,
        "metric": recipe.metric,
        "source": recipe.source,
        "quote": recipe.quote,
        "command": command(recipe),
        "spec": spec.to_dict(),
        "seeds": seeds,
        "epochs": epochs,
        "n_train": int(x.shape[0]),
        "decay_biases": cfg.decay_biases,
        "seconds": seconds,
        "finite": bool(h["finite"].all()),
        "per_run": {k: np.asarray(v).tolist() for k, v in per_run.items()},
        "history": {k: v.tolist() for k, v in h.items()},
    }


def run(cfg: Config, ctx: runtime.Context) -> dict:
    ds = ctx.data
    pool = (np.concatenate([ds.x_train, ds.x_val]), np.concatenate([ds.y_train, ds.y_val]))
    names = list(cfg.rows or RECIPES)
    rows: list[dict] = []
    restored = ctx.restore(lambda record: {"rows_done": np.zeros((), np.int64)})
    if restored is not None:
        rows = restored[2]["rows"]
    for i, name in enumerate(names[len(rows) :], start=len(rows)):
        with ctx.training(), ctx.phase("rows"):
            rows.append(run_row(name, cfg, ctx, pool, (ds.x_test, ds.y_test)))
        ctx.say(_row_line(rows[-1]))
        ctx.epoch_end(
            i + 1,
            lambda: ({"rows_done": np.asarray(len(rows))}, {"rows": rows}),
            final=i + 1 == len(names),
        )
    return {"source": ds.source, "rows": rows, "table": table(rows)}


# --- the table ---------------------------------------------------------------------------------


def _stat(values) -> str:
    v = 100 * np.asarray(values, dtype=np.float64)
    return f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0.0:.2f}"


def _measured(row: dict) -> np.ndarray:
    """The runs' numbers comparable with the published one (its metric)."""
    key = {"peak test": "peak_test", "test": "final_test", "validation": "final_validation"}[
        row["metric"]
    ]
    return np.asarray(row["per_run"].get(key, row["per_run"]["final_test"]))


def _row_line(row: dict) -> str:
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


def summary(results: dict) -> str:
    return results["table"]


EXPERIMENT = runtime.Experiment(
    name="reproduce",
    description="The books' published MNIST results beside measured ones.",
    config=Config,
    run=run,
    plot=plots.plot,
    summary=summary,
    quick=QUICK,
)


def main(argv=None):
    return runtime.main(EXPERIMENT, argv)


if __name__ == "__main__":
    main()
