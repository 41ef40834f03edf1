"""MNIST for bpjax: real IDX files, TensorFlow Datasets, or an embedded 5k default; batching;
images on device as floats, uint8 pixels or packed pixels.

    from bpjax.data import load_mnist, epoch_batches, device_arrays
    ds = load_mnist(validation=10_000)          # source="auto"; see load_mnist's docstring
    batches = epoch_batches(key, len(ds.y_train), 10)   # (steps, 10) int32
    data = device_arrays(ds)                    # {"x_train": PackedImages, "y_train": ..., ...}
    fingerprint(ds)                             # what data, by content (JSON-able)

Every data problem raises a `DataError` with a one-line message (see bpjax.data.errors).

Importing this package does not import TensorFlow or tensorflow_datasets.
"""

from bpjax.data.batching import epoch_batches, shuffle
from bpjax.data.dataset import Dataset, as_jax, device_arrays
from bpjax.data.errors import (
    DataError,
    DataReadError,
    MissingDependencyError,
    MnistFormatError,
    MnistNotFoundError,
    MnistSplitError,
)
from bpjax.data.fingerprint import fingerprint, fingerprint_changes
from bpjax.data.idx import load_idx, read_idx, write_idx
from bpjax.data.load import SOURCES, load_mnist
from bpjax.data.locate import default_mnist_dir, default_tfds_dir
from bpjax.data.mnist5k import load_mnist5k
from bpjax.data.pixels import (
    IMAGE_FORMS,
    PackedImages,
    as_inputs,
    input_dtype,
    pack_pixels,
    scale_pixels,
    unpack_pixels,
)
from bpjax.data.tfds_source import load_tfds, prepare_tfds

__all__ = [
    "IMAGE_FORMS",
    "SOURCES",
    "PackedImages",
    "as_inputs",
    "device_arrays",
    "input_dtype",
    "pack_pixels",
    "scale_pixels",
    "shuffle",
    "unpack_pixels",
    "Dataset",
    "as_jax",
    "DataError",
    "DataReadError",
    "MissingDependencyError",
    "MnistFormatError",
    "MnistNotFoundError",
    "MnistSplitError",
    "default_mnist_dir",
    "default_tfds_dir",
    "epoch_batches",
    "fingerprint",
    "fingerprint_changes",
    "load_idx",
    "load_mnist",
    "load_mnist5k",
    "load_tfds",
    "prepare_tfds",
    "read_idx",
    "write_idx",
]
