"""The asyncpg seam: every SQL statement of the engine, one typed method each.

Statements are rendered once per schema (the schema name is validated as an
identifier before it is put into SQL) and sent with positional parameters only,
so asyncpg prepares and caches each one per connection.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Protocol

import asyncpg
import asyncpg.pool

from .errors import ConfigurationError
from .models import ClaimedJob, Job, JobStatus, Outcome, build_claimed_job, json_array, load_json, micros

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")

#: What a statement raises when the database, or the connection to it, fails; the worker's loops log
#: these and try again. asyncpg raises InternalClientError on a pooled connection that has already
#: received the server's "terminating connection" message (a restart, ``pg_terminate_backend``).
DB_ERRORS: tuple[type[Exception], ...] = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError,
                                         asyncpg.InternalClientError, TimeoutError)


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
# same way. A new column: its migration (with the view), its field on Job, and its entry here.
JOB_COLUMNS: dict[str, str] = {
    "id": "job_id", "name": "name", "handler": "handler", "data": "data", "queue": "queue",
    "priority": "priority", "schedule": "NULL::text", "timezone": "NULL::text", "status": "'completed'::text",
    "attempts": "attempt", "max_attempts": "max_attempts", "timeout": "timeout", "last_run_at": "last_run_at",
    "next_run_at": "COALESCE(scheduled_at, created_at)", "last_error": "last_error", "result": "result",
    "dedup_key": "dedup_key", "lease_expires_at": "NULL::timestamptz", "worker_id": "worker_id",
    "created_at": "created_at", "updated_at": "COALESCE(completed_at, created_at)", "periodic_key": "NULL::text",
    "misfire": "'skip'::text", "overlap": "'wait'::text", "tick_at": "NULL::timestamptz",
    "progress": "NULL::real", "progress_message": "NULL::text",
}
assert JOB_COLUMNS.keys() == {f.name for f in fields(Job)}, "JOB_COLUMNS must name every field of Job"
_JOB_COLUMNS = ", ".join(JOB_COLUMNS)

_INSERT_COLUMNS = ("name, handler, data, queue, priority, schedule, timezone, max_attempts, timeout, "
                   "next_run_at, dedup_key, misfire, overlap")

_ON_DEDUP_CONFLICT = """ON CONFLICT (dedup_key) WHERE dedup_key IS NOT NULL AND status IN ('pending', 'running')
    DO NOTHING"""

# What a plain job (NewJob.plain) sends: every other column takes its default.
_PLAIN_COLUMNS = "handler, data, queue, priority, max_attempts"

# $10 run_at wins over $11 delay (seconds); both NULL means now. Computed on the database clock.
_DUE = "COALESCE($10::timestamptz, now() + make_interval(secs => COALESCE($11::float8, 0)))"


# What a claim returns, in the order of ClaimedJob's fields, so each row builds one positionally (all but
# claimed_at, the worker's clock when the claim returned: one datetime for the batch instead of a
# timestamp per row to decode). data comes as text, decoded by load_json in one call per claim, which
# is cheaper than asyncpg's custom jsonb codec (figures: docs/performance.md).
_CLAIMED = {
    "id": "j.id", "handler": "j.handler", "data": "j.data::text", "queue": "j.queue", "attempt": "j.attempts",
    "max_attempts": "j.max_attempts", "timeout": "j.timeout", "schedule": "j.schedule", "timezone": "j.timezone",
    "scheduled_at": "COALESCE(j.tick_at, j.next_run_at)", "name": "j.name",
    "misfire": "j.misfire", "overlap": "j.overlap", "token": "j.claims",
}
_CLAIMED_AT = [f.name for f in fields(ClaimedJob)].index("claimed_at")
assert tuple(_CLAIMED) == tuple(f.name for f in fields(ClaimedJob) if f.name != "claimed_at"), \
    "claim columns must follow ClaimedJob"

_CLAIM_UPDATE = f"""UPDATE {{schema}}.jobs j
SET status = 'running', attempts = j.attempts + 1, claims = j.claims + 1, last_run_at = now(),
    updated_at = now(), lease_expires_at = now() + make_interval(secs => $3), worker_id = $4
