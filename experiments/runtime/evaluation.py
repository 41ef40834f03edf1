"""Data on device and evaluation on its named splits, as the experiments use them."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

SPLITS = ("train", "validation", "test")


def device_data(ds) -> dict[str, tuple]:
    """``{split: (x, labels)}`` on the default device for the non-empty splits of ``ds``."""
    pairs = {
        "train": (ds.x_train, ds.y_train),
        "validation": (ds.x_val, ds.y_val),
        "test": (ds.x_test, ds.y_test),
    }
    return {name: (jnp.asarray(x), jnp.asarray(y)) for name, (x, y) in pairs.items() if len(y)}


def make_evaluator(data: dict[str, tuple], spec, splits=SPLITS):
    """``evaluate(params) -> {"<split>_cost", "<split>_accuracy"}`` (floats) for ``splits``."""
    from bpjax import train

    eval_fn = train.make_evaluate(spec=spec)

    def evaluate(params) -> dict[str, float]:
        row = {}
        for name in splits:
            if name in data:
                m = eval_fn(params, *data[name])
                row[f"{name}_cost"] = float(m["cost"])
                row[f"{name}_accuracy"] = float(m["accuracy"])
        return row

    return evaluate


def best(history: list[dict], key: str) -> dict:
    """The row with the highest finite ``key`` (ties: the earliest)."""
    values = np.array([float(r.get(key, np.nan)) for r in history])
    values[~np.isfinite(values)] = -np.inf
    return history[int(np.argmax(values))]
