"""Data parallelism (bpjax.distributed, experiments.train_distributed) vs the single-device run.

Device flags and jax.distributed only take effect before JAX starts, so the multi-device checks
run in subprocesses: one with 8 forced CPU devices (tests/distributed_worker.py, which prints its
measurements as JSON), two processes joined by jax.distributed on 127.0.0.1 (2 CPU devices
each, gloo collectives), and a killed and resumed run on 2 devices. Every subprocess is bounded
by a timeout. The experiment's flags are checked in process, before JAX would start.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import train
from experiments import train_distributed as td
from tests.helpers import made_once

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 900  # the 8-device worker compiles a dozen programs
TOL = 1e-5  # float32, reductions in another order; a wrong scale of the gradient is ~1x off


def env() -> dict[str, str]:
    e = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    # The suite's XLA flags (tests/conftest.py: cheap compiles) stay; a device count goes, as
    # the subprocesses set their own.
    flags = [
        f
        for f in e.pop("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    if flags:
        e["XLA_FLAGS"] = " ".join(flags)
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rel_err(a: dict, b: dict) -> float:
    return max(np.abs(a[k] - b[k]).max() for k in b) / max(np.abs(b[k]).max() for k in b)


@pytest.fixture(scope="module")
def eight(tmp_path_factory):
    """The worker's measurements, run once per session (whichever xdist worker asks first)."""

    def run_worker(out):
        done = subprocess.run(
            [sys.executable, str(ROOT / "tests" / "distributed_worker.py"), str(out)],
            cwd=ROOT,
            env=env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    return made_once(tmp_path_factory, "distributed_eight", run_worker)[1]


@pytest.mark.slow
def test_eight_devices_exist_and_training_moves_the_params(eight):
    assert eight["n_devices"] == 8
    assert eight["moved"] > 0.1  # otherwise "equal to the reference" would prove little


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["sharded", "replicated"])
def test_sharded_sgd_matches_single_device(eight, layout):
    r = eight[layout]
    assert r["params_rel_err"] < TOL
    assert r["cost_max_abs_err"] < 1e-5
    assert r["x_spec"] == ("P('data',)" if layout == "sharded" else "P()")
    # the unchanged train step was traced on a batch split over the data axis, params whole
    assert r["step_saw"] == {
        "xb": "float32[16@data,20]",
        "yb": "float32[16@data,10]",
        "w": "float32[8,20]",
    }
    assert r["params_replicated"] and r["params_devices"] == 8


@pytest.mark.slow
def test_the_compiler_inserts_the_gradient_all_reduce(eight):
    assert eight["replicated_hlo_all_reduces"] >= 1


@pytest.mark.slow
def test_the_grad_then_pmean_pitfall_is_8x_off_so_the_match_above_excludes_it(eight):
    # shard_map + grad + pmean moves the params 8x as far as the true mean gradient does: a
    # relative error of ~7, far outside the tolerance the sharded runs above meet
    assert abs(eight["grad_then_pmean_update_ratio"] - 8) < 1e-3


@pytest.mark.slow
def test_batch_size_must_divide_by_the_device_count(eight):
    assert "12" in eight["bad_batch_error"] and "8 devices" in eight["bad_batch_error"]
    status, line = eight["cli_bad_batch"]
    assert status == 2 and line.startswith("train_distributed: error: ")
    assert "12" in line and "8 devices" in line and not eight["cli_bad_batch_wrote"]


@pytest.mark.slow
@pytest.mark.parametrize("layout, x_spec", [("sharded", "P('data',)"), ("replicated", "P()")])
def test_experiment_on_eight_devices_matches_experiments_train(eight, layout, x_spec):
    cli = eight[f"cli_{layout}"]
    assert cli["n_used"] == 256 and cli["local_rows"] == [0, 256] and cli["devices"] == 8
    assert cli["x_spec"] == x_spec
    assert cli["params_rel_err"] < TOL


@pytest.mark.slow
def test_train_limit_is_rounded_down_to_the_device_count(eight):
    assert eight["cli_limited_n_used"] == 100 - 100 % 8


