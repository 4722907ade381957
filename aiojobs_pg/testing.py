"""Helpers for testing an application's jobs: run one handler, drain queues, assert what is enqueued.

* :func:`run_job` runs one handler inline, through the worker's own executor, with a real
  :class:`~aiojobs_pg.JobContext`, and returns its :class:`JobRun`: completed (with the result
  as it would be stored), retrying (with the delay), failed or cancelled. No worker and no
  database: the App need not be open.
* :func:`drain` runs the jobs of an open App with real workers (burst mode) until nothing due is
  left, and returns a :class:`DrainResult` with the counts.
* :func:`assert_enqueued` / :func:`refute_enqueued` / :func:`enqueued_jobs` look at the pending
  jobs; a failed assertion lists what is enqueued.
* :func:`make_context` builds a :class:`~aiojobs_pg.JobContext` to call a handler function directly.

Plain functions that raise :class:`AssertionError`: they work under pytest (whose plugin,
``aiojobs_pg.pytest_plugin``, gives each test an App on a schema of its own) and under unittest.
See docs/testing.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, NamedTuple, cast

from . import enqueue as enq
from .admin import MAX_PAGE, UNSET
from .app import App
from .errors import JobStateError, ValidationError
from .events import Hooks, event_of
from .executor import Executor, JobContext
from .models import ClaimedJob, Job, JobStatus, Outcome, dump_json, load_json
from .validation import MAX_ATTEMPTS, Duration, check_int

__all__ = [
    "DrainResult",
    "FailedRun",
    "JobRun",
    "JobRunStatus",
    "assert_enqueued",
    "drain",
    "enqueued_jobs",
    "make_context",
    "refute_enqueued",
    "run_job",
]

#: How a run ended, named as the events of ``@app.on``: ``retrying`` means the attempt failed and the
#: job runs again; ``failed`` that its attempts are spent (a recurring job then moves on to its next tick).
JobRunStatus = Literal["completed", "retrying", "failed", "cancelled"]

#: the worker id of the runs of :func:`run_job`
TEST_WORKER_ID = "aiojobs_pg.testing"


# --- one job, inline ---

@dataclass(frozen=True)
class JobRun:
    """What one run of a handler came to (:func:`run_job`)."""

    #: ``completed``, ``retrying``, ``failed`` or ``cancelled``
    status: JobRunStatus
    #: the handler's return value as it would be stored: through JSON (a tuple comes back a list)
    result: Any
    #: the error as the job's history would record it (a traceback, ``Retry: …``, ``Cancel: …``); None if completed
    error: str | None
    #: the exception the handler raised (``Retry`` and ``Cancel`` included); None if it returned
    exception: BaseException | None
    #: seconds until the next attempt, when ``retrying`` (the backoff with its jitter, or ``Retry(after=…)``)
    retry_in: float | None
    #: a recurring job's next run after this one (its next tick)
    next_run_at: datetime | None
    #: what the handler reported through ``ctx.progress``, in order, as (fraction, message)
    progress: list[tuple[float, str | None]]
    #: the job as the handler got it (its data decoded from JSON, as a worker's claim decodes it)
    job: ClaimedJob
    #: seconds the handler ran
    duration: float

    def unwrap(self) -> Any:
        """The result when the run completed; otherwise :class:`AssertionError` naming the status and error.

        The handler's exception, if any, is chained, so the test's report shows its traceback.
        """
        if self.status != "completed":
            message = f"job {self.job.handler!r} {self.status}, not completed"
            if self.error:
                message += f": {_last_line(self.error)}"
            raise AssertionError(message) from self.exception
        return self.result


def make_context(handler: str = "test", *, job_id: int = 1, queue: str = "default", attempt: int = 1,
                 max_attempts: int = 3, worker_id: str = TEST_WORKER_ID, scheduled_at: datetime | None = None,
                 name: str | None = None) -> JobContext:
    """A :class:`~aiojobs_pg.JobContext` to call a handler function directly: ``await send(data, make_context())``.

    Its progress stays on the context (``ctx.last_progress``); its log is the library's.
    """
    return JobContext(job_id=job_id, handler=handler, queue=queue, attempt=attempt, max_attempts=max_attempts,
                      worker_id=worker_id, scheduled_at=scheduled_at or datetime.now(UTC), name=name)


async def run_job(app: App, handler: str, data: Any = None, *, attempt: int = 1, max_attempts: int | None = None,
                  queue: str = "default", job_id: int = 1, name: str | None = None, timeout: Duration | None = None,
                  schedule: str | None = None, timezone: str | None = None) -> JobRun:
    """Run ``handler`` of ``app`` once on ``data``, inline, as a worker would, and return how it ended.

    The job is validated as :meth:`App.enqueue` validates it (an unknown handler or data that
    cannot be stored raise :class:`~aiojobs_pg.errors.ValidationError`), its data goes through
    JSON, and the worker's executor runs it: the handler's timeout (or ``timeout``), the app's
    backoff and result size limit, ``Retry`` and ``Cancel`` all apply, and a handler that takes
    ``ctx`` gets a real :class:`~aiojobs_pg.JobContext`. ``attempt`` of ``max_attempts`` (the
    app's default) decides between ``retrying`` and ``failed``. No worker runs and run_job
    writes nothing: the App need not be open, unless the handler itself uses the database.
    """
    check_int(job_id, "job_id", minimum=1, maximum=2**63 - 1)
    attempts = app.default_max_attempts if max_attempts is None else max_attempts
    new = enq.prepare(handler, data, name=name, queue=queue, max_attempts=attempts, timeout=timeout,
                      schedule=schedule, timezone=timezone, known_handlers=app.handlers.keys(),
                      max_data_bytes=app.max_data_bytes)
    check_int(attempt, "attempt", minimum=1, maximum=min(attempts, MAX_ATTEMPTS))
    now = datetime.now(UTC)
    job = ClaimedJob(id=job_id, handler=handler, data=load_json(new.data_json), queue=queue, attempt=attempt,
                     max_attempts=attempts, timeout=new.timeout, schedule=new.schedule, timezone=new.timezone,
                     scheduled_at=now, claimed_at=now, name=name, misfire=new.misfire, overlap=new.overlap, token=1)
    spec = app.handlers[handler]
    raised: list[BaseException] = []

    async def call(data: Any, ctx: JobContext | None = None) -> Any:
        # The registered handler, called as the executor calls it (a sync one in a thread); what it
        # raises is kept, so that a test can look at the exception and not only its traceback's text.
        try:
            return await spec.call(data, ctx)
        except Exception as exc:
            raised.append(exc)
            raise

    progress: list[tuple[float, str | None]] = []
    executor = Executor({handler: dataclasses.replace(spec, fn=call, is_async=True)},
                        worker_id=TEST_WORKER_ID, backoff=app.backoff, default_timeout=app.job_timeout,
                        max_result_bytes=app.max_data_bytes,
                        on_progress=lambda _id, _token, fraction, message: progress.append((fraction, message)))
    outcome = await executor.execute(job)
    status = _status_of(outcome)
    return JobRun(status=status, result=_result_of(outcome), error=outcome.error,
                  exception=raised[-1] if raised else None,
                  retry_in=outcome.delay if status == "retrying" else None,
                  next_run_at=outcome.next_run_at, progress=progress, job=job,
                  duration=(outcome.finished_us - outcome.started_us) / 1e6)


def _status_of(outcome: Outcome) -> JobRunStatus:
    event = event_of(outcome)
    assert event is not None, "run_job never releases a run"
    return cast(JobRunStatus, event)


def _result_of(outcome: Outcome) -> Any:
    return None if outcome.result_json is None else load_json(outcome.result_json)


# --- draining queues with real workers ---

class FailedRun(NamedTuple):
    """A run of :func:`drain` that did not complete."""

    job_id: int
    handler: str
    attempt: int
    #: ``retrying``, ``failed`` or ``cancelled``
    status: str
    error: str | None


@dataclass
class DrainResult:
    """What :func:`drain` ran, counted by how each run ended (the events of ``@app.on``)."""

    completed: int = 0
    #: runs that failed and left their job to run again later (after its backoff)
    retried: int = 0
    #: runs that failed with no attempt left (the job is ``failed``, a dead letter)
    failed: int = 0
    cancelled: int = 0
    #: pending jobs of the drained queues left afterwards: deferred, waiting for a retry, of a handler
    #: the app does not have, or in a paused queue
    remaining: int = 0
    #: every run that did not complete, in order
    failures: list[FailedRun] = field(default_factory=list)

    @property
    def total(self) -> int:
        """Runs in all."""
        return self.completed + self.retried + self.failed + self.cancelled

    def counts(self) -> dict[str, int]:
        """The counts by name, for one comparison: ``assert result.counts() == {...}``."""
        return {"completed": self.completed, "retried": self.retried, "failed": self.failed,
                "cancelled": self.cancelled, "remaining": self.remaining}

    def __str__(self) -> str:
        text = ", ".join(f"{n} {name}" for name, n in self.counts().items())
        for run in self.failures:
            text += f"\n  job {run.job_id} {run.handler!r} attempt {run.attempt} {run.status}: {_last_line(run.error)}"
        return text


class _Tally(Hooks):
    """The drain's worker's hooks: counts each committed outcome, then fires the app's own hooks."""

    _FIELDS = {"completed": "completed", "retrying": "retried", "failed": "failed", "cancelled": "cancelled"}

    def __init__(self, app_hooks: Hooks, result: DrainResult) -> None:
        super().__init__()
        self.app_hooks = app_hooks
        self.result = result
        self.runs = 0

    def __bool__(self) -> bool:  # the worker fires hooks only when there are some
        return True

    def fire(self, job: ClaimedJob, outcome: Outcome) -> None:
        event = event_of(outcome)
        if event is not None:
            self.runs += 1
            name = self._FIELDS[event]
            setattr(self.result, name, getattr(self.result, name) + 1)
            if event != "completed":
                self.result.failures.append(FailedRun(job.id, job.handler, job.attempt, event, outcome.error))
        if self.app_hooks:
            self.app_hooks.fire(job, outcome)


async def drain(app: App, *, queues: Sequence[str] | None = None, timeout: float = 30.0, concurrency: int = 1,
                include_scheduled: bool = False) -> DrainResult:
    """Run the due jobs of ``queues`` with real workers until none is left; return the counts.

    Each pass is a worker of ``app`` in burst mode (``app.create_worker(burst=True)``), so jobs
    run as in production: claimed, run, completed with their history, retried with their
    backoff, ``@app.on`` hooks fired. Jobs that the handlers enqueue are run too, and a pass
    follows another until one runs nothing. ``queues`` defaults to ``default`` and every queue
    holding a pending job. ``concurrency=1`` (the default) runs one job at a time, in the order
    a worker claims them (priority, then due time, then id).

    A job due later (``delay``, ``run_at``, a retry's backoff) is left pending, unless
    ``include_scheduled``: then it is made due now (:meth:`App.trigger`) before each pass, so a
    failing job runs until its attempts are spent. Recurring jobs are never advanced.

    ``app`` must be open. Raises :class:`TimeoutError`, after stopping the worker (which gives
    the running jobs back), when the jobs are not done within ``timeout`` seconds.
    """
    check_int(concurrency, "concurrency", minimum=1, maximum=10_000)
    if not timeout > 0:
        raise ValidationError("timeout", f"must be a positive number of seconds, got {timeout!r}")
    scope = None if queues is None else list(queues)
    if scope is not None and not scope:
        raise ValidationError("queues", "give at least one queue, or None for every queue")
    app.pool  # noqa: B018 -- raises ConfigurationError, naming the fix, when the app is not open
    result = DrainResult()
    deadline = time.monotonic() + timeout
    while True:
        pending = [j for j in await enqueued_jobs(app) if scope is None or j.queue in scope]
        if include_scheduled:
            await _make_due(app, pending)
        pass_queues = scope or sorted({"default"} | {j.queue for j in pending})
        tally = _Tally(app.hooks, result)
        await _burst(app, tally, pass_queues, concurrency, deadline, timeout)
        if tally.runs == 0:
            result.remaining = len(pending)
            return result


async def _make_due(app: App, pending: Sequence[Job]) -> None:
    # A job created due has next_run_at = created_at (the index of deferred jobs relies on it too): every
    # other one-off job waits, for its delay or its retry's backoff. Compared without the clock.
    for job in pending:
        if job.schedule is None and job.next_run_at > job.created_at and job.handler in app.handlers:
            with contextlib.suppress(JobStateError):  # another worker (not this drain's) took it meanwhile
                await app.trigger(job.id)


async def _burst(app: App, tally: _Tally, queues: Sequence[str], concurrency: int, deadline: float,
                 timeout: float) -> None:
    worker = app.create_worker(concurrency=concurrency, queues=queues, burst=True)
    worker.hooks = tally
    # asyncio, not a task group: an error of the worker comes out as itself, not in an ExceptionGroup.
    task = asyncio.ensure_future(worker.run())
    try:
        done, _ = await asyncio.wait({task}, timeout=max(0.0, deadline - time.monotonic()))
        if not done:
            worker.stop(force=True)  # the running jobs are released: pending again, their attempt given back
            await task
            raise TimeoutError(f"drain: jobs still running after {timeout} s (so far: {tally.result}); "
                               "they were stopped and released")
    finally:
        if not task.done():  # drain itself was cancelled
            task.cancel()
    await task


# --- what is enqueued ---

async def enqueued_jobs(app: App, handler: str | None = None, data: Any = UNSET, *, queue: str | None = None,
                        priority: int | None = None, name: str | None = None) -> list[Job]:
    """The pending jobs (due now or later) that match, oldest first.

    ``data`` matches as PostgreSQL's ``jsonb @>`` does: an object matches one that has at
    least its keys with matching values (nested objects likewise), a list one that contains
    each of its items; other values must be equal. Left out, any data matches.
    """
    want = _expected_data(data)
    jobs: list[Job] = []
    admin, cursor = app.admin(), None
    while True:
        page = await admin.list_jobs(status=JobStatus.PENDING, queue=queue, handler=handler, limit=MAX_PAGE,
                                     cursor=cursor)
        jobs.extend(page.jobs)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    return [j for j in reversed(jobs)
            if (priority is None or j.priority == priority) and (name is None or j.name == name)
            and (want is UNSET or _contains(j.data, want))]


async def assert_enqueued(app: App, handler: str | None = None, data: Any = UNSET, *, queue: str | None = None,
                          priority: int | None = None, name: str | None = None, count: int | None = None,
                          within: float = 0.0) -> list[Job]:
    """Assert that a pending job matches (exactly ``count`` of them, if given); return the matching jobs.

    Matching is :func:`enqueued_jobs`'s. ``within`` seconds: keep looking until then, for a job
    that another task enqueues. The :class:`AssertionError` lists every pending job.
    """
    if count is not None:
        check_int(count, "count", minimum=0)
    deadline = time.monotonic() + within
    while True:
        found = await enqueued_jobs(app, handler, data, queue=queue, priority=priority, name=name)
        if (len(found) == count) if count is not None else bool(found):
            return found
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
    wanted = _describe(handler, data, queue, priority, name)
    expected = f"{count} pending job{'' if count == 1 else 's'}" if count is not None else "a pending job"
    message = f"expected {expected} matching {wanted}, found {len(found)}"
    if within:
        message += f" (looked for {within} s)"
    raise AssertionError(message + await _listing(app))


async def refute_enqueued(app: App, handler: str | None = None, data: Any = UNSET, *, queue: str | None = None,
                          priority: int | None = None, name: str | None = None) -> None:
    """Assert that no pending job matches (:func:`enqueued_jobs`); the :class:`AssertionError` lists those that do."""
    found = await enqueued_jobs(app, handler, data, queue=queue, priority=priority, name=name)
    if found:
        wanted = _describe(handler, data, queue, priority, name)
        lines = "".join(f"\n  {_line(j)}" for j in found[:_SHOWN])
        more = f"\n  … and {len(found) - _SHOWN} more" if len(found) > _SHOWN else ""
        raise AssertionError(f"expected no pending job matching {wanted}, found {len(found)}:{lines}{more}")


def _expected_data(data: Any) -> Any:
    # Through JSON as stored data goes: a tuple is compared as the list it becomes, and what could never
    # be stored is refused with the reason rather than never matching.
    return data if data is UNSET else load_json(dump_json(data, "data"))


def _contains(actual: Any, expected: Any) -> bool:
    """``actual @> expected`` for decoded JSON (see :func:`enqueued_jobs`)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(k in actual and _contains(actual[k], v) for k, v in expected.items())
    if isinstance(expected, list):
        return isinstance(actual, list) and all(any(_contains(a, e) for a in actual) for e in expected)
    if isinstance(expected, bool) or isinstance(actual, bool):  # JSON's true is not 1
        return isinstance(expected, bool) and isinstance(actual, bool) and actual == expected
    return not isinstance(actual, dict | list) and actual == expected


_SHOWN = 20


def _describe(handler: str | None, data: Any, queue: str | None, priority: int | None, name: str | None) -> str:
    parts = [f"handler={handler!r}"] if handler is not None else []
    if data is not UNSET:
        parts.append(f"data containing {_json(data)}")
    parts += [f"{key}={value!r}" for key, value in (("queue", queue), ("priority", priority), ("name", name))
              if value is not None]
    return ", ".join(parts) or "anything"


async def _listing(app: App) -> str:
    jobs = await enqueued_jobs(app)
    if not jobs:
        return "; nothing is pending"
    shown = "".join(f"\n  {_line(j)}" for j in jobs[:_SHOWN])
    more = f"\n  … and {len(jobs) - _SHOWN} more" if len(jobs) > _SHOWN else ""
    return f"; pending jobs ({len(jobs)}):{shown}{more}"


def _line(job: Job) -> str:
    due = "" if job.next_run_at <= datetime.now(UTC) else f" due {job.next_run_at.isoformat(timespec='seconds')}"
    named = f" name={job.name!r}" if job.name else ""
    return (f"#{job.id} {job.handler!r} queue={job.queue!r} priority={job.priority}{named}{due} "
            f"attempts={job.attempts}/{job.max_attempts} data={_json(job.data)}")


def _json(value: Any, limit: int = 200) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _last_line(error: str | None) -> str:
    lines = (error or "").strip().splitlines()
    return lines[-1] if lines else ""

