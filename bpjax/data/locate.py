"""Where data lives: the IDX directory and TFDS's data directory. Reads, never writes."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

DATA_DIR_ENV = "BPJAX_DATA_DIR"
TFDS_DIR_ENV = "TFDS_DATA_DIR"


def default_mnist_dir() -> Path | None:
    """$BPJAX_DATA_DIR if set, else None. The library never guesses a place from where it is
    installed. The env var is returned even if it names nothing, so a typo fails loudly."""
    env = os.environ.get(DATA_DIR_ENV)
    return Path(env).expanduser() if env else None


def default_tfds_dir() -> Path:
    """$TFDS_DATA_DIR or ~/tensorflow_datasets: tfds's own default."""
    return Path(os.environ.get(TFDS_DIR_ENV) or "~/tensorflow_datasets").expanduser()


class TfdsCopy(NamedTuple):
    """A prepared TFDS mnist: its version directory and file format ("array_record", ...)."""

    path: Path
    file_format: str


def find_tfds_copy(tfds_dir: Path) -> TfdsCopy | None:
    """The newest prepared mnist under `tfds_dir`, found without importing tfds (it is slow)."""
    copies = []
    for info in Path(tfds_dir).expanduser().glob("mnist/[0-9]*/dataset_info.json"):
        try:
            meta = json.loads(info.read_text())
            version = tuple(int(p) for p in info.parent.name.split("."))
        except (OSError, ValueError):
            continue  # half-written or foreign: not a copy we can use
        # Copies written before tfds recorded the format are TFRecord.
        copies.append((version, TfdsCopy(info.parent, meta.get("fileFormat", "tfrecord"))))
    return max(copies)[1] if copies else None
