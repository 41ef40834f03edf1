"""The tfds source: offline preparation from the IDX files; reading with and without TensorFlow.

TFDS is prepared for real once per session (about 8 s plus TensorFlow's import on 2 cores);
everything else uses tfds.testing.mock_data. Nothing here may touch the network.
"""

import contextlib
import gzip
import importlib.util
import inspect
import json
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow_datasets as tfds
from test_data import HAS_REAL, REAL_DIR, example_digest, run_isolated, write_mnist_dir

from bpjax.data import (
    MnistFormatError,
    MnistNotFoundError,
    load_mnist,
    load_tfds,
    prepare_tfds,
    read_idx,
    write_idx,
)
from tests.helpers import made_once

HAS_TF = importlib.util.find_spec("tensorflow") is not None
NO_TF = "TensorFlow is not installed; preparing TFDS mnist needs it (pip install 'bpjax[tfds]')"
needs_tf = pytest.mark.skipif(not HAS_TF, reason=NO_TF)

# Makes TensorFlow look uninstalled to a fresh interpreter: find_spec says None, import fails.
WITHOUT_TENSORFLOW = """
import importlib.machinery, sys
class _NoTensorFlow(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] == "tensorflow":
            return None
        return super().find_spec(name, path, target)
sys.meta_path = [
    _NoTensorFlow if f is importlib.machinery.PathFinder else f for f in sys.meta_path
]
"""


@contextlib.contextmanager
def network_forbidden():
    """Fail if anything opens a socket or asks GCS (tfds's way to look for prepared data)."""
    from tensorflow_datasets.core.utils import gcs_utils

    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(repr(args)[:200])
        raise OSError("tests must not use the network")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket.socket, "connect", refuse)
        patch.setattr(socket, "create_connection", refuse)
        patch.setattr(gcs_utils, "exists", refuse)
        yield
    assert attempts == [], f"tfds tried the network: {attempts}"


@pytest.fixture(scope="session")
def tfds_copy(tmp_path_factory):
    """(tfds_dir, version dir, seconds): TFDS mnist prepared once per session (whichever
    worker asks first) from the real IDX files."""
    if not HAS_TF:
        pytest.skip(NO_TF)
    if not HAS_REAL:
        pytest.skip("real MNIST IDX files not found: set $BPJAX_DATA_DIR")

    def prepare(root):
        with network_forbidden():
            start = time.perf_counter()
            path = prepare_tfds(root, REAL_DIR)
            return [str(path), time.perf_counter() - start]

    root, (path, seconds) = made_once(tmp_path_factory, "tfds_copy", prepare)
    return root, Path(path), seconds


# -- real data ---------------------------------------------------------------------------


@pytest.mark.slow  # prepares TFDS from the real files
def test_prepare_writes_an_array_record_copy_and_nothing_else(tfds_copy):
    root, path, seconds = tfds_copy
    info = json.loads((path / "dataset_info.json").read_text())
    assert path.parent == root / "mnist"
    assert info["fileFormat"] == "array_record"
    lengths = {s["name"]: [int(n) for n in s["shardLengths"]] for s in info["splits"]}
    assert lengths == {"train": [60_000], "test": [10_000]}
    # The extraction went to a scratch dir, not into tfds_dir.
    assert sorted(p.name for p in root.iterdir()) == ["mnist"]
    print(f"prepared TFDS mnist in {seconds:.1f} s")


@pytest.mark.slow  # prepares TFDS from the real files
def test_preparing_again_reuses_the_copy(tfds_copy):
    root, path, _ = tfds_copy
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    with network_forbidden():
        assert prepare_tfds(root, REAL_DIR) == path
    assert {p.name: p.stat().st_mtime_ns for p in path.iterdir()} == before


