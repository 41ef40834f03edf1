"""bpjax.data.load_mnist: real MNIST from IDX files, the embedded 5k default, "auto", splits.

Helpers here (write_mnist_dir, run_isolated, example_digest) are also used by the other
tests/test_data_*.py modules.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bpjax.data import (
    MnistNotFoundError,
    default_mnist_dir,
    load_mnist,
    write_idx,
)

REPO = Path(__file__).resolve().parents[1]
REAL_DIR = default_mnist_dir()
HAS_REAL = REAL_DIR is not None and (REAL_DIR / "train-images-idx3-ubyte.gz").is_file()
needs_real = pytest.mark.skipif(
    not HAS_REAL, reason="real MNIST IDX files not found: set $BPJAX_DATA_DIR"
)

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
MNIST5K = "mnist5k (embedded, 5,000 real digits: 4,000 train / 1,000 test)"


def write_mnist_dir(directory, n_train=6, n_test=4, gz=True):
    """A tiny valid MNIST directory: image i is filled with pixel value i, label i % 10."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None], (n, 28, 28))
        write_idx(directory / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte{ext}", np.arange(n, dtype=np.uint8) % 10)
    return directory


def example_digest(x, y):
    """Order-free fingerprint of a split: sha256 over the sorted per-example hashes."""
    rows = np.concatenate([np.round(x * 255).astype(np.uint8), y.astype(np.uint8)[:, None]], 1)
    return hashlib.sha256(
        b"".join(sorted(hashlib.sha1(r.tobytes()).digest() for r in rows))
    ).hexdigest()


def run_isolated(tmp_path, script, env=None):
    """Run `script` in a fresh Python on a copy of the package with no data beside it.

    $BPJAX_DATA_DIR is unset and $TFDS_DATA_DIR is an
    empty directory unless `env` says otherwise. The script's last stdout line is JSON.
    """
    checkout = tmp_path / "checkout"
    shutil.copytree(
        REPO / "bpjax", checkout / "bpjax", ignore=shutil.ignore_patterns("__pycache__")
    )
    full_env = {k: v for k, v in os.environ.items() if k != "BPJAX_DATA_DIR"}
    full_env.update(
        PYTHONPATH=str(checkout), TFDS_DATA_DIR=str(tmp_path / "no-tfds"), JAX_PLATFORMS="cpu"
    )
    full_env.update(env or {})
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["package"].startswith(str(checkout)), "the subprocess used another bpjax"
    return result, done.stderr


# -- real MNIST --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real():
    return load_mnist("idx", REAL_DIR, verbose=False)


@needs_real
def test_real_mnist_sizes_and_known_label_counts(real):
    assert real.x_train.shape == (60_000, 784) and real.y_train.shape == (60_000,)
    assert real.x_test.shape == (10_000, 784) and real.y_test.shape == (10_000,)
    assert np.bincount(real.y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(real.y_test, minlength=10).tolist() == TEST_COUNTS
    assert real.x_val.shape == (0, 784) and real.y_val.shape == (0,)
    assert real.source == f"idx:{REAL_DIR.resolve()}"


@needs_real
def test_real_mnist_dtypes_and_pixel_range(real):
    for x in (real.x_train, real.x_val, real.x_test):
        assert x.dtype == np.float32
    for y in (real.y_train, real.y_val, real.y_test):
        assert y.dtype == np.int32
    for x in (real.x_train, real.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
    # 8-bit pixels scaled by 1/255: every value is k/255 for an integer k.
    k = real.x_test * 255
    assert np.array_equal(k, np.round(k))


@needs_real
def test_nielsen_validation_split_is_the_last_10k(real):
    split = load_mnist("idx", REAL_DIR, validation=10_000, verbose=False)
    assert (len(split.y_train), len(split.y_val), len(split.y_test)) == (50_000, 10_000, 10_000)
    assert np.array_equal(split.x_train, real.x_train[:50_000])
    assert np.array_equal(split.x_val, real.x_train[50_000:])
    assert np.array_equal(split.y_val, real.y_train[50_000:])
    assert np.array_equal(split.x_test, real.x_test)


# -- the embedded default ----------------------------------------------------------------


def test_without_any_data_auto_falls_back_to_mnist5k_and_never_imports_tf(tmp_path):
    script = """
import json, sys
import bpjax.data
TF = ("tensorflow", "tensorflow_datasets")
imported = sorted(m for m in sys.modules if m.split(".")[0] in TF)
ds = bpjax.data.load_mnist()
after = sorted(m for m in sys.modules if m.split(".")[0] in TF)
try:
    bpjax.data.load_mnist("idx")
    idx_error = None
except bpjax.data.MnistNotFoundError as e:
    idx_error = str(e)
print(json.dumps(dict(package=bpjax.data.__file__, source=ds.source, n=len(ds.y_train),
                      dir=str(bpjax.data.default_mnist_dir()), on_import=imported, on_load=after,
                      idx_error=idx_error)))
"""
    result, stderr = run_isolated(tmp_path, script)
    assert result["on_import"] == [], "importing bpjax.data must not import TF or tfds"
    assert result["on_load"] == [], "auto must find no TFDS copy without importing tfds"
    assert result["dir"] == "None"
    assert result["source"] == MNIST5K and result["n"] == 4_000
    lines = [line for line in stderr.splitlines() if line.startswith("bpjax.data:")]
    assert len(lines) == 1
    assert "mnist5k" in lines[0] and "for full MNIST set BPJAX_DATA_DIR" in lines[0]
    # Asked for explicitly, the IDX source fails clearly instead of falling back.
    assert "source='idx' needs a directory of MNIST IDX files" in result["idx_error"]


# -- "auto" and the data directory -------------------------------------------------------


def test_auto_prefers_an_explicit_data_dir_over_the_env_var(tmp_path, monkeypatch):
    mine = write_mnist_dir(tmp_path / "mine", n_train=7)
    monkeypatch.setenv("BPJAX_DATA_DIR", str(write_mnist_dir(tmp_path / "env", n_train=9)))
    ds = load_mnist(data_dir=mine, verbose=False)
    assert ds.source == f"idx:{mine.resolve()}" and len(ds.y_train) == 7


def test_auto_uses_the_env_var(tmp_path, monkeypatch):
    env_dir = write_mnist_dir(tmp_path / "env", n_train=9)
    monkeypatch.setenv("BPJAX_DATA_DIR", str(env_dir))
    assert default_mnist_dir() == env_dir
    ds = load_mnist(verbose=False)
    assert ds.source == f"idx:{env_dir.resolve()}" and len(ds.y_train) == 9


def test_an_env_var_naming_no_data_is_an_error_not_a_silent_fallback(tmp_path, monkeypatch):
    missing = tmp_path / "typo"
    monkeypatch.setenv("BPJAX_DATA_DIR", str(missing))
    assert default_mnist_dir() == missing
    with pytest.raises(MnistNotFoundError, match=f"MNIST directory {missing} does not exist"):
        load_mnist(verbose=False)


def test_the_library_never_looks_for_data_beside_its_checkout(tmp_path):
    # A valid MNIST directory at ../shared/data/mnist beside the package copy is ignored.
    write_mnist_dir(tmp_path / "shared" / "data" / "mnist", n_train=7)
    script = """
import json
import bpjax.data
ds = bpjax.data.load_mnist(verbose=False)
print(json.dumps(dict(package=bpjax.data.__file__, source=ds.source,
                      dir=str(bpjax.data.default_mnist_dir()))))
"""
    result, _ = run_isolated(tmp_path, script)
    assert result["dir"] == "None" and result["source"] == MNIST5K


@pytest.mark.parametrize("spelling", ["trailing slash", "symlink", "relative", "dot-dot"])
def test_the_source_names_a_directory_the_same_however_it_is_spelled(
    tmp_path, monkeypatch, spelling
):
    directory = write_mnist_dir(tmp_path / "data" / "mnist")
    (tmp_path / "link").symlink_to(directory)
    monkeypatch.chdir(tmp_path)
    given = {
        "trailing slash": f"{directory}/",
        "symlink": str(tmp_path / "link"),
        "relative": "data/mnist",
        "dot-dot": f"{directory}/../mnist",
    }[spelling]
    ds = load_mnist("idx", given, verbose=False)
    assert ds.source == f"idx:{directory.resolve()}"
    assert not ds.source.endswith("/")


def test_verbose_prints_one_line_naming_the_source(tmp_path, capsys):
    directory = write_mnist_dir(tmp_path)
    load_mnist("idx", directory, validation=2)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"bpjax.data: MNIST from idx:{directory.resolve()}: 4 train / 2 validation / 4 test"
    ]
    load_mnist("idx", directory, verbose=False)
    assert capsys.readouterr() == ("", "")


# -- reading ---------------------------------------------------------------------------


def test_raw_and_gzipped_files_load_the_same(tmp_path):
    gz = load_mnist("idx", write_mnist_dir(tmp_path / "gz"), verbose=False)
    raw = load_mnist("idx", write_mnist_dir(tmp_path / "raw", gz=False), verbose=False)
    for a, b in zip(gz[:-1], raw[:-1], strict=True):
        assert np.array_equal(a, b)


def test_an_unknown_source_is_rejected():
    with pytest.raises(ValueError, match=r"source='mnsit': expected one of 'auto', 'idx'"):
        load_mnist("mnsit", verbose=False)
