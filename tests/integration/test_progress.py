"""ctx.progress: reported by running handlers, written in batches, fenced to the run that reported it."""

from __future__ import annotations

import asyncio
import threading

import anyio.from_thread

from aiojobs_pg import App, JobContext, JobStatus, Retry
from tests.helpers import eventually


async def test_progress_shows_on_the_job_and_a_chatty_handler_costs_a_few_writes(app: App) -> None:
    gate = asyncio.Event()

    @app.handler()
    async def resize(data: None, ctx: JobContext) -> str:
        for i in range(1, 2001):
            await ctx.progress(i / 2000, f"resized {i}/2000")
        await gate.wait()
        return "done"

    job = await app.enqueue("resize")
    async with app.worker() as worker:
        async def reported() -> bool:
            j = await app.get_job(job.id)
            return j.progress == 1.0 and j.progress_message == "resized 2000/2000"

        await eventually(reported, timeout=5)
        assert worker.progress.writes <= 5  # 2,000 reports, written at most twice a second
        gate.set()
        await eventually(lambda: _status_is(app, job.id, JobStatus.COMPLETED), timeout=5)
    done = await app.get_job(job.id)
    assert done.progress is None and done.result == "done"  # a completed job reads as done, not as 100%


async def test_a_new_attempt_starts_with_no_progress(app: App) -> None:
    second = asyncio.Event()
    gate = asyncio.Event()

    @app.handler()
    async def flaky(data: None, ctx: JobContext) -> None:
        if ctx.attempt == 1:
            await ctx.progress(0.5, "halfway, then failed")
            # Written before the attempt ends: the next attempt must find it and clear it.
            await eventually(lambda: _progress_is(app, ctx.job_id, 0.5), message="the progress was never written")
            raise Retry(after=0)
        second.set()
        await gate.wait()

    job = await app.enqueue("flaky")
    async with app.worker():
        await asyncio.wait_for(second.wait(), 10)
        running = await app.get_job(job.id)
        assert running.attempts == 2 and running.progress is None and running.progress_message is None
        gate.set()


async def test_a_sync_handler_reports_through_from_thread(app: App) -> None:
    gate = threading.Event()

    @app.handler()
    def crunch(data: None, ctx: JobContext) -> None:
        anyio.from_thread.run(ctx.progress, 0.25, "a quarter")
        gate.wait(10)

    job = await app.enqueue("crunch")
    async with app.worker():
        async def reported() -> bool:
            return (await app.get_job(job.id)).progress == 0.25

        await eventually(reported, timeout=5)
        gate.set()


async def _status_is(app: App, job_id: int, status: JobStatus) -> bool:
    return (await app.get_job(job_id)).status is status


async def _progress_is(app: App, job_id: int, fraction: float) -> bool:
    return (await app.get_job(job_id)).progress == fraction
