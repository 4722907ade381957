"""Lease rescue and pruning. Safe to run on every worker at once: rows are taken with SKIP LOCKED."""

from __future__ import annotations

import random

import anyio
import asyncpg

from .executor import Executor
from .logs import get_logger
from .models import ClaimedJob, micros
from .queries import DB_ERRORS, Queries

log = get_logger("aiojobs_pg.maintenance")


class Maintenance:
    """Periodically rescues jobs whose lease expired and prunes old rows."""

    def __init__(self, pool: asyncpg.Pool, queries: Queries, executor: Executor, *, history: bool,
                 interval: float, history_retention: float | None, job_retention: float | None,
                 worker_retention: float, prune_every: int = 60, batch: int = 500) -> None:
        self.pool = pool
        self.queries = queries
        self.executor = executor
        self.history = history
        self.interval = interval
        self.history_retention = history_retention
        self.job_retention = job_retention
        self.worker_retention = worker_retention
        self.prune_every = prune_every
        self.batch = batch
        self.rescued = 0

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
                outcomes = []
                for row in rows:
                    job = ClaimedJob(
                        id=row["id"], token=row["token"], handler=row["handler"], data=None, queue="",
                        attempt=row["attempts"],
                        max_attempts=row["max_attempts"], timeout=None, schedule=row["schedule"],
                        timezone=row["timezone"], misfire=row["misfire"], overlap=row["overlap"],
                        scheduled_at=row["scheduled_at"], claimed_at=row["last_run_at"] or row["scheduled_at"],
                    )
                    error = f"worker lost: the lease of worker {row['worker_id']} expired before the job finished"
                    # The job did not fail, its worker did: it may run again at once, not after a backoff.
                    outcomes.append(self.executor.failure(job, micros(job.claimed_at), error,
                                                          worker_id=row["worker_id"], delay=0.0))
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
                if rounds % self.prune_every == 0:
                    await self.prune()
            except DB_ERRORS as exc:
                log.warning("maintenance_failed", error=repr(exc))
            rounds += 1
            # Jitter keeps many workers from hitting the table in step.
            await anyio.sleep(self.interval * random.uniform(0.8, 1.2))
