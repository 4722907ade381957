"""The worker process of the fault suite: ``python -m tests.chaos.apps.worker --concurrency N``.

A real ``App.run_worker`` (signals included) on the schema the test gives it. All
fault injection lives here, in the test app, so the engine stays untouched: the
crash points wrap ``app.queries`` methods (call the real one, then ``os._exit``).

Environment (every variable but the first two is optional):

- ``AIOJOBS_PG_DSN``, ``AIOJOBS_PG_SCHEMA``: read by :class:`App` itself;
- ``CHAOS_LEDGER_DSN``: where the handlers write the ledger (default: the app's DSN).
  The partition scenario points it around the cut link: the ledger is the observer;
- ``CHAOS_LEASE`` (2), ``CHAOS_POLL`` (0.2), ``CHAOS_MAINT`` (0.5), ``CHAOS_DRAIN`` (30),
  ``CHAOS_POOL`` (10), ``CHAOS_LEDGER_POOL`` (8), ``CHAOS_COMMAND_TIMEOUT`` (60, the App's default),
  ``CHAOS_MAX_ATTEMPTS`` (10), ``CHAOS_BACKOFF_BASE`` (the App's default backoff when unset);
- ``CHAOS_CRASH`` = ``after_claim`` | ``before_complete`` | ``during_renew`` and
  ``CHAOS_CRASH_AT`` (n): exit with code 86 at the n-th such call that carries jobs;
- ``CHAOS_LISTENER_FAULT``: a file; when it exists as the listener (re)connects, it is removed
  and that connection fails its LISTEN with ``asyncpg.InternalClientError``, the error the
  driver raises when a backend is terminated right after the connection was made;
- ``CHAOS_DRIVER_FAULT`` = ``<queries method>:<file>``: when the file exists at a call of that
  method, it is removed and the call raises ``asyncpg.InternalClientError`` instead (what
  asyncpg raises on a pooled connection that already got the server's "terminating" message);
- ``CHAOS_HOLD``: a file; while it exists the process waits, fully imported and connected,
  before it starts its worker (so that a test can start a worker in a few milliseconds);
- ``CHAOS_STATS``: a JSON file rewritten every 0.2 s (listener backend, claims, call timings);
- ``CHAOS_LOG_LEVEL`` (WARNING): structlog lines go to stdout as JSON.

Handlers (tests enqueue them by name):

- ``record``: one ledger row per run (see ``tests/chaos/ledger.py``), opened when the
  handler starts and closed when it ends, however it ends. ``data``: ``sleep``,
  ``sleep_first_attempt``, ``fail_attempts`` (raise while ``attempt <= n``);
- ``poison``: opens its ledger row, then kills its own process (exit code 87);
- ``echo``: returns its data (the input fuzz).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import structlog

from aiojobs_pg import App, Backoff, JobContext
from aiojobs_pg.worker import Worker

CRASH_EXIT = 86
POISON_EXIT = 87
_DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError)


def _env(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


_backoff_base = os.environ.get("CHAOS_BACKOFF_BASE")
app = App(
    lease=_env("CHAOS_LEASE", 2.0),
    poll_interval=_env("CHAOS_POLL", 0.2),
    maintenance_interval=_env("CHAOS_MAINT", 0.5),
    drain_timeout=_env("CHAOS_DRAIN", 30.0),
    pool_max_size=int(_env("CHAOS_POOL", 10)),
    command_timeout=_env("CHAOS_COMMAND_TIMEOUT", 60.0),
    default_max_attempts=int(_env("CHAOS_MAX_ATTEMPTS", 10)),
    backoff=None if _backoff_base is None else Backoff(base=float(_backoff_base)),
)

WORKERS: list[Worker] = []
CALLS: dict[str, dict[str, float]] = {}
_background: set[asyncio.Task[Any]] = set()


def emit(event: str, **fields: Any) -> None:
    """One JSON line on stdout (the test reads the process's log)."""
    print(json.dumps({"event": event, "pid": os.getpid(), "t": time.time(), **fields}, default=str), flush=True)


# --- the ledger (writer side; the table and the analysis are in tests/chaos/ledger.py) ---

class DoubleRun(RuntimeError):
    """Another run of this job overlaps this one: the exclusion constraint said so."""


@dataclass(eq=False)
class LedgerRun:
    job_id: int
    attempt: int
    worker: str
    pid: int
    start: datetime
    #: inserts the row; its result says whether the row exists
    opening: asyncio.Task[bool] | None = None


class Group:
    """Group commit for ledger writes: items that arrive while a batch is being written go out together."""

    def __init__(self, write: Callable[[list[Any]], Awaitable[None]], max_batch: int = 500) -> None:
        self.write = write
        self.max_batch = max_batch
        self.pending: list[tuple[Any, asyncio.Future[None]]] = []
        self.task: asyncio.Task[None] | None = None

    async def submit(self, item: Any) -> None:
        """Write ``item`` with others; raises what the batch raised (the caller then writes it alone)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self.pending.append((item, future))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._run())
        await future

    async def _run(self) -> None:
        while self.pending:
            await asyncio.sleep(0)  # let the handlers of this loop turn join
            batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
            try:
                await self.write([item for item, _ in batch])
            except Exception as exc:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


class LedgerWriter:
    """Opens a run's row when a handler starts and closes it when it ends.

    Timestamps are this host's wall clock (the test and the database share it).
    Rows are written in groups (one statement for the runs that start or end
    together); when a group fails, each of its rows is written alone. Opening
    retries for a while on connection errors, and on an exclusion violation with
    the *same* start time: a run that ended before ours started but whose closing
    write is late (the database was down) stops conflicting once it lands, while a
    run that really overlaps ours keeps conflicting and is reported as a double run.
    Opening runs in a task of its own, so that a handler cancelled meanwhile still
    knows whether its row exists, and closes it.
    """

    open_window = 20.0
    conflict_window = 5.0

    def __init__(self, pool: asyncpg.Pool, schema: str) -> None:
        self.pool = pool
        self.t = f"{schema}.ledger"
        self.conflicts = f"{schema}.ledger_conflicts"
        self.opener = Group(self._insert_many)
        self.closer = Group(self._update_many)

    def begin(self, ctx: JobContext) -> LedgerRun:
        run = LedgerRun(ctx.job_id, ctx.attempt, ctx.worker_id, os.getpid(), datetime.now(UTC))
        run.opening = asyncio.get_running_loop().create_task(self._open(run))
        _background.add(run.opening)
        run.opening.add_done_callback(_background.discard)
        return run

    async def opened(self, run: LedgerRun) -> None:
        """Wait until the run's row is written; raises DoubleRun if another run overlaps it."""
        assert run.opening is not None
        await asyncio.shield(run.opening)

    async def _insert_many(self, runs: list[LedgerRun]) -> None:
        await self.pool.execute(
            f"INSERT INTO {self.t} (job_id, attempt, worker, pid, run) "
            "SELECT u.j, u.a, u.w, u.p, tstzrange(u.s, NULL) "
            "FROM unnest($1::bigint[], $2::int[], $3::text[], $4::int[], $5::timestamptz[]) AS u(j, a, w, p, s)",
            [r.job_id for r in runs], [r.attempt for r in runs], [r.worker for r in runs], [r.pid for r in runs],
            [r.start for r in runs], timeout=5)

    async def _open(self, run: LedgerRun) -> bool:
        with contextlib.suppress(Exception):
            await self.opener.submit(run)
            return True
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.open_window
        conflict_since: float | None = None
        while True:
            try:
                await self._insert_many([run])
                return True
            except asyncpg.ExclusionViolationError:
                if await self._is_mine(run):
                    return True  # our earlier insert did commit; its answer was lost
                conflict_since = conflict_since or loop.time()
                if loop.time() - conflict_since > self.conflict_window:
                    others = await self._record_conflict(run)
                    raise DoubleRun(f"job {run.job_id} attempt {run.attempt} overlaps {others}") from None
            except _DB_ERRORS:
                if loop.time() > give_up:
                    raise
            await asyncio.sleep(0.1)

    async def _is_mine(self, run: LedgerRun) -> bool:
        with contextlib.suppress(*_DB_ERRORS):
            return bool(await self.pool.fetchval(
                f"SELECT count(*) FROM {self.t} WHERE job_id = $1 AND attempt = $2 AND pid = $3 "
                "AND lower(run) = $4", run.job_id, run.attempt, run.pid, run.start, timeout=5))
        return False

    async def _record_conflict(self, run: LedgerRun) -> str:
        others = "?"
        with contextlib.suppress(*_DB_ERRORS):
            rows = await self.pool.fetch(
                f"SELECT attempt, worker, pid, run::text AS run FROM {self.t} "
                "WHERE job_id = $1 AND run && tstzrange($2, NULL)", run.job_id, run.start, timeout=5)
            others = json.dumps([dict(r) for r in rows])
            await self.pool.execute(
                f"INSERT INTO {self.conflicts} (job_id, attempt, worker, pid, started_at, others) "
                "VALUES ($1, $2, $3, $4, $5, $6)", run.job_id, run.attempt, run.worker, run.pid, run.start, others,
                timeout=5)
        emit("double_run", job_id=run.job_id, attempt=run.attempt, others=others)
        return others

    async def close(self, run: LedgerRun, how: str) -> None:
        """Stamp the end now; the write goes on in the background if it cannot land at once."""
        end = datetime.now(UTC)
        task = asyncio.get_running_loop().create_task(self._close(run, end, how))
        _background.add(task)
        task.add_done_callback(_background.discard)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 3)

    async def _update_many(self, items: list[tuple[LedgerRun, datetime, str]]) -> None:
        await self.pool.execute(
            f"UPDATE {self.t} l SET run = tstzrange(lower(l.run), GREATEST(lower(l.run), u.e)), ended = u.h "
            "FROM unnest($1::bigint[], $2::int[], $3::int[], $4::timestamptz[], $5::timestamptz[], $6::text[]) "
            "AS u(j, a, p, s, e, h) "
            "WHERE l.job_id = u.j AND l.attempt = u.a AND l.pid = u.p AND lower(l.run) = u.s AND upper_inf(l.run)",
            [r.job_id for r, _, _ in items], [r.attempt for r, _, _ in items], [r.pid for r, _, _ in items],
            [r.start for r, _, _ in items], [e for _, e, _ in items], [h for _, _, h in items], timeout=5)

    async def _close(self, run: LedgerRun, end: datetime, how: str) -> None:
        assert run.opening is not None
        try:
            if not await asyncio.shield(run.opening):
                return
        except Exception:
            return
        with contextlib.suppress(Exception):
            await self.closer.submit((run, end, how))
            return
        give_up = time.monotonic() + 60
        while True:
            try:
                await self._update_many([(run, end, how)])
                return
            except _DB_ERRORS:
                if time.monotonic() > give_up:
                    emit("ledger_close_lost", job_id=run.job_id, attempt=run.attempt)
                    return
            await asyncio.sleep(0.1)


