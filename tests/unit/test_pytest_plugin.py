"""The pytest plugin's registration and its guide, read without a database.

The plugin at work (pytest in a subprocess, on a project of its own) is in
``tests/integration/test_testing_helpers.py``.
"""

from __future__ import annotations

import importlib.metadata
import re

from tests.helpers import REPO


def test_the_plugin_is_registered_through_its_entry_point() -> None:
    found = [ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "aiojobs_pg"]
    assert [ep.value for ep in found] == ["aiojobs_pg.pytest_plugin"], (
        "reinstall the package (pip install -e .) so that its pytest11 entry point is registered")


def test_the_guides_examples_are_excerpts_of_the_example_suite() -> None:
    # docs/testing.md quotes examples/testing/test_shop.py, which tests/integration/test_testing_helpers.py
    # runs: each block that awaits something must appear there as written (imports aside), so the guide
    # cannot drift from it.
    suite = (REPO / "examples" / "testing" / "test_shop.py").read_text(encoding="utf-8")
    guide = (REPO / "docs" / "testing.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```", guide, re.S | re.M) if "await " in b]
    assert len(blocks) >= 5
    for block in blocks:
        code = "\n".join(line for line in block.splitlines() if not line.startswith(("from ", "import ")))
        assert code.strip("\n") in suite, f"docs/testing.md's block is not in examples/testing/test_shop.py:\n{code}"
