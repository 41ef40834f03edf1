"""bpjax.data.mnist5k: the embedded 5,000 digits load offline, shuffled and split 4,000 / 1,000."""

import socket

import numpy as np
import pytest
from test_data import MNIST5K, REAL_DIR, example_digest, needs_real

from bpjax.data import load_mnist


@pytest.fixture(scope="module")
def real():
    return load_mnist("idx", REAL_DIR, verbose=False)


def test_mnist5k_loads_offline_with_a_fixed_4000_1000_split(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("bpjax.data tried the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    a = load_mnist("mnist5k", verbose=False)
    b = load_mnist("mnist5k", validation=500, verbose=False)
    assert a.source == MNIST5K
    assert (len(a.y_train), len(a.y_test), len(a.y_val)) == (4_000, 1_000, 0)
    assert a.x_train.dtype == np.float32 and a.y_train.dtype == np.int32
    assert 0.0 == a.x_train.min() and a.x_train.max() == 1.0
    # The file is sorted by class: the fixed shuffle must spread every digit over both splits.
    assert np.bincount(a.y_train, minlength=10).min() > 300
    assert np.bincount(a.y_test, minlength=10).min() > 50
    assert np.bincount(np.concatenate([a.y_train, a.y_test])).tolist() == [500] * 10
    # Deterministic: the same order every load; validation comes off the end of train.
    assert np.array_equal(b.x_train, a.x_train[:3_500])
    assert np.array_equal(b.x_val, a.x_train[3_500:])
    assert np.array_equal(b.y_test, a.y_test)


@needs_real
def test_mnist5k_digits_are_the_first_500_of_each_class_of_real_mnist(real):
    five_k = load_mnist("mnist5k", verbose=False)
    firsts = np.concatenate([np.flatnonzero(real.y_train == d)[:500] for d in range(10)])
    x = np.concatenate([five_k.x_train, five_k.x_test])
    y = np.concatenate([five_k.y_train, five_k.y_test])
    assert example_digest(x, y) == example_digest(real.x_train[firsts], real.y_train[firsts])
