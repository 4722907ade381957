"""A demo App and a live view of its jobs: ``python -m aiojobs_pg demo``.

It enqueues one job of each kind (one-off, deferred, retried then successful,
failing for good, recurring) and a batch, runs a worker in the background and
shows the jobs' statuses: on a terminal one table redrawn in place, otherwise a
line for each change and the final table. It stops once every one-off job has
finished and the recurring one has run (or after ``duration``). Without a DSN the
App starts an embedded PostgreSQL under ``./.aiojobs_pg/``.

One demo runs in a schema at a time: it holds a session advisory lock on the
schema while it runs (released with its connection, even if the process is
killed), and a second one refuses to start, naming the way out (``--schema``),
rather than clearing the first one's jobs from under it.
"""

from __future__ import annotations

import random
import shutil
import signal
import sys
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import anyio

from ..app import App
from ..executor import Backoff, JobContext
from ..logs import configure_logging
from ..models import Job, JobStatus
from .apps import CommandError, describe_database
from .render import current_error, error_summary, render_table, runs_table, truncate

DEMO_SCHEMA = "aiojobs_pg_demo"
DEFAULT_DURATION = 60.0
#: seconds between two looks at the jobs
REFRESH = 0.5
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
    recurring: int

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
                    [j.id for j in batch], recurring.id)


async def fetch_jobs(app: App, ids: Sequence[int]) -> dict[int, Job]:
    """The current rows of these jobs, by id."""
    return {job.id: job for job in await app.queries.get_jobs(app.pool, ids)}


_FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


def settled(jobs: dict[int, Job], demo: DemoJobs) -> bool:
    """Nothing is left to happen but the recurring job's next ticks: every one-off job has finished
    (or is gone), and the recurring one has run and is not running."""
    recurring = jobs.get(demo.recurring)
    if recurring is not None and (recurring.last_run_at is None or recurring.status is JobStatus.RUNNING):
        return False
    return all(job.status in _FINISHED for i, job in jobs.items() if i != demo.recurring)


def _next_run(job: Job, now: datetime) -> str:
    if job.status is not JobStatus.PENDING:
        return "-"
    seconds = (job.next_run_at - now).total_seconds()
    return "due" if seconds <= 0 else f"in {seconds:.1f}s"


def _batch_line(jobs: dict[int, Job], demo: DemoJobs) -> str:
    counts = Counter(jobs[i].status.value for i in demo.batch if i in jobs)
    done = ", ".join(f"{counts[s.value]} {s.value}" for s in JobStatus if counts[s.value])
    return f"batch of {len(demo.batch)} x resize_image: {done or 'gone'}"


def status_table(jobs: dict[int, Job], demo: DemoJobs, now: datetime) -> str:
    """The one-off jobs one per row, each with its current error (if any) on a line below it, so
    that the table fits a narrow terminal; then the batch as one summary line."""
    headers = ["ID", "JOB", "STATUS", "ATTEMPTS", "NEXT RUN", "LAST RAN"]
    rows: list[list[str]] = []
    errors: list[str | None] = []
    for job_id in demo.singles:
        job = jobs.get(job_id)
        if job is None:
            rows.append([str(job_id), "?", "deleted", "-", "-", "-"])
            errors.append(None)
            continue
        ago = "-" if job.last_run_at is None else f"{max(0.0, (now - job.last_run_at).total_seconds()):.1f}s ago"
        rows.append([str(job.id), truncate(job.name or job.handler, 30), job.status.value,
                     f"{job.attempts}/{job.max_attempts}", _next_run(job, now), ago])
        error = current_error(job)
        errors.append(f"{' ' * (len(str(job.id)) + 2)}last error: {error_summary(error, 100)}" if error else None)
    header, rule, *lines = render_table(headers, rows, right=(0,)).splitlines()
    body = [line for row, error in zip(lines, errors, strict=True) for line in (row, error) if line is not None]
    return "\n".join([header, rule, *body, _batch_line(jobs, demo)])


@dataclass
class LiveView:
    """One table, redrawn in place on a terminal (ANSI: back to its first line, clear, draw)."""

    demo: DemoJobs
    out: TextIO = field(default_factory=lambda: sys.stdout)
    _drawn: int = 0

    def update(self, jobs: dict[int, Job], elapsed: float) -> None:
        """Replace the table drawn last with the jobs' current state."""
        width = shutil.get_terminal_size().columns
        text = f"t = {elapsed:4.1f} s\n{status_table(jobs, self.demo, datetime.now(UTC))}"
        # Lines cut to the terminal's width: a wrapped line would throw off the count of lines to go back.
        lines = [truncate(line, width - 1) for line in text.splitlines()]
        back = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
        self.out.write(back + "\n".join(lines) + "\n")
        self.out.flush()
        self._drawn = len(lines)

    def finish(self, jobs: dict[int, Job], elapsed: float) -> None:
        """The last state stays on screen as drawn."""


