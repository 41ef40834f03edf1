"""The books' published MNIST numbers beside ours: each row the book's exact recipe, several seeds.

    python -m experiments.reproduce                          # every row, 3 seeds each (full MNIST)
    python -m experiments.reproduce --rows ch1_30,ch3_l2_30  # some rows
    python -m experiments.reproduce --quick                  # seconds: mnist5k, 1 epoch, 2 seeds
    python -m experiments.reproduce --replot RUN_DIR         # figures + table.md from results.json

Each row of ``experiments.recipes`` is a published result (Nielsen, "Neural Networks and Deep
Learning", chapters 1 and 3; 3Blue1Brown, "Deep learning", chapter 2) with the recipe as an
``experiments.train`` command line, the book's values typed as printed: Nielsen's quadratic cost
has a 1/2 (``--cost quadratic_half``) so his eta is our ``--lr``; his L2 term (lambda / 2n) sum
w^2 with n = 50,000 training images is ``--weight-decay lambda/n``; his ``network.py`` and
``large_weight_initializer`` draw w, b ~ N(0, 1) (``--init standard``), his
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

import numpy as np

from experiments import runtime
from experiments.plots import reproduce as plots
from experiments.plots.reproduce import row_line, table
from experiments.recipes import RECIPES, Recipe
from experiments.runtime import cli, options
from experiments.runtime.cli import flag


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
        ctx.say(row_line(rows[-1]))
        ctx.epoch_end(
            i + 1,
            lambda: ({"rows_done": np.asarray(len(rows))}, {"rows": rows}),
            final=i + 1 == len(names),
        )
    return {"source": ds.source, "rows": rows, "table": table(rows)}


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
