"""A worker: notifier, producer, job tasks, completer, lease keeper and maintenance in one task group.

Shutdown drains: stop claiming, let running jobs finish for up to
``drain_timeout``, then cancel the rest and give their attempts back (they
return to ``pending``), flush every outcome, and leave.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypedDict

import anyio

from .completer import Completer, CompletionStep
from .events import Hooks
from .executor import Executor, utcnow
from .lane import Lanes
from .limits import plan_claims
from .logs import get_logger
from .maintenance import Maintenance
from .models import ClaimedJob, JobStatus, Outcome, RunStatus, micros
from .notifier import Notifier
from .observers import Observer
from .producer import Producer
from .progress import ProgressWriter
from .queries import (
    DB_ERRORS,
    HOT_PATH_SETTINGS,
    WEBHOOK_HANDLER,
    WEBHOOK_QUEUE,
    ClaimCondition,
    Connection,
    Pool,
    Queries,
    planned_once,
)
from .signals import Signals

log = get_logger("aiojobs_pg.worker")


@dataclass(frozen=True)
class WorkerSettings:
    """Tuning of one worker; the App fills it from its own settings and the call's arguments."""

    concurrency: int = 10
    queues: tuple[str, ...] = ("default",)
    burst: bool = False
    lease: float = 30.0
    poll_interval: float = 1.0
    drain_timeout: float = 30.0
    maintenance_interval: float = 5.0
    history: bool = True
    history_retention: float | None = 14 * 86400.0
    job_retention: float | None = 7 * 86400.0
    keep_completed: int | None = None
    force_exit_timeout: float = 2.0


class WorkerOverrides(TypedDict, total=False):
    """Fields of :class:`WorkerSettings` a worker may set apart from its App's (``app.worker(lease=5)``)."""

    lease: float
    poll_interval: float
    drain_timeout: float
    maintenance_interval: float
    history: bool
    history_retention: float | None
    job_retention: float | None
    keep_completed: int | None
    force_exit_timeout: float


