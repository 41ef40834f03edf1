"""experiments.reproduce: every recipe is a valid experiments.train config; the quick table runs
end to end; Nielsen's weights-only L2 leaves the biases alone."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import bpjax
from experiments import reproduce


@pytest.mark.parametrize("name", list(reproduce.RECIPES))
def test_every_recipe_parses_into_a_valid_train_config(name):
    recipe = reproduce.RECIPES[name]
    cfg = reproduce.train_config(recipe)  # raises on a bad flag or a bad value
    assert cfg.sizes[0] == 784 and cfg.sizes[-1] == 10
    assert 0 < recipe.published < 100
    assert recipe.metric in ("peak test", "test", "validation")
    assert reproduce.command(recipe).startswith("python -m experiments.train ")
    if name.startswith("ch"):  # Nielsen: 50,000 training images, constant eta
        assert cfg.validation == 10000 and cfg.schedule == "constant"
        assert cfg.cost in ("quadratic_half", "cross_entropy")
        if cfg.weight_decay:  # lambda = 5.0 over n = 50,000
            assert cfg.weight_decay == pytest.approx(5.0 / 50_000)


@pytest.mark.parametrize("decay_biases", [False, True])
def test_l2_mask_decays_weights_and_biases_as_asked(decay_biases):
    recipe = reproduce.RECIPES["ch3_l2_30"]
    tcfg = reproduce.train_config(recipe)
    tx = reproduce.make_optimizer(tcfg, total_steps=10, decay_biases=decay_biases)
    params = bpjax.init_params(jax.random.key(0), tcfg.sizes)
    zero = jax.tree.map(jnp.zeros_like, params)
    updates, _ = tx.update(zero, tx.init(params), params)  # a zero gradient: only the decay
    for layer, p in zip(updates, params, strict=True):
        np.testing.assert_allclose(layer["w"], -tcfg.lr * tcfg.weight_decay * p["w"], rtol=1e-6)
        want_b = -tcfg.lr * tcfg.weight_decay * p["b"] if decay_biases else jnp.zeros_like(p["b"])
        np.testing.assert_allclose(layer["b"], want_b, rtol=1e-6, atol=0)
    assert isinstance(tx, optax.GradientTransformation)


def test_split_takes_the_last_images_for_validation():
    x, y = np.arange(10)[:, None], np.arange(10)
    (xt, yt), (xv, yv) = reproduce.split(x, y, 3)
    assert yt.tolist() == list(range(7)) and yv.tolist() == [7, 8, 9]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rows", "nope"], "unknown nope"),
        (["--seeds", "0"], "--seeds must be >= 1"),
        (["--validation", "100"], "--validation"),
    ],
)
def test_bad_flags_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        reproduce.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow
def test_quick_table_runs_end_to_end(tmp_path):
    out = tmp_path / "run"
    results = reproduce.main(["--quick", "--rows", "ch1_30,ch3_l2_30", "--out", str(out)])
    for name in ("config.json", "results.json", "table.md", "accuracy_vs_epoch.png"):
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["ch1_30", "ch3_l2_30"]
    for row in results["rows"]:
        assert row["seeds"] == [0, 1] and row["epochs"] == 1
        assert len(row["per_run"]["final_test"]) == 2
        # the two seeds are different networks
        assert (
            row["per_run"]["final_test"][0] != row["per_run"]["final_test"][1]
            or row["history"]["test_cost"][0][0] != row["history"]["test_cost"][0][1]
        )
        peak, final = row["per_run"]["peak_test"], row["per_run"]["final_test"]
        assert all(p >= f for p, f in zip(peak, final, strict=True))
    table = (out / "table.md").read_text()
    assert "ch1_30" in table and "95.42" in table
