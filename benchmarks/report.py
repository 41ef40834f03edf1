"""From results to words: ratios to every reference, the targets, text and markdown tables.

python -m benchmarks.report                       # newest full run in benchmarks/results
python -m benchmarks.report results.json --out summary.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

B100, B10 = "784-16-16-10/B=100", "784-30-10/B=10"
HEADLINE, FLOAT32 = "bpjax", "bpjax, float32 images"
# What bpjax is compared with: a row name prefix (the best thread count of it counts).
REFERENCES = (
    ("NumPy matrix", "NumPy matrix"),
    ("plain JAX", "plain JAX"),
    ("PyTorch eager", "PyTorch eager"),
    ("NumPy network.py loop", "NumPy per-example loop (network.py)"),
)
RESULTS = Path(__file__).parent / "results"


def _row(rows: list[dict], name: str) -> dict | None:
    return next((r for r in rows if r["impl"] == name), None)


def _best(rows: list[dict], prefix: str) -> dict | None:
    found = [r for r in rows if r["impl"].startswith(prefix)]
    return min(found, key=lambda r: r["ms"]) if found else None


def _speedup_target(name, rows, prefix, factor, impl: str = HEADLINE) -> dict:
    ref, me = _best(rows, prefix), _row(rows, impl)
    if ref is None or me is None:
        return {"target": name, "met": None, "measured": "not measured"}
    speedup = ref["ms"] / me["ms"]
    return {
        "target": name,
        "met": speedup >= factor,
        "measured": f"{speedup:.2f}x ({me['ms']:.1f} ms vs {ref['impl']} {ref['ms']:.1f} ms)",
    }


def ratios(results: dict) -> list[dict]:
    """For each problem and each bpjax input form users run (packed, float32): how many times
    faster than each reference at its best thread count (> 1: bpjax is faster)."""
    out = []
    for name, e in results.get("sgd_epoch", {}).items():
        if not isinstance(e, dict):
            continue
        for impl in (HEADLINE, FLOAT32):
            me = _row(e["rows"], impl)
            if me is None:
                continue
            row = {"problem": name, "impl": impl, "ms": me["ms"]}
            for label, prefix in REFERENCES:
                ref = _best(e["rows"], prefix)
                row[label] = None if ref is None else ref["ms"] / me["ms"]
            out.append(row)
    return out


def targets(results: dict) -> list[dict]:
    """Each target of the issue with the measured value and met / not met (None: not measured)."""
    out = []
    epochs = results.get("sgd_epoch", {})
    if B100 in epochs:
        rows = epochs[B100]["rows"]
        ms = _row(rows, "bpjax")["ms"]
        out.append(
            {
                "target": "SGD epoch 784-16-16-10, B=100: <= 60 ms",
                "met": ms <= 60,
                "measured": f"{ms:.1f} ms",
            }
        )
        out.append(_speedup_target("B=100: >= 2.5x NumPy matrix", rows, "NumPy matrix", 2.5))
        out.append(_speedup_target("B=100: >= 1.5x plain JAX", rows, "plain JAX", 1.5))
        out.append(
            _speedup_target(
                "B=100, float32 images: >= 2.5x NumPy matrix", rows, "NumPy matrix", 2.5, FLOAT32
            )
        )
        out.append(
            _speedup_target(
                "B=100, float32 images: >= 1.5x plain JAX", rows, "plain JAX", 1.5, FLOAT32
            )
        )
        out.append(
            _speedup_target(
                "B=100: >= 50x NumPy per-example loop (network.py)",
                rows,
                "NumPy per-example loop (network.py)",
                50,
            )
        )
        out.append(_speedup_target("B=100: >= 10x PyTorch eager", rows, "PyTorch eager", 10))
    if B10 in epochs:
        rows = epochs[B10]["rows"]
        out.append(
            _speedup_target("784-30-10, B=10: >= 2.5x NumPy matrix", rows, "NumPy matrix", 2.5)
        )
        out.append(
            _speedup_target(
                "B=10, float32 images: >= 2.5x NumPy matrix", rows, "NumPy matrix", 2.5, FLOAT32
            )
        )
        out.append(
            _speedup_target(
                "B=10: >= 20x NumPy per-example loop (network.py)",
                rows,
                "NumPy per-example loop (network.py)",
                20,
            )
        )
        out.append(_speedup_target("B=10: >= 20x PyTorch eager", rows, "PyTorch eager", 20))
    for name, e in epochs.items():
        if not isinstance(e, dict):
            continue
        ratio = e["time_vs_batched_gradient"].get("bpjax, vmap(grad) factored")
        if ratio is not None:
            out.append(
                {
                    "target": f"{name}: training through per-example vmap(grad) wish lists "
                    "within 1.1x of the batched gradient",
                    "met": ratio <= 1.1,
                    "measured": f"{ratio:.3f}x",
                }
            )
    if "full_batch" in results:
        ms = _row(results["full_batch"]["rows"], "bpjax")["ms"]
        out.append(
            {
                "target": "full-batch GD step, 60,000 examples: <= 60 ms",
                "met": ms <= 60,
                "measured": f"{ms:.1f} ms",
            }
        )
    if "sweep" in results:
        sw = results["sweep"]
        out.append(
            {
                "target": f"{sw['runs']}-run vmapped sweep >= 3x sequential",
                "met": sw["speedup"] >= 3,
                "measured": f"{sw['speedup']:.2f}x ({sw['vmapped_s']:.2f} s vs "
                f"{sw['sequential_s']:.2f} s; GEMM-peak bound "
                f"{sw['bound_at_gemm_peak']:.2f}x)",
            }
        )
    if "time_to_accuracy" in results:
        t = results["time_to_accuracy"].get("median_s")
        out.append(
            {
                "target": "95% test accuracy within 5 s of process start",
                "met": None if t is None else t <= 5,
                "measured": "not reached" if t is None else f"{t:.2f} s",
            }
        )
    return out


def _fmt_epoch_table(name: str, e: dict) -> list[str]:
    lines = [
        f"SGD epoch {name} ({e['examples']:,} examples, {e['gflop']:.2f} GFLOP)",
        f"  {'implementation':42s} {'ms':>9s} {'ex/s':>10s} {'GFLOP/s':>8s} {'%peak':>6s}"
        f" {'x bpjax':>8s}  note",
    ]
    for r in e["rows"]:
        lines.append(
            f"  {r['impl']:42s} {r['ms']:9.1f} {r['examples_per_s']:10.3g} "
            f"{r['gflops']:8.1f} {r['pct_peak']:6.1f} {r['bpjax_speedup']:8.2f}  "
            f"{r['note']}"
        )
    return lines


def text(results: dict) -> str:
    """The terminal report: every table, then the targets."""
    lines = []
    peak = results.get("gemm_peak")
    if peak:
        lines.append(
            f"GEMM peak ({peak['n']}^3 float32): XLA {peak['jax']:.0f}, NumPy "
            f"{peak['numpy']:.0f} GFLOP/s -> peak {peak['peak']:.0f}"
        )
    for name, e in results.get("sgd_epoch", {}).items():
        if isinstance(e, dict):
            lines += [""] + _fmt_epoch_table(name, e)
        else:
            lines += ["", f"PyTorch: {e}"]
    rat = ratios(results)
    if rat:
        lines += [
            "",
            "bpjax is N times faster than each reference (its best thread count):",
            f"  {'problem':20s} {'bpjax input':22s} "
            + " ".join(f"{label:>14s}" for label, _ in REFERENCES),
        ]
        for r in rat:
            lines.append(
                f"  {r['problem']:20s} {r['impl']:22s} "
                + " ".join(
                    f"{'--' if r[label] is None else format(r[label], '.2f'):>14s}"
                    for label, _ in REFERENCES
                )
            )
    if "shuffle" in results:
        lines += ["", "Shuffle (one jitted permutation)"]
        for r in results["shuffle"]["rows"]:
            lines.append(
                f"  n={r['n']:>9,}: bpjax.data.shuffle {r['bpjax_shuffle_ms']:8.2f} ms, "
                f"jax.random.permutation {r['jax_permutation_ms']:8.2f} ms "
                f"-> {r['speedup']:.2f}x"
            )
    if "full_batch" in results:
        fb = results["full_batch"]
        lines += [
            "",
            f"Full-batch GD step ({fb['examples']:,} examples)",
            f"  {'implementation':42s} {'ms':>9s} {'GFLOP/s':>8s} {'%peak':>6s} {'x bpjax':>8s}",
        ]
        for r in fb["rows"]:
            lines.append(
                f"  {r['impl']:42s} {r['ms']:9.1f} {r['gflops']:8.1f} "
                f"{r['pct_peak']:6.1f} {r['bpjax_speedup']:8.2f}"
            )
    if "compile" in results:
        lines += ["", "Compile time of the epoch (fresh function)"]
        for name, c in results["compile"].items():
            lines.append(
                f"  {name:24s} trace+lower {c['trace_lower_s']:.2f} s, "
                f"XLA compile {c['compile_s']:.2f} s"
            )
    if "scaling" in results:
        sc = results["scaling"]
        lines += ["", f"Scaling ({sc['note']})"]
        for axis in ("examples", "width", "batch_size"):
            for e in sc[axis]:
                b, n = e["bpjax"], e["NumPy matrix, 1 thr"]
                lines.append(
                    f"  {axis:10s} {e['value']:>6}: bpjax {b['ms']:8.1f} ms "
                    f"({b['us_per_example']:6.2f} us/ex, {b['pct_peak']:5.1f}% peak)  "
                    f"NumPy {n['ms']:8.1f} ms  -> {e['bpjax_speedup']:.2f}x"
                )
    if "sweep" in results:
        sw = results["sweep"]
        lines += [
            "",
            f"Sweep of {sw['runs']} runs, one epoch each ({sw['source']}): vmapped "
            f"{sw['vmapped_s']:.2f} s, sequential {sw['sequential_s']:.2f} s -> "
            f"{sw['speedup']:.2f}x ({sw['vmapped_pct_peak']:.0f}% of GEMM peak; bound "
            f"{sw['bound_at_gemm_peak']:.2f}x)",
        ]
    if "time_to_accuracy" in results:
        t = results["time_to_accuracy"]
        if "error" in t:
            lines += ["", f"Time to accuracy: failed: {t['error'][-300:]}"]
        else:
            runs = ", ".join(
                f"{r['seconds_to_target']:.2f} s"
                if r["reached"]
                else f"not reached ({r['epochs']} epochs, {r['history'][-1]['t']:.2f} s)"
                for r in t["runs"]
            )
            lines += ["", f"Time from process start to {t['target']:.0%} test accuracy: {runs}"]
    if "devices" in results:
        d = results["devices"]
        if "error" in d:
            lines += ["", f"Devices: failed: {d['error'][-300:]}"]
        else:
            lines += ["", f"Data-parallel step time vs CPU devices ({d['note']})"]
            for r in d["rows"]:
                lines.append(
                    f"  {r['data_layout']:10s} {r['devices']} device(s): "
                    f"{r['us_per_step']:7.1f} us/step, {r['ms_per_epoch']:7.1f} ms/epoch"
                )
    if "ablation" in results:
        lines += ["", "Each change to bpjax.train, added in turn (ms per epoch)"]
        for name, rows in results["ablation"].items():
            if name == "note":
                continue
            lines.append(f"  {name}")
            for r in rows:
                lines.append(f"    {r['ms']:8.1f}  ({r['vs_previous']:.2f}x)  {r['change']}")
    lines += [
        "",
        "Targets"
        + (
            " (quick mode: small data, not the issue's measurements)"
            if results.get("quick")
            else ""
        ),
    ]
    for t in results.get("targets", []):
        mark = {True: "MET    ", False: "NOT MET", None: "  --   "}[t["met"]]
        lines.append(f"  [{mark}] {t['target']}: {t['measured']}")
    return "\n".join(lines)


def markdown(results: dict, source: str = "") -> str:
    """The compact summary as markdown: ratios, epoch tables, shuffle, full batch, ablation,
    targets; ``source`` names the results file it came from."""
    settings = results.get("settings", {})
    versions = results.get("versions", {})
    cpu = results.get("cpu", {})
    out = [
        "# Benchmark summary",
        "",
        f"Generated by `python -m benchmarks.report` from `{source or 'the results'}`"
        f" ({results.get('date', '?')}, {'quick smoke run, ' if results.get('quick') else ''}"
        f"{settings.get('threads', '?')} XLA thread(s), {settings.get('examples', '?'):,} "
        f"examples, jax {versions.get('jax', '?')}, CPU {cpu.get('model')}"
        f"). Times are medians of {settings.get('repeats', '?')} interleaved rounds; load "
        f"average {cpu.get('loadavg_start', ['?'])[0]} at the start, "
        f"{cpu.get('loadavg_end', ['?'])[0]} at the end, on {cpu.get('cores', '?')} cores.",
        "",
    ]
    rat = ratios(results)
    if rat:
        out += [
            "**bpjax vs the references** (times faster; each reference at its best thread count)",
            "",
            "| problem | bpjax input | ms / epoch | "
            + " | ".join(label for label, _ in REFERENCES)
            + " |",
            "|---|---|---:|" + "---:|" * len(REFERENCES),
        ]
        for r in rat:
            out.append(
                f"| {r['problem']} | {r['impl']} | {r['ms']:.1f} | "
                + " | ".join(
                    "–" if r[label] is None else f"{r[label]:.2f}" for label, _ in REFERENCES
                )
                + " |"
            )
        out.append("")
    for name, e in results.get("sgd_epoch", {}).items():
        if not isinstance(e, dict):
            continue
        out += [
            f"**SGD epoch {name}** ({e['examples']:,} examples, {e['gflop']:.2f} GFLOP)",
            "",
            "| implementation | ms / epoch | examples/s | GFLOP/s | % peak | time / bpjax |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for r in e["rows"]:
            note = f" ({r['note']})" if r["note"] else ""
            out.append(
                f"| {r['impl']}{note} | {r['ms']:.1f} | {r['examples_per_s']:,.0f} | "
                f"{r['gflops']:.1f} | {r['pct_peak']:.1f} | {r['bpjax_speedup']:.2f} |"
            )
        out.append("")
    if "shuffle" in results:
        out += [
            "**Shuffle** (one jitted permutation)",
            "",
            "| n | bpjax.data.shuffle ms | jax.random.permutation ms | speed-up |",
            "|---:|---:|---:|---:|",
        ]
        for r in results["shuffle"]["rows"]:
            out.append(
                f"| {r['n']:,} | {r['bpjax_shuffle_ms']:.2f} | "
                f"{r['jax_permutation_ms']:.2f} | {r['speedup']:.2f} |"
            )
        out.append("")
    if "full_batch" in results:
        fb = results["full_batch"]
        out += [
            f"**Full-batch GD step** ({fb['examples']:,} examples)",
            "",
            "| implementation | ms / step | GFLOP/s | % peak | time / bpjax |",
            "|---|---:|---:|---:|---:|",
        ]
        for r in fb["rows"]:
            out.append(
                f"| {r['impl']} | {r['ms']:.1f} | {r['gflops']:.1f} | "
                f"{r['pct_peak']:.1f} | {r['bpjax_speedup']:.2f} |"
            )
        out.append("")
    for name, rows in results.get("ablation", {}).items():
        if name == "note":
            continue
        out += [
            f"**Each change, added in turn** ({name})",
            "",
            "| change | ms / epoch | vs previous |",
            "|---|---:|---:|",
        ]
        out += [f"| {r['change']} | {r['ms']:.1f} | {r['vs_previous']:.2f} |" for r in rows]
        out.append("")
    out += ["**Targets**", "", "| target | measured | met |", "|---|---|---|"]
    for t in results.get("targets", []):
        met = {True: "yes", False: "**no**", None: "–"}[t["met"]]
        out.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(out)


def newest_results(directory: Path = RESULTS) -> Path:
    """The newest full (not ``-quick``) results file in ``directory``."""
    files = sorted(
        (p for p in directory.glob("*.json") if not p.stem.endswith("-quick")),
        key=lambda p: json.loads(p.read_text()).get("date", ""),
    )
    if not files:
        raise FileNotFoundError(f"no results in {directory}: run python -m benchmarks.run")
    return files[-1]


def main(argv: list[str] | None = None) -> str:
    from benchmarks.results_io import repo_relative

    parser = argparse.ArgumentParser(description="Markdown summary of a benchmark results file")
    parser.add_argument(
        "results",
        nargs="?",
        default=None,
        help="results JSON (default: the newest full run in benchmarks/results)",
    )
    parser.add_argument("--out", default=None, help="write the markdown here (default: stdout)")
    args = parser.parse_args(argv)
    path = Path(args.results) if args.results else newest_results()
    text = markdown(json.loads(path.read_text()), repo_relative(path)) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return text


if __name__ == "__main__":
    main()
