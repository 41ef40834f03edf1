"""The mini-batch noise experiment: its config checks, a measurement where the mean gradient is 0,
a quick run end to end on the embedded digits, replot, a refused second run on the same --out,
kill -9 and resume, and a diverging learning rate."""

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_runtime import paused_run

from experiments import minibatch_noise as experiment
from experiments.runtime.cli import ConfigError

MODULE = "minibatch_noise"
ARGS = ["--quick", "--measure-batch-sizes", "1,30,1000,4000", "--draws", "12"]


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"measure_at": (3, 61)}, "--measure-at"),
        ({"measure_at": (-1,)}, "--measure-at"),
        ({"measure_batch_sizes": (0, 10)}, "--measure-batch-sizes"),
        ({"draws": 1}, "--draws"),
        ({"chunk_size": 0}, "--chunk-size"),
        ({"lr": -1.0}, "--lr"),
        ({"sizes": (784, 16, 9)}, "end with 10"),
    ],
)
def test_config_check_names_the_bad_flag(fields, needle):
    with pytest.raises(ConfigError, match=needle):
        experiment.Config(**fields).check()


def test_the_measured_epochs_are_the_given_ones_and_the_last():
    assert experiment.Config(epochs=10, measure_at=(5, 0, 5)).points() == (0, 5, 10)
    assert experiment.Config(epochs=3, measure_at=(3,)).points() == (3,)


