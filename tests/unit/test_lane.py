"""Deadline and DedicatedLane without a database: a fake connection whose statements are sleeps."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from aiojobs_pg.lane import Deadline, DedicatedLane


class FakeConnection:
    """Just what the lane asks of a connection."""

    def __init__(self) -> None:
        self.closed = False
        self.in_transaction = False
        self.statements = 0

    def is_closed(self) -> bool:
        return self.closed

    def is_in_transaction(self) -> bool:
        return self.in_transaction

    def terminate(self) -> None:
        self.closed = True

    async def close(self, *, timeout: float | None = None) -> None:
        self.closed = True

    async def sleep(self, seconds: float) -> str:
        self.statements += 1
        await asyncio.sleep(seconds)
        return "done"


class Opener:
    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []

    async def __call__(self) -> FakeConnection:
        conn = FakeConnection()
        self.opened.append(conn)
        return conn


async def statement(conn: Any, seconds: float) -> str:
    return str(await conn.sleep(seconds))


async def test_a_statement_over_the_limit_raises_timeout_error_at_the_limit() -> None:
    lane = DedicatedLane(Opener(), limit=0.2)
    started = time.monotonic()
    with pytest.raises(TimeoutError, match=r"command_timeout \(0.2 s\)"):
        await lane.run(statement, 5)
    assert 0.19 <= time.monotonic() - started < 1.0
    # The deadline's own cancellation was taken back: the caller's task is not left cancelling.
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    assert not lane.busy
    assert await lane.run(statement, 0) == "done"
    await lane.close()


async def test_each_statement_gets_the_whole_limit_however_long_the_lane_has_been_busy() -> None:
    # Twenty statements of 0.05 s back to back: 1 s in all, five times the limit, none over it.
    lane = DedicatedLane(Opener(), limit=0.2)
    assert [await lane.run(statement, 0.05) for _ in range(20)] == ["done"] * 20
    # A statement that starts long after the timer was armed still gets its full limit, and no more.
    await asyncio.sleep(0.3)
    assert await lane.run(statement, 0.15) == "done"
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await lane.run(statement, 5)
    assert 0.19 <= time.monotonic() - started < 1.0
    await lane.close()


async def test_a_cancellation_from_outside_stays_a_cancellation() -> None:
    opener = Opener()
    lane = DedicatedLane(opener, limit=0.2)
    task = asyncio.create_task(lane.run(statement, 5))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)  # the deadline's timer fires on an idle lane and cancels nothing
    # Cancelled by the deadline and from outside at once: the outside cancellation wins,
    # as with asyncio.timeout.
    both = asyncio.create_task(lane.run(statement, 5))
    await asyncio.sleep(0.05)
    lane._deadline._started -= 1  # overdue: the next check cancels it
    lane._deadline._check()
    both.cancel()
    with pytest.raises(asyncio.CancelledError):
        await both
    assert len(opener.opened) == 1  # the connection survived both
    assert await lane.run(statement, 0) == "done"
    await lane.close()


async def test_a_lane_reopens_a_closed_connection_and_drops_one_left_in_a_transaction() -> None:
    opener = Opener()
    lane = DedicatedLane(opener, limit=5)
    await lane.run(statement, 0)
    opener.opened[0].closed = True  # lost while idle (server restart, network)
    await lane.run(statement, 0)
    assert len(opener.opened) == 2

    async def fail_in_transaction(conn: FakeConnection) -> None:
        conn.in_transaction = True
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await lane.run(fail_in_transaction)
    assert opener.opened[1].closed
    await lane.run(statement, 0)
    assert len(opener.opened) == 3

    async def fail(conn: FakeConnection) -> None:
        raise ValueError("plain failure")

    with pytest.raises(ValueError, match="plain failure"):
        await lane.run(fail)
    await lane.run(statement, 0)
    assert len(opener.opened) == 3  # a failure outside a transaction keeps the connection
    await lane.close()


async def test_a_lane_runs_one_statement_at_a_time_and_none_after_close() -> None:
    opener = Opener()
    lane = DedicatedLane(opener, limit=5)
    first = asyncio.create_task(lane.run(statement, 0.1))
    await asyncio.sleep(0.02)
    with pytest.raises(RuntimeError, match="one statement at a time"):
        await lane.run(statement, 0)
    await lane.close()  # while the first runs: its connection closes when it ends
    assert not opener.opened[0].closed
    assert await first == "done"
    assert opener.opened[0].closed
    with pytest.raises(RuntimeError, match="closed"):
        await lane.run(statement, 0)


async def test_a_statement_in_flight_when_the_lane_closes_keeps_its_deadline() -> None:
    opener = Opener()
    lane = DedicatedLane(opener, limit=0.2)
    stuck = asyncio.create_task(lane.run(statement, 5))
    await asyncio.sleep(0.05)
    await lane.close()
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(stuck, 2)
    assert time.monotonic() - started < 0.5
    assert opener.opened[0].closed


async def test_a_deadline_arms_one_timer_for_many_statements() -> None:
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    real_call_later = loop.call_later

    deadline = Deadline(0.2)

    def call_later(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
        if callback == deadline._check:
            armed.append(delay)
        return real_call_later(delay, callback, *args)

    loop.call_later = call_later  # type: ignore[method-assign]
    try:
        for _ in range(100):
            deadline.start()
            await asyncio.sleep(0)
            assert deadline.stop() is False
        await asyncio.sleep(0.25)  # the timer fires once, finds nothing running, and stays disarmed
        deadline.start()
        deadline.stop()
    finally:
        del loop.call_later
        deadline.cancel()
    assert armed == [0.2, 0.2]
