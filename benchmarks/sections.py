"""The benchmark's sections, each a function ``(settings, data) -> JSON-able dict``.

Times are seconds per unit (an epoch, a step) unless a key says ms. Every comparison inside a
section is measured in one interleaved ``timing.measure`` call.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from benchmarks import impls
from benchmarks.impls import Data, Problem
from benchmarks.reference import torch_eager
from benchmarks.results_io import portable
from benchmarks.threads import set_threads
from benchmarks.timing import Case, flops_per_example, measure
from bpjax import train
from bpjax.data import as_inputs, epoch_batches
from bpjax.data.pixels import take_rows

HEADLINE = "bpjax"  # autodiff, packed images (device_arrays' default), one lax.scan per epoch
FLOAT32 = "bpjax, float32 images"  # the same, on the float32 images of a Dataset
PLAIN_JAX = "plain JAX: jit(grad) in lax.scan, float32"
PROBLEMS = (Problem((784, 16, 16, 10), 100), Problem((784, 30, 10), 10))
QUICK_EXAMPLES = 2000  # the smoke run's training examples (compiles dominate its time)


@dataclass(frozen=True)
class Settings:
    quick: bool
    repeats: int
    n_loop: int  # examples the per-example NumPy loop is timed on
    n_torch_b10: int  # examples PyTorch eager is timed on at mini-batch 10
    n_torch_vmap: int  # examples torch.func vmap is timed on
    n_naive_b10: int  # examples the materialised vmap(grad) JAX rows are timed on at B=10
    thread_counts: tuple[int, ...]  # the references are timed at each; the best counts

    @classmethod
    def make(cls, quick: bool, repeats: int | None, threads: int) -> Settings:
        counts = tuple(sorted({1, threads, 2})) if not quick else (threads,)
        if quick:
            return cls(True, repeats or 1, 200, 500, 100, 500, counts)
        return cls(False, repeats or 7, 3000, 6000, 1000, 12000, counts)


def _with_threads(case: Case, threads: int) -> Case:
    run = case.run

    def threaded():
        set_threads(threads)
        return run()

    return Case(threaded, case.scale, case.note)


def _row(name: str, case: Case, flops: float, peak: float, n_examples: int) -> dict:
    seconds = case.median
    lo, hi = case.spread
    return {
        "impl": name,
        "ms": seconds * 1e3,
        "ms_min": lo * 1e3,
        "ms_max": hi * 1e3,
        "examples_per_s": n_examples / seconds,
        "gflops": flops / seconds / 1e9,
        "pct_peak": 100 * flops / seconds / 1e9 / peak,
        "note": case.note,
        "samples_s": [t * case.scale for t in case.samples],
    }


def _add_speedups(rows: list[dict], base: str = HEADLINE) -> list[dict]:
    """Each row gets ``bpjax_speedup`` = its time / the headline bpjax row's time."""
    ref = next(r for r in rows if r["impl"] == base)["ms"]
    for r in rows:
        r["bpjax_speedup"] = r["ms"] / ref
    return rows


# --- 1, 3, 8: SGD epochs, per-example gradients, references -------------------------------------


