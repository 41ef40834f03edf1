"""Writing benchmark results: versions of what was measured, JSON written atomically, and
nothing machine-specific (paths are relative to the repository, or dropped)."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("jax", "jaxlib", "optax", "numpy", "scipy-openblas64", "scipy-openblas32", "torch")


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages the timings depend on, Python and the JAX backend."""
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    import jax

    versions["python"] = platform.python_version()
    versions["jax_backend"] = jax.default_backend()
    return versions


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository if it is inside it, else only its file name."""
    p = Path(path).resolve()
    try:
        return p.relative_to(ROOT).as_posix()
    except ValueError:
        return p.name


def data_source(source: str) -> str:
    """A ``bpjax.data`` source string (``"idx:/some/dir"``) without the machine's directory."""
    kind, sep, where = source.partition(":")
    return f"{kind}:{Path(where).name}" if sep and os.path.isabs(where) else source


def portable(text: str) -> str:
    """``text`` (a traceback, say) with the repository's absolute path replaced by ``.``."""
    return text.replace(str(ROOT), ".")


def write_json(path: str | os.PathLike, obj) -> Path:
    """``obj`` as indented JSON at ``path``, atomically (a reader sees the old or the new file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
