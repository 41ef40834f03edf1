"""The experiment runtime, through ``experiments.train`` as a user runs it: one error path, run
directories that never collide or overwrite, resume after kill -9, SIGINT/SIGTERM.

A process of its own (``python -m``) where the process is the subject: the entry itself, kill -9,
signals, two runs at once, a live run holding its directory. Everything else calls ``main(argv)``
in process, which is what ``python -m`` runs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from experiments.runtime import cli, options, rundir
from experiments.runtime.context import PAUSE_ENV

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["--quick", "--checkpoint-every", "1"]


def run_cli(*args, env=None, cwd=ROOT, timeout=300):
    """``python -m experiments.train ARGS`` in a new process, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "experiments.train", *map(str, args)],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_main(capsys, *args, module=None, plots=True):
    """``main(ARGS)`` in this process (what ``python -m`` calls), as a ``CompletedProcess``:
    the exit status (0 when ``main`` returns) and what it printed. For the tests whose subject
    is not a process of its own; an uncaught exception fails the test as a traceback would."""
    if module is None:
        from experiments import train as module
    capsys.readouterr()  # only this call's output
    try:
        module.main([*map(str, args), *([] if plots else ["--no-plots"])])
        status = 0
    except SystemExit as e:
        status = e.code
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(args), status, out, err)


def start_cli(*args, env=None, module="train"):
    return subprocess.Popen(
        [sys.executable, "-m", f"experiments.{module}", *map(str, args)],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )


