"""``experiments.train`` data-parallel over every device of one host, or of several hosts.

    python -m experiments.train_distributed --quick          # every local device (GPUs, or 1 CPU)
    python -m experiments.train_distributed --cpu-devices 8 --batch-size 96  # 8 simulated CPUs
    # several processes (hosts): the same command on each, only --process-id differs
    python -m experiments.train_distributed --distributed --coordinator HOST0:1234 \\
        --num-processes 2 --process-id 0                      # on host 0 (1 on host 1)
    python -m experiments.train_distributed --distributed    # Slurm / Open MPI / TPU: auto-detected

The model, optimizer and training flags are ``experiments.train``'s, and so are the keys: on one
device (or with ``--data-layout replicated``) a run is, up to float rounding, the ``train`` run on
the same rows. Every device of every process is one position on a 1-D ``data`` mesh
(``bpjax.distributed``); each mini-batch of ``--batch-size`` (a multiple of the device count) is
split evenly over the devices, params and optimizer state are replicated, and the compiler
all-reduces the gradient. Each process keeps only its own block of the first ``n_used``
training rows (``--train-limit`` of them if given, rounded down to a multiple of the device
count), or all of them with ``--data-layout replicated``; the shuffle is global either way.

Writes what ``experiments.train`` writes (``config.json``, ``results.json`` with the devices and
rows used, ``params.npz``, plots). One process (any number of local devices) checkpoints every
``--checkpoint-every`` epochs and resumes with ``--resume``. With ``--distributed`` every process
writes its own run directory (``--out DIR`` becomes ``DIR/process<p>``) and none checkpoints:
orbax saves are collective over the processes of a ``jax.distributed`` program and need one
directory they all share, which per-process run directories are not; such a run is restarted,
not resumed. On CPU the processes talk through gloo collectives (the jaxlib default).
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import jax

from bpjax import distributed
from experiments import runtime
from experiments import train as single
from experiments.plots import train as plots
from experiments.runtime import ConfigError, cli, evaluation, flag, options, rundir
from experiments.runtime.processes import NO_RESUME, ProcessOptions, fit, same_flags, start_jax

NAME = "train_distributed"


@dataclasses.dataclass(frozen=True)
class Config(
    runtime.DataOptions,
    runtime.ModelOptions,
    runtime.OptimizerOptions,
    runtime.TrainingOptions,
    runtime.RunOptions,
    ProcessOptions,
):
    train_limit: int = flag(0, "train on the first N training examples only (0 = all)")
    data_layout: str = flag(
        "sharded",
        "training set split over the devices by rows, or whole on each",
        choices=distributed.LAYOUTS,
    )

    def check(self) -> None:
        super().check()
        options.at_least("train_limit", self.train_limit, 0)
        if self.distributed and self.resume is not None:
            raise ConfigError(NO_RESUME)

    def n_used(self, ds, mesh) -> int:
        n = len(ds.y_train)
        return distributed.n_used(min(self.train_limit or n, n), mesh)

    def check_data(self, ds) -> None:  # the runtime calls it once the data are loaded
        mesh = distributed.data_mesh()
        try:
            distributed.check_batch_size(self.batch_size, mesh)
            n = self.n_used(ds, mesh)
        except ValueError as e:
            raise ConfigError(f"--batch-size/--train-limit: {e}") from None
        if self.batch_size > n:
            raise ConfigError(
                f"--batch-size {self.batch_size} is larger than the {n} training examples used"
            )


QUICK = {"epochs": 3, "source": "mnist5k", "batch_size": 64}
REPLOT = [
    (
        ("--replot",),
        {
            "metavar": "RUN_DIR",
            "default": None,
            "help": "redraw the plots of a finished run from its results.json",
        },
    )
]


def run(cfg: Config, ctx: runtime.Context) -> dict:
    import bpjax
    from bpjax import train

    spec, mesh = cfg.spec(), distributed.data_mesh()
    if cfg.distributed:
        same_flags(cfg)
    n = cfg.n_used(ctx.data, mesh)
    by_rows = cfg.data_layout == "sharded"
    rows = distributed.local_rows(n, mesh) if by_rows else slice(0, n)
    x, labels = (
        distributed.place(a[rows], mesh, rows=by_rows) for a in (ctx.data.x_train, ctx.data.y_train)
    )
    key_init, key_order = jax.random.split(jax.random.key(cfg.seed))  # experiments.train's
    params0 = bpjax.init_params(key_init, cfg.sizes, init=cfg.init)
    tx = cfg.make_optimizer(total_steps=cfg.epochs * (n // cfg.batch_size))
    params, opt_state = distributed.place((params0, tx.init(params0)), mesh, rows=False)
    history, start = [], 0
    restored = ctx.restore(lambda record: {"params": params, "opt_state": opt_state})
    if restored is not None:
        start, arrays, record = restored
        params, opt_state, history = arrays["params"], arrays["opt_state"], record["history"]

    epoch_fn = distributed.make_data_parallel_epoch(
        train.make_train_step(tx, cfg.method, spec=spec),
        cfg.batch_size,
        mesh,
        n_classes=cfg.sizes[-1],
    )
    data = evaluation.device_data(ctx.data)
    data["train"] = tuple(a[:n] for a in data["train"])  # the rows trained on
    on_host = evaluation.make_evaluator(data, spec)
    result = fit(
        ctx,
        cfg.distributed,
        epoch_fn,
        params,
        opt_state,
        epochs=cfg.epochs,
        start_epoch=start,
        history=history,
        epoch_args=lambda e: (x, labels, jax.random.fold_in(key_order, e)),
        evaluate=lambda p: on_host(jax.device_get(p)),
    )  # replicated: whole everywhere
    single.save_params(ctx, jax.device_get(result.params))
    select = "validation_accuracy" if "validation" in data else "test_accuracy"
    return {
        "spec": spec.to_dict(),
        "history": result.history,
        "final": result.history[-1],
        "best": {"by": select, **evaluation.best(result.history, select)},
        "data_layout": cfg.data_layout,
        "x_spec": str(x.sharding.spec),
        "n_used": n,
        "local_rows": [rows.start, rows.stop],
        "process_index": jax.process_index(),
        "process_count": jax.process_count(),
        "devices": [str(d) for d in mesh.devices.flat],
    }


EXPERIMENT = runtime.Experiment(
    name=NAME,
    description="experiments.train data-parallel over devices and hosts.",
    config=Config,
    run=run,
    plot=plots.plot,
    summary=single.summary,
    quick=QUICK,
)


def process_options(argv) -> tuple[ProcessOptions, str | None] | None:
    """The checked process options of ``argv`` (a resume's from its run) and ``--out``; None
    for ``--replot``. Checked before the processes join; the runtime checks the other flags
    after (``make_optimizer`` starts JAX), before anything is compiled or written."""
    parser = cli.build_parser(
        Config, f"python -m experiments.{NAME}", EXPERIMENT.description, REPLOT
    )
    given = vars(parser.parse_args(argv))
    if given.get("replot") is not None:
        return None
    saved = {}
    if given.get("resume") is not None:
        try:
            saved = rundir.read_json(Path(given["resume"]) / rundir.CONFIG).get("config", {})
        except ConfigError:
            pass  # not a run directory: the runtime says so
    opts = ProcessOptions(
        **{
            f.name: given.get(f.name, saved.get(f.name, f.default))
            for f in dataclasses.fields(ProcessOptions)
        }
    )
    opts.check()
    if opts.distributed and given.get("resume") is not None:
        raise ConfigError(NO_RESUME)
    return opts, given.get("out")


def main(argv=None):
    try:
        found = process_options(argv)
        if found is not None:
            opts, out = found
            start_jax(opts, NAME)
            if opts.distributed and out is not None:  # argparse keeps the last --out
                argv = [
                    *(sys.argv[1:] if argv is None else argv),
                    "--out",
                    str(Path(out) / f"process{jax.process_index()}"),
                ]
    except ConfigError as e:
        cli.fail(str(e), cli.BAD_CONFIG, NAME)
    except runtime.RunFailed as e:
        cli.fail(str(e), e.status, NAME)
    return runtime.main(EXPERIMENT, argv)


if __name__ == "__main__":
    main()
