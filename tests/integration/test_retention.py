"""Retention keeps pace with the drain, and the overview does not count the history (issue 20, points 4 and 5).

One worker prunes at a time; a round deletes batch after batch until nothing is left; the count
limit keeps the newest completed jobs of each queue; the counters behind the overview follow every
statement that writes the history. Timings are in docs/performance.md ("Retention and the overview"), not here.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from aiojobs_pg import App, JobStatus, Retry
from aiojobs_pg.errors import JobNotFound
from aiojobs_pg.maintenance import Maintenance
from aiojobs_pg.queries import DB, Pruned, Queries
from aiojobs_pg.schema import migrate, migrations

RETENTION = 86400.0  # a day: the "old" rows below are a month old, the "recent" ones a minute


async def history_rows(app: App, n: int, *, queue: str = "default", age: str = "30 days",
                       first_job: int = 1_000_000) -> None:
    """``n`` completed one-off jobs' history rows (ids ``first_job``...), completed ``age`` ago, counted."""
    await app.pool.execute(
        f"""INSERT INTO {app.schema}.job_runs
                (job_id, claim, attempt, worker_id, status, started_at, completed_at, duration_ms, scheduled_at,
                 handler, data, queue, priority, max_attempts, created_at, last_run_at)
            SELECT $4 + g, 1, 1, 'w', 'completed', t, t, 1, t, 'h', '{{}}', $2, 0, 3, t, t
            FROM generate_series(1, $1) AS g, (SELECT now() - $3::text::interval) AS c(t)""",
        n, queue, age, first_job)
    # Completion counts them in its own statement; rows written by hand are counted by the recount.
    await app.pool.execute(f"SELECT {app.schema}.recount_completed()")


async def runs(app: App) -> int:
    value: int = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs")
    return value


def maintenance(app: App, queries: Queries | None = None, **settings: Any) -> Maintenance:
    """A worker's maintenance on the app's schema: a day of history, no job or count limit unless given."""
    settings = {"history_retention": RETENTION, "job_retention": None, **settings}
    return Maintenance(app.pool, queries or app.queries, history=True, interval=1, worker_retention=60, **settings)


async def counted(app: App) -> dict[str, int]:
    """The counters' completed jobs per queue."""
    rows = await app.pool.fetch(f"SELECT queue, sum(completed)::bigint AS n FROM {app.schema}.queue_counts"
                                " GROUP BY queue HAVING sum(completed) <> 0")
    return {r["queue"]: r["n"] for r in rows}


async def kept(app: App) -> dict[str, int]:
    """The completed jobs the history keeps per queue, counted."""
    rows = await app.pool.fetch(f"SELECT queue, count(*) AS n FROM {app.schema}.job_runs"
                                " WHERE handler IS NOT NULL GROUP BY queue")
    return {r["queue"]: r["n"] for r in rows}


async def stats_completed(app: App) -> dict[str, int]:
    return {s["queue"]: s["count"] for s in await app.admin().queue_stats() if s["status"] == "completed"}


async def drain(app: App, *queues: str) -> None:
    """Run every due job of ``queues`` to its end, one at a time (completion order is claim order)."""
    await asyncio.wait_for(app.create_worker(concurrency=1, queues=list(queues), burst=True).run(), 30)


# --- one pruner at a time ---

async def test_a_worker_skips_its_prune_while_another_prunes(app: App) -> None:
    await history_rows(app, 10)
    async with app.pool.acquire() as conn:
        assert await app.queries.prune_lock(conn)  # another worker's round is under way
        assert await maintenance(app).prune() is None
        assert await runs(app) == 10
        await app.queries.prune_unlock(conn)
    done = await maintenance(app).prune()
    assert done is not None and done.runs == 10 and await runs(app) == 0


class HeldPrune(Queries):
    """Queries whose prune passes wait for ``release``, so that a round holds the lock until the test says."""

    release: asyncio.Event

    async def prune(self, db: DB, **kinds: Any) -> Pruned:
        await self.release.wait()
        return await super().prune(db, **kinds)