@dataclass
class LineView:
    """Where output is not a terminal: one line per change of a job, then the final table once."""

    demo: DemoJobs
    out: TextIO = field(default_factory=lambda: sys.stdout)
    _seen: dict[int, tuple[JobStatus, int, datetime | None]] = field(default_factory=dict)
    _batch: str = ""

    def update(self, jobs: dict[int, Job], elapsed: float) -> None:
        """Print what changed since the last look."""
        for job_id in self.demo.singles:
            job = jobs.get(job_id)
            if job is None:
                continue
            state = (job.status, job.attempts, job.last_run_at)  # a recurring job's tick changes only the last
            if self._seen.get(job_id) == state:
                continue
            self._seen[job_id] = state
            due = _next_run(job, datetime.now(UTC))
            when = f", next run {due}" if due.startswith("in ") else ""
            error = current_error(job) if job.status is not JobStatus.RUNNING else None
            detail = f": {error_summary(error, 60)}" if error else ""
            self.out.write(f"{elapsed:5.1f} s  job {job.id} {job.name or job.handler}: {job.status.value}{when} "
                           f"(attempt {job.attempts}/{job.max_attempts}){detail}\n")
        batch = _batch_line(jobs, self.demo)
        if batch != self._batch:
            self._batch = batch
            self.out.write(f"{elapsed:5.1f} s  {batch}\n")
        self.out.flush()

    def finish(self, jobs: dict[int, Job], elapsed: float) -> None:
        """The final state as one table."""
        self.out.write(f"\nat t = {elapsed:.1f} s:\n{status_table(jobs, self.demo, datetime.now(UTC))}\n")
        self.out.flush()


async def _show(app: App, demo: DemoJobs, duration: float, view: LiveView | LineView) -> str:
    """Show the jobs until nothing is left to happen or ``duration`` passed; returns why it stopped."""
    start = anyio.current_time()
    deadline = start + duration
    while True:
        jobs = await fetch_jobs(app, demo.all_ids)
        elapsed = anyio.current_time() - start
        view.update(jobs, elapsed)
        if settled(jobs, demo):
            view.finish(jobs, elapsed)
            return "every one-off job has finished and the recurring one has run"
        remaining = deadline - anyio.current_time()
        if remaining <= 0:
            view.finish(jobs, elapsed)
            return f"{duration:g} s have passed"
        await anyio.sleep(min(REFRESH, remaining))


async def _stop_on_interrupt(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            scope.cancel()
            return


async def _watch(app: App, demo: DemoJobs, duration: float, view: LiveView | LineView) -> str:
    reason = "interrupted"
    async with anyio.create_task_group() as tg:
        if threading.current_thread() is threading.main_thread():
            tg.start_soon(_stop_on_interrupt, tg.cancel_scope)
        reason = await _show(app, demo, duration, view)
        tg.cancel_scope.cancel()
    return reason


async def run_demo(dsn: str | None, schema: str | None, duration: float | None, *,
                   log_level: str | None = "WARNING", log_json: bool = False, live: bool = False) -> None:
    """Run the demo until every one-off job has finished (at most ``duration`` seconds, default 60) and
    print what happened; ``live`` redraws one table in place (for a terminal).

    ``log_level=None`` leaves logging as it is configured (the CLI sets it up itself). Raises
    :class:`~aiojobs_pg.cli.apps.CommandError` when another demo runs in the schema.
    """
    if log_level is not None:
        configure_logging(log_level, json=log_json)
    duration = DEFAULT_DURATION if duration is None else duration
    app = create_app(dsn, schema)
    where = describe_database(dsn)
    print(f"aiojobs_pg demo: schema {app.schema} in {where} (Ctrl-C stops)", flush=True)
    async with app, app.pool.acquire() as lock:
        # Held until the demo ends: a second demo must not clear this one's jobs from under it.
        if not await app.queries.demo_lock(lock):
            raise CommandError(f"another demo is running in schema {app.schema!r} of {where}: wait for it to "
                               f"end, or run this one in a schema of its own, e.g. --schema {app.schema}_2")
        cleared = await clear_demo_jobs(app)
        if cleared:
            print(f"cleared {cleared} job(s) of an earlier demo run", flush=True)
        demo = await enqueue_demo_jobs(app)
        print(f"enqueued {len(demo.all_ids)} jobs; starting a worker with 5 slots\n", flush=True)
        view = LiveView(demo) if live else LineView(demo)
        async with app.worker(concurrency=5):
            reason = await _watch(app, demo, duration, view)
        print(f"\nstopped: {reason}; the worker has drained.", flush=True)
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
        print(f"\nthe jobs stay in schema {app.schema}: python -m aiojobs_pg --schema {app.schema} jobs list"
              + (" --dsn DSN" if dsn else ""))
