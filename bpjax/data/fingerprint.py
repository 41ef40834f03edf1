"""What data a run used, by content: a JSON-able fingerprint of a Dataset's six arrays.

    recorded = fingerprint(ds)                 # store it with the run (JSON)
    ...
    changes = fingerprint_changes(recorded, fingerprint(load_mnist(...)))
    if changes:                                # e.g. ["the training labels differ"]
        ...

Paths play no part: the same files reached through a trailing slash, a symlink or a relative
path give the same fingerprint; one changed label gives a different one. The sha256 of each
array's bytes costs about 0.2 s for full MNIST (220 MB of float32 pixels).
"""

from __future__ import annotations

import hashlib

import numpy as np

from bpjax.data.dataset import Dataset

# The arrays fingerprinted, and how a change is named.
SPLITS = {
    "x_train": "the training images",
    "y_train": "the training labels",
    "x_val": "the validation images",
    "y_val": "the validation labels",
    "x_test": "the test images",
    "y_test": "the test labels",
}


def _describe(array) -> dict:
    a = np.ascontiguousarray(np.asarray(array))
    # a flat byte view: no copy, and fine for empty arrays (the validation split)
    digest = hashlib.sha256(a.reshape(-1).view(np.uint8)).hexdigest()
    return {"shape": list(a.shape), "dtype": str(a.dtype), "sha256": digest}


def fingerprint(dataset: Dataset) -> dict[str, dict]:
    """{"x_train": {"shape": [N, 784], "dtype": "float32", "sha256": "..."}, ...} for the six
    arrays of `dataset` (host or device arrays); JSON-able. `source` is not part of it."""
    return {name: _describe(getattr(dataset, name)) for name in SPLITS}


def fingerprint_changes(recorded: dict, current: dict) -> list[str]:
    """One phrase per array that differs between two fingerprints, in split order, e.g.
    ["the training labels differ", "the test images differ (10000 examples recorded, 9000
    now)"]; [] when the data are the same."""
    changes = []
    for name, what in SPLITS.items():
        old, new = recorded.get(name), current.get(name)
        if old == new:
            continue
        if old is None or new is None:
            side = "recorded" if old is None else "current"
            changes.append(f"{what} are missing from the {side} fingerprint")
        elif old.get("shape") != new.get("shape"):
            n_old = (old.get("shape") or ["?"])[0]
            n_new = (new.get("shape") or ["?"])[0]
            changes.append(f"{what} differ ({n_old} examples recorded, {n_new} now)")
        elif old.get("dtype") != new.get("dtype"):
            changes.append(
                f"{what} differ (dtype {old.get('dtype')} recorded, {new.get('dtype')} now)"
            )
        else:
            changes.append(f"{what} differ")
    return changes
