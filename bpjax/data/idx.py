"""A strict reader of the IDX format used by the original MNIST files (gzipped or raw).

Layout: 2 zero bytes, a dtype code, the number of dimensions d, then d big-endian uint32
sizes, then the items in C order, big-endian. Anything else is a `MnistFormatError`.
"""

from __future__ import annotations

import errno
import gzip
import math
import os
import stat
import struct
import zlib
from pathlib import Path

import numpy as np

from bpjax.data.dataset import N_CLASSES, Splits
from bpjax.data.errors import (
    DataError,
    DataReadError,
    MnistFormatError,
    MnistNotFoundError,
    MnistSplitError,
)

_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"
IMAGE_SHAPE = (28, 28)

# The standard file names; each may be gzipped (".gz") or raw.
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def _unreadable(path: Path, e: OSError, what: str = "file") -> DataReadError:
    reason = e.strerror or str(e)
    name = errno.errorcode.get(e.errno) if e.errno else None
    return DataReadError(
        f"{path}: cannot read the {what}: {reason}" + (f" ({name})" if name else "")
    )


def read_bytes(path: Path) -> bytes:
    """The file's content, gunzipped if it starts with the gzip magic (whatever its name)."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        if path.is_symlink():
            raise DataReadError(
                f"{path}: broken symbolic link (to {os.readlink(path)}, which does not exist)"
            ) from None
        raise MnistNotFoundError(f"{path}: no such file") from None
    except OSError as e:
        raise _unreadable(path, e) from None
    if stat.S_ISDIR(mode):
        raise DataReadError(f"{path}: is a directory, expected an IDX file")
    if not stat.S_ISREG(mode):
        raise DataReadError(f"{path}: not a regular file (a device, pipe or socket)")
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise _unreadable(path, e) from None
    if not raw:
        raise MnistFormatError(f"{path}: file is empty (0 bytes)")
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        data = gzip.decompress(raw)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise MnistFormatError(f"{path}: corrupt or truncated gzip data ({e})") from e
    if not data:
        raise MnistFormatError(f"{path}: gzip data decompresses to 0 bytes")
    return data


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode one IDX file's bytes into an array of its header's shape and dtype (native order)."""
    if len(data) < 4:
        raise MnistFormatError(
            f"{name}: {len(data)} bytes is too short for an IDX header (needs at least 4)"
        )
    (magic,) = struct.unpack(">I", data[:4])
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0":
        raise MnistFormatError(
            f"{name}: bad magic number 0x{magic:08x}: an IDX file starts with two zero bytes "
            "(MNIST images use 0x00000803, labels 0x00000801); is this an IDX file?"
        )
    if code not in _DTYPES:
        known = ", ".join(f"0x{c:02x}" for c in _DTYPES)
        raise MnistFormatError(
            f"{name}: bad magic number 0x{magic:08x}: unknown IDX dtype code 0x{code:02x} "
            f"(known: {known})"
        )
    if ndim == 0:
        raise MnistFormatError(f"{name}: bad magic number 0x{magic:08x}: 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistFormatError(
            f"{name}: truncated header: {ndim} dimensions need {header} header bytes, "
            f"the file has {len(data)}"
        )
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = _DTYPES[code]
    count = math.prod(shape)
    want, have = count * dtype.itemsize, len(data) - header
    if have != want:
        what = "truncated" if have < want else f"{have - want} trailing bytes"
        raise MnistFormatError(
            f"{name}: {what}: the header says {count} items of shape {shape} "
            f"({want} bytes of data), the file has {have} bytes of data"
        )
    array = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: Path) -> np.ndarray:
    """Read any IDX file, gzipped or raw, checking its header against its length."""
    return parse_idx(read_bytes(path), name=str(path))


def read_images(path: Path) -> np.ndarray:
    """MNIST images -> (N, 784) uint8 in 0..255."""
    array = read_idx(path)
    if array.dtype != np.uint8:
        raise MnistFormatError(
            f"{path}: images must be unsigned bytes (IDX dtype code 0x08), got {array.dtype}"
        )
    if array.ndim != 3 or array.shape[1:] != IMAGE_SHAPE:
        raise MnistFormatError(
            f"{path}: wrong dimensions: images must have shape (N, 28, 28), "
            f"the header says {array.shape}"
        )
    return array.reshape(array.shape[0], IMAGE_SHAPE[0] * IMAGE_SHAPE[1])


