"""The executor alone: a claimed job in, an Outcome out, no database (it never writes to one)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aiojobs_pg import Backoff, Cancel, JobContext, JobStatus, Retry, RunStatus, ValidationError
from aiojobs_pg.executor import Executor, HandlerSpec
from aiojobs_pg.models import ClaimedJob

TICK = datetime(2025, 1, 1, 9, tzinfo=UTC)


def claimed(handler: str = "h", *, attempt: int = 1, max_attempts: int = 3, schedule: str | None = None,
            timeout: float | None = None, data: Any = None) -> ClaimedJob:
    return ClaimedJob(id=7, handler=handler, data=data, queue="q", attempt=attempt, max_attempts=max_attempts,
                      timeout=timeout, schedule=schedule, timezone=None, scheduled_at=TICK, claimed_at=TICK,
                      token=3)


def executor(**handlers: Any) -> Executor:
    specs = {name: HandlerSpec.build(name, fn) for name, fn in handlers.items()}
    return Executor(specs, worker_id="w1", backoff=Backoff(base=2, factor=2, cap=60, jitter=0), max_result_bytes=50)


async def test_a_success_stores_the_result_and_fences_with_the_claim_token() -> None:
    async def h(data: Any, ctx: JobContext) -> Any:
        return {"got": data, "attempt": ctx.attempt, "job": ctx.job_id}

    o = await executor(h=h).execute(claimed(data=[1]))
    assert (o.job_status, o.run_status, o.token, o.worker_id) == (JobStatus.COMPLETED, RunStatus.COMPLETED, 3, "w1")
    assert o.result_json == '{"got":[1],"attempt":1,"job":7}' and o.error is None
    assert o.finished_us >= o.started_us


async def test_a_failure_retries_after_backoff_then_fails_for_good() -> None:
    def h(data: Any) -> None:  # a plain def runs in a worker thread
        raise ValueError("boom")

    first = await executor(h=h).execute(claimed(attempt=2))
    assert (first.job_status, first.run_status, first.delay) == (JobStatus.PENDING, RunStatus.FAILED, 4.0)
    assert first.error is not None and "ValueError: boom" in first.error and "Traceback" in first.error
    last = await executor(h=h).execute(claimed(attempt=3))
    assert (last.job_status, last.delay) == (JobStatus.FAILED, None)


async def test_a_recurring_job_moves_on_to_its_next_tick_after_its_last_attempt() -> None:
    async def h(data: Any) -> None:
        raise RuntimeError("tick failed")

    o = await executor(h=h).execute(claimed(attempt=3, schedule="1h"))
    assert (o.job_status, o.reset_attempts) == (JobStatus.PENDING, True)
    assert o.next_run_at == TICK + timedelta(hours=1)  # the tick after the one it was claimed for


async def test_retry_and_cancel_signals() -> None:
    async def later(data: Any) -> None:
        raise Retry(after=7, reason="busy")

    async def stop(data: Any) -> None:
        raise Cancel("no longer needed")

    ex = executor(later=later, stop=stop)
    retried = await ex.execute(claimed("later", attempt=3, max_attempts=5))
    assert (retried.job_status, retried.delay, retried.error) == (JobStatus.PENDING, 7.0, "Retry: busy")
    cancelled = await ex.execute(claimed("stop"))
    assert (cancelled.job_status, cancelled.run_status) == (JobStatus.CANCELLED, RunStatus.CANCELLED)
    assert cancelled.error == "Cancel: no longer needed"


async def test_a_timeout_an_unknown_handler_and_a_result_over_the_limit_fail_the_attempt() -> None:
    async def slow(data: Any) -> None:
        await asyncio.sleep(5)

    async def big(data: Any) -> str:
        return "x" * 100

    ex = executor(slow=slow, big=big)
    started = time.monotonic()
    timed_out = await ex.execute(claimed("slow", timeout=0.05))
    assert time.monotonic() - started < 2
    assert timed_out.error is not None and timed_out.error.startswith("TimeoutError: job exceeded its timeout")
    unknown = await ex.execute(claimed("nope"))
    assert unknown.error == "unknown handler 'nope' (this worker knows: big, slow)"
    too_big = await ex.execute(claimed("big"))
    assert too_big.result_json is None and too_big.error is not None and too_big.error.startswith("result too large")
    assert all(o.job_status is JobStatus.PENDING for o in (timed_out, unknown, too_big))


async def test_a_release_gives_the_attempt_back() -> None:
    o = executor().released(claimed(attempt=2), 0)
    assert (o.job_status, o.run_status, o.release, o.delay) == (JobStatus.PENDING, RunStatus.RELEASED, True, 0.0)


@pytest.mark.parametrize("fraction", [-0.1, 1.5, float("nan"), True, "half"])
async def test_progress_out_of_range_is_refused(fraction: object) -> None:
    ctx = JobContext(job_id=1, handler="h", queue="q", attempt=1, max_attempts=1, worker_id="w",
                     scheduled_at=None, name=None)  # type: ignore[arg-type]
    with pytest.raises(ValidationError) as err:
        await ctx.progress(fraction)  # type: ignore[arg-type]
    assert err.value.field == "progress"
    assert ctx.last_progress is None
