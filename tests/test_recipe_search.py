"""experiments.recipe_search: its flags are checked; a quick search runs and selects on
validation."""

import pytest

from experiments import recipe_search


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--source", "mnist5k"], "--validation"),
        (["--validation", "100", "--lrs", "0"], "--lrs must be"),
        (["--validation", "100", "--seeds", "0"], "--seeds must be >= 1"),
    ],
)
def test_bad_flags_exit_2(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        recipe_search.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_command_is_a_train_command_line():
    cfg = recipe_search.Config(validation=10000)
    cmd = recipe_search.command(cfg, "tanh", 1e-4, 0.3)
    assert cmd.startswith("python -m experiments.train ")
    assert "--hidden tanh" in cmd and "--weight-decay 0.0001" in cmd and "--lr 0.3" in cmd


def row(lr, validation, test, finite=True):
    return {"lr": lr, "validation": validation, "test": test, "finite": finite}


def test_selection_reads_validation_never_test_and_skips_diverged_recipes():
    rows = [
        row(0.1, [0.90, 0.92], [0.97, 0.97]),  # the best on test
        row(0.3, [0.95, 0.93], [0.91, 0.90]),  # the best on validation
        row(1.0, [0.99, 0.99], [0.99, 0.99], finite=False),  # diverged in some epoch
    ]
    assert recipe_search.select(rows)["lr"] == 0.3
    assert recipe_search.select([rows[2]]) is None


@pytest.mark.slow
def test_quick_search_selects_on_validation(tmp_path):
    results = recipe_search.main(["--quick", "--lrs", "0.1,0.3", "--out", str(tmp_path / "r")])
    assert len(results["rows"]) == 2
    best = max(results["rows"], key=lambda r: sum(r["validation"]))
    assert results["best"]["lr"] == best["lr"]
    assert (tmp_path / "r" / "table.md").read_text().count("(selected)") == 1


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--hiddens", "nosuch"], "--hiddens"),
        (["--search-optimizer", "nosuch"], "--search-optimizer"),
    ],
)
def test_bad_names_are_one_line_exit_2(tmp_path, capsys, args, needle):
    from experiments import recipe_search

    with pytest.raises(SystemExit) as exc:
        recipe_search.main(["--quick", *args, "--out", str(tmp_path / "run")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith(f"recipe_search: error: {needle}")
    assert not (tmp_path / "run").exists()