-- = ANY(ARRAY(...)) is a primary-key lookup per claimed id whatever the planner guesses for LIMIT $2
-- (a cached generic plan guesses 10% of the table, and would hash-join against all of it).
WHERE j.id = ANY(ARRAY(SELECT id FROM c))
RETURNING {", ".join(_CLAIMED.values())}"""


# insert_many's columns, in the order of NewJob.params(): alias and SQL type. The data column is
# sent apart, every job's data in one JSON array; numbers go as array literals ('{1,2}'), which
# asyncpg sends faster than int[] or float8[].
_MANY_COLUMNS = (("n", "text"), ("h", "text"), ("d", "jsonb"), ("q", "text"), ("p", "int"), ("s", "text"),
                 ("tz", "text"), ("m", "int"), ("t", "float8"), ("ra", "timestamptz"), ("dl", "float8"),
                 ("k", "text"), ("mf", "text"), ("ov", "text"))
_MANY_DATA = 2
_MANY_LITERALS = frozenset(i for i, (_, kind) in enumerate(_MANY_COLUMNS) if kind in ("int", "float8"))


def _insert_many(on_conflict: str) -> str:
    # $1 is the data array; then each other column has two parameters: an array with one value per
    # job, or NULL and the one value every job has (sent once). unnest pads a NULL array with NULLs.
    sources, value = ["jsonb_array_elements($1::jsonb)"], {"d": "u.d"}
    for i, (alias, kind) in enumerate(_MANY_COLUMNS):
        if i != _MANY_DATA:
            array, single = 2 * len(sources), 2 * len(sources) + 1
            sources.append(f"unnest(${array}::text::{kind}[])" if i in _MANY_LITERALS
                           else f"unnest(${array}::{kind}[])")
            value[alias] = f"COALESCE(u.{alias}, ${single}::{kind})"
    aliases = ["d", *(alias for i, (alias, _) in enumerate(_MANY_COLUMNS) if i != _MANY_DATA)]
    # run_at wins over delay, job by job; both NULL means now (as _DUE for one job).
    due = f"COALESCE({value['ra']}, now() + make_interval(secs => COALESCE({value['dl']}, 0)))"
    sep = ",\n        "
    select = sep.join([value["n"], value["h"], value["d"], value["q"], value["p"], value["s"], value["tz"],
                        value["m"], value["t"], due, value["k"], value["mf"], value["ov"]])
    channel = 2 * len(sources)
    return f"""
WITH ins AS (
    INSERT INTO {{schema}}.jobs ({_INSERT_COLUMNS})
    SELECT {select}
    FROM ROWS FROM ({sep.join(sources)})
         WITH ORDINALITY AS u({", ".join(aliases)}, ord)
    ORDER BY ord
    {on_conflict}
    RETURNING id, queue, next_run_at, dedup_key
), woken AS (
    SELECT pg_notify(${channel}, queue) FROM (SELECT DISTINCT queue FROM ins WHERE next_run_at <= now()) due
)
SELECT now() AS now, array_agg(id) AS ids, array_agg(NULLIF(next_run_at, now())) AS due,
       array_agg(dedup_key) AS keys, (SELECT count(*) FROM woken) AS notified
FROM ins"""


def _insert_one(on_conflict: str, returning: str) -> str:
    # One round trip: insert and, when the job is due now, wake the workers of its queue. The notify
    # sits in RETURNING, not in a CTE around the insert, which costs the server more per call.
    return f"""
