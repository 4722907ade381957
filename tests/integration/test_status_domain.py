"""Statuses are domains over text (migration 0018): the database refuses an unknown one, every known one reads
back unchanged through the API, the HTTP API and an upgrade of an installed schema, and the statements of the
release before it, which compare and write the status as text, keep working on it (old and new workers run
side by side during a deploy: docs/deployment.md)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from aiojobs_pg import App, JobStatus, RunStatus, ValidationError
from aiojobs_pg.schema import migrate
from tests.helpers import eventually

STATUS_DOMAIN = 18  # the migration that made the statuses domains


async def test_the_domains_take_exactly_the_statuses_of_the_models(app: App) -> None:
    candidates = sorted({*JobStatus, *RunStatus, "bogus", "Pending", ""})
    for domain, known in (("job_status", set(JobStatus)), ("run_status", set(RunStatus))):
        taken = set()
        for value in candidates:
            try:
                await app.pool.fetchval(f"SELECT $1::text::{app.schema}.{domain}", value)
            except asyncpg.CheckViolationError:
                continue
            taken.add(value)
        assert taken == {s.value for s in known}, domain
        # over text: a value reads, compares and sorts as text
        base = await app.pool.fetchval(f"SELECT typbasetype::regtype::text FROM pg_type"
                                       f" WHERE oid = '{app.schema}.{domain}'::regtype")
        assert base == "text"


async def test_an_unknown_status_is_refused_and_the_row_keeps_its_own(app: App) -> None:
    job = await app.enqueue("h", {})
    jobs, runs = f"{app.schema}.jobs", f"{app.schema}.job_runs"
    with pytest.raises(asyncpg.CheckViolationError, match="job_status"):
        await app.pool.execute(f"UPDATE {jobs} SET status = 'bogus' WHERE id = $1", job.id)
    # a text parameter, as SQL of one's own sends it
    with pytest.raises(asyncpg.CheckViolationError, match="job_status"):
        await app.pool.execute(f"UPDATE {jobs} SET status = $2::text WHERE id = $1", job.id, "bogus")
    # a status of the history is not one of a job, and the other way round
    with pytest.raises(asyncpg.CheckViolationError, match="job_status"):
        await app.pool.execute(f"UPDATE {jobs} SET status = 'released' WHERE id = $1", job.id)
    with pytest.raises(asyncpg.CheckViolationError, match="job_status"):
        await app.pool.execute(f"INSERT INTO {jobs} (handler, status) VALUES ('h', 'bogus')")
    assert (await app.get_job(job.id)).status is JobStatus.PENDING
    assert await app.pool.fetchval(f"SELECT count(*) FROM {jobs}") == 1

    await app.pool.execute(f"INSERT INTO {runs} (job_id, attempt, status) VALUES ($1, 1, 'failed')", job.id)
    for bogus in ("bogus", "pending"):
        with pytest.raises(asyncpg.CheckViolationError, match="run_status"):
            await app.pool.execute(f"UPDATE {runs} SET status = $2::text WHERE job_id = $1", job.id, bogus)
    with pytest.raises(asyncpg.CheckViolationError, match="run_status"):
        await app.pool.execute(f"INSERT INTO {runs} (job_id, attempt, status) VALUES ($1, 2, 'bogus')", job.id)
    assert [r.status for r in await app.job_history(job.id)] == [RunStatus.FAILED]


async def _every_status(app: App) -> dict[JobStatus, int]:
    """A job in each status, made the way the package makes it: the ids by status."""
    app.register("h", lambda data: None)  # never run: its jobs stay off the worker's queue
    app.register("ok", lambda data: {"done": True})

    def boom(data: Any) -> None:
        raise RuntimeError("boom")

    app.register("boom", boom)
    parent = await app.enqueue("h", {}, queue="parked")
    waiting = await app.enqueue("h", {}, queue="parked", after=[parent.id])
    cancelled = await app.enqueue("h", {}, queue="parked")
    await app.cancel(cancelled.id)
    to_run = await app.enqueue("h", {}, queue="claimed")
    [claimed] = await app.queries.claim(app.pool, ["claimed"], 1, 30.0, "w1", app.queries.claim_for(["h"]))
    assert claimed.id == to_run.id
    completed = await app.enqueue("ok", {}, queue="work")
    failed = await app.enqueue("boom", {}, queue="work", max_attempts=1)
    async with app.worker(concurrency=2, queues=["work"]):
        async def ended() -> bool:
            return {(await app.get_job(i)).status for i in (completed.id, failed.id)} == {
                JobStatus.COMPLETED, JobStatus.FAILED}

        await eventually(ended, message="the worker did not finish its two jobs")
    return {JobStatus.PENDING: parent.id, JobStatus.WAITING: waiting.id, JobStatus.CANCELLED: cancelled.id,
            JobStatus.RUNNING: to_run.id, JobStatus.COMPLETED: completed.id, JobStatus.FAILED: failed.id}


async def test_every_status_reads_back_through_get_job_and_list_jobs(app: App) -> None:
    ids = await _every_status(app)
    assert set(ids) == set(JobStatus)
    for status, job_id in ids.items():
        assert (await app.get_job(job_id)).status is status
        # the filter compares the column with the status sent as text, for each value of the domain
        assert [j.id for j in await app.list_jobs(status=status.value)] == [job_id], status
    assert {j.id: j.status for j in await app.list_jobs()} == {i: s for s, i in ids.items()}
    found = await app.queries.get_jobs(app.pool, list(ids.values()))
    assert {j.id: j.status for j in found} == {i: s for s, i in ids.items()}
    assert [r.status for r in await app.job_history(ids[JobStatus.COMPLETED])] == [RunStatus.COMPLETED]
    assert [r.status for r in await app.job_history(ids[JobStatus.FAILED])] == [RunStatus.FAILED]
    with pytest.raises(ValidationError, match="unknown status 'bogus'"):
        await app.list_jobs(status="bogus")


@pytest.fixture
async def http_client(app: App) -> AsyncIterator[Any]:
    pytest.importorskip("starlette", reason="the http extra (starlette) is not installed")
    import httpx

    from aiojobs_pg.http import create_asgi_app
    from tests.http.conftest import ADMIN_TOKEN, BASE, bearer, in_own_task

    api = create_asgi_app(app, tokens={"admin": ADMIN_TOKEN})
    async with in_own_task(api.lifespan()), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=api), base_url=BASE, headers=bearer()) as client:
        yield client


async def test_every_status_reads_back_over_http(app: App, http_client: Any) -> None:
    ids = await _every_status(app)
    for status, job_id in ids.items():
        assert (await http_client.get(f"/jobs/{job_id}")).json()["status"] == status.value
        listed = (await http_client.get("/jobs", params={"status": status.value})).json()["data"]
        assert [(j["id"], j["status"]) for j in listed] == [(job_id, status.value)]
    history = (await http_client.get(f"/jobs/{ids[JobStatus.FAILED]}/history")).json()
    assert [r["status"] for r in history["data"]] == ["failed"]
    response = await http_client.get("/jobs", params={"status": "bogus"})
    assert response.status_code == 422, response.text


# The statements of the release before migration 0018 (commit 4a7a997), as it wrote them: the claim sets
# 'running'; the completions fence each row with the status compared with text ('running'::text, or a CASE
# of literals), write statuses received as text arrays, and copy them into the history; the lease renewal,
# the list filter and the retry compare the status with text parameters. Trimmed to what names the status.
_CLAIM = """
WITH c AS (
    SELECT j.id FROM {schema}.jobs j
    WHERE j.status = 'pending' AND j.queue = $1 AND j.next_run_at <= now()
    ORDER BY j.priority DESC, j.next_run_at, j.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
UPDATE {schema}.jobs j
SET status = 'running', attempts = j.attempts + 1, claims = j.claims + 1, last_run_at = now(),
    updated_at = now(), lease_expires_at = now() + make_interval(secs => 30), worker_id = $3
WHERE j.id = ANY(ARRAY(SELECT id FROM c))
RETURNING j.id, j.claims"""
_RENEW = """
WITH r AS MATERIALIZED (
    SELECT u.id, u.token, 'running'::text AS running FROM unnest($1::bigint[], $2::bigint[]) AS u(id, token)
)
UPDATE {schema}.jobs j SET lease_expires_at = now() + make_interval(secs => 30)
FROM r
WHERE j.id = ANY(ARRAY(SELECT id FROM r)) AND j.id = r.id AND j.status = r.running AND j.claims = r.token
RETURNING j.id"""
_COMPLETE_SUCCESS = """
WITH d AS MATERIALIZED (
    SELECT u.id, u.token, 'running'::text AS running
    FROM (SELECT unnest($1::text::bigint[]) AS id, unnest($2::text::bigint[]) AS token) u
), done AS (
    DELETE FROM {schema}.jobs j USING d
    WHERE j.id = ANY(ARRAY(SELECT id FROM d)) AND j.id = d.id AND j.status = d.running AND j.claims = d.token
    RETURNING j.id, j.claims, j.attempts, j.worker_id, j.last_run_at, j.handler, j.name, j.data, j.queue,
              j.priority, j.max_attempts, j.timeout, j.created_at, j.backoff
), hist AS (
    INSERT INTO {schema}.job_runs (job_id, claim, attempt, worker_id, status, started_at, completed_at, handler,
                                   name, data, queue, priority, max_attempts, timeout, created_at, last_run_at,
                                   backoff)
    SELECT id, claims, attempts, worker_id, 'completed', last_run_at, now(), handler, name, data, queue, priority,
           max_attempts, timeout, created_at, last_run_at, backoff
    FROM done
)
SELECT array_agg(id) FROM done"""
_COMPLETE = """
WITH o AS MATERIALIZED (
    SELECT u.id, u.token, u.job_status, u.run_status, u.error,
           CASE WHEN u.after_cancel THEN 'cancelled' ELSE 'running' END AS running
    FROM (SELECT unnest($1::text::bigint[]) AS id, unnest($2::text::bigint[]) AS token,
                 unnest($3::text::text[]) AS job_status, unnest($4::text::text[]) AS run_status,
                 unnest($5::text[]) AS error, unnest($6::text::bool[]) AS after_cancel) u
), upd AS (
    UPDATE {schema}.jobs j
    SET status = o.job_status, last_error = o.error, lease_expires_at = NULL, worker_id = NULL, updated_at = now()
    FROM o
    WHERE j.id = ANY(ARRAY(SELECT id FROM o)) AND j.id = o.id AND j.status = o.running AND j.claims = o.token
    RETURNING j.id, j.claims, j.attempts, j.last_run_at, o.job_status, o.run_status, o.error
), hist AS (
    INSERT INTO {schema}.job_runs (job_id, claim, attempt, status, started_at, completed_at, error)
    SELECT id, claims, attempts, run_status, last_run_at, now(), error FROM upd
), woken AS (
    SELECT count(*) AS n FROM upd WHERE job_status IN ('failed', 'cancelled')
)
SELECT array_agg(id) FROM upd WHERE (SELECT n FROM woken) >= 0"""
_LISTED = "SELECT array_agg(id ORDER BY id) FROM {schema}.jobs WHERE ($1::text IS NULL OR status = $1)"
_RETRY = """
UPDATE {schema}.jobs j SET status = 'pending', next_run_at = now(), attempts = 0, updated_at = now()
WHERE j.id = $1 AND j.status = ANY($2::text[])
RETURNING j.id"""


async def previous_release_runs_its_jobs(conn: Any, schema: str) -> None:
    """Claim and complete jobs on ``schema`` with the statements of the release before migration 0018, and
    check what they did; run by the test below on a schema with every migration."""
    def sql(statement: str) -> str:
        return statement.format(schema=schema)

    ids = [await conn.fetchval(sql("INSERT INTO {schema}.jobs (handler, queue) VALUES ('h', 'old') RETURNING id"))
           for _ in range(4)]
    claimed = {r["id"]: r["claims"] for r in await conn.fetch(sql(_CLAIM), "old", 10, "old-worker")}
    assert sorted(claimed) == ids
    assert await conn.fetchval(sql(_LISTED), "running") == ids
    renewed = await conn.fetch(sql(_RENEW), ids, [claimed[i] for i in ids])
    assert sorted(r["id"] for r in renewed) == ids

    ok, failed, cancelled, retried = ids
    # a success, deleted into its history; then a dead letter and a cancelled run, updated in place
    assert await conn.fetchval(sql(_COMPLETE_SUCCESS), f"{{{ok}}}", f"{{{claimed[ok]}}}") == [ok]
    applied = await conn.fetchval(
        sql(_COMPLETE), f"{{{failed},{cancelled}}}", f"{{{claimed[failed]},{claimed[cancelled]}}}",
        "{failed,cancelled}", "{failed,cancelled}", ["boom", None], "{NULL,NULL}")
    assert sorted(applied) == [failed, cancelled]
    # the fence still holds: a stale token applies nothing
    assert await conn.fetchval(sql(_COMPLETE_SUCCESS), f"{{{retried}}}", f"{{{claimed[retried] + 1}}}") is None
    # a status the domain does not know is refused, whoever sends it
    with pytest.raises(asyncpg.CheckViolationError, match="job_status"):
        await conn.fetchval(sql(_COMPLETE), f"{{{retried}}}", f"{{{claimed[retried]}}}", "{bogus}", "{failed}",
                            [None], "{NULL}")
    assert await conn.fetchval(sql(_COMPLETE), f"{{{retried}}}", f"{{{claimed[retried]}}}", "{failed}", "{failed}",
                               ["again"], "{NULL}") == [retried]
    assert await conn.fetchval(sql(_RETRY), retried, ["failed", "cancelled"]) == retried

    statuses = dict(await conn.fetch(sql("SELECT id, status FROM {schema}.all_jobs WHERE queue = 'old'")))
    assert statuses == {ok: "completed", failed: "failed", cancelled: "cancelled", retried: "pending"}
    runs = await conn.fetch(sql("SELECT job_id, status FROM {schema}.job_runs ORDER BY id"))
    assert [tuple(r) for r in runs] == [(ok, "completed"), (failed, "failed"), (cancelled, "cancelled"),
                                        (retried, "failed")]
    assert await conn.fetchval(sql(_LISTED), "failed") == [failed]


async def test_the_previous_release_claims_and_completes_on_the_migrated_schema(app: App) -> None:
    async with app.pool.acquire() as conn:
        await previous_release_runs_its_jobs(conn, app.schema)
    # and this release reads what it wrote
    statuses = {j.status for j in await app.list_jobs(queue="old")}
    assert statuses == {JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.PENDING}
    # SQL of one's own that compares the status with a text parameter
    assert await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.jobs WHERE status = $1::text", "failed") == 1
    assert await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.all_jobs WHERE status = $1", "completed") == 1


async def test_an_installed_schema_keeps_every_status_through_the_migration(
        pg_dsn: str, own_schema: str, needs_ddl: None) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        assert await migrate(conn, own_schema, up_to=STATUS_DOMAIN - 1) == list(range(1, STATUS_DOMAIN))
        jobs, runs = f"{own_schema}.jobs", f"{own_schema}.job_runs"
        for status in JobStatus:
            # a dedup key each, so that the dedup index (rebuilt by the migration) holds every row
            await conn.execute(f"INSERT INTO {jobs} (handler, status, dedup_key) VALUES ('h', $1, $1)", status.value)
        for run_status in RunStatus:
            await conn.execute(f"INSERT INTO {runs} (job_id, attempt, status) VALUES (1, 1, $1)", run_status.value)
        # a completed one-off job, in its history row (migration 0006)
        await conn.execute(f"INSERT INTO {runs} (job_id, attempt, status, handler, queue, created_at)"
                           f" VALUES (100, 1, 'completed', 'h', 'default', now())")
        before = await conn.fetch(f"SELECT id, status FROM {own_schema}.all_jobs ORDER BY id")
        before_runs = await conn.fetch(f"SELECT id, status FROM {runs} ORDER BY id")
        indexes = await conn.fetch(f"SELECT indexname FROM pg_indexes WHERE schemaname = '{own_schema}' ORDER BY 1")
        triggers = f"SELECT tgname FROM pg_trigger WHERE tgrelid = '{jobs}'::regclass AND NOT tgisinternal ORDER BY 1"
        triggers_before = await conn.fetch(triggers)

        assert await migrate(conn, own_schema, up_to=STATUS_DOMAIN) == [STATUS_DOMAIN]

        assert await conn.fetch(f"SELECT id, status FROM {own_schema}.all_jobs ORDER BY id") == before
        assert await conn.fetch(f"SELECT id, status FROM {runs} ORDER BY id") == before_runs
        assert [r["status"] for r in before] == [s.value for s in JobStatus] + ["completed"]
        types = await conn.fetch(
            f"SELECT c.relname, format_type(a.atttypid, NULL) AS type FROM pg_attribute a"
            f" JOIN pg_class c ON c.oid = a.attrelid"
            f" WHERE c.relnamespace = '{own_schema}'::regnamespace AND a.attname = 'status' ORDER BY c.relname")
        assert [tuple(t) for t in types] == [("all_jobs", "text"),
                                             ("job_runs", f"{own_schema}.run_status"),
                                             ("jobs", f"{own_schema}.job_status")]
        # the triggers that read the status are back, and every index (rebuilt by the ALTER)
        assert await conn.fetch(triggers) == triggers_before
        assert {"jobs_settle_dependents", "jobs_release_dependents", "jobs_webhooks_ended"} <= {
            t["tgname"] for t in triggers_before}
        assert await conn.fetch(
            f"SELECT indexname FROM pg_indexes WHERE schemaname = '{own_schema}' ORDER BY 1") == indexes
        # the live job's dedup key is taken again
        with pytest.raises(asyncpg.UniqueViolationError):
            await conn.execute(f"INSERT INTO {jobs} (handler, dedup_key) VALUES ('h', 'pending')")
    finally:
        await conn.close()
