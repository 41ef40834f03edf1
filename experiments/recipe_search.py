"""A search for a 784-16-16-10 recipe, selected on the validation split (never on test).

    python -m experiments.recipe_search --validation 10000      # the search (full MNIST)
    python -m experiments.recipe_search --quick                  # seconds: mnist5k, 1 epoch

Every combination of hidden activation (``--hiddens``) and L2 (``--weight-decays``) trains a
grid of learning rates (``--lrs``) x ``--seeds`` seeds as one vmapped program
(``bpjax.sweep.train_sweep``), with the fixed rest of the recipe: softmax output and
log-likelihood cost, SGD with momentum 0.9 (``--optimizer``), a cosine schedule, mini-batch 100,
``--epochs`` epochs. The selected recipe is the one with the highest seed-mean validation
accuracy after the last epoch; its test accuracy is reported beside it, untouched by the
selection. The L2 is ``experiments.train``'s (weights and biases), so the winner is exactly an
``experiments.train`` command (printed, and a row of ``experiments.reproduce``).

Writes ``results.json`` and ``table.md`` (every combination, best learning rate first).
"""

from __future__ import annotations

import dataclasses
import itertools
import time

import numpy as np

from experiments import runtime
from experiments.runtime import lr_sweep, options, rundir
from experiments.runtime.cli import flag
from experiments.runtime.context import DIVERGED


@dataclasses.dataclass(frozen=True)
class Config(runtime.DataOptions, runtime.TrainingOptions, runtime.RunOptions):
    hiddens: tuple[str, ...] = flag(("sigmoid", "tanh", "relu"), "hidden activations to try")
    weight_decays: tuple[float, ...] = flag((0.0, 1e-4), "L2 lambdas to try")
    lrs: tuple[float, ...] = flag((0.03, 0.1, 0.3), "peak learning rates to try")
    seeds: int = flag(2, "seeds per learning rate")
    search_optimizer: str = flag("momentum", "the optimizer of every run (by name)")

    def check(self) -> None:
        super().check()
        if self.validation < 1:
            raise runtime.ConfigError(
                "--validation: the search selects on a validation split; "
                "give one, e.g. --validation 10000"
            )
        for lr in self.lrs:
            options.positive_rate("lrs", lr)
        for wd in self.weight_decays:
            options.non_negative("weight_decays", wd)
        options.at_least("seeds", self.seeds)
        from bpjax.optimizers import optimizer_factory
        from bpjax.spec import Spec

        for hidden in self.hiddens:
            try:
                Spec(hidden=hidden, output="softmax", cost="log_likelihood")
            except ValueError as e:
                raise runtime.ConfigError(f"--hiddens: {e}") from None
        try:
            optimizer_factory(self.search_optimizer)
        except ValueError as e:
            raise runtime.ConfigError(f"--search-optimizer: {e}") from None


QUICK = {
    "source": "mnist5k",
    "validation": 1000,
    "epochs": 1,
    "hiddens": ("sigmoid",),
    "weight_decays": (0.0,),
    "lrs": (0.1,),
    "seeds": 2,
}
SIZES = (784, 16, 16, 10)


def command(cfg: Config, hidden: str, wd: float, lr: float) -> str:
    return (
        f"python -m experiments.train --sizes {','.join(map(str, SIZES))} --hidden {hidden} "
        f"--output softmax --cost log_likelihood --optimizer {cfg.search_optimizer} "
        f"--lr {lr:g} --schedule cosine --weight-decay {wd:g} --epochs {cfg.epochs} "
        f"--batch-size {cfg.batch_size} --validation {cfg.validation}"
    )


