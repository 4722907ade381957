"""Lease rescue and pruning, on every worker.

Rescue is safe on every worker at once: rows are taken with SKIP LOCKED. Pruning is done by one
worker at a time per schema, whichever holds a session advisory lock; the others skip their turn.
A round deletes batch after batch until nothing is left or its time budget is spent, so retention
keeps pace with the drain (docs/architecture.md, "Retention"). Through a pooler in transaction mode
(``xact_locks``), each batch takes the same lock for its own transaction instead (docs/pgbouncer.md).
"""

from __future__ import annotations

import contextlib
import random
import time
from typing import Any

import anyio

from .executor import next_run_after, now_us
from .logs import get_logger
from .models import JobStatus, Outcome, RunStatus, micros
from .queries import DB_ERRORS, Conn, ExpiredLease, Pool, Pruned, Queries, planned_once
from .signals import Signals

log = get_logger("aiojobs_pg.maintenance")


class Maintenance:
    """Periodically rescues jobs whose lease expired and prunes old rows.

    Every round rescues, then prunes if no other worker of the schema is pruning: history rows
    older than ``history_retention`` (completed jobs with them), the oldest completed jobs of
    each queue past ``keep_completed``, worker rows silent for ``worker_retention``; and every
    ``jobs_prune_every`` rounds, cancelled jobs older than ``job_retention``. A round deletes
    ``prune_batch`` rows per statement until nothing is left or ``prune_budget`` seconds (the
    interval by default) are spent; a round that is cut short goes on at the next.

    ``xact_locks``: the pool's sessions are not this worker's to keep (PgBouncer in transaction
    mode), so each batch runs in a transaction of its own that first takes the pruning lock for
    that transaction; a round stops when another session holds it.
    """

    def __init__(self, pool: Pool, queries: Queries, *, history: bool,
                 interval: float, history_retention: float | None, job_retention: float | None,
                 worker_retention: float, keep_completed: int | None = None, jobs_prune_every: int = 60,
                 batch: int = 500, prune_batch: int = 5000, prune_budget: float | None = None,
                 sweep_every: float = 3600.0, signals: Signals | None = None, xact_locks: bool = False) -> None:
        self.pool = pool
        self.xact_locks = xact_locks
        self.queries = queries
        self.history = history
        self.interval = interval
        self.history_retention = history_retention
        self.job_retention = job_retention
        self.worker_retention = worker_retention
        self.keep_completed = keep_completed
        self.jobs_prune_every = jobs_prune_every
        self.batch = batch
        self.prune_batch = prune_batch
        self.prune_budget = interval if prune_budget is None else prune_budget
        self.sweep_every = sweep_every
        self.rescued = 0
        #: rows deleted by this worker's pruning rounds, by kind
        self.pruned = Pruned()
        self.signals = signals or Signals()
        self._prune_rounds = 0
        self._next_sweep = 0.0  # the first round sweeps

    async def rescue(self) -> int:
        """Record a "worker lost" failed attempt for each expired lease and retry or fail the job.

        The rows are locked and completed in one transaction with the same fenced
        statement the completer uses, so a worker that comes back late is fenced off.
        """
        async def rescue_batch(conn: Conn) -> tuple[list[Outcome], set[int]]:
            outcomes = [lost_worker(row) for row in await self.queries.expired_leases(conn, self.batch)]
            return outcomes, (await self.queries.complete(conn, outcomes, history=self.history) if outcomes else set())

        total = 0
        while True:
            # planned as the worker's completions are (queries.planned_once)
            outcomes, applied = await planned_once(self.pool, rescue_batch)
            if not outcomes:
                return total
            for o in outcomes:
                if o.job_id in applied:
                    log.warning("job_rescued", job_id=o.job_id, attempt=o.attempt, worker_id=o.worker_id,
                                status=o.job_status.value)
            total += len(applied)
            self.rescued += len(applied)
            if len(outcomes) < self.batch:
                return total

    async def prune(self) -> Pruned | None:
        """One pruning round, unless another session of the schema is pruning (then None).

        The lock is a session advisory lock on one pool connection, held across the round's
        batches, each of which commits on its own; the pool's reset on release (or the end of the
        session) gives it back whatever happens.
        """
        async with self.pool.acquire() as conn:
            if self.xact_locks:
                return await self._prune_round(conn)
            if not await self.queries.prune_lock(conn):
                return None
            try:
                return await self._prune_round(conn)
            finally:
                with contextlib.suppress(*DB_ERRORS):
                    await self.queries.prune_unlock(conn)

    async def _prune_round(self, conn: Conn) -> Pruned | None:
        started = time.monotonic()
        # A sweep starts from the oldest row instead of where the last batch left off, once an hour
        # (and at a process's first round): it finds a row whose transaction committed after the
        # batches had passed its id, which only a retention shorter than that transaction allows.
        sweep = started >= self._next_sweep
        if sweep:
            self._next_sweep = started + self.sweep_every
        runs, keep = self.history_retention, self.keep_completed
        jobs = self.job_retention if self._prune_rounds % self.jobs_prune_every == 0 else None
        workers: float | None = self.worker_retention
        self._prune_rounds += 1
        total = Pruned()
        while True:
            if self.xact_locks:
                async with conn.transaction():
                    if not await self.queries.prune_xact_lock(conn):
                        # another session prunes: skip the turn (or leave the rest of the round to it)
                        if not (total.runs or total.completed or total.jobs):
                            return None
                        break
                    done = await self.queries.prune(conn, runs_older_than=runs, jobs_older_than=jobs,
                                                    workers_older_than=workers, keep_completed=keep,
                                                    batch=self.prune_batch, sweep=sweep)
            else:
                done = await self.queries.prune(conn, runs_older_than=runs, jobs_older_than=jobs,
                                                workers_older_than=workers, keep_completed=keep,
                                                batch=self.prune_batch, sweep=sweep)
            total.runs += done.runs
            total.completed += done.completed
            total.jobs += done.jobs
            total.more = done.more
            # Each kind goes on only while its last batch was full; the workers' rows once a round.
            sweep, workers = False, None
            runs = runs if done.runs == self.prune_batch else None
            keep = keep if done.completed else None
            jobs = jobs if done.jobs == self.prune_batch else None
            if not done.more or time.monotonic() - started >= self.prune_budget:
                break
        if self.xact_locks:
            async with conn.transaction():
                if await self.queries.prune_xact_lock(conn):
                    await self.queries.fold_counts(conn)
        else:
            await self.queries.fold_counts(conn)
        self.pruned.runs += total.runs
        self.pruned.completed += total.completed
        self.pruned.jobs += total.jobs
        if total.more:
            log.info("prune_behind", runs=total.runs, completed=total.completed, jobs=total.jobs,
                     seconds=round(time.monotonic() - started, 3))
        elif total.runs or total.completed or total.jobs:
            log.debug("pruned", runs=total.runs, completed=total.completed, jobs=total.jobs,
                      seconds=round(time.monotonic() - started, 3))
        return total

    async def run(self) -> None:
        """Loop forever; errors are logged and the next round tries again."""
        while True:
            try:
                await self.rescue()
                self.signals.emit("rescue")
                self.signals.emit("prune" if await self.prune() is not None else "prune_skipped")
            except DB_ERRORS as exc:
                log.warning("maintenance_failed", error=repr(exc))
            # Jitter keeps many workers from hitting the table in step.
            await anyio.sleep(self.interval * random.uniform(0.8, 1.2))


def lost_worker(row: ExpiredLease) -> Outcome:
    """The failed attempt of a job whose worker's lease expired (a row of ``expired_leases``).

    The job did not fail, its worker did: with attempts left it may run again at
    once, not after a backoff; on its last attempt it fails as any job would (a
    recurring job moves on to its next tick).
    """
    claimed_at = row.last_run_at or row.scheduled_at
    error = f"worker lost: the lease of worker {row.worker_id} expired before the job finished"

    def attempt(status: JobStatus, **then: Any) -> Outcome:
        return Outcome(row.id, row.attempts, row.token, status, RunStatus.FAILED, micros(claimed_at),
                       now_us(), row.worker_id, row.scheduled_at, error=error, **then)

    if row.attempts < row.max_attempts:
        return attempt(JobStatus.PENDING, delay=0.0)
    if row.schedule is not None:
        return attempt(JobStatus.PENDING, reset_attempts=True, next_run_at=next_run_after(
            row.schedule, row.timezone, tick=row.scheduled_at, claimed_at=claimed_at,
            misfire=row.misfire, overlap=row.overlap))
    return attempt(JobStatus.FAILED)
