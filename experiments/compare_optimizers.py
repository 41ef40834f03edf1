"""Compare optimizers on the MLP: a learning-rate x seed sweep per optimizer, vmapped.

    python -m experiments.compare_optimizers --validation 10000      # the default sweep
    python -m experiments.compare_optimizers --quick                 # seconds, embedded digits
    python -m experiments.compare_optimizers --validation 10000 --epochs 20 \\
        --schedule constant --weight-decay 0                         # the 20-epoch table
    python -m experiments.compare_optimizers --validation 10000 --optimizers sgd,lion \\
        --lr-ranges lion=1e-4:1e-2 --per-optimizer-args lion:b1=0.95 --model flax
    python -m experiments.compare_optimizers --resume runs/compare_optimizers/<run>

Every optimizer (``--optimizers``: momentum, nesterov or any optax optimizer taking a
learning_rate; options via ``--per-optimizer-args NAME:KEY=VALUE``) trains at ``--n-lrs`` rates
spaced evenly in log over its range (``DEFAULT_LR_RANGES``, ``--lr-ranges NAME=LO:HI``), or at
``--lrs`` for all, times ``--seeds`` initial-weight seeds (``--seed``, ``--seed`` + 1, ...). All
runs of one optimizer train together in ONE compiled program (``bpjax.sweep``: every step of
all runs at once along a run axis, each run's learning rate kept in its optimizer state),
evaluated on the validation and test splits after every epoch, with one mini-batch order
(``--data-seed``) unless ``--per-run-order``; ``--shard-runs`` splits the runs over every device
(``jax.sharding``). ``--model flax`` trains ``bpjax.flax_mlp`` from the same weights through the
same sweep; ``--hidden/--output/--cost`` set the model of either.

The best rate of an optimizer has the highest seed-mean final VALIDATION accuracy among the rates
whose runs all stayed finite, so ``--validation`` must be >= 1; its TEST accuracy is reported
(mean +- std over seeds) with the epochs and seconds (the sweep's training time / its runs) until
the seed mean first reaches 90% and 95%. Diverged (NaN/inf) runs are counted in the table and
never chosen; if every run of an optimizer diverged, the results are written and the exit status
is 3. Defaults are the shared recipe every script starts from (60 epochs, cosine schedule, weight
decay 3e-5, batch 100): the optimizers are compared on the network the other experiments train,
and ``--epochs`` means the same in every script; the older 20-epoch constant-rate comparison is
the third command. Checkpoints every ``--checkpoint-every`` epochs (step = optimizers done x
epochs + epoch); ``--resume`` continues bit-identically.

Writes ``config.json``, ``results.json`` (per optimizer: each run's rate, seed and per-epoch
train cost, validation/test cost and accuracy and finiteness; the summary; the table; timing),
``accuracy_vs_epoch.png`` and ``sensitivity.png`` (``experiments/plots/compare_optimizers.py``).
Measured: docs/compare_optimizers.md.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from bpjax import optimizers
from experiments import runtime
from experiments.plots import compare_optimizers as plots
from experiments.runtime import evaluation, lr_sweep, options, rundir
from experiments.runtime.cli import ConfigError, flag
from experiments.runtime.lr_sweep import DEFAULT_LR_RANGES, FALLBACK_LR_RANGE  # noqa: F401
from experiments.runtime.options import DecayOptions
from experiments.runtime.selection import TARGET, optimizer_record
from experiments.runtime.selection import summarize as summarize  # used by the tests
from experiments.runtime.session import DIVERGED


@dataclasses.dataclass(frozen=True)
class Config(
    runtime.DataOptions,
    runtime.ModelOptions,
    DecayOptions,
    runtime.TrainingOptions,
    runtime.RunOptions,
):
    optimizers: tuple[str, ...] = flag(
        optimizers.OPTIMIZERS,
        "optimizers by name: momentum, nesterov, or any optax optimizer taking a learning_rate",
        metavar="NAME,...",
    )
    lrs: tuple[float, ...] = flag(
        (),
        "learning rates (peaks) for every optimizer, instead of "
        "--n-lrs rates over each one's range",
        metavar="LR,...",
    )
    lr_ranges: tuple[str, ...] = flag(
        (), "learning-rate ranges replacing the defaults", metavar="NAME=LO:HI,..."
    )
    n_lrs: int = flag(5, "learning rates per optimizer, evenly spaced in log over its range")
    seeds: int = flag(3, "initial-weight seeds per learning rate: --seed, --seed + 1, ...")
    per_run_order: bool = flag(
        False, "each seed its own mini-batch order (default: one order for every run)"
    )
    data_seed: int = flag(0, "seed of the mini-batch order")
    shard_runs: bool = flag(
        False,
        "split each optimizer's runs over every device (bpjax.sweep); --n-lrs x --seeds "
        "(or the --lrs count x --seeds) must be a multiple of the device count",
    )
    model: str = flag(
        "bpjax",
        "bpjax's pure network or the Flax NNX MLP (same initial weights)",
        choices=("bpjax", "flax"),
    )
    per_optimizer_args: tuple[str, ...] = flag(
        (), "options of one optimizer, e.g. adamw:weight_decay=1e-3", metavar="NAME:KEY=VALUE,..."
    )

    def optimizer_kwargs(self, name: str) -> dict:
        return lr_sweep.optimizer_kwargs(self.per_optimizer_args, name)

    def lr_ranges_dict(self) -> dict[str, tuple[float, float]]:
        return lr_sweep.parse_ranges(self.lr_ranges, self.optimizers)

    def lr_grid(self, name: str) -> tuple[float, ...]:
        """The learning rates of optimizer ``name``."""
        if self.lrs:
            return self.lrs
        low, high = self.lr_ranges_dict().get(name, FALLBACK_LR_RANGE)
        return lr_sweep.log_grid(low, high, self.n_lrs)

    def check(self) -> None:
        super().check()
        options.at_least("n_lrs", self.n_lrs)
        options.at_least("seeds", self.seeds)
        if self.validation < 1:
            raise ConfigError(
                "--validation must be >= 1: the learning rate is chosen on the "
                "validation split, never on test (e.g. --validation 10000)"
            )
        if self.seed + self.seeds > 2**32 or not 0 <= self.data_seed < 2**32:
            raise ConfigError("--seed + --seeds and --data-seed must stay below 2^32")
        if self.model == "flax" and self.method != "autodiff":
            raise ConfigError("--method backprop is bpjax's own network; use --model bpjax")
        if len(set(self.optimizers)) != len(self.optimizers):
            raise ConfigError(f"--optimizers lists a name twice: {','.join(self.optimizers)}")
        if self.lrs and self.lr_ranges:
            raise ConfigError("give --lrs (one grid for all) or --lr-ranges, not both")
        for lr in self.lrs:
            options.positive_rate("lrs", lr)
        lr_sweep.check_optimizers(self)


QUICK = {
    "epochs": 2,
    "n_lrs": 3,
    "seeds": 2,
    "batch_size": 20,
    "source": "mnist5k",
    "validation": 1000,
}


def run(cfg: Config, ctx: runtime.Context) -> dict:
    from bpjax import flax_mlp, init_params, sweep

    spec = cfg.spec()
    data = evaluation.device_data(ctx.data)
    x, labels = data["train"]
    eval_sets = {name: data[name] for name in ("validation", "test")}
    total_steps = cfg.epochs * (x.shape[0] // cfg.batch_size)
    if cfg.model == "flax":
        init_fn = flax_mlp.make_init_fn(cfg.sizes, cfg.init)
        apply_fn = flax_mlp.make_apply_fn(cfg.sizes, spec=spec)
    else:
        init_fn, apply_fn = (lambda key: init_params(key, cfg.sizes, init=cfg.init)), None

    def arm(name):
        return lr_sweep.init_sweep(
            name,
            cfg.lr_grid(name),
            cfg.seed + np.arange(cfg.seeds),
            init_fn,
            schedule=cfg.schedule,
            total_steps=total_steps,
            l2=cfg.weight_decay,
            kwargs=cfg.optimizer_kwargs(name),
        )

    # The run state: the finished optimizers' histories, and where the current one is.
    done, at = {}, {"index": 0, "epoch": 0, "history": []}
    restored = ctx.restore(
        lambda record: dict(
            zip(("params", "opt_state"), arm(cfg.optimizers[record["index"]])[3:], strict=True)
        )
    )
    if restored is not None:
        _, arrays, record = restored
        done = record["done"]
        at = {**{k: record[k] for k in ("index", "epoch", "history")}, **arrays}

    mesh = shard_over_devices(cfg) if cfg.shard_runs else None
    if mesh is not None:  # the data once on every device, not once an epoch
        x, labels, eval_sets = lr_sweep.replicate((x, labels, eval_sets), mesh)

    bar = ctx.progress(total=len(cfg.optimizers) * cfg.epochs, unit="epoch")
    bar.update(at["index"] * cfg.epochs + at["epoch"])
    for i, name in enumerate(cfg.optimizers[at["index"] :], start=at["index"]):
        tx, lrs, seeds, params, opt_state = arm(name)
        resumed = i == at["index"] and "params" in at
        if resumed:
            params, opt_state = at["params"], at["opt_state"]
        order = lr_sweep.order_keys(cfg.data_seed, seeds, cfg.per_run_order)
        ctx.say(f"{name}: {len(lrs)} runs ({len(set(lrs))} rates x {cfg.seeds} seeds)")

        def state_of(epoch, p, s, rows, i=i):
            return (
                {"params": p, "opt_state": s},
                {"index": i, "epoch": epoch, "history": list(rows), "done": done},
            )

        result = ctx.fit(
            sweep.make_sweep_epoch(
                tx, cfg.batch_size, cfg.method, apply_fn, spec=spec, shard_runs=mesh or False
            ),
            params,
            opt_state,
            epochs=cfg.epochs,
            start_epoch=at["epoch"] if resumed else 0,
            history=at["history"] if resumed else [],
            step_offset=i * cfg.epochs,
            label=name,
            epoch_args=lambda e, order=order: (x, labels, sweep.epoch_key(order, e), eval_sets),
            summarize=lambda m: {k: np.asarray(v, np.float64).tolist() for k, v in m.items()},
            check_finite=False,
            state_of=state_of,
            after_epoch=lambda *_: bar.update(1),
        )
        done[name] = dict(learning_rates=lrs.tolist(), seeds=seeds.tolist(), rows=result.history)
    bar.close()

    records = {name: optimizer_record(**done[name]) for name in cfg.optimizers}
    setup = {
        k: getattr(cfg, k)
        for k in ("epochs", "batch_size", "schedule", "weight_decay", "seeds", "model")
    }
    results = {
        "spec": spec.to_dict(),
        "setup": {**setup, "source": ctx.data.source, "target": TARGET},
        "optimizers": records,
        "table": plots.table_rows(records),
    }
    failed = [n for n, r in records.items() if r["summary"]["best_lr"] is None]
    if failed:  # the results are worth keeping: write them (and the plots), then fail
        lr_sweep.keep_results_and_fail(
            ctx,
            results,
            plots.summary(results),
            f"every run of {', '.join(failed)} diverged (NaN/inf); try smaller learning rates "
            f"(--lrs, --lr-ranges); the results are in {ctx.dir / rundir.RESULTS}",
            DIVERGED,
        )
    return results


def shard_over_devices(cfg: Config):
    """The mesh of every device for ``--shard-runs``; ConfigError if an optimizer's runs do not
    split evenly over it."""
    from bpjax import sweep

    mesh = sweep.runs_mesh()
    for name in cfg.optimizers:
        try:
            sweep.check_runs_split(len(cfg.lr_grid(name)) * cfg.seeds, mesh)
        except ValueError:
            raise ConfigError(
                f"--shard-runs: the {len(cfg.lr_grid(name)) * cfg.seeds} runs of {name} do not "
                f"split over {mesh.size} devices; make --n-lrs x --seeds a multiple of "
                f"{mesh.size}"
            ) from None
    return mesh


EXPERIMENT = runtime.Experiment(
    name="compare_optimizers",
    description="Optimizers compared by learning-rate x seed sweeps.",
    config=Config,
    run=run,
    plot=plots.plot,
    summary=plots.summary,
    quick=QUICK,
)


def main(argv=None):
    return runtime.main(EXPERIMENT, argv)


if __name__ == "__main__":
    main()
