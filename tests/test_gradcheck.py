"""bpjax.check_gradients and experiments.gradient_check: they pass correct derivatives and fail
wrong ones, for every allowed combination and for user registrations."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bpjax
from bpjax.gradcheck import FD_TOL, TOL, check_all, random_sizes
from bpjax.spec import Spec, allowed_specs
from tests.helpers import tiered

ROOT = Path(__file__).resolve().parents[1]
BUILT_IN = allowed_specs()  # collected before any test registers more
# One spec per built-in activation and cost: the quick subset of BUILT_IN.
REPRESENTATIVE = [
    Spec(),
    Spec("tanh", "identity", "quadratic_half"),
    Spec("relu", "sigmoid", "cross_entropy"),
    Spec("identity", "softmax", "log_likelihood"),
    Spec("sigmoid", "softmax", "quadratic"),
]

TANH_WRONG = "lambda z: 1 - jnp.tanh(z)"  # forgot the square
TANH_RIGHT = "lambda z: 1 - jnp.tanh(z) ** 2"


def register_tanh(derivative: str) -> str:
    name = f"tanh_{uuid.uuid4().hex[:8]}"
    bpjax.register_activation(name, jnp.tanh, eval(derivative))  # noqa: S307
    return name


@pytest.mark.parametrize("spec", REPRESENTATIVE, ids=str)
@pytest.mark.parametrize(
    "sizes, batch",
    tiered(
        [((3, 2), 1), ((4, 5, 3), 3), ((3, 4, 2, 4, 3), 5)], [((3, 4, 2, 4, 3), 5)], several=True
    ),
)
def test_representative_specs_pass(spec, sizes, batch):
    report = bpjax.check_gradients(spec, sizes, key=jax.random.key(1), batch_size=batch)
    assert report.passed, report
    assert report.spec == spec and report.sizes == sizes and report.batch_size == batch
    assert len(report.per_layer) == len(sizes) - 1
    assert report.hand_vs_autodiff == max(e[0] for e in report.per_layer) <= TOL
    assert report.hand_vs_fd == max(e[1] for e in report.per_layer) <= FD_TOL
    assert (report.tol, report.fd_tol) == (TOL, FD_TOL)


@pytest.mark.slow
@pytest.mark.parametrize("spec", BUILT_IN, ids=str)
def test_every_allowed_combination_passes_on_a_random_architecture(spec):
    """One random architecture per combination (a compile each); the batch size alternates
    between 1 and 4 over the combinations. This is the suite's check of every combination's
    hand gradient (against jax.grad and finite differences); tests/test_backprop.py checks the
    per-example hand gradients of representative specs."""
    seed = sum(map(ord, str(spec)))
    k_sizes, k_check = jax.random.split(jax.random.key(seed))
    batch = (1, 4)[seed % 2]
    report = bpjax.check_gradients(spec, random_sizes(k_sizes), key=k_check, batch_size=batch)
    assert report.passed, report


def test_random_sizes_span_one_to_four_layers():
    sizes = [random_sizes(jax.random.key(i)) for i in range(40)]
    assert {len(s) - 1 for s in sizes} == {1, 2, 3, 4}
    assert all(1 <= w <= 6 for s in sizes for w in s) and all(s[-1] >= 2 for s in sizes)


def test_a_wrong_registered_derivative_fails_and_a_right_one_passes():
    wrong, right = register_tanh(TANH_WRONG), register_tanh(TANH_RIGHT)
    bad = bpjax.check_gradients(Spec(hidden=wrong), (4, 5, 3), key=jax.random.key(0))
    assert not bad.passed
    assert bad.hand_vs_autodiff > 1e-3 and bad.hand_vs_fd > 1e-3
    # Only the first layer sees the hidden derivative: the output layer still agrees.
    assert bad.per_layer[-1][0] <= TOL and bad.per_layer[0][0] > 1e-3
    assert bpjax.check_gradients(Spec(hidden=right), (4, 5, 3), key=jax.random.key(0)).passed
    as_output = bpjax.check_gradients(Spec(output=wrong), (4, 5, 3), key=jax.random.key(0))
    assert not as_output.passed


def test_a_wrong_cost_delta_fails():
    name = f"quad_{uuid.uuid4().hex[:8]}"
    # forgot the factor 2 of sum (a - y)^2
    bpjax.register_cost(
        name, lambda z, a, y: jnp.sum((a - y) ** 2), lambda z, a, y, out: out.vjp(z, a, a - y)
    )
    report = bpjax.check_gradients(Spec(cost=name), (3, 2), key=jax.random.key(0))
    assert not report.passed and report.hand_vs_autodiff == pytest.approx(0.5, rel=1e-6)


@pytest.mark.slow  # every given spec checked
def test_check_all_covers_the_given_specs():
    specs = REPRESENTATIVE[:2]
    reports = check_all(specs, key=jax.random.key(0), architectures=2)
    assert [r.spec for r in reports] == [specs[0], specs[0], specs[1], specs[1]]
    assert all(r.passed for r in reports)
    fixed = check_all(specs[:1], key=jax.random.key(0), sizes=(3, 4, 2))
    assert [r.sizes for r in fixed] == [(3, 4, 2)]


def test_a_nan_fails(monkeypatch):
    name = f"nan_{uuid.uuid4().hex[:8]}"
    bpjax.register_activation(name, jnp.tanh, lambda z: jnp.full_like(z, jnp.nan))
    report = bpjax.check_gradients(Spec(hidden=name), (3, 3, 2), key=jax.random.key(0))
    assert not report.passed and np.isnan(report.hand_vs_autodiff)


def run_cli(args, tmp_path, plugin_source=None):
    env = dict(os.environ)
    paths = [str(ROOT)]
    if plugin_source is not None:
        (tmp_path / "gc_plugin.py").write_text(plugin_source)
        paths.insert(0, str(tmp_path))
    env["PYTHONPATH"] = os.pathsep.join(paths)
    return subprocess.run(
        [sys.executable, "-m", "experiments.gradient_check", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


PLUGIN = f"""import jax.numpy as jnp
import bpjax
bpjax.register_activation("tanh_wrong", jnp.tanh, {TANH_WRONG})
bpjax.register_activation("tanh_right", jnp.tanh, {TANH_RIGHT})
"""


@pytest.mark.slow
def test_cli_exits_1_naming_a_wrong_plugin_and_0_for_a_right_one(tmp_path):
    bad = run_cli(
        ["--plugins", "gc_plugin", "--hidden", "tanh_wrong", "--architectures", "1"],
        tmp_path,
        PLUGIN,
    )
    assert bad.returncode == 1, bad.stderr
    assert "FAILED: tanh_wrong/sigmoid/quadratic" in bad.stdout
    good = run_cli(
        [
            "--plugins",
            "gc_plugin",
            "--hidden",
            "tanh_right",
            "--output",
            "softmax",
            "--cost",
            "log_likelihood",
            "--layer-sizes",
            "4,5,3",
        ],
        tmp_path,
        PLUGIN,
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert "tanh_right/softmax/log_likelihood" in good.stdout and "4-5-3" in good.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["--hidden", "swish"], "unknown activation 'swish'; choose one of"),
        (["--hidden", "softmax"], "output layer only"),
        (["--cost", "log_likelihood"], "needs output activation softmax"),
        (["--plugins", "no_such_plugin_mod"], "cannot import module 'no_such_plugin_mod'"),
        (["--layer-sizes", "4,x"], "--layer-sizes expects int values"),
        (["--layer-sizes", "4"], "--layer-sizes needs at least two sizes"),
        (["--architectures", "0"], "--architectures must be >= 1"),
        (["--examples", "0"], "--examples must be >= 1"),
        (["--seed", "-1"], "--seed must be in"),
        (["--import", "gc_plugin"], "unrecognized arguments: --import"),
    ],
)
def test_cli_bad_arguments_exit_2_with_one_line(args, message, capsys):
    from experiments import gradient_check

    with pytest.raises(SystemExit) as exit_:
        gradient_check.main(args)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gradient_check: error: ") and message in err
    assert err.count("\n") == 1


def test_cli_table_for_one_combination(capsys):
    from experiments import gradient_check

    args = ["--output", "softmax", "--cost", "log_likelihood", "--architectures", "2"]
    assert gradient_check.main(args) == 0
    out = capsys.readouterr().out
    assert out.count("sigmoid/softmax/log_likelihood") == 2
    assert "rel hand-grad" in out and "all 2 checks passed (1 combinations)" in out
