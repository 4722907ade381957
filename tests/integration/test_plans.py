"""The hot statements stay linear in the rows they touch, whatever plan PostgreSQL caches.

asyncpg prepares each statement once per connection; after five runs PostgreSQL may
switch to a generic plan, which guesses 10 rows for an array it cannot see, and the
statistics of a busy queue are always stale (the last ANALYZE saw no running job).
Under those guesses completion once joined every outcome with every outcome or every
running job: a flush of 1,000 jobs compared a million pairs. These tests run the
statements under both plan modes, after an ANALYZE that saw nothing running, and read
the executed plan, as the plan cache gives it. The worker forces the generic plan
(queries.HOT_PATH_SETTINGS): test_the_worker_plans_once_... makes that plan while the table
is empty and runs it on a full one.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from aiojobs_pg import App
from aiojobs_pg.executor import Backoff, Executor
from aiojobs_pg.models import JobStatus, RunStatus, micros
from aiojobs_pg.queries import HOT_PATH_LOCAL, HOT_PATH_SETTINGS, planned_once

BATCH = 300
TABLE_ROWS = 20_000


class _Capture:
    """Stands in for a connection to capture the statement and arguments a Queries method sends."""

    query = ""
    args: Sequence[Any] = ()

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        self.query, self.args = query, args
        return []

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.query, self.args = query, args
        return None


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


def _literal(value: Any) -> str:
    """``value`` as an SQL literal that EXECUTE coerces to its parameter's type (EXECUTE takes no parameters)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list | tuple):
        items = ("NULL" if v is None else '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return _literal("{" + ",".join(items) + "}")
    return "'" + str(value).replace("'", "''") + "'"


def _execute(args: Sequence[Any]) -> str:
    return "EXECUTE hot(" + ", ".join(map(_literal, args)) + ")"


async def _executed_plan(app: App, mode: str, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    """The plan of ``sql`` as a prepared statement runs it under ``mode``. EXPLAIN of the statement itself
    would plan it with the arguments' values whatever the mode: EXPLAIN EXECUTE goes through the plan cache."""
    async with app.pool.acquire() as conn:
        await conn.execute(f"SET plan_cache_mode = {mode}")
        await conn.execute(f"PREPARE hot AS {sql}")
        try:
            return await _explain_hot(conn, args)
        finally:
            await conn.execute("DEALLOCATE hot; RESET plan_cache_mode")


async def _explain_hot(conn: Any, args: Sequence[Any]) -> list[dict[str, Any]]:
    """The executed plan of the prepared statement ``hot`` with ``args``, its writes rolled back."""
    tr = conn.transaction()
    await tr.start()
    try:
        raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + _execute(args))
    finally:
        await tr.rollback()
    return list(_nodes(json.loads(raw)[0]["Plan"]))


def _by_primary_key(node: dict[str, Any]) -> bool:
    """A read of jobs through its primary key: an index scan, or a bitmap of the primary key's entries."""
    if node["Node Type"] == "Index Scan":
        return bool(node["Index Name"] == "jobs_pkey")
    # PostgreSQL 18 reads "id = ANY(...)" for a few hundred ids through a bitmap (PostgreSQL 15 does not).
    bitmaps = [n for n in _nodes(node) if n["Node Type"] == "Bitmap Index Scan"]
    return node["Node Type"] == "Bitmap Heap Scan" and bool(bitmaps) and all(
        n["Index Name"] == "jobs_pkey" for n in bitmaps)


def _assert_linear(nodes: list[dict[str, Any]], rows: int) -> None:
    """Each row costs one probe of jobs: jobs is never read whole, nor anything rescanned per row."""
    on_jobs = [n for n in nodes if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]]
    assert on_jobs, "the statement never read jobs"
    probes = [n for n in on_jobs if _by_primary_key(n)]
    # At most one probe per row in all (completion splits its rows between an update and a delete)...
    assert sum(n["Actual Loops"] for n in probes) <= max(rows, len(probes)), probes
    # ...and never a pass over the table, which costs its size at every flush.
    others = [(n["Node Type"], n.get("Index Name"), n["Actual Loops"]) for n in on_jobs if n not in probes]
    assert others == []
    for n in nodes:
        if n["Node Type"] in ("CTE Scan", "Function Scan"):  # read once, or not at all (no such outcome)
            assert n["Actual Loops"] <= 1, f"rescanned {n['Actual Loops']} times: {n}"
    removed = sum(n.get("Rows Removed by Join Filter", 0) for n in nodes)
    assert removed == 0, f"{removed} row pairs compared and thrown away"
    # Completion updates some rows and deletes others (completed one-off jobs): each row once, in all.
    written = [n for n in nodes if n["Node Type"] == "ModifyTable" and n.get("Relation Name") == "jobs"]
    assert sum(n["Actual Rows"] for n in written) == rows


