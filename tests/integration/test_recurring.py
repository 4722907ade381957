"""Recurring jobs in-process: declarations, misfire and overlap policies, pause/resume, ticks in history."""

from __future__ import annotations

import asyncio
import itertools
from datetime import datetime, timedelta

import pytest

from aiojobs_pg import App, JobContext, JobStatus, RunStatus, ValidationError
from tests.helpers import eventually


def declare(app: App, schedule: str = "1h", **kwargs: object) -> None:
    @app.periodic(schedule, name="nightly", data={"v": 1}, **kwargs)  # type: ignore[arg-type]
    async def cleanup(data: dict[str, int]) -> int:
        return data["v"]


async def test_many_declarers_create_exactly_one_row(app: App, pg_dsn: str) -> None:
    apps = [App(pg_dsn, schema=app.schema) for _ in range(6)]
    for other in apps:
        declare(other)
        await other.open()
    try:
        results = await asyncio.gather(*(a.sync_periodic() for a in apps))
    finally:
        for other in apps:
            await other.close()
    assert sorted(r["nightly"] for r in results) == ["created"] + ["unchanged"] * 5
    rows = await app.admin().recurring()
    assert [(j.periodic_key, j.schedule, j.handler, j.data) for j in rows] == [("nightly", "1h", "cleanup", {"v": 1})]


async def test_redeclaring_updates_only_what_changed(app: App, pg_dsn: str) -> None:
    declare(app, "1h")
    assert await app.sync_periodic() == {"nightly": "created"}
    assert await app.sync_periodic() == {"nightly": "unchanged"}
    first = (await app.admin().recurring())[0]

    changed = App(pg_dsn, schema=app.schema)
    declare(changed, "30 * * * *", timezone="Europe/Paris")
    async with changed:
        assert await changed.sync_periodic() == {"nightly": "updated"}
    after = await app.get_job(first.id)
    assert (after.schedule, after.timezone) == ("30 * * * *", "Europe/Paris")
    # "1h" ticks on the hour, the new expression at half past: the pending job moved.
    assert first.next_run_at.minute == 0 and after.next_run_at.minute == 30


async def test_a_paused_declared_schedule_stays_paused(app: App, pg_dsn: str) -> None:
    declare(app)
    await app.sync_periodic()
    job = (await app.admin().recurring())[0]
    await app.cancel(job.id)
    again = App(pg_dsn, schema=app.schema)
    declare(again, "2h")  # a changed declaration must not resume it
    async with again:
        await again.sync_periodic()
    assert (await app.get_job(job.id)).status is JobStatus.CANCELLED


def test_declaration_is_validated_at_once(app: App) -> None:
    with pytest.raises(ValidationError) as info:
        declare(app, "every night")
    assert info.value.field == "schedule"
    with pytest.raises(ValidationError) as tz:
        declare(app, "0 2 * * *", timezone="Mars/Olympus")
    assert tz.value.field == "timezone"
    with pytest.raises(ValidationError) as policy:
        declare(app, "1h", misfire="sometimes")
    assert policy.value.field == "misfire"


async def overdue(app: App, job_id: int, seconds: float) -> None:
    await app.pool.execute(
        f"UPDATE {app.schema}.jobs SET next_run_at = now() - make_interval(secs => $2) WHERE id = $1",
        job_id, seconds)


async def test_missed_ticks_are_skipped_by_default(app: App) -> None:
    runs: list[datetime] = []

    @app.handler()
    async def tick(data: None, ctx: JobContext) -> None:
        runs.append(ctx.scheduled_at)

    job = await app.enqueue("tick", schedule="1h")
    await overdue(app, job.id, 5 * 3600)  # five hours of downtime
    async with app.worker() as worker:
        await eventually(lambda: len(runs) == 1)
        # Two more claims after the run (and its flush) find nothing due.
        await asyncio.wait_for(worker.signals.wait("flush", 1), 5)
        await asyncio.wait_for(worker.signals.wait("claim", worker.signals.counts["claim"] + 2), 5)
    assert len(runs) == 1, "one run for all the missed ticks"
    after = await app.get_job(job.id)
    now = await app.pool.fetchval("SELECT now()")
    assert now < after.next_run_at <= now + timedelta(hours=1)
    assert after.next_run_at.minute == 0 and after.next_run_at.second == 0