def wait_for(proc, text: str, timeout: float = 240) -> str:
    """Read the child's stderr until a line contains ``text``."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        seen.append(line)
        if text in line:
            return line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise AssertionError(f"never saw {text!r}; stderr: {''.join(seen)}")


@contextlib.contextmanager
def paused_run(*args, at: int, module: str = "train", env=None, timeout: float = 240):
    """``python -m experiments.<module> ARGS`` paused at the end of unit ``at``, before its
    checkpoint; on leaving the block it is killed with SIGKILL (kill -9) and its pipe closed."""
    with start_cli(*args, env={**(env or {}), PAUSE_ENV: str(at)}, module=module) as proc:
        try:
            wait_for(proc, f"paused at {at}", timeout)
            yield proc
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()


def one_error_line(result, status=2):
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if "error" in line.lower()]
    assert errors == lines[-1:] and lines[-1].startswith("train: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[-1]


# --- the config as a command line (in process) ---------------------------------------------------


def test_every_shared_option_has_one_flag_with_help():
    from experiments.train import Config

    parser = cli.build_parser(Config, "p", "d")
    flags = {a.option_strings[0] for a in parser._actions if a.option_strings[0] != "-h"}
    for name in (
        "--lr",
        "--batch-size",
        "--epochs",
        "--sizes",
        "--hidden",
        "--output",
        "--cost",
        "--weight-decay",
        "--schedule",
        "--optimizer",
        "--seed",
        "--out",
        "--resume",
        "--validation",
        "--source",
        "--data-dir",
        "--method",
        "--init",
        "--plugins",
    ):
        assert name in flags
    assert all(a.help for a in parser._actions)


def test_config_round_trips_through_json():
    from experiments.train import Config

    cfg = Config(sizes=(784, 30, 10), lr=0.5, optimizer_args=("b1=0.8",))
    assert cli.from_dict(Config, json.loads(json.dumps(cli.to_dict(cfg)))) == cfg


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--lr", "-1"], "--lr"),
        (["--lr", "nan"], "--lr"),
        (["--lr", "1e39"], "overflows float32"),
        (["--lr", "abc"], "--lr"),
        (["--epochs", "0"], "--epochs"),
        (["--batch-size", "0"], "--batch-size"),
        (["--sizes", "784,16,x"], "--sizes"),
        (["--sizes", "785,10"], "--sizes"),
        (["--seed", str(2**40)], "--seed"),
        (["--hidden", "nope"], "nope"),
        (["--output", "softmax", "--cost", "cross_entropy"], "cross_entropy"),
        (["--hidden", "softmax"], "hidden"),
        (["--optimizer", "nope"], "nope"),
        (["--optimizer-args", "b1"], "KEY=VALUE"),
        (["--weight-decay", "-1"], "--weight-decay"),
        (["--validation", "-5"], "--validation"),
        (["--schedule", "weird"], "--schedule"),
        (["--no-such-flag"], "no-such-flag"),
        (["--plugins", "no_such_module_xyz"], "no_such_module_xyz"),
        (["--batch-size", "100000", "--source", "mnist5k"], "larger than"),
    ],
)
def test_bad_flag_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys, args, needle):
    """In process (``main(argv)``, what ``python -m`` calls): an uncaught exception would fail
    the test as a traceback would fail the user; the subprocess tests below cover the entry."""
    from experiments import train

    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        train.main(["--quick", *map(str, args), "--out", str(out)])
    result = subprocess.CompletedProcess([], exc.value.code, "", capsys.readouterr().err)
    assert needle in one_error_line(result)
    assert not out.exists()


def test_out_that_cannot_be_used_is_refused_and_nothing_is_overwritten(tmp_path, capsys):
    a_file = tmp_path / "file"
    a_file.write_text("mine")
    line = one_error_line(run_main(capsys, "--quick", "--out", a_file / "run"))
    assert "not a directory" in line
    full = tmp_path / "full"
    full.mkdir()
    (full / "notes.txt").write_text("keep me")
    assert "not empty" in one_error_line(run_main(capsys, "--quick", "--out", full))
    assert (full / "notes.txt").read_text() == "keep me" and len(list(full.iterdir())) == 1
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        line = one_error_line(run_main(capsys, "--quick", "--out", locked / "run"))
        assert "not writable" in line


@pytest.mark.slow  # runs experiments.train as a user does
def test_out_in_use_by_a_live_run_is_refused_and_once_killed_it_resumes_from_the_start(
    tmp_path, capsys
):
    out = tmp_path / "run"
    with paused_run(*QUICK, "--out", out, at=1):
        # Empty but for what the first run wrote: refused as in use or not empty, never shared.
        line = one_error_line(run_main(capsys, "--quick", "--out", out))
        assert "in use" in line or "not empty" in line
        line = one_error_line(run_main(capsys, "--resume", out))
        assert "in use" in line
    # Killed before its first checkpoint; a resumable flag is accepted.
    resumed = run_main(capsys, "--resume", out, "--keep-checkpoints", "3", plots=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "no checkpoint yet" in resumed.stderr
    assert [r["epoch"] for r in _history(out)] == [1, 2, 3]


@pytest.mark.slow  # runs experiments.train as a user does
def test_two_runs_started_together_get_different_directories(tmp_path):
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "experiments.train", "--quick", "--epochs", "1"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    runs = sorted((tmp_path / "runs" / "train").iterdir())
    assert len(runs) == 2 and all((r / rundir.RESULTS).is_file() for r in runs)


@pytest.mark.slow  # runs experiments.train as a user does
def test_quick_run_writes_what_it_promises(tmp_path, capsys):
    out = tmp_path / "run"
    result = run_cli("--quick", "--validation", "500", "--out", out)
    assert result.returncode == 0, result.stderr
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["epochs"] == 3 and config["data"]["n_validation"] == 500
    assert config["data"]["fingerprint"] and config["versions"]["jax"]
    results = json.loads((out / "results.json").read_text())
    assert [r["epoch"] for r in results["history"]] == [1, 2, 3]
    row = results["history"][-1]
    for key in ("train_accuracy", "validation_accuracy", "test_accuracy", "step_cost"):
        assert 0 <= row[key] < 10
    assert results["spec"] == {"hidden": "sigmoid", "output": "sigmoid", "cost": "quadratic"}
    assert results["best"]["by"] == "validation_accuracy"
    params = np.load(out / "params.npz")
    assert params["w0"].shape == (16, 784) and params["b2"].shape == (10,)
    for png in ("cost_vs_epoch.png", "accuracy_vs_epoch.png"):
        assert (out / png).stat().st_size > 1000
    # The plots come back from results.json alone.
    for png in out.glob("*.png"):
        png.unlink()
    again = run_main(capsys, "--replot", out)
    assert again.returncode == 0, again.stderr
    assert (out / "accuracy_vs_epoch.png").is_file()
    # A finished run is not resumed.
    assert "already finished" in one_error_line(run_main(capsys, "--resume", out))


def _history(out):
    return json.loads((out / "results.json").read_text())["history"]


def _without_times(out):
    return [{k: v for k, v in r.items() if k != "train_time_s"} for r in _history(out)]


@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    """An uninterrupted ``QUICK`` run (in process): what every resumed run must equal."""
    from experiments import train

    out = tmp_path_factory.mktemp("whole") / "run"
    train.main(["--no-plots", *QUICK, "--out", str(out)])
    return out


@pytest.mark.slow  # uses the module's uninterrupted run
def test_no_plots_writes_the_results_and_replot_draws_them_later(whole, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(whole, run)
    assert (run / "results.json").is_file() and not list(run.glob("*.png"))
    again = run_main(capsys, "--replot", run)
    assert again.returncode == 0, again.stderr
    assert (run / "cost_vs_epoch.png").stat().st_size > 1000
    assert "--replot takes no other flags" in one_error_line(
        run_main(capsys, "--replot", run, "--no-plots")
    )


@pytest.fixture(scope="module")
def killed_at_3(tmp_path_factory):
    """A ``QUICK`` run killed with kill -9 at the end of its last epoch, 3, before checkpoint
    3: checkpoints 1 and 2 are written. Tests resume copies of it."""
    out = tmp_path_factory.mktemp("killed") / "run"
    with paused_run(*QUICK, "--out", out, at=3):
        assert (out / "checkpoints" / "2").is_dir()
    return out


@pytest.mark.slow  # runs experiments.train as a user does
def test_kill_9_then_resume_is_bit_identical(tmp_path, capsys, whole, killed_at_3):
    killed = tmp_path / "killed"
    shutil.copytree(killed_at_3, killed)
    resumed = run_main(capsys, "--resume", killed, plots=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint 2" in resumed.stderr  # the last one written
    assert _without_times(whole) == _without_times(killed)
    a, b = np.load(whole / "params.npz"), np.load(killed / "params.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.slow  # runs experiments.train as a user does
@pytest.mark.parametrize("sig, status", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_checkpoints_and_exits_with_a_resume_hint(tmp_path, capsys, sig, status):
    out = tmp_path / "run"
    args = ["--quick", "--checkpoint-every", "10", "--out", out]
    with start_cli(*args, env={PAUSE_ENV: "2"}) as proc:
        wait_for(proc, "paused at 2")
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == status, err
    assert "Traceback" not in err
    assert f"--resume {out}" in err.strip().splitlines()[-1]
    resumed = run_main(capsys, "--resume", out, plots=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from checkpoint 2" in resumed.stderr
    assert [r["epoch"] for r in _history(out)] == [1, 2, 3]


@pytest.mark.slow  # runs experiments.train as a user does
def test_resume_refuses_a_flag_that_changes_the_numbers(tmp_path, capsys, killed_at_3):
    out = tmp_path / "run"
    shutil.copytree(killed_at_3, out)
    line = one_error_line(run_main(capsys, "--resume", out, "--lr", "0.1"))
    assert "--lr" in line
    assert run_main(capsys, "--resume", out, "--keep-checkpoints", "3", plots=False).returncode == 0


def test_positive_rate_check_names_the_flag():
    with pytest.raises(cli.ConfigError, match="--gd-lr"):
        options.positive_rate("gd_lr", 0.0)


def _tiny_mnist(directory: Path, seed: int = 0) -> Path:
    """A small IDX data set in ``directory``: 300 train / 100 test random digits."""
    from bpjax.data import write_idx

    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, n in (("train", 300), ("t10k", 100)):
        write_idx(
            directory / f"{stem}-images-idx3-ubyte.gz",
            rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        )
        write_idx(
            directory / f"{stem}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8)
        )
    return directory


@pytest.mark.slow
def test_resume_refuses_changed_data(tmp_path, capsys):
    data = _tiny_mnist(tmp_path / "mnist")
    out = tmp_path / "run"
    args = ["--source", "idx", "--epochs", "3", "--batch-size", "10", "--checkpoint-every", "1"]
    with paused_run(*args, "--data-dir", data, "--out", out, at=2):
        pass
    labels = data / "train-labels-idx1-ubyte.gz"
    original = labels.read_bytes()
    # Other training labels in place: refused, naming what changed.
    _tiny_mnist(tmp_path / "other", seed=1)
    labels.write_bytes((tmp_path / "other" / labels.name).read_bytes())
    line = one_error_line(run_main(capsys, "--resume", out))
    assert "data differ" in line and "training labels" in line
    # The same files under another spelling of their path are the same data.
    labels.write_bytes(original)
    link = tmp_path / "link"
    link.symlink_to(data)
    resumed = run_main(capsys, "--resume", out, "--data-dir", f"{link}/", plots=False)
    assert resumed.returncode == 0, resumed.stderr
    assert [r["epoch"] for r in _history(out)] == [1, 2, 3]


def test_data_dir_is_never_silently_ignored(tmp_path, capsys):
    line = one_error_line(
        run_main(capsys, "--source", "mnist5k", "--data-dir", tmp_path, "--out", tmp_path / "run")
    )
    assert "--data-dir has no effect" in line
    # --quick's embedded digits give way to the user's data: here an empty directory, refused.
    line = one_error_line(
        run_main(capsys, "--quick", "--data-dir", tmp_path, "--out", tmp_path / "r2")
    )
    assert "MNIST" in line or "IDX" in line or str(tmp_path) in line


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["flip_a_bit", "truncate", "remove_the_record"])
def test_a_damaged_latest_checkpoint_falls_back_from_the_command_line(
    tmp_path, capsys, whole, killed_at_3, damage
):
    """kill -9 after checkpoint 2, damage it, --resume: one line names the damage, the run
    resumes from checkpoint 1 (never from the damaged state), and the results equal an
    uninterrupted run."""
    import test_checkpoint

    killed = tmp_path / "killed"
    shutil.copytree(killed_at_3, killed)
    step2 = killed / "checkpoints" / "2"
    if damage == "remove_the_record":
        shutil.rmtree(step2 / "record")
    else:
        getattr(test_checkpoint, damage)(step2)
    resumed = run_main(capsys, "--resume", killed, plots=False)
    assert resumed.returncode == 0, resumed.stderr
    assert "checkpoint 2 is damaged" in resumed.stderr
    assert "resuming from checkpoint 1" in resumed.stderr and "Traceback" not in resumed.stderr
    assert _without_times(whole) == _without_times(killed)