async def test_two_workers_pruning_at_once_one_skips(app: App) -> None:
    await history_rows(app, 10)
    release = asyncio.Event()
    held = [HeldPrune(app.schema), HeldPrune(app.schema)]
    for queries in held:
        queries.release = release
    first, second = (maintenance(app, queries) for queries in held)
    tasks = [asyncio.create_task(first.prune()), asyncio.create_task(second.prune())]
    try:
        # While one round is held inside its passes (with the lock), the other gives up without pruning.
        done, _ = await asyncio.wait(tasks, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert [t.result() for t in done] == [None], "no round skipped while the other held the lock"
    finally:
        release.set()
    rounds = await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert sorted(r is None for r in rounds) == [False, True]
    assert sum(r.runs for r in rounds if r is not None) == 10
    # The lock went back with the round: the next one prunes.
    await history_rows(app, 3, first_job=2_000_000)
    again = await second.prune()
    assert again is not None and again.runs == 3


# --- a round loops until done ---

async def test_a_round_prunes_more_rows_than_a_batch(app: App) -> None:
    await history_rows(app, 2500)
    await history_rows(app, 5, age="1 minute", first_job=2_000_000)
    done = await maintenance(app, prune_batch=1000).prune()
    assert done == Pruned(runs=2500, more=False)
    assert await runs(app) == 5  # the recent ones stay


async def test_a_round_cut_short_by_its_budget_goes_on_at_the_next(app: App) -> None:
    await history_rows(app, 2500)
    worker = maintenance(app, prune_batch=1000, prune_budget=0)  # one batch per round
    assert await worker.prune() == Pruned(runs=1000, more=True)
    assert await worker.prune() == Pruned(runs=1000, more=True)
    assert await worker.prune() == Pruned(runs=500, more=False)
    assert await runs(app) == 0 and worker.pruned.runs == 2500


async def test_a_sweep_finds_a_row_below_where_the_batches_left_off(app: App) -> None:
    # A row whose transaction committed after the batches passed its id (only a retention shorter than
    # that transaction allows it): the next batches start above it, the hourly sweep starts from the start.
    await history_rows(app, 10, first_job=2_000_000)
    worker = maintenance(app)
    assert (await worker.prune()).runs == 10  # type: ignore[union-attr]
    cursor = await app.pool.fetchval(f"SELECT after_id FROM {app.schema}.prune_cursors WHERE name = 'age'")
    await app.pool.execute(
        f"""INSERT INTO {app.schema}.job_runs (id, job_id, attempt, status, completed_at)
            OVERRIDING SYSTEM VALUE VALUES ($1, 7, 1, 'failed', now() - interval '30 days')""", cursor - 5)
    assert (await worker.prune()).runs == 0  # type: ignore[union-attr]
    worker._next_sweep = 0.0  # an hour later
    assert (await worker.prune()).runs == 1  # type: ignore[union-attr]


# --- the count limit ---

async def test_keep_completed_keeps_the_newest_completed_jobs_of_each_queue(app: App) -> None:
    attempts: dict[int, int] = {}

    async def work(data: Any) -> None:
        attempts[data["i"]] = attempts.get(data["i"], 0) + 1
        if data["i"] == 0 and attempts[0] == 1:
            raise Retry(after=0)  # its first attempt is a history row of its own

    def dead(data: Any) -> None:
        raise RuntimeError("always fails")

    app.register("work", work)
    app.register("dead", dead)
    retried = await app.enqueue("work", {"i": 0}, queue="a")
    await drain(app, "a")  # the oldest completed job of "a"
    rest = [await app.enqueue("work", {"i": i}, queue="a") for i in range(1, 5)]
    others = [await app.enqueue("work", {"i": 10 + i}, queue="b") for i in range(2)]
    dead_letter = await app.enqueue("dead", queue="a", max_attempts=1)
    await drain(app, "a", "b")
    completed_a = [retried.id, *(j.id for j in rest)]
    assert [r["job_id"] for r in await app.pool.fetch(
        f"SELECT job_id FROM {app.schema}.job_runs WHERE handler IS NOT NULL AND queue = 'a' ORDER BY id")
    ] == completed_a
    assert await stats_completed(app) == {"a": 5, "b": 2}

    done = await maintenance(app, keep_completed=3).prune()
    assert done is not None and done.completed == 2
    for gone in completed_a[:2]:  # the two oldest, with every run (the retried one's failed attempt too)
        with pytest.raises(JobNotFound):
            await app.get_job(gone)
    assert await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs WHERE job_id = ANY($1)",
                                   completed_a[:2]) == 0
    for job_id in completed_a[2:] + [j.id for j in others]:
        assert (await app.get_job(job_id)).status is JobStatus.COMPLETED
    # A dead letter is never deleted by the count limit: it waits for an operator, with its runs.
    assert (await app.get_job(dead_letter.id)).status is JobStatus.FAILED
    assert len(await app.job_history(dead_letter.id)) == 1
    assert await stats_completed(app) == {"a": 3, "b": 2} == await kept(app)
    assert (await maintenance(app, keep_completed=3).prune()).completed == 0  # type: ignore[union-attr]


