"""The App run by the CLI worker tests: DSN and schema come from the environment."""

from __future__ import annotations

from typing import Any

import anyio

from aiojobs_pg import App

app = App(poll_interval=0.2)


@app.handler()
async def echo(data: Any) -> Any:
    """Return the job's data as its result."""
    return data


@app.handler()
async def boom(data: Any) -> None:
    """Always fail."""
    raise RuntimeError(f"boom: {data!r}")


not_an_app = object()


@app.handler()
async def slow(data: Any) -> str:
    """Sleep ``data`` seconds (for shutdown tests)."""
    await anyio.sleep(float(data))
    return "slept"
