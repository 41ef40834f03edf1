"""Strip outputs, execution counts and run timings from notebooks, in place, before committing.

    python notebooks/strip_outputs.py notebooks/*.ipynb

Plain json, no Jupyter needed; writes the same layout as Jupyter (nbformat: indent 1, sorted
keys). With nbconvert installed, ``jupyter nbconvert --clear-output --inplace <nb>`` does the same.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Cell metadata that a run adds (nbclient timings, Jupyter's UI state), not part of the notebook.
RUN_METADATA = ("execution", "collapsed", "scrolled")


def strip_notebook(nb: dict) -> dict:
    """The notebook ``nb`` (parsed .ipynb json) without outputs, counts or run metadata."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
        for key in RUN_METADATA:
            cell.get("metadata", {}).pop(key, None)
    return nb


def strip_file(path: Path) -> None:
    """Rewrite the .ipynb at ``path`` stripped."""
    nb = strip_notebook(json.loads(path.read_text(encoding="utf-8")))
    text = json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: python notebooks/strip_outputs.py NOTEBOOK.ipynb ...", file=sys.stderr)
        return 2
    for name in argv:
        path = Path(name)
        if path.suffix != ".ipynb" or not path.is_file():
            print(f"strip_outputs: {name}: not an .ipynb file", file=sys.stderr)
            return 2
        strip_file(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
