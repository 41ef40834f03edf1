"""TensorFlow Datasets' "mnist": prepared offline from the IDX files, read with or without TF.

tensorflow_datasets (and TensorFlow, which costs seconds to import) are imported only inside
these functions, never when bpjax.data is imported.

- Preparing needs TensorFlow (tfds's extractor uses tf.io.gfile): `pip install 'bpjax[tfds]'`.
  It reads the four .gz files through tfds's `manual_dir`, whose checksums tfds knows, so it
  never needs the network. We prepare ArrayRecord copies by default because those can later
  be read without TensorFlow.
- Reading: an ArrayRecord copy through `builder.as_data_source` (no TensorFlow needed), a
  TFRecord copy (tfds's usual format) through `builder.as_dataset` + `tfds.as_numpy`.
- TFDS orders the examples differently from the IDX files.
"""

from __future__ import annotations

import importlib.util
import tempfile
from pathlib import Path

import numpy as np

from bpjax.data.dataset import Splits
from bpjax.data.errors import MissingDependencyError, MnistFormatError, MnistNotFoundError
from bpjax.data.idx import find_files, load_idx
from bpjax.data.locate import default_tfds_dir

NAME = "mnist"
DEFAULT_FORMAT = "array_record"
_CHUNK = 10_000
_INSTALL_TF = "pip install 'bpjax[tfds]' (adds tensorflow-cpu)"


def has_tensorflow() -> bool:
    """Whether TensorFlow is installed (checked without importing it)."""
    return importlib.util.find_spec("tensorflow") is not None


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise MissingDependencyError(
            f"source='tfds' needs tensorflow-datasets and importlib_resources ({e}): "
            "pip install tensorflow-datasets importlib_resources"
        ) from e
    return tfds


def _format_name(file_format) -> str:
    return str(getattr(file_format, "value", file_format))


def _check_manual_dir(idx_dir: Path) -> None:
    # tfds looks for the exact .gz names and silently downloads any that are missing, so
    # check them here; our strict reader also gives clearer errors than a checksum mismatch.
    raw = [p.name for p in find_files(idx_dir).values() if p.suffix != ".gz"]
    if raw:
        raise MnistNotFoundError(
            f"MNIST directory {idx_dir}: TFDS prepares from the gzipped files only, found raw "
            f"{', '.join(raw)}; gzip them (or use source='idx', which reads both)"
        )
    load_idx(idx_dir)


def _builder(tfds, tfds_dir: Path, idx_dir: Path | None, file_format: str, download: bool):
    """A builder whose copy in `tfds_dir` is prepared, preparing it first if needed."""
    builder = tfds.builder(NAME, data_dir=str(tfds_dir))
    if builder.is_prepared():
        return builder
    if idx_dir is None and not download:
        raise MnistNotFoundError(
            f"no prepared TFDS copy of {NAME} in {tfds_dir}, and no IDX directory to prepare "
            "one from: pass data_dir=<dir with the four MNIST .gz files> (or set "
            "BPJAX_DATA_DIR), or download=True to let tfds fetch them"
        )
    if not has_tensorflow():
        raise MissingDependencyError(
            f"preparing TFDS {NAME} in {tfds_dir} needs TensorFlow (tfds's extractor uses "
            f"tf.io.gfile): {_INSTALL_TF}; or read the IDX files directly with source='idx'"
        )
    if idx_dir is not None:
        _check_manual_dir(idx_dir)
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    builder = tfds.builder(NAME, data_dir=str(tfds_dir), file_format=file_format)
    # Extract into a scratch dir: the .gz originals stay in manual_dir, so keeping 53 MB of
    # extracted copies under tfds_dir would only waste space.
    with tempfile.TemporaryDirectory(prefix="bpjax-tfds-") as scratch:
        config = tfds.download.DownloadConfig(
            manual_dir=None if idx_dir is None else str(idx_dir),
            extract_dir=scratch,
            # True would first ask GCS for a prepared copy: a network call.
            try_download_gcs=False,
        )
        try:
            builder.download_and_prepare(download_dir=scratch, download_config=config)
        except NonMatchingChecksumError as e:
            raise MnistFormatError(
                f"MNIST directory {idx_dir}: the files are valid IDX but not the original "
                f"MNIST bytes TFDS registers (checksum mismatch): {e}"
            ) from e
    return builder


