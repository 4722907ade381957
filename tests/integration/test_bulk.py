"""Bulk actions: retry every failed job, cancel every pending one, delete finished ones; one statement each."""

from __future__ import annotations

import pytest

from aiojobs_pg import App, JobNotFound, JobStatus, ValidationError


@pytest.fixture
async def jobs(app: App) -> App:
    app.validate_handlers = False

    @app.handler()
    async def ok(data: None) -> str:
        return "done"

    @app.handler()
    async def bad(data: None) -> None:
        raise RuntimeError("no")

    return app


async def test_retry_failed_brings_back_the_failed_jobs_of_a_handler(jobs: App) -> None:
    app = jobs
    failed = [await app.enqueue("bad", max_attempts=1, queue=q) for q in ("a", "a", "b")]
    keyed = [await app.enqueue("bad", max_attempts=1, dedup_key="k", queue="a")]
    await app.run_worker(queues=["a", "b"], burst=True, handle_signals=False)
    keyed.append(await app.enqueue("bad", max_attempts=1, dedup_key="k", queue="a"))  # the key is free again
    await app.run_worker(queues=["a"], burst=True, handle_signals=False)
    assert [(await app.get_job(j.id)).status for j in [*failed, *keyed]] == [JobStatus.FAILED] * 5

    assert await app.retry_failed(queue="b") == 1
    assert (await app.get_job(failed[2].id)).status is JobStatus.PENDING
    # Queue a: two without a key, and of the two sharing a key only the newer (a live key is unique).
    assert await app.retry_failed(handler="bad", queue="a") == 3
    back = await app.get_job(failed[0].id)
    assert back.status is JobStatus.PENDING and back.attempts == 0
    assert [(await app.get_job(j.id)).status for j in keyed] == [JobStatus.FAILED, JobStatus.PENDING]
    assert await app.retry_failed() == 0  # the one left shares a key with a live job


async def test_cancel_pending_leaves_other_queues_and_running_jobs(jobs: App) -> None:
    app = jobs
    mail = [await app.enqueue("ok", queue="mail") for _ in range(3)]
    other = await app.enqueue("ok", queue="other")
    assert await app.cancel_pending(queue="mail") == 3
    assert [(await app.get_job(j.id)).status for j in mail] == [JobStatus.CANCELLED] * 3
    assert (await app.get_job(other.id)).status is JobStatus.PENDING


async def test_delete_finished_deletes_old_jobs_with_their_history(jobs: App) -> None:
    app = jobs
    done = await app.enqueue("ok")
    failed = await app.enqueue("bad", max_attempts=1)
    await app.run_worker(burst=True, handle_signals=False)
    live = await app.enqueue("ok", delay=3600)
    assert await app.delete_finished("1h") == 0  # nothing is that old
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET updated_at = now() - interval '2 hours'")
    await app.pool.execute(f"UPDATE {app.schema}.job_runs SET completed_at = now() - interval '2 hours'")
    assert await app.delete_finished("1h") == 2
    for gone in (done, failed):
        with pytest.raises(JobNotFound):
            await app.get_job(gone.id)
    assert await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs") == 0  # their runs went too
    assert (await app.get_job(live.id)).status is JobStatus.PENDING


async def test_bulk_filters_are_checked(jobs: App) -> None:
    with pytest.raises(ValidationError) as err:
        await jobs.cancel_pending(queue="")
    assert err.value.field == "queue"
    with pytest.raises(ValidationError):
        await jobs.delete_finished("soon")