async def test_keep_completed_deletes_batch_after_batch(app: App) -> None:
    await history_rows(app, 250, queue="a", age="1 minute")
    await history_rows(app, 40, queue="b", age="1 minute", first_job=2_000_000)
    done = await maintenance(app, keep_completed=30, prune_batch=100).prune()
    assert done is not None and (done.completed, done.more) == (230, False)
    assert await kept(app) == {"a": 30, "b": 30} == await counted(app)
    newest = await app.pool.fetchval(f"SELECT min(job_id) FROM {app.schema}.job_runs WHERE queue = 'a'")
    assert newest == 1_000_000 + 221  # the 30 newest of "a" stay


async def test_the_workers_maintenance_has_the_apps_count_limit(pg_dsn: str, own_schema: str) -> None:
    async with App(pg_dsn, schema=own_schema, keep_completed=7) as app:
        assert app.create_worker().maintenance.keep_completed == 7
        assert app.create_worker(keep_completed=None).maintenance.keep_completed is None


# --- the overview's counters ---

async def test_the_overview_counts_completed_jobs_from_the_counters(app: App) -> None:
    app.register("work", lambda data: None)
    for queue in ("a", "a", "b"):
        await app.enqueue("work", queue=queue)
    await app.enqueue("work", queue="a", delay=3600)
    await drain(app, "a", "b")
    stats = {(s["queue"], s["status"]): s["count"] for s in await app.admin().queue_stats()}
    assert stats == {("a", "completed"): 2, ("a", "pending"): 1, ("b", "completed"): 1}
    # The history is not counted: a counter row alone changes the answer.
    await app.pool.execute(f"INSERT INTO {app.schema}.queue_counts VALUES ('a', 0, 1000), ('c', 0, 5)")
    assert await stats_completed(app) == {"a": 1002, "b": 1, "c": 5}


async def test_the_counters_follow_every_statement_that_writes_the_history(app: App) -> None:
    app.register("work", lambda data: None)
    jobs = [await app.enqueue("work", queue=q) for q in ("a", "a", "a", "b")]
    await drain(app, "a", "b")
    assert await counted(app) == {"a": 3, "b": 1} == await kept(app)
    await app.delete_job(jobs[0].id)  # a completed job deleted
    assert await counted(app) == {"a": 2, "b": 1}
    await app.trigger(jobs[1].id)  # back to jobs: its history row becomes a plain run row
    assert await counted(app) == {"a": 1, "b": 1} == await stats_completed(app)
    await drain(app, "a")  # and completed again
    assert await counted(app) == {"a": 2, "b": 1} == await kept(app)
    await app.pool.execute(f"UPDATE {app.schema}.job_runs SET completed_at = now() - interval '30 days'"
                           f" WHERE id < (SELECT max(id) FROM {app.schema}.job_runs)")
    assert (await maintenance(app).prune()).runs == 3  # type: ignore[union-attr]  # all but the newest: past their age
    assert await counted(app) == {"a": 1} == await kept(app)
    await app.pool.execute(f"TRUNCATE {app.schema}.job_runs")
    assert await counted(app) == {} == await kept(app)


