"""experiments.batch_size and its to-target training loop: the learning-rate grid, the choice of
the tuned rate, the interpolated crossing, a quick run end to end."""

import json

import jax
import numpy as np
import pytest

import bpjax
from bpjax import optimizers, sweep
from experiments import batch_size
from experiments.runtime import to_target


def test_lr_grid_grows_with_batch_size_and_saturates():
    cfg = batch_size.Config(validation=100)
    small, mid, big = (batch_size.lr_grid(cfg, b) for b in (1, 100, 4000))
    assert small[1] < mid[1] < big[1] <= cfg.lr_max
    assert mid[1] == pytest.approx(cfg.lr_max / 2)
    assert np.allclose(np.array(big) / big[1], sorted(cfg.lr_factors))
    saturated = batch_size.lr_grid(cfg, 50_000)
    assert len(saturated) == len(cfg.saturated_factors)


@pytest.mark.parametrize(
    ("tried", "want"),
    [
        ({0.1: [10.0, 12.0], 0.2: [8.0, 20.0], 0.4: [np.nan, 5.0]}, 0.1),  # slowest seed decides
        ({0.1: [np.nan, 1.0], 0.2: [np.nan, np.nan]}, None),  # no rate with all seeds
        ({0.1: [3.0], 0.2: [2.0]}, 0.2),
    ],
)
def test_winner_is_the_rate_whose_slowest_seed_is_fastest(tried, want):
    assert batch_size._winner({lr: {"steps": np.array(s)} for lr, s in tried.items()}) == want


@pytest.mark.parametrize(
    ("prev", "cur", "sign", "want"),
    [
        (0.80, 0.90, 1.0, 15.0),  # rising accuracy crosses 0.85 halfway between steps 10 and 20
        (0.85, 0.95, 1.0, 10.0),  # already at the target at the previous evaluation
        (np.nan, 0.9, 1.0, 20.0),  # nothing to interpolate from
        (1.0, 0.5, -1.0, 14.0),  # a falling cost crossing 0.8
    ],
)
def test_crossing_interpolates_linearly(prev, cur, sign, want):
    target = 0.8 if sign < 0 else 0.85
    assert to_target._crossing(10, prev, 20, cur, target, sign) == pytest.approx(want)


def _problem(n=256, seed=0):
    k1, k2 = jax.random.split(jax.random.key(seed))
    x = jax.random.uniform(k1, (n, 784))
    labels = (x[:, :10].argmax(axis=1)).astype(jax.numpy.int32)  # learnable
    return x, labels


@pytest.mark.slow
@pytest.mark.parametrize("b", [16, 64])  # 64: the full batch
def test_train_to_target_stops_when_told_and_records_steps(b):
    x, labels = _problem(64)
    tx = optimizers.make_sweep_optimizer("sgd")
    keys = sweep.seed_keys([0, 1])
    params, opt_state = sweep.init_runs(
        tx, lambda k: bpjax.init_params(k, (784, 8, 10)), keys, np.array([0.5, 0.5])
    )
    spec = bpjax.Spec(output="softmax", cost="log_likelihood")
    got = to_target.train_to_target(
        tx,
        params,
        opt_state,
        x,
        labels,
        keys,
        batch_size=b,
        eval_set=(x, labels),
        target=0.5,
        eval_every=4,
        max_steps=400,
        spec=spec,
        metric="accuracy",
    )
    reached = np.isfinite(got.steps)
    assert got.history["metric"].shape == (len(got.history["step"]), 2)
    for i in range(2):
        if reached[i]:
            assert got.params_at_target[i] is not None
            first = np.argmax(got.history["metric"][:, i] >= 0.5)
            assert got.history["step"][first - 1] <= got.steps[i] <= got.history["step"][first]
    assert got.history["step"][-1] <= 400


def test_train_to_target_rejects_bad_arguments():
    x, labels = _problem(32)
    tx, keys, params, opt_state = None, sweep.seed_keys([0]), None, None  # checked before use
    kwargs = dict(eval_set=(x, labels), target=0.5, eval_every=1, max_steps=1, spec=bpjax.Spec())
    with pytest.raises(ValueError, match="batch_size must be in"):
        to_target.train_to_target(tx, params, opt_state, x, labels, keys, batch_size=64, **kwargs)
    with pytest.raises(ValueError, match="metric must be"):
        to_target.train_to_target(
            tx, params, opt_state, x, labels, keys, batch_size=8, metric="loss", **kwargs
        )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "mnist5k"], "--validation"),
        (["--validation", "100", "--target", "1.5"], "--target must be"),
        (["--validation", "100", "--batch-sizes", "1,-2"], "--batch-sizes must be"),
        (["--validation", "1000", "--source", "mnist5k", "--batch-sizes", "5000"], "larger than"),
    ],
)
def test_bad_flags_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        batch_size.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "run"
    results = batch_size.main(
        ["--quick", "--output", "softmax", "--cost", "log_likelihood", "--out", str(out)]
    )
    for name in ("results.json", "table.md", "steps_vs_examples.png", "noise_scale.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert [r["batch_size"] for r in saved["rows"]] == [8, 64, 3000]
    reached = [r for r in results["rows"] if r["lr"] is not None]
    for r in reached:
        assert len(r["steps"]) == 2 and len(r["b_noise"]) == 2
        assert all(v > 0 for v in r["b_noise"])
    if len(reached) >= 2:
        assert results["fit"]["s_min"] > 0 and results["fit"]["e_min"] > 0
