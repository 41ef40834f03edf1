"""Run directories: unique, locked while in use, never overwritten; atomic files inside.

A run owns its directory through an exclusive ``flock`` on ``.lock`` for as long as the process
lives (the OS drops it when the process dies, even by kill -9), so a second run with the same
``--out``, or a ``--resume`` of a run still going, is refused instead of mixing files.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import errno
import fcntl
import io
import json
import os
import platform
import secrets
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from experiments.runtime.cli import ConfigError

LOCK = ".lock"
CONFIG = "config.json"
RESULTS = "results.json"
PACKAGES = (
    "jax",
    "jaxlib",
    "optax",
    "flax",
    "chex",
    "numpy",
    "orbax-checkpoint",
    "tensorflow-datasets",
    "matplotlib",
)


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages results depend on, plus Python and the JAX backend."""
    import jax

    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    versions["python"] = platform.python_version()
    versions["jax_backend"] = jax.default_backend()
    versions["devices"] = str(jax.devices())
    return versions


def default_run_dir(experiment: str) -> Path:
    """``runs/<experiment>/<YYYYmmdd-HHMMSS>-<6 hex>``: unique even for runs started together."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / experiment / f"{stamp}-{secrets.token_hex(3)}"


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_new(path: Path) -> None:
    """ConfigError unless ``path`` can become a new run directory (absent, or an empty writable
    directory). Creates nothing."""
    if path.exists() or path.is_symlink():
        if not path.is_dir():
            raise ConfigError(f"--out {path} exists and is not a directory")
        if any(p.name != LOCK for p in path.iterdir()):
            raise ConfigError(
                f"--out {path} is not empty; choose a new directory (results are "
                "never overwritten), or --resume it"
            )
        base = path
    else:
        base = _nearest_existing(path)
        if not base.is_dir():
            raise ConfigError(f"--out {path} cannot be created: {base} is not a directory")
    if not os.access(base, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {path} is not writable (no write permission on {base})")


def _lock(path: Path) -> int:
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"{path} is in use by another run (it holds {path / LOCK})") from None
    return fd


@dataclasses.dataclass
class RunDir:
    """An open, locked run directory."""

    path: Path
    fd: int

    @classmethod
    def create(cls, path: Path) -> RunDir:
        """Create (or take an empty) ``path`` and lock it; refuse one in use or not empty."""
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"--out {path}: cannot create it: {e.strerror}") from None
        fd = _lock(path)
        if any(p.name != LOCK for p in path.iterdir()):  # filled between the check and the lock
            os.close(fd)
            raise ConfigError(f"--out {path} is not empty; choose a new directory")
        return cls(path, fd)

    @classmethod
    def reopen(cls, path: Path) -> RunDir:
        """Lock an existing run directory to resume it."""
        if not path.is_dir():
            raise ConfigError(f"--resume {path}: no such run directory")
        if not (path / CONFIG).is_file():
            raise ConfigError(f"--resume {path}: not a run directory (no {CONFIG})")
        try:
            return cls(path, _lock(path))
        except OSError as e:
            raise ConfigError(f"--resume {path}: cannot lock it: {e.strerror}") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def write_json(self, name: str, obj: Any) -> Path:
        return atomic_write_json(self.path / name, obj)


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, arrays, tuples and paths as JSON values; NaN/inf become the strings "nan",
    "inf" (JSON has none), read back by ``float()``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.generic) or (hasattr(obj, "__array__") and not isinstance(obj, str)):
        return to_jsonable(np.asarray(obj).tolist())
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    if isinstance(obj, Path):
        return str(obj)
    return obj


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    """Write via a temp file in the same directory and ``os.replace``: a reader (or a crash) sees
    the old file or the new one, never half of one. The file gets the umask's mode."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_bytes(path, (json.dumps(to_jsonable(obj), indent=1) + "\n").encode())


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e})") from None


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """A matplotlib figure as a PNG, written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    # A figure with a layout engine is laid out already; "tight" would draw it once more.
    tight = None if fig.get_layout_engine() is not None else "tight"
    try:
        fig.savefig(buf, format="png", dpi=dpi, bbox_inches=tight)
    finally:
        plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def describe_os_error(e: OSError) -> str:
    """One line for an OS error: what failed and where (disk full, permission, ...)."""
    what = e.strerror or errno.errorcode.get(e.errno or 0, "") or str(e) or type(e).__name__
    where = f": {e.filename}" if getattr(e, "filename", None) else ""
    return f"{what}{where}"
