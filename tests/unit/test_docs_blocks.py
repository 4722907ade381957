"""Every Python block of the docs and the README is valid Python (no database: compiled, not run).

The pages whose examples run as written, against a database, are in ``tests/integration/test_docs_examples.py``.
"""

from __future__ import annotations

import ast
import re
import textwrap

import pytest

from tests.helpers import REPO

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _all_blocks() -> list[tuple[str, int, str]]:
    pages = [*sorted((REPO / "docs").glob("*.md")), REPO / "README.md"]
    return [(page.name, i, block) for page in pages
            for i, block in enumerate(_BLOCK.findall(page.read_text(encoding="utf-8")))]


@pytest.mark.parametrize(("page", "index", "block"), _all_blocks(), ids=lambda v: str(v)[:30])
def test_every_python_block_of_the_docs_compiles(page: str, index: int, block: str) -> None:
    """The fragments the pages of tests/integration/test_docs_examples.py do not run (settings, an ASGI mount)
    are at least valid Python (top-level ``await`` allowed, as in a REPL or a notebook; an excerpt of a
    function's body is dedented)."""
    compile(textwrap.dedent(block), f"{page}[{index}]", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
