"""Probe for issue 20: would a narrower hot row bring the server's CPU per job near the floor's?

The same claim-then-complete loop (100 jobs per statement, one connection for each) over four schemas:
``floor`` (four columns, no history), ``wide`` (the columns of our jobs row, each completed job moved
into a history row), ``wide_nohist`` (the same without the history row) and ``narrow`` (status and
lease in a table of their own beside the job's description, the history row as in ``wide``). The
statements are planned once, as the worker's lanes plan theirs (``queries.HOT_PATH_SETTINGS``).
Prints each backend's CPU per job, three rounds in turns.

    python benchmarks/probe_narrow_row.py [DSN]

The server must run on this host: the CPU is read from /proc for each backend.
"""

from __future__ import annotations

import asyncio
import os
import sys

import asyncpg

N = 50_000
BATCH = 100
SETTINGS = {"plan_cache_mode": "force_generic_plan", "enable_seqscan": "off", "jit": "off"}

JOB_COLUMNS = """
    name text, handler text NOT NULL, data jsonb NOT NULL, queue text NOT NULL DEFAULT 'default',
    priority int NOT NULL DEFAULT 0, schedule text, timezone text, status text NOT NULL DEFAULT 'pending',
    attempts int NOT NULL DEFAULT 0, max_attempts int NOT NULL DEFAULT 3, timeout float8,
    last_run_at timestamptz, next_run_at timestamptz NOT NULL DEFAULT now(), last_error text, result jsonb,
    dedup_key text, lease_expires_at timestamptz, worker_id text, created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(), periodic_key text, misfire text NOT NULL DEFAULT 'skip',
    overlap text NOT NULL DEFAULT 'wait', tick_at timestamptz, claims bigint NOT NULL DEFAULT 0, progress real,
    progress_message text, awaited bool, parents bigint[], waiting_for bigint[], on_parent_failure text,
    has_dependents bool, concurrency_key text, backoff jsonb, trace_context text"""
JOBS = f"CREATE TABLE {{s}}.jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, {JOB_COLUMNS});"
HISTORY = """
CREATE TABLE {s}.runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job_id bigint NOT NULL, attempt int, worker_id text,
    status text, started_at timestamptz, completed_at timestamptz, result jsonb, handler text, data jsonb,
    queue text, created_at timestamptz);
CREATE INDEX ON {s}.runs (job_id, id);"""
CLAIM_INDEXES = """
CREATE INDEX ON {s}.{t} (queue, handler, priority DESC, next_run_at, id) WHERE status = 'pending';
CREATE INDEX ON {s}.{t} (lease_expires_at) WHERE lease_expires_at IS NOT NULL;"""
HOT = """
CREATE TABLE {s}.hot (
    id bigint PRIMARY KEY, queue text NOT NULL, handler text NOT NULL, priority int NOT NULL,
    next_run_at timestamptz NOT NULL, status text NOT NULL, attempts int NOT NULL DEFAULT 0,
    claims bigint NOT NULL DEFAULT 0, lease_expires_at timestamptz, worker_id text);"""

SCHEMA = {
    "floor": """
CREATE TABLE {s}.jobs (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, status text NOT NULL DEFAULT 'pending',
                       data jsonb NOT NULL);
CREATE INDEX ON {s}.jobs (id) WHERE status = 'pending';""",
    "wide": JOBS + CLAIM_INDEXES.replace("{t}", "jobs") + HISTORY,
    "narrow": JOBS + HOT + CLAIM_INDEXES.replace("{t}", "hot") + HISTORY,
}
SCHEMA["wide_nohist"] = SCHEMA["wide"]

DATA = "jsonb_build_object('i', g) FROM generate_series(1, $1) AS g"
FILL = {
    "floor": f"INSERT INTO {{s}}.jobs (data) SELECT {DATA}",
    "wide": f"INSERT INTO {{s}}.jobs (handler, data) SELECT 'noop', {DATA}",
    "narrow": f"""
WITH j AS (INSERT INTO {{s}}.jobs (handler, data) SELECT 'noop', {DATA}
           RETURNING id, queue, handler, priority, next_run_at)
INSERT INTO {{s}}.hot (id, queue, handler, priority, next_run_at, status)
SELECT id, queue, handler, priority, next_run_at, 'pending' FROM j""",
}
FILL["wide_nohist"] = FILL["wide"]

PENDING = """SELECT id FROM {s}.{t} WHERE status = 'pending' AND queue = 'default' AND handler = 'noop'
    AND next_run_at <= now() ORDER BY priority DESC, next_run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED"""
