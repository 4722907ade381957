"""Integration tests of the management API (``App`` shortcuts and ``app.admin()``)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from aiojobs_pg import (
    AiojobsPgError,
    App,
    Backoff,
    Job,
    JobNotFound,
    JobStateError,
    JobStatus,
    RunStatus,
    ValidationError,
)
from aiojobs_pg.models import Outcome, micros
from tests.helpers import eventually

TOLERANCE = timedelta(seconds=2)
UNKNOWN_ID = 987_654_321


# --- helpers ---

async def db_now(app: App) -> datetime:
    value: datetime = await app.pool.fetchval("SELECT now()")
    return value


async def set_status(app: App, job_id: int, status: str, attempts: int | None = None) -> None:
    if status != "completed":
        await app.pool.execute(
            f"UPDATE {app.schema}.jobs SET status = $2, attempts = COALESCE($3, attempts) WHERE id = $1",
            job_id, status, attempts)
        return
    # A completed one-off job leaves jobs for its history row: complete it the way a worker does.
    row = await app.pool.fetchrow(
        f"""UPDATE {app.schema}.jobs SET status = 'running', attempts = COALESCE($2, attempts + 1),
                   claims = claims + 1
            WHERE id = $1 RETURNING attempts, claims, next_run_at""", job_id, attempts)
    now = micros(datetime.now(UTC))
    done = Outcome(job_id, row["attempts"], row["claims"], JobStatus.COMPLETED, RunStatus.COMPLETED, now, now, "w1",
                   result_json='{"done": true}')
    assert await app.queries.complete(app.pool, [done], history=True) == {job_id}


async def add_run(app: App, job_id: int, attempt: int, status: str, started_at: datetime,
                  error: str | None = None, result: Any = None) -> int:
    run_id: int = await app.pool.fetchval(
        f"""INSERT INTO {app.schema}.job_runs
            (job_id, attempt, worker_id, status, started_at, completed_at, duration_ms, error, result)
            VALUES ($1, $2, 'w1', $3, $4::timestamptz, $4::timestamptz + interval '1 second', 1000, $5, $6::jsonb)
            RETURNING id""",
        job_id, attempt, status, started_at, error, None if result is None else f'{{"r": {result}}}')
    return run_id


async def count_runs(app: App, job_id: int) -> int:
    value: int = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs WHERE job_id = $1", job_id)
    return value


def same_except(before: Job, after: Job, *changed: str) -> None:
    """``after`` equals ``before`` on every field but ``changed`` (and updated_at)."""
    skip = {*changed, "updated_at"}
    for f in dataclasses.fields(Job):
        if f.name not in skip:
            assert getattr(after, f.name) == getattr(before, f.name), f"{f.name} changed"


# --- get / list ---

async def test_get_job_unknown_id(app: App) -> None:
    with pytest.raises(JobNotFound) as info:
        await app.get_job(UNKNOWN_ID)
    assert info.value.job_id == UNKNOWN_ID
    assert isinstance(info.value, LookupError)
    with pytest.raises(ValidationError):
        await app.get_job(0)


async def test_list_jobs_filters_order_and_limit(app: App) -> None:
    a1 = await app.enqueue("email", queue="a")
    a2 = await app.enqueue("sms", queue="a")
    b1 = await app.enqueue("email", queue="b")
    b2 = await app.enqueue("email", queue="b")
    await set_status(app, a2.id, "failed")
    await set_status(app, b2.id, "completed")

    assert [j.id for j in await app.list_jobs()] == [b2.id, b1.id, a2.id, a1.id]
    assert [j.id for j in await app.list_jobs(status="pending")] == [b1.id, a1.id]
    assert [j.id for j in await app.list_jobs(status=JobStatus.FAILED)] == [a2.id]
    assert [j.id for j in await app.list_jobs(queue="a")] == [a2.id, a1.id]
    assert [j.id for j in await app.list_jobs(handler="email")] == [b2.id, b1.id, a1.id]
    assert [j.id for j in await app.list_jobs(handler="email", queue="b", status="completed")] == [b2.id]
    assert [j.id for j in await app.list_jobs(limit=3)] == [b2.id, b1.id, a2.id]
    assert await app.list_jobs(queue="nope") == []
    assert all(isinstance(j, Job) for j in await app.list_jobs())


async def test_list_jobs_pagination_walks_every_job_once(app: App) -> None:
    created = await app.enqueue_many([{"handler": "h", "data": i} for i in range(7)])
    admin = app.admin()
    seen: list[int] = []
    cursor: int | None = None
    pages = 0
    while True:
        page = await admin.list_jobs(limit=2, cursor=cursor)
        pages += 1
        assert len(page.jobs) <= 2
        seen.extend(j.id for j in page.jobs)
        if page.next_cursor is None:
            break
        assert page.next_cursor == page.jobs[-1].id
        cursor = page.next_cursor
    assert pages == 4
    assert seen == sorted((j.id for j in created), reverse=True)
    # An exact multiple of the page size ends without an empty extra page.
    page = await admin.list_jobs(limit=7)
    assert len(page.jobs) == 7
    assert page.next_cursor is None


@pytest.mark.parametrize("kwargs", [{"status": "done"}, {"status": "PENDING"}, {"limit": 0}, {"limit": 1001},
                                    {"cursor": 0}, {"queue": 5}, {"handler": "x" * 501}])
async def test_list_jobs_invalid_arguments(app: App, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        await app.admin().list_jobs(**kwargs)
    assert info.value.field == next(iter(kwargs))


# --- update ---

@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"name": "renamed"}, {"name": "renamed"}),
        ({"data": {"new": [1, 2]}}, {"data": {"new": [1, 2]}}),
        ({"data": None}, {"data": None}),
        ({"priority": 42}, {"priority": 42}),
        ({"max_attempts": 9}, {"max_attempts": 9}),
        ({"queue": "elsewhere"}, {"queue": "elsewhere"}),
        ({"run_at": datetime(2033, 3, 3, 3, 3, 3, 3, tzinfo=UTC)},
         {"next_run_at": datetime(2033, 3, 3, 3, 3, 3, 3, tzinfo=UTC)}),
        ({"timeout": 12.5}, {"timeout": 12.5}),
        ({"timeout": "2m"}, {"timeout": 120.0}),
    ],
    ids=lambda v: next(iter(v)) if isinstance(v, dict) and v else None,
)
async def test_update_job_single_field(app: App, changes: dict[str, Any], expected: dict[str, Any]) -> None:
    job = await app.enqueue("h", {"old": True}, name="orig", queue="q", priority=1, max_attempts=3, timeout=5)
    other = await app.enqueue("h", {"other": True})
    updated = await app.update_job(job.id, **changes)
    for key, value in expected.items():
        assert getattr(updated, key) == value
    same_except(job, updated, *expected)
    assert await app.get_job(job.id) == updated
    assert await app.get_job(other.id) == other


async def test_update_job_clears_name_and_timeout(app: App) -> None:
    job = await app.enqueue("h", name="orig", timeout=5)
    updated = await app.update_job(job.id, name=None, timeout=None)
    assert updated.name is None
    assert updated.timeout is None
    same_except(job, updated, "name", "timeout")


async def test_update_job_schedule_moves_next_run_to_first_tick(app: App) -> None:
    job = await app.enqueue("h", delay=3600)
    now = await db_now(app)
    updated = await app.update_job(job.id, schedule="5m")
    assert (updated.schedule, updated.timezone) == ("5m", "UTC")
    assert updated.next_run_at.timestamp() % 300 == 0
    assert now < updated.next_run_at <= now + timedelta(minutes=5) + TOLERANCE
    same_except(job, updated, "schedule", "timezone", "next_run_at")

    # A new time zone alone keeps the expression and recomputes the tick.
    cron = await app.update_job(job.id, schedule="0 6 * * *", timezone="Asia/Tokyo")
    local = cron.next_run_at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (local.hour, local.minute) == (6, 0)
    moved = await app.update_job(job.id, timezone="America/New_York")
    assert (moved.schedule, moved.timezone) == ("0 6 * * *", "America/New_York")
    assert moved.next_run_at.astimezone(ZoneInfo("America/New_York")).hour == 6

    # An explicit run_at wins over the first tick.
    run_at = datetime(2035, 1, 1, 12, 0, tzinfo=UTC)
    pinned = await app.update_job(job.id, schedule="1h", run_at=run_at)
    assert pinned.schedule == "1h"
    assert pinned.next_run_at == run_at


async def test_update_job_schedule_none_makes_it_one_off(app: App) -> None:
    job = await app.enqueue("h", schedule="0 9 * * *", timezone="Europe/Paris")
    updated = await app.update_job(job.id, schedule=None)
    assert updated.schedule is None
    assert updated.timezone is None
    same_except(job, updated, "schedule", "timezone")
    with pytest.raises(ValidationError) as info:
        await app.update_job(job.id, timezone="Europe/Paris")
    assert info.value.field == "timezone"


async def test_update_job_unknown_id(app: App) -> None:
    with pytest.raises(JobNotFound):
        await app.update_job(UNKNOWN_ID, priority=1)
    with pytest.raises(JobNotFound):
        await app.update_job(UNKNOWN_ID, schedule="5m")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"name": "a\x00"}, "name"),
        ({"data": {1, 2}}, "data"),
        ({"data": float("nan")}, "data"),
        ({"data": "\ud800"}, "data"),
        ({"priority": 2**31}, "priority"),
        ({"priority": "1"}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"queue": ""}, "queue"),
        ({"queue": None}, "queue"),
        ({"queue": "q" * 101}, "queue"),
        ({"run_at": datetime(2030, 1, 1)}, "run_at"),
        ({"schedule": "every 5 minutes"}, "schedule"),
        ({"schedule": "0 0 31 2 *"}, "schedule"),
        ({"schedule": "5m", "timezone": "Nowhere/Land"}, "timezone"),
        ({"timezone": "Europe/Paris"}, "timezone"),
        ({"timeout": 0}, "timeout"),
        ({"timeout": -1}, "timeout"),
        ({"priority": 1, "timeout": "later"}, "timeout"),
    ],
    ids=lambda v: repr(v)[:40] if isinstance(v, dict) else None,
)
async def test_update_job_invalid_values_change_nothing(app: App, changes: dict[str, Any], field: str) -> None:
    job = await app.enqueue("h", {"keep": 1}, name="n", timeout=5)
    with pytest.raises(ValidationError) as info:
        await app.update_job(job.id, **changes)
    assert info.value.field == field
    assert await app.get_job(job.id) == job


# --- cancel ---

async def test_cancel_pending_and_running(app: App) -> None:
    job = await app.enqueue("h")
    cancelled = await app.cancel(job.id)
    assert cancelled.status is JobStatus.CANCELLED
    assert (await app.get_job(job.id)).status is JobStatus.CANCELLED
    running = await app.enqueue("h")
    await set_status(app, running.id, "running", attempts=1)
    after = await app.cancel(running.id)
    assert after.status is JobStatus.CANCELLED
    assert after.lease_expires_at is None


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_cancel_finished_job_is_a_state_error(app: App, status: str) -> None:
    job = await app.enqueue("h")
    await set_status(app, job.id, status)
    with pytest.raises(JobStateError) as info:
        await app.cancel(job.id)
    assert status in str(info.value)
    assert (info.value.status, info.value.operation, info.value.job_id) == (status, "cancel", job.id)
    assert (await app.get_job(job.id)).status.value == status


async def test_cancel_unknown(app: App) -> None:
    with pytest.raises(JobNotFound):
        await app.cancel(UNKNOWN_ID)


# --- retry ---

@pytest.mark.parametrize("status", ["failed", "cancelled"])
async def test_retry_requeues_with_fresh_attempts(app: App, status: str) -> None:
    job = await app.enqueue("h", {"k": 1}, delay=3600)
    await set_status(app, job.id, status, attempts=3)
    retried = await app.retry(job.id)
    assert retried.status is JobStatus.PENDING
    assert retried.attempts == 0
    assert abs(retried.next_run_at - await db_now(app)) <= TOLERANCE
    assert retried.data == {"k": 1}
    assert await app.get_job(job.id) == retried


async def test_retry_at_given_time(app: App) -> None:
    job = await app.enqueue("h")
    await set_status(app, job.id, "failed", attempts=3)
    run_at = datetime(2032, 2, 2, tzinfo=timezone(timedelta(hours=1)))
    retried = await app.admin().retry(job.id, run_at=run_at)
    assert retried.next_run_at == run_at
    assert retried.status is JobStatus.PENDING


@pytest.mark.parametrize("status", ["pending", "running", "completed"])
async def test_retry_of_non_failed_job_is_a_state_error(app: App, status: str) -> None:
    job = await app.enqueue("h", delay=3600)
    await set_status(app, job.id, status, attempts=1)
    with pytest.raises(JobStateError) as info:
        await app.retry(job.id)
    assert status in str(info.value)
    after = await app.get_job(job.id)
    assert (after.status.value, after.attempts, after.next_run_at) == (status, 1, job.next_run_at)


async def test_retry_unknown(app: App) -> None:
    with pytest.raises(JobNotFound):
        await app.retry(UNKNOWN_ID)


# --- trigger ---

async def test_trigger_makes_delayed_job_due_now(app: App) -> None:
    job = await app.enqueue("h", delay=3600)
    assert job.next_run_at > await db_now(app)
    triggered = await app.trigger(job.id)
    assert triggered.status is JobStatus.PENDING
    assert triggered.next_run_at <= await db_now(app)
    assert triggered.id == job.id
    assert await app.pool.fetchval(
        f"SELECT count(*) FROM {app.schema}.jobs WHERE next_run_at <= now() AND status = 'pending'") == 1


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
async def test_trigger_requeues_finished_job(app: App, status: str) -> None:
    job = await app.enqueue("h", delay=3600)
    await set_status(app, job.id, status, attempts=2)
    triggered = await app.trigger(job.id)
    assert triggered.status is JobStatus.PENDING
    assert triggered.attempts == 0
    assert triggered.next_run_at <= await db_now(app)


async def test_trigger_running_job_is_a_state_error(app: App) -> None:
    job = await app.enqueue("h")
    await set_status(app, job.id, "running", attempts=1)
    with pytest.raises(JobStateError) as info:
        await app.trigger(job.id)
    assert "running" in str(info.value)
    assert (await app.get_job(job.id)).status is JobStatus.RUNNING


async def test_trigger_unknown(app: App) -> None:
    with pytest.raises(JobNotFound):
        await app.trigger(UNKNOWN_ID)


@pytest.mark.parametrize("status", ["failed", "completed"])
@pytest.mark.parametrize("operation", ["retry", "trigger"])
async def test_requeue_when_dedup_key_is_taken(app: App, operation: str, status: str) -> None:
    old = await app.enqueue("h", dedup_key="k")
    await set_status(app, old.id, status, attempts=3)
    live = await app.enqueue("h", dedup_key="k")
    assert live.id != old.id
    before = await app.get_job(old.id)
    with pytest.raises(AiojobsPgError):
        await getattr(app, operation)(old.id)
    assert await app.get_job(old.id) == before
    assert await app.get_job(live.id) == live


# --- completed one-off jobs, which live in their history row ---

async def in_jobs_table(app: App, job_id: int) -> bool:
    return bool(await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.jobs WHERE id = $1", job_id))


async def run_to_completion(app: App, *jobs: Job) -> None:
    async with app.worker(concurrency=4):
        async def done() -> bool:
            return all([(await app.get_job(j.id)).status is JobStatus.COMPLETED for j in jobs])

        await eventually(done, message="not completed")


@pytest.fixture
async def flaky(app: App) -> App:
    """Handler "flaky": fails its first attempt, then returns its data."""
    failed: set[int] = set()

    async def flaky(data: Any, ctx: Any) -> Any:
        if ctx.job_id not in failed:
            failed.add(ctx.job_id)
            raise RuntimeError("first attempt fails")
        return {"echo": data}

    app.register("flaky", flaky)
    app.backoff = Backoff(base=0.01, jitter=0)
    return app


async def test_a_completed_job_leaves_jobs_and_reads_as_it_ran(flaky: App) -> None:
    app = flaky
    job = await app.enqueue("flaky", {"x": [1, 2]}, name="n", queue="default", priority=4, max_attempts=3,
                            timeout=60, dedup_key="d")
    await run_to_completion(app, job)
    assert not await in_jobs_table(app, job.id)
    done = await app.get_job(job.id)
    assert (done.status, done.attempts, done.result) == (JobStatus.COMPLETED, 2, {"echo": {"x": [1, 2]}})
    assert "first attempt fails" in (done.last_error or "")
    same_except(job, done, "status", "attempts", "result", "last_error", "last_run_at", "worker_id")
    assert done.last_run_at is not None and done.worker_id is not None and done.lease_expires_at is None
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.FAILED), (2, RunStatus.COMPLETED)]
    assert runs[1].result == done.result
    assert done.updated_at == runs[1].completed_at
    # The key is free again, as for any finished job.
    assert (await app.enqueue("flaky", dedup_key="d")).id != job.id


async def test_list_jobs_merges_live_and_completed_jobs(flaky: App) -> None:
    app = flaky
    done = [await app.enqueue("flaky", i, queue="default") for i in range(3)]
    await run_to_completion(app, *done)
    live = [await app.enqueue("flaky", queue="other"), await app.enqueue("flaky", queue="other", delay=3600)]
    everything = sorted([j.id for j in done + live], reverse=True)
    assert [j.id for j in await app.list_jobs()] == everything
    assert [j.id for j in await app.list_jobs(status="completed")] == [j.id for j in reversed(done)]
    assert [j.id for j in await app.list_jobs(status="pending")] == [j.id for j in reversed(live)]
    assert [j.id for j in await app.list_jobs(handler="nothing")] == []
    assert [j.id for j in await app.list_jobs(handler="flaky", queue="default")] == [j.id for j in reversed(done)]
    assert [j.id for j in await app.list_jobs(queue="default")] == [j.id for j in reversed(done)]
    seen, cursor = [], None
    while True:
        page = await app.admin().list_jobs(limit=2, cursor=cursor)
        seen += [j.id for j in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == everything


async def test_the_all_jobs_view_reads_as_the_admin_api(flaky: App) -> None:
    # The view is for SQL of one's own (operators, dashboards): every job, live or completed, as a Job.
    app = flaky
    done = await app.enqueue("flaky", {"a": 1}, name="n", dedup_key="k")
    await run_to_completion(app, done)
    await app.enqueue("flaky", delay=60)
    failed = await app.enqueue("flaky")
    await set_status(app, failed.id, "failed", attempts=3)
    rows = await app.pool.fetch(f"SELECT * FROM {app.schema}.all_jobs ORDER BY id DESC")
    assert [Job.from_record(r) for r in rows] == await app.list_jobs()


async def test_trigger_runs_a_completed_job_again_under_its_id(flaky: App) -> None:
    app = flaky
    job = await app.enqueue("flaky", {"k": 1})
    await run_to_completion(app, job)
    again = await app.trigger(job.id)
    assert (again.id, again.status, again.attempts, again.data) == (job.id, JobStatus.PENDING, 0, {"k": 1})
    assert again.next_run_at <= await db_now(app)
    assert await app.get_job(job.id) == again
    assert [j.id for j in await app.list_jobs()] == [job.id]  # once: its history row holds no job now
    with pytest.raises(JobStateError):  # it is pending now, not completed
        await app.retry(job.id)
    await run_to_completion(app, job)
    assert [r.status for r in await app.job_history(job.id)] == [
        RunStatus.FAILED, RunStatus.COMPLETED, RunStatus.COMPLETED]
    # The claim token went on from where the completed job left it: it never repeats.
    claims = await app.pool.fetch(f"SELECT claim FROM {app.schema}.job_runs WHERE job_id = $1 ORDER BY id", job.id)
    assert [r["claim"] for r in claims] == [1, 2, 3]


async def test_a_completed_job_cannot_be_updated_or_cancelled(app: App) -> None:
    job = await app.enqueue("h")
    await set_status(app, job.id, "completed")
    before = await app.get_job(job.id)
    with pytest.raises(JobStateError) as info:
        await app.update_job(job.id, priority=9)
    assert (info.value.status, info.value.operation) == ("completed", "update")
    assert "trigger" in str(info.value)
    with pytest.raises(JobStateError):
        await app.cancel(job.id)
    assert await app.get_job(job.id) == before


async def test_delete_a_completed_job(app: App) -> None:
    job = await app.enqueue("h")
    await add_run(app, job.id, 1, "failed", await db_now(app), error="boom")
    await set_status(app, job.id, "completed")
    assert await count_runs(app, job.id) == 2
    await app.delete_job(job.id)
    with pytest.raises(JobNotFound):
        await app.get_job(job.id)
    assert await count_runs(app, job.id) == 0
    with pytest.raises(JobNotFound):
        await app.delete_job(job.id)


# --- delete ---

async def test_delete_job_removes_job_and_history(app: App) -> None:
    job = await app.enqueue("h")
    keep = await app.enqueue("h")
    now = await db_now(app)
    await add_run(app, job.id, 1, "failed", now, error="boom")
    await add_run(app, job.id, 2, "completed", now)
    await add_run(app, keep.id, 1, "completed", now)
    await app.delete_job(job.id)
    with pytest.raises(JobNotFound):
        await app.get_job(job.id)
    assert await count_runs(app, job.id) == 0
    assert await count_runs(app, keep.id) == 1
    assert await app.get_job(keep.id) == keep
    with pytest.raises(JobNotFound):
        await app.delete_job(job.id)


async def test_delete_unknown(app: App) -> None:
    with pytest.raises(JobNotFound):
        await app.delete_job(UNKNOWN_ID)


# --- history, stats, workers ---

async def test_job_history_oldest_first(app: App) -> None:
    job = await app.enqueue("h")
    other = await app.enqueue("h")
    t0 = datetime(2030, 1, 1, tzinfo=UTC)
    await add_run(app, job.id, 1, "failed", t0, error="first failure")
    await add_run(app, other.id, 1, "completed", t0)
    await add_run(app, job.id, 2, "released", t0 + timedelta(minutes=1))
    await add_run(app, job.id, 2, "completed", t0 + timedelta(minutes=2), result=7)
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.FAILED), (2, RunStatus.RELEASED), (2, RunStatus.COMPLETED)]
    assert [r.started_at for r in runs] == [t0, t0 + timedelta(minutes=1), t0 + timedelta(minutes=2)]
    assert all(r.job_id == job.id for r in runs)
    assert runs[0].error == "first failure"
    assert runs[2].result == {"r": 7}
    assert runs[0].duration_ms == 1000
    assert runs[0].completed_at == t0 + timedelta(seconds=1)
    assert [r.attempt for r in await app.admin().history(job.id, limit=2)] == [1, 2]
    assert await app.job_history(other.id) != []
    assert await app.job_history((await app.enqueue("h")).id) == []
    with pytest.raises(JobNotFound):
        await app.job_history(UNKNOWN_ID)


async def test_queue_stats_counts_per_queue_and_status(app: App) -> None:
    jobs = await app.enqueue_many(
        [{"handler": "h", "queue": "a"}] * 3 + [{"handler": "h", "queue": "b"}] * 2
        + [{"handler": "h", "queue": "c", "delay": 3600}])
    await set_status(app, jobs[0].id, "completed")
    await set_status(app, jobs[3].id, "failed")
    stats = await app.admin().queue_stats()
    counts = {(s["queue"], s["status"]): s["count"] for s in stats}
    assert counts == {("a", "completed"): 1, ("a", "pending"): 2, ("b", "failed"): 1, ("b", "pending"): 1,
                      ("c", "pending"): 1}
    oldest = {(s["queue"], s["status"]): s["oldest_due"] for s in stats}
    assert oldest[("a", "pending")] == min(jobs[1].next_run_at, jobs[2].next_run_at)
    assert oldest[("c", "pending")] is None  # not due yet
    assert oldest[("a", "completed")] is None
    assert await App.admin(app).queue_stats() == stats


async def test_pruning_deletes_what_is_past_its_retention(app: App) -> None:
    live = await app.enqueue("h", delay=3600)
    await add_run(app, live.id, 1, "failed", await db_now(app), error="an old failure")
    old_done, new_done, old_cancelled, dead = [await app.enqueue("h") for _ in range(4)]
    await set_status(app, old_done.id, "completed")
    await set_status(app, new_done.id, "completed")
    await app.cancel(old_cancelled.id)
    await set_status(app, dead.id, "failed", attempts=3)
    month = timedelta(days=30)
    await app.pool.execute(f"UPDATE {app.schema}.job_runs SET completed_at = completed_at - $2::interval "
                           "WHERE job_id = ANY($1)",
                           [live.id, old_done.id], month)
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET updated_at = updated_at - $2::interval WHERE id = ANY($1)",
                           [live.id, old_cancelled.id, dead.id], month)
    await app.queries.prune(app.pool, runs_older_than=14 * 86400, jobs_older_than=7 * 86400, workers_older_than=60)
    # Old runs go, and a completed job with its run; an old cancelled job goes; the dead letter stays.
    assert await count_runs(app, live.id) == 0 and (await app.get_job(live.id)).status is JobStatus.PENDING
    with pytest.raises(JobNotFound):
        await app.get_job(old_done.id)
    with pytest.raises(JobNotFound):
        await app.get_job(old_cancelled.id)
    assert (await app.get_job(new_done.id)).status is JobStatus.COMPLETED
    assert (await app.get_job(dead.id)).status is JobStatus.FAILED


async def test_pruning_reads_history_up_to_the_first_recent_row(app: App) -> None:
    # Rows are written in the order they complete: a round stops at the first one inside the retention,
    # so an old row written after it (a worker whose clock ran behind) waits for a later round.
    jobs = [await app.enqueue("h") for _ in range(3)]
    for job in jobs:
        await set_status(app, job.id, "completed")
    await app.pool.execute(f"UPDATE {app.schema}.job_runs SET completed_at = completed_at - interval '30 days' "
                           "WHERE job_id = ANY($1)", [jobs[0].id, jobs[2].id])
    await app.queries.prune(app.pool, runs_older_than=86400, jobs_older_than=None, workers_older_than=60)
    assert [await count_runs(app, j.id) for j in jobs] == [0, 1, 1]


async def test_workers_empty_without_worker(app: App) -> None:
    assert await app.admin().workers() == []


async def test_admin_on_connection_joins_its_transaction(app: App, pg_dsn: str) -> None:
    job = await app.enqueue("h")
    conn = await asyncpg.connect(pg_dsn)
    try:
        tx = conn.transaction()
        await tx.start()
        await app.admin(conn).cancel(job.id)
        assert (await app.get_job(job.id)).status is JobStatus.PENDING
        await tx.rollback()
    finally:
        await conn.close()
    assert (await app.get_job(job.id)).status is JobStatus.PENDING


async def test_progress_reads_from_the_job_row_and_is_none_once_completed(app: App) -> None:
    app.register("h", lambda data: None)
    job = await app.enqueue("h")
    assert (job.progress, job.progress_message) == (None, None)
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET progress = 0.4, progress_message = 'resized 4/10'"
                           f" WHERE id = $1", job.id)
    for read in (await app.get_job(job.id), (await app.list_jobs())[0]):
        assert (read.progress, read.progress_message) == (pytest.approx(0.4), "resized 4/10")
    await app.run_worker(burst=True, handle_signals=False)
    done = await app.get_job(job.id)
    assert done.status is JobStatus.COMPLETED and (done.progress, done.progress_message) == (None, None)
