"""Upgrading an installed schema: jobs written under an older migration survive the newer ones."""

from __future__ import annotations

import asyncpg

from aiojobs_pg import App, Job, JobStatus, RunStatus
from aiojobs_pg.schema import migrate, migrations
from tests.helpers import eventually

ROW_CHECKS = 5  # the migration that dropped the per-row CHECK constraints
COMPLETED_INTO_HISTORY = 6  # the one that moved completed one-off jobs into their history rows
LATEST = max(m.version for m in migrations("s"))


async def install(dsn: str, schema: str, version: int) -> None:
    """An install of ``schema`` at migration ``version``, as an older release left it."""
    conn = await asyncpg.connect(dsn)
    try:
        assert await migrate(conn, schema, up_to=version) == list(range(1, version + 1))
    finally:
        await conn.close()


def older_app(dsn: str, schema: str) -> tuple[App, list[int]]:
    """An App that does not migrate by itself, and the data["i"] of the jobs its handler "h" ran."""
    app = App(dsn, schema=schema, auto_migrate=False, poll_interval=0.1, drain_timeout=5)
    ran: list[int] = []
    app.register("h", lambda data: ran.append(data["i"]))
    return app, ran


async def test_dropping_the_row_checks_keeps_every_job_and_they_still_run(
        pg_dsn: str, own_schema: str, needs_ddl: None) -> None:
    await install(pg_dsn, own_schema, ROW_CHECKS - 1)
    app, ran = older_app(pg_dsn, own_schema)
    async with app:
        # the tables' CHECK constraints (a domain's, migration 0018, is not one of a row's)
        checks = (f"SELECT count(*) FROM pg_constraint"
                  f" WHERE contype = 'c' AND conrelid <> 0 AND connamespace = '{own_schema}'::regnamespace")
        assert await app.pool.fetchval(checks) == 7, "the old install has its CHECK constraints"
        # plain jobs: their insert names only the columns of the first migrations
        before = [await app.enqueue("h", {"i": i}, priority=i, max_attempts=i + 1) for i in range(3)]

        async with app.pool.acquire() as conn:
            assert await migrate(conn, own_schema, up_to=ROW_CHECKS) == [ROW_CHECKS]
        assert await app.migrate() == list(range(ROW_CHECKS + 1, LATEST + 1))

        assert await app.pool.fetchval(checks) == 0
        assert [await app.get_job(job.id) for job in before] == before
        async with app.worker(concurrency=2):
            await eventually(lambda: len(ran) == 3)
        after = [await app.get_job(job.id) for job in before]
        assert [(j.status, j.attempts) for j in after] == [(JobStatus.COMPLETED, 1)] * 3


async def test_completed_jobs_move_into_their_history_rows_and_read_as_before(
        pg_dsn: str, own_schema: str, needs_ddl: None) -> None:
    await install(pg_dsn, own_schema, COMPLETED_INTO_HISTORY - 1)
    conn = await asyncpg.connect(pg_dsn)
    try:
        # What an install at migration 5 holds: completed jobs with runs (one retried first), a completed
        # job whose runs were not recorded (history off), and jobs in every other status.
        jobs = f"{own_schema}.jobs"
        ids = [await conn.fetchval(
            f"""INSERT INTO {jobs} (handler, data, name, queue, priority, max_attempts, timeout, dedup_key, status,
                                    attempts, claims, last_run_at, last_error, result, worker_id, updated_at)
                VALUES ('h', $1::jsonb, $2, 'q', 7, 5, 30, $3, $4, $5::int, $5::int, now() - interval '1 minute', $6,
                        $7::jsonb, 'w1', now() - interval '50 seconds')
                RETURNING id""", f'{{"i": {i}}}', name, key, status, attempts, error, result)
            for i, (name, key, status, attempts, error, result) in enumerate([
                ("retried then completed", "k1", "completed", 2, "boom", '{"ok": 1}'),
                (None, None, "completed", 1, None, "null"),
                ("no runs recorded", None, "completed", 1, None, '[1]'),
                (None, None, "pending", 0, None, None),
                (None, "k2", "failed", 5, "dead", None),
                (None, None, "cancelled", 0, None, None)])]
        runs = f"{own_schema}.job_runs"
        for job_id, attempt, status, error, result in [(ids[0], 1, "failed", "boom", None),
                                                       (ids[0], 2, "completed", None, '{"ok": 1}'),
                                                       (ids[1], 1, "completed", None, "null"),
                                                       (ids[4], 5, "failed", "dead", None)]:
            await conn.execute(
                f"""INSERT INTO {runs} (job_id, attempt, worker_id, status, started_at, completed_at, duration_ms,
                                        error, result, scheduled_at)
                    VALUES ($1, $2, 'w1', $3, now() - interval '1 minute', now() - interval '50 seconds', 10000,
                            $4, $5::jsonb, now() - interval '2 minutes')""", job_id, attempt, status, error, result)
    finally:
        await conn.close()

    app, ran = older_app(pg_dsn, own_schema)
    async with app:
        # Read as the code of migration 5 read them: every job from its row in jobs.
        rows = await app.pool.fetch(f"SELECT * FROM {own_schema}.jobs ORDER BY id")
        before = [Job.from_record(r) for r in rows]
        histories = [await app.queries.job_runs(app.pool, job_id, 100) for job_id in ids]

        assert await app.migrate() == list(range(COMPLETED_INTO_HISTORY, LATEST + 1))

        assert await app.pool.fetchval(f"SELECT array_agg(id ORDER BY id) FROM {own_schema}.jobs") == ids[3:]
        after = [await app.get_job(job_id) for job_id in ids]
        assert after[3:] == before[3:]
        for old, new in zip(before[:3], after[:3], strict=True):
            # A completed job reads as it did; what it no longer has (a lease, a schedule) was empty.
            assert new.status is JobStatus.COMPLETED
            for field in ("id", "handler", "data", "name", "queue", "priority", "attempts", "max_attempts",
                          "timeout", "dedup_key", "last_error", "result", "created_at", "last_run_at", "worker_id",
                          "schedule", "lease_expires_at"):
                assert getattr(new, field) == getattr(old, field), field
        # Runs are as they were; the job whose runs were not recorded got one, for its completion.
        assert [await app.job_history(job_id) for job_id in (ids[0], ids[1], *ids[3:])] == [
            histories[0], histories[1], *histories[3:]]
        [made] = await app.job_history(ids[2])
        assert (made.attempt, made.status, made.result, made.worker_id) == (1, RunStatus.COMPLETED, [1], "w1")
        assert [j.id for j in await app.list_jobs(status="completed")] == ids[2::-1]
        assert [j.id for j in await app.list_jobs()] == ids[::-1]

        # A migrated completed job runs again under its id, and completes into a history row again.
        await app.trigger(ids[1])
        async with app.worker(concurrency=2, queues=["q"]):
            await eventually(lambda: sorted(ran) == [1, 3])  # and the pending job runs, as it would have

            async def completed() -> bool:
                return (await app.get_job(ids[1])).status is JobStatus.COMPLETED

            await eventually(completed, message="not completed again")
        again = await app.get_job(ids[1])
        assert (again.status, again.attempts) == (JobStatus.COMPLETED, 1)
        assert [r.status for r in await app.job_history(ids[1])] == [RunStatus.COMPLETED] * 2
