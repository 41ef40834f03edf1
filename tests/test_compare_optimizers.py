"""``experiments.compare_optimizers``: the choice of the best rate (on validation, never test,
never a diverged run), the --quick sweep end to end, divergence, bad flags, kill -9 + --resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import compare_optimizers as co

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--quick", "--optimizers", "sgd,adam", "--checkpoint-every", "1"]


def cli(*args):
    """``python -m experiments.compare_optimizers ARGS``: its status, stdout and stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "experiments.compare_optimizers", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return done.returncode, done.stdout, done.stderr


def history(lrs, val, test, finite=None):
    """A one-epoch history of runs with the given final accuracies."""
    n = len(lrs)
    finite = [1.0] * n if finite is None else finite
    return {
        "train_cost": [[0.1] * n],
        "finite": [finite],
        "validation_cost": [[0.1] * n],
        "validation_accuracy": [val],
        "test_cost": [[0.1] * n],
        "test_accuracy": [test],
    }


# --- the choice of the best rate (pure) ----------------------------------------------------------


@pytest.mark.parametrize("val_best", [0, 1])
def test_best_rate_is_chosen_on_validation_not_test(val_best):
    """Two rates x two seeds; validation prefers one rate, test the other."""
    lrs = [0.1, 0.1, 1.0, 1.0]
    good, bad = [0.9, 0.92], [0.5, 0.52]
    val = good + bad if val_best == 0 else bad + good
    test = bad + good if val_best == 0 else good + bad  # test disagrees with validation
    s = co.summarize(lrs, history(lrs, val, test), [1.0])
    assert s["best_lr"] == [0.1, 1.0][val_best]
    assert s["validation_mean"] == pytest.approx(np.mean(good))
    assert s["test_mean"] == pytest.approx(np.mean(bad))  # reported, whatever it is
    assert s["best_single_run_test"] == pytest.approx(0.92)


def test_a_diverged_rate_never_wins_even_when_it_evaluates_higher():
    """NaN params evaluate at ~chance (argmax of NaN): a diverged run must not be chosen."""
    lrs = [0.1, 1.0, 10.0]
    s = co.summarize(
        lrs,
        history(lrs, [0.09, 0.11, float("nan")], [0.09, 0.11, 0.1], finite=[1.0, 0.0, 0.0]),
        [1.0],
    )
    assert s["best_lr"] == 0.1 and s["diverged_runs"] == 2
    assert [r["diverged_runs"] for r in s["per_rate"]] == [0, 1, 1]
    assert s["per_rate"][1]["final_test_mean"] is None
    assert s["best_lr_at_grid_edge"]


def test_all_diverged_has_no_best_and_one_rate_is_no_edge():
    lrs = [1.0, 1.0]
    s = co.summarize(lrs, history(lrs, [0.1, 0.1], [0.1, 0.1], finite=[0.0, 0.0]), [1.0])
    assert s["best_lr"] is None and s["best_single_run_test"] is None
    s = co.summarize(lrs, history(lrs, [0.5, 0.6], [0.5, 0.6]), [1.0])
    assert s["best_lr"] == 1.0 and not s["best_lr_at_grid_edge"]


