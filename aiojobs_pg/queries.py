"""The asyncpg seam: every SQL statement of the engine, one typed method each.

Statements are rendered once per schema (the schema name is validated as an
identifier before it is put into SQL) and sent with positional parameters only,
so asyncpg prepares and caches each one per connection.
"""

from __future__ import annotations

import contextlib
import operator
import os
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from datetime import UTC, datetime
from functools import partial
from typing import Any, NamedTuple, Protocol, TypeVar

import asyncpg
import asyncpg.pool

from .errors import ConfigurationError, DatabaseUnavailable, ValidationError
from .models import (
    ClaimedJob,
    Job,
    JobStatus,
    NewJob,
    Outcome,
    Run,
    Webhook,
    attributes,
    build_claimed_job,
    json_array,
    load_json,
    micros,
    stored_fields,
)

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")
#: a named placeholder ``:name`` in SQL (not a cast ``::type``): a claim condition's, a completion's
_NAMED_PARAM = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")

#: What a statement raises when the database, or the connection to it, fails; the worker's loops log
#: these and try again. asyncpg raises InternalClientError on a pooled connection that has already
#: received the server's "terminating connection" message (a restart, ``pg_terminate_backend``).
#: The API's calls raise DatabaseUnavailable instead (see GuardedDB).
DB_ERRORS: tuple[type[Exception], ...] = (DatabaseUnavailable, OSError, asyncpg.PostgresError,
                                         asyncpg.InterfaceError, asyncpg.InternalClientError, TimeoutError)


# The driver's types and errors, under the names the rest of the package uses: only this layer
# (with the notifier, for its LISTEN callbacks) imports asyncpg; tests/unit/test_layers.py checks it.
Pool = asyncpg.Pool
#: a connection opened on its own (:func:`connect`)
Connection = asyncpg.Connection
#: a connection of its own, or one borrowed from the pool (``async with app.pool.acquire() as conn``)
Conn = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy
#: a write refused by a unique index (a live job holds the dedup key)
UniqueViolation = asyncpg.UniqueViolationError
#: a statement naming a table that does not exist (the schema is not migrated)
UndefinedTable = asyncpg.UndefinedTableError
#: an error the server reported, as opposed to a lost connection
ServerError = asyncpg.PostgresError
#: a result row, read by column name: an asyncpg Record (it reads as a mapping, though the driver does not
#: register it as one), or a dict from a test's fake
Row = Mapping[str, Any]


class Inserted(NamedTuple):
    """What the database chose for the jobs of one :meth:`Queries.insert_many`, in input order."""

    #: every job's created_at, and its due time where ``due`` holds None
    now: datetime
    #: the inserted jobs' ids (a job whose dedup key a live job held is missing)
    ids: list[int]
    #: their next_run_at, None where it is ``now``
    due: list[datetime | None]
    #: their dedup keys
    keys: list[str | None]
    #: when some jobs have a ``dedup_window``, each job's holder of its key (migration 0015's dedup_holders),
    #: in input order: None where it had no window, or no job held the key (None: no job had a window)
    holders: list[int | None] | None = None


# Typed results: each statement's row as a frozen dataclass built by column name (_named), so callers read
# fields by name and mypy checks them; rows of the job are Job (Job.from_record), history rows Run.

@dataclass(frozen=True, slots=True)
class Windowed:
    """What :meth:`Queries.insert_window` did: inserted ``job``, or found the job ``holder`` holding its key.

    Both None: a live job took the key meanwhile (try again).
    """

    job: Job | None
    holder: int | None


@dataclass(frozen=True, slots=True)
class Upserted:
    """A declared schedule's row after :meth:`Queries.upsert_periodic` changed it."""

    id: int
    #: created now, rather than updated
    inserted: bool


@dataclass(frozen=True, slots=True)
class ExpiredLease:
    """A running job whose lease expired (:meth:`Queries.expired_leases`): what its rescue needs."""

    id: int
    #: the claim token of the lost run
    token: int
    attempts: int
    max_attempts: int
    schedule: str | None
    timezone: str | None
    misfire: str
    overlap: str
    #: the worker that claimed it (a running job always has one)
    worker_id: str
    last_run_at: datetime | None
    #: the time the run was due (its tick, for a recurring job)
    scheduled_at: datetime


@dataclass(frozen=True, slots=True)
class WorkerRow:
    """A registered worker (:meth:`Queries.list_workers`)."""

    id: str
    hostname: str
    pid: int
    queues: list[str] | None
    concurrency: int
    handlers: list[str]
    started_at: datetime
    heartbeat_at: datetime
    #: its heartbeat is younger than its lease
    alive: bool


@dataclass(frozen=True, slots=True)
class Unserved:
    """Pending jobs of a (queue, handler) that no live worker serves (:meth:`Queries.unserved`)."""

    queue: str
    handler: str
    count: int


@dataclass(frozen=True, slots=True)
class QueueRow:
    """A queue's settings row (``queues``): paused, and its limits (None: none)."""

    name: str
    paused: bool
    updated_at: datetime
    concurrency_limit: int | None
    #: starts allowed per ``rate_period`` seconds
    rate_limit: int | None
    rate_period: float | None


@dataclass(frozen=True, slots=True)
class ThroughputRow:
    """Runs of one minute in one status (:meth:`Queries.throughput`); all but ``now_minute`` None when none
    ran at all."""

    #: the server's current minute (every row carries it)
    now_minute: datetime
    minute: datetime | None
    status: str | None
    n: int | None


@dataclass(frozen=True, slots=True)
class QueueStat:
    """The jobs of one queue in one status (:meth:`Queries.queue_stats`)."""

    queue: str
    status: str
    count: int
    #: the due time of the oldest due pending job (None for other statuses)
    oldest_due: datetime | None


_D = TypeVar("_D")


def _named(cls: type[_D], row: Row) -> _D:
    """A ``cls`` (a dataclass) from the columns of ``row`` named as its fields; other columns (such as
    ``notified``) are ignored."""
    # a field with a default may be missing from the row (a webhook's secret: only get_webhook reads it)
    return cls(**{f.name: row[f.name] if f.default is MISSING else row.get(f.name, f.default)
                  for f in fields(cls)})  # type: ignore[arg-type]


#: The schema holding the tables when neither the caller nor ``$AIOJOBS_PG_SCHEMA`` names one.
DEFAULT_SCHEMA = "aiojobs_pg"


def schema_or_default(schema: str | None) -> str:
    """``schema``, else ``$AIOJOBS_PG_SCHEMA``, else :data:`DEFAULT_SCHEMA` (not validated here)."""
    return schema or os.environ.get("AIOJOBS_PG_SCHEMA") or DEFAULT_SCHEMA


def validate_schema_name(schema: str) -> str:
    """Return ``schema`` if it is a safe lower-case SQL identifier, else raise."""
    if not isinstance(schema, str) or not _IDENTIFIER.match(schema):
        raise ConfigurationError(
            f"invalid schema name {schema!r}: use 1-48 characters a-z, 0-9 and _, not starting with a digit"
        )
    return schema


class DB(Protocol):
    """What the queries need from a connection: an asyncpg Connection or Pool."""

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]: ...

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any: ...

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any: ...

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...


# The job row, declared once: each column of jobs that a Job holds (a field of the same name), and what
# it reads as for a completed one-off job, from its history row (migration 0006). Every read of jobs
# selects these (_JOB_COLUMNS), the completed ones read from job_runs as these (_DONE_AS_JOB), and
# Job.from_record builds a Job from such a row by name. The view all_jobs (its latest migration) reads the
# same way. A column read from job_runs as itself is kept there: the completion copies it (_DONE_JOB). A new
# column: its migration (with the view), its field on Job (and NewJob's, if a job is created with it: see
# NEW_JOB_COLUMNS), and its entry here.
JOB_COLUMNS: dict[str, str] = {
    "id": "job_id", "name": "name", "handler": "handler", "data": "data", "queue": "queue",
    "priority": "priority", "schedule": "NULL::text", "timezone": "NULL::text", "status": "'completed'::text",
    "attempts": "attempt", "max_attempts": "max_attempts", "timeout": "timeout", "last_run_at": "last_run_at",
    "next_run_at": "COALESCE(scheduled_at, created_at)", "last_error": "last_error", "result": "result",
    "dedup_key": "dedup_key", "lease_expires_at": "NULL::timestamptz", "worker_id": "worker_id",
    "created_at": "created_at", "updated_at": "COALESCE(completed_at, created_at)", "periodic_key": "NULL::text",
    "misfire": "'skip'::text", "overlap": "'wait'::text", "tick_at": "NULL::timestamptz",
    "progress": "NULL::real", "progress_message": "NULL::text",
    "parents": "NULL::bigint[]", "waiting_for": "NULL::bigint[]", "on_parent_failure": "NULL::text",
    "concurrency_key": "concurrency_key",
    "backoff": "backoff",
    "trace_context": "NULL::text",
}
assert JOB_COLUMNS.keys() == set(stored_fields(Job)), "JOB_COLUMNS must name every stored field of Job"
_JOB_COLUMNS = ", ".join(JOB_COLUMNS)

# What a new job writes: each stored field of NewJob, in its order (the inserts' parameters), with the column
# it fills and the SQL type it is sent as. A field fills the column of its name, sent as the SQL type of its
# annotation (_SQL_TYPES), but for the fields of _NEW_JOB_FIELDS. Two fields fill next_run_at: run_at, else
# delay seconds from the database's now() (_due). Generated from it: the inserts' column lists, values and
# parameters (read from a NewJob by name), insert_many's arrays, the declared schedules' upsert, and the
# columns update_job may set. A new column a job is created with: NewJob's field of the column's name.
_SQL_TYPES = {"str": "text", "int": "int", "float": "float8", "datetime": "timestamptz", "tuple[int, ...]": "bigint[]"}
_NEW_JOB_FIELDS = {"data_json": ("data", "jsonb"), "backoff_json": ("backoff", "jsonb"),
                   "run_at": ("next_run_at", "timestamptz"), "delay": ("next_run_at", "float8")}