INSERT INTO {{schema}}.jobs ({_INSERT_COLUMNS})
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, {_DUE}, $12, $13, $14)
{on_conflict}
RETURNING {returning}, CASE WHEN next_run_at <= now() THEN pg_notify($15, queue) END AS notified"""


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
_DONE_JOB = ("handler", "name", "data", "queue", "priority", "max_attempts", "timeout", "dedup_key", "last_error",
             "created_at", "last_run_at")
_DONE_JOB_COLUMNS = ", ".join(_DONE_JOB)
_DONE = "handler IS NOT NULL"


def _run_values(*, status: str, error: str) -> str:
    # The history values of a run from a completion CTE's RETURNING (id, claims, attempt, the times...).
    return (f"id, claims, attempt, worker_id, {status}, started_at, finished_at,"
            f" extract(epoch FROM finished_at - started_at) * 1000, {error}, result::jsonb, scheduled_at")


def _completed(*, ids: int, worker_id: int, gate: int) -> str:
    """The CTEs that complete one-off jobs: their outcomes come in parameters ``$ids`` to ``$ids+5``
    (ids, tokens, results, start and end times, worker ids or NULL for ``$worker_id``); history rows
    are written when ``$gate`` is true.

    Each job's row leaves jobs, and RETURNING hands what it was to its history row, with the attempt
    and the due time the claim found (unchanged since: the row was running).
    """
    p = [f"${ids + k}" for k in range(6)]
    return f"""d AS MATERIALIZED (
    SELECT u.id, u.token, u.result, COALESCE(u.worker_id, ${worker_id}) AS worker_id,
           {_from_micros("started_at")},
           {_from_micros("finished_at")},
           'running'::text AS running
    FROM (SELECT unnest({p[0]}::text::bigint[]) AS id, unnest({p[1]}::text::bigint[]) AS token,
                 unnest({p[2]}::text[]) AS result, unnest({p[3]}::text::bigint[]) AS started_at,
                 unnest({p[4]}::text::bigint[]) AS finished_at, unnest({p[5]}::text[]) AS worker_id) u
), done AS (
    DELETE FROM {{schema}}.jobs j USING d
    WHERE {_fence("d")}
    RETURNING j.id, j.claims, j.attempts AS attempt, COALESCE(j.tick_at, j.next_run_at) AS scheduled_at,
              {", ".join("j." + c for c in _DONE_JOB)},
              d.worker_id, d.started_at, d.finished_at, d.result
), done_hist AS (
    INSERT INTO {{schema}}.job_runs ({_RUN_COLUMNS}, {_DONE_JOB_COLUMNS})
    SELECT {_run_values(status="'completed'", error="NULL")}, {_DONE_JOB_COLUMNS}
    FROM done
    WHERE ${gate}
)"""


# A completed job read from its history row, as the columns of _JOB_COLUMNS (the same names and order).
# The reads of single jobs go through the view all_jobs; list_jobs through this, for its per-table LIMIT
# (through the view, the history is read whole and sorted).
_DONE_AS_JOB = ", ".join(f"{expr} AS {name}" for name, expr in JOB_COLUMNS.items())


_SQL: dict[str, str] = {
    # Without a dedup key the caller knows the job but for what the database chose: its id and clock
    # (the due time only when it is not now, which saves decoding a second timestamp).
    "insert": _insert_one("", "id, created_at, NULLIF(next_run_at, created_at) AS next_run_at"),
    "insert_dedup": _insert_one(_ON_DEDUP_CONFLICT, _JOB_COLUMNS),
    # A plain job (NewJob.plain): five columns, due now; fewer parameters to send than "insert".
    "insert_plain": f"""
INSERT INTO {{schema}}.jobs ({_PLAIN_COLUMNS})
VALUES ($1, $2::jsonb, $3, $4, $5)
RETURNING id, created_at, pg_notify($6, queue) AS notified""",
    # A declared schedule: one row per key however many workers declare it at once.
    # Unchanged declarations write nothing; a new expression moves a pending job to its first tick.
    "upsert_periodic": f"""
INSERT INTO {{schema}}.jobs AS j ({_INSERT_COLUMNS}, periodic_key)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, $7, $8, $9, {_DUE}, $12, $13, $14, $15)
ON CONFLICT (periodic_key) WHERE periodic_key IS NOT NULL DO UPDATE SET
    name = EXCLUDED.name, handler = EXCLUDED.handler, data = EXCLUDED.data, queue = EXCLUDED.queue,
    priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts, timeout = EXCLUDED.timeout,
    misfire = EXCLUDED.misfire, overlap = EXCLUDED.overlap,
    schedule = EXCLUDED.schedule, timezone = EXCLUDED.timezone,
    next_run_at = CASE
        WHEN (j.schedule, j.timezone) IS DISTINCT FROM (EXCLUDED.schedule, EXCLUDED.timezone)
             AND j.status = 'pending' THEN EXCLUDED.next_run_at
        ELSE j.next_run_at END,
    updated_at = now()
