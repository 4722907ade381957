"""The runnable examples of the feature pages in ``docs/``, run as written against a schema of their own.

A page's Python blocks run as one script (later blocks may use what earlier ones defined), in a
fresh interpreter with ``AIOJOBS_PG_DSN``/``AIOJOBS_PG_SCHEMA`` set; the test checks what it printed.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.helpers import REPO

_BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)

# page -> lines its script must print (in any order: workers run side by side)
PAGES = {
    "../README.md#0": ["completed {'sent': True}", "['completed']", "1"],  # the usage tour, as written
    "index.md": ["pending", "hello, world"],
    "concepts.md": ["third time lucky", "['1:failed', '2:failed', '3:completed']", "completed"],
    "dependencies.md": ["waiting", "report ready: 7", "7"],
    "webhooks.md": ["failed charge RuntimeError: card declined"],
    "flow-control.md": ["True True completed", "Backoff(base=2.0, factor=3.0, cap=3600.0, jitter=0.2)", "3",
                        "pending", "1", "resized", "hook: resize completed"],
    "tracing.md": ["POST /images <- -  UNSET", "enqueue default <- POST /images  UNSET",
                   "run default <- enqueue default retrying ERROR", "run default <- enqueue default completed UNSET"],
    "drivers.md": ["email to a@example.com", "email to b@example.com", "email to c@example.com"],
}


def script_of(page: str) -> str:
    """The page's python blocks as one script; ``page#N``: its N-th block alone (a page whose other
    blocks are fragments, as the README's)."""
    name, _, index = page.partition("#")
    text = (REPO / "docs" / name).read_text(encoding="utf-8")
    blocks = _BLOCK.findall(text)
    assert blocks, f"docs/{name} has no python block"
    return blocks[int(index)] if index else "\n".join(blocks)


@pytest.mark.parametrize("page", sorted(PAGES))
def test_a_docs_page_example_runs_as_written(page: str, pg_dsn: str, own_schema: str, needs_ddl: None) -> None:
    env = {"AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": own_schema, "PATH": "/usr/bin:/bin",
           "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script_of(page)], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = [line.strip() for line in done.stdout.splitlines()]
    assert sorted(lines) == sorted(PAGES[page]), done.stdout
