"""Paused queues: no worker on any host claims from them; running jobs finish; persisted."""

from __future__ import annotations

import asyncio

import pytest

from aiojobs_pg import App, JobStatus, ValidationError
from tests.helpers import eventually
from tests.integration.test_fleet import service


async def test_a_paused_queue_is_not_claimed_by_any_worker_and_resumes(app: App) -> None:
    started: list[str] = []
    gate = asyncio.Event()

    @app.handler()
    async def mail(data: str) -> None:
        started.append(data)
        await gate.wait()

    running = await app.enqueue("mail", "before the pause", queue="mail")
    async with app.worker(queues=["mail", "default"], poll_interval=0.1) as worker:
        await eventually(lambda: started == ["before the pause"])
        async with service(app) as other:  # another host pauses it
            await other.pause_queue("mail")
            assert await other.admin().paused_queues() == ["mail"]
        held = await app.enqueue("mail", "while paused", queue="mail")
        other_queue = await app.enqueue("mail", "another queue", queue="default")
        await eventually(lambda: "another queue" in started)  # the other queue goes on
        claims = worker.signals.counts["claim"]
        await asyncio.wait_for(worker.signals.wait("claim", claims + 5), 10)  # polls (every 0.1 s) take nothing
        assert "while paused" not in started
        assert (await app.get_job(held.id)).status is JobStatus.PENDING
        gate.set()  # the job running before the pause finishes
        await eventually(lambda: _status_is(app, running.id, JobStatus.COMPLETED))
        await eventually(lambda: _status_is(app, other_queue.id, JobStatus.COMPLETED))
        await app.resume_queue("mail")
        await eventually(lambda: _status_is(app, held.id, JobStatus.COMPLETED), timeout=5)
    assert await app.admin().paused_queues() == []


async def test_a_pause_outlasts_the_workers_and_wakes_them_on_resume(app: App) -> None:
    @app.handler()
    async def job(data: None) -> None:
        return None

    await app.pause_queue("default")
    held = await app.enqueue("job")
    await app.run_worker(burst=True, handle_signals=False)  # a new worker: the pause still holds
    assert (await app.get_job(held.id)).status is JobStatus.PENDING
    async with app.worker(poll_interval=30) as worker:  # only the resume's notification can wake it in time
        await eventually(lambda: worker.notifier.connected, message="listener never connected")
        await asyncio.wait_for(worker.signals.wait("claim", 1), 5)  # its startup claim found the queue paused
        await app.resume_queue("default")
        await eventually(lambda: _status_is(app, held.id, JobStatus.COMPLETED), timeout=5)


async def test_bad_queue_names_are_refused(app: App) -> None:
    with pytest.raises(ValidationError) as err:
        await app.pause_queue("")
    assert err.value.field == "queue"


async def _status_is(app: App, job_id: int, status: JobStatus) -> bool:
    return (await app.get_job(job_id)).status is status
