"""One experiment run from the command line to its results, the same way for every experiment.

    def main(argv=None):
        return runtime.main(EXPERIMENT, argv)

``EXPERIMENT`` (an ``Experiment``) names the config class, the training function
``run(cfg, ctx) -> results`` and the plots ``plot(results, run_dir)``. ``main``:

1. parses the flags (``--quick`` fills in the experiment's quick settings for flags not given;
   ``--resume RUN_DIR`` takes the run's own config, and refuses flags that would change numbers);
2. checks the config, imports ``--plugins``, loads the data and checks what depends on it, and
   checks ``--out``, all before anything is compiled or written (exit 2, one line);
3. creates and locks the run directory, writes ``config.json`` (config, data source and
   fingerprint, package versions);
4. calls ``run(cfg, ctx)``; ``ctx`` (a ``Context``) checkpoints every ``--checkpoint-every``
   epochs, restores on ``--resume``, turns SIGINT/SIGTERM into a checkpoint and exit 130/143,
   and a divergence into the last good checkpoint and exit 3;
5. writes ``results.json`` atomically, then the plots unless ``--no-plots`` (a plotting
   failure is reported and leaves the results; ``--replot RUN_DIR`` redraws them from
   results.json alone).

Every failure the user can cause ends in one line ``<prog>: error: ...``: exit 2 for a config
that cannot run, 1 for a data or file-system problem (unreadable file, disk full), 3 for
divergence, 130/143 for an interrupt.
"""

from __future__ import annotations

import dataclasses
import signal
import time
from pathlib import Path
from typing import Any

from experiments.runtime import cli, rundir
from experiments.runtime.cli import ConfigError
from experiments.runtime.context import (  # noqa: F401 - re-exported
    BAD_CONFIG,
    CHECKPOINTS,
    DATA_OR_IO_ERROR,
    DIVERGED,
    PAUSE_ENV,
    SIGNAL_STATUS,
    Context,
    Experiment,
    Interrupted,
    RunFailed,
)


def _given_config(exp: Experiment, given: dict[str, Any]):
    """The config from the flags typed, the quick settings and the defaults; or on --resume the
    run's own config with only the resumable flags changed."""
    if given.get("resume") is None:
        if given.get("quick"):
            quick = dict(exp.quick)
            if "data_dir" in given:  # the user's data, not the quick run's embedded digits
                quick.pop("source", None)
            given = {**quick, **given}
        try:
            return exp.config(**given), False
        except TypeError as e:  # an unexpected field: a bug in the experiment's QUICK
            raise ConfigError(str(e)) from None
    run_dir = Path(given["resume"])
    if not (run_dir / rundir.CONFIG).is_file():
        raise ConfigError(f"--resume {run_dir}: not a run directory (no {rundir.CONFIG})")
    saved = cli.from_dict(exp.config, rundir.read_json(run_dir / rundir.CONFIG)["config"])
    resumable = cli.resumable_fields(exp.config)
    differ = [k for k, v in given.items() if k not in resumable and getattr(saved, k) != v]
    if differ:
        raise ConfigError(
            f"--resume {run_dir}: the run was made with "
            + ", ".join(
                f"{cli.flag_name(k)} {getattr(saved, k)!r} (given {given[k]!r})" for k in differ
            )
        )
    keep = {k: v for k, v in given.items() if k in resumable and k not in ("out", "quick")}
    return dataclasses.replace(saved, **keep, out=None), True


def _import_plugins(cfg) -> None:
    modules = getattr(cfg, "plugins", ())
    if modules:
        from bpjax.spec import import_plugins

        try:
            import_plugins(modules)
        except ValueError as e:
            raise ConfigError(f"--plugins: {e}") from None


def load_data(cfg):
    """The data set of a config with ``DataOptions``: a missing source or package is a config
    error (exit 2), a file that cannot be read or is not MNIST a data error (exit 1)."""
    from bpjax.data import DataError, MissingDependencyError, MnistNotFoundError, load_mnist

    try:
        return load_mnist(source=cfg.source, data_dir=cfg.data_dir, validation=cfg.validation)
    except (MnistNotFoundError, MissingDependencyError) as e:
        raise ConfigError(f"--source {cfg.source}: {e}") from None
    except DataError as e:
        raise RunFailed(f"data: {e}", DATA_OR_IO_ERROR) from None
    except ValueError as e:  # e.g. --validation larger than the training set
        raise ConfigError(str(e)) from None


def _check_with_data(cfg, ds) -> None:
    n = len(ds.y_train)
    batch = getattr(cfg, "batch_size", None)
    if batch is not None and batch > n:
        raise ConfigError(f"--batch-size {batch} is larger than the {n} training examples")
    check = getattr(cfg, "check_data", None)
    if check is not None:
        check(ds)


def _fingerprint(ds) -> dict | None:
    from bpjax.data import fingerprint

    return fingerprint(ds)


def _check_same_data(run_dir: Path, ds) -> None:
    recorded = rundir.read_json(run_dir / rundir.CONFIG).get("data", {}).get("fingerprint")
    if recorded is None:
        return
    from bpjax.data import fingerprint_changes

    changes = fingerprint_changes(recorded, _fingerprint(ds))
    if changes:
        raise ConfigError(
            f"--resume {run_dir}: the data differ from the run's: " + "; ".join(changes)
        )