@pytest.mark.slow
def test_time_epoch_runs_on_a_sub_mesh(eight):
    row = eight["time_epoch"]
    assert row["n_devices"] == 2 and row["steps"] == 128 // 16 and row["seconds_per_step"] > 0


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "-1"], "--lr"),
        (["--lr", "0"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--sizes", "784,x"], "--sizes"),
        (["--sizes", "785,10"], "--sizes"),
        (["--init-timeout", "-1"], "--init-timeout"),
        (["--init-timeout", "3601"], "--init-timeout"),
        (["--cpu-devices", "-1"], "--cpu-devices"),
        (["--train-limit", "-1"], "--train-limit"),
        (["--data-layout", "rows"], "--data-layout"),
        (["--process-id", "0"], "need --distributed"),
        (["--distributed", "--num-processes", "2"], "give all of"),
        (
            ["--distributed", "--coordinator", "h:1", "--num-processes", "2", "--process-id", "2"],
            "--process-id must be in [0, 2)",
        ),
        (
            ["--distributed", "--coordinator", "h", "--num-processes", "2", "--process-id", "0"],
            "HOST:PORT",
        ),
        (["--distributed", "--resume", "somewhere"], "keeps no checkpoints"),
        (["--hidden", "nope"], "nope"),
        (["--plugins", "no_such_module_xyz"], "no_such_module_xyz"),
    ],
)
def test_bad_flags_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        td.main([*args, "--out", str(out)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith("train_distributed: error: ") and needle in err
    assert not out.exists()


def run_cli(*args, env_extra=None):
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.train_distributed", *map(str, args)],
        cwd=ROOT,
        env={**env(), **(env_extra or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.slow
def test_killed_run_on_two_devices_resumes_bit_identically(tmp_path):
    args = [
        "--quick",
        "--validation",
        "3800",
        "--batch-size",
        "20",
        "--cpu-devices",
        "2",
        "--checkpoint-every",
        "1",
    ]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    done = run_cli(*args, "--out", whole)
    assert done.communicate(timeout=TIMEOUT_S) and done.returncode == 0
    proc = run_cli(*args, "--out", killed, env_extra={"BPJAX_TEST_PAUSE_AT": "2"})
    try:
        while "paused at 2" not in (line := proc.stderr.readline()):
            assert line, "the run ended before pausing"
        proc.kill()
    finally:
        proc.kill()
        proc.communicate()  # closes the pipes, which left open would warn
    resumed = run_cli("--resume", killed)
    _, err = resumed.communicate(timeout=TIMEOUT_S)
    assert resumed.returncode == 0 and "resuming from checkpoint 1" in err, err
    runs = [json.loads((d / "results.json").read_text()) for d in (whole, killed)]
    assert runs[1]["devices"] == runs[0]["devices"] and len(runs[0]["devices"]) == 2
    histories = [
        [{k: v for k, v in row.items() if k != "train_time_s"} for row in r["history"]]
        for r in runs
    ]
    assert histories[0] == histories[1]
    a, b = np.load(whole / "params.npz"), np.load(killed / "params.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


# 1002 of the 4000 mnist5k training rows (the rest is validation); over 4 devices the global
# array is the first 1000, the same rows as experiments.train with --validation 3000.
SHARED_ARGS = [
    "--quick",
    "--batch-size",
    "100",
    "--epochs",
    "2",
    "--sizes",
    "784,8,10",
    "--seed",
    "2",
]
RUN_ARGS = [*SHARED_ARGS, "--validation", "2998", "--train-limit", "1002"]
TRAIN_ARGS = [*SHARED_ARGS, "--validation", "3000"]


@pytest.mark.slow
def test_two_processes_match_experiments_train(tmp_path):
    port = free_port()
    cmd = [
        *RUN_ARGS,
        "--cpu-devices",
        "2",
        "--distributed",
        "--coordinator",
        f"127.0.0.1:{port}",
        "--num-processes",
        "2",
        "--init-timeout",
        "60",
        "--out",
        tmp_path / "dist",
    ]
    procs = [run_cli(*cmd, "--process-id", p) for p in range(2)]
    try:
        train.main([*TRAIN_ARGS, "--out", str(tmp_path / "train")])
        logs = [p.communicate(timeout=TIMEOUT_S)[1] for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, log in zip(procs, logs, strict=True):
        assert p.returncode == 0, log[-3000:]

    runs = [tmp_path / "dist" / f"process{p}" for p in range(2)]
    results = [json.loads((d / "results.json").read_text()) for d in runs]
    params = [dict(np.load(d / "params.npz")) for d in runs]
    ref = dict(np.load(tmp_path / "train" / "params.npz"))
    # each process loaded only its own half of the rows, and kept no checkpoints
    assert [r["local_rows"] for r in results] == [[0, 500], [500, 1000]]
    assert all(r["process_count"] == 2 and len(r["devices"]) == 4 for r in results)
    assert not any((d / "checkpoints").exists() for d in runs)
    # both processes end with bit-identical params and report the same costs
    assert all(np.array_equal(params[0][k], params[1][k]) for k in params[0])
    costs = [[e["step_cost"] for e in r["history"]] for r in results]
    assert costs[0] == costs[1]
    # ... equal, up to float rounding, to experiments.train on one device
    train_costs = [
        e["step_cost"]
        for e in json.loads((tmp_path / "train" / "results.json").read_text())["history"]
    ]
    assert rel_err(params[0], ref) < TOL
    np.testing.assert_allclose(costs[0], train_costs, rtol=1e-5)
