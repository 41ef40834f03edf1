"""Data on device and evaluation on its named splits, as the experiments use them."""

from __future__ import annotations

import time

import jax
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
    """``evaluate(params) -> {"<split>_cost", "<split>_accuracy"}`` (floats) for ``splits``.

    Every split in one compiled program and one transfer to the host (the numbers are those of
    ``bpjax.train.evaluate`` on each split alone, bit for bit). The first call compiles it;
    ``evaluate.compile(params)`` does so ahead of time and returns the seconds it took.
    """
    from bpjax import train

    names = tuple(name for name in splits if name in data)
    arrays = {name: data[name] for name in names}

    def every_split(params, arrays):
        return {name: train.evaluate(params, *arrays[name], spec=spec) for name in names}

    program = jax.jit(every_split)

    def compile(params) -> float:
        t0 = time.perf_counter()
        program.lower(params, arrays).compile()  # jit's calls reuse it (the compile cache)
        return time.perf_counter() - t0

    def evaluate(params) -> dict[str, float]:
        metrics = jax.device_get(program(params, arrays))
        row = {}
        for name in names:
            row[f"{name}_cost"] = float(metrics[name]["cost"])
            row[f"{name}_accuracy"] = float(metrics[name]["accuracy"])
        return row

    evaluate.compile = compile
    return evaluate


def best(history: list[dict], key: str) -> dict:
    """The row with the highest finite ``key`` (ties: the earliest)."""
    values = np.array([float(r.get(key, np.nan)) for r in history])
    values[~np.isfinite(values)] = -np.inf
    return history[int(np.argmax(values))]
