"""The producer alone: claims up to the free slots, wakes on a notification or a due hint, stops in burst mode.

Fake queries stand in for the database; ``worker.signals`` counts each claim, so the tests wait on
claims instead of sleeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiojobs_pg.models import ClaimedJob
from aiojobs_pg.producer import Producer
from aiojobs_pg.queries import Queries


class FakeLane:
    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await fn(None, *args, **kwargs)


class FakeQueries(Queries):
    """Hands out ``pending`` job ids, at most ``limit`` per claim, and records each claim's limit."""

    def __init__(self, pending: int) -> None:
        super().__init__("fake")
        self.pending = list(range(1, pending + 1))
        self.limits: list[int] = []
        #: what next_due answers, and how often it was asked
        self.due: float | None = None
        self.due_asked = 0

    async def claim(self, db: Any, queues: Sequence[str], limit: int, lease: float, worker_id: str,
                    claim: Any = None) -> list[ClaimedJob]:
        self.limits.append(limit)
        taken, self.pending = self.pending[:limit], self.pending[limit:]
        now = datetime.now(UTC)
        return [ClaimedJob(id=i, handler="h", data=None, queue="q", attempt=1, max_attempts=3, timeout=None,
                           schedule=None, timezone=None, scheduled_at=now, claimed_at=now) for i in taken]

    async def next_due(self, db: Any, queues: Sequence[str], handlers: Sequence[str]) -> float | None:
        self.due_asked += 1
        return self.due


def producer(queries: FakeQueries, *, slots: int, running: list[int], burst: bool = False,
             poll_interval: float = 30.0) -> Producer:
    return Producer(FakeLane(), queries, worker_id="w1", queues=["q"], handlers=["h"],  # type: ignore[arg-type]
                    lease=30, poll_interval=poll_interval, free_slots=lambda: slots - len(running),
                    spawn=lambda job: running.append(job.id), burst=burst, idle=lambda: not running)


def stop(p: Producer) -> None:
    """As the worker stops it: no more claims, and whatever it waits on wakes."""
    p.stopping = True
    p.wake()
    p.slot_freed()


async def test_claims_up_to_the_free_slots_and_again_as_they_free() -> None:
    queries, running = FakeQueries(pending=5), []
    p = producer(queries, slots=2, running=running)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.signals.wait("claim", 1), 5)
    assert running == [1, 2] and queries.limits == [2]
    running.clear()
    p.slot_freed()  # the claim filled every slot: more is probably waiting, so it claims at once
    await asyncio.wait_for(p.signals.wait("claim", 2), 5)
    assert running == [3, 4] and queries.limits == [2, 2]
    stop(p)
    await asyncio.wait_for(task, 5)


async def test_an_idle_producer_sleeps_until_a_notification_or_a_due_hint() -> None:
    queries, running = FakeQueries(pending=0), []
    p = producer(queries, slots=10, running=running, poll_interval=30)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.signals.wait("claim", 1), 5)  # found nothing: asleep for the 30 s poll
    p.wake()  # a notification
    await asyncio.wait_for(p.signals.wait("claim", 2), 5)
    p.due_in(0.05)  # a retry due in 50 ms: claimed then, not at the next poll
    await asyncio.wait_for(p.signals.wait("claim", 3), 2)
    stop(p)
    await asyncio.wait_for(task, 5)


async def test_burst_mode_returns_once_nothing_is_due_and_nothing_runs() -> None:
    queries, running = FakeQueries(pending=3), []
    p = producer(queries, slots=10, running=running, burst=True, poll_interval=0.05)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.signals.wait("claim", 1), 5)
    assert running == [1, 2, 3]
    running.clear()
    p.slot_freed()
    await asyncio.wait_for(task, 5)  # the next claim (at the poll) finds nothing, and nothing runs: done
    assert p.claimed == 3


async def test_an_idle_producer_asks_when_the_next_deferred_job_is_due_and_wakes_then() -> None:
    queries, running = FakeQueries(pending=0), []
    queries.due = 0.05  # the database knows of a job due in 50 ms
    p = producer(queries, slots=10, running=running, poll_interval=30)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.signals.wait("claim", 1), 5)
    assert queries.due_asked == 1  # asked once, on going idle at the start
    queries.due = None
    await asyncio.wait_for(p.signals.wait("claim", 2), 2)  # woke for it, 29 s before the poll
    assert queries.due_asked == 2  # that hint came due: asked again for the next one (none)
    p.wake()  # a notification: claims, but has nothing new to ask
    await asyncio.wait_for(p.signals.wait("claim", 3), 5)
    assert queries.due_asked == 2
    p.reconnected()  # the listener came back: notifications may have been missed, so ask again
    await asyncio.wait_for(p.signals.wait("claim", 4), 5)
    assert queries.due_asked == 3
    stop(p)
    await asyncio.wait_for(task, 5)


async def test_a_later_hint_does_not_delay_an_earlier_one() -> None:
    queries, running = FakeQueries(pending=0), []
    p = producer(queries, slots=10, running=running, poll_interval=30)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.signals.wait("claim", 1), 5)
    p.due_in(0.05)
    p.due_in(20)  # a job due later (another notification) keeps the earlier wake-up
    await asyncio.wait_for(p.signals.wait("claim", 2), 2)
    stop(p)
    await asyncio.wait_for(task, 5)


async def test_claimed_jobs_start_whatever_the_next_due_question_does() -> None:
    class DueFails(FakeQueries):
        async def next_due(self, db: Any, queues: Sequence[str], handlers: Sequence[str]) -> float | None:
            self.due_asked += 1
            raise OSError("connection lost")

    queries, running = DueFails(pending=3), []
    p = producer(queries, slots=10, running=running, poll_interval=30)
    task = asyncio.create_task(p.run())
    await asyncio.wait_for(p.signals.wait("claim", 1), 5)
    assert running == [1, 2, 3] and queries.due_asked == 1  # started, though the question failed
    p.wake()
    await asyncio.wait_for(p.signals.wait("claim", 2), 5)
    assert queries.due_asked == 2  # not answered: asked again
    stop(p)
    await asyncio.wait_for(task, 5)