def read_labels(path: Path) -> np.ndarray:
    """MNIST labels -> (N,) uint8 in 0..9."""
    array = read_idx(path)
    if array.dtype != np.uint8:
        raise MnistFormatError(
            f"{path}: labels must be unsigned bytes (IDX dtype code 0x08), got {array.dtype}"
        )
    if array.ndim != 1:
        raise MnistFormatError(
            f"{path}: wrong dimensions: labels must have shape (N,), the header says {array.shape}"
        )
    bad = np.flatnonzero(array >= N_CLASSES)
    if bad.size:
        i = int(bad[0])
        raise MnistFormatError(
            f"{path}: label {int(array[i])} at index {i} ({bad.size} bad in all); "
            f"MNIST labels are 0..{N_CLASSES - 1}"
        )
    return array


def write_idx(path: Path, array: np.ndarray) -> Path:
    """Write `array` as an IDX file, gzipped if `path` ends in ".gz" (e.g. small test sets)."""
    array = np.asarray(array)
    codes = {dtype.newbyteorder("="): code for code, dtype in _DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"{path}: IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= 255:
        raise ValueError(f"{path}: IDX needs 1..255 dimensions, got {array.ndim}")
    header = struct.pack(f">BBBB{array.ndim}I", 0, 0, code, array.ndim, *array.shape)
    data = header + array.astype(_DTYPES[code], copy=False).tobytes()
    path = Path(path)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def find_files(directory: Path) -> dict[str, Path]:
    """The four MNIST files in `directory`, preferring "<name>.gz" over the raw "<name>".

    A name present in any form (even a directory or a broken link) is chosen, so reading it
    reports what is wrong with it instead of silently using the other spelling.
    """
    directory = Path(directory).expanduser()
    try:
        if not directory.exists():
            raise MnistNotFoundError(f"MNIST directory {directory} does not exist")
        if not directory.is_dir():
            raise MnistNotFoundError(f"MNIST directory {directory} is not a directory")
        found, missing = {}, []
        for key, stem in FILES.items():
            for candidate in (directory / f"{stem}.gz", directory / stem):
                if candidate.exists() or candidate.is_symlink():
                    found[key] = candidate
                    break
            else:
                missing.append(f"{stem}.gz")
    except DataError:
        raise
    except OSError as e:
        raise _unreadable(directory, e, "directory") from None
    if missing:
        raise MnistNotFoundError(
            f"MNIST directory {directory} lacks {', '.join(missing)} "
            "(each may also be the raw, un-gzipped file of the same name without .gz)"
        )
    return found


def _read_split(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_images(images), read_labels(labels)
    if x.shape[0] != y.shape[0]:
        raise MnistFormatError(
            f"count mismatch: {images} has {x.shape[0]} images but {labels} has {y.shape[0]} labels"
        )
    if x.shape[0] == 0:
        raise MnistFormatError(f"{images}: holds 0 images")
    return x, y


def check_split(splits: Splits, files: dict[str, Path]) -> None:
    """Refuse an implausible split: a training set smaller than the test set (under the
    standard names that usually means the train and test files were swapped), or training
    and test sets that are the same examples. Raises MnistSplitError."""
    n_train, n_test = len(splits.y_train), len(splits.y_test)
    train = f"{files['train_images'].name} / {files['train_labels'].name}"
    test = f"{files['test_images'].name} / {files['test_labels'].name}"
    directory = files["train_images"].parent
    if n_train < n_test:
        raise MnistSplitError(
            f"MNIST directory {directory}: implausible split: the training files ({train}) "
            f"hold {n_train} examples, fewer than the {n_test} of the test files ({test}); "
            "are train and test swapped? (allow_unusual_split=True loads them as they are)"
        )
    if (
        n_train == n_test
        and np.array_equal(splits.y_train, splits.y_test)
        and np.array_equal(splits.x_train, splits.x_test)
    ):
        raise MnistSplitError(
            f"MNIST directory {directory}: implausible split: the training files ({train}) "
            f"and the test files ({test}) hold the same {n_train} examples "
            "(allow_unusual_split=True loads them as they are)"
        )


def load_idx(directory: Path, *, allow_unusual_split: bool = False) -> Splits:
    """The four standard MNIST files in `directory` (real ones: 60,000 train, 10,000 test).

    The split must be plausible (see `check_split`) unless `allow_unusual_split`.
    """
    files = find_files(directory)
    x_train, y_train = _read_split(files["train_images"], files["train_labels"])
    x_test, y_test = _read_split(files["test_images"], files["test_labels"])
    splits = Splits(x_train, y_train, x_test, y_test)
    if not allow_unusual_split:
        check_split(splits, files)
    return splits
