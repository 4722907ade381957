"""Small helpers shared by the tests."""

from __future__ import annotations

import asyncio
import inspect
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from aiojobs_pg import App

__all__ = ["REPO", "eventually", "register_slow", "spawn_python"]

REPO = Path(__file__).resolve().parent.parent


def spawn_python(module: str, args: Sequence[str], env_vars: Mapping[str, str],
                 log_path: Path) -> tuple[subprocess.Popen[bytes], IO[bytes], dict[str, str]]:
    """Start ``python -m module args`` from the repository with ``env_vars``, output to ``log_path``.

    Returns the process, the open log file (close it after the process ends) and its environment.
    """
    env = dict(os.environ)
    env.update(env_vars, PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p))
    out = log_path.open("wb")
    proc = subprocess.Popen([sys.executable, "-m", module, *args], cwd=REPO, env=env, stdout=out,
                            stderr=subprocess.STDOUT)
    return proc, out, env


async def eventually(
    predicate: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10,
    interval: float = 0.02,
    message: str = "",
) -> None:
    """Poll ``predicate`` (sync or async) until it returns a truthy value.

    Raises :class:`AssertionError` with ``message`` when it is still falsy after
    ``timeout`` seconds. The predicate is always evaluated at least once, and once
    more at the deadline, so a slow event loop cannot cause a spurious failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(message or f"condition not met within {timeout} s")
        await anyio.sleep(min(interval, remaining))


def register_slow(app: App) -> tuple[asyncio.Event, asyncio.Event]:
    """A handler ``slow`` that runs for a minute; set when it started, and when it was cancelled."""
    started, stopped = asyncio.Event(), asyncio.Event()

    @app.handler()
    async def slow(data: None) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            stopped.set()
            raise

    return started, stopped
