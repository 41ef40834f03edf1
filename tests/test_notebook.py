"""The tutorial notebooks run top to bottom, headless, and are committed without outputs.

Running them needs the ``notebook`` extra (``pip install -e ".[notebook]"``); without it that
test skips, saying so. Each runs from a temporary copy, so nothing is written into the repository.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
STRIP = ROOT / "notebooks" / "strip_outputs.py"
KERNEL = "bpjax-test-python"


def code_cells(nb: dict) -> list[dict]:
    return [cell for cell in nb["cells"] if cell["cell_type"] == "code"]


def unstripped(nb: dict) -> list[int]:
    """Indices of the code cells that carry outputs or an execution count."""
    return [
        i
        for i, cell in enumerate(code_cells(nb))
        if cell["outputs"] or cell["execution_count"] is not None
    ]


def source(cell: dict) -> str:
    text = cell["source"]
    return text if isinstance(text, str) else "".join(text)


def test_notebooks_exist():
    assert NOTEBOOKS, f"no .ipynb in {ROOT / 'notebooks'}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_without_outputs(path):
    cells = unstripped(json.loads(path.read_text(encoding="utf-8")))
    assert not cells, (
        f"{path.name}: code cells {cells} have outputs or execution counts; strip them with "
        f"python notebooks/strip_outputs.py notebooks/{path.name}"
    )


def write_kernelspec(jupyter_dir: Path) -> None:
    """A kernel that is this interpreter's ipykernel (not whatever 'python3' a machine has)."""
    spec_dir = jupyter_dir / "kernels" / KERNEL
    spec_dir.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec = {"argv": argv, "display_name": KERNEL, "language": "python"}
    (spec_dir / "kernel.json").write_text(json.dumps(spec))


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_runs_headless(path, tmp_path, monkeypatch):
    hint = 'the notebook extra: pip install -e ".[notebook]"'
    nbformat = pytest.importorskip("nbformat", reason=f"needs {hint}")
    nbclient = pytest.importorskip("nbclient", reason=f"needs {hint}")
    pytest.importorskip("ipykernel", reason=f"needs {hint}")

    write_kernelspec(tmp_path / "jupyter")
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    # The kernel imports this checkout's bpjax, whatever is installed.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    # A notebook must name its data source: one that fell back on "auto" would fail here on this
    # empty $BPJAX_DATA_DIR, instead of giving different numbers on machines with full MNIST.
    (tmp_path / "no_mnist").mkdir()
    monkeypatch.setenv("BPJAX_DATA_DIR", str(tmp_path / "no_mnist"))
    monkeypatch.setenv("JAX_NUMPY_RANK_PROMOTION", "raise")  # as strict as the tests
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the plots

    work = tmp_path / "run"
    work.mkdir()
    copy = work / path.name
    shutil.copy(path, copy)
    nb = nbformat.read(copy, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name=KERNEL, resources={"metadata": {"path": str(work)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, on any error

    executed = json.loads(nbformat.writes(nb))
    cells = code_cells(executed)
    assert all(cell["execution_count"] for cell in cells)
    for i, cell in enumerate(cells):
        if "plt.show()" in source(cell) or "plot_noise(" in source(cell).splitlines()[-1]:
            images = [o for o in cell["outputs"] if "image/png" in o.get("data", {})]
            assert images, f"{path.name}: code cell {i} drew no figure"
    assert sorted(p.name for p in work.iterdir()) == [path.name], "the notebook wrote files"

    # The strip script turns the executed copy back into what is committed.
    nbformat.write(nb, copy)
    subprocess.run([sys.executable, str(STRIP), str(copy)], check=True)
    stripped = json.loads(copy.read_text(encoding="utf-8"))
    committed = json.loads(path.read_text(encoding="utf-8"))
    assert unstripped(stripped) == []
    assert [source(c) for c in stripped["cells"]] == [source(c) for c in committed["cells"]]
