"""Handlers of the HTTP tests, and an App for ``serve`` (DSN and schema from the environment)."""

from __future__ import annotations

from typing import Any

import anyio

from aiojobs_pg import App


async def echo(data: Any) -> Any:
    """Return the job's data as its result."""
    return data


async def boom(data: Any) -> None:
    """Always fail (the error keeps its traceback)."""
    raise RuntimeError(f"boom: {data!r}")


async def slow(data: Any) -> str:
    """Sleep ``data`` seconds."""
    await anyio.sleep(float(data or 0))
    return "slept"


def register_handlers(target: App) -> None:
    """Register echo, boom and slow on ``target``."""
    for fn in (echo, boom, slow):
        target.register(fn.__name__, fn)


app = App(poll_interval=0.2)
register_handlers(app)
