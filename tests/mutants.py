"""Deliberate bugs the test suite must catch: each is applied to the source, the tests named for
it are run, they must fail, and the source is restored (also on Ctrl-C).

    python -m tests.mutants              # every mutant (several minutes)
    python -m tests.mutants --list       # names and what each breaks
    python -m tests.mutants bp1_no_2 ... # only these

A mutant is "caught" when its tests fail (pytest exit code 1) and "SURVIVED" when they pass.
Exit code: 0 if every mutant run was caught. See docs/testing.md for the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]


class Mutant(NamedTuple):
    name: str
    what: str  # the bug, in words
    path: str  # file to mutate, relative to the repository root
    old: str  # text that must occur exactly once in it
    new: str
    tests: tuple[str, ...]  # pytest arguments that select the tests expected to fail


MUTANTS = [
    Mutant(
        "bp1_no_2",
        "BP1 of the quadratic cost without its 2: delta^L = (a - y) f'(z)",
        "bpjax/cost.py",
        "    return output.vjp(z, a, 2 * (a - y))",
        "    return output.vjp(z, a, (a - y))",
        ("tests/test_backprop.py", "-k", "backprop_equals_autodiff_float64"),
    ),
    Mutant(
        "mean_over_b_minus_1",
        "the batch mean of delta^T a divided by B - 1 instead of B",
        "bpjax/backprop.py",
        '{"w": (delta.T @ a_prev) / n,',
        '{"w": (delta.T @ a_prev) / (n - 1),',
        ("tests/test_grads.py", "-k", "per_example_grads_are_each"),
    ),
    Mutant(
        "shuffle_off",
        "the shuffle returns the examples in index order: every epoch the same batches",
        "bpjax/data/batching.py",
        "        order = moved if order is None else order[moved]",
        "        order = position if order is None else order",
        ("tests/test_data_batching.py", "-k", "equally_likely"),
    ),
    Mutant(
        "params_finite_stub",
        "the params finiteness check stubbed to True",
        "bpjax/train.py",
        "    return jnp.all(jnp.isfinite(jnp.stack(peaks))) if peaks else jnp.asarray(True)",
        "    return jnp.asarray(True)",
        ("tests/test_train.py", "tests/test_fit.py", "-k", "non_finite_after or params_overflow"),
    ),
    Mutant(
        "sigmoid_prime_wrong",
        "a wrong activation derivative: s (1 - s)^2",
        "bpjax/activations.py",
        "    return s * (1 - s)\n",
        "    return s * (1 - s) ** 2\n",
        ("tests/test_activations.py", "-k", "f_prime_equals_autodiff"),
    ),
    Mutant(
        "sigmoid_prime_floor",
        "sigma' floored at 1e-6: finite everywhere, wrong when saturated",
        "bpjax/activations.py",
        "    return s * (1 - s)\n",
        "    return jnp.maximum(s * (1 - s), 1e-6)\n",
        ("tests/test_grads.py", "-k", "saturated and backprop"),
    ),
    Mutant(
        "bp4_not_hebbian",
        "BP4 with the squared source activation: dC/dw = delta (a^2)^T",
        "bpjax/backprop.py",
        '{"w": jnp.outer(delta, a_prev), "b": delta}',
        '{"w": jnp.outer(delta, a_prev**2), "b": delta}',
        ("tests/test_backprop.py", "-k", "weight_nudge_is_proportional"),
    ),
    Mutant(
        "mean_grad_first_example",
        "mean_grad (autodiff) differentiates the first example only",
        "bpjax/grads.py",
        "return jax.grad(lambda p: cost(p, xs, ys, spec=spec))(params)",
        "return jax.grad(lambda p: cost(p, xs[:1], ys[:1], spec=spec))(params)",
        ("tests/test_grads.py", "-k", "jitted_mean_grad and autodiff"),
    ),
    Mutant(
        "wish_output_no_2",
        "the quadratic cost's dC/da^L without its 2 (the output wishes)",
        "bpjax/cost.py",
        '    """``dC/da = 2 (a - y)``."""\n    return 2 * (a - y)',
        '    """``dC/da = 2 (a - y)``."""\n    return (a - y)',
        ("tests/test_wish_list.py", "-k", "every_route_against_autodiff_through"),
    ),
    Mutant(
        "wish_route3_abs",
        "route 3 per neuron with |w|: neuron j asks b_j |w_jk|",
        "bpjax/wish_list.py",
        "a_prev_by_neuron=b_nudge[:, None] * w,",
        "a_prev_by_neuron=b_nudge[:, None] * abs(w),",
        ("tests/test_wish_list.py", "-k", "every_route_against_autodiff_through"),
    ),
    Mutant(
        "pca_uncentred",
        "the PCA plane fitted to uncentred snapshots",
        "bpjax/landscape.py",
        "    centred = points - origin[None, :]",
        "    centred = points",
        ("tests/test_landscape.py", "-k", "pca_plane_has_orthonormal"),
    ),
    Mutant(
        "grid_axes_swapped",
        "cost_on_grid walks u along the second axis and v along the first",
        "bpjax/landscape.py",
        "(plane.origin + v * plane.axes[1])[None, :] + us[:, None] * plane.axes[0][None, :]",
        "(plane.origin + v * plane.axes[0])[None, :] + us[:, None] * plane.axes[1][None, :]",
        ("tests/test_landscape.py", "-k", "cost_on_grid"),
    ),
    Mutant(
        "sgd_path_skips_a_step",
        "sgd_path runs every - 1 steps between snapshots",
        "bpjax/landscape.py",
        "carry, _ = jax.lax.scan(inner, carry, chunk)",
        "carry, _ = jax.lax.scan(inner, carry, chunk[1:])",
        ("tests/test_landscape.py", "-k", "sgd_path"),
    ),
    Mutant(
        "download_refused",
        "download=True ignored: no IDX directory is an error anyway",
        "bpjax/data/tfds_source.py",
        "    if idx_dir is None and not download:",
        "    if idx_dir is None:",
        ("tests/test_data_tfds.py", "-m", "slow", "-k", "download_true"),
    ),
    Mutant(
        "select_on_test",
        "the recipe search picks the learning rate with the best TEST accuracy",
        "experiments/recipe_search.py",
        'return max(finite, key=lambda r: np.mean(r["validation"]), default=None)',
        'return max(finite, key=lambda r: np.mean(r["test"]), default=None)',
        ("tests/test_recipe_search.py", "-k", "selection_reads_validation"),
    ),
]


def run(mutant: Mutant) -> str:
    """Apply ``mutant``, run its tests, restore the file; returns the verdict."""
    path = ROOT / mutant.path
    original = path.read_text()
    if original.count(mutant.old) != 1:
        return f"STALE (the text to mutate occurs {original.count(mutant.old)} times)"
    try:
        path.write_text(original.replace(mutant.old, mutant.new))
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-x",
            "-n",
            "0",  # one process: with workers, -x reports an interrupted run (exit 2)
            "-rf",
            "-p",
            "no:cacheprovider",
            *mutant.tests,
        ]
        done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    finally:
        path.write_text(original)
    if done.returncode == 1:
        failed = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("FAILED")]
        return "caught by " + (failed[0] if failed else "?")
    if done.returncode == 0:
        return "SURVIVED"
    return f"ERROR (pytest exit {done.returncode}: {done.stdout.strip().splitlines()[-1:]})"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="mutants to run (default: all)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args(argv)
    by_name = {m.name: m for m in MUTANTS}
    unknown = [n for n in args.names if n not in by_name]
    if unknown:
        parser.error(f"unknown mutant(s) {unknown}; choose from {list(by_name)}")
    chosen = [by_name[n] for n in args.names] or MUTANTS
    if args.list:
        for m in chosen:
            print(f"{m.name:26s} {m.path:28s} {m.what}")
        return 0
    verdicts = {}
    for m in chosen:
        verdicts[m.name] = run(m)
        print(f"{m.name:26s} {verdicts[m.name]}", flush=True)
    return 0 if all(v.startswith("caught") for v in verdicts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