async def test_misfire_all_runs_each_missed_tick(app: App) -> None:
    runs: list[datetime] = []

    @app.handler()
    async def catch_up(data: None, ctx: JobContext) -> None:
        runs.append(ctx.scheduled_at)

    job = await app.enqueue("catch_up", schedule="1m", misfire="all")
    await app.pool.execute(
        f"UPDATE {app.schema}.jobs SET next_run_at = date_trunc('minute', now()) - interval '5 minutes' "
        "WHERE id = $1", job.id)
    async with app.worker():
        await eventually(lambda: len(runs) >= 6, timeout=15)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(runs))
    assert len(set(runs)) == len(runs)


async def test_trigger_runs_now_and_keeps_the_grid(app: App) -> None:
    runs: list[datetime] = []

    @app.handler()
    async def hourly(data: None, ctx: JobContext) -> None:
        runs.append(ctx.scheduled_at)

    job = await app.enqueue("hourly", schedule="1h")
    async with app.worker():
        await app.trigger(job.id)
        await eventually(lambda: len(runs) == 1)

        async def back_to_pending() -> bool:
            return (await app.get_job(job.id)).status is JobStatus.PENDING

        await eventually(back_to_pending)
    after = await app.get_job(job.id)
    assert after.next_run_at == job.next_run_at, "the next tick is where it was"


async def test_cancel_pauses_and_retry_resumes_at_the_next_tick(app: App) -> None:
    job = await app.enqueue("anything", schedule="1h")
    paused = await app.cancel(job.id)
    assert paused.status is JobStatus.CANCELLED
    resumed = await app.retry(job.id)
    now = await app.pool.fetchval("SELECT now()")
    assert resumed.status is JobStatus.PENDING
    assert now < resumed.next_run_at <= now + timedelta(hours=1)
    assert resumed.next_run_at.minute == 0


async def test_history_records_the_tick_of_each_run_across_retries(app: App) -> None:
    from aiojobs_pg import Backoff

    app.backoff = Backoff(base=0.05, factor=1, jitter=0)

    @app.handler()
    async def wobbly(data: None, ctx: JobContext) -> None:
        if ctx.attempt == 1:
            raise RuntimeError("first attempt of every tick fails")

    job = await app.enqueue("wobbly", schedule="2s", max_attempts=2)
    async with app.worker():
        async def two_ticks_done() -> bool:
            runs = await app.job_history(job.id)
            return sum(r.status is RunStatus.COMPLETED for r in runs) >= 2

        await eventually(two_ticks_done, timeout=15)
    runs = await app.job_history(job.id)
    by_tick: dict[datetime | None, list[RunStatus]] = {}
    for r in runs:
        by_tick.setdefault(r.scheduled_at, []).append(r.status)
    complete = [statuses for statuses in by_tick.values() if RunStatus.COMPLETED in statuses]
    assert len(complete) >= 2
    assert all(statuses == [RunStatus.FAILED, RunStatus.COMPLETED] for statuses in complete)
    assert all(t is not None and t.second % 2 == 0 and t.microsecond == 0 for t in by_tick)


async def test_a_short_interval_keeps_its_grid_under_a_long_poll(app: App) -> None:
    # A tick's completion sends no notification: the producer's due hint must wake it for the next tick.
    runs: list[float] = []

    @app.handler()
    async def often(data: None) -> None:
        runs.append(asyncio.get_running_loop().time())

    job = await app.enqueue("often", schedule="1s")

    async def first_tick_due() -> bool:
        return bool(await app.pool.fetchval(f"SELECT next_run_at <= now() FROM {app.schema}.jobs WHERE id = $1",
                                            job.id))

    await eventually(first_tick_due, timeout=5)  # the first tick is due: the worker's first claim takes it
    async with app.worker(poll_interval=30):
        await eventually(lambda: len(runs) >= 3, timeout=6, message=f"ticks ran at {runs}")
    # The first run is late (its tick was due before the worker started); the next ones follow the grid.
    assert runs[1] - runs[0] < 2.0 and 0.5 < runs[2] - runs[1] < 2.0, runs
