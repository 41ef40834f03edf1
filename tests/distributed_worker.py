"""Subprocess half of tests/test_distributed.py: data parallelism on 8 forced CPU devices.

    python tests/distributed_worker.py OUT_DIR      # (repository root on PYTHONPATH)

Forces 8 CPU devices before JAX starts, runs every check that needs them, prints one JSON line of
measurements; the test asserts on them. A tiny problem (20-8-10 network, 128 examples) keeps the
compiles short.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_num_cpu_devices", 8)

import numpy as np  # noqa: E402
import optax  # noqa: E402
from jax.sharding import PartitionSpec as P  # noqa: E402

import bpjax  # noqa: E402
from bpjax import distributed  # noqa: E402
from bpjax.train import apply_gradient, make_grad_fn, make_sgd_epoch, make_train_step  # noqa: E402

SIZES, N, B, LR = (20, 8, 10), 128, 16, 3.0


def leaves(tree) -> list[np.ndarray]:
    # On the host: eager jnp arithmetic would compile a kernel per shape and sharding.
    return [np.asarray(leaf, np.float64) for leaf in jax.tree.leaves(tree)]


def rel_err(a, b) -> float:
    diff = max(np.abs(x - y).max() for x, y in zip(leaves(a), leaves(b), strict=True))
    return float(diff / max(np.abs(y).max() for y in leaves(b)))


def update_ratio(new, ref, start) -> float:
    """How many times the reference update ``ref - start`` the update ``new - start`` is."""
    new, ref, start = leaves(new), leaves(ref), leaves(start)
    moves = [(n - s, r - s) for n, r, s in zip(new, ref, start, strict=True)]
    return float(sum(np.vdot(u, v) for u, v in moves) / sum(np.vdot(v, v) for _, v in moves))


def main(out_dir: str) -> dict:
    k_p, k_e = jax.random.split(jax.random.key(0))
    params = bpjax.init_params(k_p, SIZES)
    rng = np.random.default_rng(0)
    x = rng.random((N, SIZES[0]), dtype=np.float32)
    labels = rng.integers(0, SIZES[-1], N).astype(np.int32)
    optimizer = optax.sgd(LR)
    step = make_train_step(optimizer)
    keys = jax.random.split(k_e, 2)
    res: dict = {"n_devices": jax.device_count()}

    # Reference: the plain single-device epoch (no mesh), two epochs of N / B steps each.
    ref_epoch = make_sgd_epoch(step, B)
    ref, ref_state, ref_costs = params, optimizer.init(params), []
    for key in keys:
        ref, ref_state, m = ref_epoch(ref, ref_state, x, labels, key)
        ref_costs.append(m["cost"])
    res["moved"] = rel_err(ref, params)

    seen = {}

    def spy_step(p, s, xb, yb):  # records the layouts the unchanged step is traced with
        seen.update(xb=str(jax.typeof(xb)), yb=str(jax.typeof(yb)), w=str(jax.typeof(p[0]["w"])))
        return step(p, s, xb, yb)

    mesh = distributed.data_mesh()
    epoch = distributed.make_data_parallel_epoch(spy_step, B, mesh)
    for layout, by_rows in (("sharded", True), ("replicated", False)):
        seen.clear()
        p = distributed.place(params, mesh, rows=False)
        s = distributed.place(optimizer.init(params), mesh, rows=False)
        xs = distributed.place(x, mesh, rows=by_rows)
        ls = distributed.place(labels, mesh, rows=by_rows)
        costs = []
        for key in keys:
            p, s, m = epoch(p, s, xs, ls, key)
            costs.append(m["cost"])
        res[layout] = {
            "params_rel_err": rel_err(p, ref),
            "cost_max_abs_err": float(np.abs(np.stack(costs) - np.stack(ref_costs)).max()),
            "x_spec": str(xs.sharding.spec),
            "params_replicated": all(a.sharding.is_fully_replicated for a in jax.tree.leaves(p)),
            "params_devices": len(p[0]["w"].sharding.device_set),
            "step_saw": dict(seen),
        }
    # With the data replicated the gather is local, so any all-reduce is the gradient's.
    hlo = epoch.lower(p, s, xs, ls, keys[0]).compile().as_text()  # the executable just run
    res["replicated_hlo_all_reduces"] = hlo.count(" all-reduce(") + hlo.count(" all-reduce-start(")

    # The pitfall: in shard_map (check_vma=True) the gradient w.r.t. the replicated params is
    # already summed over devices, so pmean-ing it again gives 8x the true mean gradient.
    grad_fn = make_grad_fn()

    def wrong_step(p, s, xb, yb):
        def local(p, xb, yb):
            return jax.lax.pmean(grad_fn(p, xb, yb)[1], distributed.DATA)

        batch = P(distributed.DATA)
        g = jax.shard_map(local, mesh=mesh, in_specs=(P(), batch, batch), out_specs=P())(p, xb, yb)
        return apply_gradient(optimizer, p, s, g)

    xb, yb = x[:B], np.eye(SIZES[-1], dtype=np.float32)[labels[:B]]
    one_ref, _, _ = jax.jit(step)(params, optimizer.init(params), xb, yb)
    placed = [
        distributed.place(t, mesh, rows=r)
        for t, r in ((params, False), (optimizer.init(params), False), (xb, True), (yb, True))
    ]
    with jax.set_mesh(mesh):
        one_wrong = jax.jit(wrong_step)(*placed)[0]
    res["grad_then_pmean_update_ratio"] = update_ratio(one_wrong, one_ref, params)

    try:
        distributed.make_data_parallel_epoch(step, 12, mesh)
        res["bad_batch_error"] = None
    except ValueError as e:
        res["bad_batch_error"] = str(e)

    # The experiment on all 8 devices, both layouts, vs experiments.train on one device: same
    # flags, so the same keys, optimizer and rows (the 256 left by --validation 3744).
    import contextlib
    import io

    from experiments import train
    from experiments import train_distributed as td

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            td.main(["--quick", "--batch-size", "12", "--out", f"{out_dir}/bad"])
            res["cli_bad_batch"] = None
        except SystemExit as e:
            res["cli_bad_batch"] = [e.code, *err.getvalue().strip().splitlines()[-1:]]
    res["cli_bad_batch_wrote"] = Path(out_dir, "bad").exists()
    args = [
        "--quick",
        "--validation",
        "3744",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--sizes",
        "784,8,10",
        "--seed",
        "1",
    ]
    train.main([*args, "--out", f"{out_dir}/train"])
    ref = dict(np.load(f"{out_dir}/train/params.npz"))
    for layout in ("sharded", "replicated"):
        result = td.main([*args, "--data-layout", layout, "--out", f"{out_dir}/{layout}"])
        res[f"cli_{layout}"] = {
            "n_used": result["n_used"],
            "local_rows": result["local_rows"],
            "devices": len(result["devices"]),
            "x_spec": result["x_spec"],
            "params_rel_err": rel_err(dict(np.load(f"{out_dir}/{layout}/params.npz")), ref),
        }
    limited = td.main([*args, "--train-limit", "100", "--out", f"{out_dir}/limited"])
    res["cli_limited_n_used"] = limited["n_used"]

    # The benchmark hook, smoke only: it runs on a sub-mesh and reports a per-step time.
    res["time_epoch"] = distributed.time_epoch(2, x, labels, SIZES, B, repeats=1)
    return res


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1])))
