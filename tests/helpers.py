"""Small helpers shared by the tests."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def max_rel_err(a, b) -> float:
    """max |a - b| / max |b| over every leaf of two pytrees (0 when both are 0)."""
    # On the host: eager jnp ops would compile a program per leaf shape, which cost more than
    # many of the tests that call this.
    a, b = (list(map(np.asarray, jax.tree.leaves(t))) for t in (a, b))
    diff = max(float(np.max(np.abs(x - y))) for x, y in zip(a, b, strict=True))
    scale = max(float(np.max(np.abs(y))) for y in b)
    return diff / scale if scale > 0 else diff


def random_problem(seed, sizes, batch, dtype=jnp.float32, init="standard"):
    """Random params, inputs in [0, 1) and one-hot targets for layer sizes ``sizes``.

    Drawn with NumPy, not ``jax.random``: eager ``jax.random`` compiles a program per shape,
    which made drawing a problem cost more than the test itself. ``init`` as in
    ``bpjax.init_params``: "standard" w, b ~ N(0, 1); "scaled" w ~ N(0, 1/n_in).
    """
    rng = np.random.default_rng(seed)

    def put(a):  # cast on the host and device_put: a device-side cast, or jnp.asarray, would
        return jax.device_put(np.asarray(a, dtype=np.dtype(dtype)))  # compile a program too

    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True):
        scale = 1 / np.sqrt(n_in) if init == "scaled" else 1.0
        w = rng.standard_normal((n_out, n_in)) * scale
        params.append({"w": put(w), "b": put(rng.standard_normal(n_out))})
    xs = put(rng.uniform(size=(batch, sizes[0])))
    ys = put(np.eye(sizes[-1])[rng.integers(0, sizes[-1], size=batch)])
    return params, xs, ys


def tiered(values, fast, several=False):
    """``parametrize`` values of which only those in ``fast`` run in the fast tier
    (``pytest -m "not slow"``); the others are marked slow, so the full suite runs them all.
    ``several``: each value is a tuple of several argnames' values."""

    def slow(v):
        return pytest.param(*(v if several else (v,)), marks=pytest.mark.slow)

    return [v if v in fast else slow(v) for v in values]


def made_once(tmp_path_factory, name: str, make):
    """``(directory, value)``: ``value = make(directory)`` (JSON-able) run once per test session
    however many xdist workers ask; the first one makes it under a file lock, the others wait
    and reuse it (pytest-xdist's recipe for session fixtures). For the costly set-ups several
    workers' tests share: a TFDS preparation, an 8-device subprocess."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the workers' common base
    directory, done = root / name, root / f"{name}.json"
    with FileLock(f"{root / name}.lock"):
        if not done.exists():
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir()
            done.write_text(json.dumps(make(directory)))
    return directory, json.loads(done.read_text())
