"""What the App and its workers tell an observer (metrics, tracing) as jobs go through.

An observer is off unless one is set (``app.observer``, which
:func:`aiojobs_pg.metrics.instrument` sets): each seam is one ``if observer is not None``
on its path, so an App without one pays nothing more. The calls are synchronous and made
on the event loop: an observer must not block (counting in memory is what they are for;
anything that reads the database does it when scraped, not here).

The seams:

* :meth:`Observer.enqueued`: after an enqueue's insert returned (in the caller's transaction
  when a connection was given, so before that transaction commits);
* :meth:`Observer.started`: when a worker starts a claimed job's run (before its task is created: an
  observer may return the :class:`contextvars.Context` the run's task runs in, which is how tracing
  makes its span the handler's current one);
* :meth:`Observer.finished`: once a run's outcome was committed (the completion's fence let
  it through), with the same outcomes lifecycle hooks see, releases at shutdown included;
* :meth:`Observer.worker_started` / :meth:`Observer.worker_stopped`: a worker's life, with a way
  to read how many runs it has going on.

Several observers (metrics and tracing together) are attached as one :class:`Observers`
(:func:`attach`, :func:`detach`).

Enqueues that tracing wraps (its span must be open while the job is inserted, so that its context is
stored with the job) go through another seam, ``app.tracing`` (an :class:`EnqueueTracer`, also None
unless set): one ``if`` on each enqueue path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from contextvars import Context
from typing import TYPE_CHECKING, Protocol, TypeVar

if TYPE_CHECKING:
    from .enqueue import Uniform
    from .models import ClaimedJob, NewJob, Outcome

T = TypeVar("T")


class Observer(Protocol):
    """The calls an observer of an App and its workers receives (see the module's docstring)."""

    def enqueued(self, jobs: Sequence[NewJob] | Uniform) -> None:
        """Jobs were inserted by one enqueue call (one job for :meth:`App.enqueue <aiojobs_pg.App.enqueue>`)."""

    def started(self, job: ClaimedJob) -> Context | None:
        """A worker starts running ``job`` (claimed at ``job.claimed_at``, due at ``job.scheduled_at``).

        Returns the context the run's task is to run in (None: a copy of the current one, as asyncio does).
        """

    def finished(self, job: ClaimedJob, outcome: Outcome) -> None:
        """The outcome of ``job``'s run was committed."""

    def worker_started(self, worker_id: str, running: Callable[[], int], concurrency: int) -> None:
        """A worker started; ``running()`` tells how many runs it has going on at any time."""

    def worker_stopped(self, worker_id: str) -> None:
        """A worker stopped."""


class Observers:
    """Several observers as one (:func:`attach` makes it): each is told of everything, in order.

    :meth:`started` returns the last context one of them returned: at most one observer (tracing)
    should supply the run's context.
    """

    __slots__ = ("observers",)

    def __init__(self, *observers: Observer) -> None:
        self.observers = observers

    def enqueued(self, jobs: Sequence[NewJob] | Uniform) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.enqueued(jobs)

    def started(self, job: ClaimedJob) -> Context | None:
        """Tell each observer; the context one of them returned, if any."""
        context = None
        for observer in self.observers:
            context = observer.started(job) or context
        return context

    def finished(self, job: ClaimedJob, outcome: Outcome) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.finished(job, outcome)

    def worker_started(self, worker_id: str, running: Callable[[], int], concurrency: int) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.worker_started(worker_id, running, concurrency)

    def worker_stopped(self, worker_id: str) -> None:
        """Tell each observer."""
        for observer in self.observers:
            observer.worker_stopped(worker_id)


class Observed(Protocol):
    """What holds the observer (an :class:`~aiojobs_pg.App`; named so to keep this module below ``app``)."""

    observer: Observer | None


def observers_of(app: Observed) -> tuple[Observer, ...]:
    """The observers attached to ``app``, in the order they were attached."""
    current = app.observer
    if current is None:
        return ()
    return current.observers if isinstance(current, Observers) else (current,)


def attach(app: Observed, observer: Observer) -> None:
    """Add ``observer`` to those of ``app`` (before its workers are created: they read ``app.observer`` then).

    One observer is set as it is; more are combined into an :class:`Observers`.
    """
    current = observers_of(app)
    if observer not in current:
        app.observer = observer if not current else Observers(*current, observer)


def detach(app: Observed, observer: Observer) -> None:
    """Take ``observer`` out of those of ``app`` (workers created later no longer tell it anything)."""
    rest = tuple(o for o in observers_of(app) if o is not observer)
    app.observer = None if not rest else rest[0] if len(rest) == 1 else Observers(*rest)


class EnqueueTracer(Protocol):
    """What ``app.tracing`` does (:mod:`aiojobs_pg.tracing`): wrap an enqueue's insert in a span."""

    async def enqueue(self, jobs: Sequence[NewJob], insert: Callable[[list[NewJob]], Awaitable[T]]) -> T:
        """Open the enqueue's span, stamp ``jobs`` with its context, ``await insert(stamped)``, close it."""

    def stamp(self, job: NewJob) -> NewJob:
        """``job`` with the current context as its creation context (a handler's ``ctx.enqueue``)."""
