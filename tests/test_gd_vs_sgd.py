"""The main experiment end to end (quick mode, the embedded data set, in tmp_path)."""

import json

import numpy as np
import pytest

from experiments import gd_vs_sgd
from tests.helpers import tiered

ARGS = ["--quick", "--source", "mnist5k", "--epochs", "2", "--path-every", "20"]


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """Two runs of ``ARGS`` (in process): their directories and results. Only the first draws
    its plots; the second is there for its numbers."""
    dirs = [tmp_path_factory.mktemp("run") / "out" for _ in range(2)]
    results = [gd_vs_sgd.main([*ARGS, "--out", str(dirs[0])])]
    results.append(gd_vs_sgd.main(["--no-plots", *ARGS, "--out", str(dirs[1])]))
    return dirs, results


@pytest.mark.slow  # the experiment end to end
def test_quick_run_writes_every_file_with_the_expected_keys(two_runs):
    (run_dir, _), _ = two_runs
    for name in (
        "config.json",
        "results.json",
        "cost_vs_epoch.png",
        "cost_vs_time.png",
        "accuracy_vs_epoch.png",
        "trajectories.png",
    ):
        assert (run_dir / name).stat().st_size > 0, name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["config"]["seed"] == 0 and config["versions"]["jax"]
    assert config["data"]["source"].startswith("mnist5k")
    results = json.loads((run_dir / "results.json").read_text())
    history = results["history"]
    for name in ("sgd", "gd"):
        assert [r["epoch"] for r in history[name]] == [1, 2]
        assert set(history[name][0]) >= {
            "step_cost",
            "train_cost",
            "test_cost",
            "test_accuracy",
            "examples",
            "train_time_s",
        }
    assert results["steps_per_epoch"] == {"sgd": 4000 // 100, "gd": 1}
    assert history["gd"][-1]["examples"] == history["sgd"][-1]["examples"] == 2 * 4000
    assert len(history["sgd"][0]["minibatch_cost"]) == 40 // 20
    # SGD takes 40 steps an epoch, GD one: after two epochs SGD is far ahead
    assert history["sgd"][-1]["train_cost"] < history["gd"][-1]["train_cost"]
    for phase in ("data", "setup", "compile", "train", "evaluation", "trajectory", "plots"):
        assert results["timing_s"][phase] > 0, phase
    traj = results["trajectory"]
    assert len(traj["whole"]["coords"]["sgd"]) == 3 and len(traj["whole"]["cost"]) == 21
    # SGD's first epoch every 20 steps: the start and 2 snapshots
    assert len(traj["start"]["coords"]["sgd_first_epoch"]) == 1 + 40 // 20


@pytest.mark.slow  # the experiment end to end
def test_the_first_epoch_path_ends_where_sgds_first_epoch_ends(two_runs):
    """The path is recorded by the training epoch itself: projected on the whole run's plane,
    its last point (after all 40 steps) is SGD's epoch-1 snapshot."""
    (run_dir, _), _ = two_runs
    coords = json.loads((run_dir / "results.json").read_text())["trajectory"]["whole"]["coords"]
    np.testing.assert_allclose(coords["sgd_first_epoch"][-1], coords["sgd"][1], atol=1e-4)
    np.testing.assert_allclose(coords["sgd_first_epoch"][0], coords["sgd"][0], atol=1e-6)


@pytest.mark.slow  # the experiment end to end
def test_same_seed_gives_identical_results(two_runs):
    _, (a, b) = two_runs
    strip = ("train_time_s",)
    for name in ("sgd", "gd"):
        for ra, rb in zip(a["history"][name], b["history"][name], strict=True):
            assert {k: v for k, v in ra.items() if k not in strip} == {
                k: v for k, v in rb.items() if k not in strip
            }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--epochs", "0"], "--epochs must be >= 1"),
        (["--gd-lr", "-1"], "--gd-lr must be a finite number > 0"),
        (["--path-every", "0"], "--path-every must be >= 1"),
        (["--sizes", "784,16,9"], "end with 10"),
        (["--to-target"], "--to-target tunes and measures on a validation split"),
        (["--gd-budget", "0"], "--gd-budget must be >= 1"),
        (["--sgd-lrs", "1,-3"], "--sgd-lrs must be a finite number > 0"),
    ],
)
def test_bad_flags_exit_2_with_a_message(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        gd_vs_sgd.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # the experiment end to end
def test_an_existing_output_directory_is_not_overwritten(two_runs, capsys):
    (run_dir, _), _ = two_runs
    with pytest.raises(SystemExit):
        gd_vs_sgd.main([*ARGS, "--out", str(run_dir)])
    assert "not empty" in capsys.readouterr().err


@pytest.mark.slow  # the experiment end to end
def test_equal_time_gives_gd_sgds_training_time(tmp_path):
    results = gd_vs_sgd.main([*ARGS, "--equal-time", "--out", str(tmp_path / "run")])
    budget = results["history"]["sgd"][-1]["train_time_s"]
    rows = results["history"]["gd_equal_time"]
    assert rows[-1]["train_time_s"] >= budget
    assert len(rows) == 1 or rows[-2]["train_time_s"] < budget


def _cli(*args, env=None):
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(
        [sys.executable, "-m", "experiments.gd_vs_sgd", *map(str, args)],
        cwd=root,
        env={**os.environ, **(env or {})},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _without_times(rows):
    return [{k: v for k, v in r.items() if k != "train_time_s"} for r in rows]


@pytest.mark.slow
def test_killed_in_the_gd_phase_and_resumed_is_bit_identical(two_runs, tmp_path):
    """kill -9 at GD step 1 (checkpoint 2 + 1 = 3 not yet written), then --resume. The
    uninterrupted run is ``two_runs``'s: checkpoints do not change the numbers."""
    from test_runtime import paused_run

    _, (whole, _) = two_runs
    killed = tmp_path / "killed"
    with paused_run(*ARGS, "--checkpoint-every", "1", "--out", killed, at=3, module="gd_vs_sgd"):
        pass
    resumed = gd_vs_sgd.main(["--no-plots", "--resume", str(killed)])
    for name in ("sgd", "gd"):
        assert _without_times(whole["history"][name]) == _without_times(resumed["history"][name])
    for name in ("gd", "sgd_first_epoch"):  # the first-epoch path comes from the checkpoint
        np.testing.assert_array_equal(
            resumed["trajectory"]["whole"]["coords"][name],
            whole["trajectory"]["whole"]["coords"][name],
        )


@pytest.mark.slow
def test_a_diverging_gd_phase_exits_3_keeping_its_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    proc = _cli(
        "--quick",
        "--source",
        "mnist5k",
        "--hidden",
        "identity",
        "--output",
        "identity",
        "--lr",
        "0.0003",
        "--gd-lr",
        "3",
        "--epochs",
        "8",
        "--checkpoint-every",
        "1",
        "--out",
        out,
    )
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 3, err
    last = err.strip().splitlines()[-1]
    assert "GD diverged in epoch 3" in last and "--gd-lr 3.0" in last and "Traceback" not in err
    assert "checkpoint 10" in last and (out / "checkpoints" / "10").is_dir()
    assert not (out / "results.json").exists()


@pytest.mark.parametrize(
    "splits",
    tiered([("test",), ("train", "validation", "test")], [("train", "validation", "test")]),
)
def test_the_evaluator_gives_each_splits_own_numbers_bit_for_bit(key, splits):
    """One program for every split: the numbers of bpjax.train.evaluate on each split alone."""
    import bpjax
    from bpjax import train
    from bpjax.data import load_mnist
    from experiments.runtime import evaluation

    data = evaluation.device_data(load_mnist(source="mnist5k", validation=500, verbose=False))
    params = bpjax.init_params(key, (784, 16, 16, 10))
    spec = bpjax.Spec()
    evaluate = evaluation.make_evaluator(data, spec, splits)
    assert evaluate.compile(params) >= 0
    row = evaluate(params)
    alone = train.make_evaluate(spec=spec)
    assert set(row) == {f"{s}_{m}" for s in splits for m in ("cost", "accuracy")}
    for split in splits:
        m = alone(params, *data[split])
        assert row[f"{split}_cost"] == float(m["cost"])
        assert row[f"{split}_accuracy"] == float(m["accuracy"])


@pytest.mark.slow  # the experiment end to end
def test_compiles_inside_a_phase_are_counted_as_compile_not_in_the_phase(tmp_path):
    import jax
    import jax.numpy as jnp

    from experiments.runtime import compile_time
    from experiments.runtime.context import Context

    ctx = Context(None, None, tmp_path, None, False)
    fn = jax.jit(lambda a: jnp.sin(a) * 3.0 + 1.0)  # a new program: compiled in the first phase
    for name in ("first", "again"):
        with compile_time.phase(ctx, name):
            fn(jnp.ones(5)).block_until_ready()
        if name == "first":
            compiled = ctx.timing["compile"]
    assert compiled > 0 and ctx.timing["compile"] == compiled  # the second call compiled nothing
    assert ctx.timing["first"] >= 0 and ctx.timing["again"] > 0


@pytest.mark.parametrize("total, cap", [(1, 1), (7, 2), (100, 16), (1000, 64), (5, 100)])
def test_evaluation_intervals_double_every_two_evaluations_up_to_the_cap(total, cap):
    from experiments.runtime.compute_to_target import intervals

    ks = intervals(total, cap)
    assert sum(ks) == total and max(ks) <= cap and ks[0] == 1
    for i in range(1, len(ks) - 1):  # the last one is cut to the total
        assert ks[i] == min(cap, 2 ** (i // 2))


@pytest.mark.parametrize(
    "level, want",
    [
        (0.9, (True, 100 + 100 * 2 / 3)),
        (0.5, (True, 0.0)),
        (0.99, (False, 200.0)),
        (0.7, (True, 50.0)),
    ],
)
def test_compute_to_a_level_is_interpolated_between_evaluations(level, want):
    from experiments.runtime.compute_to_target import reached

    hist = {
        "step": [0, 1, 2],
        "examples": [0, 100, 200],
        "seconds": [0.0, 1.0, 2.0],
        "validation_accuracy": [[0.6], [0.8], [0.95]],
    }
    got = reached(hist, level)
    assert (got["reached"], got["examples"]) == pytest.approx(want)
    assert got["seconds"] == pytest.approx(got["examples"] / 100)
    assert got["best"] == 0.95 and got["examples_total"] == 200


# Small enough to be quick, big enough for every phase: --validation 1000 leaves 3,000 training
# digits, 30 SGD steps an epoch.
TO_TARGET = [
    *ARGS,
    "--to-target",
    "--validation",
    "1000",
    "--gd-budget",
    "20",
    "--sgd-lrs",
    "1,6",
    "--gd-lrs",
    "0.3,3",
]


@pytest.fixture(scope="module")
def to_target_run(tmp_path_factory):
    """One uninterrupted ``TO_TARGET`` run (in process): its directory and results."""
    out = tmp_path_factory.mktemp("to_target") / "run"
    return out, gd_vs_sgd.main([*TO_TARGET, "--out", str(out)])


@pytest.mark.slow
def test_to_target_tunes_on_validation_and_tabulates_compute(to_target_run):
    run_dir, results = to_target_run
    tt = results["to_target"]
    sgd_budget, gd_budget = 2 * 3000 // 100, 20  # SGD: --epochs x steps an epoch
    for arm, lrs, budget in (("sgd", [1.0, 6.0], sgd_budget), ("gd", [0.3, 3.0], gd_budget)):
        sel = tt[f"select_{arm}"]
        assert sel["split"] == "validation" and sel["lrs"] == lrs
        assert sel["chosen"] in lrs and tt["budget_steps"][arm] == budget
        final = np.asarray(sel["history"]["validation_accuracy"][-1])
        assert not np.array_equal(final, sel["history"]["test_accuracy"][-1])
        assert tt[arm]["step"][-1] <= budget and len(tt[arm]["test_accuracy"][0]) == 1
        assert set(tt[arm]) >= {"examples", "seconds", "train_cost", "validation_accuracy"}
        assert tt[arm]["examples"][1] == tt["batch_size"][arm]
    sel = tt["select_sgd"]  # SGD: the highest final validation accuracy wins
    assert sel["values"] == sel["history"]["validation_accuracy"][-1]
    assert sel["chosen"] == sel["lrs"][int(np.argmax(sel["values"]))]
    # the target is the winner's final validation accuracy, which the lone rerun repeats
    assert tt["target"] == max(sel["values"])
    assert tt["sgd"]["validation_accuracy"][-1][0] == pytest.approx(tt["target"], abs=2e-3)
    assert [r["level"] for r in tt["table"]] == [0.9, 0.95]
    for row in tt["table"]:
        for arm in ("sgd", "gd"):
            assert set(row[arm]) >= {"reached", "best", "examples", "seconds"}
    assert "| 90% |" in tt["table_md"] and "| 95% |" in tt["table_md"]
    for name in ("to_target_vs_examples.png", "to_target_vs_time.png"):
        assert (run_dir / name).stat().st_size > 0


@pytest.mark.slow
def test_killed_in_the_to_target_phase_and_resumed_reruns_only_the_cut_phase(
    to_target_run, tmp_path
):
    """kill -9 before checkpoint 2E + 3 (the lone SGD run) is written, then --resume: the
    phases before come from checkpoint 2E + 2, the numbers equal an uninterrupted run's."""
    from test_runtime import paused_run

    _, whole = to_target_run
    killed = tmp_path / "killed"
    with paused_run(*TO_TARGET, "--out", killed, at=7, module="gd_vs_sgd", timeout=900):
        pass
    resumed = gd_vs_sgd.main(["--no-plots", "--resume", str(killed)])
    a, b = whole["to_target"], resumed["to_target"]
    for phase in ("select_sgd", "select_gd"):
        assert a[phase]["values"] == b[phase]["values"]
    for arm in ("sgd", "gd"):
        for key in ("step", "validation_accuracy", "test_accuracy", "train_cost"):
            assert a[arm][key] == b[arm][key], (arm, key)
    assert "to_target_select_sgd" not in resumed["timing_s"]  # restored, not rerun
