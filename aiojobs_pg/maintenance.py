"""Lease rescue and pruning. Safe to run on every worker at once: rows are taken with SKIP LOCKED."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

import anyio

from .executor import next_run_after, now_us
from .logs import get_logger
from .models import JobStatus, Outcome, RunStatus, micros
from .queries import DB_ERRORS, Pool, Queries
from .signals import Signals

log = get_logger("aiojobs_pg.maintenance")


class Maintenance:
    """Periodically rescues jobs whose lease expired and prunes old rows."""

    def __init__(self, pool: Pool, queries: Queries, *, history: bool,
                 interval: float, history_retention: float | None, job_retention: float | None,
                 worker_retention: float, prune_every: int = 60, batch: int = 500,
                 signals: Signals | None = None) -> None:
        self.pool = pool
        self.queries = queries
        self.history = history
        self.interval = interval
        self.history_retention = history_retention
        self.job_retention = job_retention
        self.worker_retention = worker_retention
        self.prune_every = prune_every
        self.batch = batch
        self.rescued = 0
        self.signals = signals or Signals()

    async def rescue(self) -> int:
        """Record a "worker lost" failed attempt for each expired lease and retry or fail the job.

        The rows are locked and completed in one transaction with the same fenced
        statement the completer uses, so a worker that comes back late is fenced off.
        """
        total = 0
        while True:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await self.queries.expired_leases(conn, self.batch)
                if not rows:
                    return total
                outcomes = [lost_worker(row) for row in rows]
                applied = await self.queries.complete(conn, outcomes, history=self.history)
            for o in outcomes:
                if o.job_id in applied:
                    log.warning("job_rescued", job_id=o.job_id, attempt=o.attempt, worker_id=o.worker_id,
                                status=o.job_status.value)
            total += len(applied)
            self.rescued += len(applied)
            if len(rows) < self.batch:
                return total

    async def prune(self) -> None:
        """Delete history, finished one-off jobs and worker rows past their retention."""
        await self.queries.prune(self.pool, runs_older_than=self.history_retention,
                                 jobs_older_than=self.job_retention, workers_older_than=self.worker_retention)

    async def run(self) -> None:
        """Loop forever; errors are logged and the next round tries again."""
        rounds = 0
        while True:
            try:
                await self.rescue()
                self.signals.emit("rescue")
                if rounds % self.prune_every == 0:
                    await self.prune()
                    self.signals.emit("prune")
            except DB_ERRORS as exc:
                log.warning("maintenance_failed", error=repr(exc))
            rounds += 1
            # Jitter keeps many workers from hitting the table in step.
            await anyio.sleep(self.interval * random.uniform(0.8, 1.2))


def lost_worker(row: Mapping[str, Any]) -> Outcome:
    """The failed attempt of a job whose worker's lease expired (a row of ``expired_leases``).

    The job did not fail, its worker did: with attempts left it may run again at
    once, not after a backoff; on its last attempt it fails as any job would (a
    recurring job moves on to its next tick).
    """
    claimed_at = row["last_run_at"] or row["scheduled_at"]
    error = f"worker lost: the lease of worker {row['worker_id']} expired before the job finished"

    def attempt(status: JobStatus, **then: Any) -> Outcome:
        return Outcome(row["id"], row["attempts"], row["token"], status, RunStatus.FAILED, micros(claimed_at),
                       now_us(), row["worker_id"], row["scheduled_at"], error=error, **then)

    if row["attempts"] < row["max_attempts"]:
        return attempt(JobStatus.PENDING, delay=0.0)
    if row["schedule"] is not None:
        return attempt(JobStatus.PENDING, reset_attempts=True, next_run_at=next_run_after(
            row["schedule"], row["timezone"], tick=row["scheduled_at"], claimed_at=claimed_at,
            misfire=row["misfire"], overlap=row["overlap"]))
    return attempt(JobStatus.FAILED)