WHERE (j.name, j.handler, j.data, j.queue, j.priority, j.max_attempts, j.timeout, j.misfire, j.overlap,
       j.schedule, j.timezone)
      IS DISTINCT FROM
      (EXCLUDED.name, EXCLUDED.handler, EXCLUDED.data, EXCLUDED.queue, EXCLUDED.priority,
       EXCLUDED.max_attempts, EXCLUDED.timeout, EXCLUDED.misfire, EXCLUDED.overlap,
       EXCLUDED.schedule, EXCLUDED.timezone)
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
    # The usual batch: jobs of one handler, queue and priority, every other field the default (so due
    # now). Five columns and no per-column COALESCE: ~12% less server CPU per job than insert_many.
    "insert_uniform": f"""
WITH ins AS (
    INSERT INTO {{schema}}.jobs ({_PLAIN_COLUMNS})
    SELECT $2, u.d, $3, $4, $5
    FROM jsonb_array_elements($1::jsonb) WITH ORDINALITY AS u(d, ord)
    ORDER BY ord
    RETURNING id
)
SELECT now() AS now, array_agg(id) AS ids, pg_notify($6, $3) AS notified FROM ins""",
    # Claim: the due pending rows in claim order, locked with SKIP LOCKED, flipped to
    # running with a lease; one statement. One queue reads the claim index in order.
    # {conditions}: the worker's ClaimConditions (see Claim), from parameter $5 on.
    "claim_one_queue": f"""
WITH c AS (
    SELECT j.id FROM {{schema}}.jobs j
    WHERE j.status = 'pending' AND j.queue = $1 AND j.next_run_at <= now(){{conditions}}
    ORDER BY j.priority DESC, j.next_run_at, j.id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
{_CLAIM_UPDATE}""",
    # Several queues: the best $2 of each queue (one index scan each), then the best $2 overall.
    "claim": f"""
WITH c AS (
    SELECT x.id FROM unnest($1::text[]) AS qn(queue)
    CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.next_run_at FROM {{schema}}.jobs j
        WHERE j.status = 'pending' AND j.queue = qn.queue AND j.next_run_at <= now(){{conditions}}
        ORDER BY j.priority DESC, j.next_run_at, j.id
        LIMIT $2
        FOR UPDATE SKIP LOCKED
    ) x
    ORDER BY x.priority DESC, x.next_run_at, x.id
    LIMIT $2
)
{_CLAIM_UPDATE}""",
    # Completion: every row is fenced by status and claim token; history rows are written only for
    # the rows the fence let through, in the same statement. A one-off job that completed is deleted
    # into its history row (the CTEs of _completed, outcomes from $18); any other outcome updates its row
    # (outcomes from $1: a retry, a dead letter, a recurring job's next tick, a release). Numbers,
    # flags, statuses and times (microseconds since the epoch) arrive as array literals: asyncpg's
    # binary array encoder dominated a worker's CPU (docs/performance.md). The arrays are unnested in
    # the select list (a ProjectSet, which pads the shorter ones with NULLs as ROWS FROM does), not in
    # FROM, whose function scan copied every row into a tuplestore that the CTE then copied again. o and
    # d stay MATERIALIZED: inlined, they let the planner compare every outcome with every job under
    # stale statistics (tests/integration/test_plans.py).
    "complete": f"""
WITH o AS MATERIALIZED (
    SELECT u.id, u.attempt, u.token, u.job_status, u.run_status, u.delay,
           {_from_micros("next_run_at")},
           u.error, u.result,
           {_from_micros("started_at")},
           {_from_micros("finished_at")},
           COALESCE(u.release, false) AS release, COALESCE(u.reset, false) AS reset,
           COALESCE(u.worker_id, $15) AS worker_id,
           {_from_micros("scheduled_at")},
           'running'::text AS running
    FROM (SELECT unnest($1::text::bigint[]) AS id, unnest($2::text::int[]) AS attempt,
                 unnest($3::text::bigint[]) AS token, unnest($4::text::text[]) AS job_status,
                 unnest($5::text::text[]) AS run_status, unnest($6::text::float8[]) AS delay,
                 unnest($7::text::bigint[]) AS next_run_at, unnest($8::text[]) AS error,
                 unnest($9::text[]) AS result, unnest($10::text::bigint[]) AS started_at,
                 unnest($11::text::bigint[]) AS finished_at, unnest($12::text::bool[]) AS release,
                 unnest($13::text::bool[]) AS reset, unnest($14::text[]) AS worker_id,
                 unnest($16::text::bigint[]) AS scheduled_at) u
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
              o.scheduled_at
), upd_hist AS (
    INSERT INTO {{schema}}.job_runs ({_RUN_COLUMNS})
    SELECT {_run_values(status="run_status", error="error")}
    FROM upd
    WHERE $17
), {_completed(ids=18, worker_id=15, gate=17)}
SELECT array_agg(id) FROM (SELECT id FROM upd UNION ALL SELECT id FROM done) applied""",
    # A flush of one-off jobs that all succeeded (a busy queue's usual flush): the CTEs of _completed
    # alone, six columns where "complete" has twenty-two, so less for the server to read per job.
    "complete_success": f"""
WITH {_completed(ids=1, worker_id=7, gate=8)}
SELECT array_agg(id) FROM done""",
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
INSERT INTO {schema}.workers AS w (id, hostname, pid, queues, concurrency)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now()""",
    "worker_remove": "DELETE FROM {schema}.workers WHERE id = $1",
    "workers_prune": """
