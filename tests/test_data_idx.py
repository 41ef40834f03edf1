"""The strict IDX reader: a corpus of bad files, each with its own clear error."""

import errno
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_data import REAL_DIR, REPO, needs_real, write_mnist_dir

from bpjax.data import (
    DataError,
    DataReadError,
    MnistFormatError,
    MnistNotFoundError,
    MnistSplitError,
    load_mnist,
    read_idx,
    write_idx,
)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"


def header(code, *shape):
    return struct.pack(f">BBBB{len(shape)}I", 0, 0, code, len(shape), *shape)


def images_bytes(n=6, rows=28, cols=28):
    return header(0x08, n, rows, cols) + bytes(n * rows * cols)


def labels_bytes(values):
    return header(0x08, len(values)) + bytes(values)


# (name, file to replace in a valid tiny dir, its new gzipped content, error, message parts)
# fmt: off
CORPUS = [
    ("truncated", TRAIN_IMAGES, images_bytes()[:-100], MnistFormatError,
     ["truncated: the header says 4704 items of shape (6, 28, 28)", "4604 bytes of data"]),
    ("trailing bytes", TRAIN_IMAGES, images_bytes() + b"junk", MnistFormatError,
     ["4 trailing bytes"]),
    ("wrong magic", TRAIN_IMAGES, b"\x1f\x9d" + images_bytes()[2:], MnistFormatError,
     ["bad magic number 0x1f9d0803", "two zero bytes"]),
    ("unknown dtype code", TRAIN_LABELS, b"\0\0\x07\x01" + labels_bytes([1] * 6)[4:],
     MnistFormatError, ["unknown IDX dtype code 0x07"]),
    ("zero dimensions", TRAIN_LABELS, b"\0\0\x08\0", MnistFormatError, ["0 dimensions"]),
    ("header too short", TRAIN_LABELS, b"\0\0", MnistFormatError,
     ["2 bytes is too short for an IDX header"]),
    ("truncated header", TRAIN_IMAGES, header(0x08, 6, 28, 28)[:10], MnistFormatError,
     ["truncated header: 3 dimensions need 16 header bytes, the file has 10"]),
    ("images with 2 dims", TRAIN_IMAGES, header(0x08, 6, 784) + bytes(6 * 784),
     MnistFormatError, ["wrong dimensions", "shape (N, 28, 28)", "says (6, 784)"]),
    ("images not 28x28", TRAIN_IMAGES, images_bytes(rows=27), MnistFormatError,
     ["wrong dimensions", "says (6, 27, 28)"]),
    ("labels with 3 dims", TRAIN_LABELS, images_bytes(), MnistFormatError,
     ["wrong dimensions: labels must have shape (N,)"]),
    ("images not bytes", TRAIN_IMAGES, header(0x0C, 6, 28, 28) + bytes(4 * 6 * 784),
     MnistFormatError, ["images must be unsigned bytes (IDX dtype code 0x08), got int32"]),
    ("count mismatch", TRAIN_LABELS, labels_bytes([1] * 5), MnistFormatError,
     ["count mismatch", "has 6 images but", "has 5 labels"]),
    ("label 10", TRAIN_LABELS, labels_bytes([0, 1, 2, 10, 4, 5]), MnistFormatError,
     ["label 10 at index 3", "MNIST labels are 0..9"]),
    ("no images", TRAIN_IMAGES, images_bytes(n=0), MnistFormatError, ["holds 0 images"]),
]
# fmt: on


@pytest.mark.parametrize(
    ("name", "target", "content", "error", "parts"), CORPUS, ids=[c[0] for c in CORPUS]
)
def test_each_bad_file_gets_a_clear_error_naming_it(tmp_path, name, target, content, error, parts):
    directory = write_mnist_dir(tmp_path)
    if name == "no images":
        # Keep the counts consistent so it is the emptiness that fails.
        (directory / TRAIN_LABELS).write_bytes(gzip.compress(labels_bytes([])))
    (directory / target).write_bytes(gzip.compress(content))
    with pytest.raises(error) as caught:
        load_mnist("idx", directory, verbose=False)
    message = str(caught.value)
    assert str(directory / target) in message
    for part in parts:
        assert part in message


