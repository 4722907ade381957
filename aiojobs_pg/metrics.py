"""Prometheus metrics of an App and its workers (the ``metrics`` extra: ``prometheus_client``).

Off unless enabled: ``metrics = aiojobs_pg.metrics.instrument(app)``, before the App's workers are
created. Then this process counts the jobs it enqueues, starts and finishes, by handler and queue,
and times their runs and how long they waited past their due time; at each scrape it reads the
jobs per queue and status and the oldest due job per queue from the database, and how many runs
each of its workers has going on. Serve them with ``GET /metrics`` of the HTTP API, with
:meth:`Metrics.start_http_server` (``python -m aiojobs_pg worker --metrics-port 9464``), or from a
server of your own with :meth:`Metrics.render`. Names, labels and a scrape example: docs/metrics.md.

Counting happens on the event loop, in memory, through the App's observer seam
(:mod:`aiojobs_pg.observers`): an App that is not instrumented pays one ``if`` per seam.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from bisect import bisect_left
from collections import Counter as Tally
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client import start_http_server as _start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from .enqueue import Uniform
from .errors import ConfigurationError, ValidationError
from .events import event_of
from .logs import get_logger
from .models import ClaimedJob, JobStatus, NewJob, Outcome
from .observers import attach, detach, observers_of
from .queries import DB_ERRORS

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from .app import App

__all__ = ["DURATION_BUCKETS", "LATENCY_BUCKETS", "Metrics", "MetricsServer", "instrument", "metrics_of"]

log = get_logger("aiojobs_pg.metrics")

#: buckets of ``aiojobs_pg_job_run_duration_seconds``: a millisecond to an hour
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                    900.0, 3600.0)
#: buckets of ``aiojobs_pg_job_pickup_latency_seconds``: five milliseconds to an hour
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
#: seconds a scrape waits for the database's counts before it reports ``aiojobs_pg_queue_stats_up 0``
READ_TIMEOUT = 5.0

_LABELS = ["handler", "queue"]
#: what reading the counts raises when the database cannot answer (or the App is closed)
_READ_ERRORS: tuple[type[Exception], ...] = (ConfigurationError, *DB_ERRORS)
_STATUSES = [s.value for s in JobStatus]

#: the counters, by name (``_total`` is added when exposed), with their help; their index in :attr:`_Series.counts`
_COUNTERS = [
    ("aiojobs_pg_jobs_enqueued", "Jobs enqueued by this process (an enqueue whose dedup_key returned the live job "
                                 "counts too)"),
    ("aiojobs_pg_jobs_started", "Runs started by this process's workers"),
    ("aiojobs_pg_jobs_completed", "Runs that succeeded"),
    ("aiojobs_pg_jobs_failed", "Runs that failed for good (attempts spent; a recurring job moves on to its next "
                               "tick)"),
    ("aiojobs_pg_jobs_retried", "Runs that failed, the job to run again after its backoff"),
    ("aiojobs_pg_jobs_cancelled", "Runs stopped because the job was cancelled, or whose handler raised Cancel"),
    ("aiojobs_pg_jobs_released", "Runs given back unfinished when a worker shut down (the attempt not charged)"),
]
_ENQUEUED, _STARTED = 0, 1
#: the counter each event of :func:`aiojobs_pg.events.event_of` adds to (None: a release at shutdown)
_EVENT_INDEX: dict[str | None, int] = {"completed": 2, "failed": 3, "retrying": 4, "cancelled": 5, None: 6}
_DURATION = ("aiojobs_pg_job_run_duration_seconds", "How long runs took, from the handler's start to its outcome "
                                                    "(releases left out)")
_LATENCY = ("aiojobs_pg_job_pickup_latency_seconds", "From a job's due time to its claim by a worker of this "
                                                     "process")
_GAUGES = ["aiojobs_pg_queue_stats_up", "aiojobs_pg_queue_jobs", "aiojobs_pg_queue_oldest_due_age_seconds",
           "aiojobs_pg_worker_running_jobs", "aiojobs_pg_worker_concurrency"]


class _Buckets:
    """A histogram's observations: a count per bucket (not cumulative; the last is +Inf) and their sum."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: the first bound >= value, as Prometheus' "le" buckets count
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def exposed(self) -> tuple[list[tuple[str, float]], float]:
        """Cumulative buckets as exposed, and the sum."""
        counts, total = list(self.counts), 0  # a copy: the loop may add one meanwhile
        cumulative = []
        # "le" as prometheus_client writes these bounds: 0.005, 1.0, 3600.0, +Inf
        for bound, count in zip([*(repr(float(b)) for b in self.bounds), "+Inf"], counts, strict=True):
            total += count
            cumulative.append((bound, float(total)))
        return cumulative, self.sum


