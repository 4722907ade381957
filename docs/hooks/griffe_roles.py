"""A griffe extension for the API reference: the docstrings' reST roles read as Markdown code spans.

aiojobs_pg's docstrings are prose that cites other objects with reST roles (``:class:`~aiojobs_pg.Job```,
``:meth:`enqueue```). mkdocstrings renders docstrings as Markdown, where a role would show as
``:class:`` followed by code; this turns each into a code span of the name as written (``~`` keeps
the last dotted part, as Sphinx shows it) and ``double backticks`` into single ones.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|meth|func|attr|data|exc|mod|obj|const):`(~?)([^`]+)`")
_DOUBLE = re.compile(r"``(.+?)``", re.S)


def _role(match: re.Match[str]) -> str:
    name = match.group(2)
    return f"`{name.rsplit('.', 1)[-1] if match.group(1) else name}`"


def markdown_of(text: str) -> str:
    """The docstring ``text`` with its roles and double backticks as Markdown code spans."""
    return _ROLE.sub(_role, _DOUBLE.sub(r"`\1`", text))


class SphinxRoles(griffe.Extension):
    """Rewrites every docstring of the loaded package before mkdocstrings parses it."""

    def on_object(self, *, obj: griffe.Object, loader: griffe.GriffeLoader, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = markdown_of(obj.docstring.value)
