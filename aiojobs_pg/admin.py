"""Management operations shared by the Python API, the CLI and the HTTP API.

Every status change here is one guarded ``UPDATE … WHERE status IN (…)``; when
it matches nothing, a read tells "no such job" from "wrong status".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .errors import JobNotFound, JobStateError, ValidationError
from .models import DEFAULT_MAX_DATA_BYTES, Job, JobStatus, Run, dump_json
from .queries import DB, Queries, UniqueViolation
from .schedules import parse_duration, parse_schedule
from .validation import MAX_ATTEMPTS, MAX_NAME_LENGTH, MAX_QUEUE_LENGTH, Duration, check_int, check_run_at, check_text

MAX_PAGE = 1000


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
    """

    def __init__(self, db: DB, queries: Queries, *, max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> None:
        self.db = db
        self.q = queries
        self.max_data_bytes = max_data_bytes

    async def get_job(self, job_id: int) -> Job:
        """The job with this id; :class:`JobNotFound` if there is none."""
        row = await self.q.get_job(self.db, _job_id(job_id))
        if row is None:
            raise JobNotFound(job_id)
        return Job.from_record(row)

    async def list_jobs(self, *, status: str | JobStatus | None = None, queue: str | None = None,
                        handler: str | None = None, limit: int = 100, cursor: int | None = None) -> Page:
        """Jobs newest first, filtered; keyset pagination through ``cursor``."""
        check_int(limit, "limit", minimum=1, maximum=MAX_PAGE)
        if cursor is not None:
            check_int(cursor, "cursor", minimum=1, maximum=2**63 - 1)
        check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH, required=False)
        check_text(handler, "handler", max_length=MAX_NAME_LENGTH, required=False)
        rows = await self.q.list_jobs(self.db, status=_status(status), queue=queue, handler=handler,
                                      before_id=cursor, limit=limit + 1)
        jobs = [Job.from_record(r) for r in rows[:limit]]
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
        set_name = name is not UNSET
        if set_name:
            check_text(name, "name", max_length=MAX_NAME_LENGTH, required=False)
        data_json = None if data is UNSET else dump_json(data, "data", self.max_data_bytes)
        if not isinstance(priority, Unset):
            check_int(priority, "priority", minimum=-(2**31))
        if not isinstance(max_attempts, Unset):
            check_int(max_attempts, "max_attempts", minimum=1, maximum=MAX_ATTEMPTS)
        if not isinstance(queue, Unset):
            check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH)
        when = None if isinstance(run_at, Unset) else check_run_at(run_at)
        set_schedule = schedule is not UNSET or timezone is not UNSET
        new_schedule = new_tz = None
        if set_schedule:
            current = await self.get_job(job_id)
            expr = current.schedule if isinstance(schedule, Unset) else schedule
            tz = current.timezone if isinstance(timezone, Unset) else timezone
            if expr is not None:
                check_text(expr, "schedule", max_length=200)
                parsed = parse_schedule(expr, tz)
                new_schedule, new_tz = parsed.expr, parsed.timezone
                if when is None:
                    when = parsed.next_after(datetime.now(UTC))
            elif tz is not None and not isinstance(timezone, Unset):
                raise ValidationError("timezone", "only applies to a job with a schedule")
        set_timeout = timeout is not UNSET
        timeout_s = None
        if not isinstance(timeout, Unset) and timeout is not None:
            timeout_s = parse_duration(timeout, field="timeout", allow_zero=False).total_seconds()
        row = await self.q.update_job(self.db, (
            _job_id(job_id), set_name, name if set_name else None,
            data_json, None if isinstance(priority, Unset) else priority,
            None if isinstance(max_attempts, Unset) else max_attempts,
            None if isinstance(queue, Unset) else queue, when,
            set_schedule, new_schedule, new_tz, set_timeout, timeout_s,
        ))
        if row is None:
            job = await self.get_job(job_id)  # JobNotFound, or a completed job, which lives in the history
            raise JobStateError(job_id, job.status.value, "update",
                                "it completed, and a completed job stays as it ran; trigger it to run it again")
        return Job.from_record(row)

    async def delete_job(self, job_id: int) -> None:
        """Delete a job and its history. A running handler is stopped at its next lease renewal."""
        job_id = _job_id(job_id)
        # A second try sees a history row written while the first ran (the job completing meanwhile).
        if not await self.q.delete_job(self.db, job_id) and not await self.q.delete_job(self.db, job_id):
            raise JobNotFound(job_id)

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending or running job (a recurring job is paused; ``retry`` resumes it)."""
        row = await self.q.cancel_job(self.db, _job_id(job_id))
        return await self._changed_or_raise(row, job_id, "cancel")

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
        return await self._requeue(job_id, [s for s in JobStatus if s is not JobStatus.RUNNING], None, "trigger")

    async def history(self, job_id: int, *, limit: int = 1000) -> list[Run]:
        """The job's runs, oldest first (empty when history is off)."""
        await self.get_job(job_id)
        rows = await self.q.job_runs(self.db, job_id, check_int(limit, "limit", minimum=1, maximum=100_000))
        return [Run.from_record(r) for r in rows]

    async def recurring(self) -> list[Job]:
        """Every job with a schedule, soonest first."""
        return [Job.from_record(r) for r in await self.q.recurring_jobs(self.db)]

    async def queue_stats(self) -> list[dict[str, Any]]:
        """Counts per queue and status, and the oldest due pending job per queue."""
        return [dict(r) for r in await self.q.queue_stats(self.db)]

    async def workers(self) -> list[dict[str, Any]]:
        """Live workers (all hosts) with their last heartbeat."""
        return [dict(r) for r in await self.q.list_workers(self.db)]

    async def _requeue(self, job_id: int, allowed: list[JobStatus], run_at: datetime | None,
                       operation: str) -> Job:
        try:
            row = await self.q.requeue_job(self.db, _job_id(job_id), [s.value for s in allowed], run_at)
            if row is None and JobStatus.COMPLETED in allowed:
                row = await self.q.restore_job(self.db, job_id, run_at)
        except UniqueViolation:
            row = None  # a live job took the dedup key at the same moment
        if row is not None:
            return Job.from_record(row)
        job = await self.get_job(job_id)
        if job.status in allowed:
            raise JobStateError(job_id, job.status.value, operation,
                                f"another live job holds its dedup_key {job.dedup_key!r}")
        raise JobStateError(job_id, job.status.value, operation)

    async def _changed_or_raise(self, row: Any, job_id: int, operation: str) -> Job:
        if row is not None:
            return Job.from_record(row)
        job = await self.get_job(job_id)
        raise JobStateError(job_id, job.status.value, operation)