def sgd_epochs(s: Settings, data: Data, peak: float) -> dict:
    """One SGD epoch of every implementation on both problems, interleaved."""
    cases: dict[tuple[str, str], Case] = {}
    for p in PROBLEMS:
        b10 = p.batch_size < 100
        c = {
            HEADLINE: impls.bpjax_epoch(p, data, "autodiff", "packed"),
            FLOAT32: impls.bpjax_epoch(p, data, "autodiff", "float32"),
            PLAIN_JAX: impls.jax_plain_epoch(p, data),
            "bpjax, vmap(grad) factored": impls.bpjax_epoch(p, data, "vmap_grad_factored"),
            "bpjax, vmap(grad) then mean": impls.bpjax_epoch(
                p, data, "vmap_grad", n_timed=s.n_naive_b10 if b10 else None
            ),
        }
        if not s.quick:  # each bpjax row is one more compile: the smoke run keeps three
            c.update(
                {
                    "bpjax, uint8 images": impls.bpjax_epoch(p, data, "autodiff", "uint8"),
                    "bpjax, hand backprop": impls.bpjax_epoch(p, data, "backprop"),
                    "bpjax, vmap(backprop) then mean": impls.bpjax_epoch(
                        p, data, "vmap_backprop", n_timed=s.n_naive_b10 if b10 else None
                    ),
                    "bpjax, one jit call per step": impls.bpjax_step_loop(
                        p, data, n_timed=s.n_naive_b10 if b10 else None
                    ),
                }
            )
        for t in s.thread_counts:
            c[f"NumPy per-example loop (network.py), {t} thr"] = _with_threads(
                impls.numpy_loop_epoch(p, data, s.n_loop), t
            )
            c[f"NumPy per-example loop, tighter, {t} thr"] = _with_threads(
                impls.numpy_loop_epoch(p, data, s.n_loop, classic=False), t
            )
            c[f"NumPy matrix, {t} thr"] = _with_threads(impls.numpy_matrix_epoch(p, data), t)
            if torch_eager.available():
                c[f"PyTorch eager, {t} thr"] = _with_threads(
                    impls.torch_epoch(p, data, s.n_torch_b10 if b10 else None), t
                )
                c[f"torch.func vmap(grad), {t} thr"] = _with_threads(
                    impls.torch_vmap_epoch(p, data, s.n_torch_vmap), t
                )
        cases.update({(p.name, k): v for k, v in c.items()})
    measure(cases, s.repeats)
    out = {}
    for p in PROBLEMS:
        n = (data.n // p.batch_size) * p.batch_size
        flops = flops_per_example(p.sizes) * n
        rows = [_row(k, v, flops, peak, n) for (name, k), v in cases.items() if name == p.name]
        rows = _add_speedups(rows)
        base = next(r for r in rows if r["impl"] == HEADLINE)["ms"]
        per_example = {r["impl"]: r["ms"] / base for r in rows if r["impl"].startswith("bpjax")}
        out[p.name] = {
            "sizes": p.sizes,
            "batch_size": p.batch_size,
            "eta": p.eta,
            "examples": n,
            "gflop": flops / 1e9,
            "rows": rows,
            "time_vs_batched_gradient": per_example,
        }
    if not torch_eager.available():
        out["torch"] = "skipped: torch is not installed (pip install 'bpjax[bench]')"
    return out


# --- 2: full-batch gradient descent ---------------------------------------------------------------


def full_batch(s: Settings, data: Data, peak: float) -> dict:
    p = PROBLEMS[0]
    c = {
        HEADLINE: impls.bpjax_full_batch(p, data, "autodiff", "uint8", chunk_size=2_000),
        "bpjax, packed images, default chunk 10,000": impls.bpjax_full_batch(
            p, data, "autodiff", "packed", chunk_size=10_000
        ),
        "bpjax, float32 images, default chunk 10,000": impls.bpjax_full_batch(
            p, data, "autodiff", "float32", chunk_size=10_000
        ),
        "bpjax, hand backprop": impls.bpjax_full_batch(p, data, "backprop", "uint8", 2_000),
        "bpjax, vmap(grad) factored": impls.bpjax_full_batch(
            p, data, "vmap_grad_factored", "uint8", 2_000
        ),
    }
    for t in s.thread_counts:
        c[f"NumPy matrix, {t} thr"] = _with_threads(impls.numpy_full_batch(p, data), t)
        if torch_eager.available():
            c[f"PyTorch eager, {t} thr"] = _with_threads(impls.torch_full_batch(p, data), t)
    measure(c, s.repeats)
    flops = flops_per_example(p.sizes) * data.n
    rows = _add_speedups([_row(k, v, flops, peak, data.n) for k, v in c.items()])
    return {
        "sizes": p.sizes,
        "examples": data.n,
        "chunk_size": 2_000,
        "rows": rows,
        "note": "headline: uint8 images, chunk_size=2000 (fits the cache; 10,000 is the "
        "default); gradient of the mean cost",
    }


# --- the shuffle ---------------------------------------------------------------------------------


def shuffles(s: Settings, data: Data) -> dict:
    """``bpjax.data.shuffle`` against ``jax.random.permutation`` (one jitted call each)."""
    sizes = sorted({min(1000, data.n), data.n} if s.quick else {1000, 10_000, data.n, 2**20})
    cases = {
        (n, which): impls.shuffle_case(n, which)
        for n in sizes
        for which in ("bpjax.data.shuffle", "jax.random.permutation")
    }
    measure(cases, max(3, s.repeats))
    rows = []
    for n in sizes:
        ours, theirs = (
            cases[(n, w)].median for w in ("bpjax.data.shuffle", "jax.random.permutation")
        )
        rows.append(
            {
                "n": n,
                "bpjax_shuffle_ms": ours * 1e3,
                "jax_permutation_ms": theirs * 1e3,
                "speedup": theirs / ours,
            }
        )
    return {"rows": rows}


# --- 4: compile time ----------------------------------------------------------------------------


def compile_times(s: Settings, data: Data) -> dict:
    """Trace + lower, and XLA compile, of a fresh epoch function (nothing cached)."""
    out = {}
    for p in PROBLEMS:
        lower, comp = [], []
        for _ in range(1 if s.quick else max(2, s.repeats // 2)):
            tx = optax.sgd(p.eta)
            params = jax.tree.map(jnp.asarray, impls.init_params(p.sizes))
            epoch = train.make_sgd_epoch(train.make_train_step(tx), p.batch_size)
            t0 = time.perf_counter()
            lowered = epoch.lower(
                params, tx.init(params), data.images["packed"], data.jlabels, impls.ORDER_KEY
            )
            t1 = time.perf_counter()
            lowered.compile()
            t2 = time.perf_counter()
            lower.append(t1 - t0)
            comp.append(t2 - t1)
        out[p.name] = {
            "trace_lower_s": float(np.median(lower)),
            "compile_s": float(np.median(comp)),
        }
    return out


# --- 5: scaling ---------------------------------------------------------------------------------


def scaling(s: Settings, data: Data, peak: float) -> dict:
    """Epoch time (per 60,000-example epoch, from subsets) vs N, hidden width and batch size."""
    if s.quick:
        ns, widths, batches, n_sub = (1000, data.n), (64,), (10,), min(data.n, 2000)
    else:
        ns, widths, batches, n_sub = (
            (6000, 15000, 30000, 60000),
            (16, 64, 256, 1024),
            (1, 10, 100, 1000),
            6000,
        )
    grid = [("examples", n, Problem((784, 16, 16, 10), 100), data.head(n)) for n in ns]
    grid += [("width", w, Problem((784, w, w, 10), 100), data.head(n_sub)) for w in widths]
    grid += [("batch_size", b, Problem((784, 16, 16, 10), b), data.head(n_sub)) for b in batches]
    cases = {}
    for axis, value, p, sub in grid:
        cases[(axis, value, "bpjax")] = impls.bpjax_epoch(p, sub)
        cases[(axis, value, "NumPy matrix, 1 thr")] = _with_threads(
            impls.numpy_matrix_epoch(p, sub), 1
        )
    measure(cases, max(2, s.repeats // 2))
    out: dict[str, list] = {"examples": [], "width": [], "batch_size": []}
    for axis, value, p, sub in grid:
        n = (sub.n // p.batch_size) * p.batch_size
        flops = flops_per_example(p.sizes) * n
        entry = {"value": value, "sizes": p.sizes, "batch_size": p.batch_size, "examples": n}
        for impl in ("bpjax", "NumPy matrix, 1 thr"):
            case = cases[(axis, value, impl)]
            entry[impl] = {
                "ms": case.median * 1e3,
                "us_per_example": case.median / n * 1e6,
                "gflops": flops / case.median / 1e9,
                "pct_peak": 100 * flops / case.median / 1e9 / peak,
            }
        entry["bpjax_speedup"] = entry["NumPy matrix, 1 thr"]["ms"] / entry["bpjax"]["ms"]
        out[axis].append(entry)
    out["note"] = (
        f"width and batch size timed on {n_sub:,} examples (ms are for those); "
        "us_per_example compares across rows"
    )
    return out


# --- 6: sweep -----------------------------------------------------------------------------------


def sweep(s: Settings, data: Data, peak: float) -> dict:
    """R = 64 runs (8 learning rates x 8 init seeds, one shared mini-batch order), one epoch each:
    ``bpjax.sweep``'s program vs the runs one after another, interleaved (``impls.sweep_cases``);
    then the same sweep with its runs split over 2 CPU devices, in a fresh process."""
    n_lrs, n_seeds = (2, 2) if s.quick else (8, 8)
    p = PROBLEMS[0]
    load0 = open("/proc/loadavg").read().split()[:3]
    cases = impls.sweep_cases(p, data, n_lrs, n_seeds)
    measure(cases, max(2, s.repeats // 2))
    n_runs = n_lrs * n_seeds
    flops = flops_per_example(p.sizes) * (data.n // p.batch_size) * p.batch_size * n_runs
    t = {name: case.median for name, case in cases.items()}
    seq = np.asarray(cases["sequential"].samples)
    per_round = seq / np.asarray(cases["sweep"].samples)  # same round, same load
    return {
        "runs": n_runs,
        "source": "bpjax.sweep.make_sweep_epoch",
        "sizes": p.sizes,
        "batch_size": p.batch_size,
        "vmapped_s": t["sweep"],
        "sequential_s": t["sequential"],
        "speedup": t["sequential"] / t["sweep"],
        "speedup_rounds": [float(r) for r in per_round],
        "vmap_sgd_epoch_s": t["vmap(sgd_epoch)"],
        "speedup_vmap_sgd_epoch": t["sequential"] / t["vmap(sgd_epoch)"],
        "first_layer_s": t["first layer alone"],
        "bound_at_first_layer": t["sequential"] / t["first layer alone"],
        "vmapped_gflops": flops / t["sweep"] / 1e9,
        "vmapped_pct_peak": 100 * flops / t["sweep"] / 1e9 / peak,
        "bound_at_gemm_peak": t["sequential"] / (flops / (peak * 1e9)),
        "loadavg": [load0, open("/proc/loadavg").read().split()[:3]],
        "split_over_devices": _sweep_split(s, n_lrs, n_seeds),
        "note": (
            "one shared mini-batch order: the R first-layer products are one GEMM; "
            "bound_at_first_layer = sequential / (that GEMM, its weight gradient and update alone)"
        ),
    }


def _json_from_subprocess(cmd: list[str]) -> dict:
    """Run ``cmd`` from the repository root; its last stdout line as JSON, or ``{"error"}``."""
    proc = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    if proc.returncode:
        return {"error": portable(proc.stderr[-2000:])}
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):  # a section's failure must not end the run
        return {"error": f"no JSON line on stdout: {portable(proc.stdout[-500:])!r}"}


def _sweep_split(s: Settings, n_lrs: int, n_seeds: int) -> dict:
    """``impls.time_sharded_sweep`` over 2 CPU devices in a fresh process (the device count is
    fixed at JAX start-up)."""
    examples = QUICK_EXAMPLES if s.quick else 12_000
    code = (
        "import json, jax; jax.config.update('jax_num_cpu_devices', 2); "
        "from benchmarks import impls; "
        f"print(json.dumps(impls.time_sharded_sweep(2, {n_lrs}, {n_seeds}, {examples}, "
        f"{max(2, s.repeats // 2)})))"
    )
    result = _json_from_subprocess([sys.executable, "-c", code])
    if "error" in result:
        return result
    result["note"] = "2 forced CPU devices on this machine's 2 shared cores: shows it runs"
    return result


# --- 7: time to accuracy -------------------------------------------------------------------------


def time_to_accuracy(s: Settings) -> dict:
    """``benchmarks.time_to_accuracy`` in fresh processes, timed from just before each launch."""
    results = []
    for _ in range(1 if s.quick else 3):
        cmd = [sys.executable, "-m", "benchmarks.time_to_accuracy", "--t0", repr(time.time())]
        if s.quick:
            cmd += ["--max-epochs", "1"]
        t0 = time.perf_counter()
        result = _json_from_subprocess(cmd)
        wall = time.perf_counter() - t0
        if "error" in result:
            return result
        result["process_wall_s"] = wall
        results.append(result)
    reached = [r["seconds_to_target"] for r in results if r["reached"]]
    return {
        "runs": results,
        "median_s": float(np.median(reached)) if reached else None,
        "recipe": results[0]["recipe"],
        "target": results[0]["target"],
        "note": "quick mode: 1 epoch only, the target is not expected" if s.quick else "",
    }


# --- step time vs number of devices -------------------------------------------------------------


def devices(s: Settings) -> dict:
    """``benchmarks.devices`` in a fresh process (the device count is fixed at JAX start-up)."""
    cmd = [sys.executable, "-m", "benchmarks.devices", "--repeats", str(max(2, s.repeats // 2))]
    if s.quick:
        cmd += ["--devices", "1,2", "--examples", str(QUICK_EXAMPLES), "--repeats", "1"]
    return _json_from_subprocess(cmd)


# --- the changes, one at a time ------------------------------------------------------------------


def _isfinite_all(tree):  # the check as first written: isfinite + all-reduce per leaf
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def _permutation_batches(key, n: int, batch_size: int):
    """Mini-batches from ``jax.random.permutation``, as ``epoch_batches`` first made them."""
    steps = n // batch_size
    return jax.random.permutation(key, n)[: steps * batch_size].reshape(steps, batch_size)


def _variant_epoch(
    p: Problem, fast_order: bool, old_check: bool, shipped: bool = False, donate: bool = False
):
    """``sgd_epoch`` with this repo's earlier choices switchable, to time each change alone;
    ``shipped``: ``bpjax.train.make_sgd_epoch`` as it is (one params check per epoch)."""
    tx = optax.sgd(p.eta)
    if shipped:
        return train.make_sgd_epoch(train.make_train_step(tx), p.batch_size, donate=donate), tx
    grad_fn = train.make_grad_fn("autodiff")
    check = _isfinite_all if old_check else train.all_finite

    def step(params, opt_state, xb, yb):
        c, g = grad_fn(params, xb, yb)
        params, opt_state = train.apply_gradient(tx, params, opt_state, g)
        return params, opt_state, {"cost": c, "finite": jnp.isfinite(c) & check(params)}

    def epoch(params, opt_state, x, labels, key):
        order = epoch_batches if fast_order else _permutation_batches
        batches = order(key, x.shape[0], p.batch_size)

        def body(carry, idx):
            xb = as_inputs(take_rows(x, idx), jnp.float32)
            params, opt_state, m = step(*carry, xb, jax.nn.one_hot(labels[idx], 10))
            return (params, opt_state), m

        return jax.lax.scan(body, (params, opt_state), batches)

    return jax.jit(epoch), tx


def ablation(s: Settings, data: Data) -> dict:
    """The epoch as first written, then each change to bpjax.train added in turn."""
    steps = [
        (
            "as first written: float32 images, jax.random.permutation shuffle, isfinite check",
            dict(fast_order=False, old_check=True),
            "float32",
        ),
        (
            "+ bpjax.data.shuffle (one-operand sorts of random keys)",
            dict(fast_order=True, old_check=True),
            "float32",
        ),
        (
            "+ finite check as max|x| (one fused reduction)",
            dict(fast_order=True, old_check=False),
            "float32",
        ),
        (
            "+ uint8 images, scaled in-graph (exactly)",
            dict(fast_order=True, old_check=False),
            "uint8",
        ),
        ("+ packed images (4 pixels a word)", dict(fast_order=True, old_check=False), "packed"),
        (
            "+ params checked once per epoch, replayed only if not finite (as shipped)",
            dict(fast_order=True, old_check=False, shipped=True),
            "packed",
        ),
        (
            "+ donated params and optimizer state",
            dict(fast_order=True, old_check=False, shipped=True, donate=True),
            "packed",
        ),
    ]
    cases = {}
    problems = PROBLEMS[:1] if s.quick else PROBLEMS
    for p in problems:
        for name, kw, images in steps:
            epoch, tx = _variant_epoch(p, **kw)
            params = jax.tree.map(jnp.asarray, impls.init_params(p.sizes))
            x = data.images[images]

            def run(epoch=epoch, tx=tx, params=params, x=x):
                ps = jax.tree.map(jnp.copy, params)  # every row pays the copy donation needs
                return jax.block_until_ready(
                    epoch(ps, tx.init(ps), x, data.jlabels, impls.ORDER_KEY)
                )

            cases[(p.name, name)] = Case(run)
    measure(cases, s.repeats)
    out = {}
    for p in problems:
        rows = [{"change": name, "ms": cases[(p.name, name)].median * 1e3} for name, _, _ in steps]
        for prev, row in zip([None] + rows[:-1], rows, strict=True):
            row["vs_previous"] = row["ms"] / prev["ms"] if prev else 1.0
        out[p.name] = rows
    out["note"] = (
        "XLA thread pool (PJRT_NPROC) is fixed per process: see the settings; the "
        "gradient formulation is unchanged (autodiff of the mean cost)"
    )
    return out
