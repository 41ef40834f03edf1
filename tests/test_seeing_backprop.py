"""The seeing-backprop experiment (one example's wish list): its config checks, a quick run end
to end on the embedded digits, replot, a refused second run on the same --out, kill -9 and resume,
and a diverging learning rate."""

import json

import numpy as np
import pytest
from test_runtime import paused_run

from experiments import seeing_backprop as experiment
from experiments.runtime.cli import ConfigError

MODULE = "seeing_backprop"
ARGS = ["--quick", "--digit", "7"]
FIGURES = (
    "output_nudges.png",
    "first_layer_nudges.png",
    "hebbian.png",
    "propagated_wishes.png",
    "sensitivity.png",
    "averages.png",
)


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"index": 3, "digit": 4}, "not both"),
        ({"digit": 10}, "--digit"),
        ({"index": -1}, "--index"),
        ({"sizes": (784, 10)}, "hidden layer"),
        ({"epsilon": 0.0}, "--epsilon"),
        ({"top_k": 0}, "--top-k"),
        ({"top_k": 10**6}, "parameters"),
        ({"average_over": 0}, "--average-over"),
        ({"lr": 1e39}, "overflows float32"),
    ],
)
def test_config_check_names_the_bad_flag(fields, needle):
    with pytest.raises(ConfigError, match=needle):
        experiment.Config(**fields).check()


def test_the_example_is_the_first_of_its_digit_or_the_index():
    labels = np.array([3, 7, 2, 7, 2])
    assert experiment.Config().example_index(labels) == 2  # the default digit 2
    assert experiment.Config(digit=7).example_index(labels) == 1
    assert experiment.Config(index=4).example_index(labels) == 4
    with pytest.raises(ConfigError, match="no test example"):
        experiment.Config(digit=5).example_index(labels)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--index", "3", "--digit", "4"], "not both"),
        (["--index", "1000"], "out of range"),  # the embedded test split has 1,000 examples
        (["--sizes", "784,x,10"], "--sizes"),
        (["--average-over", "5000"], "--average-over"),
        (["--eta", "3"], "eta"),  # the learning rate is --lr, as in every experiment
    ],
)
def test_bad_flags_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        experiment.main(["--quick", "--out", str(tmp_path / "run"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("seeing_backprop: error: ") and needle in err[-1]
    assert not [line for line in err[:-1] if "error" in line]
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("wish") / "run"
    return out, experiment.main([*ARGS, "--out", str(out)])


@pytest.mark.slow
def test_quick_run_end_to_end(quick_run, capsys):
    out, _ = quick_run
    res = json.loads((out / "results.json").read_text())
    for name in FIGURES:
        assert (out / name).stat().st_size > 10_000, name
    label = res["example"]["label"]
    assert label == 7 and res["spec"]["cost"] == "quadratic"
    for net in ("untrained", "trained"):
        r = res["networks"][net]
        assert all(v < 1e-5 for v in r["checks"].values()), r["checks"]
        nudges = np.array(r["output_nudges"])
        assert nudges[label] > 0 and np.all(np.delete(nudges, label) < 0)
        s = r["sensitivity"]
        np.testing.assert_allclose(s["measured_cost_change"], s["predicted_cost_change"], rtol=0.25)
        assert r["averages"]["every"]["cosine_to_all"] == pytest.approx(1.0, abs=1e-5)
    assert res["networks"]["trained"]["test_accuracy"] > 0.5
    assert [row["epoch"] for row in res["history"]] == [1, 2, 3]
    # The figures come back from results.json alone.
    for name in FIGURES:
        (out / name).unlink()
    experiment.main(["--replot", str(out)])
    assert all((out / name).is_file() for name in FIGURES)


@pytest.mark.slow
def test_same_out_is_refused_while_running_and_a_killed_run_resumes_bit_identically(
    quick_run, tmp_path, capsys
):
    whole_dir, _ = quick_run
    out = tmp_path / "killed"
    with paused_run(*ARGS, "--checkpoint-every", "1", "--out", out, at=2, module=MODULE):
        with pytest.raises(SystemExit) as second:
            experiment.main([*ARGS, "--out", str(out)])
        assert second.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert "in use" in last or "not empty" in last
    # The numbers are compared; the quick run checks the plots.
    experiment.main(["--no-plots", "--resume", str(out)])

    def strip(run_dir):
        res = json.loads((run_dir / "results.json").read_text())
        history = [{k: v for k, v in r.items() if k != "train_time_s"} for r in res["history"]]
        return history, res["networks"], res["example"]

    assert strip(out) == strip(whole_dir)


@pytest.mark.slow
def test_a_huge_learning_rate_exits_3_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        experiment.main(["--quick", "--lr", "1e38", "--out", str(tmp_path / "run")])
    assert e.value.code == 3
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("seeing_backprop: error: SGD diverged") and "--lr 1e+38" in last