@pytest.mark.slow  # prepares TFDS from the real files
def test_tfds_and_idx_give_the_same_examples_and_tfds_reads_without_tensorflow(tfds_copy, tmp_path):
    root, path, _ = tfds_copy
    script = (
        WITHOUT_TENSORFLOW
        + inspect.getsource(example_digest)
        + f"""
import hashlib, importlib.util, json, sys
import numpy as np
import bpjax.data
ds = bpjax.data.load_mnist(verbose=False)  # auto: no IDX dir here, so the TFDS copy
try:
    bpjax.data.prepare_tfds({str(tmp_path / "fresh")!r}, {str(REAL_DIR)!r})
    prepare_error = None
except bpjax.data.MissingDependencyError as e:
    prepare_error = str(e)
print(json.dumps(dict(
    package=bpjax.data.__file__,
    source=ds.source,
    counts=[len(ds.y_train), len(ds.y_test)],
    train=example_digest(ds.x_train, ds.y_train),
    test=example_digest(ds.x_test, ds.y_test),
    tf_findable=importlib.util.find_spec("tensorflow") is not None,
    tf_imported="tensorflow" in sys.modules,
    prepare_error=prepare_error,
)))
"""
    )
    result, _ = run_isolated(tmp_path, script, env={"TFDS_DATA_DIR": str(root)})
    assert not result["tf_findable"] and not result["tf_imported"]
    assert result["source"] == f"tfds:{path} (array_record)"
    assert result["counts"] == [60_000, 10_000]
    idx = load_mnist("idx", REAL_DIR, verbose=False)
    assert result["train"] == example_digest(idx.x_train, idx.y_train)
    assert result["test"] == example_digest(idx.x_test, idx.y_test)
    assert "needs TensorFlow" in result["prepare_error"]
    assert "pip install 'bpjax[tfds]'" in result["prepare_error"]


# -- mock_data: the reading code on fake examples ----------------------------------------


class FakeArrayRecordSource(list):
    """What builder.as_data_source returns, enough for bpjax: len, __getitems__."""

    def __getitems__(self, keys):
        return [self[k] for k in keys]


@needs_tf
def test_array_record_copies_are_read_through_data_source(tmp_path):
    sizes = {"train": 5, "test": 3}

    def as_data_source(builder, split, **kwargs):
        return FakeArrayRecordSource(
            {"image": np.full((28, 28, 1), 10 * i + 1, np.uint8), "label": np.int64(9 - i)}
            for i in range(sizes[split])
        )

    with network_forbidden(), tfds.testing.mock_data(as_data_source_fn=as_data_source):
        ds = load_mnist(
            "tfds", write_mnist_dir(tmp_path / "idx"), 1, tfds_dir=tmp_path / "tfds", verbose=False
        )
    assert ds.source.startswith("tfds:") and ds.source.endswith("(array_record)")
    assert ds.x_train.shape == (4, 784) and ds.x_train.dtype == np.float32
    assert np.array_equal(ds.x_train[:, 0] * 255, [1, 11, 21, 31])
    assert ds.y_train.tolist() == [9, 8, 7, 6] and ds.y_val.tolist() == [5]
    assert ds.y_test.tolist() == [9, 8, 7] and ds.y_test.dtype == np.int32


@needs_tf
@pytest.mark.slow  # imports TensorFlow
def test_tfrecord_copies_are_read_through_as_dataset(tmp_path):
    with network_forbidden(), tfds.testing.mock_data(num_examples=13):
        splits, description = load_tfds(
            tmp_path / "tfds", write_mnist_dir(tmp_path / "idx"), file_format="tfrecord"
        )
    assert description.endswith("(tfrecord)")
    for x, y in ((splits.x_train, splits.y_train), (splits.x_test, splits.y_test)):
        assert x.shape == (13, 784) and x.dtype == np.uint8
        assert y.shape == (13,) and 0 <= y.min() and y.max() <= 9
    assert splits.x_train.std() > 0, "mock_data's random images, not zeros"


@needs_tf
def test_a_wrong_sized_image_from_tfds_is_a_clear_error(tmp_path):
    def as_data_source(builder, split, **kwargs):
        return FakeArrayRecordSource([{"image": np.zeros((28, 27, 1), np.uint8), "label": 1}])

    with network_forbidden(), tfds.testing.mock_data(as_data_source_fn=as_data_source):
        with pytest.raises(MnistFormatError, match=r"images of shape \(1, 28, 27, 1\)"):
            load_tfds(tmp_path / "tfds", write_mnist_dir(tmp_path / "idx"))


# -- preparation errors ------------------------------------------------------------------


def test_no_copy_and_nothing_to_prepare_from_is_a_clear_error(tmp_path):
    with network_forbidden(), pytest.raises(MnistNotFoundError) as caught:
        load_tfds(tmp_path / "empty")
    message = str(caught.value)
    assert f"no prepared TFDS copy of mnist in {tmp_path / 'empty'}" in message
    assert "data_dir=" in message and "download=True" in message


