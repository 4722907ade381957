"""Scenario 12: the worker and the API run under a role without DDL rights; the schema is installed by another.

On the private server (roles are cluster-wide objects: the shared server is left
alone). The superuser installs the schema (the ``private_env`` fixture's App
migrates it); a role with ``LOGIN`` only gets ``USAGE`` on the schema,
``SELECT, INSERT, UPDATE, DELETE`` on its tables and ``USAGE`` on its sequences,
and no ``CREATE`` anywhere. As that role: ``App(auto_migrate=True)`` opens
(a no-op on an up-to-date schema), enqueues, runs a real worker process and
every management operation.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit, urlunsplit

import anyio.to_thread
import asyncpg
import pytest

from aiojobs_pg import App, JobStatus
from aiojobs_pg.schema import pending_migrations
from tests.chaos.harness import Env, Fleet
from tests.chaos.steps import wait_completed, wait_started
from tests.helpers import REPO

pytestmark = pytest.mark.slow


def as_role(dsn: str, role: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


GRANTS = """
GRANT USAGE ON SCHEMA {schema} TO {role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role};
"""


async def test_12_app_and_worker_without_ddl_rights(private_env: Env, figures: dict[str, object],
                                                    tmp_path: os.PathLike[str]) -> None:
    """A role with DML rights only: auto-migrate is a no-op; enqueue, a worker process and admin ops all work."""
    env = private_env
    role = f"chaos_app_{uuid.uuid4().hex[:8]}"
    await env.pool.execute(f"CREATE ROLE {role} LOGIN")
    try:
        await env.pool.execute(GRANTS.format(schema=env.schema, role=role))
        dsn = as_role(env.dsn, role)
        await _as_restricted_role(env, dsn, role, figures, tmp_path)
    finally:
        await env.pool.execute(f"DROP OWNED BY {role}")
        await env.pool.execute(f"DROP ROLE {role}")


async def _as_restricted_role(env: Env, dsn: str, role: str, figures: dict[str, object],
                              tmp_path: os.PathLike[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        refused = {}
        for ddl in (f"CREATE TABLE {env.schema}.x (i int)", "CREATE SCHEMA chaos_forbidden",
                    f"ALTER TABLE {env.schema}.jobs ADD COLUMN x int", f"DROP TABLE {env.schema}.workers",
                    f"CREATE INDEX ON {env.schema}.jobs (name)"):
            try:
                await conn.execute(ddl)
                refused[ddl.split()[0] + " " + ddl.split()[1]] = False
            except asyncpg.InsufficientPrivilegeError:
                refused[ddl.split()[0] + " " + ddl.split()[1]] = True
        assert await pending_migrations(conn, env.schema) == []
    finally:
        await conn.close()
    figures["ddl_refused_to_the_role"] = refused
    assert all(refused.values()), refused

    app = App(dsn, schema=env.schema, auto_migrate=True, lease=2, poll_interval=0.2, maintenance_interval=0.5)
    async with app:
        figures["auto_migrate_applied"] = await app.migrate()
        assert figures["auto_migrate_applied"] == []
        ops: dict[str, str] = {}

        job = await app.enqueue("record", {"to": "a@b.c"}, max_attempts=5)
        ops["enqueue"] = "ok"
        many = await app.enqueue_many([{"handler": "record", "data": {"i": i}} for i in range(20)])
        ops["enqueue_many"] = "ok"
        again = await app.enqueue("record", dedup_key="k1")
        assert (await app.enqueue("record", dedup_key="k1")).id == again.id
        ops["enqueue dedup"] = "ok"
        async with app.pool.acquire() as c, c.transaction():
            in_tx = await app.enqueue("record", connection=c)  # type: ignore[arg-type]
        ops["enqueue in a transaction"] = "ok"
        recurring = await app.enqueue("record", schedule="1h")
        ops["enqueue schedule"] = "ok"
        later = await app.enqueue("record", run_at=datetime.now(UTC) + timedelta(hours=1))
        long = await app.enqueue("record", {"sleep": 2.0})  # lives through lease renewals

        fleet = Fleet(env.fleet.tmp_path, dsn, env.schema)
        worker = fleet.start(10)
        try:
            await wait_started(env, worker)
            ids = [job.id, again.id, in_tx.id, long.id, *(j.id for j in many)]
            await wait_completed(env, ids, 20, alive=[worker])
            calls = worker.stats().get("calls", {})
            figures["worker_statements"] = {k: {"calls": v["n"], "errors": v["errors"]} for k, v in calls.items()}
            # Claims, completions, renewals, rescue scans, heartbeats, pruning: all allowed.
            assert calls["renew_leases"]["n"] > 0 and calls["expired_leases"]["n"] > 0 and calls["prune"]["n"] > 0
            assert all(v["errors"] == 0 for v in calls.values()), calls
            ops["worker process run"] = "ok"
        finally:
            fleet.cleanup()
            fleet.dump()

        assert (await app.get_job(job.id)).status is JobStatus.COMPLETED
        assert len(await app.job_history(job.id)) == 1
        await app.list_jobs(status="completed", limit=5)
        ops["get_job / job_history / list_jobs"] = "ok"
        await app.update_job(later.id, name="renamed", priority=5, data={"x": 1})
        ops["update_job"] = "ok"
        await app.trigger(later.id)
        await app.cancel(later.id)
        await app.retry(later.id)
        ops["trigger / cancel / retry"] = "ok"
        await app.update_job(recurring.id, schedule="30m")
        await app.cancel(recurring.id)
        ops["update schedule / pause"] = "ok"
        await app.delete_job(job.id)
        ops["delete_job"] = "ok"
        await app.admin().queue_stats()
        await app.queries.list_workers(app.pool)
        ops["queue_stats / list_workers"] = "ok"
        await app.queries.prune(app.pool, runs_older_than=0.0, jobs_older_than=0.0, workers_older_than=0.0)
        ops["prune"] = "ok"
    figures["operations_as_the_role"] = ops

    # The command line too: `migrate` is a no-op, `jobs list` works.
    env_vars = {**os.environ, "AIOJOBS_PG_DSN": dsn, "AIOJOBS_PG_SCHEMA": env.schema}
    out = await anyio.to_thread.run_sync(lambda: subprocess.run(
        [sys.executable, "-m", "aiojobs_pg", "migrate"], cwd=REPO, env=env_vars, capture_output=True, text=True,
        timeout=60))
    figures["cli_migrate"] = {"exit": out.returncode, "output": (out.stdout + out.stderr).strip()[-200:]}
    assert out.returncode == 0, out.stderr
