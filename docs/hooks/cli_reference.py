"""A mkdocs hook: the command reference of ``docs/cli.md``, generated from the CLI's own parser.

The page holds the marker ``<!-- cli-reference -->``; at build time it becomes one section per
command and subcommand with its ``--help`` text, walked from ``aiojobs_pg.cli.build_parser()``, so
the reference cannot drift from the code.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Iterator
from typing import Any

MARKER = "<!-- cli-reference -->"
PROG = "aiojobs-pg"
WIDTH = "80"  # argparse wraps help at $COLUMNS: fixed, so the page is the same on every machine
# the section of the global options in a command's help (its heading, then its indented lines)
_GLOBAL = re.compile(r"\nglobal options:\n(?:  .*\n?)*")


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    """Each command path (``("jobs", "list")``) with its help text, depth first, in the parser's order."""
    yield path, parser.format_help()
    for action in parser._actions:  # argparse exposes subparsers only through its actions
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*path, name))


def reference() -> str:
    """The Markdown of the whole reference."""
    from aiojobs_pg.cli import build_parser

    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = WIDTH
    try:
        parser = build_parser()
        parser.prog = PROG
        _reprog(parser, PROG)
        sections = []
        for path, text in commands(parser):
            if path:  # the global options are shown once, with the bare command
                text = _GLOBAL.sub("", text)
            title = " ".join((PROG, *path))
            sections.append(f"{'#' * (3 if len(path) <= 1 else 4)} `{title}`\n\n```text\n{text.rstrip()}\n```\n")
        return "\n".join(sections)
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _reprog(parser: argparse.ArgumentParser, prog: str) -> None:
    """Subparsers copied their prog from ``sys.argv[0]`` when built: name them after the installed script."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                sub.prog = f"{prog} {name}"
                _reprog(sub, sub.prog)


def on_page_markdown(markdown: str, page: Any, **kwargs: Any) -> str:
    """mkdocs event: fill the marker of the CLI page."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, reference())
