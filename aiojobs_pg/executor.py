"""Run one claimed job and turn what happened into an :class:`Outcome`.

Nothing here touches the database: a handler can be exercised without Postgres,
and the completer alone writes outcomes.
"""

from __future__ import annotations

import inspect
import time
import traceback
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import anyio
import anyio.to_thread

from .errors import Cancel, DataTooLarge, Fail, Retry, ValidationError
from .logs import get_logger
from .models import Backoff as Backoff  # defined with the job row; imported from here too
from .models import ClaimedJob, JobStatus, NewJob, Outcome, RunStatus, dump_json
from .schedules import Schedule, parse_schedule
from .validation import MAX_NAME_LENGTH, Duration, RateLimit, check_text

Handler = Callable[..., Any]


@dataclass
class JobContext:
    """What a handler gets besides its data.

    A test can build one to call a handler directly:
    ``JobContext(job_id=1, handler="send", queue="default", attempt=1, max_attempts=3,
    worker_id="test", scheduled_at=datetime.now(UTC), name=None)``.
    """

    job_id: int
    handler: str
    queue: str
    attempt: int
    max_attempts: int
    worker_id: str
    scheduled_at: datetime
    name: str | None
    #: the worker's logger (its worker id bound); the library's executor logger when not given
    base_log: Any = field(default=None, repr=False)
    #: where :meth:`progress` sends what it is given (the worker's writer); None keeps it on the context only
    on_progress: Callable[[float, str | None], None] | None = field(default=None, repr=False)
    _log: Any = field(default=None, init=False, repr=False)
    _cancelled: bool = field(default=False, init=False, repr=False)
    #: the last progress reported, as (fraction, message)
    last_progress: tuple[float, str | None] | None = field(default=None, init=False)
    #: the results of the jobs this one was enqueued ``after=``, by id (those completed and still kept; a
    #: parent that failed or was cancelled, for a job that runs anyway, has none)
    parent_results: dict[int, Any] = field(default_factory=dict)
    #: validates what :meth:`enqueue` is given (the worker's App); None: ``enqueue`` is refused
    prepare_job: Callable[..., NewJob] | None = field(default=None, repr=False)
    #: the jobs :meth:`enqueue` was given, in order
    follow_ups: list[NewJob] = field(default_factory=list, init=False)

    async def enqueue(self, handler: str, data: Any = None, *, name: str | None = None, queue: str = "default",
                      priority: int = 0, max_attempts: int | None = None, timeout: Duration | None = None,
                      delay: Duration | None = None, run_at: datetime | None = None, dedup_key: str | None = None,
                      after: Collection[int] | None = None, on_parent_failure: str | None = None,
                      dedup_window: Duration | None = None, backoff: Backoff | None = None,
                      concurrency_key: str | None = None) -> None:
        """Enqueue a follow-up job that commits with this run's completion: it exists if and only if the
        run completes, so a crash in between can neither lose it nor, after a retry, add it twice.

        Takes :meth:`App.enqueue <aiojobs_pg.App.enqueue>`'s keywords (and is validated the same way,
        at once); the job is inserted, and its worker woken, when the completion is written. A run
        that fails, is retried or is cancelled enqueues nothing. The new job's id is not known here.
        """
        if self.prepare_job is None:
            raise RuntimeError("this context has no app to enqueue with (JobContext(prepare_job=...))")
        self.follow_ups.append(self.prepare_job(
            handler, data, name=name, queue=queue, priority=priority, max_attempts=max_attempts, timeout=timeout,
            delay=delay, run_at=run_at, dedup_key=dedup_key, after=after, on_parent_failure=on_parent_failure,
            dedup_window=dedup_window, backoff=backoff, concurrency_key=concurrency_key))

    async def progress(self, fraction: float, message: str | None = None) -> None:
        """Report how far the run got, from 0 to 1, and optionally what it is doing.

        Shown as ``Job.progress`` / ``Job.progress_message`` (and in the HTTP API and dashboard)
        within half a second: the worker writes the latest value of all its runs in one statement
        at most twice a second, so calling this often costs nothing more. It never waits for the
        database. A new attempt starts with no progress. From a sync handler (in a thread), call
        ``anyio.from_thread.run(ctx.progress, 0.5, "half")``.
        """
        if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
            raise ValidationError("progress", f"must be a number from 0 to 1, got {fraction!r}")
        check_text(message, "progress message", max_length=MAX_NAME_LENGTH, required=False)
        self.last_progress = (float(fraction), message)
        if self.on_progress is not None:
            self.on_progress(float(fraction), message)

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled while this run goes on.

        An ``async def`` handler needs no check: its task is cancelled at once. A sync
        handler runs in a thread, which cannot be interrupted: it should look at this
        between steps and return early; whatever it returns, the job stays cancelled.
        """
        return self._cancelled

    def cancel(self) -> None:
        """Mark the run cancelled (the worker does this when the job is cancelled)."""
        self._cancelled = True

    @property
    def log(self) -> Any:
        """structlog logger bound to job id, handler, attempt and worker id (bound on first use)."""
        if self._log is None:
            base = self.base_log if self.base_log is not None else get_logger("aiojobs_pg.executor")
            self._log = base.bind(job_id=self.job_id, handler=self.handler, attempt=self.attempt)
        return self._log

    @property
    def is_last_attempt(self) -> bool:
        """True when a failure now would make the job ``failed``."""
        return self.attempt >= self.max_attempts


@dataclass(frozen=True)
class HandlerSpec:
    """A registered handler and its per-handler settings."""

    name: str
    fn: Handler
    takes_ctx: bool
    is_async: bool
    backoff: Backoff | None = None
    timeout: float | None = None
    #: fleet-wide limits of its jobs, per concurrency key (docs/limits.md): at most this many run at once
    concurrency_limit: int | None = None
    #: and at most so many start in any window of the period
    rate_limit: RateLimit | None = None

    @classmethod
    def build(cls, name: str, fn: Handler, *, backoff: Backoff | None = None,
              timeout: float | None = None, concurrency_limit: int | None = None,
              rate_limit: RateLimit | None = None) -> HandlerSpec:
        """Inspect ``fn`` once: does it take ``ctx``, is it a coroutine function?"""
        if not callable(fn):
            raise ValidationError("handler", f"{fn!r} is not callable")
        params = [
            p for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if not 1 <= len(params) <= 2:
            raise ValidationError("handler", f"{name!r} must take (data) or (data, ctx), got {len(params)} arguments")
        return cls(name, fn, len(params) == 2, inspect.iscoroutinefunction(fn), backoff, timeout,
                   concurrency_limit, rate_limit)

    async def call(self, data: Any, ctx: JobContext | None) -> Any:
        """Call the handler (with ``ctx`` if it takes one); sync handlers run in a worker thread."""
        args = (data, ctx) if self.takes_ctx else (data,)
        if self.is_async:
            result: Awaitable[Any] = self.fn(*args)
            return await result
        # abandon_on_cancel: a timed-out thread cannot be stopped, but the job moves on.
        return await anyio.to_thread.run_sync(lambda: self.fn(*args), abandon_on_cancel=True)


@lru_cache(maxsize=1024)
def _job_backoff(stored: str) -> Backoff | None:
    """A job's own backoff from its stored JSON (a claimed job's ``backoff``), parsed once per distinct value.

    None for a value the enqueue would have refused (written by SQL of one's own): the job then retries
    with its handler's or the app's, and the value is logged once.
    """
    try:
        return Backoff.parse(stored)
    except ValidationError as exc:
        get_logger("aiojobs_pg.executor").warning("invalid_job_backoff", backoff=stored[:200], error=exc.message)
        return None


@lru_cache(maxsize=1024)
def _schedule(expr: str, timezone: str | None) -> Schedule:
    return parse_schedule(expr, timezone)


def next_tick(job: ClaimedJob) -> datetime:
    """The next run of a recurring job after the tick it ran for (see :meth:`Schedule.next_run`)."""
    assert job.schedule is not None
    return next_run_after(job.schedule, job.timezone, tick=job.scheduled_at, claimed_at=job.claimed_at,
                          misfire=job.misfire, overlap=job.overlap)


def next_run_after(schedule: str, timezone: str | None, *, tick: datetime, claimed_at: datetime, misfire: str,
                   overlap: str) -> datetime:
    """When a recurring job runs next after its run for ``tick``, claimed at ``claimed_at``, ending now."""
    return _schedule(schedule, timezone).next_run(tick=tick, claimed_at=claimed_at, finished_at=utcnow(),
                                                  misfire=misfire, overlap=overlap)


def utcnow() -> datetime:
    """Timezone-aware UTC now (the worker's clock; used for run durations only)."""
    return datetime.now(UTC)


def now_us() -> int:
    """Microseconds since the epoch now, on the worker's clock (what an :class:`Outcome` holds)."""
    return time.time_ns() // 1000


class Executor:
    """Runs claimed jobs against a handler registry and decides their outcomes."""

    def __init__(self, handlers: dict[str, HandlerSpec], *, worker_id: str, backoff: Backoff,
                 default_timeout: float | None = None, max_result_bytes: int | None = None,
                 on_progress: Callable[[int, int, float, str | None], None] | None = None,
                 load_parents: Callable[[Sequence[int]], Awaitable[dict[int, Any]]] | None = None,
                 prepare_job: Callable[..., NewJob] | None = None) -> None:
        self.handlers = handlers
        self.worker_id = worker_id
        self.backoff = backoff
        self.default_timeout = default_timeout
        #: a result whose JSON is longer (UTF-8 bytes) fails its attempt instead of being stored
        self.max_result_bytes = max_result_bytes
        self.log = get_logger("aiojobs_pg.executor").bind(worker_id=worker_id)
        #: the contexts of the runs going on, by job id (only handlers that take one have one)
        self.contexts: dict[int, JobContext] = {}
        #: where a run's progress goes: (job id, claim token, fraction, message)
        self.on_progress = on_progress
        #: reads the results of a job's parents (``ctx.parent_results``)
        self.load_parents = load_parents
        #: validates a follow-up job (``ctx.enqueue``)
        self.prepare_job = prepare_job

    async def execute(self, job: ClaimedJob) -> Outcome:
        """Run the handler of ``job`` under its timeout; never raises for handler errors."""
        started = now_us()
        spec = self.handlers.get(job.handler)
        if spec is None:
            known = ", ".join(sorted(self.handlers)) or "none"
            return self.failure(job, started, f"unknown handler {job.handler!r} (this worker knows: {known})")
        timeout = job.timeout or spec.timeout or self.default_timeout
        # Only handlers that take a context get one: building it is a fair part of a short job's cost.
        ctx = None
        if spec.takes_ctx:
            sink = self.on_progress
            ctx = self.contexts[job.id] = JobContext(
                job.id, job.handler, job.queue, job.attempt, job.max_attempts, self.worker_id, job.scheduled_at,
                job.name, self.log, None if sink is None else lambda f, m: sink(job.id, job.token, f, m),
                prepare_job=self.prepare_job)
        try:
            if job.parents and ctx is not None and self.load_parents is not None:
                ctx.parent_results = await self.load_parents(job.parents)
            if timeout:  # no cancel scope at all without one: entering a scope costs on every job
                with anyio.fail_after(timeout):
                    result = await spec.call(job.data, ctx)
            else:
                result = await spec.call(job.data, ctx)
        except Retry as exc:
            return self.failure(job, started, f"Retry: {exc.reason}", spec, delay=exc.after)
        except Cancel as exc:
            return self.outcome(job, started, JobStatus.CANCELLED, RunStatus.CANCELLED, error=f"Cancel: {exc.reason}")
        except Fail as exc:
            return self.failure(job, started, f"Fail: {exc.reason}", spec, final=True)
        except TimeoutError:
            return self.failure(job, started, f"TimeoutError: job exceeded its timeout of {timeout} s", spec)
        except Exception:
            return self.failure(job, started, traceback.format_exc(), spec)
        finally:
            if ctx is not None:
                del self.contexts[job.id]
        try:
            # None is stored as SQL NULL: nothing to encode, and nothing for the server to parse.
            result_json = None if result is None else dump_json(result, "result", self.max_result_bytes)
        except DataTooLarge as exc:
            # A failed attempt like any other (history, last_error, retry policy): storing it would make
            # every reader of the job (list, history, HTTP) load what the limit is there to keep out.
            return self.failure(job, started, f"result too large: the handler returned {exc.size} bytes of JSON, "
                                f"over the limit of {exc.limit} bytes (max_data_bytes); it was not stored", spec)
        except ValidationError as exc:
            return self.failure(job, started, f"handler returned a result that cannot be stored: {exc.message}", spec)
        if job.schedule is not None:
            outcome = self.outcome(job, started, JobStatus.PENDING, RunStatus.COMPLETED, result_json=result_json,
                                   next_run_at=next_tick(job), reset_attempts=True)
        else:
            # The usual outcome, built positionally: keywords cost a fair part of a short job's time.
            outcome = Outcome(job.id, job.attempt, job.token, JobStatus.COMPLETED, RunStatus.COMPLETED, started,
                              now_us(), self.worker_id, job.scheduled_at, None, result_json)
        if ctx is not None and ctx.follow_ups:
            outcome.follow_ups = ctx.follow_ups
        return outcome

    def failure(self, job: ClaimedJob, started: int, error: str, spec: HandlerSpec | None = None,
                *, delay: float | None = None, worker_id: str | None = None, final: bool = False) -> Outcome:
        """A failed attempt: retry after backoff, or the dead letter (or the next tick if recurring).

        ``started`` is when the run started, in microseconds since the epoch (see :func:`now_us`).
        ``final`` (the handler raised Fail): no retry, whatever attempts are left.
        """
        if job.attempt < job.max_attempts and not final:
            if delay is None:
                # the job's own backoff, then its handler's, then the app's
                backoff = ((_job_backoff(job.backoff) if job.backoff is not None else None)
                           or (spec.backoff if spec and spec.backoff else None) or self.backoff)
                delay = backoff.delay(job.attempt)
            wait = max(0.0, delay)
            return self.outcome(job, started, JobStatus.PENDING, RunStatus.FAILED, error=error, delay=wait,
                                worker_id=worker_id)
        if job.schedule is not None:
            return self.outcome(job, started, JobStatus.PENDING, RunStatus.FAILED, error=error,
                                next_run_at=next_tick(job), reset_attempts=True, worker_id=worker_id)
        return self.outcome(job, started, JobStatus.FAILED, RunStatus.FAILED, error=error, worker_id=worker_id)

    def released(self, job: ClaimedJob, started: int) -> Outcome:
        """The worker stopped the run (shutdown): back to pending now, the attempt not charged."""
        return self.outcome(job, started, JobStatus.PENDING, RunStatus.RELEASED,
                            error="released: the worker shut down before the job finished", delay=0.0, release=True)

    def cancelled(self, job: ClaimedJob, started: int) -> Outcome:
        """The worker stopped the run because the job was cancelled meanwhile: its history row."""
        return self.outcome(job, started, JobStatus.CANCELLED, RunStatus.CANCELLED,
                            error="cancelled while running", after_cancel=True)

    def outcome(self, job: ClaimedJob, started: int, job_status: JobStatus, run_status: RunStatus, *,
                worker_id: str | None = None, **kwargs: Any) -> Outcome:
        """Build an outcome stamped with now as its end (``started``: microseconds since the epoch)."""
        return Outcome(job.id, job.attempt, job.token, job_status, run_status, started, now_us(),
                       worker_id or self.worker_id, job.scheduled_at, **kwargs)
