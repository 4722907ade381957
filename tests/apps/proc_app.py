"""A tiny worker application for process-level tests (tests/integration/test_processes.py).

Run a worker with ``python -m tests.apps.proc_app --concurrency N [--queues q ...]``
from the repository root. Settings come from the environment, so that tests can
start workers on their own schema:

- ``AIOJOBS_PG_DSN`` / ``AIOJOBS_PG_SCHEMA``: read by :class:`App` itself;
- ``PROC_LEASE`` (2 s), ``PROC_DRAIN`` (30 s), ``PROC_POOL`` (10 connections).

Handlers (stable names, tests enqueue them by name):

- ``record``: writes a row to ``{schema}.ledger`` (created by the test) when it
  starts and stamps ``finished_at`` when it ends, so a run killed half-way shows
  as started but unfinished. Sleeps ``data["sleep"]`` seconds in between, or
  ``data["sleep_first_attempt"]`` seconds on attempt 1 only.
- ``sleepy``: sleeps ``data["sleep"]`` seconds.
- ``suicide``: kills its own worker process with ``os._exit(1)``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

import structlog

from aiojobs_pg import App, JobContext

app = App(
    lease=float(os.environ.get("PROC_LEASE", "2")),
    poll_interval=0.2,
    maintenance_interval=0.5,
    drain_timeout=float(os.environ.get("PROC_DRAIN", "30")),
    pool_max_size=int(os.environ.get("PROC_POOL", "10")),
)


@app.handler()
async def record(data: Any, ctx: JobContext) -> None:
    data = data or {}
    pid = os.getpid()
    # One connection per statement, released before sleeping: a sleeping job holds no connection.
    async with app.pool.acquire() as conn:
        await conn.execute(
            f"INSERT INTO {app.schema}.ledger (job_id, attempt, pid, started_at) "
            "VALUES ($1, $2, $3, clock_timestamp())",
            ctx.job_id, ctx.attempt, pid)
    delay = float(data.get("sleep", 0))
    if ctx.attempt == 1:
        delay = max(delay, float(data.get("sleep_first_attempt", 0)))
    if delay > 0:
        await asyncio.sleep(delay)
    async with app.pool.acquire() as conn:
        await conn.execute(
            f"UPDATE {app.schema}.ledger SET finished_at = clock_timestamp() "
            "WHERE job_id = $1 AND attempt = $2 AND pid = $3",
            ctx.job_id, ctx.attempt, pid)


@app.handler()
async def sleepy(data: Any) -> None:
    await asyncio.sleep(float(data["sleep"]))


@app.handler()
async def suicide(data: Any) -> None:
    os._exit(1)


def _configure_logging() -> None:
    structlog.configure(
        # INFO: tests read "signal_received" to know the worker has stopped claiming.
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        cache_logger_on_first_use=True,
    )


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.apps.proc_app")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--queues", nargs="*", default=None)
    args = parser.parse_args(argv)
    _configure_logging()
    async with app:
        # Signals: the first SIGTERM/SIGINT drains, a second one stops at once.
        await app.run_worker(concurrency=args.concurrency, queues=args.queues or None)


if __name__ == "__main__":
    asyncio.run(main())