@needs_tf
def test_preparing_needs_the_gzipped_files(tmp_path):
    idx = write_mnist_dir(tmp_path / "idx", gz=False)
    with network_forbidden(), pytest.raises(MnistNotFoundError, match="gzipped files only"):
        prepare_tfds(tmp_path / "tfds", idx)


@needs_tf
def test_preparing_from_a_bad_file_reports_the_file(tmp_path):
    idx = write_mnist_dir(tmp_path / "idx")
    bad = idx / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(gzip.compress(b"\0\0\x08\x01\0\0\0\x04" + bytes([1, 2, 3, 12])))
    with network_forbidden(), pytest.raises(MnistFormatError, match=f"{bad}: label 12 at"):
        prepare_tfds(tmp_path / "tfds", idx)


@needs_tf
def test_valid_idx_files_that_are_not_mnist_fail_tfds_checksums_clearly(tmp_path):
    idx = write_mnist_dir(tmp_path / "idx")
    with network_forbidden(), pytest.raises(MnistFormatError) as caught:
        prepare_tfds(tmp_path / "tfds", idx)
    assert f"MNIST directory {idx}" in str(caught.value)
    assert "not the original MNIST bytes TFDS registers (checksum mismatch)" in str(caught.value)
    assert not (tmp_path / "tfds" / "mnist").exists() or not any(
        (tmp_path / "tfds" / "mnist").glob("[0-9]*/dataset_info.json")
    )


# The first digits of each real IDX file: what the faked download serves (see below).
DOWNLOAD_SUBSET = {"train": 1_000, "t10k": 500}


@needs_tf
@pytest.mark.slow
@pytest.mark.skipif(not HAS_REAL, reason="real MNIST IDX files not found: set $BPJAX_DATA_DIR")
def test_download_true_prepares_from_what_tfds_downloads(tmp_path, monkeypatch):
    """load_mnist("tfds", download=True) with no IDX directory lets tfds download the four
    files; the download is replaced by the real files' first digits (tfds's mnist builder is
    told the smaller counts), so nothing touches the network and preparing takes seconds. The
    full preparation is checked against the IDX files by the tfds_copy tests above."""
    from tensorflow_datasets.core.download.download_manager import DownloadManager
    from tensorflow_datasets.image_classification import mnist as tfds_mnist

    extracted = tmp_path / "extracted"
    extracted.mkdir()
    for gz in REAL_DIR.glob("*-ubyte.gz"):
        n = DOWNLOAD_SUBSET[gz.name.split("-", 1)[0]]
        write_idx(extracted / gz.name.removesuffix(".gz"), read_idx(gz)[:n])  # raw, as extracted
    requested = []

    def fake_download_and_extract(self, urls):
        requested.extend(urls.values())
        return {
            k: extracted / url.rsplit("/", 1)[-1].removesuffix(".gz") for k, url in urls.items()
        }

    monkeypatch.setattr(DownloadManager, "download_and_extract", fake_download_and_extract)
    monkeypatch.setattr(tfds_mnist, "_TRAIN_EXAMPLES", DOWNLOAD_SUBSET["train"])
    monkeypatch.setattr(tfds_mnist, "_TEST_EXAMPLES", DOWNLOAD_SUBSET["t10k"])
    monkeypatch.delenv("BPJAX_DATA_DIR", raising=False)
    with network_forbidden():
        ds = load_mnist("tfds", tfds_dir=tmp_path / "tfds", download=True, verbose=False)
    assert sorted(url.rsplit("/", 1)[-1] for url in requested) == sorted(
        p.name for p in REAL_DIR.glob("*-ubyte.gz")
    )
    n_train, n_test = DOWNLOAD_SUBSET["train"], DOWNLOAD_SUBSET["t10k"]
    assert ds.x_train.shape == (n_train, 784) and ds.x_test.shape == (n_test, 784)
    idx = load_mnist("idx", REAL_DIR, verbose=False)
    assert example_digest(ds.x_test, ds.y_test) == example_digest(
        idx.x_test[:n_test], idx.y_test[:n_test]
    )
    assert example_digest(ds.x_train, ds.y_train) == example_digest(
        idx.x_train[:n_train], idx.y_train[:n_train]
    )
