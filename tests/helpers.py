"""Small helpers shared by the tests."""

from __future__ import annotations

import inspect
import time
from collections.abc import Awaitable, Callable

import anyio

__all__ = ["eventually"]


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
