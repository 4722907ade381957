"""OpenTelemetry tracing of an App's jobs (the ``tracing`` extra: ``opentelemetry-api``).

Off unless enabled: ``aiojobs_pg.tracing.instrument(app)``, before the App's workers are created.
Then each enqueue is a ``PRODUCER`` span ("enqueue <queue>") around its insert, whose context is
stored with the job (the ``trace_context`` column, written by the propagator: W3C ``traceparent``
by default), and each run is a ``CONSUMER`` span ("run <queue>") that links to that context and, for
a one-off job, is its child: a trace goes from the request that enqueued a job through every attempt
of it, retries included. The run's span is the handler's current span, so spans a handler makes are
its children, and a job the handler enqueues (``ctx.enqueue``) carries it as its creation context.
Attributes follow the messaging semantic conventions; see docs/tracing.md.

Cost: an App that is not instrumented pays one ``if`` per enqueue and per seam of the observer
(:mod:`aiojobs_pg.observers`). Instrumented, a job carries its context, so it is not "plain": single
enqueues take the general insert and batches are not one ``Uniform`` kind.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, TypeVar

try:
    from opentelemetry import context as otel_context
    from opentelemetry import propagate, trace
    from opentelemetry.propagators.textmap import TextMapPropagator
    from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, TracerProvider
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("aiojobs_pg.tracing needs OpenTelemetry's API: pip install 'aiojobs_pg[tracing]'") from exc

from .enqueue import JobBatch, Uniform
from .errors import ConfigurationError, ValidationError
from .events import event_of
from .models import ClaimedJob, Job, NewJob, Outcome, RunStatus
from .observers import attach, detach

if TYPE_CHECKING:
    from .app import App

__all__ = ["MAX_OPEN_RUNS", "SYSTEM", "Tracing", "instrument", "tracing_of", "uninstrument"]

T = TypeVar("T")

#: ``messaging.system`` of every span
SYSTEM = "aiojobs_pg"
#: run spans kept open at most (a run whose outcome is never committed, its lease lost or its completion
#: fenced, has no end: past this many, the oldest are ended as abandoned)
MAX_OPEN_RUNS = 100_000

try:
    _VERSION: str | None = version("aiojobs_pg")
except PackageNotFoundError:  # pragma: no cover - run from a checkout that is not installed
    _VERSION = None


def _error_parts(error: str) -> tuple[str, str]:
    """(type, message) of an outcome's error text: a traceback's last line ``"ValueError: boom"``,
    ``"Retry: reason"``, or a sentence of the worker's (then its type is ``aiojobs_pg.Error``)."""
    last = error.strip().rsplit("\n", 1)[-1].strip()
    kind, sep, message = last.partition(": ")
    if sep and kind.replace(".", "").replace("_", "").isalnum():
        return kind, message
    return "aiojobs_pg.Error", last


