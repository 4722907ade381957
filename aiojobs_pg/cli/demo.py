"""A demo App and a live view of its jobs: ``python -m aiojobs_pg demo``.

It enqueues one job of each kind (one-off, deferred, retried then successful,
failing for good, recurring) and a batch, runs a worker in the background and
prints the jobs' statuses every second. Without a DSN the App starts an
embedded PostgreSQL under ``./.aiojobs_pg/``.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import anyio

from ..app import App
from ..executor import Backoff, JobContext
from ..logs import configure_logging
from ..models import Job, JobStatus
from .render import error_summary, render_table, runs_table, truncate

DEMO_SCHEMA = "aiojobs_pg_demo"
DEFAULT_DURATION = 20.0
BATCH_SIZE = 20

HANDLERS = ("send_email", "sync_inventory", "charge_card", "cleanup_sessions", "resize_image")


def create_app(dsn: str | None = None, schema: str | None = None) -> App:
    """The demo App: short backoff and polls so that a person sees things move."""
    app = App(dsn, schema=schema or DEMO_SCHEMA, backoff=Backoff(base=1, factor=2, cap=5),
              poll_interval=0.5, drain_timeout=5, maintenance_interval=2)

    @app.handler()
    async def send_email(data: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(0.3)
        return {"delivered_to": data["to"]}

    @app.handler()
    async def sync_inventory(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        await anyio.sleep(0.2)
        if ctx.attempt <= 2:
            raise ConnectionError(f"inventory service unavailable (attempt {ctx.attempt})")
        return {"synced": data["items"], "on_attempt": ctx.attempt}

    @app.handler()
    async def charge_card(data: dict[str, Any]) -> None:
        await anyio.sleep(0.1)
        raise ValueError(f"card ending {data['card'][-4:]} declined")

    @app.handler()
    async def cleanup_sessions(data: Any) -> dict[str, int]:
        await anyio.sleep(0.1)
        return {"removed": random.randint(0, 9)}

    @app.handler()
    async def resize_image(data: dict[str, Any]) -> dict[str, Any]:
        await anyio.sleep(random.uniform(0.2, 1.0))
        return {"image": data["image"], "size": "256x256"}

    return app


@dataclass
class DemoJobs:
    """Ids of what the demo enqueued."""

    singles: list[int]
    retrying: int
    batch: list[int]

    @property
    def all_ids(self) -> list[int]:
        return [*self.singles, *self.batch]


async def clear_demo_jobs(app: App) -> int:
    """Delete jobs (and their history) left by earlier demo runs; returns how many."""
    return await app.queries.delete_handler_jobs(app.pool, list(HANDLERS))


async def enqueue_demo_jobs(app: App) -> DemoJobs:
    """One job of each kind, and a batch of ``BATCH_SIZE``."""
    one_off = await app.enqueue("send_email", {"to": "ada@example.com"}, name="welcome email")
    deferred = await app.enqueue("send_email", {"to": "alan@example.com"}, name="reminder (in 5 s)", delay=5)
    retrying = await app.enqueue("sync_inventory", {"items": 42}, name="inventory sync (fails twice)",
                                 max_attempts=5)
    failing = await app.enqueue("charge_card", {"card": "4000000000000002"}, name="charge card (always fails)",
                                max_attempts=2)
    recurring = await app.enqueue("cleanup_sessions", name="cleanup (every 3 s)", schedule="3s")
    batch = await app.enqueue_many([
        {"handler": "resize_image", "data": {"image": f"img_{i:02d}.png"}, "name": f"resize img_{i:02d}"}
        for i in range(BATCH_SIZE)
    ])
    return DemoJobs([one_off.id, deferred.id, retrying.id, failing.id, recurring.id], retrying.id,
                    [j.id for j in batch])


async def fetch_jobs(app: App, ids: Sequence[int]) -> dict[int, Job]:
    """The current rows of these jobs, by id."""
    rows = await app.queries.get_jobs(app.pool, ids)
    return {r["id"]: Job.from_record(r) for r in rows}


def _next_run(job: Job, now: datetime) -> str:
    if job.status is not JobStatus.PENDING:
        return "-"
    seconds = (job.next_run_at - now).total_seconds()
    return "due" if seconds <= 0 else f"{seconds:.1f}"


def status_table(jobs: dict[int, Job], demo: DemoJobs, now: datetime) -> str:
    """The one-off jobs one per row, then the batch as one summary line."""
    headers = ["ID", "JOB", "STATUS", "ATTEMPTS", "NEXT RUN IN (S)", "LAST RAN (S AGO)", "LAST ERROR"]
    rows = []
    for job_id in demo.singles:
        job = jobs.get(job_id)
        if job is None:
            rows.append([str(job_id), "?", "deleted", "-", "-", "-", "-"])
            continue
        ago = "-" if job.last_run_at is None else f"{max(0.0, (now - job.last_run_at).total_seconds()):.1f}"
        rows.append([str(job.id), truncate(job.name or job.handler, 30), job.status.value,
                     f"{job.attempts}/{job.max_attempts}", _next_run(job, now), ago,
                     error_summary(job.last_error, 50)])
    table = render_table(headers, rows, right=(0, 4, 5))
    counts = Counter(jobs[i].status.value for i in demo.batch if i in jobs)
    done = ", ".join(f"{counts[s.value]} {s.value}" for s in JobStatus if counts[s.value])
    return f"{table}\nbatch of {len(demo.batch)} x resize_image: {done or 'gone'}"


async def _show(app: App, demo: DemoJobs, duration: float) -> None:
    start = anyio.current_time()
    deadline = start + duration
    while True:
        now = anyio.current_time()
        jobs = await fetch_jobs(app, demo.all_ids)
        print(f"\n--- t = {now - start:4.1f} s ---\n{status_table(jobs, demo, datetime.now(UTC))}", flush=True)
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            return
        await anyio.sleep(min(1.0, remaining))


async def _stop_on_interrupt(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("\nstopping early …", flush=True)
            scope.cancel()
            return


async def _watch(app: App, demo: DemoJobs, duration: float) -> None:
    async with anyio.create_task_group() as tg:
        if threading.current_thread() is threading.main_thread():
            tg.start_soon(_stop_on_interrupt, tg.cancel_scope)
        await _show(app, demo, duration)
        tg.cancel_scope.cancel()


def _where(dsn: str | None) -> str:
    if dsn:
        return "the database given with --dsn"
    for var in ("AIOJOBS_PG_DSN", "DATABASE_URL"):
        if os.environ.get(var):
            return f"the database in ${var}"
    return "an embedded PostgreSQL under ./.aiojobs_pg/"


async def run_demo(dsn: str | None, schema: str | None, duration: float | None, *,
                   log_level: str | None = "INFO", log_json: bool = False) -> None:
    """Run the demo for ``duration`` seconds (default 20) and print what happened.

    ``log_level=None`` leaves logging as it is configured (the CLI sets it up itself).
    """
    if log_level is not None:
        configure_logging(log_level, json=log_json)
    duration = DEFAULT_DURATION if duration is None else duration
    app = create_app(dsn, schema)
    print(f"aiojobs_pg demo: schema {app.schema} in {_where(dsn)}; running for {duration:g} s (Ctrl-C stops)",
          flush=True)
    async with app:
        cleared = await clear_demo_jobs(app)
        if cleared:
            print(f"cleared {cleared} job(s) of an earlier demo run", flush=True)
        demo = await enqueue_demo_jobs(app)
        print(f"enqueued {len(demo.all_ids)} jobs; starting a worker with 5 slots", flush=True)
        async with app.worker(concurrency=5):
            await _watch(app, demo, duration)
        print("\nworker stopped.", flush=True)
        jobs = await fetch_jobs(app, demo.all_ids)
        print("\nsummary:")
        by_status: dict[str, list[Job]] = {}
        for job in jobs.values():
            by_status.setdefault(job.status.value, []).append(job)
        for status in JobStatus:
            group = by_status.get(status.value, [])
            if group:
                names = Counter(j.handler for j in group)
                detail = ", ".join(f"{n} x {h}" if n > 1 else h for h, n in names.items())
                print(f"  {status.value:<10} {len(group):>3}  ({detail})")
        runs = await app.job_history(demo.retrying)
        retrying = jobs.get(demo.retrying)
        state = retrying.status.value if retrying else "deleted"
        print(f"\nhistory of job {demo.retrying} (inventory sync, fails twice then succeeds; now {state}):")
        print(runs_table(runs) if runs else "  no runs yet")
