"""The completer alone: outcomes batched into flushes, a failed flush retried, steps in its transaction.

A fake lane and fake queries stand in for the database: what is checked is the completer's own
logic (what goes in which flush, what is kept after a failure), not SQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from contextlib import asynccontextmanager
from typing import Any

import pytest

from aiojobs_pg import JobStatus, RunStatus
from aiojobs_pg.completer import Completer
from aiojobs_pg.models import Outcome


def outcome(job_id: int) -> Outcome:
    return Outcome(job_id, 1, job_id, JobStatus.COMPLETED, RunStatus.COMPLETED, 0, 1, "w1")


class FakeConn:
    def __init__(self) -> None:
        self.transactions = 0

    @asynccontextmanager
    async def transaction(self) -> Any:
        self.transactions += 1
        yield


class FakeLane:
    def __init__(self) -> None:
        self.conn = FakeConn()

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return await fn(self.conn, *args, **kwargs)


class FakeQueries:
    """complete() applies every outcome but those it is told to fence, and fails the first ``failures`` calls."""

    def __init__(self, *, failures: int = 0, fenced: frozenset[int] = frozenset()) -> None:
        self.failures = failures
        self.fenced = fenced
        self.flushes: list[list[int]] = []

    async def complete(self, db: Any, outcomes: Sequence[Outcome], *, history: bool) -> set[int]:
        if self.failures:
            self.failures -= 1
            raise OSError("connection lost")
        self.flushes.append([o.job_id for o in outcomes])
        return {o.job_id for o in outcomes} - self.fenced


async def run_until_flushed(completer: Completer, expected: int) -> list[tuple[list[int], set[int]]]:
    flushed: list[tuple[list[int], set[int]]] = []
    completer.on_flushed = lambda batch, applied: flushed.append(([o.job_id for o in batch], applied))
    task = asyncio.create_task(completer.run())
    while sum(len(b) for b, _ in flushed) < expected:
        await completer.signals.wait("flush")
    completer.close()
    await asyncio.wait_for(task, 5)
    return flushed


async def test_outcomes_that_arrive_together_go_out_in_one_flush() -> None:
    queries = FakeQueries(fenced=frozenset({2}))
    completer = Completer(FakeLane(), queries, history=True, on_flushed=lambda b, a: None)  # type: ignore[arg-type]
    for i in (1, 2, 3):
        completer.put(outcome(i))
    flushed = await run_until_flushed(completer, 3)
    assert flushed == [([1, 2, 3], {1, 3})]  # job 2 was fenced off: not applied, still reported
    assert queries.flushes == [[1, 2, 3]]


async def test_a_failed_flush_keeps_the_outcomes_of_jobs_still_owned_and_tries_again() -> None:
    queries = FakeQueries(failures=1)
    owned = {1, 3}
    completer = Completer(FakeLane(), queries, history=True, on_flushed=lambda b, a: None,  # type: ignore[arg-type]
                          retry_delay=0.01, owned=owned.__contains__)
    for i in (1, 2, 3):
        completer.put(outcome(i))
    flushed = await run_until_flushed(completer, 2)
    assert flushed == [([1, 3], {1, 3})]  # 2's lease was lost meanwhile: its outcome is not retried


async def test_the_batch_is_capped() -> None:
    queries = FakeQueries()
    completer = Completer(FakeLane(), queries, history=True, on_flushed=lambda b, a: None,  # type: ignore[arg-type]
                          max_batch=2)
    for i in range(5):
        completer.put(outcome(i))
    await run_until_flushed(completer, 5)
    assert queries.flushes == [[0, 1], [2, 3], [4]]


@pytest.mark.parametrize("with_steps", [False, True])
async def test_steps_run_after_the_write_in_one_transaction(with_steps: bool) -> None:
    seen: list[tuple[list[int], set[int]]] = []

    async def step(conn: Any, batch: Sequence[Outcome], applied: set[int]) -> None:
        seen.append(([o.job_id for o in batch], applied))

    lane = FakeLane()
    completer = Completer(lane, FakeQueries(), history=True, on_flushed=lambda b, a: None,  # type: ignore[arg-type]
                          steps=[step] if with_steps else [])
    completer.put(outcome(9))
    await run_until_flushed(completer, 1)
    # Without steps the completion is one statement: no transaction of its own.
    assert (lane.conn.transactions, seen) == ((1, [([9], {9})]) if with_steps else (0, []))
