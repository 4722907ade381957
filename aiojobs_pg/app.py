"""``App``: the handler registry, the settings, and the composition root.

``async with app`` opens the pool and migrates; enqueue and management calls
go through it; ``run_worker`` / ``worker()`` run workers on the same pool.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, TypeVar, Unpack

import anyio

from . import enqueue as enq
from . import webhooks
from .admin import UNSET, Admin, Page, QueueSettings, Unset
from .completer import CompletionStep
from .embedded import resolve_dsn
from .errors import ConfigurationError, ValidationError
from .events import Hook, Hooks
from .executor import Backoff, Executor, Handler, HandlerSpec
from .lane import Lane, Lanes
from .logs import get_logger
from .models import DEFAULT_MAX_DATA_BYTES, Job, NewJob, Run
from .observers import EnqueueTracer, Observer
from .queries import (
    DB,
    WEBHOOK_HANDLER,
    ClaimCondition,
    Conn,
    Connection,
    GuardedDB,
    Pool,
    Queries,
    connect,
    create_pool,
    guarded,
    schema_or_default,
)
from .schedules import parse_duration
from .schema import migrate
from .validation import (
    MAX_ATTEMPTS,
    MAX_NAME_LENGTH,
    MAX_PARENTS,
    MAX_QUEUE_LENGTH,
    Duration,
    RateLimit,
    check_concurrency_limit,
    check_int,
    check_parents,
    check_text,
    parse_rate_limit,
)
from .waiting import Waiters
from .webhooks import Webhook, WebhookOptions
from .worker import Worker, WorkerOverrides, WorkerSettings, new_worker_id

log = get_logger("aiojobs_pg.app")

F = TypeVar("F", bound=Handler)
H = TypeVar("H", bound=Hook)
T = TypeVar("T")
P = ParamSpec("P")


def _seconds(value: float | int | Duration, field: str) -> float:
    return parse_duration(value, field=field, allow_zero=False).total_seconds()


class App:
    """An aiojobs_pg application: handlers, settings, a connection pool.

    ``dsn=None`` reads ``AIOJOBS_PG_DSN``, then ``DATABASE_URL``, then starts the
    embedded server (the ``embedded`` extra). ``schema=None`` reads
    ``AIOJOBS_PG_SCHEMA`` and defaults to ``aiojobs_pg``.

    ``max_data_bytes`` (default 1 MiB, the HTTP API's body limit; ``None``: no limit) bounds
    the size of job data and handler results, measured on the UTF-8 JSON text that is
    stored. Data over it is refused with :class:`~aiojobs_pg.errors.DataTooLarge` (a
    :class:`~aiojobs_pg.errors.ValidationError` naming the field) by :meth:`enqueue`,
    :meth:`enqueue_many`, :meth:`update_job` and :meth:`periodic`, and nothing is
    written. A result over it is not stored: the attempt fails with a ``result too
    large`` error, recorded in the history and ``last_error`` like any handler error,
    and the job's retry policy applies (the handler runs again, side effects included).

    Retention: workers prune, one at a time, history rows older than ``history_retention``
    (completed one-off jobs with them) and cancelled jobs older than ``job_retention``.
    ``keep_completed=N`` (BullMQ's ``removeOnComplete: N``) also keeps at most the newest N
    completed jobs of each queue, each with its runs. A failed job (a dead letter) is never
    deleted by pruning: it stays until retried or deleted (its runs older than
    ``history_retention`` go like any others). See docs/architecture.md, "Retention".

    PgBouncer in transaction mode (docs/pgbouncer.md): ``pgbouncer=True`` (default: ``$AIOJOBS_PG_PGBOUNCER``
    is ``1``/``true``) when ``dsn`` goes through it. The pool then prepares no named statements, and the
    pruning and migration locks last one transaction. ``listen_dsn`` (default: ``$AIOJOBS_PG_LISTEN_DSN``)
    is a direct connection to the same database for LISTEN (workers' wake-ups, :meth:`wait`); without
    it such an App listens to nothing: its workers poll every ``poll_interval``, and so does :meth:`wait`.
    Without ``pgbouncer``, LISTEN uses ``listen_dsn`` when given, else ``dsn``.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        schema: str | None = None,
        auto_migrate: bool = True,
        default_max_attempts: int = 3,
        backoff: Backoff | None = None,
        enable_history: bool = True,
        lease: Duration = 30.0,
        poll_interval: Duration = 1.0,
        drain_timeout: Duration = 30.0,
        maintenance_interval: Duration = 5.0,
        job_timeout: Duration | None = None,
        history_retention: Duration | None = "14d",
        job_retention: Duration | None = "7d",
        keep_completed: int | None = None,
        validate_handlers: bool | None = None,
        pool_min_size: int = 1,
        pool_max_size: int = 10,
        command_timeout: Duration = 60.0,
        max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES,
        listen_dsn: str | None = None,
        pgbouncer: bool | None = None,
    ) -> None:
        self._dsn = dsn
        self.listen_dsn = _listen_dsn(listen_dsn)
        self.pgbouncer = _pgbouncer(pgbouncer)
        self.queries = Queries(schema_or_default(schema))
        self.schema = self.queries.schema
        self.auto_migrate = auto_migrate
        self.default_max_attempts = check_int(default_max_attempts, "default_max_attempts", minimum=1,
                                              maximum=MAX_ATTEMPTS)
        self.backoff = backoff or Backoff()
        self.enable_history = enable_history
        self.lease = _seconds(lease, "lease")
        self.poll_interval = _seconds(poll_interval, "poll_interval")
        self.drain_timeout = parse_duration(drain_timeout, field="drain_timeout").total_seconds()
        self.maintenance_interval = _seconds(maintenance_interval, "maintenance_interval")
        self.job_timeout = None if job_timeout is None else _seconds(job_timeout, "job_timeout")
        self.history_retention = None if history_retention is None else _seconds(history_retention,
                                                                                 "history_retention")
        self.job_retention = None if job_retention is None else _seconds(job_retention, "job_retention")
        self.keep_completed = None if keep_completed is None else check_int(
            keep_completed, "keep_completed", minimum=0, maximum=sys.maxsize)
        self.validate_handlers = validate_handlers
        self.pool_min_size = pool_min_size
        self.pool_max_size = pool_max_size
        self.command_timeout = _seconds(command_timeout, "command_timeout")
        self.max_data_bytes = None if max_data_bytes is None else check_int(
            max_data_bytes, "max_data_bytes", minimum=1, maximum=sys.maxsize)
        self.handlers: dict[str, HandlerSpec] = {}
        #: conditions every worker's claim adds, and work every completion does in its transaction: the
        #: seams where features plug in (docs/architecture.md, "Seams"); read when a worker is created
        self.claim_conditions: list[ClaimCondition] = []
        self.completion_steps: list[CompletionStep] = []
        #: lifecycle hooks (:meth:`on`)
        self.hooks = Hooks()
        #: told of enqueues, runs and workers (metrics: :func:`aiojobs_pg.metrics.instrument` sets it); read when
        #: a worker is created; None (the default) costs nothing
        self.observer: Observer | None = None
        #: wraps each enqueue in a span and stores its context with the jobs (:func:`aiojobs_pg.tracing.instrument`
        #: sets it); None (the default) costs one ``if`` per enqueue
        self.tracing: EnqueueTracer | None = None
        #: how this App's workers deliver webhooks (timeout, backoff); read when a worker is created
        self.webhook_options = WebhookOptions()
        #: schedules declared with :meth:`periodic`, by key
        self.periodic_jobs: dict[str, enq.NewJob] = {}
        self._pool: Pool | None = None
        self._lanes: Lanes | None = None
        self._enqueue_lane: Lane | None = None
        #: the enqueue calls' statements: on the enqueue lane, outages guarded (queries.GuardedDB)
        self._enqueue_db: GuardedDB | None = None
        #: kinds of plain jobs validated already (enqueue.prepare_plain)
        self._validated: enq.Validated = set()
        #: the waits of App.wait, and their listener (opened at the first wait)
        self._waiters: Waiters | None = None
        self.dsn: str | None = None

    # --- handlers ---
    def handler(self, name: str | None = None, *, backoff: Backoff | None = None,
                timeout: Duration | None = None, concurrency_limit: int | None = None,
                rate_limit: str | RateLimit | None = None) -> Callable[[F], F]:
        """Decorator registering an ``async def handler(data[, ctx])`` (or a sync one, run in a thread).

        The name defaults to the function's name; keep it stable, since queued jobs refer to it.

        ``concurrency_limit=N``: at most N of its jobs run at once across every worker and host;
        ``rate_limit="N/period"`` (``"100/1m"``): at most N start in any window of the period. Both
        count per ``concurrency_key`` for a job enqueued with one, else per handler (docs/limits.md).
        Every worker that runs the handler must declare the same limits.
        """
        def decorate(fn: F) -> F:
            self.register(name or fn.__name__, fn, backoff=backoff, timeout=timeout,
                          concurrency_limit=concurrency_limit, rate_limit=rate_limit)
            return fn
        return decorate

    def on(self, event: str) -> Callable[[H], H]:
        """Decorator: call ``hook(job, error)`` after each ``event`` in this process's workers.

        ``event`` is ``"completed"``, ``"failed"`` (attempts spent), ``"cancelled"`` or
        ``"retrying"`` (an attempt failed and the job runs again). ``job`` is the job as its
        worker claimed it (id, handler, data, queue, attempt, ...), ``error`` the run's error
        (None when it completed). A hook runs after the outcome was committed, in a task of its
        own; one that raises is logged and changes nothing. Hooks are for alerting and metrics
        in this process: a worker that died fires none (see webhooks for what must not be lost).
        """
        self.hooks.check(event)

        def decorate(fn: H) -> H:
            self.hooks.add(event, fn)
            return fn
        return decorate

    def register(self, name: str, fn: Handler, *, backoff: Backoff | None = None,
                 timeout: Duration | None = None, concurrency_limit: int | None = None,
                 rate_limit: str | RateLimit | None = None) -> None:
        """Register ``fn`` under ``name`` (at run time too; workers started later see it).

        ``concurrency_limit`` and ``rate_limit``: as in :meth:`handler`.
        """
        check_text(name, "handler", max_length=MAX_NAME_LENGTH)
        if name == WEBHOOK_HANDLER:
            raise ValidationError("handler", f"{name!r} is the built-in webhook delivery handler's name")
        if name in self.handlers and self.handlers[name].fn is not fn:
            raise ValidationError("handler", f"{name!r} is already registered to another function")
        self.handlers[name] = HandlerSpec.build(
            name, fn, backoff=backoff, timeout=None if timeout is None else _seconds(timeout, "timeout"),
            concurrency_limit=None if concurrency_limit is None else check_concurrency_limit(concurrency_limit),
            rate_limit=None if rate_limit is None else parse_rate_limit(rate_limit))

    def periodic(self, schedule: str, *, name: str | None = None, data: Any = None, timezone: str | None = None,
                 queue: str = "default", priority: int = 0, max_attempts: int | None = None,
                 timeout: Duration | None = None, misfire: str = "skip", overlap: str = "wait",
                 backoff: Backoff | None = None) -> Callable[[F], F]:
        """Decorator declaring a recurring job and registering its handler.

        ``name`` (default: the function's name) identifies the schedule: every worker
        creates or updates that one row when it starts, so the schedule exists once
        however many workers declare it. Validated here, at declaration.
        """
        def decorate(fn: F) -> F:
            key = name or fn.__name__
            check_text(key, "name", max_length=MAX_NAME_LENGTH)
            if key in self.periodic_jobs:
                raise ValidationError("name", f"a schedule named {key!r} is already declared")
            job = enq.prepare(
                fn.__name__, data, name=key, queue=queue, priority=priority,
                max_attempts=self.default_max_attempts if max_attempts is None else max_attempts,
                timeout=timeout, schedule=schedule, timezone=timezone, misfire=misfire, overlap=overlap,
                max_data_bytes=self.max_data_bytes)
            self.register(fn.__name__, fn, backoff=backoff)
            self.periodic_jobs[key] = job
            return fn
        return decorate

    async def sync_periodic(self) -> dict[str, str]:
        """Create or update the rows of declared schedules; returns key → created/updated/unchanged.

        Workers call this when they start. A declared schedule whose job is paused
        (cancelled) stays paused.
        """
        outcome = {}
        for key, job in self.periodic_jobs.items():
            # The first tick is computed now, not at declaration time.
            fresh = enq.prepare(job.handler, None, schedule=job.schedule, timezone=job.timezone,
                                max_attempts=job.max_attempts)
            declared = dataclasses.replace(job, run_at=fresh.run_at)
            row = await self.queries.upsert_periodic(guarded(self.pool, self.queries), declared, key)
            outcome[key] = "unchanged" if row is None else ("created" if row.inserted else "updated")
            if row is not None:
                log.info("schedule_declared", key=key, schedule=job.schedule, action=outcome[key])
        return outcome

    def _known_handlers(self) -> Collection[str] | None:
        check = self.validate_handlers if self.validate_handlers is not None else bool(self.handlers)
        return self.handlers.keys() if check else None

    # --- where it runs ---
    def retarget(self, *, dsn: str | None = None, schema: str | None = None) -> None:
        """Point a closed app at another database and/or schema (``None`` keeps the current one).

        For command lines that load an App from a module and override where it runs.
        """
        if self._pool is not None:
            raise ConfigurationError("retarget() needs a closed app")
        if dsn:
            self._dsn = dsn
        if schema:
            self.queries = Queries(schema)
            self.schema = self.queries.schema

    # --- lifecycle ---
    @property
    def pool(self) -> Pool:
        """The connection pool (``async with app`` first)."""
        if self._pool is None:
            raise ConfigurationError("the app is not open: use 'async with app:' or 'await app.open()'")
        return self._pool

    async def open(self) -> None:
        """Resolve the DSN, open the pool, and apply pending migrations (if ``auto_migrate``)."""
        if self._pool is not None:
            return
        self.dsn = await anyio.to_thread.run_sync(resolve_dsn, self._dsn)
        self._pool = await create_pool(self.dsn, min_size=self.pool_min_size, max_size=self.pool_max_size,
                                       command_timeout=self.command_timeout, statement_cache=not self.pgbouncer)
        self._lanes = Lanes(self._pool)
        self._enqueue_lane = self._lanes.lane()
        self._enqueue_db = guarded(self._enqueue_lane, self.queries)
        if self.auto_migrate:
            await self.migrate()

    async def close(self) -> None:
        """Close the pool (and the listener of :meth:`wait`, if one was opened)."""
        if self._waiters is not None:
            waiters, self._waiters = self._waiters, None
            await waiters.close()
        if self._pool is not None:
            pool, self._pool = self._pool, None
            lanes, self._lanes, self._enqueue_lane, self._enqueue_db = self._lanes, None, None, None
            if lanes is not None:
                await lanes.close()
            await pool.close()

    async def __aenter__(self) -> App:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def migrate(self) -> list[int]:
        """Apply pending migrations; returns the versions applied."""
        async with self.pool.acquire() as conn:
            return await migrate(conn, self.schema, xact_lock=self.pgbouncer)

    # --- enqueue ---
    async def enqueue(
        self,
        handler: str,
        data: Any = None,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int | None = None,
        timeout: Duration | None = None,
        delay: Duration | None = None,
        run_at: datetime | None = None,
        dedup_key: str | None = None,
        schedule: str | None = None,
        timezone: str | None = None,
        misfire: str = "skip",
        overlap: str = "wait",
        after: Collection[int | Job] | None = None,
        on_parent_failure: str | None = None,
        dedup_window: Duration | None = None,
        backoff: Backoff | None = None,
        concurrency_key: str | None = None,
        connection: Conn | None = None,
    ) -> Job:
        """Add a job. With ``connection``, the insert joins that connection's transaction.

        With ``after`` (job ids, or jobs), the job waits in status ``waiting`` until all of them
        completed, then runs with their results in ``ctx.parent_results``. When one fails or is
        cancelled, it fails or is cancelled too (the reason in ``last_error``), unless
        ``on_parent_failure`` is ``"cancel"`` (always cancelled) or ``"run"`` (runs anyway). A
        parent that does not exist (or was pruned from the history) or is recurring is refused.

        Raises :class:`~aiojobs_pg.errors.ValidationError` (naming the field) and writes
        nothing when an argument is invalid, ``data`` over ``max_data_bytes`` included
        (:class:`~aiojobs_pg.errors.DataTooLarge`). With ``dedup_key``, returns the pending or
        running job that already holds the key, if there is one; with ``dedup_window`` too (a
        duration, ``"1h"``), the newest job with the key created within that window whatever its
        status (Oban's unique period). A returned job that existed already has ``existing`` set
        (docs/flow-control.md, "Uniqueness over a window").

        ``backoff`` (a :class:`Backoff`; ``Backoff.fixed(5)``) is how long its failed attempts wait
        before the next, in preference to its handler's and the app's.

        ``concurrency_key`` (a customer id, say): the limits its handler declares count per key, so
        that at most ``concurrency_limit`` jobs with this key run at once (docs/limits.md).

        Raises :class:`~aiojobs_pg.errors.DatabaseUnavailable` when the database cannot be
        reached or the connection is lost; an insert the lost connection never sent is first
        tried on a fresh one. Its ``may_have_run`` is True when the insert was sent and no
        answer came: the job may exist (a ``dedup_key`` makes enqueueing it again safe).
        """
        attempts = self.default_max_attempts if max_attempts is None else max_attempts
        # The plain path validates only what prepare_plain takes; every other keyword must be at its default
        # here (tests/unit/test_enqueue_keywords.py fails on a keyword of this signature left out).
        if (name is None and timeout is None and delay is None and run_at is None and dedup_key is None
                and schedule is None and timezone is None and misfire == "skip" and overlap == "wait"
                and after is None and on_parent_failure is None and dedup_window is None and backoff is None
                and concurrency_key is None):
            job = enq.prepare_plain(handler, data, queue, priority, attempts, self._known_handlers(), self._validated,
                                    max_data_bytes=self.max_data_bytes)
        else:
            job = enq.prepare(
                handler, data, name=name, queue=queue, priority=priority, max_attempts=attempts,
                timeout=timeout, delay=delay, run_at=run_at, dedup_key=dedup_key, schedule=schedule,
                timezone=timezone, misfire=misfire, overlap=overlap, after=after,
                on_parent_failure=on_parent_failure, dedup_window=dedup_window, backoff=backoff,
                concurrency_key=concurrency_key, known_handlers=self._known_handlers(),
                max_data_bytes=self.max_data_bytes)
        if self.tracing is None:
            inserted = await self._enqueue_on(connection, enq.insert_one, self.queries, job)
        else:  # a traced job carries its context, so it is not plain: the general insert (docs/tracing.md)
            inserted = await self.tracing.enqueue(
                (job,), lambda stamped: self._enqueue_on(connection, enq.insert_one, self.queries, stamped[0]))
        if self.observer is not None:
            self.observer.enqueued((job,))
        return inserted

    async def enqueue_many(self, jobs: Sequence[Mapping[str, Any]], *,
                           connection: Conn | None = None) -> Sequence[Job]:
        """Add many jobs in one statement; each item takes :meth:`enqueue`'s keywords plus ``handler``.

        All or nothing: one invalid item rejects the batch before anything is written (the error's
        ``field`` names the item: ``"jobs[3].data"`` for data over ``max_data_bytes``). Returns
        the jobs in input order; without dedup keys, as a :class:`~aiojobs_pg.enqueue.JobBatch`
        that builds them when first read (its ``ids`` need no building). An outage raises
        :class:`~aiojobs_pg.errors.DatabaseUnavailable`, as in :meth:`enqueue`.
        """
        tracing = self.tracing
        # Traced jobs carry their context: a batch of them is not one Uniform kind (docs/tracing.md)
        prepared = enq.prepare_many(jobs, max_attempts=self.default_max_attempts,
                                    known_handlers=self._known_handlers(), validated=self._validated,
                                    max_data_bytes=self.max_data_bytes, uniform=tracing is None)
        if tracing is None or isinstance(prepared, enq.Uniform):
            batch = await self._enqueue_on(connection, enq.insert_many, self.queries, prepared)
        else:
            batch = await tracing.enqueue(
                prepared, lambda stamped: self._enqueue_on(connection, enq.insert_many, self.queries, stamped))
        if self.observer is not None:
            self.observer.enqueued(prepared)
        return batch

    async def chain(self, steps: Sequence[Mapping[str, Any]], *, connection: Conn | None = None) -> list[Job]:
        """Enqueue jobs that run one after another: each step waits for the one before it (``after=``).

        Each step takes :meth:`enqueue_many`'s items (``{"handler": ..., "data": ..., ...}``); a step
        that fails or is cancelled ends the steps after it the same way (see ``on_parent_failure``).
        All or nothing: the steps are validated first, then inserted in one transaction (the caller's,
        with ``connection``). Returns the jobs in order: the first is pending, the others waiting.
        """
        prepared = self._prepare_steps(steps, "steps")
        if not prepared:
            raise ValidationError("steps", "a chain needs at least one step")
        if self.tracing is not None:
            return await self.tracing.enqueue(
                prepared, lambda stamped: self._atomically(connection, enq.insert_chain, self.queries, stamped))
        return await self._atomically(connection, enq.insert_chain, self.queries, prepared)

    async def group(self, members: Sequence[Mapping[str, Any]], *, then: Mapping[str, Any],
                    connection: Conn | None = None) -> tuple[list[Job], Job]:
        """Enqueue jobs that run side by side, and ``then``, a callback that runs once all of them completed.

        The callback reads their results in ``ctx.parent_results``; if one fails or is cancelled, so is
        the callback (unless its ``on_parent_failure`` says otherwise). Items as in :meth:`enqueue_many`;
        validated first, then inserted in one transaction. Returns the members and the callback.
        """
        prepared = self._prepare_steps(members, "members")
        if not 1 <= len(prepared) <= MAX_PARENTS:
            raise ValidationError("members", f"a group needs 1 to {MAX_PARENTS} members, got {len(prepared)}")
        callback = self._prepare_steps([then], "then")[0]
        if self.tracing is not None:
            return await self.tracing.enqueue(
                [*prepared, callback],
                lambda stamped: self._atomically(connection, enq.insert_group, self.queries, stamped[:-1], stamped[-1]))
        return await self._atomically(connection, enq.insert_group, self.queries, prepared, callback)

    def _prepare_steps(self, items: Sequence[Mapping[str, Any]], field: str) -> list[NewJob]:
        """Validate a workflow's jobs: one-off jobs (one that never completes would hold up the rest), whose
        ``on_parent_failure`` needs no ``after`` of their own (the chain or group gives them parents)."""
        if isinstance(items, Mapping | str) or not isinstance(items, Sequence):
            raise ValidationError(field, f"must be a list of jobs, got {type(items).__name__}")
        items = [dict(item) if isinstance(item, Mapping) else item for item in items]
        policies: dict[int, Any] = {}
        for index, item in enumerate(items):
            if not isinstance(item, dict):
                continue  # prepare_many names it
            if item.get("schedule") is not None:
                raise ValidationError(f"{field}[{index}].schedule", "a workflow's jobs are one-off: no schedule")
            if item.get("after") is None and "on_parent_failure" in item:
                policies[index] = item.pop("on_parent_failure")
                check_parents([1], policies[index], recurring=False, field=f"{field}[{index}].on_parent_failure")
        prepared = enq.prepare_many(items, max_attempts=self.default_max_attempts,
                                    known_handlers=self._known_handlers(), validated=self._validated,
                                    max_data_bytes=self.max_data_bytes, uniform=False, field=field)
        for index, policy in policies.items():
            prepared[index] = dataclasses.replace(prepared[index], on_parent_failure=policy)
        return prepared

    async def _atomically(self, connection: Conn | None, insert: Callable[Concatenate[DB, P], Awaitable[T]],
                          *args: P.args, **kwargs: P.kwargs) -> T:
        # Several statements, one transaction: on the caller's connection (a savepoint inside its own
        # transaction), else on a connection of the pool.
        if connection is not None:
            async with connection.transaction():
                return await insert(guarded(connection, self.queries), *args, **kwargs)
        async with self.pool.acquire() as conn, conn.transaction():
            return await insert(guarded(conn, self.queries), *args, **kwargs)

    def _prepare_follow_up(self, handler: str, data: Any = None, *, max_attempts: int | None = None,
                           **fields: Any) -> NewJob:
        """Validate a job a handler enqueues with ``ctx.enqueue``, as :meth:`enqueue` would."""
        attempts = self.default_max_attempts if max_attempts is None else max_attempts
        job = enq.prepare(handler, data, max_attempts=attempts, known_handlers=self._known_handlers(),
                          max_data_bytes=self.max_data_bytes, **fields)
        # Traced: the follow-up's creation context is the run's span (the handler's current context).
        return job if self.tracing is None else self.tracing.stamp(job)

    async def _parent_results(self, job_ids: Sequence[int]) -> dict[int, Any]:
        return await self.queries.parent_results(guarded(self.pool, self.queries), job_ids)

    async def _enqueue_on(self, connection: Conn | None,
                          insert: Callable[Concatenate[DB, P], Awaitable[T]], *args: P.args, **kwargs: P.kwargs) -> T:
        # The caller's connection (its transaction); else each statement on the enqueue lane, or on a pool
        # connection of its own while a concurrent call holds the lane. Guarded: a lost connection raises
        # DatabaseUnavailable, after a retry on a fresh one if the statement was never sent.
        if connection is not None:
            return await insert(guarded(connection, self.queries), *args, **kwargs)
        db = self._enqueue_db
        return await insert(db if db is not None else guarded(self.pool, self.queries), *args, **kwargs)

    # --- management ---
    def admin(self, connection: DB | None = None) -> Admin:
        """Management operations, on ``connection`` (e.g. inside a transaction) or the pool."""
        return Admin(connection or self.pool, self.queries, max_data_bytes=self.max_data_bytes)

    async def get_job(self, job_id: int) -> Job:
        """The job with this id (:class:`~aiojobs_pg.errors.JobNotFound` otherwise)."""
        return await self.admin().get_job(job_id)

    async def list_jobs(self, *, status: str | None = None, queue: str | None = None,
                        handler: str | None = None, limit: int = 100, cursor: int | None = None) -> list[Job]:
        """Jobs newest first (one page; see :meth:`Admin.list_jobs` for the cursor)."""
        page: Page = await self.admin().list_jobs(status=status, queue=queue, handler=handler, limit=limit,
                                                  cursor=cursor)
        return page.jobs

    async def job_history(self, job_id: int) -> list[Run]:
        """Every recorded run of the job, oldest first."""
        return await self.admin().history(job_id)

    async def update_job(self, job_id: int, *, name: str | Unset | None = UNSET, data: Any = UNSET,
                         priority: int | Unset = UNSET, max_attempts: int | Unset = UNSET,
                         queue: str | Unset = UNSET, run_at: datetime | Unset = UNSET,
                         schedule: str | Unset | None = UNSET, timezone: str | Unset | None = UNSET,
                         timeout: Duration | Unset | None = UNSET) -> Job:
        """Change fields of a job; arguments not given are left as they are (see :meth:`Admin.update_job`)."""
        return await self.admin().update_job(job_id, name=name, data=data, priority=priority,
                                             max_attempts=max_attempts, queue=queue, run_at=run_at,
                                             schedule=schedule, timezone=timezone, timeout=timeout)

    async def delete_job(self, job_id: int) -> None:
        """Delete a job and its history."""
        await self.admin().delete_job(job_id)

    async def trigger(self, job_id: int) -> Job:
        """Run a job now."""
        return await self.admin().trigger(job_id)

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending or running job."""
        return await self.admin().cancel(job_id)

    async def retry_failed(self, *, queue: str | None = None, handler: str | None = None) -> int:
        """Re-queue every failed job of ``queue`` and/or ``handler`` (all if neither); how many."""
        return await self.admin().retry_failed(queue=queue, handler=handler)

    async def cancel_pending(self, *, queue: str | None = None, handler: str | None = None) -> int:
        """Cancel every pending job of ``queue`` and/or ``handler`` (all if neither); how many."""
        return await self.admin().cancel_pending(queue=queue, handler=handler)

    async def delete_finished(self, older_than: Duration, *, queue: str | None = None,
                              handler: str | None = None) -> int:
        """Delete jobs that finished more than ``older_than`` ago (``"7d"``), with their history; how many."""
        return await self.admin().delete_finished(older_than, queue=queue, handler=handler)

    async def pause_queue(self, queue: str) -> None:
        """Pause ``queue`` for every worker on every host (persisted); its running jobs finish."""
        await self.admin().pause_queue(queue)

    async def resume_queue(self, queue: str) -> None:
        """Resume a paused queue; its idle workers are woken at once."""
        await self.admin().resume_queue(queue)

    async def set_queue(self, queue: str, *, concurrency_limit: int | Unset | None = UNSET,
                        rate_limit: str | RateLimit | Unset | None = UNSET) -> QueueSettings:
        """Set ``queue``'s limits for every worker on every host (persisted); an argument left out is kept,
        None removes that limit.

        ``concurrency_limit=N``: at most N of its jobs run at once, whatever their handler;
        ``rate_limit="N/period"`` (``"50/1s"``): at most N start in any window of the period.
        Workers apply them at once (a notification; docs/limits.md). Returns the queue's settings.
        """
        return await self.admin().set_queue(queue, concurrency_limit=concurrency_limit, rate_limit=rate_limit)

    # --- webhooks (docs/webhooks.md) ---
    async def add_webhook(self, url: str, events: Sequence[str], *, secret: str | None = None,
                          handlers: Sequence[str] | None = None, queues: Sequence[str] | None = None,
                          max_attempts: int = 8, description: str | None = None) -> Webhook:
        """POST each of these ``events`` (``"completed"``, ``"failed"``, ``"cancelled"``, ``"retrying"``) to
        ``url``, signed with ``secret``, for jobs of every worker of the schema; of these ``handlers`` and
        ``queues`` only, when given. Stored in the database: it outlasts restarts until :meth:`remove_webhook`.

        Each delivery is a job of its own, created in the transaction of the outcome it reports, retried
        with backoff (``max_attempts`` attempts; ``webhook_options``) and kept in the history. Without a
        ``secret`` (at least 16 characters) one is made: the returned :class:`Webhook` holds it, and no
        read returns it again. Raises :class:`~aiojobs_pg.errors.ValidationError` naming the field.
        """
        return await self.admin().add_webhook(url, events, secret=secret, handlers=handlers, queues=queues,
                                              max_attempts=max_attempts, description=description)

    async def webhooks(self) -> list[Webhook]:
        """Every webhook registered in the schema, oldest first (without their secrets)."""
        return await self.admin().webhooks()

    async def remove_webhook(self, webhook_id: int) -> None:
        """Stop reporting to a webhook (:class:`~aiojobs_pg.errors.WebhookNotFound` if unknown); its
        deliveries not sent yet are cancelled when they come up."""
        await self.admin().remove_webhook(webhook_id)

    async def wait(self, job_id: int, timeout: float | Duration | None = None) -> Any:
        """Wait until the job finishes; return its result if it completed.

        Raises :class:`~aiojobs_pg.errors.JobFailed` (its attempts spent; ``.job`` and ``.error``
        tell more) or :class:`~aiojobs_pg.errors.JobCancelled`, :class:`TimeoutError` when
        ``timeout`` (seconds, or a duration such as ``"30s"``) passes first, and
        :class:`~aiojobs_pg.errors.JobStateError` for a recurring job, which never finishes by
        itself. A retry in between is not an end: it waits on. Woken by a notification from the
        job's completion (one LISTEN connection per App serves all waits), never by polling.
        """
        seconds = None if timeout is None else _seconds(timeout, "timeout")
        if self._waiters is None:
            self._waiters = Waiters(self.queries, self._listen_connect(), poll_interval=self.poll_interval)
        return await self._waiters.wait(self.admin().db, job_id, seconds)

    async def retry(self, job_id: int) -> Job:
        """Re-queue a failed or cancelled job."""
        return await self.admin().retry(job_id)

    # --- workers ---
    def create_worker(self, *, concurrency: int = 10, queues: Sequence[str] | None = None,
                      burst: bool = False, **overrides: Unpack[WorkerOverrides]) -> Worker:
        """A worker on this app's pool; ``overrides`` replace fields of :class:`WorkerSettings`."""
        check_int(concurrency, "concurrency", minimum=1, maximum=10_000)
        queue_list = tuple(queues or ("default",))
        for q in queue_list:
            check_text(q, "queues", max_length=MAX_QUEUE_LENGTH)
        settings = WorkerSettings(
            concurrency=concurrency, queues=queue_list, burst=burst, lease=self.lease,
            poll_interval=self.poll_interval, drain_timeout=self.drain_timeout,
            maintenance_interval=self.maintenance_interval, history=self.enable_history,
            history_retention=self.history_retention, job_retention=self.job_retention,
            keep_completed=self.keep_completed)
        if overrides:
            settings = dataclasses.replace(settings, **overrides)
        worker_id = new_worker_id()
        # Webhook deliveries: by a worker whose queues were not given, while there are any; by one whose
        # queues name the deliveries' queue, always (webhooks.serving).
        delivering = webhooks.serving(queues)
        handlers = self.handlers
        if delivering != "off":
            handlers = {**self.handlers, WEBHOOK_HANDLER: webhooks.delivery_spec(
                lambda: guarded(self.pool, self.queries), self.queries, self.webhook_options)}
        executor = Executor(handlers, worker_id=worker_id, backoff=self.backoff,
                            default_timeout=self.job_timeout, max_result_bytes=self.max_data_bytes,
                            load_parents=self._parent_results, prepare_job=self._prepare_follow_up)
        assert self._lanes is not None
        return Worker(self.pool, self.queries, executor, settings,
                      connect=self._listen_connect(), lanes=self._lanes,
                      claim_conditions=self.claim_conditions, completion_steps=self.completion_steps,
                      hooks=self.hooks, observer=self.observer, webhooks=delivering == "auto",
                      xact_locks=self.pgbouncer)

    def _listen_connect(self) -> Callable[[], Awaitable[Connection]] | None:
        """How a listener connects: to ``listen_dsn``, else to ``dsn`` unless it goes through PgBouncer (None)."""
        dsn = self.listen_dsn or (None if self.pgbouncer else self.dsn)
        if dsn is None:
            return None
        return lambda: connect(dsn, timeout=10)

    async def run_worker(self, *, concurrency: int = 10, queues: Sequence[str] | None = None,
                         burst: bool = False, handle_signals: bool = True,
                         **overrides: Unpack[WorkerOverrides]) -> None:
        """Run a worker until SIGTERM/SIGINT (or, with ``burst``, until nothing is due).

        The first signal drains gracefully; a second one stops at once. Signals are
        only handled in the main thread.
        """
        await self.sync_periodic()
        worker = self.create_worker(concurrency=concurrency, queues=queues, burst=burst, **overrides)
        if not handle_signals or threading.current_thread() is not threading.main_thread():
            await worker.run()
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(_stop_on_signals, worker)
            await worker.run()
            tg.cancel_scope.cancel()

    @asynccontextmanager
    async def worker(self, *, concurrency: int = 10, queues: Sequence[str] | None = None,
                     **overrides: Unpack[WorkerOverrides]) -> AsyncIterator[Worker]:
        """Run a worker in the background (e.g. in an ASGI lifespan); drains it on exit."""
        await self.sync_periodic()
        w = self.create_worker(concurrency=concurrency, queues=queues, **overrides)
        async with anyio.create_task_group() as tg:
            tg.start_soon(w.run)
            await w.started.wait()
            try:
                yield w
            finally:
                w.stop()


def _listen_dsn(value: str | None) -> str | None:
    if value is None:
        return os.environ.get("AIOJOBS_PG_LISTEN_DSN") or None
    if not isinstance(value, str) or not value.strip():
        raise ValidationError("listen_dsn", f"must be a non-empty connection string, got {value!r}")
    return value


def _pgbouncer(value: bool | None) -> bool:
    if value is None:
        env = os.environ.get("AIOJOBS_PG_PGBOUNCER", "").strip().lower()
        if env not in _FLAGS:
            raise ValidationError("AIOJOBS_PG_PGBOUNCER", f"must be one of 1, true, yes, 0, false, no, got {env!r}")
        return _FLAGS[env]
    if not isinstance(value, bool):
        raise ValidationError("pgbouncer", f"must be True or False, got {value!r}")
    return value


_FLAGS = {"": False, "0": False, "false": False, "no": False, "1": True, "true": True, "yes": True}


async def _stop_on_signals(worker: Worker) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        count = 0
        async for signum in signals:
            count += 1
            log.info("signal_received", signal=signal.Signals(signum).name, forced=count > 1)
            worker.stop(force=count > 1)
