"""Verified checkpoints of a training run: a pytree of arrays plus a JSON record per step.

    with open_manager(run_dir / "checkpoints", keep=2) as checkpoints:
        checkpoints.save(step, {"params": params, "opt_state": opt_state,
                                "key": key_to_data(key)}, {"epoch": 3, "config": {...}})
        found = checkpoints.latest_intact(like_fn)   # like_fn(record) -> pytree of ShapeDtypeStruct
        if found is not None:
            found.step, found.record, found.arrays, found.warnings

Storage is orbax: each step is the directory ``<step>`` holding three items, ``arrays``
(orbax's standard pytree format), ``record`` (JSON) and ``integrity`` (JSON: the sha256, shape
and dtype of every array leaf, the sha256 of the record, and a sha256 of itself). orbax writes
a step into ``<step>.orbax-checkpoint-tmp`` and renames it when complete, so a kill or a full
disk during a save never leaves a half-written step that a restore would see.

Guarantees:
- A restore verifies every checksum; damaged state is never returned. ``latest_intact`` falls
  back to the newest intact step and says in one line per skipped step what was wrong.
- A save is read back and verified before older steps are rotated out, so the newest intact
  checkpoint is never deleted. A damaged step that a new save would replace is moved aside to
  ``<step>.damaged``, not deleted.
- An OS error during a save (disk full, permission denied) is one ``CheckpointError`` with a
  one-line message; the partial step is removed and the earlier steps are untouched.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import inspect
import json
import logging
import os
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

FORMAT = "bpjax-checkpoint/1"
_ITEMS = ("arrays", "record", "integrity")
_TMP_MARK = ".orbax-checkpoint-tmp"
_DAMAGED_SUFFIX = ".damaged"


class CheckpointError(Exception):
    """A checkpoint cannot be written or read; the message is one line for the user."""


class DamagedCheckpointError(CheckpointError):
    """One step's files do not match its recorded checksums (or cannot be decoded)."""

    def __init__(self, step: int, reason: str):
        super().__init__(f"checkpoint {step} is damaged ({reason})")
        self.step, self.reason = step, reason


class Restored(NamedTuple):
    """A verified checkpoint: its step, JSON record, arrays, and one-line warnings about the
    newer steps that were skipped as damaged (empty when the newest step was intact)."""

    step: int
    record: dict
    arrays: Any
    warnings: list[str]


LikeFn = Callable[[dict], Any]


# --- checksums ----------------------------------------------------------------------------------


