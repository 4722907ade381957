"""The hot statements stay linear in the rows they touch, whatever plan PostgreSQL caches.

asyncpg prepares each statement once per connection; after five runs PostgreSQL may
switch to a generic plan, which guesses 10 rows for an array it cannot see, and the
statistics of a busy queue are always stale (the last ANALYZE saw no running job).
Under those guesses completion once joined every outcome with every outcome or every
running job: a flush of 1,000 jobs compared a million pairs. These tests run the
statements under both plan modes, after an ANALYZE that saw nothing running, and read
the executed plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from aiojobs_pg import App
from aiojobs_pg.executor import Backoff, Executor
from aiojobs_pg.models import JobStatus, RunStatus, micros

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


async def _executed_plan(app: App, mode: str, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
    async with app.pool.acquire() as conn:
        await conn.execute(f"SET plan_cache_mode = {mode}")
        try:
            tr = conn.transaction()
            await tr.start()
            try:
                raw = await conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, *args)
            finally:
                await tr.rollback()
        finally:
            await conn.execute("RESET plan_cache_mode")
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