def replot(exp: Experiment, run_dir: Path) -> None:
    """Draw the plots of a finished run from its results.json alone."""
    if exp.plot is None:
        raise ConfigError(f"{exp.name} draws no plots")
    results = rundir.read_json(Path(run_dir) / rundir.RESULTS)
    _plot(exp, results, Path(run_dir))


def _plot(exp: Experiment, results: dict, run_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files, never windows
    try:
        exp.plot(results, run_dir)
    except OSError:
        raise
    except Exception as e:  # noqa: BLE001 - the results are safe; say what failed, in one line
        raise RunFailed(
            f"plotting failed ({type(e).__name__}: {e}); the results are in "
            f"{run_dir / rundir.RESULTS}; redraw with --replot {run_dir}",
            DATA_OR_IO_ERROR,
        ) from e


def _run(exp: Experiment, argv, prog: str) -> dict | None:
    extra = [
        (
            ("--replot",),
            {
                "metavar": "RUN_DIR",
                "default": None,
                "help": "redraw the plots of a finished run from its results.json",
            },
        ),
        (
            ("--no-plots",),
            {
                "action": "store_true",
                "help": "write the results but no figures (draw them later with --replot)",
            },
        ),
    ]
    parser = cli.build_parser(exp.config, prog, exp.description, extra)
    given = vars(parser.parse_args(argv))
    replot_dir = given.pop("replot", None)
    plots = not given.pop("no_plots", False)
    if replot_dir is not None:
        if given or not plots:
            raise ConfigError("--replot takes no other flags")
        replot(exp, Path(replot_dir))
        print(f"plots redrawn in {replot_dir}")
        return None

    cfg, resuming = _given_config(exp, given)
    _import_plugins(cfg)
    cfg.check()
    if resuming:
        run_path = Path(cfg.resume)
        if (run_path / rundir.RESULTS).exists():
            raise ConfigError(
                f"--resume {run_path}: that run already finished "
                f"({rundir.RESULTS} exists); --replot it to redraw its plots"
            )
    else:
        run_path = Path(cfg.out) if cfg.out is not None else rundir.default_run_dir(exp.name)
        rundir.check_new(run_path)

    t0 = time.perf_counter()
    ds = load_data(cfg) if exp.uses_data else None
    if ds is not None:
        _check_with_data(cfg, ds)
    data_s = time.perf_counter() - t0

    run = rundir.RunDir.reopen(run_path) if resuming else rundir.RunDir.create(run_path)
    try:
        if resuming and ds is not None:
            _check_same_data(run.path, ds)
        if not resuming:
            data_info = (
                None
                if ds is None
                else {
                    "source": ds.source,
                    "n_train": len(ds.y_train),
                    "n_validation": len(ds.y_val),
                    "n_test": len(ds.y_test),
                    "fingerprint": _fingerprint(ds),
                }
            )
            run.write_json(
                rundir.CONFIG,
                {
                    "experiment": exp.name,
                    "config": cli.to_dict(cfg),
                    "data": data_info,
                    "versions": rundir.package_versions(),
                },
            )
        ctx = Context(exp, cfg, run.path, ds, resuming)
        ctx.timing["data"] = data_s
        handlers = {s: signal.signal(s, ctx._on_signal) for s in SIGNAL_STATUS}
        try:
            results = exp.run(cfg, ctx)
        except Interrupted as e:
            how = (
                f"checkpoint {e.checkpoint} saved"
                if e.checkpoint is not None
                else "no checkpoint yet"
            )
            raise RunFailed(
                f"interrupted by {signal.Signals(e.signum).name} ({how}); continue "
                f"with: python -m experiments.{exp.name} --resume {run.path}",
                SIGNAL_STATUS[e.signum],
            ) from None
        finally:
            ctx.close()
            for s, h in handlers.items():
                signal.signal(s, h)
        results = {"experiment": exp.name, **results, "timing_s": ctx.timing}
        run.write_json(rundir.RESULTS, results)
        if exp.plot is not None and plots:
            t0 = time.perf_counter()
            _plot(exp, rundir.read_json(run.path / rundir.RESULTS), run.path)
            results["timing_s"]["plots"] = time.perf_counter() - t0
            run.write_json(rundir.RESULTS, results)
    finally:
        run.close()
    if exp.summary is not None:
        print(exp.summary(results))
    print(f"results in {run.path}/")
    return results


def main(exp: Experiment, argv=None) -> dict | None:
    """Run ``exp`` from the command line ``argv``; returns its results (None for --replot).

    Ends the process with a one-line message and the statuses in the module docstring on any
    failure a user can cause; a bug still shows its traceback.
    """
    prog = f"python -m experiments.{exp.name}"
    try:
        return _run(exp, argv, prog)
    except ConfigError as e:
        cli.fail(str(e), BAD_CONFIG, exp.name)
    except RunFailed as e:
        cli.fail(str(e), e.status, exp.name)
    except Interrupted as e:  # before the run had a directory
        cli.fail(
            f"interrupted by {signal.Signals(e.signum).name}", SIGNAL_STATUS[e.signum], exp.name
        )
    except KeyboardInterrupt:
        cli.fail("interrupted", 130, exp.name)
    except OSError as e:
        cli.fail(rundir.describe_os_error(e), DATA_OR_IO_ERROR, exp.name)
    except Exception as e:
        # Checkpoint errors are OSError-like failures of the file system, one line too.
        from bpjax.checkpoint import CheckpointError

        if isinstance(e, CheckpointError):
            cli.fail(str(e), DATA_OR_IO_ERROR, exp.name)
        raise