def _sha256(data) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical_json(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _leaf_name(path) -> str:
    """'params/0/w': the same string whether a level is a dict, list or NamedTuple (orbax
    restores NamedTuples as dicts when no target is given)."""
    parts = []
    for k in path:
        for attr in ("key", "idx", "name"):
            if hasattr(k, attr):
                parts.append(str(getattr(k, attr)))
                break
        else:
            parts.append(str(k))
    return "/".join(parts)


def _leaves(tree) -> dict[str, Any]:
    return {_leaf_name(p): leaf for p, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _describe_array(a) -> dict:
    a = np.asarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": _sha256(a.tobytes())}


def _integrity(arrays, record_json: str) -> dict:
    body = {
        "format": FORMAT,
        "record": _sha256(record_json.encode()),
        "arrays": {name: _describe_array(a) for name, a in _leaves(arrays).items()},
    }
    return {**body, "self": _sha256(_canonical_json(body).encode())}


# --- orbax plumbing -----------------------------------------------------------------------------


class _DropOrbaxErrors(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.ERROR


_SETTLE_S = 0.25  # local reads abandoned by a failed restore finish well within this


@contextlib.contextmanager
def _quiet_orbax():
    """Turn an orbax failure into our own one-line error without its side noise: orbax logs a
    traceback per worker thread, and after a failed read the reads still in flight report to
    an event loop orbax has already closed (one "Event loop is closed" traceback each), and
    its abandoned read coroutines raise as they are collected. All are dropped while this is
    active."""
    logger, drop = logging.getLogger("absl"), _DropOrbaxErrors()
    previous = sys.unraisablehook

    def hook(unraisable) -> None:
        value = unraisable.exc_value
        closed_loop = isinstance(value, RuntimeError) and "Event loop is closed" in str(value)
        if not (closed_loop or inspect.iscoroutine(unraisable.object)):
            previous(unraisable)

    logger.addFilter(drop)
    sys.unraisablehook = hook
    try:
        yield
    finally:
        sys.unraisablehook = previous
        logger.removeFilter(drop)


def _settle() -> None:
    """After a failed read (inside ``_quiet_orbax``, once its exception is released): let the
    abandoned reads finish, and collect orbax's read coroutines that were never awaited."""
    time.sleep(_SETTLE_S)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        gc.collect()


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    line = text[0] if text else type(e).__name__
    return line if len(line) <= 200 else line[:197] + "..."


_TENSORSTORE_READ = re.compile(r'Error reading "([^"/]+)/[^"]*" in OCDBT database at [^:]*: (.*)')


def _read_reason(e: BaseException) -> str:
    """'array params/0/w unreadable (Truncated Zstd-compressed stream)' from the chain of
    exceptions orbax and tensorstore raise for a missing or corrupt file."""
    chain, seen = [], e
    while seen is not None and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for exc in chain:
        m = _TENSORSTORE_READ.search(str(exc))
        if m:
            detail = m.group(2).split(";")[0].strip()
            return f"array {m.group(1).replace('.', '/')} unreadable ({detail})"
    line = _first_line(chain[-1]).split(" See full TensorStore details")[0]
    return f"arrays unreadable ({line})"


def _os_reason(e: BaseException) -> str | None:
    """'No space left on device (ENOSPC)' for an OS error, raised directly or reported by
    tensorstore inside a ValueError; None for anything else."""
    for exc in (e, e.__cause__, e.__context__):
        if isinstance(exc, OSError) and exc.errno:
            return f"{os.strerror(exc.errno)} ({errno.errorcode.get(exc.errno, exc.errno)})"
    m = re.search(r"os_error_code='?(\d+)", str(e))
    if m:
        code = int(m.group(1))
        return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
    return None


def _with_sharding(leaf):
    """A ShapeDtypeStruct orbax can restore into: the leaf's sharding, or the default device."""
    sds = ocp.utils.to_shape_dtype_struct(leaf)
    if getattr(sds, "sharding", None) is None:
        sds = jax.ShapeDtypeStruct(
            sds.shape, sds.dtype, sharding=jax.sharding.SingleDeviceSharding(jax.devices()[0])
        )
    return sds


# --- the manager --------------------------------------------------------------------------------


class Checkpoints:
    """The numbered, verified checkpoints in one directory, keeping the last ``keep``.

    Saves are synchronous. Close it (or use ``with``); ``read_only`` never writes or deletes.
    """

    def __init__(
        self, directory: str | os.PathLike, keep: int | None = None, *, read_only: bool = False
    ):
        if keep is not None and keep < 1:
            raise ValueError(f"keep must be None or >= 1, got {keep}")
        self.directory = Path(os.path.abspath(os.fspath(directory)))
        self.keep, self.read_only = keep, read_only
        self._checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
        if not read_only:
            self._remove_partial_saves()

    # context manager / orbax-manager compatible names
    def __enter__(self) -> Checkpoints:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._checkpointer.close()

    def all_steps(self) -> list[int]:
        """Every complete step on disk, oldest first (intact or not: see ``latest_intact``)."""
        if not self.directory.is_dir():
            return []
        steps = []
        for p in self.directory.iterdir():
            if p.name.isdigit() and str(int(p.name)) == p.name and p.is_dir():
                steps.append(int(p.name))
        return sorted(steps)

    def latest_step(self) -> int | None:
        steps = self.all_steps()
        return steps[-1] if steps else None

    def step_dir(self, step: int) -> Path:
        return self.directory / str(step)

    # --- save ---

    def save(self, step: int, arrays, record: dict) -> list[str]:
        """Write ``arrays`` (a pytree of arrays) and ``record`` (JSON-able) as checkpoint
        ``step``, read it back and verify it, then delete the steps older than the last
        ``keep``. Returns one-line notes (e.g. a damaged step moved aside), usually [].

        Raises ValueError if an intact ``step`` exists, CheckpointError (one line) if the step
        cannot be written or does not read back intact; the earlier steps are untouched then.
        """
        if self.read_only:
            raise ValueError(f"{self.directory}: opened read-only, cannot save checkpoint {step}")
        if isinstance(step, bool) or not isinstance(step, int | np.integer) or step < 0:
            raise ValueError(f"checkpoint step must be an int >= 0, got {step!r}")
        step = int(step)
        # Normalise through JSON first so the checksum is of exactly what a restore will parse.
        record_json = _canonical_json(json.loads(json.dumps(record, allow_nan=True)))
        notes = []
        if step in self.all_steps():
            try:
                self._load(step, None)
            except DamagedCheckpointError as e:
                notes.append(f"{e}; moved aside to {self._move_aside(step).name}")
            else:
                raise ValueError(f"checkpoint {step} already exists in {self.directory}")
        integrity = _integrity(arrays, record_json)
        self._write(step, arrays, json.loads(record_json), integrity)
        try:
            self._load(step, None)
        except DamagedCheckpointError as e:
            self._move_aside(step)
            raise CheckpointError(
                f"checkpoint {step} in {self.directory} did not read back intact ({e.reason}); "
                "the earlier checkpoints are kept"
            ) from e
        self._rotate(step)
        return notes

    def _write(self, step: int, arrays, record: dict, integrity: dict) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with _quiet_orbax():
                self._checkpointer.save(
                    self.step_dir(step),
                    args=ocp.args.Composite(
                        arrays=ocp.args.StandardSave(arrays),
                        record=ocp.args.JsonSave(record),
                        integrity=ocp.args.JsonSave(integrity),
                    ),
                )
        except Exception as e:
            self._remove_partial_saves(step)
            reason = _os_reason(e)
            if reason is None:
                raise
            raise CheckpointError(
                f"cannot write checkpoint {step} in {self.directory}: {reason}; "
                "the earlier checkpoints are intact"
            ) from e

    def _rotate(self, newest: int) -> None:
        """Delete the steps older than the last ``keep`` up to ``newest`` (just verified)."""
        if self.keep is None:
            return
        older = [s for s in self.all_steps() if s < newest]
        for s in older[: max(0, len(older) - (self.keep - 1))]:
            shutil.rmtree(self.step_dir(s), ignore_errors=True)

    def _move_aside(self, step: int) -> Path:
        target, n = self.directory / f"{step}{_DAMAGED_SUFFIX}", 1
        while target.exists():
            n += 1
            target = self.directory / f"{step}{_DAMAGED_SUFFIX}-{n}"
        self.step_dir(step).rename(target)
        return target

    def _remove_partial_saves(self, step: int | None = None) -> None:
        """Delete orbax's temporary directories of interrupted saves (of ``step``, or all)."""
        if not self.directory.is_dir():
            return
        for p in self.directory.iterdir():
            if _TMP_MARK in p.name and (step is None or p.name.split(".")[0] == str(step)):
                shutil.rmtree(p, ignore_errors=True)

    # --- restore ---

    def _load(self, step: int, like_fn: LikeFn | None) -> tuple[dict, Any]:
        """The verified (record, arrays) of ``step``. Raises DamagedCheckpointError, or
        CheckpointError if intact arrays differ from what ``like_fn(record)`` expects."""
        record, integrity = self._load_record(step)
        expected = integrity["arrays"]
        if like_fn is None:
            target = None
        else:
            like = like_fn(record)
            self._check_like(step, like, expected)
            target = jax.tree.map(_with_sharding, like)
        failure = None
        with _quiet_orbax():
            try:
                arrays = self._checkpointer.restore(
                    self.step_dir(step),
                    args=ocp.args.Composite(arrays=ocp.args.StandardRestore(target)),
                )["arrays"]
            except Exception as e:  # orbax and tensorstore raise many kinds for a bad file
                failure = _read_reason(e)
            if failure is not None:
                _settle()
        if failure is not None:
            raise DamagedCheckpointError(step, failure)
        got = _leaves(arrays)
        if like_fn is None and set(got) != set(expected):
            missing = sorted(set(expected) - set(got)) or sorted(set(got) - set(expected))
            raise DamagedCheckpointError(step, f"arrays {', '.join(missing)} do not match")
        for name, want in expected.items():
            have = _describe_array(got[name])
            if have["shape"] != want["shape"] or have["dtype"] != want["dtype"]:
                raise DamagedCheckpointError(step, f"array {name} shape/dtype mismatch")
            if have["sha256"] != want["sha256"]:
                raise DamagedCheckpointError(step, f"array {name} checksum mismatch")
        return record, arrays

    def _load_record(self, step: int) -> tuple[dict, dict]:
        failure = None
        with _quiet_orbax():
            try:
                items = self._checkpointer.restore(
                    self.step_dir(step),
                    args=ocp.args.Composite(
                        record=ocp.args.JsonRestore(), integrity=ocp.args.JsonRestore()
                    ),
                )
            except Exception as e:
                failure = f"record unreadable: {_first_line(e)}"
            if failure is not None:
                _settle()
        if failure is not None:
            raise DamagedCheckpointError(step, failure)
        record, integrity = items["record"], items["integrity"]
        if not isinstance(integrity, dict) or "self" not in integrity:
            raise DamagedCheckpointError(step, "checksum list unreadable")
        body = {k: v for k, v in integrity.items() if k != "self"}
        if _sha256(_canonical_json(body).encode()) != integrity["self"]:
            raise DamagedCheckpointError(step, "checksum list does not match its own checksum")
        if body.get("format") != FORMAT:
            raise DamagedCheckpointError(step, f"unknown format {body.get('format')!r}")
        if _sha256(_canonical_json(record).encode()) != body["record"]:
            raise DamagedCheckpointError(step, "JSON record checksum mismatch")
        return record, body

    def _check_like(self, step: int, like, expected: dict) -> None:
        want = {n: (tuple(a.shape), str(np.dtype(a.dtype))) for n, a in _leaves(like).items()}
        have = {n: (tuple(d["shape"]), d["dtype"]) for n, d in expected.items()}
        if want == have:
            return
        if set(want) != set(have):
            extra, lack = sorted(set(have) - set(want)), sorted(set(want) - set(have))
            detail = "; ".join(
                s
                for s in (
                    extra and f"on disk but not expected: {', '.join(extra)}",
                    lack and f"expected but not on disk: {', '.join(lack)}",
                )
                if s
            )
        else:
            name = next(n for n in want if want[n] != have[n])
            detail = (
                f"array {name} is {have[name][0]} {have[name][1]} on disk, "
                f"{want[name][0]} {want[name][1]} expected"
            )
        raise CheckpointError(
            f"checkpoint {step} in {self.directory} does not hold the arrays this program "
            f"expects ({detail})"
        )

    def restore(self, step: int, like_fn: LikeFn) -> tuple[dict, Any]:
        """The verified (record, arrays) of ``step``; arrays in the structure of
        ``like_fn(record)``. Raises DamagedCheckpointError or CheckpointError."""
        if step not in self.all_steps():
            raise CheckpointError(f"checkpoint {step} does not exist in {self.directory}")
        return self._load(step, like_fn)

    def restore_record(self, step: int) -> dict:
        """The verified JSON record of ``step`` (reads no arrays)."""
        if step not in self.all_steps():
            raise CheckpointError(f"checkpoint {step} does not exist in {self.directory}")
        return self._load_record(step)[0]

    def latest_intact(self, like_fn: LikeFn) -> Restored | None:
        """The newest step whose record and arrays verify, or None if there is no step.

        Damaged newer steps are skipped (not deleted), each named in one warning line.
        Raises CheckpointError if there are steps but none is intact.
        """
        damaged = []
        for step in reversed(self.all_steps()):
            try:
                record, arrays = self._load(step, like_fn)
            except DamagedCheckpointError as e:
                damaged.append(e)
                continue
            warnings = [f"{e}; resuming from checkpoint {step}" for e in damaged]
            return Restored(step, record, arrays, warnings)
        if damaged:
            raise CheckpointError(
                f"no intact checkpoint in {self.directory}: "
                + "; ".join(f"{e.step} ({e.reason})" for e in damaged)
            )
        return None


# --- function API -------------------------------------------------------------------------------


def open_manager(
    directory: str | os.PathLike, keep: int | None = None, *, read_only: bool = False
) -> Checkpoints:
    """The checkpoints in ``directory``, keeping the last ``keep`` (None: all)."""
    return Checkpoints(directory, keep, read_only=read_only)


@contextlib.contextmanager
def _opened(where: Checkpoints | str | os.PathLike, read_only: bool):
    if isinstance(where, Checkpoints):
        yield where
    else:
        with Checkpoints(where, read_only=read_only) as c:
            yield c


def save(where: Checkpoints | str | os.PathLike, step: int, arrays, record: dict) -> list[str]:
    """``Checkpoints.save`` on a manager or a directory (a directory keeps every step)."""
    with _opened(where, read_only=False) as c:
        return c.save(step, arrays, record)


def latest_intact(where: Checkpoints | str | os.PathLike, like_fn: LikeFn) -> Restored | None:
    """``Checkpoints.latest_intact`` on a manager or a directory (None if it does not exist)."""
    with _opened(where, read_only=True) as c:
        return c.latest_intact(like_fn)


def restore_record(manager: Checkpoints, step: int) -> dict:
    """The verified JSON record of checkpoint ``step`` (reads no arrays)."""
    return manager.restore_record(step)


def restore_arrays(manager: Checkpoints, step: int, like):
    """The verified arrays of checkpoint ``step``, in the structure, shapes and dtypes of
    ``like``."""
    return manager.restore(step, lambda record: like)[1]


def key_to_data(key: jax.Array) -> jax.Array:
    """A typed PRNG key as its raw uint32 data, which checkpoints store as a plain array."""
    return jax.random.key_data(key)


def data_to_key(data: jax.Array) -> jax.Array:
    """Inverse of ``key_to_data`` (the default PRNG implementation)."""
    return jax.random.wrap_key_data(data)


def stack(trees: list):
    """A list of same-structured pytrees as one pytree of arrays with a leading axis."""
    # numpy, not jnp: a jnp.stack would compile anew for every list length
    return jax.tree.map(lambda *leaves: np.stack([np.asarray(a) for a in leaves]), *trees)


def unstack(stacked) -> list:
    """Inverse of ``stack``: a list of pytrees of device arrays."""
    host = jax.tree.map(np.asarray, stacked)
    n = jax.tree.leaves(host)[0].shape[0]
    return [jax.tree.map(lambda a, i=i: jnp.asarray(a[i]), host) for i in range(n)]