def prepare_tfds(
    tfds_dir: Path | None = None,
    idx_dir: Path | None = None,
    *,
    file_format: str = DEFAULT_FORMAT,
    download: bool = False,
) -> Path:
    """Prepare TFDS mnist in `tfds_dir` (default $TFDS_DATA_DIR or ~/tensorflow_datasets)
    from the IDX .gz files in `idx_dir`, offline; a no-op if a copy is already there.
    Returns the copy's version directory."""
    tfds = _import_tfds()
    tfds_dir = Path(tfds_dir).expanduser() if tfds_dir else default_tfds_dir()
    idx_dir = None if idx_dir is None else Path(idx_dir).expanduser()
    return Path(_builder(tfds, tfds_dir, idx_dir, file_format, download).data_dir)


def _stack(examples, where: str) -> tuple[np.ndarray, np.ndarray]:
    if not len(examples):
        raise MnistFormatError(f"{where}: the split holds 0 examples")
    x = np.stack([np.asarray(e["image"]) for e in examples])
    y = np.asarray([e["label"] for e in examples])
    return x, y


def _flat(x: np.ndarray, y: np.ndarray, where: str) -> tuple[np.ndarray, np.ndarray]:
    if x.shape[1:] != (28, 28, 1):
        raise MnistFormatError(f"{where}: images of shape {x.shape}, expected (N, 28, 28, 1)")
    return x.reshape(x.shape[0], 28 * 28), y


def _read(tfds, builder, split: str) -> tuple[np.ndarray, np.ndarray]:
    fmt = _format_name(builder.info.file_format)
    where = f"TFDS {NAME} {split} split in {builder.data_dir}"
    if fmt == "array_record":
        source = builder.as_data_source(split=split)
        # One batched read: 60,000 single lookups would each pay Python overhead.
        x, y = _stack(source.__getitems__(range(len(source))), where)
    elif has_tensorflow():
        # Fixed-size batches rather than batch_size=-1: that sizes its one batch from the
        # split metadata, which tfds.testing.mock_data leaves empty (TF then aborts).
        batches = list(tfds.as_numpy(builder.as_dataset(split=split).batch(_CHUNK)))
        if not batches:
            raise MnistFormatError(f"{where}: the split holds 0 examples")
        x = np.concatenate([b["image"] for b in batches])
        y = np.concatenate([b["label"] for b in batches])
    else:
        raise MissingDependencyError(
            f"{where} is in {fmt} format, which only TensorFlow reads: {_INSTALL_TF}, "
            f"or prepare an {DEFAULT_FORMAT} copy (readable without TensorFlow)"
        )
    return _flat(x, y, where)


def load_tfds(
    tfds_dir: Path | None = None,
    idx_dir: Path | None = None,
    *,
    file_format: str = DEFAULT_FORMAT,
    download: bool = False,
) -> tuple[Splits, str]:
    """Read TFDS mnist from `tfds_dir`, preparing it from `idx_dir` first if it is missing
    (see `prepare_tfds`). Returns the splits (images (N, 784) uint8) and a description."""
    tfds = _import_tfds()
    # resolved: the description then names the copy the same way however it was spelled
    tfds_dir = (Path(tfds_dir).expanduser() if tfds_dir else default_tfds_dir()).resolve()
    idx_dir = None if idx_dir is None else Path(idx_dir).expanduser()
    builder = _builder(tfds, tfds_dir, idx_dir, file_format, download)
    x_train, y_train = _read(tfds, builder, "train")
    x_test, y_test = _read(tfds, builder, "test")
    description = f"tfds:{builder.data_dir} ({_format_name(builder.info.file_format)})"
    return Splits(x_train, y_train, x_test, y_test), description
