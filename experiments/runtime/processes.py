"""The processes of a run: simulated CPU devices, a ``jax.distributed`` process group, the
check that every process got the same flags, and training without checkpoints across processes
(orbax saves are collective over a ``jax.distributed`` program)."""

from __future__ import annotations

import dataclasses
import hashlib
import sys

import numpy as np

from experiments.runtime import cli, options
from experiments.runtime.cli import ConfigError, flag
from experiments.runtime.session import RunFailed

MAX_INIT_TIMEOUT_S = 3600
NO_RESUME = "--resume: a --distributed run keeps no checkpoints; start it over"


@dataclasses.dataclass(frozen=True)
class ProcessOptions(options.Options):
    """What must be set before JAX starts: the device count and the process group."""

    cpu_devices: int = flag(0, "simulate this many CPU devices per process (0 = the backend's)")
    distributed: bool = flag(False, "multi-process run: join the others via jax.distributed")
    coordinator: str | None = flag(
        None,
        "HOST:PORT of process 0 (omit all three process flags "
        "where Slurm, Open MPI or a TPU pod is auto-detected)",
    )
    num_processes: int | None = flag(None, "number of processes (with --distributed)")
    process_id: int | None = flag(None, "this process's index in [0, --num-processes)")
    init_timeout: int = flag(
        300, f"seconds to wait for every process to join (1..{MAX_INIT_TIMEOUT_S})"
    )

    def check(self) -> None:
        super().check()
        options.at_least("cpu_devices", self.cpu_devices, 0)
        if not 1 <= self.init_timeout <= MAX_INIT_TIMEOUT_S:
            raise ConfigError(
                f"--init-timeout must be in [1, {MAX_INIT_TIMEOUT_S}] seconds, "
                f"got {self.init_timeout}"
            )
        given = [self.coordinator, self.num_processes, self.process_id]
        if not self.distributed and any(v is not None for v in given):
            raise ConfigError("--coordinator, --num-processes and --process-id need --distributed")
        if any(v is None for v in given) and any(v is not None for v in given):
            raise ConfigError(
                "give all of --coordinator, --num-processes and --process-id, or "
                "none (to let jax.distributed detect Slurm, Open MPI or a TPU pod)"
            )
        if self.num_processes is not None:
            options.at_least("num_processes", self.num_processes)
            if not 0 <= self.process_id < self.num_processes:
                raise ConfigError(
                    f"--process-id must be in [0, {self.num_processes}), got {self.process_id}"
                )
            if not self.coordinator.rpartition(":")[2].isdigit():
                raise ConfigError(f"--coordinator must be HOST:PORT, got {self.coordinator!r}")


def fit(ctx, multi_process: bool, epoch_fn, params, opt_state, **kwargs):
    """``ctx.fit`` (checkpoints, signals); a multi-process run trains without checkpoints."""
    if not multi_process:
        return ctx.fit(epoch_fn, params, opt_state, **kwargs)
    from bpjax.fit import Diverged
    from bpjax.fit import fit as plain_fit

    try:
        result = plain_fit(epoch_fn, params, opt_state, **kwargs)
    except Diverged as d:
        raise RunFailed(f"SGD {d}; try a smaller learning rate", 3) from None
    ctx.timing.update(compile=result.compile_s, train=result.train_s, evaluation=result.eval_s)
    return result


def same_flags(cfg) -> None:
    """Every process must train with the same flags: replicated values (params, keys) are
    taken on trust from each process, so a different --seed would silently diverge."""
    from jax.experimental import multihost_utils

    own = cli.resumable_fields(type(cfg)) | {"process_id", "data_dir", "coordinator"}
    shared = {k: v for k, v in cli.to_dict(cfg).items() if k not in own}
    digest = np.frombuffer(hashlib.sha256(repr(shared).encode()).digest(), np.uint8)
    every = np.asarray(multihost_utils.process_allgather(digest))  # (processes, 32)
    differ = [p for p in range(len(every)) if not np.array_equal(every[p], every[0])]
    if differ:
        raise ConfigError(
            f"process(es) {differ} were started with other training flags than "
            "process 0; run the same command everywhere, changing only --process-id"
        )


def start_jax(opts: ProcessOptions, name: str) -> None:
    """Device count and process group: both must be set before JAX picks a backend."""
    import jax

    if opts.cpu_devices:
        jax.config.update("jax_num_cpu_devices", opts.cpu_devices)
    if opts.distributed:
        print(
            f"{name}: jax.distributed: process {opts.process_id} of {opts.num_processes} "
            f"joining {opts.coordinator} (timeout {opts.init_timeout} s)",
            file=sys.stderr,
            flush=True,
        )
        try:
            jax.distributed.initialize(
                coordinator_address=opts.coordinator,
                num_processes=opts.num_processes,
                process_id=opts.process_id,
                initialization_timeout=opts.init_timeout,
            )
        except Exception as e:  # noqa: BLE001 - unreachable coordinator, timeout: one line
            raise RunFailed(
                f"jax.distributed.initialize failed: {str(e).strip().splitlines()[0]}", 1
            ) from None