def new_worker_id() -> str:
    """hostname:pid:random, unique across hosts and restarts."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Worker:
    """Runs jobs from the given queues until stopped (or, in burst mode, until nothing is due)."""

    def __init__(self, pool: Pool, queries: Queries, executor: Executor, settings: WorkerSettings,
                 connect: Callable[[], Awaitable[Connection]] | None, lanes: Lanes, *,
                 claim_conditions: Sequence[ClaimCondition] = (),
                 completion_steps: Sequence[CompletionStep] = (), hooks: Hooks | None = None,
                 observer: Observer | None = None, webhooks: bool = False, xact_locks: bool = False) -> None:
        self.pool = pool
        self.queries = queries
        self.executor = executor
        self.settings = settings
        self.id = executor.worker_id
        self.log = log.bind(worker_id=self.id)
        #: lifecycle hooks (``@app.on``), fired once an outcome is committed
        self.hooks = hooks or Hooks()
        #: told of each run's start and committed outcome (metrics: ``aiojobs_pg.metrics.instrument``); None: off
        self.observer = observer
        #: claimed and not yet completed in the database (running or awaiting a flush)
        self.inflight: dict[int, ClaimedJob] = {}
        #: jobs whose handler is running, with the task that runs it
        self.tasks: dict[int, asyncio.Task[None]] = {}
        #: monotonic time by which each in-flight job's lease, as last set in the database, has run out
        self._lease_deadlines: dict[int, float] = {}
        self._releasing = False
        self._force = False
        self._drain_scope: anyio.CancelScope | None = None
        self._completing_scope: anyio.CancelScope | None = None
        self._idle = asyncio.Event()  # cleared and reused: see Producer
        self._idle.set()
        self.started = anyio.Event()
        self.stopped = anyio.Event()
        #: counters of claims, flushes, rescues and prunes, to wait on in tests (see :class:`Signals`)
        self.signals = Signals()
        # The claim and completion lanes plan their statements once per connection (HOT_PATH_SETTINGS), where
        # the session is ours to set: not through PgBouncer in transaction mode, whose sessions are shared.
        hot_path = None if xact_locks else HOT_PATH_SETTINGS
        self.completer = Completer(lanes.lane(setup=hot_path), queries, history=settings.history,
                                   on_flushed=self._on_flushed,
                                   owned=self.inflight.__contains__, steps=completion_steps, signals=self.signals)
        #: jobs whose run is being stopped because the job was cancelled
        self._cancelling: set[int] = set()
        #: serves the webhook deliveries' queue while there is anything to deliver (its queues were not
        #: given: webhooks.py); its claim leaves that queue out meanwhile, so it costs nothing
        self.delivers_webhooks = webhooks
        self._webhooks_on = False
        #: a notification said there is something to deliver while a check of the database was in flight
        self._webhooks_told = False
        self.producer = Producer(lanes.lane(setup=hot_path), queries, worker_id=self.id, queues=settings.queues,
                                 handlers=[h for h in executor.handlers if not (webhooks and h == WEBHOOK_HANDLER)],
                                 lease=settings.lease,
                                 poll_interval=settings.poll_interval, free_slots=self.free_slots,
                                 spawn=self._spawn, burst=settings.burst, idle=self.is_idle,
                                 conditions=claim_conditions, signals=self.signals)
        self._claim_conditions = tuple(claim_conditions)
        #: the reload of the queues' limits a notification asked for (limits.py), while it runs
        self._limits_reload: asyncio.Task[None] | None = None
        self._limits_stale = False
        #: the progress handlers report, written in batches (see progress.py)
        self.progress = ProgressWriter(pool, queries)
        executor.on_progress = self.progress.report
        #: whether the notifier runs: ``connect=None`` (PgBouncer in transaction mode without a ``listen_dsn``)
        #: leaves the worker to its polls, and cancellations to its lease renewals (docs/pgbouncer.md)
        self.listening = connect is not None
        self.notifier = Notifier(connect or _no_listener, {queries.channel: self._on_notify,
                                           queries.control_channel: self._on_control},
                                 on_reconnect=self._reconnected)
        self.maintenance = Maintenance(pool, queries, history=settings.history,
                                       interval=settings.maintenance_interval,
                                       history_retention=settings.history_retention,
                                       job_retention=settings.job_retention,
                                       keep_completed=settings.keep_completed,
                                       worker_retention=max(settings.lease * 4, 60.0), signals=self.signals,
                                       xact_locks=xact_locks)

    # --- capacity ---
    def free_slots(self) -> int:
        """Slots free for new claims; zero while the completer is far behind (backpressure)."""
        if len(self.completer) >= max(self.settings.concurrency, 1000):
            return 0
        return self.settings.concurrency - len(self.tasks)

    def is_idle(self) -> bool:
        """Nothing running and nothing left to write."""
        return not self.inflight

    # --- job lifecycle ---
    def _on_notify(self, queue: str) -> None:
        if queue in self.producer.queues:
            self.producer.wake()
        elif queue == WEBHOOK_QUEUE and self.delivers_webhooks:  # a delivery was created
            self._told_of_webhooks()

    def _on_control(self, payload: str) -> None:
        # "due <seconds> <queue>": a deferred job was enqueued; "cancel <id>": a job was cancelled.
        kind, _, rest = payload.partition(" ")
        try:
            if kind == "due":
                seconds, _, queue = rest.partition(" ")
                if queue in self.producer.queues:
                    self.producer.due_in(float(seconds))
            elif kind == "cancel":
                self.cancel_run(int(rest))
            elif kind == "webhooks" and self.delivers_webhooks:  # a webhook was added (App.add_webhook)
                self._told_of_webhooks()
            elif kind == "limits" and rest in self.settings.queues:  # its limits changed (App.set_queue)
                self._reload_limits_soon()
        except ValueError:
            self.log.warning("bad_notification", payload=payload[:200])

    # --- limits (limits.py) ---
    async def load_limits(self) -> None:
        """Read the limits of this worker's queues and claim accordingly (with its handlers' limits)."""
        plan = plan_claims(self.queries, self.producer.queues, self.producer.claim.handlers, self.executor.handlers,
                           await self.queries.queue_settings(self.pool), self._claim_conditions)
        current = self.producer.plan
        if (None if plan is None else (plan.pairs, plan.queue_limits, plan.handler_limits)) != \
                (None if current is None else (current.pairs, current.queue_limits, current.handler_limits)):
            self.producer.plan = plan
            self.signals.emit("limits")
            self.log.info("limits_loaded", pairs=[f"{q}/{h}" for q, h in plan.pairs] if plan else [],
                          queues={q: str(v) for q, v in plan.queue_limits.items()} if plan else {})
            self.producer.wake()

    def _reload_limits_soon(self) -> None:
        self._limits_stale = True  # a reload under way may have read before this change: it reads again
        if self._limits_reload is None or self._limits_reload.done():
            self._limits_reload = asyncio.get_running_loop().create_task(self._reload_limits())

    async def _reload_limits(self) -> None:
        while self._limits_stale:
            self._limits_stale = False
            try:
                await self.load_limits()
            except DB_ERRORS as exc:  # the next lease tick tries again
                self.log.warning("limits_reload_failed", error=repr(exc))
                return

    def _reconnected(self) -> None:
        # Notifications sent while the listener was away are lost: look again.
        self.producer.reconnected()
        self._reload_limits_soon()

    def cancel_run(self, job_id: int) -> bool:
        """Stop the run of a job that was cancelled; False if this worker is not running it.

        An async handler's task is cancelled at once; a sync handler's thread goes on until it
        returns (it can look at ``ctx.cancelled``). The run is recorded as ``cancelled``.
        """
        task = self.tasks.get(job_id)
        if task is None or job_id in self._cancelling:
            return False
        self._cancelling.add(job_id)
        self._lease_deadlines.pop(job_id, None)  # nothing to renew: the cancel cleared the lease
        ctx = self.executor.contexts.get(job_id)
        if ctx is not None:
            ctx.cancel()
        task.cancel()
        return True

    def _spawn(self, job: ClaimedJob) -> None:
        # A bare asyncio task per job: asyncpg ties us to asyncio anyway, and an anyio
        # task group costs several times more per spawn on this hot path.
        self.inflight[job.id] = job
        self._lease_deadlines[job.id] = self.producer.claim_sent_at + self.settings.lease
        observer = self.observer
        if observer is None:
            self.tasks[job.id] = asyncio.get_running_loop().create_task(self._run_job(job))
        else:
            # Told before the task exists: it may hand the context the run is to see (tracing's span).
            self.tasks[job.id] = asyncio.get_running_loop().create_task(self._run_job(job),
                                                                        context=observer.started(job))
        self._idle.clear()

    async def _run_job(self, job: ClaimedJob) -> None:
        outcome: Outcome | None = None
        try:
            outcome = await self.executor.execute(job)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and not task.cancelling():
                # Nobody cancelled this task: the handler raised CancelledError itself.
                outcome = self.executor.failure(job, micros(job.claimed_at), "CancelledError raised by the handler",
                                                self.executor.handlers.get(job.handler))
            # Otherwise the worker cancelled it: because the job was cancelled, to release it at
            # shutdown, or because the lease was lost (then the job is not ours to complete).
            elif job.id in self._cancelling:
                outcome = self.executor.cancelled(job, micros(job.claimed_at))
            elif self._releasing:
                outcome = self.executor.released(job, micros(job.claimed_at))
        finally:
            del self.tasks[job.id]
            self._cancelling.discard(job.id)
            if outcome is not None and job.id in self.inflight:
                self.completer.put(outcome)
            else:
                self.inflight.pop(job.id, None)
            if not self.tasks:
                self._idle.set()
            self.producer.slot_freed()

    def _on_flushed(self, batch: Sequence[Outcome], applied: set[int]) -> None:
        # Hot path: a plain success costs two dict operations unless debug logging is on.
        debug = _enabled(self.log, logging.DEBUG)
        now: datetime | None = None
        hooks, observer = self.hooks, self.observer
        plan, freed = self.producer.plan, False
        for o in batch:
            job = self.inflight.pop(o.job_id, None)
            if plan is not None and job is not None and (job.queue, job.handler) in plan.limited_pairs:
                freed = True
            if o.job_id not in applied:
                self.log.warning("completion_fenced", job_id=o.job_id, attempt=o.attempt,
                                 reason="the job is no longer running under this attempt")
                continue
            if hooks and job is not None:
                hooks.fire(job, o)
            if observer is not None and job is not None:
                observer.finished(job, o)
            if o.job_status is JobStatus.PENDING:
                now = now or utcnow()
                due = (o.next_run_at - now).total_seconds() if o.next_run_at else (o.delay or 0.0)
                self.producer.due_in(due)
            if o.run_status is RunStatus.COMPLETED:
                if debug:
                    self.log.debug("job_completed", job_id=o.job_id, attempt=o.attempt,
                                   status=o.job_status.value, duration_ms=_ms(o))
            else:
                self.log.info("job_" + o.run_status.value, job_id=o.job_id, attempt=o.attempt,
                              status=o.job_status.value, duration_ms=_ms(o),
                              error=(o.error or "").strip().splitlines()[-1:] or None,
                              retry_in=round(o.delay, 3) if o.delay is not None and o.job_status is JobStatus.PENDING
                              else None)
        self.producer.slot_freed()
        if freed:  # a job under a limit ended: room for another, which an idle producer would wait a poll for
            self.producer.wake()

    def _lose(self, job_ids: set[int], reason: str) -> None:
        """Stop jobs this worker no longer owns; someone else will (or did) finish them."""
        lost = job_ids & self.inflight.keys()
        if not lost:
            return
        self.log.warning("jobs_lost", job_ids=sorted(lost), reason=reason)
        for job_id in lost:
            self.inflight.pop(job_id, None)
            self._lease_deadlines.pop(job_id, None)
            task = self.tasks.get(job_id)
            if task is not None:
                task.cancel()
        self.completer.drop(lost)

    async def _keep_leases(self) -> None:
        """Renew leases of all in-flight jobs in one statement, and beat the heart, every lease/3.

        A renewal that fails or hangs is only logged: :meth:`_watch_leases` stops the
        jobs whose leases could not be renewed in time, whatever this loop is waiting on.
        """
        interval = self.settings.lease / 3
        while True:
            started = time.monotonic()
            try:
                await self._heartbeat()
                await self._renew_once()
                self.signals.emit("renew")
            except DB_ERRORS as exc:
                self.log.warning("lease_renewal_failed", error=repr(exc))
            try:  # in case a notification of new limits was missed
                await self.load_limits()
            except DB_ERRORS as exc:
                self.log.warning("limits_reload_failed", error=repr(exc))
            await anyio.sleep(max(0.0, interval - (time.monotonic() - started)))

    async def _renew_once(self) -> None:
        jobs = [(j.id, j.token) for j in self.inflight.values()]
        if not jobs:
            return
        sent_at = time.monotonic()
        lease = self.settings.lease
        renewed = await planned_once(self.pool, lambda conn: self.queries.renew_leases(conn, jobs, lease))
        lost = set()
        for job_id, token in jobs:
            current = self.inflight.get(job_id)
            if current is None or current.token != token:
                continue  # finished, or finished and claimed again, while the renewal was in flight
            if job_id in renewed:
                self._lease_deadlines[job_id] = sent_at + self.settings.lease
            elif job_id in self.tasks:
                lost.add(job_id)
            # else the handler is done and its outcome, flushed or not, is fenced like any other
        if lost:
            # A cancel whose notification this worker missed: stop the run and record it, as on the notification.
            runs = [(j, self.inflight[j].token) for j in lost]
            cancelled = await planned_once(self.pool, lambda conn: self.queries.cancelled_runs(conn, runs))
            for job_id in cancelled:
                self.cancel_run(job_id)
            self._lose(lost - cancelled, "lease not renewed: the job was rescued or deleted")

    async def _watch_leases(self) -> None:
        """Stop the jobs whose lease could not be renewed, before it runs out in the database.

        A job's deadline counts from the moment its claim, or its last successful renewal,
        was *sent*: the database set the lease no earlier. The margin leaves a cancelled
        handler time to stop before another worker may rescue the job and run it again.
        """
        margin = min(1.0, self.settings.lease / 10)
        while True:
            now = time.monotonic()
            for job_id in [j for j in self._lease_deadlines if j not in self.inflight]:
                del self._lease_deadlines[job_id]
            expiring = {j for j, deadline in self._lease_deadlines.items() if now >= deadline - margin}
            if expiring:
                self._lose(expiring, "leases about to expire unrenewed: the database is unreachable")
            await anyio.sleep(margin / 2)

    async def _heartbeat(self) -> None:
        # What it claims now: the webhook deliveries' queue only while it serves it.
        await self.queries.worker_heartbeat(self.pool, self.id, socket.gethostname(), os.getpid(),
                                            self.producer.queues, self.settings.concurrency,
                                            self.producer.claim.handlers, self.settings.lease)

    # --- webhook deliveries (webhooks.py) ---
    def _serve_webhooks(self, on: bool) -> None:
        """Add the deliveries' queue and handler to the claim, or take them out again."""
        if on == self._webhooks_on:
            return
        self._webhooks_on = on
        queues = [*self.settings.queues, *[WEBHOOK_QUEUE] * on]
        handlers = [h for h in self.executor.handlers if on or h != WEBHOOK_HANDLER]
        self.producer.serve(queues, handlers)
        self._reload_limits_soon()  # the limits' claim plan is built from the queues served
        self.log.info("webhook_deliveries_served" if on else "webhook_deliveries_idle")

    def _told_of_webhooks(self) -> None:
        self._webhooks_told = True
        self._serve_webhooks(True)

    async def _watch_webhooks(self) -> None:
        """Serve the deliveries' queue while a webhook exists or a delivery is pending: asked at the start and
        every maintenance interval; a new webhook or delivery tells the worker at once (a notification)."""
        while True:
            self._webhooks_told = False
            try:
                active = await self.queries.webhooks_active(self.pool)
            except DB_ERRORS as exc:
                self.log.warning("webhooks_check_failed", error=repr(exc))
            else:
                # a notification that came while the check ran may be about what the check could not see yet
                if active or not self._webhooks_told:
                    self._serve_webhooks(active)
            await anyio.sleep(self.settings.maintenance_interval)

    # --- run and stop ---
    async def run(self) -> None:
        """Run until :meth:`stop` (or until idle in burst mode)."""
        s = self.settings
        self.log.info("worker_starting", queues=list(s.queues), concurrency=s.concurrency, burst=s.burst)
        await self._heartbeat()
        await self.load_limits()
        if self.observer is not None:
            self.observer.worker_started(self.id, self.tasks.__len__, s.concurrency)
        try:
            async with anyio.create_task_group() as background:
                if self.listening:
                    background.start_soon(self.notifier.run)
                background.start_soon(self._keep_leases)
                background.start_soon(self._watch_leases)
                background.start_soon(self.maintenance.run)
                background.start_soon(self.progress.run)
                if self.delivers_webhooks:
                    background.start_soon(self._watch_webhooks)
                async with anyio.create_task_group() as completing:
                    self._completing_scope = completing.cancel_scope
                    completing.start_soon(self.completer.run)
                    try:
                        self.started.set()
                        await self.producer.run()
                        await self._drain()
                        while self.tasks:
                            await self._idle.wait()
                    finally:
                        # Cancelled from outside: stop the handlers too; their leases expire.
                        for task in self.tasks.values():
                            task.cancel()
                    self.completer.close()
                    if self._force:
                        self._limit_final_flush()
                if not self._force:
                    await self.hooks.settle(s.drain_timeout)
                background.cancel_scope.cancel()
        finally:
            if self._limits_reload is not None:
                self._limits_reload.cancel()
            with anyio.CancelScope(shield=True), anyio.move_on_after(s.force_exit_timeout):
                for lane in (self.producer.lane, self.completer.lane):  # the pool's, whatever happens next
                    with contextlib.suppress(*DB_ERRORS):
                        await lane.close()
                with contextlib.suppress(*DB_ERRORS):
                    await self.queries.worker_remove(self.pool, self.id)
            if self.observer is not None:
                self.observer.worker_stopped(self.id)
            self.stopped.set()
            self.log.info("worker_stopped", claimed=self.producer.claimed, left_inflight=len(self.inflight))

    async def _drain(self) -> None:
        with anyio.CancelScope() as self._drain_scope:
            if self._force:
                self._drain_scope.cancel()
            with anyio.move_on_after(self.settings.drain_timeout):
                await self._idle.wait()
        if self.tasks:
            self.log.info("releasing_jobs", job_ids=sorted(self.tasks))
            self._releasing = True
            for task in self.tasks.values():
                task.cancel()

    def stop(self, *, force: bool = False) -> None:
        """Ask the worker to stop: drain gracefully, or (``force``) release running jobs at once."""
        self.producer.stopping = True
        self.producer.wake()
        self.producer.slot_freed()
        if force:
            self._force = True
            if self._drain_scope is not None:
                self._drain_scope.cancel()
            if self._completing_scope is not None:
                self._limit_final_flush()

    def _limit_final_flush(self) -> None:
        # A forced stop still tries to hand running jobs back, but only briefly:
        # whatever is not written in time is rescued when its lease expires.
        assert self._completing_scope is not None
        deadline = anyio.current_time() + self.settings.force_exit_timeout
        self._completing_scope.deadline = min(self._completing_scope.deadline, deadline)


async def _no_listener() -> Connection:
    raise AssertionError("a worker without a listener never connects one")


def _enabled(logger: Any, level: int) -> bool:
    """Whether ``logger`` emits ``level``; loggers that cannot tell are assumed to."""
    is_enabled_for = getattr(logger, "is_enabled_for", None) or getattr(logger, "isEnabledFor", None)
    return bool(is_enabled_for(level)) if is_enabled_for is not None else True


def _ms(o: Outcome) -> float:
    return round((o.finished_us - o.started_us) / 1000, 3)
