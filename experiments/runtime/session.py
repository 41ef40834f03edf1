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
5. writes ``results.json`` atomically, then the plots (a plotting failure is reported and
   leaves the results; ``--replot RUN_DIR`` redraws them from results.json alone).

Every failure the user can cause ends in one line ``<prog>: error: ...``: exit 2 for a config
that cannot run, 1 for a data or file-system problem (unreadable file, disk full), 3 for
divergence, 130/143 for an interrupt.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from experiments.runtime import cli, rundir
from experiments.runtime.cli import ConfigError

DATA_OR_IO_ERROR = 1
BAD_CONFIG = cli.BAD_CONFIG
DIVERGED = 3
SIGNAL_STATUS = {signal.SIGINT: 130, signal.SIGTERM: 143}
CHECKPOINTS = "checkpoints"
# Test-only hook: with BPJAX_TEST_PAUSE_AT=<step> a run waits at the end of that unit of
# progress, before its checkpoint, so a test can kill it there. Unset, it does nothing.
PAUSE_ENV = "BPJAX_TEST_PAUSE_AT"


class Experiment(NamedTuple):
    """What makes an experiment: its name, config class, training and plots."""

    name: str
    description: str
    config: type
    run: Callable[[Any, Context], dict]  # noqa: F821 - Context below
    plot: Callable[[dict, Path], None] | None = None
    summary: Callable[[dict], str] | None = None  # the table printed at the end
    quick: dict[str, Any] = {}  # --quick's settings, for flags not given
    uses_data: bool = True


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived; the run stopped at a safe point."""

    def __init__(self, signum: int, checkpoint: int | None):
        super().__init__(signal.Signals(signum).name)
        self.signum, self.checkpoint = signum, checkpoint


class RunFailed(Exception):
    """A failure in the run with a one-line message and an exit status."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