@pytest.fixture
async def running(app: App) -> list[Any]:
    # A table of some size, so that the planner has a real choice between probing and scanning.
    await app.pool.execute(f"INSERT INTO {app.schema}.jobs (handler, data)"
                           f" SELECT 'noop', jsonb_build_object('i', g) FROM generate_series(1, {TABLE_ROWS}) g")
    # What a queue's statistics look like most of the time: taken when nothing was running.
    await app.pool.execute(f"ANALYZE {app.schema}.jobs")
    return await app.queries.claim(app.pool, ["default"], BATCH, 30.0, "w1", app.queries.claim_for(["noop"]))


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
@pytest.mark.parametrize("failures", [0, 1, BATCH // 2, BATCH - 1, BATCH])
async def test_completion_probes_each_job_once(app: App, running: list[Any], mode: str, failures: int) -> None:
    # Any mix of completed jobs (deleted into history) and others (updated): none of 0, 1, half, all.
    ex = Executor({}, worker_id="w1", backoff=Backoff())
    outcomes = [ex.failure(job, micros(job.claimed_at), "boom") if i < failures else
                ex.outcome(job, micros(job.claimed_at), JobStatus.COMPLETED, RunStatus.COMPLETED, result_json="1")
                for i, job in enumerate(running)]
    statement = "complete" if failures else "complete_success"
    capture = _Capture()
    await app.queries.complete(capture, outcomes, history=True)  # type: ignore[arg-type]
    assert capture.query == app.queries.sql[statement]
    nodes = await _executed_plan(app, mode, capture.query, capture.args)
    _assert_linear(nodes, BATCH)
    # History rows for updated jobs, and for completed ones (with the job): one insert each.
    history = [n for n in nodes if n["Node Type"] == "ModifyTable" and n.get("Relation Name") == "job_runs"]
    assert len(history) == (1 if statement == "complete_success" else 2)


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
async def test_lease_renewal_probes_each_job_once(app: App, running: list[Any], mode: str) -> None:
    capture = _Capture()
    await app.queries.renew_leases(capture, [(j.id, j.token) for j in running], 30.0)  # type: ignore[arg-type]
    nodes = await _executed_plan(app, mode, app.queries.sql["renew_leases"], capture.args)
    _assert_linear(nodes, BATCH)


async def _outcome_args(app: App, jobs: Sequence[Any], failures: int) -> tuple[str, Sequence[Any]]:
    """The completion statement and arguments a worker sends for ``jobs``, the first ``failures`` of them failed."""
    ex = Executor({}, worker_id="w1", backoff=Backoff())
    outcomes = [ex.failure(job, micros(job.claimed_at), "boom") if i < failures else
                ex.outcome(job, micros(job.claimed_at), JobStatus.COMPLETED, RunStatus.COMPLETED, result_json="1")
                for i, job in enumerate(jobs)]
    capture = _Capture()
    await app.queries.complete(capture, outcomes, history=True)  # type: ignore[arg-type]
    return capture.query, capture.args


async def _pending(app: App, n: int) -> None:
    await app.pool.execute(f"INSERT INTO {app.schema}.jobs (handler, data)"
                           " SELECT 'noop', jsonb_build_object('i', g) FROM generate_series(1, $1) g", n)


async def _worker_statement(app: App, statement: str, jobs: Sequence[Any], rows: int) -> tuple[str, Sequence[Any]]:
    """What a worker sends for ``statement``: a claim of ``rows``, or a completion (half of it failures, for
    "complete") or lease renewal of the running ``jobs``."""
    if statement == "claim":
        claim = app.queries.claim_for(["noop"])
        return claim.sql, (["default"], rows, 30.0, "w1", claim.handlers)
    if statement == "renew_leases":
        capture = _Capture()
        await app.queries.renew_leases(capture, [(j.id, j.token) for j in jobs], 30.0)  # type: ignore[arg-type]
        return capture.query, capture.args
    return await _outcome_args(app, jobs, max(1, len(jobs) // 2) if statement == "complete" else 0)


@pytest.mark.parametrize("statement", ["claim", "complete_success", "complete", "renew_leases"])
async def test_the_worker_plans_once_and_a_plan_made_on_an_empty_table_still_probes_by_key(
        app: App, statement: str) -> None:
    # The worker's claim and completion lanes run HOT_PATH_SETTINGS, its lease renewals and rescues the same
    # for their transaction (HOT_PATH_LOCAL). A plan cached there while the table was empty, and its statistics
    # said so, must serve a table of any size with the same probes by key: left to PostgreSQL, the cached plans
    # of the completion and the renewal scanned the whole table at every call from then on.
    claim = app.queries.claim_for(["noop"])
    await app.pool.execute(f"ANALYZE {app.schema}.jobs")  # the statistics of an empty table
    async with app.pool.acquire() as conn:
        await conn.execute(HOT_PATH_SETTINGS)
        # Six runs on a handful of jobs: PostgreSQL makes five custom plans before it may cache a generic one.
        for i in range(6):
            await _pending(app, 2)
            small = await app.queries.claim(app.pool, ["default"], 2, 30.0, "w1", claim)
            sql, args = await _worker_statement(app, statement, small, 2)
            if i == 0:
                await conn.execute(f"PREPARE hot AS {sql}")
            await conn.execute(_execute(args))
        await _pending(app, TABLE_ROWS)  # no ANALYZE since: the statistics still say empty
        running = await app.queries.claim(app.pool, ["default"], BATCH, 30.0, "w1", claim)
        sql, args = await _worker_statement(app, statement, running, BATCH)
        nodes = await _explain_hot(conn, args)
        plans = await conn.fetchrow("SELECT generic_plans, custom_plans FROM pg_prepared_statements"
                                    " WHERE name = 'hot'")
    assert statement == "claim" or sql == app.queries.sql[statement]
    # Planned once, not at every call (the claim's LIMIT $2 made PostgreSQL plan it again each time).
    assert (plans["generic_plans"], plans["custom_plans"]) == (7, 0)
    if statement != "claim":
        _assert_linear(nodes, BATCH)
        return
    # The claim reads the claim index in claim order, as far as it takes, and the claimed rows by key.
    on_jobs = [(n["Node Type"], n.get("Index Name")) for n in nodes
               if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]]
    assert sorted(on_jobs) == [("Index Scan", "jobs_claim_idx"), ("Index Scan", "jobs_pkey")]
    read = sum(n["Actual Rows"] * n["Actual Loops"] for n in nodes if n.get("Index Name") == "jobs_claim_idx")
    assert read == BATCH


async def test_the_probes_on_the_shared_pool_plan_once_for_their_transaction_only(app: App) -> None:
    # Lease renewal and the rescue run on the pool, which the application shares (and, through PgBouncer, other
    # clients too): their settings end with their transaction.
    async def modes(conn: Any) -> tuple[str, str]:
        return await conn.fetchval("SHOW plan_cache_mode"), await conn.fetchval("SHOW enable_seqscan")

    assert await planned_once(app.pool, modes) == ("force_generic_plan", "off")
    async with app.pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute(HOT_PATH_LOCAL)
            assert await modes(conn) == ("force_generic_plan", "off")
        assert await modes(conn) == ("auto", "on")
