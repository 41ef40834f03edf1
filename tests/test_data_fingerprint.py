"""bpjax.data.fingerprint: the data a run used, by content, whatever the path's spelling."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_data import REAL_DIR, needs_real, write_idx, write_mnist_dir

from bpjax.data import Dataset, as_jax, fingerprint, fingerprint_changes, load_mnist
from bpjax.data.fingerprint import SPLITS

LABELS = "train-labels-idx1-ubyte.gz"


def load(directory, **kw):
    return load_mnist("idx", directory, validation=2, verbose=False, **kw)


@pytest.fixture
def mnist_dir(tmp_path):
    return write_mnist_dir(tmp_path / "data" / "mnist")


@pytest.mark.parametrize("spelling", ["trailing slash", "symlink", "relative", "copy"])
def test_the_same_content_has_the_same_fingerprint_however_it_is_reached(
    tmp_path, monkeypatch, mnist_dir, spelling
):
    (tmp_path / "link").symlink_to(mnist_dir)
    write_mnist_dir(tmp_path / "copy")  # the same bytes in another directory
    monkeypatch.chdir(tmp_path)
    other = {
        "trailing slash": f"{mnist_dir}/",
        "symlink": "link",
        "relative": "data/mnist",
        "copy": "copy",
    }[spelling]
    a, b = fingerprint(load(mnist_dir)), fingerprint(load(other))
    assert a == b and fingerprint_changes(a, b) == []
    assert json.loads(json.dumps(a)) == a  # JSON-able, and a stored copy compares equal


def test_one_changed_training_label_is_named(mnist_dir):
    before = fingerprint(load(mnist_dir))
    labels = np.arange(6, dtype=np.uint8) % 10
    labels[1] = 7
    write_idx(mnist_dir / LABELS, labels)
    after = fingerprint(load(mnist_dir))
    assert before != after
    assert fingerprint_changes(before, after) == ["the training labels differ"]


def test_shuffled_labels_are_noticed(mnist_dir):
    before = fingerprint(load(mnist_dir))
    write_idx(mnist_dir / LABELS, (np.arange(6, dtype=np.uint8) % 10)[[1, 0, 2, 3, 4, 5]])
    assert fingerprint_changes(before, fingerprint(load(mnist_dir))) == [
        "the training labels differ"
    ]


def test_a_different_validation_split_changes_train_and_validation(mnist_dir):
    two, three = load(mnist_dir), load_mnist("idx", mnist_dir, validation=3, verbose=False)
    assert fingerprint_changes(fingerprint(two), fingerprint(three)) == [
        "the training images differ (4 examples recorded, 3 now)",
        "the training labels differ (4 examples recorded, 3 now)",
        "the validation images differ (2 examples recorded, 3 now)",
        "the validation labels differ (2 examples recorded, 3 now)",
    ]


def test_device_arrays_fingerprint_like_host_arrays(mnist_dir):
    ds = load(mnist_dir)
    assert fingerprint(as_jax(ds)) == fingerprint(ds)


def test_the_source_string_is_not_part_of_it(mnist_dir):
    ds = load(mnist_dir)
    assert fingerprint(ds._replace(source="elsewhere")) == fingerprint(ds)


def test_a_missing_entry_is_named():
    fp = fingerprint(tiny_dataset())
    partial = {k: v for k, v in fp.items() if k != "y_test"}
    assert fingerprint_changes(partial, fp) == [
        "the test labels are missing from the recorded fingerprint"
    ]


def tiny_dataset(seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    arrays = []
    for n in (5, 2, 3):
        arrays += [rng.random((n, 784), dtype=np.float32), rng.integers(0, 10, n, dtype=np.int32)]
    return Dataset(*arrays, source="test")


@settings(max_examples=30, deadline=None)
@given(name=st.sampled_from(list(SPLITS)), index=st.integers(0, 10_000), seed=st.integers(0, 3))
def test_changing_any_one_value_names_exactly_that_array(name, index, seed):
    ds = tiny_dataset(seed)
    array = getattr(ds, name).copy()
    flat = array.reshape(-1)
    i = index % flat.size
    flat[i] = flat[i] + 1 if array.dtype.kind == "i" else np.nextafter(flat[i], np.float32(2))
    changed = ds._replace(**{name: array})
    assert fingerprint_changes(fingerprint(ds), fingerprint(changed)) == [f"{SPLITS[name]} differ"]


@needs_real
def test_full_mnist_fingerprint_is_stable_and_split_sensitive():
    ds = load_mnist("idx", REAL_DIR, validation=10_000, verbose=False)
    fp = fingerprint(ds)
    assert fp == fingerprint(ds)
    assert fp["x_train"]["shape"] == [50_000, 784] and fp["y_test"]["dtype"] == "int32"
    assert len({entry["sha256"] for entry in fp.values()}) == 6
