"""The repository itself: style checked by ruff, no machine paths in tracked files."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Absolute paths of the machines this was written and tested on, and home directories.
MACHINE_PATH = re.compile(r"(?<![\w.])/(work|root|home/\w+|Users/\w+|tmp/pytest-of-\w+)/")


def tracked_files() -> list[Path]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    out = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return [ROOT / line for line in out.splitlines() if (ROOT / line).is_file()]


def test_no_tracked_file_holds_an_absolute_machine_path():
    hits = []
    for path in tracked_files():
        if path.suffix in (".png", ".gz", ".npz"):
            continue
        text = path.read_text(errors="replace")
        hits += [f"{path.relative_to(ROOT)}: {m.group(0)}" for m in MACHINE_PATH.finditer(text)]
    assert not hits, hits[:10]


@pytest.mark.parametrize("command", [["format", "--check", "--diff"], ["check"]])
def test_ruff_is_clean(command):
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with the dev extra)")
    result = subprocess.run([ruff, *command, "."], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]


# Modules tested in a file not named after them: bpjax/data/load.py's load_mnist is the
# package's entry point (tests/test_data.py, whose helpers the other data tests import).
TEST_FILE_OF = {
    "data/load.py": "test_data.py",
    "data/tfds_source.py": "test_data_tfds.py",
    "data/errors.py": "test_data_idx.py",  # the typed errors, raised by the strict reader
    "data/locate.py": "test_data.py",  # $BPJAX_DATA_DIR and "auto"
}


def test_every_library_module_has_its_test_file():
    """bpjax/X.py is tested in tests/test_X.py, bpjax/data/X.py in tests/test_data_X.py."""
    missing = []
    for module in sorted((ROOT / "bpjax").rglob("*.py")):
        rel = module.relative_to(ROOT / "bpjax").as_posix()
        if module.name == "__init__.py":
            continue
        name = TEST_FILE_OF.get(rel, "test_" + rel.removesuffix(".py").replace("/", "_") + ".py")
        if not (ROOT / "tests" / name).is_file():
            missing.append(f"bpjax/{rel} -> tests/{name}")
    assert not missing, missing
