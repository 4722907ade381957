"""A worker application with recurring jobs, for process-level schedule tests.

``python -m tests.apps.sched_app`` runs one worker (concurrency 5) until SIGTERM;
``AIOJOBS_PG_DSN`` / ``AIOJOBS_PG_SCHEMA`` choose the database. Declares two
schedules: ``every-second`` (interval ``1s``) and ``cron-second``
(``*/1 * * * * *``), both running ``tick``; the test enqueues ``slow_tick`` itself.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import structlog

from aiojobs_pg import App, JobContext

app = App(lease=2, poll_interval=0.2, maintenance_interval=0.5)


@app.periodic("1s", name="every-second")
async def tick(data: Any, ctx: JobContext) -> str:
    return ctx.worker_id


@app.periodic("*/1 * * * * *", name="cron-second")
async def cron_tick(data: Any, ctx: JobContext) -> str:
    return ctx.worker_id


@app.handler()
async def slow_tick(data: Any, ctx: JobContext) -> int:
    if ctx.attempt == 1:
        await asyncio.sleep(60)
    return ctx.attempt


async def main() -> None:
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    async with app:
        await app.run_worker(concurrency=5)


if __name__ == "__main__":
    asyncio.run(main())
