"""Batched, fenced completion: many outcomes, one statement, one transaction.

Outcomes pile up while a flush is in flight and go out together in the next one
(group commit), so the database sees one round trip per batch however many jobs
finished. A failed flush keeps its outcomes and tries again: the jobs stay
``running`` under this worker's renewed leases meanwhile, and if the worker dies
first the rescuer re-runs them and our late write is fenced off.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

import anyio

from .enqueue import insert_many
from .errors import DatabaseUnavailable, ValidationError
from .lane import Lane
from .logs import get_logger
from .models import Outcome
from .queries import DB_ERRORS, Conn, Queries
from .signals import Signals

log = get_logger("aiojobs_pg.completer")

OnFlushed = Callable[[Sequence[Outcome], set[int]], None]
#: Work in the completion's transaction, after the fenced write: ``step(connection, batch, applied)``, where
#: ``applied`` holds the ids of the outcomes the fence let through (the completion's seam for features:
#: unblocking dependents, recording events). It commits with the completion or not at all: a step that
#: raises a database error rolls the flush back, which is retried like any failed flush; any other
#: exception is a bug, and stops the worker as one in the completion statement would.
CompletionStep = Callable[[Conn, Sequence[Outcome], set[int]], Awaitable[None]]


class Completer:
    """Collects outcomes and writes them in batches."""

    def __init__(self, lane: Lane, queries: Queries, *, history: bool, on_flushed: OnFlushed,
                 max_batch: int = 1000, retry_delay: float = 0.5,
                 owned: Callable[[int], bool] = lambda job_id: True, steps: Sequence[CompletionStep] = (),
                 signals: Signals | None = None) -> None:
        self.lane = lane
        self.steps = tuple(steps)
        self.signals = signals or Signals()
        self.queries = queries
        self.history = history
        self.on_flushed = on_flushed
        self.max_batch = max_batch
        self.retry_delay = retry_delay
        #: is the job still this worker's? (outcomes of jobs lost during a failed flush are not retried)
        self.owned = owned
        self._buffer: list[Outcome] = []
        self._wake = asyncio.Event()  # cleared and reused: see Producer
        self._closing = False

    def __len__(self) -> int:
        return len(self._buffer)

    def put(self, outcome: Outcome) -> None:
        """Queue an outcome for the next flush (never blocks)."""
        self._buffer.append(outcome)
        self._wake.set()

    def drop(self, job_ids: set[int]) -> None:
        """Forget outcomes of jobs this worker no longer owns (lease lost)."""
        self._buffer = [o for o in self._buffer if o.job_id not in job_ids]

    def close(self) -> None:
        """Stop after the buffer is flushed."""
        self._closing = True
        self._wake.set()

    async def run(self) -> None:
        """Flush until closed and empty."""
        while True:
            if not self._buffer:
                if self._closing:
                    return
                await self._wake.wait()
                self._wake.clear()
                # Let handlers that finished in this same loop turn add theirs.
                await asyncio.sleep(0)
                continue
            batch, self._buffer = self._buffer[: self.max_batch], self._buffer[self.max_batch :]
            try:
                applied = await self.lane.run(self._complete, batch)
            except DB_ERRORS as exc:
                log.warning("completion_flush_failed", error=repr(exc), jobs=len(batch))
                self._buffer = [o for o in batch if self.owned(o.job_id)] + self._buffer
                await anyio.sleep(self.retry_delay)
                continue
            self.on_flushed(batch, applied)
            self.signals.emit("flush")

    async def _complete(self, conn: Conn, batch: Sequence[Outcome]) -> set[int]:
        steps = self.steps
        if any(o.follow_ups for o in batch):
            steps += (self._insert_follow_ups,)
        # With no steps the completion is one statement, which needs no transaction of its own.
        if not steps:
            return await self.queries.complete(conn, batch, history=self.history)
        async with conn.transaction():
            applied = await self.queries.complete(conn, batch, history=self.history)
            for step in steps:
                await step(conn, batch, applied)
        return applied

    async def _insert_follow_ups(self, conn: Conn, batch: Sequence[Outcome], applied: set[int]) -> None:
        """The completion step of ``ctx.enqueue``: the follow-ups of the runs whose completion went through."""
        jobs = [job for o in batch if o.follow_ups and o.job_id in applied for job in o.follow_ups]
        if not jobs:
            return
        try:
            await insert_many(conn, self.queries, jobs)
        except ValidationError as exc:
            # a dedup key whose holder ended between the insert and its lookup: the flush is tried again
            raise DatabaseUnavailable(f"a follow-up job could not be enqueued: {exc}", operation="ctx.enqueue",
                                      may_have_run=False) from exc
