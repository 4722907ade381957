"""Signals: counted steps that tests wait on instead of sleeping."""

from __future__ import annotations

import asyncio

import pytest

from aiojobs_pg.signals import Signals


async def test_wait_returns_once_the_count_is_reached() -> None:
    signals = Signals()
    signals.emit("claim")
    assert await asyncio.wait_for(signals.wait("claim", 1), 1) == 1  # already there

    waiter = asyncio.create_task(signals.wait("claim"))  # the next one: 2
    other = asyncio.create_task(signals.wait("flush", 2))
    await asyncio.sleep(0)
    assert not waiter.done()
    signals.emit("flush")
    signals.emit("claim")
    assert await asyncio.wait_for(waiter, 1) == 2
    await asyncio.sleep(0)
    assert not other.done()
    signals.emit("flush")
    assert await asyncio.wait_for(other, 1) == 2


async def test_wait_never_returns_early() -> None:
    signals = Signals()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(signals.wait("prune"), 0.05)
