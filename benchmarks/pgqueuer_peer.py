"""pgqueuer, a peer users would pick, under the floor's enqueue and drain sections.

pgqueuer (https://github.com/janbjorge/pgqueuer) is installed by the ``bench`` extra; without it
``python -m benchmarks`` leaves these rows out. Each measurement installs pgqueuer's tables in a
schema of its own (``DBSettings.db_schema``, set through ``PGQUEUER_SCHEMA``), with its NOTIFY
channel named after that schema (channels are database-wide), and drops the schema after. Its
tables are the defaults: ``durable`` (all logged, as ours are), no ``pgq autovac`` (the server runs
without autovacuum). A completed job leaves the queue table and a ``successful`` row in its log.

Its drain worker processes run ``python -m benchmarks.pgqueuer_peer --dsn DSN --schema SCHEMA
--concurrency 100``: one ``QueueManager`` on one asyncpg connection (the docs' advice for a
consumer), ``run(mode=drain, batch_size=concurrency // 2, max_concurrent_tasks=concurrency)``:
the docs say to raise ``batch_size`` for short jobs, within ``max_concurrent_tasks >= 2 *
batch_size``, and ``concurrency`` handlers in flight is what ours runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import asyncpg
import pgqueuer
from pgqueuer import AsyncpgDriver, Job, Queries, QueueManager
from pgqueuer.domain.settings import db_settings
from pgqueuer.domain.types import QueueExecutionMode

from benchmarks.common import (
    Config,
    Conn,
    Result,
    admin_on,
    count,
    done,
    drain_processes,
    drain_worker_args,
    measured,
    ready,
    schema_name,
)

IMPL = "pgqueuer"
SCHEMA = schema_name(IMPL)
ENTRYPOINT = "noop"
VERSION = pgqueuer.__version__


def _use(schema: str) -> None:
    """Point pgqueuer's process-wide settings (read from the environment once, then cached) at ``schema``."""
    os.environ.update(PGQUEUER_SCHEMA=schema, PGQUEUER_CHANNEL=f"ch_{schema}")
    db_settings.cache_clear()


@contextlib.asynccontextmanager
async def _fresh(dsn: str) -> AsyncIterator[Conn]:
    """An admin connection, with pgqueuer installed afresh in the schema; the schema is dropped on exit."""
    _use(SCHEMA)
    async with admin_on(dsn, SCHEMA) as admin:
        await Queries(AsyncpgDriver(admin)).install()
        yield admin


async def _count(admin: Conn, sql: str) -> int:
    return await count(admin, sql, SCHEMA)


def _payloads(n: int) -> list[bytes | None]:
    return [json.dumps({"i": i}).encode() for i in range(n)]


async def _enqueue_all(q: Queries, payloads: list[bytes | None], size: int) -> None:
    """``Queries.enqueue`` with lists: ``size`` jobs in one statement per call."""
    for i in range(0, len(payloads), size):
        chunk = payloads[i:i + size]
        await q.enqueue([ENTRYPOINT] * len(chunk), chunk, [0] * len(chunk))


async def enqueue(cfg: Config, batch: bool) -> Result:
    """``n`` times ``Queries.enqueue("noop", payload)`` (one statement and transaction each); or ``bulk`` jobs by
    ``Queries.enqueue`` with lists of ``batch`` jobs each."""
    n = cfg.bulk if batch else cfg.n
    async with _fresh(cfg.dsn) as admin:
        conn = await asyncpg.connect(cfg.dsn)
        try:
            q, payloads = Queries(AsyncpgDriver(conn)), _payloads(n)
            await q.enqueue(ENTRYPOINT, b'{"i": -1}')  # the first call's statement preparation, as ours does
            async with measured(admin) as m:
                if batch:
                    await _enqueue_all(q, payloads, cfg.batch)
                else:
                    for p in payloads:
                        await q.enqueue(ENTRYPOINT, p)
        finally:
            await conn.close()
        res = m.fill(Result(IMPL, "enqueue", "batch" if batch else "single", n), n)
        stored = await _count(admin, "SELECT count(*) FROM {s}.pgqueuer WHERE status = 'queued'")
        res.check("jobs stored", stored, n + 1)
    return res


async def drain(cfg: Config, processes: int) -> Result:
    """``bulk`` no-op jobs enqueued first in lists of ``batch`` (not measured), then drained by ``processes``
    worker processes, each one ``QueueManager`` in drain mode."""
    n = cfg.bulk
    async with _fresh(cfg.dsn) as admin:
        await _enqueue_all(Queries(AsyncpgDriver(admin)), _payloads(n), cfg.batch)
        await admin.execute(f"VACUUM ANALYZE {SCHEMA}.pgqueuer, {SCHEMA}.pgqueuer_log")
        args = ["--dsn", cfg.dsn, "--schema", SCHEMA, "--concurrency", str(cfg.concurrency)]
        m, dones = await drain_processes("benchmarks.pgqueuer_peer", args, processes, admin, wait_s=60 + n / 200)
        res = m.fill(Result(IMPL, "drain", f"p{processes}", n), n)
        res.extra.update(version=VERSION, batch_size=cfg.concurrency // 2, max_concurrent_tasks=cfg.concurrency,
                         claimed_per_process=[d["claimed"] for d in dones])
        res.check("jobs run", sum(d["claimed"] for d in dones), n)
        res.check("jobs logged successful", await _count(
            admin, "SELECT count(*) FROM {s}.pgqueuer_log WHERE status = 'successful'"), n)
        res.check("distinct jobs logged successful", await _count(
            admin, "SELECT count(DISTINCT job_id) FROM {s}.pgqueuer_log WHERE status = 'successful'"), n)
        res.check("rows left in the queue", await _count(admin, "SELECT count(*) FROM {s}.pgqueuer"), 0)
    return res


async def _child(args: argparse.Namespace) -> None:
    _use(args.schema)
    conn = await asyncpg.connect(args.dsn)
    try:
        qm, ran = QueueManager(Queries(AsyncpgDriver(conn))), 0

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            nonlocal ran
            ran += 1
            json.loads(job.payload or b"null")  # as the floor's and ours' handlers get decoded data

        await ready()
        cpu0 = time.process_time()
        await qm.run(dequeue_timeout=timedelta(seconds=1), batch_size=args.concurrency // 2,
                     mode=QueueExecutionMode.drain, max_concurrent_tasks=args.concurrency)
        await done(ran, cpu0)
    finally:
        await conn.close()


if __name__ == "__main__":
    asyncio.run(_child(drain_worker_args("benchmarks.pgqueuer_peer")))
