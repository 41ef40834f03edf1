"""bpjax.data.dataset: the Dataset value, pixel scaling, the validation split, as_jax."""

import jax
import numpy as np
import pytest
from test_data import write_mnist_dir

from bpjax.data import Dataset, as_jax, load_mnist


def test_dataset_scales_pixels_keeps_order_and_carves_the_last_examples(tmp_path):
    ds = load_mnist("idx", write_mnist_dir(tmp_path, n_train=6, n_test=4), 2, verbose=False)
    assert isinstance(ds, Dataset)
    assert Dataset._fields == ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test", "source")
    # Image i is filled with pixel value i (see write_mnist_dir).
    assert np.array_equal(ds.x_train[:, 0], np.arange(4, dtype=np.float32) / 255)
    assert np.array_equal(ds.x_val[:, 0], np.array([4, 5], np.float32) / 255)
    assert np.array_equal(ds.y_val, [4, 5]) and np.array_equal(ds.y_test, [0, 1, 2, 3])
    assert ds.x_val.shape == (2, 784) and ds.x_val.dtype == np.float32


def test_as_jax_moves_the_arrays_and_keeps_the_source(tmp_path):
    ds = load_mnist("idx", write_mnist_dir(tmp_path), 2, verbose=False)
    on_device = as_jax(ds)
    assert on_device.source == ds.source
    for a, b in zip(on_device[:-1], ds[:-1], strict=True):
        assert isinstance(a, jax.Array) and a.dtype == b.dtype and a.shape == b.shape
        assert np.array_equal(np.asarray(a), b)


@pytest.mark.parametrize(
    ("validation", "error", "message"),
    [
        (-1, ValueError, r"validation=-1 must be in \[0, 6\)"),
        (6, ValueError, r"validation=6 must be in \[0, 6\).*at least one for training"),
        (True, TypeError, "validation must be an int"),
        (1.5, TypeError, "validation must be an int"),
    ],
)
def test_bad_validation_sizes_are_rejected(tmp_path, validation, error, message):
    with pytest.raises(error, match=message):
        load_mnist("idx", write_mnist_dir(tmp_path), validation, verbose=False)
