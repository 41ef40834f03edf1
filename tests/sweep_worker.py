"""Subprocess half of tests/test_sweep.py: a sweep with its runs split over 8 CPU devices.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 JAX_PLATFORMS=cpu \\
        python tests/sweep_worker.py OUT_DIR      # (repository root on PYTHONPATH)

The device count is fixed when JAX starts, so the test sets it in this process's environment.
Trains the same small sweeps on one device and split over the devices (``shard_runs``), in
float64, runs experiments.compare_optimizers with and without ``--shard-runs``, and prints one
JSON line of measurements; the test asserts on them.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys

import jax
import numpy as np

from bpjax import init_params
from bpjax.fit import fit
from bpjax.optimizers import make_sweep_optimizer
from bpjax.sweep import (
    epoch_key,
    init_runs,
    make_sweep_epoch,
    run_grid,
    runs_mesh,
    seed_keys,
    train_sweep,
)

SIZES, N, B = (20, 8, 10), 128, 16


def max_rel_err(a, b) -> float:
    pairs = list(zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))
    diff = max(np.abs(np.asarray(x) - np.asarray(y)).max() for x, y in pairs)
    return float(diff / max(np.abs(np.asarray(y)).max() for _, y in pairs))


def main(out_dir: str) -> dict:
    with jax.enable_x64(True):
        res = sweeps()
    res.update(cli(out_dir))
    return res


def sweeps() -> dict:
    rng = np.random.default_rng(0)
    x = rng.random((N, SIZES[0]))
    labels = rng.integers(0, SIZES[-1], N).astype(np.int32)
    eval_sets = {"val": (x[:40], labels[:40])}
    tx = make_sweep_optimizer("adam")
    res: dict = {"n_devices": jax.device_count()}

    def init_fn(key):
        return init_params(key, SIZES, dtype=np.float64)

    start = jax.vmap(init_fn)(seed_keys(run_grid(np.ones(8), [0, 1])[1]))

    def sweep(n_lrs: int, order: str, method: str = "autodiff", **kwargs):
        lrs, seeds = run_grid(np.geomspace(1e-3, 1e-1, n_lrs), [0, 1])
        order_key = jax.random.key(5) if order == "shared" else seed_keys(seeds + 50)
        return train_sweep(
            tx,
            init_fn,
            lrs,
            seed_keys(seeds),
            x,
            labels,
            epochs=2,
            batch_size=B,
            order_key=order_key,
            eval_sets=eval_sets,
            method=method,
            **kwargs,
        )

    ones = {}  # the one-device sweeps, R = 16: references for the checks below too
    for order in ("shared", "per_run"):
        for method in ("autodiff", "backprop"):
            one = ones[order, method] = sweep(8, order, method)
            split = sweep(8, order, method, shard_runs=True)  # two runs a device
            w = split.params[0]["w"]
            res[f"{order}_{method}"] = {
                "params_rel_err": max_rel_err(split.params, one.params),
                "history_max_abs_err": max(
                    float(np.abs(split.history[k] - one.history[k]).max()) for k in one.history
                ),
                "history_keys_equal": sorted(split.history) == sorted(one.history),
                "finite_equal": bool(
                    np.array_equal(split.history["finite"], one.history["finite"])
                ),
                "moved": max_rel_err(one.params, start),
                "w_spec": str(w.sharding.spec),
                "w_devices": len(w.sharding.device_set),
                "w_shape": list(w.shape),
            }

    # Fewer devices than the machine has: the 16 runs over a mesh of 4 (four a device).
    four = sweep(8, "shared", shard_runs=runs_mesh(jax.devices()[:4]))
    res["four_devices"] = {
        "params_rel_err": max_rel_err(four.params, ones["shared", "autodiff"].params),
        "w_devices": len(four.params[0]["w"].sharding.device_set),
    }
    try:
        sweep(6, "shared", shard_runs=True)  # 12 runs, 8 devices: refused before any work
        res["uneven_error"] = None
    except ValueError as e:
        res["uneven_error"] = str(e)

    # The compiled program of a split epoch: each device trains its own runs, no collectives.
    lrs, seeds = run_grid(np.geomspace(1e-3, 1e-1, 8), [0, 1])
    params, opt_state = init_runs(tx, init_fn, seed_keys(seeds), lrs)
    epoch = make_sweep_epoch(tx, B, shard_runs=True)
    hlo = epoch.lower(params, opt_state, x, labels, jax.random.key(0), eval_sets).compile()
    text = hlo.as_text()
    res["hlo_collectives"] = sum(
        text.count(f" {op}(") + text.count(f" {op}-start(")
        for op in ("all-reduce", "all-gather", "all-to-all", "collective-permute", "reduce-scatter")
    )

    # bpjax.fit compiles ahead of time (lower, compile) and calls the executable: the split
    # epoch places its arguments there too.
    order = jax.random.key(5)
    fitted = fit(
        epoch,
        params,
        opt_state,
        epochs=2,
        epoch_args=lambda e: (x, labels, epoch_key(order, e), eval_sets),
        summarize=lambda m: {k: np.asarray(v).tolist() for k, v in m.items()},
        check_finite=False,
    )
    res["fit_params_rel_err"] = max_rel_err(fitted.params, ones["shared", "autodiff"].params)
    return res


def cli(out_dir: str) -> dict:
    """experiments.compare_optimizers with its 8 runs an optimizer split over the 8 devices vs
    on one device; and its error when they do not split."""
    from experiments import compare_optimizers

    # One hidden layer: fewer programs to compile (the init's too), the same split to check.
    args = ["--quick", "--sizes", "784,8,10", "--optimizers", "sgd,adam", "--n-lrs", "2"]
    args += ["--seeds", "4", "--epochs", "1"]
    runs = {}
    for flags in ((), ("--shard-runs",)):
        out = f"{out_dir}/{'split' if flags else 'one'}"
        with contextlib.redirect_stdout(io.StringIO()):
            runs[bool(flags)] = compare_optimizers.main([*args, *flags, "--out", out])
    errs = []
    for name in ("sgd", "adam"):
        one, split = (runs[k]["optimizers"][name]["history"] for k in (False, True))
        errs += [np.abs(np.asarray(split[m]) - np.asarray(one[m])).max() for m in one]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            compare_optimizers.main(
                [*args[:-4], "--seeds", "3", "--shard-runs", "--out", f"{out_dir}/uneven"]
            )
            status = None
        except SystemExit as e:
            status = e.code
    return {
        "cli_history_max_abs_err": float(max(errs)),
        "cli_uneven": [status, *err.getvalue().strip().splitlines()[-1:]],
    }


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