def run(cfg: Config, ctx: runtime.Context) -> dict:
    import jax

    import bpjax
    from bpjax import optimizers, sweep
    from experiments.runtime import evaluation

    data = evaluation.device_data(ctx.data)
    x, labels = data["train"]
    steps = cfg.epochs * (x.shape[0] // cfg.batch_size)
    seeds = list(range(cfg.seed, cfg.seed + cfg.seeds))
    rates, run_seeds = sweep.run_grid(cfg.lrs, seeds)
    pairs = jax.vmap(lambda s: jax.random.split(jax.random.key(s)))(
        jax.numpy.asarray(run_seeds, "uint32")
    )
    rows = []
    for hidden, wd in itertools.product(cfg.hiddens, cfg.weight_decays):
        spec = bpjax.Spec(hidden=hidden, output="softmax", cost="log_likelihood")
        tx = optimizers.make_sweep_optimizer(
            cfg.search_optimizer, schedule="cosine", total_steps=steps, l2=wd
        )
        t0 = time.perf_counter()
        with ctx.training(), ctx.phase("sweeps"):
            result = sweep.train_sweep(
                tx,
                lambda k: bpjax.init_params(k, SIZES),
                rates,
                pairs[:, 0],
                x,
                labels,
                epochs=cfg.epochs,
                batch_size=cfg.batch_size,
                order_key=pairs[:, 1],
                eval_sets={"validation": data["validation"], "test": data["test"]},
                spec=spec,
            )
        seconds = time.perf_counter() - t0
        h = result.history
        for i, lr in enumerate(cfg.lrs):
            runs = slice(i * len(seeds), (i + 1) * len(seeds))
            rows.append(
                {
                    "hidden": hidden,
                    "weight_decay": wd,
                    "lr": lr,
                    "validation": h["validation_accuracy"][-1, runs].tolist(),
                    "test": h["test_accuracy"][-1, runs].tolist(),
                    "finite": bool(h["finite"][:, runs].all()),
                    "seconds": seconds,
                    "command": command(cfg, hidden, wd, lr),
                }
            )
        ctx.say(
            f"{hidden}, L2 {wd:g}: validation "
            + ", ".join(
                f"lr {r['lr']:g} {100 * np.mean(r['validation']):.2f}%"
                for r in rows[-len(cfg.lrs) :]
            )
            + f" ({seconds:.0f} s)"
        )
    best = select(rows)
    results = {"rows": rows, "best": best, "seeds": seeds, "table": table(rows, best)}
    if best is None:  # the table is worth keeping: write it, then fail
        lr_sweep.keep_results_and_fail(
            ctx,
            results,
            summary(results),
            "every recipe diverged (NaN/inf); try smaller learning rates (--lrs); "
            f"the results are in {ctx.dir / rundir.RESULTS}",
            DIVERGED,
        )
    return results


def select(rows: list[dict]) -> dict | None:
    """The row with the highest seed-mean *validation* accuracy among those whose runs all
    stayed finite (ties: the first); None if every row diverged. Test accuracy is not read."""
    finite = [r for r in rows if r["finite"]]
    return max(finite, key=lambda r: np.mean(r["validation"]), default=None)


def table(rows: list[dict], best: dict | None) -> str:
    lines = [
        "| hidden | L2 | lr | validation % (mean ± std) | test % (mean ± std) |",
        "|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: -np.nan_to_num(np.mean(r["validation"]), nan=-1.0)):
        v, t = 100 * np.asarray(r["validation"]), 100 * np.asarray(r["test"])
        mark = " **(selected)**" if r is best or r == best else ""
        lines.append(
            f"| {r['hidden']} | {r['weight_decay']:g} | {r['lr']:g}{mark} | "
            f"{v.mean():.2f} ± {v.std(ddof=1) if v.size > 1 else 0:.2f} | "
            f"{t.mean():.2f} ± {t.std(ddof=1) if t.size > 1 else 0:.2f} |"
        )
    lines += ["", f"Selected: `{best['command']}`" if best else "Every recipe diverged."]
    return "\n".join(lines)


def plot(results: dict, run_dir) -> None:
    rundir.atomic_write_bytes(run_dir / "table.md", (results["table"] + "\n").encode())


def summary(results: dict) -> str:
    return results["table"]


EXPERIMENT = runtime.Experiment(
    name="recipe_search",
    description="Search a 784-16-16-10 recipe on the validation split.",
    config=Config,
    run=run,
    plot=plot,
    summary=summary,
    quick=QUICK,
)


def main(argv=None):
    return runtime.main(EXPERIMENT, argv)


if __name__ == "__main__":
    main()