async def test_the_rows_of_backends_that_are_gone_fold_into_one(app: App) -> None:
    await history_rows(app, 4, queue="a", age="1 minute")
    gone = 2**31 - 1  # no backend has this pid
    await app.pool.execute(f"INSERT INTO {app.schema}.queue_counts VALUES ('a', $1, 3), ('b', $1, 2)", gone)
    await maintenance(app).prune()
    rows = await app.pool.fetch(f"SELECT queue, backend, completed FROM {app.schema}.queue_counts ORDER BY 1, 2")
    assert {(r["queue"], r["completed"]) for r in rows if r["backend"] == 0} == {("a", 4 + 3), ("b", 2)}
    assert all(r["backend"] != gone for r in rows)
    assert await counted(app) == {"a": 7, "b": 2}


async def test_the_migration_counts_the_history_an_older_release_kept(
        pg_dsn: str, own_schema: str, needs_ddl: None) -> None:
    retention = next(m.version for m in migrations("s") if m.name == "retention")
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn, own_schema, up_to=retention - 1)
        await conn.execute(
            f"""INSERT INTO {own_schema}.job_runs (job_id, attempt, status, handler, queue)
                SELECT g, 1, 'completed', CASE WHEN g % 4 = 0 THEN NULL ELSE 'h' END,
                       CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END
                FROM generate_series(1, 20) AS g""")
        assert await migrate(conn, own_schema) == [m.version for m in migrations(own_schema)
                                                    if m.version >= retention]
        rows = await conn.fetch(f"SELECT queue, backend, completed FROM {own_schema}.queue_counts ORDER BY queue")
        assert [tuple(r) for r in rows] == [("a", 0, 5), ("b", 0, 10)]
    finally:
        await conn.close()


# --- jobs list over a long history ---

async def test_the_list_cursor_bounds_the_index_scans_under_a_generic_plan(app: App) -> None:
    await history_rows(app, 20_000, age="1 minute")
    await app.pool.execute(f"INSERT INTO {app.schema}.jobs (handler) SELECT 'h' FROM generate_series(1, 2000)")
    await app.pool.execute(f"ANALYZE {app.schema}.jobs, {app.schema}.job_runs")
    async with app.pool.acquire() as conn:
        await conn.execute("SET plan_cache_mode = force_generic_plan")
        try:
            await conn.execute(f"PREPARE page(text, text, text, bigint, int, jsonb) AS {app.queries.sql['list_jobs']}")
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN EXECUTE page(NULL, NULL, NULL, 5, 50, NULL)"))
            await conn.execute("DEALLOCATE page")
        finally:
            await conn.execute("RESET plan_cache_mode")
    assert "Index Cond: (id < COALESCE($4" in plan, plan
    assert "Index Cond: (job_id < COALESCE($4" in plan, plan


async def test_a_recount_makes_the_counters_exact_after_an_earlier_release(app: App) -> None:
    # An earlier release's worker completes jobs without counting them; pruning them subtracts.
    await history_rows(app, 5, queue="a")
    await app.pool.execute(f"TRUNCATE {app.schema}.queue_counts")
    await maintenance(app).prune()
    assert await counted(app) == {"a": -5}
    assert await stats_completed(app) == {}  # read as none, never below zero
    await history_rows(app, 3, queue="a", age="1 minute", first_job=2_000_000)  # recounts
    assert await counted(app) == {"a": 3} == await stats_completed(app)


async def test_with_history_off_nothing_is_counted(pg_dsn: str, own_schema: str) -> None:
    async with App(pg_dsn, schema=own_schema, enable_history=False) as app:
        app.register("work", lambda data: None)
        await app.enqueue("work")
        await drain(app, "default")
        assert await counted(app) == {} == await kept(app)