DELETE FROM {schema}.workers WHERE heartbeat_at < now() - make_interval(secs => $1)""",
    "list_workers": """
SELECT id, hostname, pid, queues, concurrency, started_at, heartbeat_at
FROM {schema}.workers ORDER BY started_at""",
    # History rows are written in the order they complete, so the old ones are those below the first
    # recent one: finding it reads from the oldest row on, and stops there, instead of reading every
    # row newer than the cut-off at every round. (A row whose clock ran behind waits for the next.)
    "prune_runs": """
DELETE FROM {schema}.job_runs WHERE id IN (
    SELECT id FROM {schema}.job_runs
    WHERE completed_at < now() - make_interval(secs => $1)
      AND id < COALESCE((SELECT id FROM {schema}.job_runs WHERE completed_at >= now() - make_interval(secs => $1)
                         ORDER BY id LIMIT 1), 9223372036854775807)
    ORDER BY id LIMIT $2)""",
    "prune_jobs": """
DELETE FROM {schema}.jobs WHERE id IN (
    SELECT id FROM {schema}.jobs
    WHERE status IN ('completed', 'cancelled') AND schedule IS NULL
      AND updated_at < now() - make_interval(secs => $1)
    ORDER BY id LIMIT $2)""",
    # --- admin ---
    # A job is in jobs or, once a one-off job completed, in its history row: never both. all_jobs reads
    # both, each by its index on the id (the condition reaches both sides of the view's UNION ALL).
    "get_job": f"SELECT {_JOB_COLUMNS} FROM {{schema}}.all_jobs WHERE id = $1 LIMIT 1",
    "get_jobs": f"SELECT {_JOB_COLUMNS} FROM {{schema}}.all_jobs WHERE id = ANY($1::bigint[])",
    # The newest of each table (the history's completed jobs through its (job_id, id) index), merged.
    "list_jobs": f"""
SELECT * FROM (
    (SELECT {_JOB_COLUMNS} FROM {{schema}}.jobs
     WHERE ($1::text IS NULL OR status = $1)
       AND ($2::text IS NULL OR queue = $2)
       AND ($3::text IS NULL OR handler = $3)
       AND ($4::bigint IS NULL OR id < $4)
     ORDER BY id DESC
     LIMIT $5)
    UNION ALL
    (SELECT {_DONE_AS_JOB} FROM {{schema}}.job_runs
     WHERE {_DONE}
       AND ($1::text IS NULL OR $1 = 'completed')
       AND ($2::text IS NULL OR queue = $2)
       AND ($3::text IS NULL OR handler = $3)
       AND ($4::bigint IS NULL OR job_id < $4)
     ORDER BY job_id DESC
     LIMIT $5)
) found
ORDER BY id DESC
LIMIT $5""",
    "update_job": f"""
UPDATE {{schema}}.jobs SET
    name = CASE WHEN $2 THEN $3 ELSE name END,
    data = COALESCE($4::jsonb, data),
    priority = COALESCE($5, priority),
    max_attempts = COALESCE($6, max_attempts),
    queue = COALESCE($7, queue),
    next_run_at = COALESCE($8, next_run_at),
    tick_at = CASE WHEN $8::timestamptz IS NULL THEN tick_at END,
    schedule = CASE WHEN $9 THEN $10 ELSE schedule END,
    timezone = CASE WHEN $9 THEN $11 ELSE timezone END,
    timeout = CASE WHEN $12 THEN $13 ELSE timeout END,
    updated_at = now()
WHERE id = $1
RETURNING {_JOB_COLUMNS}""",
    # The job's row, or its history row if it completed, and all its runs: the count of the first two.
    "delete_job": f"""
WITH d AS (DELETE FROM {{schema}}.jobs WHERE id = $1 RETURNING id),
     h AS (DELETE FROM {{schema}}.job_runs WHERE job_id = $1 RETURNING {_DONE} AS done)
SELECT (SELECT count(*) FROM d) + (SELECT count(*) FROM h WHERE done)""",
    "cancel_job": f"""
