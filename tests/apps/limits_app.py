"""Worker processes for the fleet-wide limits tests (tests/integration/test_limits.py).

``python -m tests.apps.limits_app --concurrency N [--queues q ...]`` from the repository root, with
``AIOJOBS_PG_DSN`` and ``AIOJOBS_PG_SCHEMA`` set. Every handler writes its run to
``{schema}.ledger`` (created by the test): when its claim started it (``claimed_at``, the job's
``last_run_at``, which the claim sets to the time its limits were read), when the handler started
and when it finished, so that the test can count overlaps and starts per window.

- ``limited``: at most 2 at once per concurrency key (per handler for a job without one);
- ``rated``: at most 5 starts in any window of a second;
- ``free``: no limit of its own (a queue's limits apply: ``App.set_queue``).

Each sleeps ``data["sleep"]`` seconds (0.05 by default).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any

import structlog

from aiojobs_pg import App, JobContext

app = App(lease=5, poll_interval=0.05, maintenance_interval=0.5, pool_max_size=8)


async def _record(data: Any, ctx: JobContext) -> None:
    # Started and finished are stamped by the database's clock, as the claim's time is.
    async with app.pool.acquire() as conn:
        ledger_id = await conn.fetchval(
            f"INSERT INTO {app.schema}.ledger (job_id, handler, queue, ckey, pid, claimed_at, started_at) "
            f"SELECT id, handler, queue, concurrency_key, $2, last_run_at, clock_timestamp() "
            f"FROM {app.schema}.jobs WHERE id = $1 RETURNING id", ctx.job_id, os.getpid())
    await asyncio.sleep(float((data or {}).get("sleep", 0.05)))
    async with app.pool.acquire() as conn:
        await conn.execute(f"UPDATE {app.schema}.ledger SET finished_at = clock_timestamp() WHERE id = $1", ledger_id)


@app.handler(concurrency_limit=2)
async def limited(data: Any, ctx: JobContext) -> None:
    await _record(data, ctx)


@app.handler(rate_limit="5/1s")
async def rated(data: Any, ctx: JobContext) -> None:
    await _record(data, ctx)


@app.handler()
async def free(data: Any, ctx: JobContext) -> None:
    await _record(data, ctx)


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.apps.limits_app")
    parser.add_argument("--concurrency", type=int, default=5)
    parser.add_argument("--queues", nargs="*", default=None)
    args = parser.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
                        cache_logger_on_first_use=True)
    async with app:
        await app.run_worker(concurrency=args.concurrency, queues=args.queues or None)


if __name__ == "__main__":
    asyncio.run(main())
