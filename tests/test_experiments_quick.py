"""The other experiments end to end in --quick mode (embedded data, tmp_path): files and keys."""

import json


def test_compare_optimizers_quick_run(tmp_path):
    from experiments import compare_optimizers

    out = tmp_path / "opt"
    compare_optimizers.main(["--quick", "--out", str(out)])
    for name in ("config.json", "results.json", "accuracy_vs_epoch.png", "sensitivity.png"):
        assert (out / name).stat().st_size > 0, name
    res = json.loads((out / "results.json").read_text())
    expected = {"sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad"}
    assert set(res["optimizers"]) == expected
    assert {row["optimizer"] for row in res["table"]} == expected