class _Series:
    """What one (handler, queue) counted: plain numbers on the event loop, read when scraped."""

    __slots__ = ("counts", "duration", "latency")

    def __init__(self) -> None:
        self.counts = [0] * len(_COUNTERS)
        self.duration = _Buckets(DURATION_BUCKETS)
        self.latency = _Buckets(LATENCY_BUCKETS)


@dataclass
class _Snapshot:
    """What one read of the database found: queue_stats' rows and when they were read."""

    rows: list[dict[str, Any]]
    read_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class Metrics:
    """The metrics of one App in one registry; :func:`instrument` makes one and sets it as ``app.observer``.

    Counts are kept as plain numbers and handed to the registry when it collects: a
    ``prometheus_client`` counter or histogram takes a lock on every change, several times the
    cost of these (figures in docs/metrics.md).
    """

    def __init__(self, app: App, registry: CollectorRegistry, *, read_timeout: float = READ_TIMEOUT) -> None:
        self.app = app
        self.registry = registry
        self.read_timeout = read_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._snapshot: _Snapshot | None = None
        self._up = False
        #: per worker id: how many runs it has going on (a callable), and its concurrency
        self._workers: dict[str, tuple[Callable[[], int], int]] = {}
        self._series: dict[tuple[str, str], _Series] = {}
        self._collector: _Collector | None = _Collector(self)
        try:
            registry.register(self._collector)
        except ValueError as exc:  # prometheus_client's DuplicateTimeseries
            self._collector = None
            raise ConfigurationError(f"the registry already holds aiojobs_pg metrics ({exc}): instrument each App "
                                     "once, each in a registry of its own (registry=CollectorRegistry())") from None

    def unregister(self) -> None:
        """Take this App's metrics out of the registry, and stop observing it (workers created later)."""
        if self._collector is not None:
            self.registry.unregister(self._collector)
            self._collector = None
        detach(self.app, self)

    # --- the observer (aiojobs_pg.observers.Observer): on the event loop, in memory ---
    def _series_of(self, handler: str, queue: str) -> _Series:
        series = self._series.get((handler, queue))
        if series is None:
            series = self._series[handler, queue] = _Series()
        return series

    def enqueued(self, jobs: Sequence[NewJob] | Uniform) -> None:
        """Count jobs one enqueue call inserted."""
        if isinstance(jobs, Uniform):
            self._series_of(jobs.kind.handler, jobs.kind.queue).counts[_ENQUEUED] += jobs.count
            return
        for (handler, queue), count in Tally((j.handler, j.queue) for j in jobs).items():
            self._series_of(handler, queue).counts[_ENQUEUED] += count

    def started(self, job: ClaimedJob) -> None:
        """Count a run's start, and how long after its due time it was claimed."""
        series = self._series_of(job.handler, job.queue)
        series.counts[_STARTED] += 1
        # The worker's clock against the database's: one behind could make it negative (counted as 0).
        # _Buckets.observe written out: this runs for every job.
        wait = (job.claimed_at - job.scheduled_at).total_seconds()
        latency = series.latency
        latency.counts[bisect_left(latency.bounds, wait)] += 1
        if wait > 0:
            latency.sum += wait

    def finished(self, job: ClaimedJob, outcome: Outcome) -> None:
        """Count a committed outcome by its event, and time its run."""
        series = self._series_of(job.handler, job.queue)
        event = event_of(outcome)
        series.counts[_EVENT_INDEX[event]] += 1
        if event is not None:
            series.duration.observe((outcome.finished_us - outcome.started_us) / 1e6)

    def worker_started(self, worker_id: str, running: Callable[[], int], concurrency: int) -> None:
        """Report the worker's running jobs at each scrape, until it stops."""
        self._loop = asyncio.get_running_loop()
        self._workers[worker_id] = (running, concurrency)

    def worker_stopped(self, worker_id: str) -> None:
        """Stop reporting the worker."""
        self._workers.pop(worker_id, None)

    # --- reading the database, at scrape time ---
    async def refresh(self) -> bool:
        """Read the jobs per queue and status from the database for the next collection; False if it failed.

        :meth:`render` calls it; a collection in another thread (:meth:`start_http_server`) has it
        run on the App's event loop. A failure is logged, and reported as ``aiojobs_pg_queue_stats_up 0``.
        """
        self._loop = asyncio.get_running_loop()
        try:
            with anyio.fail_after(self.read_timeout):
                rows = await self.app.admin().queue_stats()
        except _READ_ERRORS as exc:
            log.warning("metrics_read_failed", error=repr(exc))
            self._up = False
            return False
        self._snapshot, self._up = _Snapshot(rows), True
        return True

    def _read_from_thread(self) -> None:
        # A scrape served by a thread (prometheus_client's server): the pool belongs to the App's loop.
        loop = self._loop
        if loop is None or loop.is_closed() or not loop.is_running():
            self._up = False
            return
        future = asyncio.run_coroutine_threadsafe(self.refresh(), loop)
        try:
            future.result(self.read_timeout + 1.0)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError) as exc:
            future.cancel()
            log.warning("metrics_read_failed", error=repr(exc))
            self._up = False

    def _collect_live(self) -> Iterable[Metric]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            self._read_from_thread()
        # else: on an event loop, which cannot wait for the database here; render() refreshed first
        up = GaugeMetricFamily("aiojobs_pg_queue_stats_up", "1 if this scrape read the jobs per queue from the "
                               "database, else 0 (the queue gauges are then left out)")
        up.add_metric([], 1.0 if self._up else 0.0)
        yield up
        jobs = GaugeMetricFamily("aiojobs_pg_queue_jobs", "Jobs per queue and status (completed: the one-off jobs "
                                 "kept in the history, from the counters)", labels=["queue", "status"])
        oldest = GaugeMetricFamily("aiojobs_pg_queue_oldest_due_age_seconds", "Age of the oldest pending job that "
                                   "is due, per queue (0 when none is due)", labels=["queue"])
        snapshot = self._snapshot
        if self._up and snapshot is not None:
            counts: dict[str, dict[str, float]] = {}
            ages: dict[str, float] = {}
            for row in snapshot.rows:
                counts.setdefault(row["queue"], dict.fromkeys(_STATUSES, 0.0))[row["status"]] = float(row["count"])
                due = row.get("oldest_due")
                if due is not None:
                    age = max(0.0, (snapshot.read_at - due).total_seconds())
                    ages[row["queue"]] = max(ages.get(row["queue"], 0.0), age)
            for queue, by_status in sorted(counts.items()):
                for status, count in by_status.items():
                    jobs.add_metric([queue, status], count)
                oldest.add_metric([queue], ages.get(queue, 0.0))
        yield jobs
        yield oldest
        running = GaugeMetricFamily("aiojobs_pg_worker_running_jobs", "Runs going on in each worker of this "
                                    "process", labels=["worker"])
        slots = GaugeMetricFamily("aiojobs_pg_worker_concurrency", "How many runs each worker of this process "
                                  "may have going on at once", labels=["worker"])
        for worker_id, (runs, concurrency) in list(self._workers.items()):
            running.add_metric([worker_id], float(runs()))
            slots.add_metric([worker_id], float(concurrency))
        yield running
        yield slots

    # --- exposing ---
    async def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The registry in the text format ``accept`` asks for (Prometheus' or OpenMetrics'), and its content type.

        Reads the database first (:meth:`refresh`), on this loop. For a route of your own:
        ``body, content_type = await metrics.render(request.headers.get("accept"))``.
        """
        await self.refresh()
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type

    def start_http_server(self, port: int, addr: str = "127.0.0.1") -> MetricsServer:
        """Serve the registry at ``http://addr:port/metrics`` from a thread (``prometheus_client``'s server).

        Call it from the App's event loop (its scrapes read the database on that loop). No
        authentication: ``addr`` defaults to this machine only; ``0.0.0.0`` lets any host scrape it.
        Raises :class:`~aiojobs_pg.errors.ConfigurationError` when the address cannot be bound.
        """
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValidationError("port", f"must be an integer from 0 to 65535, got {port!r}")
        self._loop = asyncio.get_running_loop()
        try:
            server, thread = _start_http_server(port, addr, registry=self.registry)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on {addr}:{port}: {exc.strerror or exc}") from None
        served = MetricsServer(server, thread)
        log.info("metrics_serving", url=f"http://{addr}:{served.port}/metrics")
        return served


class MetricsServer:
    """A running metrics server (from :meth:`Metrics.start_http_server`); :meth:`stop` ends it."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self.server = server
        self.thread = thread

    @property
    def port(self) -> int:
        """The port it listens on (the one the system chose, when 0 was asked for)."""
        return int(self.server.server_address[1])

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