class Context:
    """What a running experiment gets from the runtime: its directory, data, checkpoints."""

    def __init__(self, exp: Experiment, cfg, run_dir: Path, data, resuming: bool):
        self.exp, self.cfg, self.dir, self.data = exp, cfg, run_dir, data
        self.resuming = resuming
        self.timing: dict[str, float] = {}
        self._signal: int | None = None
        self._deferring = False
        self._last_saved: int | None = None
        self._manager = None

    # --- messages and progress ---------------------------------------------------------------

    def close(self) -> None:
        if self._manager is not None:
            self._manager.close()
            self._manager = None

    def say(self, message: str) -> None:
        print(f"{self.exp.name}: {message}", file=sys.stderr, flush=True)

    def progress(self, iterable=None, **kwargs):
        """A tqdm bar on a terminal; nothing (no ``\\r`` noise in logs) otherwise."""
        from tqdm import tqdm

        return tqdm(iterable, disable=not sys.stderr.isatty(), leave=False, **kwargs)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of the run into ``timing[name]`` (seconds, accumulated)."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.timing[name] = self.timing.get(name, 0.0) + time.perf_counter() - t0

    # --- checkpoints ---------------------------------------------------------------------------

    def _checkpoints(self):
        if self._manager is None:
            from bpjax import checkpoint

            self._manager = checkpoint.open_manager(
                self.dir / CHECKPOINTS, keep=getattr(self.cfg, "keep_checkpoints", 2)
            )
        return self._manager

    def restore(self, like: Callable[[dict], Any]):
        """On ``--resume``: the newest intact checkpoint as ``(step, arrays, record)``, or None
        (a fresh run, or killed before its first checkpoint). ``like(record)`` gives the
        arrays' structure, shapes and dtypes."""
        if not self.resuming:
            return None
        restored = self._checkpoints().latest_intact(like)
        if restored is None:
            self.say("no checkpoint yet: starting the run over")
            return None
        for warning in restored.warnings:
            self.say(warning)
        self.say(f"resuming from checkpoint {restored.step}")
        self._last_saved = restored.step
        return restored.step, restored.arrays, restored.record

    def save(self, step: int, arrays, record: dict) -> None:
        for warning in self._checkpoints().save(
            step, arrays, {**record, "config": cli.to_dict(self.cfg)}
        ):
            self.say(warning)
        self._last_saved = step

    @contextlib.contextmanager
    def training(self) -> Iterator[None]:
        """Inside, SIGINT/SIGTERM only set a flag that ``epoch_end`` acts on (after the current
        epoch, with a checkpoint); outside, they stop the run at once."""
        self._deferring = True
        try:
            yield
        finally:
            self._deferring = False

    def epoch_end(
        self, step: int, state: Callable[[], tuple[Any, dict]], *, final: bool = False
    ) -> None:
        """After a unit of progress numbered ``step``: checkpoint if due (every
        ``--checkpoint-every``, at ``final``, or on a pending signal), then stop if signalled.
        ``state()`` returns ``(arrays, record)``; it is called only when saving."""
        self._pause_for_kill_test(step)
        every = getattr(self.cfg, "checkpoint_every", 1)
        if final or step % every == 0 or self._signal is not None:
            self.save(step, *state())
        if self._signal is not None:
            raise Interrupted(self._signal, self._last_saved)

    def diverged(self, message: str, step: int | None, state=None) -> RunFailed:
        """The error to raise for a divergence: saves ``state()`` (the last good one) as
        checkpoint ``step`` unless it is already saved; exit 3."""
        if state is not None and step is not None and step != self._last_saved:
            self.save(step, *state())
        where = (
            f"; the last good state is checkpoint {step} in {self.dir / CHECKPOINTS}"
            if step is not None and self._last_saved is not None
            else ""
        )
        return RunFailed(f"{message}; try a smaller learning rate{where}", DIVERGED)

    def fit(
        self,
        epoch_fn,
        params,
        opt_state,
        *,
        epochs: int,
        step_offset: int = 0,
        start_epoch: int = 0,
        history=(),
        label: str = "SGD",
        lr_flag: str = "--lr",
        state_of: Callable[..., tuple[Any, dict]] | None = None,
        after_epoch: Callable[..., None] | None = None,
        **fit_kwargs,
    ):
        """``bpjax.fit.fit`` with this run's checkpoints, signals and divergence handling.

        Checkpoint ``step_offset + epoch`` holds ``state_of(epoch, params, opt_state,
        history)`` (default: params, opt_state and the history so far). Returns the
        ``FitResult``. ``after_epoch(epoch, params, opt_state, history)`` runs before the
        checkpoint decision (e.g. to keep a snapshot). The compile time is added to
        ``timing["compile"]``, training and evaluation to ``timing["train"]`` /
        ``timing["evaluation"]``.
        """
        from bpjax.fit import Diverged, fit

        def default_state(epoch, p, s, rows):
            return {"params": p, "opt_state": s}, {"epoch": epoch, "history": list(rows)}

        state_of = state_of or default_state

        def on_epoch(epoch, p, s, rows, metrics):
            if after_epoch is not None:
                after_epoch(epoch, p, s, rows)
            self.epoch_end(
                step_offset + epoch, lambda: state_of(epoch, p, s, rows), final=epoch == epochs
            )

        done_before = float(history[-1]["train_time_s"]) if history else 0.0
        with self.training():
            try:
                result = fit(
                    epoch_fn,
                    params,
                    opt_state,
                    epochs=epochs,
                    start_epoch=start_epoch,
                    history=history,
                    on_epoch=on_epoch,
                    **fit_kwargs,
                )
            except Diverged as d:
                good, rows, p, s = d.epoch - 1, d.history, d.params, d.opt_state
                lr = getattr(self.cfg, lr_flag[2:].replace("-", "_"), "?")
                raise self.diverged(
                    f"{label} {d} ({lr_flag} {lr})",
                    step_offset + good if good > 0 else None,
                    lambda: state_of(good, p, s, rows),
                ) from None
        self.timing["compile"] = self.timing.get("compile", 0.0) + result.compile_s
        self.timing["train"] = self.timing.get("train", 0.0) + result.train_s - done_before
        self.timing["evaluation"] = self.timing.get("evaluation", 0.0) + result.eval_s
        return result

    def _pause_for_kill_test(self, step: int) -> None:
        if os.environ.get(PAUSE_ENV) == str(step):
            self.say(f"{PAUSE_ENV}: paused at {step}")
            deadline = time.monotonic() + 600
            while self._signal is None and time.monotonic() < deadline:
                time.sleep(0.05)

    def _on_signal(self, signum, frame) -> None:
        if self._deferring and self._signal is None:
            self._signal = signum
            self.say(
                f"{signal.Signals(signum).name}: stopping after this epoch (again to stop at once)"
            )
            return
        raise Interrupted(signum, self._last_saved)


# --- main ----------------------------------------------------------------------------------------


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
        )
    ]
    parser = cli.build_parser(exp.config, prog, exp.description, extra)
    given = vars(parser.parse_args(argv))
    replot_dir = given.pop("replot", None)
    if replot_dir is not None:
        if given:
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
        if exp.plot is not None:
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
