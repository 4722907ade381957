"""Loading the user's App for a command (``MODULE:APP``), and the CLI's errors."""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from typing import Any

from ..app import App


class UsageError(Exception):
    """Bad command line input found after parsing (exit code 2)."""


class CommandError(Exception):
    """An operation failed in a way the user should read about (exit code 1)."""


def load_app(target: str) -> App:
    """Import ``MODULE:ATTRIBUTE`` (dots allowed in the attribute) and check it is an App."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name.strip() or not attr.strip():
        raise UsageError(f"invalid app {target!r}: expected MODULE:ATTRIBUTE, e.g. myproject.jobs:app")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        # A file path where a module name belongs: say which module that file is (uvicorn's convention).
        dotted = module_name.removesuffix(".py").removeprefix("./").replace(os.sep, ".").replace("/", ".")
        raise UsageError(f"invalid app {target!r}: give the module, not the file: {dotted.strip('.')}:{attr} "
                         "(run from the directory that holds it)")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise UsageError(f"cannot import module {module_name!r}: no module named {exc.name!r} "
                             f"(searched the current directory {cwd} and sys.path)") from None
        traceback.print_exc()
        raise CommandError(f"importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        traceback.print_exc()
        raise CommandError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(obj, App):
        raise UsageError(f"{target} is {type(obj).__name__!s}, not an aiojobs_pg.App")
    return obj


def parse_queues(text: str) -> list[str]:
    """``--queues a,b``: the queue names, at least one."""
    queues = [q.strip() for q in text.split(",") if q.strip()]
    if not queues:
        raise UsageError("--queues: give at least one queue name")
    return queues


def describe_database(dsn: str | None) -> str:
    """Which database a command reaches, in words, without its password: the ``--dsn`` given, else
    the variable that sets it, else the embedded server."""
    if dsn:
        return "the database given with --dsn"
    for var in ("AIOJOBS_PG_DSN", "DATABASE_URL"):
        if os.environ.get(var):
            return f"the database in ${var}"
    return "the embedded PostgreSQL under ./.aiojobs_pg/"
