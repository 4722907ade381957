"""The docs site's own code (``mkdocs.yml``, ``docs/hooks/``): the nav, the CLI reference, the docstrings' roles.

``.ci/run`` builds the whole site with ``mkdocs build --strict``; these check the parts that are ours
in a fraction of the time, and say which page or command is at fault.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from types import ModuleType
from typing import Any

import pytest

from aiojobs_pg.cli import build_parser
from tests.helpers import REPO

DOCS = REPO / "docs"


def _hook(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_hook_{name}", DOCS / "hooks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _nav_pages(entries: list[Any]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(_nav_pages(value) if isinstance(value, list) else [value])
    return pages


def test_the_nav_names_every_page_and_only_pages_that_exist() -> None:
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = _nav_pages(config["nav"])
    on_disk = sorted(str(p.relative_to(DOCS)) for p in DOCS.glob("*.md"))
    assert [p for p in nav if not (DOCS / p).is_file()] == []
    # mkdocs --strict fails on a page left out of the nav too (validation.omitted_files): this says which
    assert sorted(set(on_disk) - set(nav)) == []
    assert len(nav) == len(set(nav))
    assert "<!-- cli-reference -->" in (DOCS / "cli.md").read_text(encoding="utf-8")


def _command_paths(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [path]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths.extend(_command_paths(sub, (*path, name)))
    return paths


def test_the_cli_reference_has_every_command_with_its_help_and_the_global_options_once() -> None:
    text = _hook("cli_reference").reference()
    paths = _command_paths(build_parser())
    assert ("jobs", "enqueue") in paths and ("worker",) in paths
    for path in paths:
        title = " ".join(("aiojobs-pg", *path))
        assert f"`{title}`\n\n```text\nusage: {title} " in text, title
    assert text.count("global options:") == 1
    assert "--dedup-window DURATION" in text  # an option's help, not only the command names
    assert "python -m aiojobs_pg" not in text  # named after the installed script, whatever ran the build


def test_the_cli_page_gets_the_reference_in_place_of_its_marker() -> None:
    hook = _hook("cli_reference")
    page = (DOCS / "cli.md").read_text(encoding="utf-8")
    built = hook.on_page_markdown(page, page=None)
    assert hook.MARKER not in built
    assert "#### `aiojobs-pg jobs list`" in built
    assert hook.on_page_markdown("# Other page\n", page=None) == "# Other page\n"


@pytest.mark.parametrize(("docstring", "markdown"), [
    ("Raises :class:`~aiojobs_pg.errors.JobFailed` or :class:`TimeoutError`.", "Raises `JobFailed` or `TimeoutError`."),
    ("See :meth:`enqueue` and :func:`aiojobs_pg.testing.run_job`.", "See `enqueue` and `aiojobs_pg.testing.run_job`."),
    ("``dsn=None`` reads ``AIOJOBS_PG_DSN``.", "`dsn=None` reads `AIOJOBS_PG_DSN`."),
    ("Plain text stays.", "Plain text stays."),
])
def test_docstring_roles_become_markdown_code_spans(docstring: str, markdown: str) -> None:
    pytest.importorskip("griffe")
    assert _hook("griffe_roles").markdown_of(docstring) == markdown


def test_no_docs_page_links_outside_the_docs_directory() -> None:
    """mkdocs cannot serve ``../aiojobs_pg/...``: such a link is a 404 on the site (and fails --strict)."""
    outside = re.compile(r"\]\((\.\./[^)]*)\)")
    found = {str(p.relative_to(DOCS)): outside.findall(p.read_text(encoding="utf-8")) for p in DOCS.glob("*.md")}
    assert {page: links for page, links in found.items() if links} == {}


def test_the_site_output_is_ignored() -> None:
    assert "site/" in (REPO / ".gitignore").read_text(encoding="utf-8").split()
