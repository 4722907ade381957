"""The floor: a minimal hand-written asyncpg queue on a bare table.

It is the reference aiojobs_pg is compared with: what PostgreSQL and asyncpg
can do for a job queue with nothing else in the way (no retries, leases,
history, priorities...).  Each function creates the schema ``bench_floor``
afresh, measures, and drops it again, so the functions are independent of
each other and of the order they run in.

Every measured section keeps all its connections open from before
:meth:`PgCpu.start` until after :meth:`PgCpu.stop` (see pgcpu.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

import asyncpg

from benchmarks.common import (
    BenchConfig,
    Result,
    Section,
    bench_dsn,
    free_connection_slots,
    measured,
    percentile,
)
from benchmarks.pgcpu import PgCpu

__all__ = [
    "SECTIONS",
    "drain",
    "enqueue_batch",
    "enqueue_single",
    "latency",
]

IMPL = "floor"
SCHEMA = "bench_floor"
TABLE = f"{SCHEMA}.floor_jobs"
CHANNEL = "bench_floor_jobs"

DDL = f"""
CREATE SCHEMA {SCHEMA};
CREATE TABLE {TABLE} (
    id         bigserial PRIMARY KEY,
    status     text NOT NULL DEFAULT 'pending',
    data       jsonb NOT NULL DEFAULT '{{}}',
    created_at timestamptz DEFAULT now()
);
CREATE INDEX floor_jobs_pending_idx ON {TABLE} (id) WHERE status = 'pending';
"""

INSERT_ONE = f"INSERT INTO {TABLE} (data) VALUES ($1::jsonb)"
INSERT_MANY = f"INSERT INTO {TABLE} (data) SELECT d FROM unnest($1::jsonb[]) AS d"
INSERT_NOTIFY = (
    f"WITH j AS (INSERT INTO {TABLE} (data) VALUES ($1::jsonb) RETURNING id)"
    f" SELECT pg_notify('{CHANNEL}', id::text) FROM j"
)
# The floor's insert made to keep ours' contract: return the new job's id and creation time, and wake
# the workers of its queue. Not the floor; the paired section and a probe compare against it.
INSERT_CONTRACT = (f"INSERT INTO {TABLE} (data) VALUES ($1::jsonb)"
                   f" RETURNING id, created_at, pg_notify('{CHANNEL}', 'default')")
CLAIM = (
    f"UPDATE {TABLE} SET status = 'running' WHERE id IN ("
    f"SELECT id FROM {TABLE} WHERE status = 'pending'"
    " ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
    ") RETURNING id, data"
)
COMPLETE = f"UPDATE {TABLE} SET status = 'done' WHERE id = ANY($1::bigint[])"

Conn: TypeAlias = "asyncpg.Connection[Any]"


# --------------------------------------------------------------------------- helpers


@contextlib.asynccontextmanager
async def _fresh_schema(dsn: str) -> AsyncIterator[Conn]:
    """An admin connection with ``bench_floor`` freshly created; dropped on exit."""
    admin: Conn = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        await admin.execute(DDL)
        yield admin
    finally:
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        finally:
            await admin.close()


async def _connect_many(dsn: str, count: int) -> list[Conn]:
    return list(await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(count))))


async def _close_all(conns: list[Conn]) -> None:
    await asyncio.gather(*(c.close() for c in conns), return_exceptions=True)


async def _preload(conn: Conn, n: int, batch: int = 10_000) -> None:
    """Load ``n`` pending no-op jobs, then VACUUM ANALYZE (not measured)."""
    for start in range(0, n, batch):
        payloads = [json.dumps({"i": i}) for i in range(start, min(n, start + batch))]
        await conn.execute(INSERT_MANY, payloads)
    await conn.execute(f"VACUUM ANALYZE {TABLE}")


async def _count(conn: Conn, status: str) -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM {TABLE} WHERE status = $1", status))


async def _noop(data: Any) -> None:
    """The job handler: does nothing."""


# --------------------------------------------------------------------------- enqueue


async def enqueue_single(n: int, *, dsn: str | None = None) -> Result:
    """``n`` jobs, one INSERT per job, each its own (autocommit) transaction.

    One connection, sequential; each commit waits for its WAL flush (as
    ``synchronous_commit`` says), so this is bound by commit latency.
    """
    async with _fresh_schema(dsn or bench_dsn()) as admin:
        conn: Conn = await asyncpg.connect(dsn or bench_dsn())
        try:
            payloads = [json.dumps({"i": i}) for i in range(n)]
            cpu = await PgCpu.attach(conn)
            with measured(cpu) as m:
                for p in payloads:
                    await conn.execute(INSERT_ONE, p)
        finally:
            await conn.close()
        res = m.fill(Result(IMPL, "enqueue", "single", n=n, seconds=0.0))
        res.jobs_per_s = n / m.seconds
        res.extra["stored"] = await _count(admin, "pending")
    return res


async def enqueue_batch(n: int, batch: int = 1_000, *, dsn: str | None = None) -> Result:
    """``n`` jobs in INSERT ... SELECT FROM unnest($1::jsonb[]) of ``batch`` rows each."""
    async with _fresh_schema(dsn or bench_dsn()) as admin:
        conn: Conn = await asyncpg.connect(dsn or bench_dsn())
        try:
            payloads = [json.dumps({"i": i}) for i in range(n)]
            chunks = [payloads[i : i + batch] for i in range(0, n, batch)]
            cpu = await PgCpu.attach(conn)
            with measured(cpu) as m:
                for chunk in chunks:
                    await conn.execute(INSERT_MANY, chunk)
        finally:
            await conn.close()
        res = m.fill(Result(IMPL, "enqueue", "batch", n=n, seconds=0.0))
        res.jobs_per_s = n / m.seconds
        res.extra["batch"] = batch
        res.extra["stored"] = await _count(admin, "pending")
    return res


# --------------------------------------------------------------------------- drain


async def _drain_loop(conn: Conn, claim_batch: int) -> int:
    """Claim up to ``claim_batch``, run each, mark the batch done; until nothing is left."""
    done = 0
    while True:
        rows = await conn.fetch(CLAIM, claim_batch)
        if not rows:
            return done
        for row in rows:
            await _noop(json.loads(row["data"]))
        await conn.execute(COMPLETE, [row["id"] for row in rows])
        done += len(rows)


async def drain(
    n: int,
    concurrency: int,
    *,
    dsn: str | None = None,
    max_connections: int = 16,
    claim_batch: int = 100,
) -> Result:
    """Pre-load ``n`` no-op jobs, then drain them with ``concurrency`` worker loops.

    Each loop has its own connection, so the loops actually run in parallel on
    the server; their number is capped at ``max_connections`` and at what the
    server has free (variant key stays ``c<concurrency>``; the note says so).
    A claim is one autocommit statement, so claimed rows are 'running' at once;
    the batch is marked 'done' by one more statement.  The client decodes each
    job's JSON before the no-op handler, as any queue must.
    """
    dsn = dsn or bench_dsn()
    async with _fresh_schema(dsn) as admin:
        await _preload(admin, n)
        loops = max(1, min(concurrency, max_connections, await free_connection_slots(admin)))
        conns = await _connect_many(dsn, loops)
        try:
            cpu = await PgCpu.attach(*conns)
            with measured(cpu) as m:
                counts = await asyncio.gather(*(_drain_loop(c, claim_batch) for c in conns))
        finally:
            await _close_all(conns)
        res = m.fill(Result(IMPL, "drain", f"c{concurrency}", n=n, seconds=0.0))
        res.jobs_per_s = n / m.seconds
        res.extra.update(
            requested_concurrency=concurrency,
            connections=loops,
            claim_batch=claim_batch,
            per_loop=sorted(counts, reverse=True),
        )
        if loops < concurrency:
            res.notes.append(f"{concurrency} loops requested, capped at {loops} connections")
        done = await _count(admin, "done")
        if done != n or sum(counts) != n:
            res.notes.append(f"ERROR: {done} jobs done, loops counted {sum(counts)}, expected {n}")
    return res


# --------------------------------------------------------------------------- latency


async def latency(
    n: int = 500,
    rate: float = 50.0,
    *,
    dsn: str | None = None,
    claim_batch: int = 100,
    poll_interval: float = 1.0,
) -> Result:
    """Enqueue-to-handler-start latency of an idle consumer woken by NOTIFY.

    The consumer LISTENs on a channel and also polls every ``poll_interval``
    seconds; on either it claims until nothing is left.  The producer inserts
    ``n`` jobs one by one at ``rate`` per second, each by a single statement that
    inserts the row and calls ``pg_notify`` (one transaction), the row carrying
    ``time.time()`` taken just before the insert.  The latency of a job is
    ``time.time()`` when its handler is about to be called minus that stamp
    (same process, same clock).  ``jobs_per_s`` is not reported: it is the
    producer's rate, not a capacity.
    """
    dsn = dsn or bench_dsn()
    async with _fresh_schema(dsn):
        consumer: Conn = await asyncpg.connect(dsn)
        producer: Conn = await asyncpg.connect(dsn)
        try:
            lat: list[float] = []
            wake = asyncio.Event()
            woken = {"notify": 0, "poll": 0}

            def on_notify(*_: object) -> None:
                wake.set()

            await consumer.add_listener(CHANNEL, on_notify)

            async def consume() -> None:
                while len(lat) < n:
                    try:
                        await asyncio.wait_for(wake.wait(), poll_interval)
                        woken["notify"] += 1
                    except TimeoutError:
                        woken["poll"] += 1
                    wake.clear()
                    while rows := await consumer.fetch(CLAIM, claim_batch):
                        for row in rows:
                            data = json.loads(row["data"])
                            lat.append(time.time() - data["t"])
                            await _noop(data)
                        await consumer.execute(COMPLETE, [row["id"] for row in rows])

            async def produce() -> float:
                t0 = time.perf_counter()
                for i in range(n):
                    delay = t0 + i / rate - time.perf_counter()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    await producer.execute(INSERT_NOTIFY, json.dumps({"i": i, "t": time.time()}))
                return time.perf_counter() - t0

            cpu = await PgCpu.attach(consumer, producer)
            task = asyncio.create_task(consume())
            await asyncio.sleep(0.1)  # the consumer is idle, waiting, when the first job comes
            with measured(cpu) as m:
                produced_in = await produce()
                await asyncio.wait_for(task, timeout=30.0)
            await consumer.remove_listener(CHANNEL, on_notify)
        finally:
            await _close_all([consumer, producer])
    res = m.fill(Result(IMPL, "latency", f"{rate:g}/s", n=n, seconds=0.0))
    ms = [1000.0 * x for x in lat]
    res.p50_ms, res.p95_ms, res.p99_ms = (percentile(ms, q) for q in (50, 95, 99))
    res.extra.update(
        rate=rate,
        achieved_rate=n / produced_in if produced_in > 0 else None,
        max_ms=max(ms) if ms else None,
        wakeups_notify=woken["notify"],
        wakeups_poll=woken["poll"],
        poll_interval_s=poll_interval,
    )
    return res


# --------------------------------------------------------------------------- sections


async def _enqueue_section(cfg: BenchConfig) -> list[Result]:
    return [
        await enqueue_single(cfg.n, dsn=cfg.dsn),
        await enqueue_batch(cfg.n, cfg.batch, dsn=cfg.dsn),
    ]


async def _drain_section(cfg: BenchConfig) -> list[Result]:
    return [
        await drain(
            cfg.n,
            c,
            dsn=cfg.dsn,
            max_connections=cfg.max_connections,
            claim_batch=cfg.claim_batch,
        )
        for c in cfg.drain_concurrency
    ]


async def _latency_section(cfg: BenchConfig) -> list[Result]:
    return [await latency(cfg.latency_n, cfg.latency_rate, dsn=cfg.dsn, claim_batch=cfg.claim_batch)]


SECTIONS: list[Section] = [
    Section(IMPL, "enqueue", _enqueue_section, "one INSERT per transaction; unnest batches"),
    Section(IMPL, "drain", _drain_section, "claim 100 SKIP LOCKED, no-op, mark done"),
    Section(IMPL, "latency", _latency_section, "LISTEN/NOTIFY + 1 s poll, enqueue->start"),
]
