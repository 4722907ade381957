"""Enqueue from other drivers, in the caller's transaction: psycopg 3 and SQLAlchemy (docs/drivers.md).

Both helpers call the schema's SQL function ``<schema>.enqueue(...)`` (migration 0017) on the
caller's connection, session or cursor, so the job exists, and its workers are woken, only when
the caller's transaction commits. They validate every argument first as :meth:`App.enqueue
<aiojobs_pg.App.enqueue>` does (the same errors, ``data`` over ``max_data_bytes`` measured the
same way), and the function checks again on the server; a refusal from the server (SQLSTATE
``AJ002``, or ``AJ001`` for a parent the trigger of migration 0012 did not find) comes back as
the same :class:`~aiojobs_pg.errors.ValidationError` naming the field (the caller's transaction is
aborted then, as after any failed statement).

Neither psycopg nor SQLAlchemy is imported by this module: a helper works with whatever the
caller passes in (SQLAlchemy's ``text`` is imported when :func:`enqueue_sqlalchemy` runs).
Recurring jobs (``schedule=``) are not taken: use :meth:`App.enqueue` or ``@app.periodic``.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Collection, Coroutine, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Protocol, overload

from .enqueue import prepare
from .errors import ValidationError
from .models import DEFAULT_MAX_DATA_BYTES, Backoff, Job
from .queries import schema_or_default, validate_schema_name
from .validation import Duration

__all__ = ["ENQUEUE_SQLSTATE", "enqueue_psycopg", "enqueue_sqlalchemy"]

#: the SQLSTATE of an argument the SQL function refused (its message ``<field>: <reason>``, the field in COLUMN)
ENQUEUE_SQLSTATE = "AJ002"
#: the SQLSTATE of migration 0012's trigger: a parent (``after``) not found, or recurring
PARENTS_SQLSTATE = "AJ001"
#: the function's own default, which the helpers send only when asked otherwise
_DEFAULT_ATTEMPTS = 3


class _AsyncExecutor(Protocol):
    """What the async helpers need: an ``execute`` to await (psycopg's AsyncConnection or AsyncCursor,
    SQLAlchemy's AsyncSession or AsyncConnection)."""

    def execute(self, query: Any, params: Any = ..., /) -> Awaitable[Any]: ...


class _Executor(Protocol):
    """A sync ``execute`` (psycopg's Connection or Cursor, SQLAlchemy's Session or Connection)."""

    def execute(self, query: Any, params: Any = ..., /) -> Any: ...


def _call(schema: str | None, param: Callable[[str], str], handler: str, data: Any, *, name: str | None,
          queue: str, priority: int, max_attempts: int | None, timeout: Duration | None, delay: Duration | None,
          run_at: datetime | None, dedup_key: str | None, after: Collection[int | Job] | None,
          on_parent_failure: str | None, dedup_window: Duration | None,
          backoff: Backoff | Mapping[str, float] | float | None, concurrency_key: str | None,
          max_data_bytes: int | None) -> tuple[str, dict[str, Any]]:
    """The statement (``param(name)`` writes a placeholder in the driver's style) and its parameters.

    Validated as App.enqueue validates; only the arguments given are sent, so the function's defaults
    apply to the rest. The data is measured here (Python's compact JSON, as App.enqueue measures it), so
    the function is told not to measure it again (``max_data_bytes => NULL``).
    """
    target = validate_schema_name(schema_or_default(schema))
    job = prepare(handler, data, name=name, queue=queue, priority=priority,
                  max_attempts=_DEFAULT_ATTEMPTS if max_attempts is None else max_attempts, timeout=timeout,
                  delay=delay, run_at=run_at, dedup_key=dedup_key, after=after, on_parent_failure=on_parent_failure,
                  dedup_window=dedup_window, backoff=backoff, concurrency_key=concurrency_key,
                  max_data_bytes=max_data_bytes)
    # (argument, value, how the value is written): a cast for each, so no driver has to guess a type
    given: list[tuple[str, Any, str]] = [("handler", job.handler, "CAST({} AS text)"),
                                         ("data", job.data_json, "CAST({} AS jsonb)")]
    optional: list[tuple[str, Any, str]] = [
        ("queue", None if job.queue == "default" else job.queue, "CAST({} AS text)"),
        ("priority", job.priority or None, "CAST({} AS integer)"),
        ("max_attempts", None if max_attempts is None else job.max_attempts, "CAST({} AS integer)"),
        ("name", job.name, "CAST({} AS text)"),
        ("timeout", job.timeout, "make_interval(secs => CAST({} AS float8))"),
        ("delay", job.delay, "make_interval(secs => CAST({} AS float8))"),
        ("run_at", job.run_at, "CAST({} AS timestamptz)"),
        ("dedup_key", job.dedup_key, "CAST({} AS text)"),
        ("after", None if job.parents is None else list(job.parents), "CAST({} AS bigint[])"),
        ("on_parent_failure", job.on_parent_failure, "CAST({} AS text)"),
        ("dedup_window", job.dedup_window, "make_interval(secs => CAST({} AS float8))"),
        ("backoff", job.backoff_json, "CAST({} AS jsonb)"),
        ("concurrency_key", job.concurrency_key, "CAST({} AS text)"),
    ]
    given += [item for item in optional if item[1] is not None]
    arguments = ", ".join(f"{arg} => {cast.format(param(arg))}" for arg, _, cast in given)
    params = {arg: value for arg, value, _ in given}
    return f"SELECT {target}.enqueue({arguments}, max_data_bytes => NULL)", params


@contextmanager
def _refusals() -> Iterator[None]:
    """Raise the server's refusal of the call (see :func:`_refusal`) as the ValidationError naming its field;
    any other error as it is."""
    try:
        yield
    except Exception as exc:
        refused = _refusal(exc)
        if refused is None:
            raise
        raise refused from exc


def _refusal(exc: BaseException) -> ValidationError | None:
    """The ValidationError of the function's (or the parents trigger's) refusal in ``exc``, if it is one.

    Drivers wrap the server's error differently: psycopg's has ``sqlstate`` and ``diag``; SQLAlchemy
    wraps the driver's in ``orig``, and its asyncpg adapter the asyncpg error in ``__cause__``.
    """
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 5:
        chain.append(seen)
        orig = getattr(seen, "orig", None)
        seen = orig if isinstance(orig, BaseException) else seen.__cause__
    state = next((s for s in (getattr(e, "sqlstate", None) for e in chain) if s), None)
    if state not in (ENQUEUE_SQLSTATE, PARENTS_SQLSTATE):
        return None
    field = message = None
    for error in chain:
        diag = getattr(error, "diag", None)
        field = field or getattr(diag, "column_name", None) or getattr(error, "column_name", None)
        message = message or getattr(diag, "message_primary", None) or getattr(error, "message", None)
    if state == PARENTS_SQLSTATE:
        field = "after"
    field = field or "job"
    text = str(message or exc)
    return ValidationError(field, text.removeprefix(f"{field}: "))


@overload
def enqueue_psycopg(conn: _AsyncExecutor, handler: str, data: Any = ..., *, schema: str | None = ...,
                    name: str | None = ..., queue: str = ..., priority: int = ..., max_attempts: int | None = ...,
                    timeout: Duration | None = ..., delay: Duration | None = ..., run_at: datetime | None = ...,
                    dedup_key: str | None = ..., after: Collection[int | Job] | None = ...,
                    on_parent_failure: str | None = ..., dedup_window: Duration | None = ...,
                    backoff: Backoff | Mapping[str, float] | float | None = ..., concurrency_key: str | None = ...,
                    max_data_bytes: int | None = ...) -> Coroutine[Any, Any, int]: ...


@overload
def enqueue_psycopg(conn: _Executor, handler: str, data: Any = ..., *, schema: str | None = ...,
                    name: str | None = ..., queue: str = ..., priority: int = ..., max_attempts: int | None = ...,
                    timeout: Duration | None = ..., delay: Duration | None = ..., run_at: datetime | None = ...,
                    dedup_key: str | None = ..., after: Collection[int | Job] | None = ...,
                    on_parent_failure: str | None = ..., dedup_window: Duration | None = ...,
                    backoff: Backoff | Mapping[str, float] | float | None = ..., concurrency_key: str | None = ...,
                    max_data_bytes: int | None = ...) -> int: ...


def enqueue_psycopg(conn: Any, handler: str, data: Any = None, *, schema: str | None = None,
                    name: str | None = None, queue: str = "default", priority: int = 0,
                    max_attempts: int | None = None, timeout: Duration | None = None, delay: Duration | None = None,
                    run_at: datetime | None = None, dedup_key: str | None = None,
                    after: Collection[int | Job] | None = None, on_parent_failure: str | None = None,
                    dedup_window: Duration | None = None, backoff: Backoff | Mapping[str, float] | float | None = None,
                    concurrency_key: str | None = None,
                    max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> int | Coroutine[Any, Any, int]:
    """Enqueue a job on a psycopg 3 connection or cursor, in its transaction; return the job's id.

    ``conn`` is a ``psycopg.Connection`` or ``Cursor`` (returns the id), or an ``AsyncConnection``
    or ``AsyncCursor`` (returns a coroutine: ``await enqueue_psycopg(aconn, ...)``). The arguments
    are :meth:`App.enqueue <aiojobs_pg.App.enqueue>`'s, without ``schedule`` and its policies;
    ``schema`` as the App's (default ``$AIOJOBS_PG_SCHEMA``, then ``aiojobs_pg``), and
    ``max_attempts`` the function's default, 3, unless given (the function cannot know an App's
    ``default_max_attempts``). With a ``dedup_key`` held by a live job, returns that job's id.

    Raises :class:`~aiojobs_pg.errors.ValidationError` naming the field, before anything is sent,
    or from the server's refusal.
    """
    statement, params = _call(schema, lambda arg: f"%({arg})s", handler, data, name=name, queue=queue,
                              priority=priority, max_attempts=max_attempts, timeout=timeout, delay=delay,
                              run_at=run_at, dedup_key=dedup_key, after=after, on_parent_failure=on_parent_failure,
                              dedup_window=dedup_window, backoff=backoff, concurrency_key=concurrency_key,
                              max_data_bytes=max_data_bytes)
    if inspect.iscoroutinefunction(conn.execute):
        return _psycopg_async(conn, statement, params)
    with _refusals():
        row = conn.execute(statement, params).fetchone()
    return int(row[0])


async def _psycopg_async(conn: Any, statement: str, params: dict[str, Any]) -> int:
    with _refusals():
        cursor = await conn.execute(statement, params)
        row = await cursor.fetchone()
    return int(row[0])


@overload
def enqueue_sqlalchemy(session: _AsyncExecutor, handler: str, data: Any = ..., *, schema: str | None = ...,
                       name: str | None = ..., queue: str = ..., priority: int = ..., max_attempts: int | None = ...,
                       timeout: Duration | None = ..., delay: Duration | None = ..., run_at: datetime | None = ...,
                       dedup_key: str | None = ..., after: Collection[int | Job] | None = ...,
                       on_parent_failure: str | None = ..., dedup_window: Duration | None = ...,
                       backoff: Backoff | Mapping[str, float] | float | None = ...,
                       concurrency_key: str | None = ..., max_data_bytes: int | None = ...
                       ) -> Coroutine[Any, Any, int]: ...


@overload
def enqueue_sqlalchemy(session: _Executor, handler: str, data: Any = ..., *, schema: str | None = ...,
                       name: str | None = ..., queue: str = ..., priority: int = ..., max_attempts: int | None = ...,
                       timeout: Duration | None = ..., delay: Duration | None = ..., run_at: datetime | None = ...,
                       dedup_key: str | None = ..., after: Collection[int | Job] | None = ...,
                       on_parent_failure: str | None = ..., dedup_window: Duration | None = ...,
                       backoff: Backoff | Mapping[str, float] | float | None = ...,
                       concurrency_key: str | None = ..., max_data_bytes: int | None = ...) -> int: ...


def enqueue_sqlalchemy(session: Any, handler: str, data: Any = None, *, schema: str | None = None,
                       name: str | None = None, queue: str = "default", priority: int = 0,
                       max_attempts: int | None = None, timeout: Duration | None = None,
                       delay: Duration | None = None, run_at: datetime | None = None, dedup_key: str | None = None,
                       after: Collection[int | Job] | None = None, on_parent_failure: str | None = None,
                       dedup_window: Duration | None = None,
                       backoff: Backoff | Mapping[str, float] | float | None = None,
                       concurrency_key: str | None = None,
                       max_data_bytes: int | None = DEFAULT_MAX_DATA_BYTES) -> int | Coroutine[Any, Any, int]:
    """Enqueue a job through a SQLAlchemy session or connection, in its transaction; return the job's id.

    ``session`` is an ``AsyncSession`` or ``AsyncConnection`` (returns a coroutine: ``await
    enqueue_sqlalchemy(session, ...)``), or a sync ``Session`` or ``Connection`` (returns the id),
    on PostgreSQL through any driver (``postgresql+asyncpg://``, ``postgresql+psycopg://``). The
    arguments are :func:`enqueue_psycopg`'s.

    Raises :class:`~aiojobs_pg.errors.ValidationError` naming the field, before anything is sent,
    or from the server's refusal.
    """
    from sqlalchemy import text  # only when used: SQLAlchemy is the caller's, not a dependency

    statement, params = _call(schema, lambda arg: f":{arg}", handler, data, name=name, queue=queue,
                              priority=priority, max_attempts=max_attempts, timeout=timeout, delay=delay,
                              run_at=run_at, dedup_key=dedup_key, after=after, on_parent_failure=on_parent_failure,
                              dedup_window=dedup_window, backoff=backoff, concurrency_key=concurrency_key,
                              max_data_bytes=max_data_bytes)
    clause = text(statement)
    if inspect.iscoroutinefunction(session.execute):
        return _sqlalchemy_async(session, clause, params)
    with _refusals():
        result = session.execute(clause, params)
    return int(result.scalar_one())


async def _sqlalchemy_async(session: Any, clause: Any, params: dict[str, Any]) -> int:
    with _refusals():
        result = await session.execute(clause, params)
    return int(result.scalar_one())
