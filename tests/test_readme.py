"""The README's code runs as printed."""

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_extending_example_runs_and_its_check_passes():
    (block,) = [b for b in python_blocks() if "register_activation" in b]
    # The registry is process-wide and a name registers once: give this run a fresh name.
    block = block.replace('"softplus"', '"softplus_readme_test"').replace(
        'hidden="softplus"', 'hidden="softplus_readme_test"'
    )
    namespace: dict = {}
    exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own code
    assert namespace["report"].passed
    assert len(namespace["g"]) == 2