CLAIM = {
    "floor": """
UPDATE {s}.jobs SET status = 'running'
WHERE id = ANY(ARRAY(SELECT id FROM {s}.jobs WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED))
RETURNING id, data::text""",
    "wide": f"""
WITH c AS ({PENDING.replace("{t}", "jobs")})
UPDATE {{s}}.jobs j SET status = 'running', attempts = j.attempts + 1, claims = j.claims + 1, last_run_at = now(),
    updated_at = now(), lease_expires_at = now() + interval '30 s', worker_id = 'w', progress = NULL,
    progress_message = NULL
WHERE j.id = ANY(ARRAY(SELECT id FROM c))
RETURNING j.id, j.claims, j.data::text, j.handler, j.queue, j.attempts""",
    "narrow": f"""
WITH c AS ({PENDING.replace("{t}", "hot")}),
u AS (
    UPDATE {{s}}.hot h SET status = 'running', attempts = h.attempts + 1, claims = h.claims + 1,
        lease_expires_at = now() + interval '30 s', worker_id = 'w'
    WHERE h.id = ANY(ARRAY(SELECT id FROM c))
    RETURNING h.id, h.claims, h.attempts, h.handler, h.queue)
SELECT u.id, u.claims, j.data::text, u.handler, u.queue, u.attempts FROM u JOIN {{s}}.jobs j ON j.id = u.id""",
}
CLAIM["wide_nohist"] = CLAIM["wide"]

INTO_HISTORY = """
INSERT INTO {s}.runs (job_id, attempt, worker_id, status, started_at, completed_at, result, handler, data, queue,
                      created_at)
SELECT id, attempts, worker_id, 'completed', last_run_at, now(), 'null', handler, data, queue, created_at FROM d"""
COMPLETE = {
    "floor": "UPDATE {s}.jobs SET status = 'done' WHERE id = ANY($1::bigint[])",
    "wide": """
WITH d AS (DELETE FROM {s}.jobs j WHERE j.id = ANY($1::bigint[]) AND j.status = 'running'
           RETURNING j.id, j.attempts, j.worker_id, j.handler, j.data, j.queue, j.created_at, j.last_run_at)"""
    + INTO_HISTORY,
    "wide_nohist": "DELETE FROM {s}.jobs j WHERE j.id = ANY($1::bigint[]) AND j.status = 'running'",
    "narrow": """
WITH h AS (DELETE FROM {s}.hot h WHERE h.id = ANY($1::bigint[]) AND h.status = 'running'
           RETURNING h.id, h.attempts, h.worker_id),
d AS (DELETE FROM {s}.jobs j USING h WHERE j.id = h.id
      RETURNING j.id, h.attempts, h.worker_id, j.handler, j.data, j.queue, j.created_at, j.last_run_at)"""
    + INTO_HISTORY,
}


def cpu(pid: int) -> float:
    """CPU seconds a local process has used."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def one(dsn: str, kind: str) -> tuple[float, float]:
    """Server CPU µs per job of the claim's backend and of the completion's, over N jobs."""
    s = f"probe_{kind}"
    admin = await asyncpg.connect(dsn)
    claimer = await asyncpg.connect(dsn, server_settings=SETTINGS)
    completer = await asyncpg.connect(dsn, server_settings=SETTINGS)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE; CREATE SCHEMA {s};" + SCHEMA[kind].format(s=s))
        await admin.execute(FILL[kind].format(s=s), N)
        await admin.execute(f"VACUUM ANALYZE {s}.jobs" + (f", {s}.hot" if kind == "narrow" else ""))
        pids = [await c.fetchval("SELECT pg_backend_pid()") for c in (claimer, completer)]
        claim = await claimer.prepare(CLAIM[kind].format(s=s))
        complete = await completer.prepare(COMPLETE[kind].format(s=s))
        before, n = [cpu(p) for p in pids], 0
        while rows := await claim.fetch(BATCH):
            await complete.fetch([r[0] for r in rows])
            n += len(rows)
        used = [(cpu(p) - b) / n * 1e6 for p, b in zip(pids, before, strict=True)]
        assert n == N, n
        if kind in ("wide", "narrow"):
            assert await admin.fetchval(f"SELECT count(*) FROM {s}.runs") == N
        return used[0], used[1]
    finally:
        await admin.execute(f"DROP SCHEMA IF EXISTS {s} CASCADE")
        for conn in (admin, claimer, completer):
            await conn.close()


async def main(dsn: str) -> None:
    results: dict[str, list[tuple[float, float]]] = {}
    for _ in range(3):
        for kind in CLAIM:
            results.setdefault(kind, []).append(await one(dsn, kind))
    print(f"server CPU µs per job (claim + completion), n={N:,}, three rounds in turns")
    for kind, runs in results.items():
        print(f"{kind:12s}" + "".join(f"  {a:4.1f} + {b:4.1f} = {a + b:4.1f}" for a, b in runs))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else
                     os.environ.get("AIOJOBS_PG_BENCH_DSN", "postgresql://root@127.0.0.1/test")))