def test_default_batch_sizes_run_from_one_to_n():
    assert experiment.default_batch_sizes(4000, quick=True) == (1, 10, 100, 1000, 4000)
    sizes = experiment.default_batch_sizes(60000, quick=False)
    assert sizes[:4] == (1, 3, 10, 30) and sizes[-2:] == (30000, 60000)
    assert np.all(np.diff(sizes) > 0)
    assert experiment.draws_for(60000, 60000, 32) == 4
    assert experiment.draws_for(10, 60000, 32) == 32


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--measure-batch-sizes", "10,99999"], "exceeds the 4000"),
        (["--measure-batch-sizes", "a,b"], "--measure-batch-sizes"),
        (["--eta", "3"], "eta"),  # the learning rate is --lr, as in every experiment
        (["--train-batch-size", "10"], "train-batch-size"),  # and the batch size --batch-size
        (["--lr", "1e39"], "overflows float32"),
    ],
)
def test_bad_flags_exit_2_with_one_line_and_write_nothing(tmp_path, capsys, argv, needle):
    with pytest.raises(SystemExit) as e:
        experiment.main(["--quick", "--out", str(tmp_path / "run"), *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("minibatch_noise: error: ") and needle in err[-1]
    assert not [line for line in err[:-1] if "error" in line]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "a, b, expected",
    [(1.0, 0.0, math.inf), (0.0, 0.0, math.nan), (1.0, math.nan, math.nan), (3.0, 2.0, 1.5)],
)
def test_ratio_is_never_a_zero_division(a, b, expected):
    got = experiment.ratio(a, b)
    assert got == expected or (math.isnan(got) and math.isnan(expected))


@pytest.mark.slow
def test_a_zero_mean_gradient_is_reported_not_a_crash(tmp_path):
    """Saturated outputs (sigmoid(200) == 1 in float32) have exactly zero gradients: the noise
    scale 0/0 is reported as nan, and the figure is still drawn."""
    import bpjax
    from bpjax.data import load_mnist
    from experiments.runtime import evaluation
    from experiments.runtime.rundir import to_jsonable

    cfg = experiment.Config(sizes=(784, 4, 10), draws=2, chunk_size=1000)
    ds = load_mnist("mnist5k")
    data = evaluation.device_data(ds)
    params = bpjax.init_params(jax.random.key(0), cfg.sizes)
    params[-1] = {"w": jnp.zeros_like(params[-1]["w"]), "b": jnp.full((10,), 200.0)}
    measure = experiment.make_measure(data, cfg.spec(), cfg, (10, 4000), jax.random.key(1))
    point = to_jsonable(measure(params, 0))
    assert point["grad_norm"] == 0.0 and point["noise_scale"] == "nan"
    assert "not finite" in experiment.describe(point)
    results = {
        "n_train": 4000,
        "source": ds.source,
        "spec": cfg.spec().to_dict(),
        "checkpoints": [point],
    }
    experiment.plots.plot(json.loads(json.dumps(results)), tmp_path)
    assert (tmp_path / "noise_vs_batch_size.png").stat().st_size > 0
    assert "nan" in experiment.summary(results)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("noise") / "run"
    return out, experiment.main([*ARGS, "--out", str(out)])


@pytest.mark.slow
def test_quick_run_end_to_end(quick_run):
    out, _ = quick_run
    res = json.loads((out / "results.json").read_text())
    assert (out / "noise_vs_batch_size.png").stat().st_size > 20_000
    assert [cp["epoch"] for cp in res["checkpoints"]] == [0, 5]
    assert [row["epoch"] for row in res["history"]] == [1, 2, 3, 4, 5]
    n = res["n_train"]
    assert n == 4000
    for cp in res["checkpoints"]:
        assert cp["chunked_mean_vs_mean_grad_rel_diff"] < 1e-5
        assert cp["noise_scale"] == pytest.approx(cp["total_variance"] / cp["grad_norm"] ** 2)
        rows = {r["batch_size"]: r for r in cp["batches"]}
        assert sorted(rows) == [1, 30, 1000, 4000]
        # The whole data set as one batch is the full gradient, up to float rounding.
        assert rows[n]["rms_relative_error"] < 1e-5
        assert rows[n]["predicted_squared_error"] == 0.0
        assert rows[n]["mean_cosine"] == pytest.approx(1.0, abs=1e-6)
        for b in (30, 1000):
            # The measured mean squared error follows (sigma^2 / B)(N - B)/(N - 1).
            ratio = rows[b]["mean_squared_error"] / rows[b]["predicted_squared_error"]
            assert 0.4 < ratio < 2.5, (cp["epoch"], b, ratio)
            assert len(rows[b]["relative_errors"]) == rows[b]["draws"]
        # Bigger batches are better estimates.
        assert rows[1000]["rms_relative_error"] < rows[30]["rms_relative_error"]
    # Training shrinks the mean gradient far more than the per-example spread.
    first, last = res["checkpoints"]
    assert last["noise_scale"] > 10 * first["noise_scale"]
    assert last["test_accuracy"] > first["test_accuracy"] + 0.2
    # The figure comes back from results.json alone.
    (out / "noise_vs_batch_size.png").unlink()
    experiment.main(["--replot", str(out)])
    assert (out / "noise_vs_batch_size.png").is_file()


@pytest.mark.slow
def test_same_out_is_refused_while_running_and_a_killed_run_resumes_bit_identically(
    quick_run, tmp_path, capsys
):
    whole_dir, _ = quick_run
    out = tmp_path / "killed"
    with paused_run(*ARGS, "--checkpoint-every", "2", "--out", out, at=3, module=MODULE):
        with pytest.raises(SystemExit) as second:
            experiment.main([*ARGS, "--out", str(out)])
        assert second.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]
        assert "in use" in last or "not empty" in last
    # The numbers are compared; the quick run checks the plot.
    experiment.main(["--no-plots", "--resume", str(out)])

    def strip(run_dir):
        res = json.loads((run_dir / "results.json").read_text())
        history = [{k: v for k, v in r.items() if k != "train_time_s"} for r in res["history"]]
        points = [
            {k: v for k, v in p.items() if k != "moments_seconds"} for p in res["checkpoints"]
        ]
        return history, points

    assert strip(out) == strip(whole_dir)


@pytest.mark.slow
def test_a_huge_learning_rate_exits_3_with_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        experiment.main(
            ["--quick", "--measure-at", "5", "--lr", "1e38", "--out", str(tmp_path / "run")]
        )
    assert e.value.code == 3
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("minibatch_noise: error: SGD diverged") and "--lr 1e+38" in last
