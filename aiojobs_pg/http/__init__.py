"""The management HTTP API and dashboard (the ``http`` extra: Starlette and uvicorn).

``create_asgi_app(app, tokens=..., guards=...)`` returns a mountable ASGI app;
``python -m aiojobs_pg serve MODULE:APP`` serves it. See ``docs/http.md``.

Names are imported lazily, so :mod:`aiojobs_pg.cli.serve` (the CLI's argument
definitions) loads without the extra installed.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .api import JobsApi, create_asgi_app
    from .auth import Guard, Principal, principal, read_only, require_admin

__all__ = ["Guard", "JobsApi", "Principal", "create_asgi_app", "principal", "read_only", "require_admin"]

_WHERE = {"JobsApi": "api", "create_asgi_app": "api", "Guard": "auth", "Principal": "auth",
          "principal": "auth", "read_only": "auth", "require_admin": "auth"}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] in ("starlette", "uvicorn"):
            raise ModuleNotFoundError(f"aiojobs_pg.http needs the 'http' extra: pip install 'aiojobs_pg[http]' "
                                      f"({exc.name} is missing)", name=exc.name) from exc
        raise