class _Collector:
    """Hands the registry what :class:`Metrics` counted, and the gauges read when scraped."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Metric]:
        # Names only: registering must not read the database.
        for name, _ in _COUNTERS:
            yield CounterMetricFamily(name, "")
        for name, _ in (_DURATION, _LATENCY):
            yield HistogramMetricFamily(name, "")
        for name in _GAUGES:
            yield GaugeMetricFamily(name, "")

    def collect(self) -> Iterable[Metric]:
        # A copy: the loop may add a series meanwhile.
        series = sorted(list(self.metrics._series.items()), key=lambda item: item[0])
        for index, (name, help_text) in enumerate(_COUNTERS):
            counter = CounterMetricFamily(name, help_text, labels=_LABELS)
            for labels, counted in series:
                counter.add_metric(list(labels), float(counted.counts[index]))
            yield counter
        for (name, help_text), attribute in ((_DURATION, "duration"), (_LATENCY, "latency")):
            histogram = HistogramMetricFamily(name, help_text, labels=_LABELS)
            for labels, counted in series:
                buckets, total = getattr(counted, attribute).exposed()
                histogram.add_metric(list(labels), buckets, total)
            yield histogram
        yield from self.metrics._collect_live()


def instrument(app: App, registry: CollectorRegistry | None = None, *,
               read_timeout: float = READ_TIMEOUT) -> Metrics:
    """Enable Prometheus metrics for ``app`` in ``registry`` (default: ``prometheus_client.REGISTRY``).

    Call it before creating the App's workers (they read ``app.observer`` when created). Calling it
    again with the same registry (or none) returns the same :class:`Metrics`. One App per registry:
    a second App needs a registry of its own (``prometheus_client.CollectorRegistry()``).
    """
    if registry is not None and not isinstance(registry, CollectorRegistry):
        raise ValidationError("registry", f"must be a prometheus_client.CollectorRegistry, got {registry!r}")
    if isinstance(read_timeout, bool) or not isinstance(read_timeout, int | float) or not read_timeout > 0:
        raise ValidationError("read_timeout", f"must be a positive number of seconds, got {read_timeout!r}")
    target = REGISTRY if registry is None else registry
    current = metrics_of(app)
    if current is not None:
        if current.registry is target:
            return current
        raise ConfigurationError("this App is instrumented in another registry already")
    metrics = Metrics(app, target, read_timeout=read_timeout)
    attach(app, metrics)  # beside tracing's observer, if it is on (aiojobs_pg.observers.Observers)
    return metrics


def metrics_of(app: App) -> Metrics | None:
    """The App's :class:`Metrics`, if :func:`instrument` enabled them."""
    return next((o for o in observers_of(app) if isinstance(o, Metrics)), None)
