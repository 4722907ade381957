"""App.wait: the result of a job once it finished, woken by the completion's notification."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aiojobs_pg import App, JobCancelled, JobContext, JobFailed, JobStateError, Retry
from tests.helpers import eventually
from tests.integration.test_fleet import service


async def test_wait_returns_the_result_of_a_job_another_service_ran(app: App) -> None:
    async with service(app) as other:
        @other.handler()
        async def double(data: dict[str, int]) -> int:
            await asyncio.sleep(0.3)
            return data["n"] * 2

        app.validate_handlers = False
        jobs = [await app.enqueue("double", {"n": n}) for n in range(20)]
        async with other.worker():
            results = await asyncio.wait_for(asyncio.gather(*(app.wait(j.id, timeout=30) for j in jobs)), 30)
    assert results == [n * 2 for n in range(20)]


async def test_wait_is_woken_by_the_notification_not_by_polling(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    real_get_job = app.queries.get_job

    async def counting_get_job(db: Any, job_id: int) -> Any:
        reads.append(job_id)
        return await real_get_job(db, job_id)

    monkeypatch.setattr(app.queries, "get_job", counting_get_job)

    @app.handler()
    async def flaky(data: None, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise Retry(after=0.5)  # a retry is not an end: no notification, and the wait goes on
        # A negative, over time: a wait that polled (every poll_interval, 0.2 s here) would read the job meanwhile.
        await asyncio.sleep(1)
        return "second time"

    job = await app.enqueue("flaky")
    async with app.worker():
        assert await app.wait(job.id, timeout=20) == "second time"
    assert reads == [job.id, job.id]  # once when it started waiting, once when the job was done


async def test_wait_raises_when_the_job_fails_or_is_cancelled(app: App) -> None:
    @app.handler()
    async def broken(data: None) -> None:
        raise RuntimeError("disk on fire")

    failing = await app.enqueue("broken", max_attempts=2)
    async with app.worker():
        with pytest.raises(JobFailed) as failed:
            await app.wait(failing.id, timeout=20)
    assert failed.value.job.id == failing.id and failed.value.job.attempts == 2
    assert "RuntimeError: disk on fire" in str(failed.value) and "disk on fire" in (failed.value.error or "")

    pending = await app.enqueue("broken", delay=3600)
    waiting = asyncio.create_task(app.wait(pending.id, timeout=20))
    # Cancelled once the wait listens and has marked the job: the cancellation's notification ends it.
    await eventually(lambda: _awaited(app, pending.id), message="the wait never marked the job")
    async with service(app) as other:
        await other.cancel(pending.id)
    with pytest.raises(JobCancelled):
        await waiting


async def test_wait_on_a_finished_job_answers_at_once_and_a_timeout_raises(app: App) -> None:
    @app.handler()
    async def quick(data: None) -> str:
        return "ok"

    done = await app.enqueue("quick")
    await app.run_worker(burst=True, handle_signals=False)
    assert await asyncio.wait_for(app.wait(done.id), 5) == "ok"
    later = await app.enqueue("quick", delay=3600)
    with pytest.raises(TimeoutError):
        await app.wait(later.id, timeout=0.5)
    recurring = await app.enqueue("quick", schedule="1h")
    with pytest.raises(JobStateError, match="recurring"):
        await app.wait(recurring.id, timeout=5)


async def _awaited(app: App, job_id: int) -> bool:
    """Whether a wait marked the job (it does so once its listener is up, before it reads the job)."""
    return bool(await app.pool.fetchval(f"SELECT awaited FROM {app.schema}.jobs WHERE id = $1", job_id))