class Tracing:
    """The spans of one App (:func:`instrument` makes one): its ``app.tracing`` and one of its observers."""

    def __init__(self, app: App, tracer_provider: TracerProvider | None = None, *,
                 propagator: TextMapPropagator | None = None, link_only: bool = False) -> None:
        self.app = app
        self.tracer = trace.get_tracer("aiojobs_pg", _VERSION, tracer_provider=tracer_provider)
        #: writes and reads the context stored with a job (None: the global one, W3C trace context and baggage)
        self.propagator = propagator
        #: True: every run starts a trace of its own, linked to its job's enqueue (a recurring job's runs always do)
        self.link_only = link_only
        #: the open span of each run going on, by (job id, claim token)
        self._runs: dict[tuple[int, int], Span] = {}
        self._workers: set[str] = set()

    # --- the context stored with a job ---
    def _carrier(self) -> str | None:
        carrier: dict[str, str] = {}
        if self.propagator is None:
            propagate.inject(carrier)
        else:
            self.propagator.inject(carrier)
        # Nothing to store when no span is recording a trace (the API without an SDK): the column stays NULL.
        return json.dumps(carrier, separators=(",", ":"), sort_keys=True) if carrier else None

    def _extract(self, stored: str | None) -> otel_context.Context:
        if stored is None:
            return otel_context.Context()
        try:
            carrier = json.loads(stored)
        except ValueError:
            return otel_context.Context()  # written by hand, or damaged: the run starts a trace of its own
        if not isinstance(carrier, dict):
            return otel_context.Context()
        empty = otel_context.Context()
        if self.propagator is None:
            return propagate.extract(carrier, context=empty)
        return self.propagator.extract(carrier, context=empty)

    def stamp(self, job: NewJob) -> NewJob:
        """``job`` with the current context as its creation context (a handler's ``ctx.enqueue``: the run's)."""
        stored = self._carrier()
        return job if stored is None else replace(job, trace_context=stored)

    # --- enqueue (app.tracing) ---
    async def enqueue(self, jobs: Sequence[NewJob], insert: Callable[[list[NewJob]], Awaitable[T]]) -> T:
        """Open a ``PRODUCER`` span, store its context with ``jobs``, ``await insert(stamped)``, close the span.

        One span for one call, however many jobs (``messaging.batch.message_count`` when more than one):
        its context is the creation context of each of them. A failed insert ends it with status ERROR.
        """
        if not jobs:
            return await insert([])
        queues = {j.queue for j in jobs}
        queue = next(iter(queues)) if len(queues) == 1 else None
        attributes: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "send",
                                      "messaging.operation.name": "enqueue"}
        if queue is not None:
            attributes["messaging.destination.name"] = queue
        handlers = {j.handler for j in jobs}
        if len(handlers) == 1:
            attributes["aiojobs_pg.handler"] = next(iter(handlers))
        if len(jobs) > 1:
            attributes["messaging.batch.message_count"] = len(jobs)
        name = "enqueue" if queue is None else f"enqueue {queue}"
        with self.tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
            stored = self._carrier()
            stamped = [j if stored is None else replace(j, trace_context=stored) for j in jobs]
            result = await insert(stamped)
            if span.is_recording():
                ids = list(_ids(result))
                if len(ids) == 1:
                    span.set_attribute("messaging.message.id", str(ids[0]))
                if isinstance(result, Job) and result.existing:
                    span.set_attribute("aiojobs_pg.existing", True)
            return result

    # --- runs (the observer seam) ---
    def enqueued(self, jobs: Sequence[NewJob] | Uniform) -> None:
        """Nothing: the enqueue's span was made around its insert (:meth:`enqueue`)."""

    def started(self, job: ClaimedJob) -> contextvars.Context:
        """Open the run's ``CONSUMER`` span; the context its task runs in, with the span current."""
        created = self._extract(job.trace_context)
        link = trace.get_current_span(created).get_span_context()
        links = [Link(link)] if link.is_valid else None
        # A one-off job's runs are children of its enqueue (one trace, retries as siblings); a recurring
        # job's would make one trace of every tick for ever, so they start their own, linked.
        parent = created if link.is_valid and not self.link_only and job.schedule is None else otel_context.Context()
        attributes: dict[str, Any] = {
            "messaging.system": SYSTEM, "messaging.operation.type": "process", "messaging.operation.name": "run",
            "messaging.destination.name": job.queue, "messaging.message.id": str(job.id),
            "aiojobs_pg.handler": job.handler, "aiojobs_pg.attempt": job.attempt,
            "aiojobs_pg.max_attempts": job.max_attempts,
        }
        if job.name is not None:
            attributes["aiojobs_pg.job_name"] = job.name
        if job.schedule is not None:
            attributes["aiojobs_pg.schedule"] = job.schedule
        span = self.tracer.start_span(f"run {job.queue}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=attributes, links=links)
        runs = self._runs
        runs[job.id, job.token] = span
        if len(runs) > MAX_OPEN_RUNS:
            _abandon(runs.pop(next(iter(runs))))
        # The run's task sees the span as current (and the producer's baggage, which `created` holds).
        context = contextvars.copy_context()
        context.run(otel_context.attach, trace.set_span_in_context(span, created))
        return context

    def finished(self, job: ClaimedJob, outcome: Outcome) -> None:
        """End the run's span with what its committed outcome was (status ERROR for a failed attempt)."""
        span = self._runs.pop((job.id, job.token), None)
        if span is None:
            return
        if span.is_recording():
            event = event_of(outcome)
            span.set_attribute("aiojobs_pg.outcome", "released" if event is None else event)
            span.set_attribute("aiojobs_pg.worker_id", outcome.worker_id)
            if event == "retrying" and outcome.delay is not None:
                span.set_attribute("aiojobs_pg.retry.delay_seconds", outcome.delay)
            if outcome.run_status is RunStatus.FAILED:
                error = outcome.error or "failed"
                kind, message = _error_parts(error)
                span.add_event("exception", {"exception.type": kind, "exception.message": message,
                                             "exception.stacktrace": error}, timestamp=outcome.finished_us * 1000)
                span.set_status(Status(StatusCode.ERROR, f"{kind}: {message}"[:300]))
        span.end(end_time=outcome.finished_us * 1000)

    def worker_started(self, worker_id: str, running: Callable[[], int], concurrency: int) -> None:
        """Count the worker (the runs left open are ended when the last one stops)."""
        self._workers.add(worker_id)

    def worker_stopped(self, worker_id: str) -> None:
        """When no worker of the App is left: end the runs whose outcome was never committed, as abandoned."""
        self._workers.discard(worker_id)
        if not self._workers:
            while self._runs:
                _abandon(self._runs.pop(next(iter(self._runs))))

    def open_runs(self) -> int:
        """How many run spans are open (runs going on, or whose outcome was never committed)."""
        return len(self._runs)


def _abandon(span: Span) -> None:
    # A run whose outcome was never committed: its lease was lost (another worker may run it again) or the
    # completion's fence refused it. Ended now, so that it is exported at all.
    if span.is_recording():
        span.set_attribute("aiojobs_pg.outcome", "abandoned")
        span.set_status(Status(StatusCode.ERROR, "the run's outcome was not recorded (lease lost, or fenced)"))
    span.end(end_time=time.time_ns())


def _ids(result: object) -> Iterator[int]:
    """The ids of the jobs an insert returned (a Job, a batch, a chain's list, a group's pair)."""
    if isinstance(result, Job):
        yield result.id
    elif isinstance(result, JobBatch):
        yield from result.ids
    elif isinstance(result, list | tuple):
        for item in result:
            yield from _ids(item)


def instrument(app: App, tracer_provider: TracerProvider | None = None, *,
               propagator: TextMapPropagator | None = None, link_only: bool = False) -> Tracing:
    """Trace ``app``'s enqueues and its workers' runs with ``tracer_provider`` (default: the global one).

    Call it before creating the App's workers (they read ``app.observer`` when created). Metrics
    (:func:`aiojobs_pg.metrics.instrument`) may be on too. ``propagator`` writes and reads the
    context stored with each job (default: the global one, W3C trace context and baggage);
    ``link_only`` makes every run a trace of its own, linked to its enqueue, rather than its child.
    Calling it again returns the same :class:`Tracing`, unless asked for another provider.
    """
    if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
        raise ValidationError("tracer_provider", f"must be an opentelemetry TracerProvider, got {tracer_provider!r}")
    if propagator is not None and not isinstance(propagator, TextMapPropagator):
        raise ValidationError("propagator", f"must be an opentelemetry TextMapPropagator, got {propagator!r}")
    if not isinstance(link_only, bool):
        raise ValidationError("link_only", f"must be True or False, got {link_only!r}")
    current = tracing_of(app)
    if current is not None:
        if tracer_provider is None and propagator is None and link_only == current.link_only:
            return current
        raise ConfigurationError("this App is traced already: aiojobs_pg.tracing.uninstrument(app) first")
    tracing = Tracing(app, tracer_provider, propagator=propagator, link_only=link_only)
    app.tracing = tracing
    attach(app, tracing)
    return tracing


def uninstrument(app: App) -> None:
    """Stop tracing ``app``'s enqueues, and the runs of workers created from now on."""
    current = tracing_of(app)
    if current is not None:
        app.tracing = None
        detach(app, current)


def tracing_of(app: App) -> Tracing | None:
    """The App's :class:`Tracing`, if :func:`instrument` enabled it."""
    current = app.tracing
    return current if isinstance(current, Tracing) else None
