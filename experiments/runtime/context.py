"""What a running experiment gets from the runtime (``Context``): its directory and data,
checkpoints every ``--checkpoint-every`` epochs, ``--resume``, SIGINT/SIGTERM turned into a
checkpoint and a resume hint, divergence into the last good checkpoint; and the failures an
experiment raises (``RunFailed``, ``Interrupted``) with their exit statuses."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

from experiments.runtime import cli

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