# --- flags ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lrs", "1e39"], "overflows float32"),
        (["--lrs", "-1"], "--lrs"),
        (["--lrs", "0.1,0.1"], "repeat"),
        (["--lrs", "0.1", "--lr-ranges", "sgd=0.1:1"], "not both"),
        (["--lr-ranges", "sgd=1:0.1"], "LO must be <= HI"),
        (["--lr-ranges", "sgd:0.1"], "NAME=LO:HI"),
        (["--lr-ranges", "lion=1e-4:1e-3"], "not among --optimizers"),
        (["--optimizers", "adamm"], "unknown optimizer 'adamm'"),
        (["--optimizers", "sgd,sgd"], "twice"),
        (["--per-optimizer-args", "adam:beta1=0.9"], "no option 'beta1'"),
        (["--per-optimizer-args", "lion:b1=0.9"], "NAME:KEY=VALUE"),
        (["--n-lrs", "0"], "--n-lrs"),
        (["--seeds", "0"], "--seeds"),
        (["--validation", "0"], "never on test"),
        (["--model", "flax", "--method", "backprop"], "--model bpjax"),
        (["--weight-decay", "-1"], "--weight-decay"),
    ],
)
def test_bad_flag_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, needle):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        co.main(["--quick", *args, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("compare_optimizers: error: "), err
    assert needle in err[0]
    assert not out.exists()


# --- end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_run_table_and_results(tmp_path, capsys):
    out = tmp_path / "run"
    co.main(["--quick", "--out", str(out)])
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    names = list(co.optimizers.OPTIMIZERS)
    assert list(res["optimizers"]) == names and [r["optimizer"] for r in res["table"]] == names
    n_runs = 3 * 2  # QUICK: 3 rates x 2 seeds
    for name, row in zip(names, res["table"], strict=True):
        rec = res["optimizers"][name]
        assert rec["learning_rates"] == [
            lr for lr in co.Config(n_lrs=3).lr_grid(name) for _ in range(2)
        ]
        assert rec["seeds"] == [0, 1] * 3 and len(rec["train_time_s"]) == 2
        for metric in ("train_cost", "finite", "validation_accuracy", "test_accuracy"):
            assert np.shape(rec["history"][metric]) == (2, n_runs), metric
        # The table's best rate is the argmax of the seed-mean final validation accuracy.
        val = np.asarray(rec["history"]["validation_accuracy"])[-1].reshape(3, 2).mean(axis=1)
        rates = sorted(set(rec["learning_rates"]))
        s = rec["summary"]
        assert s["best_lr"] == rates[int(np.argmax(val))]
        assert row["best lr"].split()[0] == f"{s['best_lr']:.3g}"
        assert row["val acc"] == f"{100 * val.max():.2f}"
        assert row["diverged"] == f"0/{n_runs}"
        assert f"| {name} " in printed and row["test acc"] in printed
    assert "best lr by validation" in printed
    for png in ("accuracy_vs_epoch.png", "sensitivity.png"):
        assert (out / png).stat().st_size > 1000
        (out / png).unlink()
    assert co.main(["--replot", str(out)]) is None
    assert (out / "sensitivity.png").is_file()


@pytest.mark.slow
def test_an_optimizer_whose_runs_all_diverge_exits_3_with_results(tmp_path):
    out = tmp_path / "run"
    status, stdout, err = cli(
        "--quick",
        "--optimizers",
        "sgd,adam",
        "--n-lrs",
        "1",
        "--lr-ranges",
        "sgd=30:30,adam=0.001:0.001",
        "--hidden",
        "identity",
        "--output",
        "identity",
        "--model",
        "flax",
        "--per-optimizer-args",
        "adam:b1=0.8",
        "--out",
        out,
    )
    assert status == 3, err
    last = err.strip().splitlines()[-1]
    assert "every run of sgd diverged" in last and "adam" not in last.split("diverged")[0]
    assert "Traceback" not in err
    res = json.loads((out / "results.json").read_text())
    assert res["optimizers"]["sgd"]["summary"]["best_lr"] is None
    assert res["optimizers"]["adam"]["summary"]["best_lr"] == pytest.approx(0.001)
    assert [r["diverged"] for r in res["table"]] == ["2/2", "0/2"]
    assert "all diverged" in stdout and (out / "sensitivity.png").is_file()


def _strip(results):
    return {
        name: {k: v for k, v in rec.items() if k != "train_time_s"}
        for name, rec in results["optimizers"].items()
    }


@pytest.mark.slow
def test_kill_9_mid_sweep_then_resume_is_bit_identical(tmp_path, capsys):
    """2 epochs of sgd (steps 1-2) then adam (3-4): killed at 4, before checkpoint 4, the resumed
    run continues adam from epoch 1 (checkpoint 3)."""
    from test_runtime import paused_run

    args = [*SMALL, "--epochs", "2"]
    # The numbers are compared; test_quick_run_* checks the plots.
    co.main(["--no-plots", *args, "--out", str(tmp_path / "whole")])
    killed = tmp_path / "killed"
    with paused_run(*args, "--out", killed, at=4, module="compare_optimizers", timeout=600):
        pass
    capsys.readouterr()
    co.main(["--no-plots", "--resume", str(killed)])
    err = capsys.readouterr().err
    assert "resuming from checkpoint 3" in err and "sgd:" not in err
    whole, resumed = (
        json.loads((tmp_path / d / "results.json").read_text()) for d in ("whole", "killed")
    )
    assert _strip(whole) == _strip(resumed)