def test_a_truncated_gzip_stream(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_IMAGES
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(MnistFormatError, match=f"{path}: corrupt or truncated gzip data"):
        load_mnist("idx", directory, verbose=False)


def test_corrupt_gzip_data(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_LABELS
    data = bytearray(path.read_bytes())
    data[12:20] = b"\xff" * 8
    path.write_bytes(bytes(data))
    with pytest.raises(MnistFormatError, match=f"{path}: corrupt or truncated gzip data"):
        load_mnist("idx", directory, verbose=False)


def test_an_empty_file(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_LABELS
    path.write_bytes(b"")
    with pytest.raises(MnistFormatError, match=f"{path}: file is empty"):
        load_mnist("idx", directory, verbose=False)


def test_gzip_of_nothing(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_LABELS
    path.write_bytes(gzip.compress(b""))
    with pytest.raises(MnistFormatError, match=f"{path}: gzip data decompresses to 0 bytes"):
        load_mnist("idx", directory, verbose=False)


def test_a_missing_file(tmp_path):
    directory = write_mnist_dir(tmp_path)
    (directory / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(MnistNotFoundError) as caught:
        load_mnist("idx", directory, verbose=False)
    message = str(caught.value)
    assert f"MNIST directory {directory} lacks t10k-labels-idx1-ubyte.gz" in message
    assert "train-images" not in message


def test_a_directory_without_the_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not MNIST")
    with pytest.raises(MnistNotFoundError) as caught:
        load_mnist("idx", tmp_path, verbose=False)
    message = str(caught.value)
    assert f"MNIST directory {tmp_path} lacks" in message
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        assert f"{stem}-ubyte.gz" in message


def test_a_missing_directory_and_a_file_given_as_directory(tmp_path):
    with pytest.raises(MnistNotFoundError, match=f"MNIST directory {tmp_path / 'x'} does not"):
        load_mnist("idx", tmp_path / "x", verbose=False)
    (tmp_path / "file").write_text("")
    with pytest.raises(MnistNotFoundError, match="is not a directory"):
        load_mnist("idx", tmp_path / "file", verbose=False)


def test_read_idx_missing_file_and_directory(tmp_path):
    with pytest.raises(MnistNotFoundError, match=f"{tmp_path / 'nope'}: no such file"):
        read_idx(tmp_path / "nope")
    with pytest.raises(DataReadError, match="is a directory, expected an IDX file"):
        read_idx(tmp_path)


def test_errors_are_the_builtin_kinds_callers_already_catch():
    assert issubclass(MnistFormatError, ValueError)
    assert issubclass(MnistSplitError, MnistFormatError)
    assert issubclass(MnistNotFoundError, FileNotFoundError)
    assert issubclass(DataReadError, OSError)
    for error in (MnistFormatError, MnistSplitError, MnistNotFoundError, DataReadError):
        assert issubclass(error, DataError)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("name", ["a.idx", "a.idx.gz"])
def test_read_idx_round_trips_every_idx_dtype(tmp_path, dtype, name):
    array = (np.arange(24).reshape(2, 3, 4) - 7).astype(dtype)
    back = read_idx(write_idx(tmp_path / name, array))
    assert back.dtype == array.dtype and back.shape == (2, 3, 4)
    assert np.array_equal(back, array)


def test_gzip_is_detected_by_content_not_by_name(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_LABELS
    path.write_bytes(gzip.decompress(path.read_bytes()))  # raw bytes under a .gz name
    ds = load_mnist("idx", directory, verbose=False)
    assert ds.y_train.tolist() == [0, 1, 2, 3, 4, 5]


def test_write_idx_rejects_what_idx_cannot_store(tmp_path):
    with pytest.raises(ValueError, match="IDX cannot store dtype complex64"):
        write_idx(tmp_path / "a", np.zeros(3, np.complex64))


# -- hostile files: every problem is one line of a typed DataError naming the file ------------


def test_every_corpus_error_is_one_line_of_a_data_error(tmp_path):
    for name, target, content, _, _ in CORPUS:
        directory = write_mnist_dir(tmp_path / name.replace(" ", "-"))
        (directory / target).write_bytes(gzip.compress(content))
        if name == "no images":
            (directory / TRAIN_LABELS).write_bytes(gzip.compress(labels_bytes([])))
        with pytest.raises(DataError) as caught:
            load_mnist("idx", directory, verbose=False)
        assert "\n" not in str(caught.value), name


def test_a_directory_where_a_file_should_be(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_LABELS
    path.unlink()
    path.mkdir()
    with pytest.raises(DataReadError, match=f"^{path}: is a directory, expected an IDX file$"):
        load_mnist("idx", directory, verbose=False)


def test_a_broken_symlink(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_IMAGES
    path.unlink()
    path.symlink_to(tmp_path / "gone.gz")
    with pytest.raises(DataReadError, match=f"^{path}: broken symbolic link"):
        load_mnist("idx", directory, verbose=False)


def test_a_fifo_is_refused_without_blocking(tmp_path):
    directory = write_mnist_dir(tmp_path)
    path = directory / TRAIN_IMAGES
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(DataReadError, match=f"^{path}: not a regular file"):
        load_mnist("idx", directory, verbose=False)


def test_an_io_error_while_reading(tmp_path, monkeypatch):
    directory = write_mnist_dir(tmp_path)
    real = Path.read_bytes

    def failing(self):
        if self.name == TRAIN_LABELS:
            raise OSError(errno.EIO, os.strerror(errno.EIO), str(self))
        return real(self)

    monkeypatch.setattr(Path, "read_bytes", failing)
    with pytest.raises(DataReadError) as caught:
        load_mnist("idx", directory, verbose=False)
    assert str(caught.value) == (
        f"{directory / TRAIN_LABELS}: cannot read the file: Input/output error (EIO)"
    )
    assert isinstance(caught.value, OSError)


UNPRIVILEGED = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
NO_SETPRIV = "setpriv is unavailable: as root, chmod 000 cannot make a file unreadable"


@pytest.mark.skipif(shutil.which("setpriv") is None, reason=NO_SETPRIV)
@pytest.mark.parametrize("what", ["file", "directory"])
def test_an_unreadable_file_or_directory(tmp_path, what):
    """Run the load in a subprocess without the capabilities that let root read anything."""
    directory = write_mnist_dir(tmp_path / "mnist")
    locked = directory / TRAIN_LABELS if what == "file" else directory
    script = (
        "import json, sys\n"
        "from bpjax.data import load_mnist, DataError\n"
        "try:\n"
        f"    load_mnist('idx', {str(directory)!r}, verbose=False)\n"
        "    print(json.dumps(None))\n"
        "except DataError as e:\n"
        "    print(json.dumps([type(e).__name__, str(e), isinstance(e, OSError)]))\n"
    )
    locked.chmod(0)
    try:
        done = subprocess.run(
            [*UNPRIVILEGED, sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"},
        )
    finally:
        locked.chmod(0o755)
    if "setpriv" in done.stderr and done.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr[-3000:]
    kind, message, is_os_error = json.loads(done.stdout.strip().splitlines()[-1])
    assert kind == "DataReadError" and is_os_error
    assert message == f"{locked}: cannot read the {what}: Permission denied (EACCES)"


# -- implausible splits ------------------------------------------------------------------------


def swap_train_and_test(directory: Path) -> None:
    for kind in ("images-idx3", "labels-idx1"):
        train, test = (directory / f"{p}-{kind}-ubyte.gz" for p in ("train", "t10k"))
        tmp = directory / "swap"
        train.rename(tmp)
        test.rename(train)
        tmp.rename(test)


def test_swapped_train_and_test_files_are_refused_naming_them(tmp_path):
    directory = write_mnist_dir(tmp_path, n_train=6, n_test=4)
    swap_train_and_test(directory)
    with pytest.raises(MnistSplitError) as caught:
        load_mnist("idx", directory, verbose=False)
    message = str(caught.value)
    assert "\n" not in message and f"MNIST directory {directory}: implausible split" in message
    assert "train-images-idx3-ubyte.gz / train-labels-idx1-ubyte.gz) hold 4 examples" in message
    assert "fewer than the 6 of the test files (t10k-images" in message
    assert "allow_unusual_split=True" in message
    ds = load_mnist("idx", directory, allow_unusual_split=True, verbose=False)
    assert (len(ds.y_train), len(ds.y_test)) == (4, 6)


def test_identical_train_and_test_files_are_refused(tmp_path):
    directory = write_mnist_dir(tmp_path, n_train=5, n_test=5)
    with pytest.raises(MnistSplitError, match="hold the same 5 examples"):
        load_mnist("idx", directory, verbose=False)
    assert len(load_mnist("idx", directory, allow_unusual_split=True, verbose=False).y_test) == 5


def test_equal_sized_but_different_splits_load(tmp_path):
    directory = write_mnist_dir(tmp_path, n_train=5, n_test=5)
    write_idx(directory / "t10k-labels-idx1-ubyte.gz", np.array([9, 8, 7, 6, 5], np.uint8))
    assert len(load_mnist("idx", directory, verbose=False).y_train) == 5


@needs_real
def test_real_mnist_with_train_and_test_swapped_is_refused(tmp_path):
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        swapped = stem.replace("train", "X").replace("t10k", "train").replace("X", "t10k")
        (tmp_path / f"{swapped}-ubyte.gz").symlink_to(REAL_DIR / f"{stem}-ubyte.gz")
    with pytest.raises(MnistSplitError, match="hold 10000 examples, fewer than the 60000"):
        load_mnist("idx", tmp_path, verbose=False)
