"""The data set value every source produces, and the one place raw arrays become it."""

from __future__ import annotations

import operator
from typing import NamedTuple

import jax
import numpy as np

from bpjax.data.errors import MnistFormatError
from bpjax.data.pixels import IMAGE_FORMS, device_images

N_PIXELS = 784
N_CLASSES = 10


class Splits(NamedTuple):
    """Raw arrays as a source delivers them: images (N, 784) integers 0..255, labels (N,) 0..9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


class Dataset(NamedTuple):
    """MNIST ready for training; a pytree whose leaves are the six arrays and `source`.

    x_*: (N, 784) float32 in [0, 1]; y_*: (N,) int32 in 0..9. The validation split is
    empty ((0, 784) and (0,)) unless asked for. `source` says where the examples came from;
    it is a str leaf, so use `as_jax` rather than `jax.tree.map(jnp.asarray, ds)`.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str


def _check_split(x: np.ndarray, y: np.ndarray, where: str) -> None:
    # Every source goes through here, so a TFDS or CSV surprise is caught as clearly as an IDX one.
    if x.ndim != 2 or x.shape[1] != N_PIXELS:
        raise MnistFormatError(f"{where}: images have shape {x.shape}, expected (N, {N_PIXELS})")
    if y.shape != (x.shape[0],):
        raise MnistFormatError(f"{where}: {x.shape[0]} images but labels of shape {y.shape}")
    if x.size and (x.min() < 0 or x.max() > 255):
        raise MnistFormatError(f"{where}: pixel values outside 0..255")
    if y.size and (y.min() < 0 or y.max() >= N_CLASSES):
        raise MnistFormatError(f"{where}: labels outside 0..{N_CLASSES - 1}")


def _check_validation(validation: int, n_train: int) -> int:
    if isinstance(validation, bool):
        raise TypeError(f"validation must be an int number of examples, got {validation!r}")
    try:
        k = operator.index(validation)
    except TypeError:
        raise TypeError(
            f"validation must be an int number of examples, got {validation!r}"
        ) from None
    if not 0 <= k < n_train:
        raise ValueError(
            f"validation={k} must be in [0, {n_train}): it is carved from the {n_train} "
            "training examples and must leave at least one for training"
        )
    return k


def make_dataset(splits: Splits, source: str, validation: int = 0) -> Dataset:
    """Scale pixels to float32 [0, 1], labels to int32, and carve the LAST `validation`
    training examples off as the validation split."""
    _check_split(splits.x_train, splits.y_train, f"{source} train split")
    _check_split(splits.x_test, splits.y_test, f"{source} test split")
    n = splits.x_train.shape[0]
    cut = n - _check_validation(validation, n)

    def pixels(x: np.ndarray) -> np.ndarray:
        return x.astype(np.float32) / np.float32(255)

    def labels(y: np.ndarray) -> np.ndarray:
        return y.astype(np.int32)

    return Dataset(
        x_train=pixels(splits.x_train[:cut]),
        y_train=labels(splits.y_train[:cut]),
        x_val=pixels(splits.x_train[cut:]),
        y_val=labels(splits.y_train[cut:]),
        x_test=pixels(splits.x_test),
        y_test=labels(splits.y_test),
        source=source,
    )


def as_jax(dataset: Dataset) -> Dataset:
    """The same Dataset with its six arrays on the default device (one transfer each)."""
    *arrays, source = dataset
    return Dataset(*jax.device_put(arrays), source=source)


def device_arrays(dataset: Dataset, images: str = "packed") -> dict[str, jax.Array]:
    """The Dataset's six arrays on the default device, for training: ``{"x_train", "y_train",
    "x_val", "y_val", "x_test", "y_test"}``.

    ``images`` (one of ``IMAGE_FORMS``) is how the images are stored: ``"packed"`` (the default,
    ``PackedImages``, fastest to gather), ``"uint8"`` pixels or ``"float32"``. Every form gives
    the network bit-identical inputs (``bpjax.data.as_inputs`` scales pixels to ``p / 255``
    in-graph, correctly rounded), so training results do not depend on the choice.
    """
    if images not in IMAGE_FORMS:
        raise ValueError(f"images={images!r}; choose one of {IMAGE_FORMS}")
    out = {}
    for split in ("train", "val", "test"):
        out[f"x_{split}"] = device_images(getattr(dataset, f"x_{split}"), images)
        out[f"y_{split}"] = jax.device_put(getattr(dataset, f"y_{split}"))
    return out
