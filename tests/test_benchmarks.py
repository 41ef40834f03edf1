"""The benchmark suite: its references compute what bpjax computes (so the comparison is honest),
and the runner's quick mode writes valid, machine-independent JSON that the report reads.

No timing is asserted anywhere: speed is measured by ``python -m benchmarks.run``, not by tests.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax
from benchmarks import impls, report
from benchmarks.reference import jax_plain, numpy_loop, numpy_matrix, torch_eager
from benchmarks.run import SECTIONS
from bpjax import train
from bpjax.data import epoch_batches
from tests.helpers import max_rel_err, tiered

ROOT = Path(__file__).resolve().parents[1]
SIZES = (20, 8, 6, 10)


def problem(n=40, sizes=SIZES, seed=0):
    """float32 params (as NumPy), inputs in [0, 1] and labels."""
    k_x, k_y = jax.random.split(jax.random.key(seed))
    params = jax.tree.map(np.array, bpjax.init_params(jax.random.key(seed + 1), sizes))
    x = np.array(jax.random.uniform(k_x, (n, sizes[0])), dtype=np.float32)
    labels = np.array(jax.random.randint(k_y, (n,), 0, sizes[-1]), dtype=np.int32)
    return params, x, labels


def bpjax_mean_grad(params, x, labels):
    p = jax.tree.map(jnp.asarray, params)
    return train.make_grad_fn("autodiff")(p, jnp.asarray(x), bpjax.one_hot(jnp.asarray(labels)))


def bpjax_epoch(params, x, labels, batches, eta):
    """One bpjax SGD epoch over the given batch order, step by step."""
    tx = optax.sgd(eta)
    step = jax.jit(train.make_train_step(tx))
    p = jax.tree.map(jnp.asarray, params)
    s = tx.init(p)
    for idx in batches:
        p, s, _ = step(p, s, jnp.asarray(x[idx]), bpjax.one_hot(jnp.asarray(labels[idx])))
    return p


# --- the runner ---------------------------------------------------------------------------------


@pytest.mark.slow  # every section, small, with its subprocesses
def test_quick_run_writes_valid_json(tmp_path):
    out = tmp_path / "quick.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.run", "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Targets" in proc.stdout and "times faster than each reference" in proc.stdout
    text = out.read_text()
    results = json.loads(text)
    for key in ("machine", "date", "settings", "versions", "gemm_peak", *SECTIONS, "targets"):
        assert key in results, key
    # Nothing machine-specific: no absolute path of the repository or the output.
    assert str(ROOT) not in text and str(tmp_path) not in text
    assert results["command"].startswith("python -m benchmarks.run --quick")
    for name in ("784-16-16-10/B=100", "784-30-10/B=10"):
        rows = {r["impl"]: r for r in results["sgd_epoch"][name]["rows"]}
        assert rows["bpjax"]["bpjax_speedup"] == 1.0
        assert {"bpjax, float32 images", "plain JAX: jit(grad) in lax.scan, float32"} <= set(rows)
        assert any(k.startswith("NumPy matrix") for k in rows)
        assert any(k.startswith("NumPy per-example loop") for k in rows)
        for r in rows.values():
            assert r["ms"] > 0 and r["examples_per_s"] > 0 and r["gflops"] > 0
        if torch_eager.available():
            assert any(k.startswith("PyTorch eager") for k in rows)
    assert results["sweep"]["speedup"] > 0
    assert all({"target", "met", "measured"} <= set(t) for t in results["targets"])
    assert all(r["speedup"] > 0 for r in results["shuffle"]["rows"])
    summary = report.main([str(out), "--out", str(tmp_path / "summary.md")])
    assert summary == (tmp_path / "summary.md").read_text()
    assert "| 784-16-16-10/B=100 | bpjax | " in summary and "plain JAX" in summary


# --- the references compute bpjax's gradient and step -------------------------------------------


@pytest.mark.slow  # the per-example Python loop
def test_numpy_loop_gradient_equals_bpjax():
    params, x, labels = problem()
    _, expected = bpjax_mean_grad(params, x, labels)
    got = numpy_loop.mean_grad(params, x, np.eye(10, dtype=np.float32)[labels])
    assert max_rel_err(got, expected) < 1e-5


@pytest.mark.slow  # the per-example Python loop
def test_network_py_backprop_gradient_equals_bpjax():
    # Nielsen's structure, example by example: BP1's 2 (a - y) sigma'(z) included.
    params, x, labels = problem()
    _, expected = bpjax_mean_grad(params, x, labels)
    weights = [p["w"] for p in params]
    biases = [p["b"].reshape(-1, 1) for p in params]
    total = [{"w": np.zeros_like(p["w"]), "b": np.zeros_like(p["b"])} for p in params]
    for xi, yi in numpy_loop.columns(x, labels):
        nabla_b, nabla_w = numpy_loop.classic_backprop(weights, biases, xi, yi)
        for t, nb, nw in zip(total, nabla_b, nabla_w, strict=True):
            t["b"] += nb.reshape(-1)
            t["w"] += nw
    got = [{k: v / len(labels) for k, v in t.items()} for t in total]
    assert max_rel_err(got, expected) < 1e-5


@pytest.mark.slow  # covered in the fast tier by the plain-JAX epoch
def test_plain_jax_cost_equals_bpjax():
    params, x, labels = problem()
    cost, _ = bpjax_mean_grad(params, x, labels)
    got = jax_plain.cost(jax.tree.map(jnp.asarray, params), x, jax.nn.one_hot(labels, 10))
    np.testing.assert_allclose(got, cost, rtol=1e-6)


def test_numpy_matrix_cost_and_gradient_equal_bpjax():
    params, x, labels = problem()
    cost, expected = bpjax_mean_grad(params, x, labels)
    c, got = numpy_matrix.cost_and_grad(params, x, np.eye(10, dtype=np.float32)[labels])
    np.testing.assert_allclose(c, cost, rtol=1e-5)
    assert max_rel_err(got, expected) < 1e-5


@pytest.mark.slow  # full-batch reference
def test_numpy_full_batch_gradient_is_chunk_independent_and_equals_bpjax():
    params, x, labels = problem(n=50)
    cost, expected = bpjax_mean_grad(params, x, labels)
    for chunk in (50, 16, 7):
        c, got = numpy_matrix.full_batch_grad(params, x, labels, chunk)
        np.testing.assert_allclose(c, cost, rtol=1e-5)
        assert max_rel_err(got, expected) < 1e-5


def _network_py_epoch(params, x, labels, batches, eta):
    return numpy_loop.classic_sgd_epoch(params, numpy_loop.columns(x, labels), batches, eta)


def _plain_jax_epoch(params, x, labels, batches, eta):
    epoch = jax_plain.make_sgd_epoch(eta)
    return epoch(
        jax.tree.map(jnp.asarray, params), jnp.asarray(x), jnp.asarray(labels), jnp.asarray(batches)
    )


@pytest.mark.parametrize(
    "sgd_epoch",
    tiered(
        [numpy_loop.sgd_epoch, numpy_matrix.sgd_epoch, _network_py_epoch, _plain_jax_epoch],
        [numpy_matrix.sgd_epoch, _plain_jax_epoch],
    ),
    ids=["numpy-loop", "numpy-matrix", "network-py", "plain-jax"],
)
def test_reference_sgd_epoch_equals_bpjax(sgd_epoch):
    params, x, labels = problem(n=40)
    batches = np.asarray(epoch_batches(jax.random.key(5), 40, 8))
    expected = bpjax_epoch(params, x, labels, batches, 2.0)
    got = sgd_epoch(jax.tree.map(np.copy, params), x, labels, batches, 2.0)
    assert max_rel_err(got, expected) < 1e-5


needs_torch = pytest.mark.skipif(
    not torch_eager.available(),
    reason="PyTorch is not installed (optional extra: pip install 'bpjax[bench]')",
)


@needs_torch
@pytest.mark.slow  # imports torch
def test_torch_sgd_epoch_and_vmap_step_equal_bpjax():
    import torch

    params, x, labels = problem(n=40)
    batches = np.asarray(epoch_batches(jax.random.key(5), 40, 8))
    expected = bpjax_epoch(params, x, labels, batches, 2.0)
    tp = torch_eager.to_torch(params)
    opt = torch_eager.make_sgd(tp, 2.0)
    torch_eager.sgd_epoch(
        tp,
        opt,
        torch.from_numpy(x),
        torch.from_numpy(labels.astype(np.int64)),
        torch.from_numpy(batches.astype(np.int64)),
    )
    assert max_rel_err(torch_eager.to_numpy(tp), expected) < 1e-5
    tv = torch_eager.to_torch(params)
    step = torch_eager.make_vmap_sgd_step(2.0)
    torch_eager.vmap_sgd_epoch(
        step,
        tv,
        torch.from_numpy(x),
        torch.from_numpy(labels.astype(np.int64)),
        torch.from_numpy(batches.astype(np.int64)),
    )
    assert max_rel_err(torch_eager.to_numpy(tv), expected) < 1e-5


@needs_torch
@pytest.mark.slow  # imports torch
def test_torch_full_batch_step_equals_bpjax():
    import torch

    params, x, labels = problem(n=50)
    _, grads = bpjax_mean_grad(params, x, labels)
    expected = jax.tree.map(lambda p, g: p - 2.0 * g, params, grads)
    tp = torch_eager.to_torch(params)
    torch_eager.full_batch_step(
        tp,
        torch_eager.make_sgd(tp, 2.0),
        torch.from_numpy(x),
        torch.from_numpy(labels.astype(np.int64)),
        chunk_size=16,
    )
    assert max_rel_err(torch_eager.to_numpy(tp), expected) < 1e-5


@pytest.mark.slow  # every implementation, torch too
def test_the_benchmark_cases_run_every_implementation_on_the_same_problem():
    # Tiny end-to-end: the case builders of the runner produce the same trained params.
    params, x, labels = problem(n=60, sizes=(784, 6, 10))
    x = np.rint(x * 255).astype(np.float32) / np.float32(255)
    data = impls.make_data(x, labels)
    p = impls.Problem((784, 6, 10), 10)
    batches = impls.batch_order(60, 10)
    expected = bpjax_epoch(impls.init_params(p.sizes), x, labels, batches, p.eta)
    got = numpy_matrix.sgd_epoch(impls.init_params(p.sizes), x, labels, batches, p.eta)
    assert max_rel_err(got, expected) < 1e-5
    for images in ("packed", "float32"):
        got = impls.bpjax_epoch(p, data, images=images).run()[0]
        assert max_rel_err(got, expected) < 1e-5
    got = impls.jax_plain_epoch(p, data).run()
    assert max_rel_err(got, expected) < 1e-5
    for case in (
        impls.numpy_matrix_epoch(p, data),
        impls.numpy_loop_epoch(p, data, 30),
        impls.bpjax_full_batch(p, data),
        impls.bpjax_step_loop(p, data),
        impls.shuffle_case(60, "bpjax.data.shuffle"),
    ):
        case.run()
