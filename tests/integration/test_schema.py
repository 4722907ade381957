"""Upgrading an installed schema: jobs written under an older migration survive the newer ones."""

from __future__ import annotations

import asyncpg

from aiojobs_pg import App, JobStatus
from aiojobs_pg.schema import migrate
from tests.helpers import eventually

ROW_CHECKS = 5  # the migration that dropped the per-row CHECK constraints


async def test_dropping_the_row_checks_keeps_every_job_and_they_still_run(
        pg_dsn: str, own_schema: str, needs_ddl: None) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await migrate(conn, own_schema, up_to=ROW_CHECKS - 1) == list(range(1, ROW_CHECKS))
    finally:
        await conn.close()
    app = App(pg_dsn, schema=own_schema, auto_migrate=False, poll_interval=0.1, drain_timeout=5)
    ran: list[int] = []
    app.register("h", lambda data: ran.append(data["i"]))
    async with app:
        checks = (f"SELECT count(*) FROM pg_constraint"
                  f" WHERE contype = 'c' AND connamespace = '{own_schema}'::regnamespace")
        assert await app.pool.fetchval(checks) == 7, "the old install has its CHECK constraints"
        before = [await app.enqueue("h", {"i": i}, priority=i, max_attempts=i + 1, timeout=30) for i in range(3)]

        assert await app.migrate() == [ROW_CHECKS]

        assert await app.pool.fetchval(checks) == 0
        assert [await app.get_job(job.id) for job in before] == before
        async with app.worker(concurrency=2):
            await eventually(lambda: len(ran) == 3)
        after = [await app.get_job(job.id) for job in before]
        assert [(j.status, j.attempts) for j in after] == [(JobStatus.COMPLETED, 1)] * 3