def _written_columns(cls: type, special: Mapping[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Each stored field of the dataclass ``cls``: the column it fills and its SQL type, ``special``'s or its
    own name and the type of its annotation (``str | None``: text)."""
    written = {}
    for f in fields(cls):
        if f.name not in stored_fields(cls):
            continue
        kind = str(f.type).split(" | ")[0]
        if f.name not in special and kind not in _SQL_TYPES:
            raise TypeError(f"{cls.__name__}.{f.name}: no SQL type for {f.type}; give its column and type")
        written[f.name] = special.get(f.name) or (f.name, _SQL_TYPES[kind])
    return written


NEW_JOB_COLUMNS: dict[str, tuple[str, str]] = _written_columns(NewJob, _NEW_JOB_FIELDS)
#: each column a new job fills, in the declaration's order, with its type: its first field's (next_run_at: run_at's)
_NEW_COLUMNS = {column: next(k for c, k in NEW_JOB_COLUMNS.values() if c == column)
                for column, _ in NEW_JOB_COLUMNS.values()}
assert _NEW_COLUMNS.keys() <= JOB_COLUMNS.keys(), "a new job fills columns of the job row"
_INSERT_COLUMNS = ", ".join(_NEW_COLUMNS)
#: the parameters of an insert, from a NewJob: its fields in the declaration's order
_new_job_params = attributes(list(NEW_JOB_COLUMNS))


def _due(run_at: str, delay: str) -> str:
    # run_at wins over delay (seconds); both NULL means now. Computed on the database clock.
    return f"COALESCE({run_at}, now() + make_interval(secs => COALESCE({delay}, 0)))"


def _new_values(names: Sequence[str], value: Callable[[str, str], str], sep: str = ", ") -> str:
    """The values of the columns that the fields ``names`` (in NEW_JOB_COLUMNS's order) fill, in that order:
    ``value(field, sql_type)`` of the field that fills each (of next_run_at's two: _due)."""
    values: dict[str, str] = {}
    for name in names:
        column, kind = NEW_JOB_COLUMNS[name]
        values[column] = _due(values[column], value(name, kind)) if column in values else value(name, kind)
    return sep.join(values.values())


def _parameter(position: Mapping[str, int]) -> Callable[[str, str], str]:
    """A field's value as the statement's parameter ``$position[field]``, cast to its SQL type."""
    return lambda name, kind: f"${position[name]}::{kind}"


#: each field's parameter in the inserts of one job ($1 …); the channels (or the schedule's key) follow
_INSERT_PARAMS = {name: i for i, name in enumerate(NEW_JOB_COLUMNS, 1)}
_AFTER_PARAMS = len(NEW_JOB_COLUMNS) + 1

# The dedup index (migration 0015) holds every job with a key; its expressions make it unique among live ones.
_ON_DEDUP_CONFLICT = """ON CONFLICT (dedup_key, (CASE WHEN status IN ('pending', 'running') THEN 0 ELSE id END))
    WHERE dedup_key IS NOT NULL DO NOTHING"""

# What a plain job (NewJob.plain) sends, the fields without a default: every other column takes its default.
_PLAIN_FIELDS = [f.name for f in fields(NewJob) if f.default is MISSING]
_PLAIN_COLUMNS = ", ".join(NEW_JOB_COLUMNS[name][0] for name in _PLAIN_FIELDS)
_PLAIN_PARAMS = {name: i for i, name in enumerate(_PLAIN_FIELDS, 1)}
# insert_plain, the single enqueue's usual statement, passes these written out rather than through a getter
# (the single enqueue's hot path): a field a job cannot be created without would have to be added there.
assert _PLAIN_FIELDS == ["handler", "data_json", "queue", "priority", "max_attempts"], "see Queries.insert_plain"
#: insert_uniform's parameters: $1 every job's data (a JSON array), then the other fields the jobs share
_UNIFORM_SHARED = [name for name in _PLAIN_FIELDS if name != "data_json"]
_UNIFORM_PARAMS = {name: i for i, name in enumerate(_UNIFORM_SHARED, 2)}
_uniform_params = attributes(_UNIFORM_SHARED)
_UNIFORM_CHANNEL = len(_UNIFORM_SHARED) + 2


def _uniform_value(name: str, kind: str) -> str:
    return f"u.{name}" if name == "data_json" else f"${_UNIFORM_PARAMS[name]}::{kind}"


# A declared schedule's upsert sets every column a new job fills but next_run_at, which only a new schedule moves.
_DECLARED = [column for column in _NEW_COLUMNS if column != "next_run_at"]
_UPSERT_SET = ",\n    ".join(f"{c} = EXCLUDED.{c}" for c in _DECLARED)

# update_job's parameters: $1 the job's id, $2 the names of the columns it sets, then a value for each column
# a new job fills (NULL for those it leaves), by name (Queries.update_job). The names in the SQL are the
# declaration's (columns of JOB_COLUMNS); a caller's names only ever arrive as values, in $2.
_UPDATE_PARAMS = {column: i for i, column in enumerate(_NEW_COLUMNS, 3)}
_UPDATE_SET = ",\n    ".join(f"{c} = CASE WHEN '{c}' = ANY($2::text[]) THEN ${_UPDATE_PARAMS[c]}::{kind} ELSE {c} END"
                               for c, kind in _NEW_COLUMNS.items())


#: The session settings of a worker's claim and completion lanes (lane.py): their statements are planned once per
#: connection, as the same plan whatever the statistics say. Each is a probe by primary key or an ordered range
#: of an index, so one plan serves any table. Left to itself, PostgreSQL plans the claim again at every call (its
#: LIMIT $2 makes any plan made without the value look costly), which costs more server time than running it at
#: small batches, and keeps the first generic plan of the completion even when it was made from the statistics
#: of an empty table: a sequential scan per flush once the table has grown (tests/integration/test_plans.py).
#: Without sequential scans the cached plan is the index plan whatever the statistics; without JIT, a plan
#: priced for a large table is not compiled at every call. Figures: docs/performance.md, "Statements".
HOT_PATH_SETTINGS = "SET plan_cache_mode = force_generic_plan; SET enable_seqscan = off; SET jit = off"
#: The same for one transaction, for the probes by key the engine runs on the shared pool (lease renewal, the
#: rescue): see :func:`planned_once`.
HOT_PATH_LOCAL = HOT_PATH_SETTINGS.replace("SET ", "SET LOCAL ")


# What a claim returns, in the order of ClaimedJob's fields, so each row builds one positionally (all but
# claimed_at, the worker's clock when the claim returned: one datetime for the batch instead of a
# timestamp per row to decode). data comes as text, decoded by load_json in one call per claim, which
# is cheaper than asyncpg's custom jsonb codec (figures: docs/performance.md).
_CLAIMED = {
    "id": "j.id", "handler": "j.handler", "data": "j.data::text", "queue": "j.queue", "attempt": "j.attempts",
    "max_attempts": "j.max_attempts", "timeout": "j.timeout", "schedule": "j.schedule", "timezone": "j.timezone",
    "scheduled_at": "COALESCE(j.tick_at, j.next_run_at)", "name": "j.name",
    "misfire": "j.misfire", "overlap": "j.overlap", "token": "j.claims", "parents": "j.parents",
    "backoff": "j.backoff::text", "trace_context": "j.trace_context",
}
_CLAIMED_AT = [f.name for f in fields(ClaimedJob)].index("claimed_at")
assert tuple(_CLAIMED) == tuple(f.name for f in fields(ClaimedJob) if f.name != "claimed_at"), \
    "claim columns must follow ClaimedJob"

_CLAIM_UPDATE = f"""UPDATE {{schema}}.jobs j
SET status = 'running', attempts = j.attempts + 1, claims = j.claims + 1, last_run_at = now(),
    updated_at = now(), lease_expires_at = now() + make_interval(secs => $3), worker_id = $4,
    progress = NULL, progress_message = NULL
-- = ANY(ARRAY(...)) is a primary-key lookup per claimed id whatever the planner guesses for LIMIT $2
-- (a cached generic plan guesses 10% of the table, and would hash-join against all of it).
WHERE j.id = ANY(ARRAY(SELECT id FROM c))
RETURNING {", ".join(_CLAIMED.values())}"""


def _claim_limited() -> str:
    """The claim of a worker's (queue, handler) pairs under limits (docs/limits.md): ``$1`` and ``$5`` the pairs'
    queues and handlers (zipped), ``$2`` to ``$4`` as in "claim", ``$6`` to ``$9`` the limits of the worker's
    handlers (name, concurrency, rate, period: arrays), the queues' limits read from ``queues``; the
    worker's ClaimConditions from ``$10`` on. What each pair may take comes from limit_plan (migration
    0013), which also takes the limits' locks; the rest is the plain claim's, with ``last_run_at`` the time
    limit_plan read after its locks, which is also the start recorded."""
    head, returning = _CLAIM_UPDATE.split("\nRETURNING ")
    assert "last_run_at = now()" in head and returning == ", ".join(_CLAIMED.values()), "see _CLAIM_UPDATE"
    head = head.replace("last_run_at = now()", "last_run_at = (SELECT at FROM pl LIMIT 1)")
    named = ", ".join(f'{expr} AS "{name}"' for name, expr in _CLAIMED.items())
    return f"""
WITH pl AS MATERIALIZED (
    SELECT * FROM {{schema}}.limit_plan($1::text[], $5::text[], $6::text[], $7::int[], $8::int[], $9::float8[],
                                        $2::bigint)
), cand AS (
    SELECT x.id, x.priority, x.next_run_at, x.ckey, pl.queue, pl.handler, pl.q_room,
           -- how many of the job's group of its handler may start (NULL: the handler has no limit)
           CASE WHEN pl.h_limited THEN coalesce(pl.g_rooms[array_position(pl.g_keys, x.ckey)], pl.h_all) END AS h_room
    FROM pl CROSS JOIN LATERAL (
        -- at most q_room of the best $2, locked as they are read: $2 as the inner limit, so that PostgreSQL
        -- plans for that many (a limit it cannot know, q_room, it guesses at a tenth of the queue's jobs,
        -- which on a large table makes the plan look costly enough to be compiled with JIT at every claim)
        SELECT * FROM (
            SELECT j.id, j.priority, j.next_run_at, coalesce(j.concurrency_key, '') AS ckey FROM {{schema}}.jobs j
            WHERE j.status = 'pending' AND j.queue = pl.queue AND j.handler = pl.handler
              -- the jobs of a group at its limit are passed over, so they hold up no other group
              AND j.next_run_at <= now() AND NOT coalesce(j.concurrency_key, '') = ANY(pl.full_keys){{conditions}}
            ORDER BY j.priority DESC, j.next_run_at, j.id
            LIMIT $2
            FOR UPDATE SKIP LOCKED
        ) y
        LIMIT pl.q_room
    ) x
    WHERE pl.q_room > 0
), c AS (
    -- in claim order, as many of each handler's group as it may start, then of those as many of each queue,
    -- then the best $2 overall
    SELECT q.id FROM (
        SELECT g.id, g.priority, g.next_run_at, g.q_room,
               row_number() OVER (PARTITION BY g.queue ORDER BY g.priority DESC, g.next_run_at, g.id) AS qrank
        FROM (SELECT cd.*, row_number() OVER (PARTITION BY cd.handler, cd.ckey
                                              ORDER BY cd.priority DESC, cd.next_run_at, cd.id) AS hrank
              FROM cand cd) g
        WHERE g.h_room IS NULL OR g.hrank <= g.h_room) q
    WHERE q.qrank <= q.q_room
    ORDER BY q.priority DESC, q.next_run_at, q.id
    LIMIT $2
), claimed AS (
    {head.replace(chr(10), chr(10) + "    ")}
    RETURNING {named}, j.concurrency_key AS claimed_ckey
), under AS (
    -- each claimed job under each limit it is under: its queue's, its handler's (in the group of its key)
    SELECT u.kind, u.name, u.ckey, u.conc, u.period, k.id, k.token
    FROM claimed k
    JOIN pl ON pl.queue = k.queue AND pl.handler = k.handler
    CROSS JOIN LATERAL (VALUES ('q', k.queue, '', pl.q_conc, pl.q_period),
                               ('h', k.handler, coalesce(k.claimed_ckey, ''), pl.h_conc, pl.h_period))
         AS u(kind, name, ckey, conc, period)
    WHERE u.conc OR u.period IS NOT NULL
), held AS (
    -- a place under each concurrency limit, until the job's completion deletes it (migration 0013)...
    INSERT INTO {{schema}}.limit_holders (job_id, token, kind, name, ckey)
    SELECT id, token, kind, name, ckey FROM under WHERE conc
    RETURNING kind, name, ckey
), {_counted_holders("held", "+")}, started AS (
    -- the starts under each rate limit, in the row of this twentieth of its period
    INSERT INTO {{schema}}.limit_starts AS r (kind, name, bucket, ckey, last_at, starts)
    SELECT kind, name, floor(extract(epoch FROM (SELECT at FROM pl LIMIT 1)) * 20 / min(period))::bigint, ckey,
           (SELECT at FROM pl LIMIT 1), count(*)
    FROM under WHERE period IS NOT NULL
    GROUP BY kind, name, ckey
    ON CONFLICT (kind, name, bucket, ckey) DO UPDATE
    SET starts = r.starts + EXCLUDED.starts, last_at = greatest(r.last_at, EXCLUDED.last_at)
)
SELECT {", ".join(f'"{name}"' for name in _CLAIMED)} FROM claimed"""


# insert_many sends the data apart, every job's data in one JSON array; each other field of NewJob as a
# column of values. Numbers go as array literals ('{1,2}'), which asyncpg sends faster than int[] or float8[].
_MANY_DATA = "data_json"
_MANY_FIELDS = [name for name in NEW_JOB_COLUMNS if name != _MANY_DATA]
_many_params = attributes(_MANY_FIELDS)
_MANY_LITERALS = [NEW_JOB_COLUMNS[name][1] in ("int", "float8") for name in _MANY_FIELDS]
# An array column (parents) goes as one array literal per job in a text[]: unnest would flatten an array of
# arrays into one.
_MANY_ARRAYS = [NEW_JOB_COLUMNS[name][1].endswith("[]") for name in _MANY_FIELDS]


def _insert_many(on_conflict: str, *, window: bool = False) -> str:
    # $1 is the data array; then each other field has two parameters: an array with one value per
    # job, or NULL and the one value every job has (sent once). unnest pads a NULL array with NULLs.
    # With window, two more after the channels: each job's dedup key and window (NULL where it has none);
    # a job whose key a job holds (dedup_holders, migration 0015: it locks the keys first) is not inserted.
    sources, value = ["jsonb_array_elements($1::jsonb)"], {_MANY_DATA: f"u.{_MANY_DATA}"}
    for name, literal, nested in zip(_MANY_FIELDS, _MANY_LITERALS, _MANY_ARRAYS, strict=True):
        kind = NEW_JOB_COLUMNS[name][1]
        array, single = 2 * len(sources), 2 * len(sources) + 1
        if nested:
            sources.append(f"unnest(${array}::text[])")
            value[name] = f"COALESCE(u.{name}::{kind}, ${single}::{kind})"
            continue
        sources.append(f"unnest(${array}::text::{kind}[])" if literal else f"unnest(${array}::{kind}[])")
        value[name] = f"COALESCE(u.{name}, ${single}::{kind})"
    sep = ",\n        "
    # run_at wins over delay, job by job, as for one job (_due).
    select = _new_values(list(NEW_JOB_COLUMNS), lambda name, _: value[name], sep)
    channel = 2 * len(sources)
    held = (f"h AS MATERIALIZED (SELECT {{schema}}.dedup_holders(${channel + 2}::text[], ${channel + 3}::float8[]) "
            f"AS ids),\n" if window else "")
    return f"""
WITH {held}ins AS (
    INSERT INTO {{schema}}.jobs ({_INSERT_COLUMNS})
    SELECT {select}
    FROM ROWS FROM ({sep.join(sources)})
         WITH ORDINALITY AS u({_MANY_DATA}, {", ".join(_MANY_FIELDS)}, ord)
    {"WHERE (SELECT ids FROM h)[u.ord::int] IS NULL" if window else ""}
    ORDER BY ord
    {on_conflict}
    RETURNING id, queue, next_run_at, dedup_key, status
), woken AS (
    SELECT pg_notify(${channel}, queue)
    FROM (SELECT DISTINCT queue FROM ins WHERE next_run_at <= now() AND status = 'pending') due
), hinted AS (
    SELECT pg_notify(${channel + 1}, {_due_hint("min(next_run_at)")})
    FROM ins WHERE next_run_at > now() AND status = 'pending' GROUP BY queue
)
SELECT now() AS now, array_agg(id) AS ids, array_agg(NULLIF(next_run_at, now())) AS due,
       array_agg(dedup_key) AS keys, (SELECT count(*) FROM woken) + (SELECT count(*) FROM hinted) AS notified
       {", (SELECT ids FROM h) AS holders" if window else ""}
FROM ins"""


def _due_hint(due: str) -> str:
    """The control channel's payload that tells idle workers when a deferred job of ``queue`` is due:
    ``due <seconds from now> <queue>`` (the queue last: it may hold spaces)."""
    return f"'due ' || extract(epoch FROM {due} - now())::text || ' ' || queue"


def _insert_one(on_conflict: str, returning: str) -> str:
    # One round trip: insert and, when the job is due now, wake the workers of its queue (the channel
    # follows the fields' parameters); a deferred job tells them when it is due instead (the control
    # channel, next); a job that waits for its parents (status waiting, set by migration 0012's trigger), or
    # that ended with one of them, tells nobody. The notify sits in RETURNING, not in a CTE around the
    # insert, which costs the server more per call.
    return f"""
INSERT INTO {{schema}}.jobs ({_INSERT_COLUMNS})
VALUES ({_new_values(list(NEW_JOB_COLUMNS), _parameter(_INSERT_PARAMS))})
{on_conflict}
RETURNING {returning}, {_NOTIFIED}"""


#: what an insert of one job returns besides its columns: whom it told (see _insert_one)
_NOTIFIED = f"""CASE WHEN status <> 'pending' THEN NULL
                            WHEN next_run_at <= now() THEN pg_notify(${_AFTER_PARAMS}, queue)
                            ELSE pg_notify(${_AFTER_PARAMS + 1}, {_due_hint("next_run_at")}) END AS notified"""


def _insert_window() -> str:
    """One job with a dedup key and a window (``$_AFTER_PARAMS + 2``, seconds), in one round trip: the key's
    holder (dedup_holders, migration 0015: the key is locked first, then looked up), else the new job. Returns
    one row: ``holder`` and the new job's columns, NULL but for the one that applies; both NULL when a live job
    took the key after the lookup (an enqueue without a window takes no lock): the caller tries again."""
    key = f"${_INSERT_PARAMS['dedup_key']}::text"
    return f"""
WITH h AS MATERIALIZED (
    SELECT ({{schema}}.dedup_holders(ARRAY[{key}], ARRAY[${_AFTER_PARAMS + 2}::float8]))[1] AS id
), ins AS (
    INSERT INTO {{schema}}.jobs ({_INSERT_COLUMNS})
    SELECT {_new_values(list(NEW_JOB_COLUMNS), _parameter(_INSERT_PARAMS))}
    FROM h WHERE h.id IS NULL
    {_ON_DEDUP_CONFLICT}
    RETURNING {_JOB_COLUMNS}, {_NOTIFIED}
)
SELECT h.id AS holder, ins.* FROM h LEFT JOIN ins ON true"""


def _from_micros(column: str) -> str:
    # A completion's times arrive as microseconds since the epoch (see _micros).
    return f"'epoch'::timestamptz + u.{column} * interval '1 microsecond' AS {column}"


def _fence(o: str) -> str:
    """The fence under which completion (and lease renewal) joins each row of the CTE ``o`` to its job.

    jobs is read by primary key through ``= ANY(ARRAY(...))``, as in the claim: whatever the planner
    guesses of o (a cached generic plan guesses hundreds of rows), it can neither scan jobs whole for a
    hash or merge join nor loop over jobs; the other conditions join with o (even the status, through
    o.running) for the same reason, and o is never filtered, which would skew those guesses. The claim
    token alone names the claim (every claim increments it and nothing resets it): a running row with
    that token is in the state that claim left it in, attempts included.
    """
    return (f"j.id = ANY(ARRAY(SELECT id FROM {o}))\n"
            f"      AND j.id = {o}.id AND j.status = {o}.running AND j.claims = {o}.token")


# A history row: the run, then (only in the row of a run that completed a one-off job, whose jobs row
# it replaces; migration 0006) what the job was. "handler IS NOT NULL" marks such a row.
_RUN_COLUMNS = ("job_id, claim, attempt, worker_id, status, started_at, completed_at, duration_ms, error, result, "
                "scheduled_at")


def _kept_in_history(columns: Mapping[str, str], run_columns: str) -> tuple[str, ...]:
    """The columns of the job row that its history row keeps: those ``columns`` (JOB_COLUMNS) read from the
    history under their own name, but the run's own (``run_columns``: worker_id, result)."""
    run = run_columns.split(", ")
    return tuple(c for c, expr in columns.items() if expr == c and c not in run)


#: what a completion copies from the job row into its history row (restore_job copies it back): the
#: columns JOB_COLUMNS reads from job_runs as themselves
_DONE_JOB = _kept_in_history(JOB_COLUMNS, _RUN_COLUMNS)
_DONE_JOB_COLUMNS = ", ".join(_DONE_JOB)
_DONE = "handler IS NOT NULL"


def _run_values(*, status: str, error: str) -> str:
    # The history values of a run from a completion CTE's RETURNING (id, claims, attempt, the times...).
    return (f"id, claims, attempt, worker_id, {status}, started_at, finished_at,"
            f" extract(epoch FROM finished_at - started_at) * 1000, {error}, result::jsonb, scheduled_at")


def _counted(gate: str) -> str:
    """The CTE that adds the completed jobs kept in the history (when ``gate``, a placeholder) to the counters
    GET /queues reads (migration 0009). A row per backend, so no completion waits for another's. The statement's own
    CTE rather than an insert trigger on job_runs, whose transition table copies every row: +1.1-2.5%
    of the claim and completion's server CPU against +3.1-3.2% (docs/performance.md, "Retention and
    the overview")."""
    return f"""done_counted AS (
    INSERT INTO {{schema}}.queue_counts AS c (queue, backend, completed)
    SELECT queue, pg_backend_pid(), count(*) FROM done WHERE {gate} GROUP BY queue
    ON CONFLICT (queue, backend) DO UPDATE SET completed = c.completed + EXCLUDED.completed
)"""


def _counted_holders(rows: str, sign: str) -> str:
    """The CTE that adds (``sign`` "+") or subtracts ("-") the rows of limit_holders that the CTE ``rows``
    inserted or deleted (its RETURNING: kind, name, ckey) to their groups' counts (limit_counts, migration
    0013), in the order of the key so that no two statements wait for each other in a circle."""
    return f"""{rows}_counted AS (
    INSERT INTO {{schema}}.limit_counts AS c (kind, name, ckey, running)
    SELECT kind, name, ckey, {sign}count(*) FROM {rows} GROUP BY kind, name, ckey ORDER BY kind, name, ckey
    ON CONFLICT (kind, name, ckey) DO UPDATE SET running = c.running + EXCLUDED.running
)"""


# Whether any job holds a place under a concurrency limit (migration 0013): evaluated once per statement, as
# _WEBHOOKS_EXIST, so that while none does, completion pays one look at the few rows of limit_counts (updated
# in place, so they leave nothing behind for it to read through) and reads nothing more.
_LIMITS_HELD = "(SELECT EXISTS (SELECT FROM {schema}.limit_counts WHERE running > 0))"


def _freed(*rows: str) -> str:
    """The CTEs, for the completion, that free the places under concurrency limits of the jobs the CTEs
    ``rows`` (the fenced delete and update) took out of running, in the same transaction, with their groups'
    counts (migration 0013). Read by primary key, whatever the planner guesses of limit_holders."""
    ids = " UNION ALL ".join(f"SELECT id FROM {r}" for r in rows)
    claims = " UNION ALL ".join(f"SELECT id, claims FROM {r}" for r in rows)
    return f"""limit_freed AS (
    DELETE FROM {{schema}}.limit_holders h
    WHERE {_LIMITS_HELD} AND h.job_id = ANY(ARRAY({ids})) AND (h.job_id, h.token) IN ({claims})
    RETURNING h.kind, h.name, h.ckey
), {_counted_holders("limit_freed", "-")}"""


class OutcomeParam(NamedTuple):
    """One array of a completion's outcomes (see :data:`OUTCOME_PARAMS`)."""

    #: the Outcome attribute each element is read from
    attribute: str
    #: how the array is sent (see _ENCODINGS)
    encoding: str
    #: the type of its elements in SQL
    sql_type: str


# What a completion sends of its outcomes, declared once: each array's name (the column the statement unnests
# it as, and its placeholder), the Outcome attribute it is read from, how it is sent, and its SQL type.
# OUTCOME_PARAMS are the outcomes that update their job's row (the statement "complete"); DONE_OUTCOME_PARAMS
# the one-off jobs that completed (both statements). Generated from them: each statement's unnest, the
# numbering of its placeholders (:o_<name>, :d_<name>, then the scalars :worker_id, :history, :control),
# and the function building its arguments (_outcome_statement). A new outcome field: its entry here, and its
# use in the statement.
OUTCOME_PARAMS: dict[str, OutcomeParam] = {
    "id": OutcomeParam("job_id", "literal", "bigint"), "attempt": OutcomeParam("attempt", "literal", "int"),
    "token": OutcomeParam("token", "literal", "bigint"),
    "job_status": OutcomeParam("job_status", "enum", "text"), "run_status": OutcomeParam("run_status", "enum", "text"),
    "delay": OutcomeParam("delay", "literal", "float8"), "next_run_at": OutcomeParam("next_run_at", "micros", "bigint"),
    "error": OutcomeParam("error", "sparse", "text"), "result": OutcomeParam("result_json", "sparse", "text"),
    "started_at": OutcomeParam("started_us", "literal", "bigint"),
    "finished_at": OutcomeParam("finished_us", "literal", "bigint"),
    "release": OutcomeParam("release", "flag", "bool"), "reset": OutcomeParam("reset_attempts", "flag", "bool"),
    "worker_id": OutcomeParam("worker_id", "worker", "text"),
    "scheduled_at": OutcomeParam("scheduled_at", "micros", "bigint"),
    "after_cancel": OutcomeParam("after_cancel", "flag", "bool"),
}
DONE_OUTCOME_PARAMS: dict[str, OutcomeParam] = {
    name: OUTCOME_PARAMS[name] for name in ("id", "token", "result", "started_at", "finished_at", "worker_id")}

# Each encoding: the array sent for the values of one attribute over a flush's outcomes; every one is sent as
# one NULL when no outcome has a value, which unnest pads. "literal": an array literal (numbers, words: nothing
# to quote); "enum": the literal of the values' .value; "flag": the literal of true, NULL for false; "micros":
# the literal of microseconds since the epoch (see _micros); "sparse": a list of text; "worker": a list of
# text, NULL where the batch's worker id (sent once, as :worker_id) applies.
_ENCODINGS: dict[str, Callable[[list[Any], str | None], Any]] = {
    "literal": lambda values, _: _literal(values),
    "enum": lambda values, _: _literal([v.value for v in values]),
    "flag": lambda values, _: _literal([v or None for v in values]),
    "micros": lambda values, _: _micros(values),
    "sparse": lambda values, _: _sparse(values),
    "worker": lambda values, worker_id: _sparse([None if v == worker_id else v for v in values]),
}
_SENT_AS_LIST = ("sparse", "worker")  # the others are text: an array literal
assert all(p.attribute in {f.name for f in fields(Outcome)} and p.encoding in _ENCODINGS
           and (p.encoding not in _SENT_AS_LIST or p.sql_type == "text") for p in OUTCOME_PARAMS.values()), \
    "OUTCOME_PARAMS: attributes of Outcome, known encodings, lists of text"
_COMPLETE_SCALARS = ("worker_id", "history", "control")
_BY_JOB_ID = operator.attrgetter("job_id")


def _unnest(group: str, params: Mapping[str, OutcomeParam]) -> str:
    """The unnest of the arrays ``params`` sent as the placeholders ``:<group>_<name>``, each as its column."""
    return ",\n                 ".join(
        f"unnest(:{group}_{name}::{'' if p.encoding in _SENT_AS_LIST else 'text::'}{p.sql_type}[]) AS {name}"
        for name, p in params.items())


OutcomeArgs = Callable[[Sequence[Outcome], Sequence[Outcome], "str | None", bool, str], tuple[Any, ...]]


def _outcome_statement(groups: Mapping[str, Mapping[str, OutcomeParam]]) -> tuple[list[str], OutcomeArgs]:
    """A completion statement's parameter names in order (each group's arrays, then the scalars), and the
    function that builds its arguments ``(rest, done, worker_id, history, control)`` in that order: group
    ``o`` reads the outcomes that update their row (``rest``), group ``d`` the one-off successes (``done``)."""
    names = [f"{g}_{name}" for g, params in groups.items() for name in params] + list(_COMPLETE_SCALARS)
    arrays = [(g == "o", operator.attrgetter(p.attribute), _ENCODINGS[p.encoding])
              for g, params in groups.items() for p in params.values()]

    def build(rest: Sequence[Outcome], done: Sequence[Outcome], worker_id: str | None, history: bool,
              control: str) -> tuple[Any, ...]:
        return (*[encode(list(map(get, rest if of_rest else done)), worker_id) for of_rest, get, encode in arrays],
                worker_id, history, control)

    return names, build


def _numbered(sql: str, names: Sequence[str]) -> str:
    """``sql`` with each placeholder ``:name`` turned into ``$n``, ``name`` the n-th of ``names``; each of
    ``names`` is used, and nothing else."""
    position = {name: i for i, name in enumerate(names, 1)}
    used = set(_NAMED_PARAM.findall(sql))
    assert used == position.keys(), f"placeholders {sorted(used ^ position.keys())} unused or undeclared"
    return _NAMED_PARAM.sub(lambda m: f"${position[m.group(1)]}", sql)


_COMPLETE_PARAMS, _complete_args = _outcome_statement({"o": OUTCOME_PARAMS, "d": DONE_OUTCOME_PARAMS})
_COMPLETE_SUCCESS_PARAMS, _complete_success_args = _outcome_statement({"d": DONE_OUTCOME_PARAMS})


def _completed() -> str:
    """The CTEs that complete one-off jobs: their outcomes come in the arrays of DONE_OUTCOME_PARAMS
    (``:d_<name>``; worker ids NULL for ``:worker_id``); history rows are written when ``:history`` is true;
    ``done_woken`` tells those waiting for a job (``App.wait``) on the channel ``:control``.

    Each job's row leaves jobs, and RETURNING hands what it was to its history row, with the attempt
    and the due time the claim found (unchanged since: the row was running).
    """
    return f"""d AS MATERIALIZED (
    SELECT u.id, u.token, u.result, COALESCE(u.worker_id, :worker_id) AS worker_id,
           {_from_micros("started_at")},
           {_from_micros("finished_at")},
           'running'::text AS running
    FROM (SELECT {_unnest("d", DONE_OUTCOME_PARAMS)}) u
), done AS (
    DELETE FROM {{schema}}.jobs j USING d
    WHERE {_fence("d")}
    RETURNING j.id, j.claims, j.attempts AS attempt, COALESCE(j.tick_at, j.next_run_at) AS scheduled_at,
              {", ".join("j." + c for c in _DONE_JOB)},
              d.worker_id, d.started_at, d.finished_at, d.result, j.awaited
), done_hist AS (
    INSERT INTO {{schema}}.job_runs ({_RUN_COLUMNS}, {_DONE_JOB_COLUMNS})
    SELECT {_run_values(status="'completed'", error="NULL")}, {_DONE_JOB_COLUMNS}
    FROM done
    WHERE :history
), {_counted(":history")}, done_woken AS (
    SELECT count(pg_notify(:control, 'done ' || id)) AS n FROM done WHERE awaited
), done_hooked AS (
    -- their deliveries to webhooks (migration 0014), gated: with no webhook, done is not even read
    SELECT {{schema}}.webhook_deliveries(
               array_agg('completed'::text), array_agg(id), array_agg(handler), array_agg(queue),
               array_agg('completed'::text), array_agg(attempt), array_agg(max_attempts), NULL::text[],
               array_agg(result::jsonb)) AS n
    FROM done WHERE {_WEBHOOKS_EXIST}
    HAVING count(*) > 0
)"""


# A worker is alive while its last heartbeat is younger than its lease (list_workers, unserved; {w}: the alias).
_ALIVE = "{w}heartbeat_at > now() - make_interval(secs => {w}lease)"

#: the built-in webhook delivery handler and its queue (webhooks.py; migration 0014 names them too)
WEBHOOK_HANDLER = "aiojobs_pg.webhook"
WEBHOOK_QUEUE = "aiojobs_pg.webhooks"
# Whether any webhook is registered: an uncorrelated subquery, so PostgreSQL evaluates it once per statement
# (an InitPlan) and, when it is false, skips the gated part of the plan. Completion pays this one probe of
# an empty table, and no function call, while no webhook exists (docs/webhooks.md, "Cost").
_WEBHOOKS_EXIST = "(SELECT EXISTS (SELECT FROM {schema}.webhooks))"
#: what reads of a webhook return (its secret only where a delivery needs it)
_WEBHOOK_COLUMNS = "id, url, events, handlers, queues, max_attempts, description, created_at"


# A completed job read from its history row, as the columns of _JOB_COLUMNS (the same names and order).
# The reads of single jobs go through the view all_jobs; list_jobs through this, for its per-table LIMIT
# (through the view, the history is read whole and sorted).
_DONE_AS_JOB = ", ".join(f"{expr} AS {name}" for name, expr in JOB_COLUMNS.items())


_SQL: dict[str, str] = {
    # Without a dedup key the caller knows the job but for what the database chose: its id and clock
    # (the due time only when it is not now, which saves decoding a second timestamp).
    "insert": _insert_one("", "id, created_at, NULLIF(next_run_at, created_at) AS next_run_at"),
    "insert_dedup": _insert_one(_ON_DEDUP_CONFLICT, _JOB_COLUMNS),
    # dedup_window: the job holding the key (live, or created within the window), else a new one
    "insert_window": _insert_window(),
    # A job with parents: its status is the trigger's (waiting, or ended with a parent), so the row comes back.
    "insert_after": _insert_one("", _JOB_COLUMNS),
    # A plain job (NewJob.plain): the fields without a default, due now; fewer parameters to send than "insert".
    "insert_plain": f"""
INSERT INTO {{schema}}.jobs ({_PLAIN_COLUMNS})
VALUES ({_new_values(_PLAIN_FIELDS, _parameter(_PLAIN_PARAMS))})
RETURNING id, created_at, pg_notify(${len(_PLAIN_FIELDS) + 1}, queue) AS notified""",
    # A declared schedule: one row per key however many workers declare it at once. Unchanged
    # declarations write nothing; a new expression moves a pending job to its first tick. Every other
    # column a new job fills is the declaration's.
    "upsert_periodic": f"""
INSERT INTO {{schema}}.jobs AS j ({_INSERT_COLUMNS}, periodic_key)
VALUES ({_new_values(list(NEW_JOB_COLUMNS), _parameter(_INSERT_PARAMS))}, ${_AFTER_PARAMS})
ON CONFLICT (periodic_key) WHERE periodic_key IS NOT NULL DO UPDATE SET
    {_UPSERT_SET},
    next_run_at = CASE
        WHEN (j.schedule, j.timezone) IS DISTINCT FROM (EXCLUDED.schedule, EXCLUDED.timezone)
             AND j.status = 'pending' THEN EXCLUDED.next_run_at
        ELSE j.next_run_at END,
    updated_at = now()
WHERE ({", ".join("j." + c for c in _DECLARED)})
      IS DISTINCT FROM
      ({", ".join("EXCLUDED." + c for c in _DECLARED)})
RETURNING j.id, (j.xmax = 0) AS inserted""",
    "recurring_jobs": f"""
SELECT {_JOB_COLUMNS} FROM {{schema}}.jobs WHERE schedule IS NOT NULL ORDER BY next_run_at, id""",
    "find_live_dedup": f"""
SELECT {_JOB_COLUMNS} FROM {{schema}}.jobs
WHERE dedup_key = $1 AND status IN ('pending', 'running')""",
    # One statement, so atomic without a transaction: the rows, then one notification per
    # queue that got due jobs. Columns where every job has the default come as NULL (unnest pads
    # them) and numbers as array literals, so the client encodes only what varies. One row comes
    # back, with the ids in input order and the due time only of jobs not due at now().
    "insert_many": _insert_many(""),
    "insert_many_dedup": _insert_many(_ON_DEDUP_CONFLICT),
    "insert_many_window": _insert_many(_ON_DEDUP_CONFLICT, window=True),
    # The usual batch: jobs of one handler, queue and priority, every other field the default (so due
    # now). Five columns and no per-column COALESCE: ~12% less server CPU per job than insert_many.
    "insert_uniform": f"""
WITH ins AS (
    INSERT INTO {{schema}}.jobs ({_PLAIN_COLUMNS})
    SELECT {_new_values(_PLAIN_FIELDS, _uniform_value)}
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS u(data_json, ord)
    ORDER BY ord
    RETURNING id
)
SELECT now() AS now, array_agg(id) AS ids, pg_notify(${_UNIFORM_CHANNEL}, ${_UNIFORM_PARAMS["queue"]}::text) AS notified
FROM ins""",
    # Claim: the due pending rows of the worker's queues ($1) and handlers ($5) in claim order, locked
    # with SKIP LOCKED, flipped to running with a lease; one statement. Each (queue, handler) pair is one
    # range of the claim index, read in order for its best $2; then the best $2 overall. A worker never
    # takes a job it has no handler for (another service's, or a newer release's), so such a job waits,
    # with no attempt spent, for a worker that has it. {conditions}: the worker's ClaimConditions (see
    # Claim), from parameter $6 on.
    "claim": f"""
WITH c AS (
    SELECT x.id FROM unnest($1::text[]) AS qn(queue) CROSS JOIN unnest($5::text[]) AS hn(handler)
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.next_run_at FROM {{schema}}.jobs j
        WHERE j.status = 'pending' AND j.queue = qn.queue AND j.handler = hn.handler
          AND j.next_run_at <= now(){{conditions}}
        ORDER BY j.priority DESC, j.next_run_at, j.id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) x
    -- a paused queue is skipped whole: one primary-key probe per queue, before its ranges are read; so
    -- is one with limits, which only the limited claim takes ("claim_limited"), even from a worker that
    -- has not heard of them yet
    WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.queues s WHERE s.name = qn.queue
                      AND (s.paused OR s.concurrency_limit IS NOT NULL OR s.rate_limit IS NOT NULL))
    ORDER BY x.priority DESC, x.next_run_at, x.id
    LIMIT $2
)
{_CLAIM_UPDATE}""",
    # The claim of the pairs under limits (docs/limits.md), exact whatever other workers claim at once: see
    # _claim_limited and migration 0013.
    "claim_limited": _claim_limited(),
    # How long until the next deferred job of these queues and handlers is due (NULL: none is), on the
    # database's clock: an idle worker sleeps until then instead of until its next poll.
    "next_due": """
SELECT extract(epoch FROM min(next_run_at) - now())::float8 FROM {schema}.jobs
WHERE status = 'pending' AND next_run_at > created_at AND next_run_at > now()
  AND queue = ANY($1::text[]) AND handler = ANY($2::text[])""",
    # Completion: every row is fenced by status and claim token; history rows are written only for
    # the rows the fence let through, in the same statement. A one-off job that completed is deleted
    # into its history row (the CTEs of _completed, outcomes :d_*); any other outcome updates its row
    # (outcomes :o_*: a retry, a dead letter, a recurring job's next tick, a release). The outcomes'
    # arrays and the placeholders' numbers come from OUTCOME_PARAMS (_outcome_statement). Numbers,
    # flags, statuses and times (microseconds since the epoch) arrive as array literals: asyncpg's
    # binary array encoder dominated a worker's CPU (docs/performance.md). The arrays are unnested in
    # the select list (a ProjectSet, which pads the shorter ones with NULLs as ROWS FROM does), not in
    # FROM, whose function scan copied every row into a tuplestore that the CTE then copied again. o and
    # d stay MATERIALIZED: inlined, they let the planner compare every outcome with every job under
    # stale statistics (tests/integration/test_plans.py).
    "complete": _numbered(f"""
WITH o AS MATERIALIZED (
    SELECT u.id, u.attempt, u.token, u.job_status, u.run_status, u.delay,
           {_from_micros("next_run_at")},
           u.error, u.result,
           {_from_micros("started_at")},
           {_from_micros("finished_at")},
           COALESCE(u.release, false) AS release, COALESCE(u.reset, false) AS reset,
           COALESCE(u.worker_id, :worker_id) AS worker_id,
           {_from_micros("scheduled_at")},
           -- a run stopped by a cancel finds its job cancelled, not running, under the same token
           CASE WHEN u.after_cancel THEN 'cancelled' ELSE 'running' END AS running
    FROM (SELECT {_unnest("o", OUTCOME_PARAMS)}) u
), upd AS (
    UPDATE {{schema}}.jobs j
    SET status = o.job_status,
        attempts = CASE WHEN o.release THEN j.attempts - 1 WHEN o.reset THEN 0 ELSE j.attempts END,
        next_run_at = CASE
            WHEN o.next_run_at IS NOT NULL THEN o.next_run_at
            WHEN o.delay IS NOT NULL THEN now() + make_interval(secs => o.delay)
            ELSE j.next_run_at END,
        -- A retry or release stays on the tick it was for; a new tick is next_run_at itself.
        tick_at = CASE WHEN o.next_run_at IS NOT NULL THEN NULL
                       WHEN o.delay IS NOT NULL THEN o.scheduled_at
                       ELSE j.tick_at END,
        last_error = COALESCE(o.error, j.last_error),
        result = CASE WHEN o.run_status = 'completed' THEN o.result::jsonb ELSE j.result END,
        lease_expires_at = NULL,
        updated_at = now()
    FROM o
    WHERE {_fence("o")}
    RETURNING j.id, j.claims, o.attempt, o.worker_id, o.run_status, o.started_at, o.finished_at, o.error, o.result,
              o.scheduled_at, j.awaited, o.job_status, j.handler, j.queue, j.max_attempts,
              -- the webhook event of a job that goes on (migration 0014's trigger reports failed and cancelled
              -- ends): a recurring job's tick that completed or failed for good, or a retry
              CASE WHEN o.job_status <> 'pending' OR o.release THEN NULL
                   WHEN o.run_status = 'completed' THEN 'completed'
                   WHEN o.run_status = 'failed' THEN CASE WHEN o.next_run_at IS NULL THEN 'retrying'
                                                          ELSE 'failed' END END AS event
), upd_hist AS (
    INSERT INTO {{schema}}.job_runs ({_RUN_COLUMNS})
    SELECT {_run_values(status="run_status", error="error")}
    FROM upd
    WHERE :history
), upd_woken AS (
    SELECT count(pg_notify(:control, 'done ' || id)) AS n FROM upd
    WHERE awaited AND job_status IN ('failed', 'cancelled')
), upd_hooked AS (
    SELECT {{schema}}.webhook_deliveries(
               array_agg(event), array_agg(id), array_agg(handler), array_agg(queue), array_agg(job_status),
               array_agg(attempt), array_agg(max_attempts), array_agg(error), array_agg(result::jsonb)) AS n
    FROM upd WHERE event IS NOT NULL AND {_WEBHOOKS_EXIST}
    HAVING count(*) > 0
), {_completed()}, {_freed("upd", "done")}
-- the notifications and deliveries run only if read (a CTE that is not read is not run)
SELECT array_agg(id) FROM (SELECT id FROM upd UNION ALL SELECT id FROM done) applied
WHERE (SELECT n FROM upd_woken) + (SELECT n FROM done_woken) + (SELECT count(n) FROM upd_hooked)
      + (SELECT count(n) FROM done_hooked) >= 0""", _COMPLETE_PARAMS),
    # A flush of one-off jobs that all succeeded (a busy queue's usual flush): the CTEs of _completed
    # alone, six columns where "complete" has twenty-two, so less for the server to read per job.
    "complete_success": _numbered(f"""
WITH {_completed()}, {_freed("done")}
SELECT array_agg(id) FROM done WHERE (SELECT n FROM done_woken) + (SELECT count(n) FROM done_hooked) >= 0""",
                                  _COMPLETE_SUCCESS_PARAMS),
    # Progress reported by running handlers (see progress.py): only a run still going on takes it.
    "set_progress": """
UPDATE {schema}.jobs j SET progress = u.progress, progress_message = u.message
FROM unnest($1::bigint[], $2::bigint[], $3::real[], $4::text[]) AS u(id, token, progress, message)
WHERE j.id = u.id AND j.claims = u.token AND j.status = 'running'""",
    "renew_leases": f"""
WITH r AS MATERIALIZED (
    SELECT u.id, u.token, 'running'::text AS running FROM unnest($1::bigint[], $2::bigint[]) AS u(id, token)
)
UPDATE {{schema}}.jobs j SET lease_expires_at = now() + make_interval(secs => $3)
FROM r
WHERE {_fence("r")}
RETURNING j.id""",
    "expired_leases": """
SELECT id, claims AS token, attempts, max_attempts, schedule, timezone, misfire, overlap, worker_id,
       last_run_at, COALESCE(tick_at, next_run_at) AS scheduled_at
FROM {schema}.jobs
WHERE status = 'running' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT $1
FOR UPDATE SKIP LOCKED""",
    "worker_heartbeat": """
INSERT INTO {schema}.workers AS w (id, hostname, pid, queues, concurrency, handlers, lease)
VALUES ($1, $2, $3, $4, $5, $6, $7)
-- what it serves can change while it runs (the webhook deliveries' queue comes and goes: webhooks.py)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now(), queues = EXCLUDED.queues, handlers = EXCLUDED.handlers""",
    "worker_remove": "DELETE FROM {schema}.workers WHERE id = $1",
    # Pending jobs that no live worker can claim: their (queue, handler) is served by none. One pass over
    # the pending part of the claim index, grouped, then each group checked against the few workers.
    "unserved": f"""
WITH p AS (
    SELECT queue, handler, count(*) AS count FROM {{schema}}.jobs WHERE status = 'pending' GROUP BY queue, handler
)
SELECT p.queue, p.handler, p.count FROM p
WHERE NOT EXISTS (
    SELECT 1 FROM {{schema}}.workers w
    WHERE {_ALIVE.format(w="w.")}
      AND p.queue = ANY(w.queues) AND p.handler = ANY(w.handlers))
ORDER BY p.queue, p.handler""",
    "workers_prune": """
DELETE FROM {schema}.workers WHERE heartbeat_at < now() - make_interval(secs => $1)""",
    "list_workers": f"""
SELECT id, hostname, pid, queues, concurrency, handlers, started_at, heartbeat_at,
       {_ALIVE.format(w="")} AS alive
FROM {{schema}}.workers ORDER BY started_at""",
    # --- pruning (maintenance; one pruner at a time per schema, under this session lock) ---
    "prune_lock": "SELECT pg_try_advisory_lock(hashtext($1))",
    "prune_unlock": "SELECT pg_advisory_unlock(hashtext($1))",
    # the same lock for one transaction, where sessions are not ours to keep (PgBouncer: docs/pgbouncer.md)
    "prune_xact_lock": "SELECT pg_try_advisory_xact_lock(hashtext($1))",
    # One batch of history past its age ($1 seconds): the next $2 rows after where the last batch left
    # off (prune_cursors 'age'; from the start when $3, a sweep), up to the first recent one. Rows are
    # written in the order they complete, so everything below that one is old (a row whose clock ran
    # behind waits for a later round), and a batch reads only its own rows: starting from the oldest row
    # again would read the index entries of every row deleted before, until (auto)vacuum removes them.
    # Returns the rows deleted and whether a full batch of old rows was found (call again). The
    # counters of completed jobs follow through migration 0009's trigger.
    "prune_runs": """
WITH batch AS MATERIALIZED (
    SELECT id, completed_at FROM {schema}.job_runs
    WHERE id > CASE WHEN $3 THEN 0 ELSE COALESCE(
        (SELECT after_id FROM {schema}.prune_cursors WHERE name = 'age'), 0) END
    ORDER BY id LIMIT $2
), recent AS (
    SELECT min(id) AS id FROM batch WHERE completed_at >= now() - make_interval(secs => $1)
), gone AS (
    DELETE FROM {schema}.job_runs
    WHERE id = ANY(ARRAY(SELECT id FROM batch WHERE id < COALESCE((SELECT id FROM recent), 9223372036854775807)))
    RETURNING id
), moved AS (
    INSERT INTO {schema}.prune_cursors (name, after_id) SELECT 'age', max(id) FROM gone HAVING count(*) > 0
    ON CONFLICT (name) DO UPDATE SET after_id = EXCLUDED.after_id
)
SELECT (SELECT count(*) FROM gone) AS deleted,
       (SELECT id FROM recent) IS NULL AND (SELECT count(*) FROM batch) = $2 AS more""",
    # The count limit: the queues keeping more than $1 completed jobs, and by how many (from the counters).
    "prune_over_limit": """
SELECT queue, sum(completed)::bigint - $1 AS excess FROM {schema}.queue_counts
GROUP BY queue HAVING sum(completed) > $1 ORDER BY queue""",
    # The $2 oldest completed jobs of queue $1, with all their runs (earlier attempts are plain rows of the
    # same job id). Only completed jobs: a failed job (a dead letter) stays in jobs, with its runs. Starts
    # after the last one it deleted in this queue (prune_cursors 'keep:<queue>'; from the start when $3).
    "prune_completed": """
WITH victims AS MATERIALIZED (
    SELECT id, job_id FROM {schema}.job_runs
    WHERE id > CASE WHEN $3 THEN 0 ELSE COALESCE(
        (SELECT after_id FROM {schema}.prune_cursors WHERE name = 'keep:' || $1), 0) END
      AND handler IS NOT NULL AND queue = $1
    ORDER BY id LIMIT $2
), gone AS (
    DELETE FROM {schema}.job_runs WHERE job_id = ANY(ARRAY(SELECT job_id FROM victims))
), moved AS (
    INSERT INTO {schema}.prune_cursors (name, after_id) SELECT 'keep:' || $1, max(id) FROM victims
    HAVING count(*) > 0
    ON CONFLICT (name) DO UPDATE SET after_id = EXCLUDED.after_id
)
SELECT count(*) FROM victims""",
    # Cancelled one-off jobs (and completed ones still in jobs: made recurring after they completed, then
    # one-off again) past job_retention. Reads the primary key of jobs (no index of its own on the hot
    # table), so maintenance runs it seldom.
    "prune_jobs": """
WITH gone AS (
    DELETE FROM {schema}.jobs WHERE id IN (
        SELECT id FROM {schema}.jobs
        WHERE status IN ('completed', 'cancelled') AND schedule IS NULL
          AND updated_at < now() - make_interval(secs => $1)
        ORDER BY id LIMIT $2)
    RETURNING 1
)
SELECT count(*) FROM gone""",
    # The counter rows of backends that are gone, added into backend 0's (migration 0009): a live
    # backend's row is left alone, so no completion waits for this.
    "prune_fold_counts": """
WITH gone AS (
    DELETE FROM {schema}.queue_counts
    WHERE backend <> 0 AND backend NOT IN (SELECT pid FROM pg_stat_activity WHERE pid IS NOT NULL)
    RETURNING queue, completed
)
INSERT INTO {schema}.queue_counts AS c (queue, backend, completed)
SELECT queue, 0, sum(completed) FROM gone GROUP BY queue
ON CONFLICT (queue, backend) DO UPDATE SET completed = c.completed + EXCLUDED.completed""",
    # --- admin ---
    # A job is in jobs or, once a one-off job completed, in its history row: never both. all_jobs reads
    # both, each by its index on the id (the condition reaches both sides of the view's UNION ALL).
    "get_job": f"SELECT {_JOB_COLUMNS} FROM {{schema}}.all_jobs WHERE id = $1 LIMIT 1",
    "get_jobs": f"SELECT {_JOB_COLUMNS} FROM {{schema}}.all_jobs WHERE id = ANY($1::bigint[])",
    # The newest of each table (the history's completed jobs through its (job_id, id) index), merged.
    # The cursor is a bound of the index scans whatever the plan: as "$4 IS NULL OR id < $4", a cached
    # generic plan read every row above it (275 ms for a page in the middle of 10^6 history rows). A
    # queue or handler filter is checked row by row (no index on them: each would cost every
    # completion), so a value that few completed jobs hold reads much of the history.
    "list_jobs": f"""
SELECT * FROM (
    (SELECT {_JOB_COLUMNS} FROM {{schema}}.jobs
     WHERE ($1::text IS NULL OR status = $1)
       AND ($2::text IS NULL OR queue = $2)
       AND ($3::text IS NULL OR handler = $3)
       AND ($6::jsonb IS NULL OR data @> $6)
       AND id < COALESCE($4::bigint, 9223372036854775807)
     ORDER BY id DESC
     LIMIT $5)
    UNION ALL
    (SELECT {_DONE_AS_JOB} FROM {{schema}}.job_runs
     WHERE {_DONE}
       AND ($1::text IS NULL OR $1 = 'completed')
       AND ($2::text IS NULL OR queue = $2)
       AND ($3::text IS NULL OR handler = $3)
       AND ($6::jsonb IS NULL OR data @> $6)
       AND job_id < COALESCE($4::bigint, 9223372036854775807)
     ORDER BY job_id DESC
     LIMIT $5)
) found
ORDER BY id DESC
LIMIT $5""",
    # $2 names the columns to set (see _UPDATE_PARAMS): one statement whatever an update changes.
    "update_job": f"""
UPDATE {{schema}}.jobs SET
    {_UPDATE_SET},
    -- a new due time leaves the tick that a retried run of a recurring job belonged to
    tick_at = CASE WHEN 'next_run_at' = ANY($2::text[]) THEN NULL ELSE tick_at END,
    updated_at = now()
WHERE id = $1
RETURNING {_JOB_COLUMNS}""",
    # The job's row, or its history row if it completed, and all its runs: the count of the first two. A
    # live job that others wait for is cancelled instead (its dependents follow: migration 0012), and -1
    # returned: deleted as it is, a running one would read as completed to them. The caller calls again.
    "delete_job": f"""
WITH c AS (
    UPDATE {{schema}}.jobs SET status = 'cancelled', lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND has_dependents AND status IN ('pending', 'running', 'waiting')
    RETURNING id
), d AS (DELETE FROM {{schema}}.jobs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM c) RETURNING id),
   h AS (DELETE FROM {{schema}}.job_runs WHERE job_id = $1 AND NOT EXISTS (SELECT 1 FROM c)
         RETURNING {_DONE} AS done)
SELECT CASE WHEN EXISTS (SELECT 1 FROM c) THEN -1
            ELSE (SELECT count(*) FROM d) + (SELECT count(*) FROM h WHERE done) END""",
    # The worker running the job (if it is running) stops it on the notification.
    "cancel_job": f"""
WITH c AS (
    UPDATE {{schema}}.jobs SET status = 'cancelled', lease_expires_at = NULL, updated_at = now()
    WHERE id = $1 AND status IN ('pending', 'running', 'waiting')
    RETURNING {_JOB_COLUMNS}
)
SELECT c.*, pg_notify($2, 'cancel ' || c.id) AS notified FROM c""",
    # App.wait: the job's end will notify the control channel (see _completed). A job already finished
    # (or recurring) is left as it is; the waiter reads it next either way.
    "await_job": """
UPDATE {schema}.jobs SET awaited = true
WHERE id = $1 AND status IN ('pending', 'running', 'waiting') AND schedule IS NULL AND awaited IS NOT TRUE""",
    # --- bulk actions: one statement each, filtered by queue ($1) and handler ($2) when given ---
    # Every failed job back to pending with a fresh attempt count, due now. Of failed jobs sharing a
    # dedup key, only the newest comes back, and none while a live job holds the key.
    "retry_failed": """
WITH u AS (
    UPDATE {schema}.jobs j
    SET status = 'pending', next_run_at = now(), tick_at = NULL, attempts = 0, updated_at = now()
    WHERE j.id IN (
        SELECT DISTINCT ON (COALESCE(f.dedup_key, f.id::text)) f.id FROM {schema}.jobs f
        WHERE f.status = 'failed' AND ($1::text IS NULL OR f.queue = $1) AND ($2::text IS NULL OR f.handler = $2)
        ORDER BY COALESCE(f.dedup_key, f.id::text), f.id DESC)
      AND (j.dedup_key IS NULL OR NOT EXISTS (
          SELECT 1 FROM {schema}.jobs o WHERE o.dedup_key = j.dedup_key AND o.status IN ('pending', 'running')))
    RETURNING j.queue
), woken AS (
    SELECT pg_notify($3, queue) FROM (SELECT DISTINCT queue FROM u) q
)
SELECT (SELECT count(*) FROM u) AS changed, (SELECT count(*) FROM woken) AS notified""",
    # Every pending (or waiting) job cancelled (a recurring one is paused, as by cancel).
    "cancel_pending": """
WITH c AS (
    UPDATE {schema}.jobs SET status = 'cancelled', updated_at = now()
    WHERE status IN ('pending', 'waiting') AND ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR handler = $2)
    RETURNING id
)
SELECT count(*) FROM c""",
    # Finished jobs that ended more than $3 seconds ago, with their runs: failed and cancelled one-off
    # jobs (in jobs), completed ones (their history rows, migration 0006). The runs of both are the plain
    # rows (handler IS NULL) of their ids, so no row is deleted twice.
    "delete_finished": """
WITH j AS (
    DELETE FROM {schema}.jobs
    WHERE status IN ('failed', 'cancelled') AND schedule IS NULL AND updated_at < now() - make_interval(secs => $3)
      AND ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR handler = $2)
    RETURNING id
), c AS (
    DELETE FROM {schema}.job_runs
    WHERE handler IS NOT NULL AND completed_at < now() - make_interval(secs => $3)
      AND ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR handler = $2)
    RETURNING job_id
), runs AS (
    DELETE FROM {schema}.job_runs
    WHERE job_id IN (SELECT id FROM j UNION ALL SELECT job_id FROM c) AND handler IS NULL
    RETURNING 1
)
SELECT (SELECT count(*) FROM j) + (SELECT count(*) FROM c)""",
    # Pause or resume a queue for every worker; resuming wakes the queue's idle workers.
    "set_queue_paused": """
INSERT INTO {schema}.queues AS s (name, paused) VALUES ($1, $2)
ON CONFLICT (name) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
RETURNING s.name, s.paused, s.updated_at, CASE WHEN NOT s.paused THEN pg_notify($3, s.name) END AS notified""",
    "queue_settings": """
SELECT name, paused, updated_at, concurrency_limit, rate_limit, rate_period FROM {schema}.queues ORDER BY name""",
    # A queue's limits (docs/limits.md): $2 to $4 are set when $5 (concurrency) or $6 (rate) says so, else
    # kept. Every worker reloads its queues' settings on the notification ("limits <queue>").
    "set_queue_limits": """
INSERT INTO {schema}.queues AS s (name, concurrency_limit, rate_limit, rate_period) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE SET
    concurrency_limit = CASE WHEN $5 THEN EXCLUDED.concurrency_limit ELSE s.concurrency_limit END,
    rate_limit = CASE WHEN $6 THEN EXCLUDED.rate_limit ELSE s.rate_limit END,
    rate_period = CASE WHEN $6 THEN EXCLUDED.rate_period ELSE s.rate_period END,
    updated_at = now()
RETURNING s.name, s.paused, s.updated_at, s.concurrency_limit, s.rate_limit, s.rate_period,
          pg_notify($7, 'limits ' || s.name) AS notified""",
    # What no claim deletes: the places under concurrency limits of jobs that left running other than by their
    # completion (cancelled, their worker gone; deleted), and starts past any period (a day) of limits since
    # removed (migration 0013).
    "prune_limits": f"""
WITH stale AS (
    DELETE FROM {{schema}}.limit_holders h
    WHERE NOT EXISTS (SELECT 1 FROM {{schema}}.jobs j WHERE j.id = h.job_id AND j.claims = h.token
                      AND j.status = 'running')
    RETURNING h.kind, h.name, h.ckey
), {_counted_holders("stale", "-")}, gone AS (
    DELETE FROM {{schema}}.limit_starts WHERE last_at < now() - interval '1 day' RETURNING 1
)
SELECT (SELECT count(*) FROM stale) + (SELECT count(*) FROM gone)""",
    # The counts of groups with no place taken (after prune_limits): a claim that takes one inserts it again.
    "prune_limit_counts": "DELETE FROM {schema}.limit_counts WHERE running = 0",
    # --- webhooks (migration 0014; webhooks.py) ---
    # A new webhook; every idle worker that delivers is told on the control channel to start serving.
    "add_webhook": f"""
INSERT INTO {{schema}}.webhooks (url, events, handlers, queues, secret, max_attempts, description)
VALUES ($1, $2::text[], $3::text[], $4::text[], $5, $6, $7)
RETURNING {_WEBHOOK_COLUMNS}, pg_notify($8, 'webhooks') AS notified""",
    "list_webhooks": f"SELECT {_WEBHOOK_COLUMNS} FROM {{schema}}.webhooks ORDER BY id",
    # What a delivery needs of its webhook at the time it is sent: the URL and secret as they are now.
    "get_webhook": f"SELECT {_WEBHOOK_COLUMNS}, secret FROM {{schema}}.webhooks WHERE id = $1",
    "remove_webhook": "DELETE FROM {schema}.webhooks WHERE id = $1 RETURNING id",
    # Whether a worker that delivers webhooks has anything to serve: a webhook, or a delivery left pending
    # (one range of the claim index).
    "webhooks_active": f"""
SELECT {_WEBHOOKS_EXIST} OR EXISTS (
    SELECT FROM {{schema}}.jobs
    WHERE status = 'pending' AND queue = '{WEBHOOK_QUEUE}' AND handler = '{WEBHOOK_HANDLER}')""",
    # Which of these (id, claim token) runs were cancelled since their claim: the lease renewal's
    # fallback for a cancel notification the worker missed.
    "cancelled_runs": """
SELECT j.id FROM unnest($1::bigint[], $2::bigint[]) AS u(id, token)
JOIN {schema}.jobs j ON j.id = u.id AND j.claims = u.token
WHERE j.status = 'cancelled'""",
    # retry and trigger re-queue a job to run now; the notify wakes a worker.
    "requeue_job": f"""
WITH u AS (
    UPDATE {{schema}}.jobs j
    SET status = 'pending', next_run_at = COALESCE($3, now()), tick_at = NULL, updated_at = now(),
        attempts = CASE WHEN j.status = 'pending' THEN j.attempts ELSE 0 END
    WHERE j.id = $1 AND j.status = ANY($2::text[])
      -- a finished job cannot come back while another live job holds its dedup key
      AND (j.dedup_key IS NULL OR j.status IN ('pending', 'running') OR NOT EXISTS (
          SELECT 1 FROM {{schema}}.jobs o
          WHERE o.dedup_key = j.dedup_key AND o.status IN ('pending', 'running') AND o.id <> j.id))
    RETURNING {_JOB_COLUMNS}
)
SELECT u.*, pg_notify($4, u.queue) AS notified FROM u""",
    # A completed one-off job runs again: its row comes back to jobs from its history row, which becomes
    # a plain run row, with the claim counter where the last claim left it (tokens never repeat). Nothing
    # happens while another live job holds its dedup key.
    "restore_job": f"""
WITH f AS (
    SELECT * FROM {{schema}}.job_runs WHERE job_id = $1 AND {_DONE} ORDER BY id DESC LIMIT 1 FOR UPDATE
), ins AS (
    INSERT INTO {{schema}}.jobs
        (id, claims, attempts, status, next_run_at, result, worker_id, {_DONE_JOB_COLUMNS})
    OVERRIDING SYSTEM VALUE
    SELECT job_id, COALESCE(claim, 0), 0, 'pending', COALESCE($2, now()), result, worker_id, {_DONE_JOB_COLUMNS}
    FROM f
    {_ON_DEDUP_CONFLICT}
    RETURNING {_JOB_COLUMNS}
), plain AS (
    UPDATE {{schema}}.job_runs r
    SET {", ".join(c + " = NULL" for c in _DONE_JOB)}
    FROM f, ins
    WHERE r.id = f.id
)
SELECT ins.*, pg_notify($3, ins.queue) AS notified FROM ins""",
    # Every job of these handlers, wherever it is, with its runs (the demo starts afresh this way).
    "delete_handler_jobs": f"""
WITH gone AS (
    SELECT id FROM {{schema}}.jobs WHERE handler = ANY($1::text[])
    UNION
    SELECT job_id FROM {{schema}}.job_runs WHERE handler = ANY($1::text[])
), d AS (DELETE FROM {{schema}}.jobs WHERE id IN (SELECT id FROM gone) RETURNING id),
   h AS (DELETE FROM {{schema}}.job_runs WHERE job_id IN (SELECT id FROM gone) RETURNING {_DONE} AS done)
SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM h WHERE done)""",
    # What the completed ones of these jobs returned: a dependent's ctx.parent_results.
    "parent_results": """
SELECT id, result FROM {schema}.all_jobs WHERE id = ANY($1::bigint[]) AND status = 'completed'""",
    "job_runs": """
SELECT id, job_id, attempt, worker_id, status, scheduled_at, started_at, completed_at, duration_ms, error,
       result
FROM {schema}.job_runs WHERE job_id = $1 ORDER BY id
LIMIT $2""",
    # Live jobs counted exactly from jobs; completed one-off jobs from the counters that completion,
    # pruning and deletion keep (migration 0009), not by counting the history (330 ms at 3 * 10^5 runs).
    # A total below zero (jobs completed by a release that did not count, then pruned) reads as none.
    # Runs per minute and status over the last $1 minutes (the dashboard's charts). No index on completed_at
    # (one would cost every completion): a scan of the history, whose size pruning bounds (docs/http.md).
    # The server's current minute comes in every row (one row of NULLs when nothing ran).
    # The history is written in the order runs end (as pruning relies on), so the window starts at the first
    # row, by id, that ended in it: found by a binary search over the primary key (about 20 probes, where a
    # filter on completed_at, which has no index, read the whole history: 290 ms at 10^6 rows), then only
    # the window's rows are read. A row that ended in the window behind an older id is not counted.
    "throughput": """
WITH RECURSIVE t AS (
    SELECT date_trunc('minute', now()) AS now_minute,
           date_trunc('minute', now()) - make_interval(mins => $1 - 1) AS since
), s(lo, hi) AS (
    SELECT (SELECT min(id) FROM {schema}.job_runs), (SELECT max(id) FROM {schema}.job_runs) + 1
    UNION ALL
    SELECT CASE WHEN m.ended IS NULL OR m.ended >= (SELECT since FROM t) THEN s.lo ELSE m.mid + 1 END,
           CASE WHEN m.ended IS NULL OR m.ended >= (SELECT since FROM t) THEN m.mid ELSE s.hi END
    FROM s CROSS JOIN LATERAL (
        SELECT (s.lo + s.hi) / 2 AS mid,
               (SELECT r.completed_at FROM {schema}.job_runs r WHERE r.id >= (s.lo + s.hi) / 2 ORDER BY r.id LIMIT 1)
               AS ended
    ) m
    WHERE s.lo < s.hi
)
SELECT t.now_minute, r.minute, r.status, r.n
FROM t
LEFT JOIN LATERAL (
    SELECT date_trunc('minute', completed_at) AS minute, status, count(*) AS n
    FROM {schema}.job_runs
    WHERE id >= (SELECT min(lo) FROM s WHERE lo >= hi) AND completed_at >= t.since
    GROUP BY 1, 2
) r ON true""",
    "queue_stats": """
SELECT queue, status, sum(count)::bigint AS count, min(oldest_due) AS oldest_due FROM (
    SELECT queue, status, count(*) AS count,
           min(next_run_at) FILTER (WHERE status = 'pending' AND next_run_at <= now()) AS oldest_due
    FROM {schema}.jobs GROUP BY queue, status
    UNION ALL
    SELECT queue, 'completed', sum(completed), NULL FROM {schema}.queue_counts
    GROUP BY queue HAVING sum(completed) > 0
) counted
GROUP BY queue, status ORDER BY queue, status""",
}


def _literal(values: Sequence[int | float | str | None]) -> str | None:
    """A PostgreSQL array literal of numbers, booleans or plain words (nothing to quote), NULL for None.

    None (one NULL array) when every value is None.
    """
    if all(v is None for v in values):
        return None
    return "{" + ",".join(["NULL" if v is None else str(v) for v in values]) + "}"


def _sparse(values: list[Any]) -> list[Any] | None:
    """The values, or None (one NULL array) when every value is None."""
    return values if any(v is not None for v in values) else None


def _micros(values: Sequence[datetime | None]) -> str | None:
    """An array literal of microseconds since the epoch (exact, and cheaper to format than floats).

    None (one NULL array) when every value is None.
    """
    if all(v is None for v in values):
        return None
    return "{" + ",".join(["NULL" if v is None else str(micros(v)) for v in values]) + "}"


@contextlib.asynccontextmanager
async def _parents_checked() -> Any:
    """Turn migration 0012's refusal of a job's parents (SQLSTATE AJ001: not found, recurring) into the
    ValidationError of ``after``."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        if getattr(exc, "sqlstate", None) == "AJ001":
            raise ValidationError("after", str(getattr(exc, "message", exc))) from None
        raise


#: the limits of a worker's handlers as "claim_limited" takes them: names, concurrency limits, rate limits
#: (starts) and their periods (seconds), one entry per handler (None where it has no such limit)
HandlerLimits = tuple[list[str], list[int | None], list[int | None], list[float | None]]


def _claimed_jobs(rows: Sequence[Any]) -> list[ClaimedJob]:
    """The jobs of a claim's rows (the columns of _CLAIMED, in order)."""
    if not rows:
        return []
    claimed_at = datetime.now(UTC)
    datas = load_json(json_array([r[2] for r in rows]))
    at = _CLAIMED_AT
    return [build_claimed_job(*(t := tuple(r))[:2], data, *t[3:at], claimed_at, *t[at:])
            for r, data in zip(rows, datas, strict=True)]


@dataclass(frozen=True)
class ClaimCondition:
    """A condition a pending job must meet for a worker to claim it: the claim's seam for features.

    ``sql`` is a boolean SQL expression on the jobs row ``j`` that names its parameters
    ``:name``, with a cast (``j.handler = ANY(:handlers::text[])``); ``params`` gives their
    values. The claim's other conditions (pending, due, one of the worker's queues) and its
    order (priority, due time, id) stay; each condition narrows what the claim may take, read
    in the same statement under the same row locks, so no job is claimed and then released.
    """

    sql: str
    params: Mapping[str, Any] = field(default_factory=dict)


class Claim:
    """A worker's claim statement, its handlers and :class:`ClaimCondition` s bound in: built once per worker.

    The condition parameters' names become positions after the claim's own (``first`` on: five for the
    plain claim, nine for the limited one), so the statement is prepared once per connection like any other.
    """

    def __init__(self, sql: str, handlers: Sequence[str], conditions: Sequence[ClaimCondition], *,
                 first: int = 6) -> None:
        names: dict[str, int] = {}
        args: list[Any] = []

        def position(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                values = [c.params[name] for c in conditions if name in c.params]
                if not values:
                    raise ValueError(f"claim condition parameter :{name} has no value")
                names[name] = first + len(args)
                args.append(values[0])
            return f"${names[name]}"

        where = "".join(f"\n          AND ({_NAMED_PARAM.sub(position, c.sql)})" for c in conditions)
        self.sql = sql.replace("{conditions}", where)
        #: the handlers a claimed job may have: those the worker can run
        self.handlers = sorted(set(handlers))
        self.args = tuple(args)


@dataclass
class Pruned:
    """What one :meth:`Queries.prune` pass deleted, and whether a kind has more to delete (``more``)."""

    runs: int = 0
    """history rows past their age (completed jobs among them)"""
    completed: int = 0
    """completed jobs over the count limit (each with all its runs)"""
    jobs: int = 0
    """cancelled one-off jobs past their age"""
    more: bool = False


class Queries:
    """All statements of one schema. Methods take the connection (or pool) to use."""

    def __init__(self, schema: str) -> None:
        self.schema = validate_schema_name(schema)
        #: where an enqueue wakes the workers of a queue (the payload is the queue's name)
        self.channel = f"{schema}_jobs"
        #: where workers learn of deferred jobs (``due <seconds> <queue>``) and cancels (``cancel <id>``)
        self.control_channel = f"{schema}_control"
        self.sql = {name: text.replace("{schema}", schema) for name, text in _SQL.items()}
        #: each statement's name by its text, and the texts of those that only read (see GuardedDB)
        self.names = {text: name for name, text in self.sql.items()}
        self.reads = frozenset(self.sql[name] for name in READ_STATEMENTS)

    # --- enqueue ---
    async def insert_job(self, db: DB, job: NewJob) -> tuple[int, datetime, datetime]:
        """Insert one job without a dedup key (see :meth:`insert_dedup`): its id, created_at and next_run_at."""
        row = await db.fetchrow(self.sql["insert"], *_new_job_params(job), self.channel, self.control_channel)
        return row[0], row[1], row[2] or row[1]

    async def insert_dedup(self, db: DB, job: NewJob) -> Job | None:
        """Insert one job with a dedup key: the job, or None when a live job holds the key."""
        async with _parents_checked():
            row: Row | None = await db.fetchrow(self.sql["insert_dedup"], *_new_job_params(job), self.channel,
                                                self.control_channel)
        return None if row is None else Job.from_record(row)

    async def insert_window(self, db: DB, job: NewJob) -> Windowed:
        """Insert one job with a dedup key and ``dedup_window``, unless a job holds the key: a live one, or one
        created within the window. The new job, or the ``holder``'s id (both None: a live job took the key
        meanwhile, try again)."""
        async with _parents_checked():
            row: Row = await db.fetchrow(self.sql["insert_window"], *_new_job_params(job), self.channel,
                                         self.control_channel, job.dedup_window)
        return Windowed(None if row["id"] is None else Job.from_record(row), row["holder"])

    async def insert_after(self, db: DB, job: NewJob) -> Job:
        """Insert one job with parents (``after=``, no dedup key): the job, as migration 0012's trigger left it."""
        async with _parents_checked():
            row: Row = await db.fetchrow(self.sql["insert_after"], *_new_job_params(job), self.channel,
                                         self.control_channel)
        return Job.from_record(row)

    async def insert_plain(self, db: DB, job: NewJob) -> tuple[int, datetime, datetime]:
        """Insert a plain job (:attr:`NewJob.plain`), due now: its id, created_at and next_run_at."""
        row = await db.fetchrow(self.sql["insert_plain"], job.handler, job.data_json, job.queue, job.priority,
                                job.max_attempts, self.channel)
        return row[0], row[1], row[1]

    async def upsert_periodic(self, db: DB, job: NewJob, key: str) -> Upserted | None:
        """Create or update the declared schedule ``key``: its id and whether it was inserted; None when
        it was already up to date."""
        row: Row | None = await db.fetchrow(self.sql["upsert_periodic"], *_new_job_params(job), key)
        return None if row is None else _named(Upserted, row)

    async def recurring_jobs(self, db: DB) -> list[Job]:
        """Every job with a schedule, soonest first."""
        return [Job.from_record(r) for r in await db.fetch(self.sql["recurring_jobs"])]

    async def find_live_dedup(self, db: DB, dedup_key: str) -> Job | None:
        """The pending or running job holding ``dedup_key``, if any."""
        row: Row | None = await db.fetchrow(self.sql["find_live_dedup"], dedup_key)
        return None if row is None else Job.from_record(row)

    async def insert_many(self, db: DB, jobs: Sequence[NewJob], data: str, *, dedup: bool) -> Inserted:
        """Insert these jobs in one statement; ``data`` is every job's data as one JSON array, in the same
        order (the jobs' own ``data_json`` is not read). Jobs with a ``dedup_window`` whose key a job holds
        are not inserted: ``holders`` says which job holds it."""
        args: list[Any] = [data]
        for i, column in enumerate(zip(*map(_many_params, jobs), strict=True)):
            if column.count(column[0]) == len(column):
                args += (None, column[0])
            elif _MANY_ARRAYS[i]:
                args += ([None if v is None else _literal(v) for v in column], None)
            else:
                args += (_literal(column) if _MANY_LITERALS[i] else column, None)
        windows = [j.dedup_window for j in jobs] if dedup else []
        if any(w is not None for w in windows):
            keys = [j.dedup_key if j.dedup_window is not None else None for j in jobs]
            async with _parents_checked():
                row = await db.fetchrow(self.sql["insert_many_window"], *args, self.channel, self.control_channel,
                                        keys, windows)
            return Inserted(row["now"], row["ids"] or [], row["due"] or [], row["keys"] or [], row["holders"])
        async with _parents_checked():
            row = await db.fetchrow(self.sql["insert_many_dedup" if dedup else "insert_many"], *args, self.channel,
                                    self.control_channel)
        return Inserted(row["now"], row["ids"] or [], row["due"] or [], row["keys"] or [])

    async def insert_uniform(self, db: DB, kind: NewJob, data: str) -> tuple[datetime, list[int]]:
        """Insert one job per item of the JSON array ``data``, each with the other fields of the plain job
        ``kind``: every job's created_at (and due time), and the ids in array order."""
        row = await db.fetchrow(self.sql["insert_uniform"], data, *_uniform_params(kind), self.channel)
        return row["now"], row["ids"] or []

    # --- worker ---
    def claim_for(self, handlers: Sequence[str], conditions: Sequence[ClaimCondition] = ()) -> Claim:
        """The claim statement of a worker that runs ``handlers``, whose jobs must also meet ``conditions``."""
        return Claim(self.sql["claim"], handlers, conditions)

    async def claim(self, db: DB, queues: Sequence[str], limit: int, lease: float, worker_id: str,
                    claim: Claim) -> list[ClaimedJob]:
        """Flip up to ``limit`` due pending jobs of ``queues`` that ``claim`` admits to running."""
        rows = await db.fetch(claim.sql, list(queues), limit, lease, worker_id, claim.handlers, *claim.args)
        return _claimed_jobs(rows)

    def claim_limited_for(self, handlers: Sequence[str], conditions: Sequence[ClaimCondition] = ()) -> Claim:
        """The claim statement of the (queue, handler) pairs under limits (:meth:`claim_limited`)."""
        return Claim(self.sql["claim_limited"], handlers, conditions, first=10)

    async def claim_limited(self, db: DB, pairs: Sequence[tuple[str, str]], limit: int, lease: float,
                            worker_id: str, claim: Claim, handler_limits: HandlerLimits) -> list[ClaimedJob]:
        """Flip up to ``limit`` due pending jobs of these (queue, handler) pairs to running, as many as the
        queues' limits (read from ``queues``) and ``handler_limits`` let start now, fleet-wide."""
        rows = await db.fetch(claim.sql, [p[0] for p in pairs], limit, lease, worker_id, [p[1] for p in pairs],
                              *handler_limits, *claim.args)
        return _claimed_jobs(rows)

    async def next_due(self, db: DB, queues: Sequence[str], handlers: Sequence[str]) -> float | None:
        """Seconds until the next deferred job of ``queues`` and ``handlers`` is due; None if none is."""
        seconds: float | None = await db.fetchval(self.sql["next_due"], list(queues), list(handlers))
        return seconds

    async def complete(self, db: DB, outcomes: Sequence[Outcome], *, history: bool) -> set[int]:
        """Apply outcomes with fencing; returns the ids whose update went through."""
        # One worker id for the whole batch is the usual case: send it once (OUTCOME_PARAMS says how
        # each array is sent).
        worker_id = outcomes[0].worker_id if outcomes else None
        # In id order: the statement then locks the rows in the order an enqueue with parents locks them
        # (migration 0019), so the two never wait for each other in a cycle.
        outcomes = sorted(outcomes, key=_BY_JOB_ID)
        # A COMPLETED job status is a one-off job's success, with nothing else to write (see Outcome).
        completed = JobStatus.COMPLETED
        done = [o for o in outcomes if o.job_status is completed]
        if len(done) == len(outcomes):
            applied = await db.fetchval(self.sql["complete_success"],
                                        *_complete_success_args((), done, worker_id, history, self.control_channel))
        else:
            rest = [o for o in outcomes if o.job_status is not completed]
            applied = await db.fetchval(self.sql["complete"],
                                        *_complete_args(rest, done, worker_id, history, self.control_channel))
        return set(applied or ())

    async def set_progress(self, db: DB, runs: Sequence[tuple[int, int, float, str | None]]) -> None:
        """Set the progress of (id, claim token, fraction, message) runs that are still running."""
        await db.execute(self.sql["set_progress"], [r[0] for r in runs], [r[1] for r in runs],
                         [r[2] for r in runs], [r[3] for r in runs])

    async def renew_leases(self, db: DB, jobs: Sequence[tuple[int, int]], lease: float) -> set[int]:
        """Extend the leases of (id, claim token) pairs still running; returns the ids renewed."""
        rows = await db.fetch(self.sql["renew_leases"], [j[0] for j in jobs], [j[1] for j in jobs], lease)
        return {r["id"] for r in rows}

    async def cancelled_runs(self, db: DB, jobs: Sequence[tuple[int, int]]) -> set[int]:
        """The ids among (id, claim token) pairs whose job was cancelled while that claim ran it."""
        rows = await db.fetch(self.sql["cancelled_runs"], [j[0] for j in jobs], [j[1] for j in jobs])
        return {r[0] for r in rows}

    async def expired_leases(self, db: DB, limit: int) -> list[ExpiredLease]:
        """Lock running jobs whose lease has expired (call inside a transaction)."""
        return [_named(ExpiredLease, r) for r in await db.fetch(self.sql["expired_leases"], limit)]

    async def worker_heartbeat(self, db: DB, worker_id: str, hostname: str, pid: int, queues: Sequence[str],
                               concurrency: int, handlers: Sequence[str], lease: float) -> None:
        """Register the worker (with what it runs, and its lease) or refresh its heartbeat."""
        await db.execute(self.sql["worker_heartbeat"], worker_id, hostname, pid, list(queues), concurrency,
                         list(handlers), lease)

    async def worker_remove(self, db: DB, worker_id: str) -> None:
        """Forget a worker that stopped."""
        await db.execute(self.sql["worker_remove"], worker_id)

    async def unserved(self, db: DB) -> list[Unserved]:
        """(queue, handler, count) of pending jobs whose queue and handler no live worker serves."""
        return [_named(Unserved, r) for r in await db.fetch(self.sql["unserved"])]

    async def list_workers(self, db: DB) -> list[WorkerRow]:
        """Registered workers with their last heartbeat."""
        return [_named(WorkerRow, r) for r in await db.fetch(self.sql["list_workers"])]

    async def prune(self, db: DB, *, runs_older_than: float | None, jobs_older_than: float | None,
                    workers_older_than: float | None, keep_completed: int | None = None, batch: int = 5000,
                    sweep: bool = False) -> Pruned:
        """One batch of each kind of pruning (``None`` skips a kind); call again while ``more``.

        History rows older than ``runs_older_than`` seconds (completed jobs with them), the oldest
        completed jobs of each queue keeping more than ``keep_completed``, cancelled one-off jobs
        older than ``jobs_older_than``, and worker rows silent for ``workers_older_than``. ``sweep``
        starts from the oldest row instead of where the last batch left off. Run it with the lock
        of :meth:`prune_lock` held, or where nothing else prunes.
        """
        done = Pruned()
        if runs_older_than is not None:
            row = await db.fetchrow(self.sql["prune_runs"], runs_older_than, batch, sweep)
            done.runs, done.more = row["deleted"], done.more or row["more"]
        if keep_completed is not None:
            for queue, excess in await db.fetch(self.sql["prune_over_limit"], keep_completed):
                deleted = await db.fetchval(self.sql["prune_completed"], queue, min(excess, batch), sweep)
                done.completed += deleted
                done.more = done.more or batch == deleted < excess
        if jobs_older_than is not None:
            done.jobs = await db.fetchval(self.sql["prune_jobs"], jobs_older_than, batch)
            done.more = done.more or done.jobs == batch
        if workers_older_than is not None:
            await db.execute(self.sql["workers_prune"], workers_older_than)
            # once a round too: what the limits' claims and completions do not delete (see "prune_limits")
            await db.fetchval(self.sql["prune_limits"])
            await db.execute(self.sql["prune_limit_counts"])
        return done

    async def prune_lock(self, conn: Conn) -> bool:
        """Take the schema's pruning lock for ``conn``'s session, if no other session holds it."""
        return bool(await conn.fetchval(self.sql["prune_lock"], f"aiojobs_pg:prune:{self.schema}"))

    async def prune_unlock(self, conn: Conn) -> None:
        """Give the pruning lock back."""
        await conn.fetchval(self.sql["prune_unlock"], f"aiojobs_pg:prune:{self.schema}")

    async def prune_xact_lock(self, conn: Conn) -> bool:
        """Take the pruning lock until the end of ``conn``'s transaction, if no other session holds it.

        The same lock as :meth:`prune_lock`, so session and transaction pruners exclude each other.
        """
        return bool(await conn.fetchval(self.sql["prune_xact_lock"], f"aiojobs_pg:prune:{self.schema}"))

    async def demo_lock(self, conn: Conn) -> bool:
        """Take the lock one ``demo`` run holds on the schema for ``conn``'s session (it ends with the
        session), if no other session holds it."""
        return bool(await conn.fetchval(self.sql["prune_lock"], f"aiojobs_pg:demo:{self.schema}"))

    async def fold_counts(self, db: DB) -> None:
        """Fold the counter rows of backends that are gone into one row per queue."""
        await db.execute(self.sql["prune_fold_counts"])

    # --- admin ---
    async def get_job(self, db: DB, job_id: int) -> Job | None:
        """One job (a completed one-off job from its history row) or None."""
        row: Row | None = await db.fetchrow(self.sql["get_job"], job_id)
        return None if row is None else Job.from_record(row)

    async def get_jobs(self, db: DB, job_ids: Sequence[int]) -> list[Job]:
        """The jobs among ``job_ids`` that exist, in no particular order."""
        return [Job.from_record(r) for r in await db.fetch(self.sql["get_jobs"], list(job_ids))]

    async def list_jobs(self, db: DB, *, status: str | None, queue: str | None, handler: str | None,
                        before_id: int | None, limit: int, data: str | None = None) -> list[Job]:
        """Jobs newest first, filtered, keyset-paginated by id; ``data``: JSON text of an object the
        jobs' data must contain (``@>``)."""
        rows = await db.fetch(self.sql["list_jobs"], status, queue, handler, before_id, limit, data)
        return [Job.from_record(r) for r in rows]

    async def update_job(self, db: DB, job_id: int, changes: Mapping[str, Any]) -> Job | None:
        """Set columns of a job in ``jobs`` (``changes``: column → value, columns a new job fills) and
        return it; None when no such row exists. A new ``next_run_at`` clears ``tick_at``."""
        unknown = changes.keys() - _UPDATE_PARAMS.keys()
        if unknown:
            raise ValueError(f"update_job cannot set {', '.join(sorted(unknown))}")
        row: Row | None = await db.fetchrow(self.sql["update_job"], job_id, list(changes),
                                            *map(changes.get, _UPDATE_PARAMS))
        return None if row is None else Job.from_record(row)

    async def delete_job(self, db: DB, job_id: int) -> int:
        """Delete a job and its history: 1, or 0 when the id is unknown; -1 when it was a live job with
        dependents, cancelled instead (call again to delete it)."""
        deleted: int = await db.fetchval(self.sql["delete_job"], job_id)
        return deleted

    async def delete_handler_jobs(self, db: DB, handlers: Sequence[str]) -> int:
        """Delete every job of these handlers and its history; returns how many jobs."""
        return int(await db.fetchval(self.sql["delete_handler_jobs"], list(handlers)))

    async def cancel_job(self, db: DB, job_id: int) -> Job | None:
        """Cancel a pending or running job: the job; None when it is in another status (or unknown)."""
        row: Row | None = await db.fetchrow(self.sql["cancel_job"], job_id, self.control_channel)
        return None if row is None else Job.from_record(row)

    async def retry_failed(self, db: DB, queue: str | None, handler: str | None) -> int:
        """Re-queue every failed job (of ``queue`` / ``handler`` if given); how many."""
        row = await db.fetchrow(self.sql["retry_failed"], queue, handler, self.channel)
        return int(row["changed"])

    async def cancel_pending(self, db: DB, queue: str | None, handler: str | None) -> int:
        """Cancel every pending job (of ``queue`` / ``handler`` if given); how many."""
        return int(await db.fetchval(self.sql["cancel_pending"], queue, handler))

    async def delete_finished(self, db: DB, queue: str | None, handler: str | None, older_than: float) -> int:
        """Delete the jobs that finished more than ``older_than`` seconds ago, with their runs; how many."""
        return int(await db.fetchval(self.sql["delete_finished"], queue, handler, older_than))

    async def set_queue_paused(self, db: DB, queue: str, paused: bool) -> None:
        """Pause (or resume) ``queue`` for every worker."""
        await db.fetchrow(self.sql["set_queue_paused"], queue, paused, self.channel)

    async def queue_settings(self, db: DB) -> list[QueueRow]:
        """Every queue with settings of its own (paused or not, its limits), by name."""
        return [_named(QueueRow, r) for r in await db.fetch(self.sql["queue_settings"])]

    async def set_queue_limits(self, db: DB, queue: str, *, concurrency: int | None, set_concurrency: bool,
                               rate: tuple[int, float] | None, set_rate: bool) -> QueueRow:
        """Set (``set_*``) or clear (None) a queue's concurrency limit and its rate limit (starts, period in
        seconds), leaving the other as it is; tells every worker. The queue's settings row."""
        count, period = rate if rate is not None else (None, None)
        row: Row = await db.fetchrow(self.sql["set_queue_limits"], queue, concurrency, count, period,
                                     set_concurrency, set_rate, self.control_channel)
        return _named(QueueRow, row)

    async def await_job(self, db: DB, job_id: int) -> None:
        """Have the job's completion, failure or cancellation notify the control channel."""
        await db.execute(self.sql["await_job"], job_id)

    async def requeue_job(self, db: DB, job_id: int, from_statuses: Sequence[str],
                          run_at: datetime | None) -> Job | None:
        """Make a job pending and due at ``run_at`` (now if None) if it is in one of ``from_statuses``: the
        job, else None."""
        row: Row | None = await db.fetchrow(self.sql["requeue_job"], job_id, list(from_statuses), run_at,
                                            self.channel)
        return None if row is None else Job.from_record(row)

    async def restore_job(self, db: DB, job_id: int, run_at: datetime | None) -> Job | None:
        """Bring a completed one-off job back to ``pending``, due at ``run_at`` (now if None): the job.

        None when the job is not a completed one (or another live job holds its dedup key).
        """
        row: Row | None = await db.fetchrow(self.sql["restore_job"], job_id, run_at, self.channel)
        return None if row is None else Job.from_record(row)

    async def parent_results(self, db: DB, job_ids: Sequence[int]) -> dict[int, Any]:
        """The results of those of ``job_ids`` that completed (and are still kept), by id."""
        return {r["id"]: r["result"] for r in await db.fetch(self.sql["parent_results"], list(job_ids))}

    async def job_runs(self, db: DB, job_id: int, limit: int) -> list[Run]:
        """The runs of one job (its history rows), oldest first."""
        return [Run.from_record(r) for r in await db.fetch(self.sql["job_runs"], job_id, limit)]

    async def throughput(self, db: DB, minutes: int) -> list[ThroughputRow]:
        """History rows per (``minute``, ``status``): ``n``, over the last ``minutes`` minutes, the current
        one included; every row carries the server's current minute (``now_minute``)."""
        return [_named(ThroughputRow, r) for r in await db.fetch(self.sql["throughput"], minutes)]

    async def queue_stats(self, db: DB) -> list[QueueStat]:
        """Counts per queue and status, with the oldest due time of pending jobs."""
        return [_named(QueueStat, r) for r in await db.fetch(self.sql["queue_stats"])]

    # --- webhooks ---
    async def add_webhook(self, db: DB, url: str, events: Sequence[str], handlers: Sequence[str] | None,
                          queues: Sequence[str] | None, secret: str, max_attempts: int,
                          description: str | None) -> Webhook:
        """Register a webhook (values checked by the caller); its row, without the secret."""
        row: Row = await db.fetchrow(self.sql["add_webhook"], url, list(events),
                                     None if handlers is None else list(handlers),
                                     None if queues is None else list(queues), secret, max_attempts, description,
                                     self.control_channel)
        return _named(Webhook, row)

    async def list_webhooks(self, db: DB) -> list[Webhook]:
        """Every webhook, oldest first, without secrets."""
        return [_named(Webhook, r) for r in await db.fetch(self.sql["list_webhooks"])]

    async def get_webhook(self, db: DB, webhook_id: int) -> Webhook | None:
        """One webhook with its secret, or None."""
        row: Row | None = await db.fetchrow(self.sql["get_webhook"], webhook_id)
        return None if row is None else _named(Webhook, row)

    async def remove_webhook(self, db: DB, webhook_id: int) -> bool:
        """Forget a webhook (deliveries already created go on); False when the id is unknown."""
        return await db.fetchval(self.sql["remove_webhook"], webhook_id) is not None

    async def webhooks_active(self, db: DB) -> bool:
        """Whether a webhook is registered or a delivery is pending."""
        return bool(await db.fetchval(self.sql["webhooks_active"]))


# --- outages: what the API's calls see when the database goes away ---

#: The statements that only read. After a lost connection they run again on a fresh one.
READ_STATEMENTS = ("get_job", "get_jobs", "list_jobs", "job_runs", "recurring_jobs", "find_live_dedup",
                   "list_workers", "queue_stats", "throughput", "unserved", "queue_settings", "next_due",
                   "cancelled_runs", "parent_results", "list_webhooks", "get_webhook", "webhooks_active")

#: The server ended the session: pg_terminate_backend or a fast shutdown (57P01), a crash (57P02), a
#: server starting or stopping (57P03), the database dropped (57P04), idle_session_timeout (57P05). Or
#: the connection failed (class 08; ConnectionDoesNotExistError is "closed in the middle of operation").
_SESSION_ENDED: tuple[type[Exception], ...] = (
    asyncpg.PostgresConnectionError, asyncpg.AdminShutdownError, asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError, asyncpg.DatabaseDroppedError, asyncpg.IdleSessionTimeoutError)

#: How asyncpg refuses a statement before writing any of it, on a connection whose protocol failed
#: while it sat idle: the server's "terminating connection" came between two statements. The driver
#: then aborts the connection, but it looked open until that statement (issue 20).
_REFUSED = ("cannot switch to state", "not connected")

#: Tries of one statement: the first, then at most two on fresh connections.
_ATTEMPTS = 3

_T = TypeVar("_T")


def is_open(conn: Any) -> bool:
    """Whether ``conn`` can still be used. A pool connection whose backend died was taken back by the pool."""
    try:
        return not conn.is_closed()
    except Exception:  # the driver refuses any call on a connection released to its pool
        return False


def connection_lost(exc: BaseException, conn: Any) -> bool:
    """Whether ``exc``, raised by a statement on ``conn``, means that connection is gone.

    A command timeout does not: the driver cancelled the statement, and the connection serves on.
    The driver's own errors count when the driver closed the connection over them (it aborts a
    connection whose protocol failed).
    """
    if isinstance(exc, TimeoutError):
        return False
    if isinstance(exc, (OSError, *_SESSION_ENDED)):
        return True
    return isinstance(exc, (asyncpg.InterfaceError, asyncpg.InternalClientError)) and not is_open(conn)


def refused(exc: BaseException, conn: Any) -> bool:
    """Whether the statement that raised ``exc`` on a lost ``conn`` certainly never left the client.

    True when the driver found the connection closed, released or failed and wrote nothing.
    """
    if isinstance(exc, asyncpg.InternalClientError):
        return str(exc).startswith(_REFUSED)
    return isinstance(exc, asyncpg.InterfaceError) and not is_open(conn)


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc``, raised while getting a connection, says that the database cannot be reached.

    Not a timeout: a call that waits too long raises TimeoutError, whatever it waited for.
    """
    if isinstance(exc, TimeoutError):
        return False
    return isinstance(exc, (OSError, *_SESSION_ENDED, asyncpg.TooManyConnectionsError))


def discard(conn: Any) -> None:
    """Close a lost connection now, so that nothing uses it again. The pool replaces one of its own."""
    with contextlib.suppress(Exception):  # released to its pool, or closed, already
        conn.terminate()


async def planned_once(pool: Pool, fn: Callable[[Any], Awaitable[_T]]) -> _T:
    """``await fn(connection)`` in a transaction on a pool connection (:func:`on_pool`), planned as the worker's
    lanes plan (:data:`HOT_PATH_LOCAL`): for that transaction only, so the pool's other users keep their
    settings, and so does a PgBouncer server connection."""
    async def planned(conn: Any) -> _T:
        async with conn.transaction():
            await conn.execute(HOT_PATH_LOCAL)
            return await fn(conn)

    return await on_pool(pool, planned)


async def on_pool(pool: Pool, fn: Callable[[Any], Awaitable[_T]]) -> _T:
    """``await fn(connection)`` on a connection acquired from ``pool`` for it.

    Unlike ``async with pool.acquire()``, a failure to give the connection back after ``fn``
    succeeded is not raised. The pool has closed that connection, and ``fn``'s result stands:
    a write that committed must not look failed, or it would be made again.
    """
    conn = await pool.acquire()
    try:
        result = await fn(conn)
    except BaseException:
        with contextlib.suppress(Exception):  # fn's own error is the one to report
            await pool.release(conn)
        raise
    with contextlib.suppress(Exception):
        await pool.release(conn)
    return result


class ConnectionSource:
    """Runs a function on a connection of its choosing: the next call may get another one.

    :class:`GuardedDB` takes a fresh connection from one after a connection was lost. The pool
    is one (wrapped), and so is a Lane (lane.py).
    """

    def __init__(self, pool: Pool) -> None:
        #: where the connections come from
        self.pool = pool

    async def use(self, fn: Callable[[Any], Awaitable[_T]]) -> _T:
        """``await fn(connection)``."""
        return await on_pool(self.pool, fn)


class GuardedDB:
    """A :class:`DB` for the API's calls, over the app's pool, a Lane or a caller's connection.

    The statement's connection is closed if it was lost, so it never serves again. The loss is
    then raised as :class:`~aiojobs_pg.errors.DatabaseUnavailable`. Its message names the cause,
    and the driver's error is its ``__cause__``. Before that, on a pool or a lane, the statement
    runs again on a fresh connection when that cannot repeat a write. That is when it only reads
    (:data:`READ_STATEMENTS`), or when the lost connection refused it before sending. A write
    sent before the connection was lost is never run again. Nor is a statement on a caller's
    connection, which may hold the caller's transaction.
    """

    __slots__ = ("_conn", "_queries", "_source")

    def __init__(self, db: DB | ConnectionSource, queries: Queries) -> None:
        self._queries = queries
        self._conn: Any = None
        self._source: ConnectionSource | None = None
        if isinstance(db, ConnectionSource):
            self._source = db
        elif isinstance(db, Pool):
            self._source = ConnectionSource(db)
        else:
            self._conn = db

    async def fetch(self, query: str, *args: Any, timeout: float | None = None) -> list[Any]:
        rows: list[Any] = await self._run("fetch", query, args, timeout)
        return rows

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        return await self._run("fetchrow", query, args, timeout)

    async def fetchval(self, query: str, *args: Any, column: int = 0, timeout: float | None = None) -> Any:
        if column:
            return await self._run("fetchval", query, args, timeout, column=column)
        return await self._run("fetchval", query, args, timeout)

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str:
        status: str = await self._run("execute", query, args, timeout)
        return status

    async def _run(self, method: str, query: str, args: tuple[Any, ...], timeout: float | None,
                   **kwargs: Any) -> Any:
        if timeout is not None:
            kwargs["timeout"] = timeout
        source = self._source
        if source is None:
            in_transaction = False
            with contextlib.suppress(Exception):  # a closed or released connection fails its statement below
                in_transaction = bool(self._conn.is_in_transaction())
            return await _statement(self._queries, method, query, args, kwargs, in_transaction, self._conn)
        # What escapes source.use raw is the statement's own error, or one from getting a connection:
        # _statement turns every lost connection into DatabaseUnavailable.
        statement = partial(_statement, self._queries, method, query, args, kwargs, False)
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                return await source.use(statement)
            except DatabaseUnavailable as exc:
                if exc.may_have_run or attempt == _ATTEMPTS:
                    raise
                # What ended this connection (a failover, a restart) most likely ended the pool's others
                # too: the pool replaces each connection it hands out from now on, so the retry gets a
                # fresh one instead of trying the dead ones in turn.
                await source.pool.expire_connections()
            except Exception as exc:
                if not unreachable(exc):
                    raise
                name = self._queries.names.get(query, "a statement")
                raise DatabaseUnavailable(f"could not connect to the database for {name} ({_cause(exc)}); "
                                          "nothing was sent", operation=name, may_have_run=False) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")


async def _statement(queries: Queries, method: str, query: str, args: tuple[Any, ...], kwargs: dict[str, Any],
                     in_transaction: bool, conn: Any) -> Any:
    """One statement on ``conn``; a lost connection is closed and raised as DatabaseUnavailable."""
    try:
        return await getattr(conn, method)(query, *args, **kwargs)
    except Exception as exc:
        if not connection_lost(exc, conn):
            raise
        discard(conn)
        name = queries.names.get(query, "a statement")
        may_have_run = False
        if refused(exc, conn):
            outcome = f"before {name} was sent ({_cause(exc)}); nothing was written"
        elif query in queries.reads:
            outcome = f"during {name}, which only reads ({_cause(exc)})"
        elif in_transaction:
            outcome = f"during {name} ({_cause(exc)}); the transaction it ran in is rolled back"
        else:
            outcome = f"during {name} ({_cause(exc)}); whether it took effect is unknown"
            may_have_run = True
        raise DatabaseUnavailable(f"the connection to the database was lost {outcome}", operation=name,
                                  may_have_run=may_have_run) from exc


def guarded(db: DB | ConnectionSource, queries: Queries) -> GuardedDB:
    """``db`` as the API's calls use it (see :class:`GuardedDB`); one guarded already as it is."""
    return db if isinstance(db, GuardedDB) else GuardedDB(db, queries)


def _cause(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection setup: jsonb comes back decoded; we send it pre-encoded as text."""
    await conn.set_type_codec("jsonb", encoder=str, decoder=load_json, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int, max_size: int, command_timeout: float,
                      statement_cache: bool = True) -> Pool:
    """The App's pool; every connection set up by :func:`init_connection`.

    ``statement_cache=False`` for a pooler in transaction mode (PgBouncer before 1.21): asyncpg then
    prepares each statement unnamed, in the same server transaction as its execution.
    """
    extra: dict[str, Any] = {} if statement_cache else {"statement_cache_size": 0}
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=command_timeout,
                                     init=init_connection, **extra)


async def connect(dsn: str, *, timeout: float = 60) -> Connection:
    """A connection of its own, beside the pool (the notifier's LISTEN connection)."""
    return await asyncpg.connect(dsn, timeout=timeout)