UPDATE {{schema}}.jobs SET status = 'cancelled', lease_expires_at = NULL, updated_at = now()
WHERE id = $1 AND status IN ('pending', 'running')
RETURNING {_JOB_COLUMNS}""",
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
    "job_runs": """
SELECT id, job_id, attempt, worker_id, status, scheduled_at, started_at, completed_at, duration_ms, error,
       result
FROM {schema}.job_runs WHERE job_id = $1 ORDER BY id
LIMIT $2""",
    "queue_stats": """
SELECT queue, status, count(*) AS count,
       min(next_run_at) FILTER (WHERE status = 'pending' AND next_run_at <= now()) AS oldest_due
FROM {schema}.all_jobs GROUP BY queue, status ORDER BY queue, status""",
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


_NAMED_PARAM = re.compile(r"(?<!:):([a-z_][a-z0-9_]*)")


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
    """A worker's claim statements, its :class:`ClaimCondition` s bound in: built once per worker.

    The names become positional parameters after the claim's own four, so each statement is
    prepared once per connection like any other.
    """

    def __init__(self, one_queue: str, many_queues: str, conditions: Sequence[ClaimCondition]) -> None:
        names: dict[str, int] = {}
        args: list[Any] = []

        def position(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                values = [c.params[name] for c in conditions if name in c.params]
                if not values:
                    raise ValueError(f"claim condition parameter :{name} has no value")
                names[name] = 5 + len(args)
                args.append(values[0])
            return f"${names[name]}"

        where = "".join(f"\n      AND ({_NAMED_PARAM.sub(position, c.sql)})" for c in conditions)
        self.one_queue = one_queue.replace("{conditions}", where)
        self.many_queues = many_queues.replace("{conditions}", where)
        self.args = tuple(args)


class Queries:
    """All statements of one schema. Methods take the connection (or pool) to use."""

    def __init__(self, schema: str) -> None:
        self.schema = validate_schema_name(schema)
        self.channel = f"{schema}_jobs"
        self.sql = {name: text.replace("{schema}", schema) for name, text in _SQL.items()}
        self._claim = self.claim_for()

    # --- enqueue ---
    async def insert_job(self, db: DB, params: Sequence[Any], *, dedup: bool) -> Any:
        """Insert one job (14 params, then the channel); None when the dedup key is taken.

        Without ``dedup`` the row holds only id, created_at and next_run_at (NULL when it is created_at);
        with it, the whole job.
        """
        return await db.fetchrow(self.sql["insert_dedup" if dedup else "insert"], *params, self.channel)

    async def insert_plain(self, db: DB, handler: str, data: str, queue: str, priority: int,
                           max_attempts: int) -> Any:
        """Insert a job with these fields and the defaults (due now); the row holds id and created_at."""
        return await db.fetchrow(self.sql["insert_plain"], handler, data, queue, priority, max_attempts,
                                 self.channel)

    async def upsert_periodic(self, db: DB, params: Sequence[Any], key: str) -> Any:
        """Create or update a declared schedule; None when it was already up to date."""
        return await db.fetchrow(self.sql["upsert_periodic"], *params, key)

    async def recurring_jobs(self, db: DB) -> list[Any]:
        """Every job with a schedule, soonest first."""
        return await db.fetch(self.sql["recurring_jobs"])

    async def find_live_dedup(self, db: DB, dedup_key: str) -> Any:
        """The pending or running job holding ``dedup_key``, if any."""
        return await db.fetchrow(self.sql["find_live_dedup"], dedup_key)

    async def insert_many(self, db: DB, rows: Sequence[Sequence[Any]], data: str, *, dedup: bool) -> Any:
        """Insert one job per row of :meth:`NewJob.params` values, in one statement.

        ``data`` is every job's data as one JSON array, in row order (the rows' own data is not
        read). Returns one row: ``now`` (every job's created_at), ``ids`` of the inserted jobs in
        row order (rows skipped for a taken dedup key are missing), ``due`` (their next_run_at,
        or NULL where it is ``now``) and ``keys`` (their dedup keys).
        """
        args: list[Any] = [data]
        for i, column in enumerate(zip(*rows, strict=True)):
            if i == _MANY_DATA:
                continue
            if column.count(column[0]) == len(column):
                args += (None, column[0])
            else:
                args += (_literal(column) if i in _MANY_LITERALS else column, None)
        return await db.fetchrow(self.sql["insert_many_dedup" if dedup else "insert_many"], *args, self.channel)

    async def insert_uniform(self, db: DB, handler: str, queue: str, priority: int, max_attempts: int,
                             data: str) -> Any:
        """Insert one job per item of the JSON array ``data``, all with these fields and the defaults.

        Returns one row: ``now`` (every job's created_at and due time) and ``ids`` in array order.
        """
        return await db.fetchrow(self.sql["insert_uniform"], data, handler, queue, priority, max_attempts,
                                 self.channel)

    # --- worker ---
    def claim_for(self, conditions: Sequence[ClaimCondition] = ()) -> Claim:
        """The claim statements of a worker whose jobs must also meet ``conditions``."""
        return Claim(self.sql["claim_one_queue"], self.sql["claim"], conditions)

    async def claim(self, db: DB, queues: Sequence[str], limit: int, lease: float, worker_id: str,
                    claim: Claim | None = None) -> list[ClaimedJob]:
        """Flip up to ``limit`` due pending jobs of ``queues`` (meeting ``claim``'s conditions) to running."""
        claim = claim or self._claim
        if len(queues) == 1:
            rows = await db.fetch(claim.one_queue, queues[0], limit, lease, worker_id, *claim.args)
        else:
            rows = await db.fetch(claim.many_queues, list(queues), limit, lease, worker_id, *claim.args)
        if not rows:
            return []
        claimed_at = datetime.now(UTC)
        datas = load_json(json_array([r[2] for r in rows]))
        at = _CLAIMED_AT
        return [build_claimed_job(*(t := tuple(r))[:2], data, *t[3:at], claimed_at, *t[at:])
                for r, data in zip(rows, datas, strict=True)]

    async def complete(self, db: DB, outcomes: Sequence[Outcome], *, history: bool) -> set[int]:
        """Apply outcomes with fencing; returns the ids whose update went through."""
        # One worker id for the whole batch is the usual case: send it once. Columns that are
        # NULL (or false) for every outcome go as one NULL, which unnest pads.
        worker_id = outcomes[0].worker_id if outcomes else None
        # A COMPLETED job status is a one-off job's success, with nothing else to write (see Outcome).
        completed = JobStatus.COMPLETED
        done = [o for o in outcomes if o.job_status is completed]
        done_args = (_literal([o.job_id for o in done]), _literal([o.token for o in done]),
                     _sparse([o.result_json for o in done]), _literal([o.started_us for o in done]),
                     _literal([o.finished_us for o in done]),
                     _sparse([None if o.worker_id == worker_id else o.worker_id for o in done]))
        if len(done) == len(outcomes):
            applied = await db.fetchval(self.sql["complete_success"], *done_args, worker_id, history)
        else:
            rest = [o for o in outcomes if o.job_status is not completed]
            applied = await db.fetchval(
                self.sql["complete"], _literal([o.job_id for o in rest]), _literal([o.attempt for o in rest]),
                _literal([o.token for o in rest]),
                _literal([o.job_status.value for o in rest]),
                _literal([o.run_status.value for o in rest]),
                _literal([o.delay for o in rest]),
                _micros([o.next_run_at for o in rest]),
                _sparse([o.error for o in rest]),
                _sparse([o.result_json for o in rest]),
                _literal([o.started_us for o in rest]), _literal([o.finished_us for o in rest]),
                _literal([o.release or None for o in rest]),
                _literal([o.reset_attempts or None for o in rest]),
                _sparse([None if o.worker_id == worker_id else o.worker_id for o in rest]),
                worker_id, _micros([o.scheduled_at for o in rest]), history, *done_args,
            )
        return set(applied or ())

    async def renew_leases(self, db: DB, jobs: Sequence[tuple[int, int]], lease: float) -> set[int]:
        """Extend the leases of (id, claim token) pairs still running; returns the ids renewed."""
        rows = await db.fetch(self.sql["renew_leases"], [j[0] for j in jobs], [j[1] for j in jobs], lease)
        return {r["id"] for r in rows}

    async def expired_leases(self, db: DB, limit: int) -> list[Any]:
        """Lock running jobs whose lease has expired (call inside a transaction)."""
        return await db.fetch(self.sql["expired_leases"], limit)

    async def worker_heartbeat(
        self, db: DB, worker_id: str, hostname: str, pid: int, queues: Sequence[str], concurrency: int
    ) -> None:
        """Register the worker or refresh its heartbeat."""
        await db.execute(self.sql["worker_heartbeat"], worker_id, hostname, pid, list(queues), concurrency)

    async def worker_remove(self, db: DB, worker_id: str) -> None:
        """Forget a worker that stopped."""
        await db.execute(self.sql["worker_remove"], worker_id)

    async def list_workers(self, db: DB) -> list[Any]:
        """Registered workers with their last heartbeat."""
        return await db.fetch(self.sql["list_workers"])

    async def prune(self, db: DB, *, runs_older_than: float | None, jobs_older_than: float | None,
                    workers_older_than: float, batch: int = 5000) -> None:
        """Delete old history, finished one-off jobs and dead worker rows, a batch at a time."""
        if runs_older_than is not None:
            await db.execute(self.sql["prune_runs"], runs_older_than, batch)
        if jobs_older_than is not None:
            await db.execute(self.sql["prune_jobs"], jobs_older_than, batch)
        await db.execute(self.sql["workers_prune"], workers_older_than)

    # --- admin ---
    async def get_job(self, db: DB, job_id: int) -> Any:
        """One job row or None."""
        return await db.fetchrow(self.sql["get_job"], job_id)

    async def get_jobs(self, db: DB, job_ids: Sequence[int]) -> list[Any]:
        """The rows of the jobs among ``job_ids`` that exist, in no particular order."""
        return await db.fetch(self.sql["get_jobs"], list(job_ids))

    async def list_jobs(self, db: DB, *, status: str | None, queue: str | None, handler: str | None,
                        before_id: int | None, limit: int) -> list[Any]:
        """Jobs newest first, filtered, keyset-paginated by id."""
        return await db.fetch(self.sql["list_jobs"], status, queue, handler, before_id, limit)

    async def update_job(self, db: DB, params: Sequence[Any]) -> Any:
        """Apply an update (13 params, see the SQL); None when the id is unknown."""
        return await db.fetchrow(self.sql["update_job"], *params)

    async def delete_job(self, db: DB, job_id: int) -> bool:
        """Delete a job and its history; False when the id is unknown."""
        return bool(await db.fetchval(self.sql["delete_job"], job_id))

    async def delete_handler_jobs(self, db: DB, handlers: Sequence[str]) -> int:
        """Delete every job of these handlers and its history; returns how many jobs."""
        return int(await db.fetchval(self.sql["delete_handler_jobs"], list(handlers)))

    async def cancel_job(self, db: DB, job_id: int) -> Any:
        """Cancel a pending or running job; None when it is in another status (or unknown)."""
        return await db.fetchrow(self.sql["cancel_job"], job_id)

    async def requeue_job(self, db: DB, job_id: int, from_statuses: Sequence[str], run_at: datetime | None) -> Any:
        """Make a job pending and due at ``run_at`` (now if None) if it is in one of ``from_statuses``."""
        return await db.fetchrow(self.sql["requeue_job"], job_id, list(from_statuses), run_at, self.channel)

    async def restore_job(self, db: DB, job_id: int, run_at: datetime | None) -> Any:
        """Bring a completed one-off job back to ``pending``, due at ``run_at`` (now if None).

        None when the job is not a completed one (or another live job holds its dedup key).
        """
        return await db.fetchrow(self.sql["restore_job"], job_id, run_at, self.channel)

    async def job_runs(self, db: DB, job_id: int, limit: int) -> list[Any]:
        """History rows of one job, oldest first."""
        return await db.fetch(self.sql["job_runs"], job_id, limit)

    async def queue_stats(self, db: DB) -> list[Any]:
        """Counts per queue and status, with the oldest due time of pending jobs."""
        return await db.fetch(self.sql["queue_stats"])


async def init_connection(conn: asyncpg.Connection) -> None:
    """Per-connection setup: jsonb comes back decoded; we send it pre-encoded as text."""
    await conn.set_type_codec("jsonb", encoder=str, decoder=load_json, schema="pg_catalog")


async def create_pool(dsn: str, *, min_size: int, max_size: int, command_timeout: float) -> Pool:
    """The App's pool; every connection set up by :func:`init_connection`."""
    return await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, command_timeout=command_timeout,
                                     init=init_connection)


async def connect(dsn: str, *, timeout: float = 60) -> Connection:
    """A connection of its own, beside the pool (the notifier's LISTEN connection)."""
    return await asyncpg.connect(dsn, timeout=timeout)
