"""Management operations shared by the Python API, the CLI and the HTTP API.

Every status change here is one guarded ``UPDATE … WHERE status IN (…)``; when
it matches nothing, a read tells "no such job" from "wrong status".
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from . import webhooks
from .errors import JobNotFound, JobStateError, ValidationError, WebhookNotFound
from .models import DEFAULT_MAX_DATA_BYTES, Job, JobStatus, Run, RunStatus, dump_json
from .queries import DB, Queries, QueueRow, UniqueViolation, guarded
from .schedules import parse_duration, parse_schedule
from .validation import (
    MAX_ATTEMPTS,
    MAX_NAME_LENGTH,
    MAX_QUEUE_LENGTH,
    Duration,
    RateLimit,
    check_concurrency_limit,
    check_int,
    check_run_at,
    check_text,
    parse_rate_limit,
)
from .webhooks import Webhook

MAX_PAGE = 1000
#: the longest window :meth:`Admin.throughput` counts, in minutes (a day)
MAX_THROUGHPUT_MINUTES = 1440
_RUN_STATUSES = tuple(s.value for s in RunStatus)


class Unset(enum.Enum):
    """The type of :data:`UNSET`, in the signatures of :meth:`Admin.update_job` and :meth:`App.update_job`."""

    UNSET = enum.auto()


#: marks an argument that was not given (``None`` is a value: it clears the field)
UNSET = Unset.UNSET


@dataclass(frozen=True)
class Page:
    """One page of jobs; pass ``next_cursor`` back to get the next page (None at the end)."""

    jobs: list[Job]
    next_cursor: int | None


@dataclass(frozen=True)
class QueueSettings:
    """What every worker obeys for one queue (``App.set_queue``, ``App.pause_queue``): kept in the database."""

    queue: str
    paused: bool = False
    #: at most this many of its jobs run at once, fleet-wide (None: no limit)
    concurrency_limit: int | None = None
    #: at most so many of its jobs start in any window of the period (None: no limit)
    rate_limit: RateLimit | None = None

    @classmethod
    def from_record(cls, row: QueueRow) -> QueueSettings:
        """From a row of ``Queries.queue_settings``."""
        rate = row.rate_limit
        return cls(row.name, bool(row.paused), row.concurrency_limit,
                   None if rate is None or row.rate_period is None else RateLimit(rate, row.rate_period))


def _status(value: str | JobStatus | None) -> str | None:
    if value is None:
        return None
    try:
        return JobStatus(value).value
    except ValueError:
        allowed = ", ".join(s.value for s in JobStatus)
        raise ValidationError("status", f"unknown status {value!r}; expected one of {allowed}") from None


def _job_id(value: object) -> int:
    return check_int(value, "job_id", minimum=1, maximum=2**63 - 1)


class Admin:
    """Job management over one pool (or connection).

    ``max_data_bytes`` bounds the JSON encoding of the data :meth:`update_job` stores
    (``None``: no limit); :meth:`App.admin <aiojobs_pg.App.admin>` passes the app's setting.

    Every method raises :class:`~aiojobs_pg.errors.DatabaseUnavailable` when the database
    cannot be reached or the connection is lost. Over a pool, a read is first tried again on a
    fresh connection, and so is a write that the lost connection never sent.
    """

    def __init__(self, db: DB, queries: Queries, *, max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> None:
        # Outages surface as DatabaseUnavailable, and a lost connection never serves again (queries.GuardedDB).
        self.db: DB = guarded(db, queries)
        self.q = queries
        self.max_data_bytes = max_data_bytes

    async def get_job(self, job_id: int) -> Job:
        """The job with this id; :class:`JobNotFound` if there is none."""
        job = await self.q.get_job(self.db, _job_id(job_id))
        if job is None:
            raise JobNotFound(job_id)
        return job

    async def list_jobs(self, *, status: str | JobStatus | None = None, queue: str | None = None,
                        handler: str | None = None, limit: int = 100, cursor: int | None = None,
                        data: dict[str, Any] | None = None) -> Page:
        """Jobs newest first, filtered; keyset pagination through ``cursor``.

        ``data``: only jobs whose data contains this object (PostgreSQL's ``jsonb @>``: ``{"user": 7}``
        matches ``{"user": 7, "plan": "pro"}``). Like the queue and handler filters it is checked row by
        row (no index), so a rare value reads much of the history to fill a page.
        """
        check_int(limit, "limit", minimum=1, maximum=MAX_PAGE)
        if cursor is not None:
            check_int(cursor, "cursor", minimum=1, maximum=2**63 - 1)
        check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH, required=False)
        check_text(handler, "handler", max_length=MAX_NAME_LENGTH, required=False)
        if data is not None and not isinstance(data, dict):
            raise ValidationError("data", f"must be a JSON object to match jobs' data against, got "
                                          f"{type(data).__name__}")
        contains = None if data is None else dump_json(data, "data", self.max_data_bytes)
        rows = await self.q.list_jobs(self.db, status=_status(status), queue=queue, handler=handler,
                                      before_id=cursor, limit=limit + 1, data=contains)
        jobs = rows[:limit]
        return Page(jobs, jobs[-1].id if len(rows) > limit else None)

    async def update_job(
        self,
        job_id: int,
        *,
        name: str | Unset | None = UNSET,
        data: Any = UNSET,
        priority: int | Unset = UNSET,
        max_attempts: int | Unset = UNSET,
        queue: str | Unset = UNSET,
        run_at: datetime | Unset = UNSET,
        schedule: str | Unset | None = UNSET,
        timezone: str | Unset | None = UNSET,
        timeout: Duration | Unset | None = UNSET,
    ) -> Job:
        """Change fields of a job (any status but completed; the status itself is not touched).

        ``schedule=None`` makes a recurring job one-off; a new schedule is
        validated first and, unless ``run_at`` is given, moves ``next_run_at`` to
        its first tick from now. A completed one-off job is part of the history
        and stays as it ran (:class:`JobStateError`); ``trigger`` runs it again.
        ``data`` over ``max_data_bytes`` raises :class:`~aiojobs_pg.errors.DataTooLarge`.
        """
        changes: dict[str, Any] = {}  # column -> its new value: only what this update sets
        if not isinstance(name, Unset):
            changes["name"] = check_text(name, "name", max_length=MAX_NAME_LENGTH, required=False)
        if data is not UNSET:
            changes["data"] = dump_json(data, "data", self.max_data_bytes)
        if not isinstance(priority, Unset):
            changes["priority"] = check_int(priority, "priority", minimum=-(2**31))
        if not isinstance(max_attempts, Unset):
            changes["max_attempts"] = check_int(max_attempts, "max_attempts", minimum=1, maximum=MAX_ATTEMPTS)
        if not isinstance(queue, Unset):
            changes["queue"] = check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH)
        when = None if isinstance(run_at, Unset) else check_run_at(run_at)
        if not (isinstance(schedule, Unset) and isinstance(timezone, Unset)):
            current = await self.get_job(job_id)
            expr = current.schedule if isinstance(schedule, Unset) else schedule
            tz = current.timezone if isinstance(timezone, Unset) else timezone
            changes["schedule"] = changes["timezone"] = None
            if expr is not None:
                check_text(expr, "schedule", max_length=200)
                parsed = parse_schedule(expr, tz)
                changes["schedule"], changes["timezone"] = parsed.expr, parsed.timezone
                if when is None:
                    when = parsed.next_after(datetime.now(UTC))
            elif tz is not None and not isinstance(timezone, Unset):
                raise ValidationError("timezone", "only applies to a job with a schedule")
        if not isinstance(timeout, Unset):
            changes["timeout"] = (None if timeout is None
                                  else parse_duration(timeout, field="timeout", allow_zero=False).total_seconds())
        if when is not None:
            changes["next_run_at"] = when
        updated = await self.q.update_job(self.db, _job_id(job_id), changes)
        if updated is None:
            job = await self.get_job(job_id)  # JobNotFound, or a completed job, which lives in the history
            raise JobStateError(job_id, job.status.value, "update",
                                "it completed, and a completed job stays as it ran; trigger it to run it again")
        return updated

    async def delete_job(self, job_id: int) -> None:
        """Delete a job and its history. A running handler is stopped at its next lease renewal."""
        job_id = _job_id(job_id)
        # A live job that others wait for is cancelled first, so they follow it (-1); a second try also sees
        # a history row written while the first ran (the job completing meanwhile).
        for _ in range(3):
            deleted = await self.q.delete_job(self.db, job_id)
            if deleted > 0:
                return
        raise JobNotFound(job_id)

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending or running job (a recurring job is paused; ``retry`` resumes it)."""
        job = await self.q.cancel_job(self.db, _job_id(job_id))
        return await self._changed_or_raise(job, job_id, "cancel")

    async def retry(self, job_id: int, *, run_at: datetime | None = None) -> Job:
        """Re-queue a failed or cancelled job with a fresh attempt count.

        A recurring job resumes at its next tick (``trigger`` runs it now).
        """
        when = None if run_at is None else check_run_at(run_at)
        if when is None:
            job = await self.get_job(job_id)
            if job.schedule is not None:
                when = parse_schedule(job.schedule, job.timezone).next_after(datetime.now(UTC))
        return await self._requeue(job_id, [JobStatus.FAILED, JobStatus.CANCELLED], when, "retry")

    async def trigger(self, job_id: int) -> Job:
        """Run a job now: a pending job becomes due now; a finished one is re-queued to run now.

        A completed one-off job comes back from the history under its own id, with a fresh
        attempt count; the history of its earlier runs stays.
        """
        # A waiting job runs when its parents completed: cancel it, or wait.
        return await self._requeue(job_id, [s for s in JobStatus if s not in (JobStatus.RUNNING, JobStatus.WAITING)],
                                   None, "trigger")

    async def history(self, job_id: int, *, limit: int = 1000) -> list[Run]:
        """The job's runs, oldest first (empty when history is off)."""
        await self.get_job(job_id)
        return await self.q.job_runs(self.db, job_id, check_int(limit, "limit", minimum=1, maximum=100_000))

    async def recurring(self) -> list[Job]:
        """Every job with a schedule, soonest first."""
        return await self.q.recurring_jobs(self.db)

    async def throughput(self, minutes: int = 60) -> tuple[datetime, list[dict[str, Any]]]:
        """Recorded runs per minute and status over the last ``minutes`` minutes (1 to
        :data:`MAX_THROUGHPUT_MINUTES`, the current minute included): the server's current minute, and one
        ``{"minute", "completed", "failed", "cancelled", "released"}`` per minute, oldest first, zeros
        included. "failed" counts failed attempts, retried or not. One statement; it scans the history
        (no index on completion times), so it costs what the history holds."""
        check_int(minutes, "minutes", minimum=1, maximum=MAX_THROUGHPUT_MINUTES)
        rows = await self.q.throughput(self.db, minutes)
        now = rows[0].now_minute
        start = now - timedelta(minutes=minutes - 1)
        buckets = {start + timedelta(minutes=i): dict.fromkeys(_RUN_STATUSES, 0) for i in range(minutes)}
        for row in rows:
            bucket = None if row.minute is None else buckets.get(row.minute)
            # a worker clock ahead of the server's is left out
            if bucket is not None and row.status in bucket and row.n is not None:
                bucket[row.status] = row.n
        return now, [{"minute": minute, **counts} for minute, counts in buckets.items()]

    async def queue_stats(self) -> list[dict[str, Any]]:
        """Counts per queue and status, and the oldest due pending job per queue."""
        return [asdict(r) for r in await self.q.queue_stats(self.db)]

    async def workers(self) -> list[dict[str, Any]]:
        """Registered workers (all hosts): queues, handlers, last heartbeat, and whether it is ``alive``
        (its heartbeat is younger than its lease)."""
        return [asdict(r) for r in await self.q.list_workers(self.db)]

    # --- bulk actions ---
    async def retry_failed(self, *, queue: str | None = None, handler: str | None = None) -> int:
        """Re-queue every failed job (of ``queue`` and/or ``handler``), due now, with a fresh attempt
        count; returns how many. Of failed jobs sharing a dedup key only the newest comes back, and
        none while a live job holds the key. One statement."""
        return await self.q.retry_failed(self.db, *_filters(queue, handler))

    async def cancel_pending(self, *, queue: str | None = None, handler: str | None = None) -> int:
        """Cancel every pending job (of ``queue`` and/or ``handler``; recurring ones are paused);
        returns how many. Running jobs are left alone. One statement."""
        return await self.q.cancel_pending(self.db, *_filters(queue, handler))

    async def delete_finished(self, older_than: Duration, *, queue: str | None = None,
                              handler: str | None = None) -> int:
        """Delete the completed, failed and cancelled one-off jobs (of ``queue`` and/or ``handler``)
        that finished more than ``older_than`` ago, with their history; returns how many jobs.
        One statement."""
        seconds = parse_duration(older_than, field="older_than").total_seconds()
        return await self.q.delete_finished(self.db, *_filters(queue, handler), seconds)

    async def pause_queue(self, queue: str) -> None:
        """Stop every worker, on every host, from claiming jobs of ``queue``; running ones finish.

        Kept in the database: it outlasts restarts until :meth:`resume_queue`.
        """
        check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH)
        await self.q.set_queue_paused(self.db, queue, True)

    async def resume_queue(self, queue: str) -> None:
        """Let workers claim jobs of ``queue`` again (idle ones are woken at once)."""
        check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH)
        await self.q.set_queue_paused(self.db, queue, False)

    async def set_queue(self, queue: str, *, concurrency_limit: int | Unset | None = UNSET,
                        rate_limit: str | RateLimit | Unset | None = UNSET) -> QueueSettings:
        """Set (or with None, remove) ``queue``'s concurrency and rate limits; an argument left out is kept.

        Every worker of the queue is told at once (docs/limits.md). Returns the queue's settings.
        """
        check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH)
        concurrency = None if isinstance(concurrency_limit, Unset) or concurrency_limit is None else \
            check_concurrency_limit(concurrency_limit)
        rate = None if isinstance(rate_limit, Unset) or rate_limit is None else parse_rate_limit(rate_limit)
        row = await self.q.set_queue_limits(
            self.db, queue, concurrency=concurrency, set_concurrency=not isinstance(concurrency_limit, Unset),
            rate=None if rate is None else (rate.count, rate.period), set_rate=not isinstance(rate_limit, Unset))
        return QueueSettings.from_record(row)

    async def queue_settings(self) -> dict[str, QueueSettings]:
        """Every queue with settings of its own (paused, or with limits), by name."""
        return {r.name: QueueSettings.from_record(r) for r in await self.q.queue_settings(self.db)}

    async def paused_queues(self) -> list[str]:
        """The queues paused now, by name."""
        return [r.name for r in await self.q.queue_settings(self.db) if r.paused]

    async def served(self) -> frozenset[tuple[str, str]]:
        """Every (queue, handler) that some live worker serves: a pending job outside it waits for one."""
        return frozenset((q, h) for w in await self.q.list_workers(self.db) if w.alive
                         for q in w.queues or () for h in w.handlers)

    async def unserved(self) -> dict[tuple[str, str], int]:
        """Pending jobs no live worker can run, counted by (queue, handler): no worker alive serves
        that queue with that handler (another service's, or one not deployed yet). They wait, with
        no attempt spent, until such a worker starts."""
        return {(r.queue, r.handler): r.count for r in await self.q.unserved(self.db)}

    # --- webhooks (webhooks.py, docs/webhooks.md) ---
    async def add_webhook(self, url: str, events: Sequence[str], *, secret: str | None = None,
                          handlers: Sequence[str] | None = None, queues: Sequence[str] | None = None,
                          max_attempts: int = 8, description: str | None = None) -> Webhook:
        """Register ``url`` for these ``events`` (of these ``handlers`` and ``queues`` only, when given),
        for every worker of the schema. Returns the webhook with its ``secret`` (one is made when none is
        given: keep it, no read returns it again). Each delivery gets ``max_attempts`` attempts."""
        new = webhooks.prepare(url, events, secret=secret, handlers=handlers, queues=queues,
                               max_attempts=max_attempts, description=description)
        row = await self.q.add_webhook(self.db, new.url, new.events, new.handlers, new.queues, new.secret,
                                       new.max_attempts, new.description)
        return replace(row, secret=new.secret)

    async def webhooks(self) -> list[Webhook]:
        """Every webhook, oldest first (without secrets)."""
        return await self.q.list_webhooks(self.db)

    async def remove_webhook(self, webhook_id: int) -> None:
        """Stop reporting to a webhook (:class:`WebhookNotFound` if none has this id). Its deliveries not
        yet sent are cancelled when their turn comes."""
        if not await self.q.remove_webhook(self.db, webhooks.webhook_id(webhook_id)):
            raise WebhookNotFound(webhook_id)

    async def _requeue(self, job_id: int, allowed: list[JobStatus], run_at: datetime | None,
                       operation: str) -> Job:
        try:
            requeued = await self.q.requeue_job(self.db, _job_id(job_id), [s.value for s in allowed], run_at)
            if requeued is None and JobStatus.COMPLETED in allowed:
                requeued = await self.q.restore_job(self.db, job_id, run_at)
        except UniqueViolation:
            requeued = None  # a live job took the dedup key at the same moment
        if requeued is not None:
            return requeued
        job = await self.get_job(job_id)
        if job.status in allowed:
            raise JobStateError(job_id, job.status.value, operation,
                                f"another live job holds its dedup_key {job.dedup_key!r}")
        raise JobStateError(job_id, job.status.value, operation)

    async def _changed_or_raise(self, changed: Job | None, job_id: int, operation: str) -> Job:
        if changed is not None:
            return changed
        job = await self.get_job(job_id)
        raise JobStateError(job_id, job.status.value, operation)


def _filters(queue: str | None, handler: str | None) -> tuple[str | None, str | None]:
    """The optional queue and handler filters of a bulk action, checked."""
    return (None if queue is None else check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH),
            None if handler is None else check_text(handler, "handler", max_length=MAX_NAME_LENGTH))