LEDGER: LedgerWriter | None = None


def ledger() -> LedgerWriter:
    assert LEDGER is not None
    return LEDGER


# --- handlers ---

@app.handler()
async def record(data: Any, ctx: JobContext) -> None:
    data = data or {}
    run = ledger().begin(ctx)
    how = "failed"
    try:
        await ledger().opened(run)
        delay = float(data.get("sleep", 0))
        if ctx.attempt == 1:
            delay = max(delay, float(data.get("sleep_first_attempt", 0)))
        if delay > 0:
            await asyncio.sleep(delay)
        if ctx.attempt <= int(data.get("fail_attempts", 0)):
            raise RuntimeError(f"planned failure of attempt {ctx.attempt}")
        how = "done"
    except asyncio.CancelledError:
        how = "cancelled"
        raise
    finally:
        await ledger().close(run, how)


@app.handler()
async def poison(data: Any, ctx: JobContext) -> None:
    await ledger().opened(ledger().begin(ctx))
    emit("poison", job_id=ctx.job_id, attempt=ctx.attempt)
    os._exit(POISON_EXIT)


@app.handler()
async def echo(data: Any) -> Any:
    return data


# --- instrumentation and crash points (wrappers around app.queries) ---

def _timed(name: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    stats = CALLS.setdefault(name, {"n": 0, "errors": 0, "max_s": 0.0, "total_s": 0.0})

    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.monotonic()
        try:
            return await fn(*args, **kwargs)
        except BaseException:
            stats["errors"] += 1
            raise
        finally:
            took = time.monotonic() - t0
            stats["n"] += 1
            stats["total_s"] += took
            stats["max_s"] = max(stats["max_s"], took)

    return wrapper


def _inflight() -> list[int]:
    return sorted(WORKERS[0].inflight) if WORKERS else []


def crash(point: str, **fields: Any) -> None:
    emit("chaos_crash", point=point, inflight=_inflight(), **fields)
    sys.stdout.flush()
    os._exit(CRASH_EXIT)


def install_hooks() -> None:
    q = app.queries
    for name in ("claim", "complete", "renew_leases", "expired_leases", "worker_heartbeat", "worker_remove",
                 "prune", "upsert_periodic"):
        setattr(q, name, _timed(name, getattr(q, name)))
    driver_fault = os.environ.get("CHAOS_DRIVER_FAULT")
    if driver_fault:
        method, trigger = driver_fault.split(":", 1)
        real_method = getattr(q, method)

        async def faulty(*args: Any, **kwargs: Any) -> Any:
            if take_trigger(trigger):
                emit("driver_fault_injected", method=method)
                raise asyncpg.InternalClientError(
                    "cannot switch to state 12; another operation (2) is in progress (injected by the test)")
            return await real_method(*args, **kwargs)

        setattr(q, method, faulty)
    point = os.environ.get("CHAOS_CRASH")
    if not point:
        return
    at = int(os.environ.get("CHAOS_CRASH_AT", "1"))
    seen = [0]

    def due() -> bool:
        seen[0] += 1
        return seen[0] >= at

    if point == "after_claim":
        real_claim = q.claim

        async def claim(*args: Any, **kwargs: Any) -> Any:
            rows = await real_claim(*args, **kwargs)
            if rows and due():
                crash(point, batch=[job.id for job in rows])
            return rows

        q.claim = claim  # type: ignore[method-assign]
    elif point == "before_complete":
        real_complete = q.complete

        async def complete(db: Any, outcomes: Any, **kwargs: Any) -> Any:
            # Only the completer's flushes (the rescue of maintenance uses the same statement).
            own = [o for o in outcomes if not (o.error or "").startswith("worker lost")]
            if own and due():
                crash(point, batch=[o.job_id for o in outcomes])
            return await real_complete(db, outcomes, **kwargs)

        q.complete = complete  # type: ignore[method-assign]
    elif point == "during_renew":
        real_renew = q.renew_leases

        async def renew_leases(db: Any, jobs: Any, lease: float) -> Any:
            if jobs and due():
                # Exit while the statement is on the wire: it may or may not commit.
                task = asyncio.get_running_loop().create_task(real_renew(db, jobs, lease))
                await asyncio.sleep(0.002 * (seen[0] % 5))
                crash(point, batch=[j[0] for j in jobs], sent=not task.done())
            return await real_renew(db, jobs, lease)

        q.renew_leases = renew_leases  # type: ignore[method-assign]
    else:
        raise SystemExit(f"unknown CHAOS_CRASH {point!r}")


class FaultyListenerConnection(asyncpg.Connection):
    """A connection whose LISTEN fails as asyncpg fails when the backend died between connect and LISTEN."""

    async def add_listener(self, channel: str, callback: Any) -> None:
        emit("listener_fault_injected", channel=channel)
        raise asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress (injected by the test)")


def install_listener_fault() -> None:
    """The worker's notifier connects with ``asyncpg.connect`` (the pools do not): wrap it."""
    trigger = os.environ.get("CHAOS_LISTENER_FAULT")
    if not trigger:
        return
    real_connect = asyncpg.connect

    async def connect(*args: Any, **kwargs: Any) -> Any:
        if take_trigger(trigger):
            kwargs["connection_class"] = FaultyListenerConnection
        return await real_connect(*args, **kwargs)

    asyncpg.connect = connect


def _capture_workers() -> None:
    create = app.create_worker

    def capture(**kwargs: Any) -> Worker:
        worker = create(**kwargs)
        WORKERS.append(worker)
        return worker

    app.create_worker = capture  # type: ignore[method-assign]


def stats() -> dict[str, Any]:
    out: dict[str, Any] = {"pid": os.getpid(), "t": time.time(), "calls": CALLS, "connected": LEDGER is not None}
    if WORKERS:
        w = WORKERS[0]
        out.update(worker_id=w.id, listener_pid=w.notifier.backend_pid, listener_connected=w.notifier.connected,
                   reconnects=w.notifier.reconnects, claims=w.producer.claims, claimed=w.producer.claimed,
                   inflight=len(w.inflight), tasks=len(w.tasks), stopping=w.producer.stopping,
                   rescued=w.maintenance.rescued, started=w.started.is_set())
    return out


def take_trigger(path: str) -> bool:
    """True once per creation of the trigger file ``path`` (the test creates it, we remove it)."""
    try:
        os.remove(path)
    except FileNotFoundError:
        return False
    return True


def dump_stats(path: str, **extra: Any) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump({**stats(), **extra}, f, default=str)
    os.replace(tmp, path)  # readers never see a half-written file


async def write_stats(path: str) -> None:
    while True:
        dump_stats(path)
        await anyio.sleep(0.2)


async def wait_while_held() -> None:
    """Wait, fully started, while the CHAOS_HOLD file exists."""
    hold = os.environ.get("CHAOS_HOLD")
    while hold and Path(hold).exists():  # noqa: ASYNC110, ASYNC240 - a test's trigger file: polled, tiny
        await anyio.sleep(0.01)


def _configure_logging() -> None:
    level = getattr(logging, os.environ.get("CHAOS_LOG_LEVEL", "WARNING"))
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.TimeStamper(fmt="iso"),
                    structlog.processors.JSONRenderer(default=str)],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stdout),
        cache_logger_on_first_use=True,
    )


async def main(argv: list[str] | None = None) -> None:
    global LEDGER
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.apps.worker")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--queues", nargs="*", default=None)
    args = parser.parse_args(argv)
    _configure_logging()
    _capture_workers()
    install_hooks()
    install_listener_fault()
    ledger_dsn = os.environ.get("CHAOS_LEDGER_DSN") or os.environ["AIOJOBS_PG_DSN"]
    async with app:
        lpool = await asyncpg.create_pool(ledger_dsn, min_size=1, max_size=int(_env("CHAOS_LEDGER_POOL", 8)),
                                          command_timeout=10)
        LEDGER = LedgerWriter(lpool, app.schema)
        stats_path = os.environ.get("CHAOS_STATS")
        async with anyio.create_task_group() as tg:
            if stats_path:
                tg.start_soon(write_stats, stats_path)
            await wait_while_held()
            emit("worker_ready")
            await app.run_worker(concurrency=args.concurrency, queues=args.queues or None)
            tg.cancel_scope.cancel()
        if _background:  # ledger closes still on their way
            await asyncio.wait(set(_background), timeout=2)
        if stats_path:
            dump_stats(stats_path, exited=True)
        emit("worker_exit")
        lpool.terminate()


if __name__ == "__main__":
    asyncio.run(main())
