"""Full-batch gradient descent vs mini-batch SGD on MNIST: the careful man and the drunk man.

    python -m experiments.gd_vs_sgd                 # the default run: full MNIST if available
    python -m experiments.gd_vs_sgd --quick         # a seconds-long smoke run
    python -m experiments.gd_vs_sgd --equal-time    # GD also steps until it used SGD's time
    python -m experiments.gd_vs_sgd --to-target --validation 10000  # + the tuned comparison
    python -m experiments.gd_vs_sgd --resume runs/gd_vs_sgd/<run>   # go on after a kill

Both train the same initial network (the shared model options; default 784-16-16-10 sigmoid,
squared error) for the same number of epochs. SGD (``--optimizer``, ``--lr``, ``--schedule``,
``--batch-size``) shuffles and takes one quick, noisy step per mini-batch; full-batch gradient
descent (``--gd-lr``) takes one careful step per epoch down the gradient averaged over every
training example. Both use ``--weight-decay``.

Writes ``config.json``, ``results.json`` (per epoch for both: cost of the steps, training and
test cost and accuracy, examples processed, training seconds; SGD's mini-batch cost every
``--log-every`` steps; both parameter paths on their PCA plane with the cost surface there;
per-phase seconds) and the figures drawn from it (``experiments/plots/gd_vs_sgd.py``):
``cost_vs_epoch.png``, ``cost_vs_time.png``, ``accuracy_vs_epoch.png``, ``trajectories.png``.
SGD's first epoch on the trajectory figure (every ``--path-every`` steps) is recorded by the
training epoch itself; the planes and their cost surfaces are one compiled program.

The per-phase seconds (``results["timing_s"]``, printed at the end): ``data`` (reading MNIST),
``setup`` (initial network, keys, data on device), ``compile`` (every program jax compiles,
training, evaluation and trajectory ones and the small ones of eager ops alike), ``train``,
``evaluation`` (training and test sets after every epoch), ``trajectory``, ``plots``. Each
phase's own compiles are counted in ``compile``, not in the phase.

``--to-target`` (needs ``--validation``; it is an error without) then runs the fair comparison
(``experiments/runtime/compute_to_target.py``) from the same initial network: SGD's peak rate
picked from ``--sgd-lrs`` (default 1.5, 3, 6, 12; the recipe's schedule over ``--epochs``) by
the highest final validation accuracy, GD's constant rate from ``--gd-lrs`` (default 1, 3, 10,
30) by the fewest steps to 90% validation; then each chosen rate alone, SGD for its epochs, GD
until SGD's final validation accuracy or ``--gd-budget`` full-batch steps. It adds
``results["to_target"]`` (the sweeps, both curves against example-gradients and seconds, the
table of compute to 90%/95% validation and GD/SGD ratios), ``to_target_vs_examples.png`` and
``to_target_vs_time.png``. It checkpoints after each of its four phases (checkpoints 2E+1 to
2E+4); a resume reruns only the phase that was cut off.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

from experiments import runtime
from experiments.plots import gd_vs_sgd as plots
from experiments.runtime import compile_time, compute_to_target, evaluation, options, trajectory
from experiments.runtime.cli import flag


@dataclasses.dataclass(frozen=True)
class Config(
    runtime.DataOptions,
    runtime.ModelOptions,
    runtime.OptimizerOptions,
    runtime.TrainingOptions,
    runtime.RunOptions,
):
    checkpoint_every: int = flag(
        30,
        "checkpoint every k epochs (and at the end of each method's run); a checkpoint is "
        "written and read back to verify it, about as long as a few SGD epochs of 784-16-16-10",
        resumable=True,
    )
    gd_lr: float = flag(3.0, "full-batch gradient descent's learning rate (constant)")
    equal_time: bool = flag(
        False, "after the equal-epoch runs, GD steps on until it used SGD's training time"
    )
    log_every: int = flag(100, "record SGD's mini-batch cost every k steps")
    path_every: int = flag(10, "snapshot SGD's first epoch every k steps for the trajectories")
    to_target: bool = flag(
        False,
        "then the fair comparison: both learning rates tuned on the "
        "validation split (needs --validation), compute to 90 and 95 percent",
    )
    sgd_lrs: tuple[float, ...] = flag(
        (1.5, 3.0, 6.0, 12.0), "--to-target: SGD's peak rates tried (the --schedule over --epochs)"
    )
    gd_lrs: tuple[float, ...] = flag(
        (1.0, 3.0, 10.0, 30.0), "--to-target: GD's constant rates tried"
    )
    gd_budget: int = flag(
        2000,
        "--to-target: most full-batch GD steps (it stops earlier at "
        "SGD's final validation accuracy)",
    )

    def check(self) -> None:
        super().check()
        options.positive_rate("gd_lr", self.gd_lr)
        options.at_least("log_every", self.log_every)
        options.at_least("path_every", self.path_every)
        options.at_least("gd_budget", self.gd_budget)
        for name in ("sgd_lrs", "gd_lrs"):
            if not getattr(self, name):
                raise runtime.ConfigError(f"--{name.replace('_', '-')} needs >= 1 rate")
            for lr in getattr(self, name):
                options.positive_rate(name, lr)
        if self.to_target and self.validation < 1:
            raise runtime.ConfigError(
                "--to-target tunes and measures on a validation split: "
                "give --validation, e.g. --validation 10000"
            )


QUICK = {"epochs": 3, "log_every": 20, "gd_budget": 60}


def run(cfg: Config, ctx: runtime.Context) -> dict:
    import bpjax
    from bpjax import landscape, train
    from bpjax.fit import fit, mean_cost
    from bpjax.optimizers import with_l2

    spec = cfg.spec()
    with compile_time.phase(ctx, "setup"):
        data = evaluation.device_data(ctx.data)
        x, labels = data["train"]
        n = labels.shape[0]
        steps = n // cfg.batch_size
        key_init, key_sgd = jax.random.split(jax.random.key(cfg.seed))
        params0 = bpjax.init_params(key_init, cfg.sizes, init=cfg.init)
        sgd_tx = cfg.make_optimizer(total_steps=cfg.epochs * steps)
        gd_tx = with_l2(optax.sgd(cfg.gd_lr), cfg.weight_decay)
        epoch_keys = jax.random.split(key_sgd, cfg.epochs)
        epoch_keys[0]  # compiles the indexing here, not in the first epoch's time
        flat = jax.jit(lambda p: ravel_pytree(p)[0])  # snapshots are kept flat: (P,)
        start = flat(params0)
        evaluate = evaluation.make_evaluator(data, spec, ("train", "test"))
        evaluate.compile(params0)

    # The run state: a phase ("sgd", then "gd"), its params/opt_state, each phase's history and
    # per-epoch flat snapshots, and SGD's first epoch every --path-every steps (recorded by the
    # training epoch itself), for the trajectory planes. Checkpoint step = SGD epochs done +
    # GD steps done.
    state = {
        "phase": "sgd",
        "epoch": 0,
        "params": params0,
        "opt_state": sgd_tx.init(params0),
        "history": {"sgd": [], "gd": []},
        "snapshots": {"sgd": [start], "gd": [start]},
        "sgd_path": None,
    }
    path_rows = 1 + steps // cfg.path_every

    def like(record):
        tx = sgd_tx if record["phase"] == "sgd" else gd_tx
        rows = {ph: len(record["history"][ph]) + 1 for ph in ("sgd", "gd")}
        return {
            "params": params0,
            "opt_state": tx.init(params0),
            "snapshots": {
                ph: jax.ShapeDtypeStruct((r, start.size), start.dtype) for ph, r in rows.items()
            },
            "sgd_path": jax.ShapeDtypeStruct((path_rows, start.size), start.dtype),
        }

    restored = ctx.restore(like)
    if restored is not None:
        _, arrays, record = restored
        state = {
            "phase": record["phase"],
            "epoch": record["epoch"],
            "history": record["history"],
            "to_target": record.get("to_target", {}),
            "params": arrays["params"],
            "opt_state": arrays["opt_state"],
            "snapshots": {ph: list(s) for ph, s in arrays["snapshots"].items()},
            "sgd_path": arrays["sgd_path"],
        }

    def state_of(phase, epoch, p, s, rows):
        history = {**state["history"], phase: list(rows)}
        snaps = {ph: np.stack(state["snapshots"][ph]) for ph in ("sgd", "gd")}
        return (
            {"params": p, "opt_state": s, "snapshots": snaps, "sgd_path": state["sgd_path"]},
            {"phase": phase, "epoch": epoch, "history": history},
        )

    def keep_snapshot(phase):
        return lambda epoch, p, s, rows: state["snapshots"][phase].append(flat(p))

    def arm(phase, epoch_fn, tx, epoch_args, summarize, offset, examples_per_epoch, lr_flag):
        resumed = state["phase"] == phase
        result = ctx.fit(
            epoch_fn,
            state["params"] if resumed else params0,
            state["opt_state"] if resumed else tx.init(params0),
            epochs=cfg.epochs,
            start_epoch=state["epoch"] if resumed else 0,
            history=state["history"][phase] if resumed else [],
            step_offset=offset,
            label=phase.upper(),
            lr_flag=lr_flag,
            epoch_args=epoch_args,
            evaluate=evaluate,
            summarize=summarize,
            after_epoch=keep_snapshot(phase),
            state_of=lambda e, p, s, rows: state_of(phase, e, p, s, rows),
        )
        for row in result.history:
            row["examples"] = row["epoch"] * examples_per_epoch
        state["history"][phase] = result.history
        return result

    if state["phase"] == "sgd":
        step = train.make_train_step(sgd_tx, cfg.method, spec=spec)

        def summarize(metrics):  # an SGD epoch's row; epoch 1's path is kept for the planes
            if state["sgd_path"] is None:
                state["sgd_path"] = np.concatenate([np.asarray(start)[None], metrics["path"]])
            costs = np.asarray(metrics["cost"], dtype=np.float64)
            logged = costs[cfg.log_every - 1 :: cfg.log_every].tolist()
            return {"step_cost": float(costs.mean()), "minibatch_cost": logged}

        arm(
            "sgd",
            landscape.make_sgd_epoch_with_path(step, cfg.batch_size, cfg.path_every),
            sgd_tx,
            lambda e: (x, labels, epoch_keys[e]),
            summarize,
            0,
            steps * cfg.batch_size,
            "--lr",
        )
        # GD starts from the same initial params as SGD did.
        state.update(
            phase="gd",
            epoch=0,
            params=params0,
            opt_state=gd_tx.init(params0),
            snapshots={**state["snapshots"], "gd": [start]},
        )
    gd_step = train.make_full_batch_step(gd_tx, cfg.method, spec=spec)
    if state["phase"] != "to_target":
        arm("gd", gd_step, gd_tx, lambda e: (x, labels), mean_cost, cfg.epochs, n, "--gd-lr")

    results = {
        "spec": spec.to_dict(),
        "steps_per_epoch": {"sgd": steps, "gd": 1},
        "history": state["history"],
    }
    if cfg.equal_time:
        with ctx.phase("equal_time"):
            budget = state["history"]["sgd"][-1]["train_time_s"]
            results["history"]["gd_equal_time"] = fit(
                gd_step,
                params0,
                gd_tx.init(params0),
                epochs=1_000_000,
                epoch_args=lambda e: (x, labels),
                evaluate=evaluate,
                until=lambda row: row["train_time_s"] >= budget,
            ).history
    with compile_time.phase(ctx, "trajectory"):
        results["trajectory"] = trajectory.planes(
            params0, x, labels, spec, state["snapshots"], state["sgd_path"], cfg.path_every
        )
    if cfg.to_target:
        # Checkpoints 2E + 1..4 after each of its phases; a resume reruns only the one cut off.
        def save(i, done):
            ctx.say(f"to-target phase {i} of 4 done ({list(done)[-1]})")
            arrays, record = state_of(
                "gd", cfg.epochs, state["params"], state["opt_state"], state["history"]["gd"]
            )
            ctx.epoch_end(
                2 * cfg.epochs + i,
                lambda: (arrays, {**record, "phase": "to_target", "to_target": done}),
                final=True,
            )

        results["to_target"] = compute_to_target.run_phase(
            cfg, ctx, data, params0, key_sgd, steps, state.get("to_target", {}), save
        )
    return results


EXPERIMENT = runtime.Experiment(
    name="gd_vs_sgd",
    description="Full-batch gradient descent vs mini-batch SGD on MNIST.",
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
