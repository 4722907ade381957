"""A fleet of workers on one schema: mixed handler sets, cancels that reach the running worker, deferred jobs on time.

Each service is an App of its own (its own pool, listener and worker) on the test's schema, as
two deployments sharing a database would be.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import pytest

from aiojobs_pg import App, JobContext, JobStatus, Retry, RunStatus
from tests.helpers import eventually, register_slow


@asynccontextmanager
async def service(app: App, **settings: object) -> AsyncIterator[App]:
    """Another App on ``app``'s schema (another deployment of the same database)."""
    assert app.dsn is not None
    other = App(app.dsn, schema=app.schema, lease=3, poll_interval=0.2, maintenance_interval=0.5, drain_timeout=5,
                **settings)  # type: ignore[arg-type]
    async with other:
        yield other


async def test_a_worker_claims_only_the_jobs_it_has_a_handler_for(app: App) -> None:
    app.validate_handlers = False  # the enqueuing side need not know the handlers (another service runs them)
    ran: dict[str, list[int]] = {"a": [], "b": []}

    @app.handler()
    async def a(data: dict[str, int]) -> None:
        ran["a"].append(data["i"])

    async with service(app) as other:
        @other.handler()
        async def b(data: dict[str, int]) -> None:
            ran["b"].append(data["i"])

        jobs = [await app.enqueue(h, {"i": i}) for i in range(10) for h in ("a", "b")]
        ghost = await app.enqueue("ghost", max_attempts=1)
        async with app.worker() as wa, other.worker() as wb:
            await eventually(lambda: len(ran["a"]) + len(ran["b"]) == 20, timeout=15)
            workers = {w["id"]: w for w in await app.admin().workers()}
            assert workers[wa.id]["handlers"] == ["a"] and workers[wb.id]["handlers"] == ["b"]
            assert workers[wa.id]["alive"] and workers[wb.id]["alive"]
        assert sorted(ran["a"]) == sorted(ran["b"]) == list(range(10))
        for job in jobs:
            done = await app.get_job(job.id)
            assert done.status is JobStatus.COMPLETED and done.attempts == 1
            runs = await app.job_history(job.id)
            assert [r.worker_id for r in runs] == [wa.id if job.handler == "a" else wb.id]
        # Nobody has it: it waits, with no attempt spent and no run recorded, for a worker that has it.
        waiting = await app.get_job(ghost.id)
        assert waiting.status is JobStatus.PENDING and waiting.attempts == 0
        assert await app.job_history(ghost.id) == []

        @other.handler("ghost")  # a release that has it is deployed
        async def ghost_handler(data: None) -> str:
            return "finally"

        await other.run_worker(burst=True, handle_signals=False)
        assert (await app.get_job(ghost.id)).result == "finally"


async def test_a_cancel_stops_the_run_on_another_service_at_once_and_records_it(app: App) -> None:
    started, stopped = register_slow(app)
    job = await app.enqueue("slow")
    async with app.worker(lease=30) as worker:  # renewals every 10 s: only the notification can be this quick
        await asyncio.wait_for(started.wait(), 10)
        await asyncio.wait_for(worker.signals.wait("renew", 1), 10)  # the next one is 10 s away
        async with service(app) as other:
            t0 = time.monotonic()
            await other.cancel(job.id)
        await asyncio.wait_for(stopped.wait(), 1)
        assert time.monotonic() - t0 < 1
        await eventually(lambda: _history_statuses(app, job.id, [RunStatus.CANCELLED]), timeout=5)
    assert (await app.get_job(job.id)).status is JobStatus.CANCELLED
    [run] = await app.job_history(job.id)
    assert run.started_at is not None and run.completed_at is not None and run.duration_ms is not None
    assert run.completed_at >= run.started_at and run.duration_ms >= 0


async def test_a_sync_handler_sees_ctx_cancelled(app: App) -> None:
    running, saw = threading.Event(), threading.Event()

    @app.handler()
    def loop(data: None, ctx: JobContext) -> str:
        running.set()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if ctx.cancelled:
                saw.set()
                return "stopped early"
            time.sleep(0.01)
        return "ran to the end"

    job = await app.enqueue("loop")
    async with app.worker(lease=30) as worker:
        await asyncio.to_thread(running.wait, 10)
        await asyncio.wait_for(worker.signals.wait("renew", 1), 10)  # the next one is 10 s away
        await app.cancel(job.id)
        assert await asyncio.to_thread(saw.wait, 10), "the handler never saw ctx.cancelled"
        await eventually(lambda: _history_statuses(app, job.id, [RunStatus.CANCELLED]), timeout=10,
                         message="no cancelled run recorded")
    done = await app.get_job(job.id)
    assert done.status is JobStatus.CANCELLED and done.result is None  # what it returned is not kept


