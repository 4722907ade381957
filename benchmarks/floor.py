"""The floor: a job queue written by hand on asyncpg, with nothing else in the way.

A table ``floor_jobs(id bigserial, status, data jsonb, created_at)`` with a partial index on the
pending ids; no retries, leases, history or priorities. It shows what PostgreSQL and asyncpg can do
on this machine, and every figure of ours is read against it. A worker is one loop on one
connection: claim up to 100 with ``FOR UPDATE SKIP LOCKED``, decode each job's JSON and await a
no-op handler, then mark the batch done in one statement.

Its drain worker processes run ``python -m benchmarks.floor --dsn DSN --schema SCHEMA``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from benchmarks.common import (
    Config,
    Conn,
    Result,
    admin_on,
    done,
    drain_processes,
    drain_worker_args,
    measured,
    paced,
    ready,
    schema_name,
    warm_up,
)

IMPL = "floor"
SCHEMA = schema_name(IMPL)
CLAIM_BATCH = 100

DDL = """
CREATE SCHEMA {s};
CREATE TABLE {s}.floor_jobs (
    id         bigserial PRIMARY KEY,
    status     text NOT NULL DEFAULT 'pending',
    data       jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz DEFAULT now()
);
CREATE INDEX ON {s}.floor_jobs (id) WHERE status = 'pending';
"""
INSERT_ONE = "INSERT INTO {s}.floor_jobs (data) VALUES ($1::jsonb)"
INSERT_MANY = "INSERT INTO {s}.floor_jobs (data) SELECT d FROM unnest($1::jsonb[]) AS d"
INSERT_NOTIFY = ("WITH j AS (INSERT INTO {s}.floor_jobs (data) VALUES ($1::jsonb) RETURNING id)"
                 " SELECT pg_notify('{s}', id::text) FROM j")
CLAIM = ("UPDATE {s}.floor_jobs SET status = 'running' WHERE id IN ("
         "SELECT id FROM {s}.floor_jobs WHERE status = 'pending' ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
         ") RETURNING id, data")
COMPLETE = "UPDATE {s}.floor_jobs SET status = 'done' WHERE id = ANY($1::bigint[])"


async def _noop(data: Any) -> None:
    """The job handler: does nothing."""


@contextlib.asynccontextmanager
async def _fresh(dsn: str) -> AsyncIterator[Conn]:
    """An admin connection, with the schema created afresh; dropped on exit."""
    async with admin_on(dsn, SCHEMA) as admin:
        await admin.execute(DDL.format(s=SCHEMA))
        yield admin


async def _count(admin: Conn, status: str) -> int:
    return int(await admin.fetchval(f"SELECT count(*) FROM {SCHEMA}.floor_jobs WHERE status = $1", status))


async def enqueue(cfg: Config, batch: bool) -> Result:
    """``n`` jobs from one connection, one INSERT each, each its own (autocommit) transaction; or ``bulk`` jobs as
    ``INSERT ... SELECT FROM unnest($1::jsonb[])``, ``batch`` rows per statement."""
    n = cfg.bulk if batch else cfg.n
    async with _fresh(cfg.dsn) as admin:
        conn = await asyncpg.connect(cfg.dsn)
        try:
            payloads = [json.dumps({"i": i}) for i in range(n)]
            sql = (INSERT_MANY if batch else INSERT_ONE).format(s=SCHEMA)
            calls = [payloads[i:i + cfg.batch] for i in range(0, n, cfg.batch)] if batch else payloads
            async with measured(admin) as m:
                for arg in calls:
                    await conn.execute(sql, arg)
        finally:
            await conn.close()
        res = m.fill(Result(IMPL, "enqueue", "batch" if batch else "single", n), n)
        res.check("jobs stored", await _count(admin, "pending"), n)
    return res


async def _loop(conn: Conn, schema: str) -> int:
    """One worker: claim up to 100, run each, mark the batch done; until nothing is left."""
    claim, complete = CLAIM.format(s=schema), COMPLETE.format(s=schema)
    claimed = 0
    while rows := await conn.fetch(claim, CLAIM_BATCH):
        for row in rows:
            await _noop(json.loads(row["data"]))
        await conn.execute(complete, [row["id"] for row in rows])
        claimed += len(rows)
    return claimed


async def drain(cfg: Config, processes: int) -> Result:
    """``bulk`` no-op jobs loaded first (not measured), then drained by ``processes`` processes of one loop each."""
    n = cfg.bulk
    async with _fresh(cfg.dsn) as admin:
        await admin.execute(f"INSERT INTO {SCHEMA}.floor_jobs (data)"
                            " SELECT jsonb_build_object('i', g) FROM generate_series(1, $1) AS g", n)
        await admin.execute(f"VACUUM ANALYZE {SCHEMA}.floor_jobs")
        m, dones = await drain_processes("benchmarks.floor", ["--dsn", cfg.dsn, "--schema", SCHEMA], processes,
                                         admin, wait_s=60 + n / 200)
        res = m.fill(Result(IMPL, "drain", f"p{processes}", n), n)
        res.extra["claimed_per_process"] = [d["claimed"] for d in dones]
        res.check("jobs claimed", sum(d["claimed"] for d in dones), n)
        res.check("jobs done", await _count(admin, "done"), n)
    return res


async def stream(cfg: Config, section: str, rate: float, seconds: float) -> Result:
    """Jobs enqueued one by one at ``rate`` per second to an idle consumer; latency from enqueue to handler start.

    The consumer LISTENs on a channel and polls every second besides; on either it claims until none
    are left. Each insert notifies in the same statement and carries ``time.time()`` taken just before.
    """
    async with _fresh(cfg.dsn) as admin:
        consumer, producer = await asyncpg.connect(cfg.dsn), await asyncpg.connect(cfg.dsn)
        started: list[float] = []
        wake, stop = asyncio.Event(), False
        claim, complete, insert = (q.format(s=SCHEMA) for q in (CLAIM, COMPLETE, INSERT_NOTIFY))

        async def consume() -> None:
            while not stop:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), 1.0)
                wake.clear()
                while rows := await consumer.fetch(claim, CLAIM_BATCH):
                    for row in rows:
                        data = json.loads(row["data"])
                        started.append(time.time() - data["t"])
                        await _noop(data)
                    await consumer.execute(complete, [row["id"] for row in rows])

        async def enqueue(i: int) -> None:
            await producer.execute(insert, json.dumps({"i": i, "t": time.time()}))

        async def sizes() -> dict[str, float]:
            size = await admin.fetchval(f"SELECT pg_total_relation_size('{SCHEMA}.floor_jobs')")
            return {"jobs_mb": round(size / 2**20, 2)}

        await consumer.add_listener(SCHEMA, lambda *_: wake.set())
        task = asyncio.create_task(consume())
        try:
            await warm_up(enqueue, started)
            async with measured(admin) as m:
                n, samples = await paced(enqueue, started, rate, seconds, sizes if section == "soak" else None)
            stop = True  # the consumer finishes what it has claimed, then returns
            wake.set()
            await asyncio.wait_for(asyncio.shield(task), 30.0)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await asyncio.gather(consumer.close(), producer.close(), return_exceptions=True)
        res = m.fill(Result(IMPL, section, f"{rate:g}/s", n), len(started) if section == "soak" else None)
        res.latencies(started)
        res.extra["samples"] = samples
        res.check("jobs started", len(started), n)
        res.check("jobs done", await _count(admin, "done"), n + 1)  # and the warm-up's
    return res


async def _child(dsn: str, schema: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await ready()
        cpu0 = time.process_time()
        await done(await _loop(conn, schema), cpu0)
    finally:
        await conn.close()


if __name__ == "__main__":
    args = drain_worker_args("benchmarks.floor")
    asyncio.run(_child(args.dsn, args.schema))
