"""Benchmark bpjax against reference implementations, all in this one process.

    python -m benchmarks.run            # the full suite (~10 min), writes benchmarks/results/
    python -m benchmarks.run --quick    # a small smoke run (~1 min)
    python -m benchmarks.report         # the markdown summary of the newest results file

Prints the tables, the ratios of bpjax to each reference and the targets, and writes
``<out>/<machine>-<date>.json`` (no machine paths in it: see ``benchmarks.results_io``).
Thread counts are set before any library loads (``--threads``, default 1: on this 2-core machine
one XLA thread is faster, and a second thread stalls whenever another process holds the other
core); the NumPy and PyTorch references are also timed at 2 threads and the faster is compared.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import time
from pathlib import Path

from benchmarks.threads import configure

RESULTS = Path(__file__).parent / "results"

SECTIONS = (
    "sgd_epoch",
    "shuffle",
    "full_batch",
    "compile",
    "scaling",
    "sweep",
    "time_to_accuracy",
    "devices",
    "ablation",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small data and few repeats (a smoke run)")
    p.add_argument("--repeats", type=int, default=None, help="timed repeats (default 7; quick 1)")
    p.add_argument("--threads", type=int, default=1, help="XLA/BLAS threads (default 1)")
    p.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated subset of {','.join(SECTIONS)}",
    )
    p.add_argument("--machine", default=platform.node() or "cpu", help="name in the file name")
    p.add_argument(
        "--out", default=str(RESULTS), help="directory for the JSON (default benchmarks/results)"
    )
    p.add_argument("--json", default=None, help="exact JSON path (overrides --out/--machine)")
    p.add_argument("--markdown", default=None, help="also write the main tables as markdown here")
    args = p.parse_args(argv)
    unknown = set(args.sections.split(",")) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    if args.threads < 1:
        p.error("--threads must be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    env = configure(args.threads)  # before NumPy, JAX or PyTorch load

    from benchmarks import impls, report, sections
    from benchmarks.results_io import data_source, package_versions, repo_relative, write_json
    from benchmarks.timing import gemm_peak
    from bpjax.data import load_mnist

    started = time.time()
    wanted = args.sections.split(",")
    s = sections.Settings.make(args.quick, args.repeats, args.threads)
    load0 = open("/proc/loadavg").read().split()[:3]
    ds = load_mnist(verbose=False)
    n = sections.QUICK_EXAMPLES if args.quick else len(ds.y_train)
    data = impls.make_data(ds.x_train[:n], ds.y_train[:n])

    results: dict = {
        "schema": 1,
        "machine": args.machine,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.run", *_portable(argv)]),
        "quick": args.quick,
        "settings": {
            "threads": args.threads,
            "env": env,
            "repeats": s.repeats,
            "reference_thread_counts": s.thread_counts,
            "examples": data.n,
            "data": data_source(ds.source),
        },
        "versions": {**package_versions(), "torch": _torch_version()},
        "cpu": {"model": _cpu_model(), "cores": _cores(), "loadavg_start": load0},
    }
    peak = gemm_peak(3 if args.quick else 7, 512 if args.quick else 1024)
    results["gemm_peak"] = peak
    runners = {
        "sgd_epoch": lambda: sections.sgd_epochs(s, data, peak["peak"]),
        "shuffle": lambda: sections.shuffles(s, data),
        "full_batch": lambda: sections.full_batch(s, data, peak["peak"]),
        "compile": lambda: sections.compile_times(s, data),
        "scaling": lambda: sections.scaling(s, data, peak["peak"]),
        "sweep": lambda: sections.sweep(s, data, peak["peak"]),
        "time_to_accuracy": lambda: sections.time_to_accuracy(s),
        "devices": lambda: sections.devices(s),
        "ablation": lambda: sections.ablation(s, data),
    }
    for name in SECTIONS:
        if name in wanted:
            t0 = time.time()
            results[name] = runners[name]()
            print(f"[{name}: {time.time() - t0:.0f} s]", file=sys.stderr, flush=True)
    results["targets"] = report.targets(results)
    results["cpu"]["loadavg_end"] = open("/proc/loadavg").read().split()[:3]
    results["wall_s"] = time.time() - started
    print(report.text(results))
    path = (
        Path(args.json)
        if args.json
        else (
            Path(args.out) / f"{args.machine}-{dt.date.today().isoformat()}"
            f"{'-quick' if args.quick else ''}.json"
        )
    )
    write_json(path, results)
    if args.markdown:
        Path(args.markdown).write_text(report.markdown(results, repo_relative(path)) + "\n")
    print(f"\nwrote {repo_relative(path)} ({results['wall_s']:.0f} s)")
    return results


def _portable(argv: list[str] | None) -> list[str]:
    """The command-line arguments with any path reduced by ``repo_relative``."""
    from benchmarks.results_io import repo_relative

    args = sys.argv[1:] if argv is None else argv
    return [repo_relative(a) if os.sep in a else a for a in args]


def _torch_version() -> str | None:
    try:
        import torch
    except ImportError:
        return None
    return torch.__version__


def _cpu_model() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _cores() -> int:
    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