async def test_a_cancel_whose_notification_was_missed_is_noticed_at_the_lease_renewal(app: App) -> None:
    started, stopped = register_slow(app)
    job = await app.enqueue("slow")
    async with app.worker():  # lease 3 s: renewed every second
        await asyncio.wait_for(started.wait(), 10)
        # As cancel() does, without its notification.
        await app.pool.execute(f"UPDATE {app.schema}.jobs SET status = 'cancelled', lease_expires_at = NULL"
                               " WHERE id = $1", job.id)
        await asyncio.wait_for(stopped.wait(), 5)
        await eventually(lambda: _history_statuses(app, job.id, [RunStatus.CANCELLED]), timeout=5)
    assert (await app.get_job(job.id)).status is JobStatus.CANCELLED


async def test_a_retried_job_whose_worker_did_not_cancel_it_keeps_its_runs_apart(app: App) -> None:
    # A cancel, then a retry before the worker's cancelled run is written: the new status is not
    # "cancelled", so the stale run is fenced off rather than cancelling the retried job.
    gate = asyncio.Event()

    @app.handler()
    async def once(data: None) -> str:
        await gate.wait()
        return "done"

    job = await app.enqueue("once")
    async with app.worker(lease=30) as worker:
        await eventually(lambda: job.id in worker.tasks, timeout=10)
        await app.cancel(job.id)
        await eventually(lambda: _history_statuses(app, job.id, [RunStatus.CANCELLED]), timeout=5)
        gate.set()
        await app.retry(job.id)
        await eventually(lambda: _status_is(app, job.id, JobStatus.COMPLETED), timeout=10)
    assert [r.status for r in await app.job_history(job.id)] == [RunStatus.CANCELLED, RunStatus.COMPLETED]


@pytest.mark.parametrize("enqueued", ["before the worker started", "while it runs", "in a batch"])
async def test_a_deferred_job_starts_on_time_whatever_the_poll_interval(app: App, enqueued: str) -> None:
    @app.handler()
    async def later(data: None) -> None:
        return None

    async def enqueue() -> int:
        if enqueued == "in a batch":
            jobs = await app.enqueue_many([{"handler": "later", "delay": 1.0}, {"handler": "later", "delay": 60}])
            return jobs[0].id
        return (await app.enqueue("later", delay=1.0)).id

    job_id = await enqueue() if enqueued == "before the worker started" else None
    async with app.worker(poll_interval=30):  # a poll would be up to 30 s late
        if job_id is None:
            job_id = await enqueue()
        await eventually(lambda: _status_is(app, job_id, JobStatus.COMPLETED), timeout=10)
    [run] = await app.job_history(job_id)
    assert run.started_at is not None and run.scheduled_at is not None
    late = run.started_at - run.scheduled_at
    # The goal is within 50 ms on an idle worker (benchmarks: latency); a test on a busy machine allows more.
    assert timedelta(0) <= late < timedelta(seconds=0.5), late


async def test_a_retry_starts_on_time_after_its_backoff(app: App) -> None:
    @app.handler()
    async def flaky(data: None, ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise Retry(after=1.0)

    job = await app.enqueue("flaky")
    async with app.worker(poll_interval=30):
        await eventually(lambda: _status_is(app, job.id, JobStatus.COMPLETED), timeout=10)
    first, second = await app.job_history(job.id)
    assert first.completed_at is not None and second.started_at is not None
    gap = (second.started_at - first.completed_at).total_seconds()
    assert 0.9 <= gap < 1.5, gap


async def _history_statuses(app: App, job_id: int, expected: list[RunStatus]) -> bool:
    return [r.status for r in await app.job_history(job_id)] == expected


async def _status_is(app: App, job_id: int, status: JobStatus) -> bool:
    return (await app.get_job(job_id)).status is status
