"""Statement-level probes: where a job's server and client CPU go, measured by alternation.

``python -m benchmarks.probes PROBE`` (``--help`` lists them, with their options).

The full benchmarks compare runs taken minutes apart, and this machine drifts by tens of
percent between them. These probes run the variants they compare on one connection,
alternating per batch or per call, and sum each variant's CPU apart, so that drift hits
every variant alike. They print figures; they assert nothing.

completion
    Claim 100 jobs, complete them, on ``jobs``: the floor's claim or ours, then the floor's
    completion or ours (with and without history); ours also through its general statement,
    which a flush takes when it holds anything but one-off successes. Backend CPU per job.
checks
    Our single-job insert, one transaction per call, into ``jobs`` and into a copy of it
    that has the six CHECK constraints migration 0005 dropped. Backend CPU per insert.
move-to-history
    Ours, which completes a one-off job by moving its row into its history row (a fenced
    ``DELETE`` feeding one ``INSERT``; migration 0006), against the design it replaced: a lean
    ``UPDATE`` of the jobs row plus a history row. Backend CPU per job, claim included.
enqueue-client
    Client CPU per call of ``app.enqueue`` and of its parts: the statement alone on a plain
    connection (with and without ``command_timeout``) and on the enqueue lane, then with
    validation (``prepare``), or with the returned ``Job`` built (each on top of the lane alone).
insert-parts
    What a single insert's parts cost on the server and in wall time, one transaction per call,
    alternating per call on one connection: our insert into ``jobs``, the same into copies of
    ``jobs`` without the declared-schedule index and without the lease index too, a bare
    two-column insert into that last copy, and the floor's insert into its own table; then a
    plain insert on a connection with and without ``command_timeout`` (client CPU and wall time).
builders
    Microseconds to build a ``Job`` and a ``ClaimedJob``: the frozen dataclass's ``__init__``,
    the builders in ``models`` (a mutable twin given the frozen class), and setting each slot.
enqueue-wall
    Wall time per call of ``app.enqueue`` and of the floor's insert (its table, a connection of
    its own), alternating per call: the single-enqueue ratio without the drift between the
    sections of a full run.
enqueue-pieces
    Wall time and client CPU of the floor's insert and of ``app.enqueue`` built up piece by
    piece: our statement through the enqueue lane, then with the returned ``Job`` built
    (``insert_one``), then with validation and encoding (``prepare_plain``), then the whole call.
    Alternating in blocks of 500 calls, so that each piece runs warm, as in a loop of its own.
history-indexes
    Claim 100 jobs and complete them with history on, alternating per batch over copies of our
    schema whose ``job_runs`` differ in its indexes only: as migrated (a primary key on ``id``,
    which retention pruning reads in order, and ``(job_id, id)`` for a job's history), one
    primary key on ``(job_id, id)``, and that key plus a BRIN index on ``id``. Backend CPU per job.
floor-insert
    The floor's single insert on its own table, and the same insert with what ours must add:
    ``RETURNING id, created_at`` (the returned ``Job``), the notification, both. Alternating
    per call on one connection, first with nobody listening (as in the enqueue section), then
    with a connection listening on the channel (as when a worker waits). Wall time, backend
    CPU, and each variant's calls/s as a fraction of the bare insert's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, datetime
from typing import Any

import asyncpg

from aiojobs_pg import App
from aiojobs_pg import enqueue as enq
from aiojobs_pg.logs import configure_logging
from aiojobs_pg.models import ClaimedJob, Job, JobStatus, Outcome, RunStatus, build_claimed_job, build_job, micros
from benchmarks import floor
from benchmarks.common import bench_dsn
from benchmarks.pgcpu import process_cpu_ns

SCHEMA = "bench_probes"
BATCH = 100

# The floor's statements (floor.py), pointed at our table: status and lease as ours use them.
FLOOR_CLAIM = (f"UPDATE {SCHEMA}.jobs SET status = 'running', lease_expires_at = now() + interval '60 s'"
               f" WHERE id IN (SELECT id FROM {SCHEMA}.jobs WHERE status = 'pending' AND queue = 'default'"
               "  AND next_run_at <= now() ORDER BY priority DESC, next_run_at, id LIMIT $1 FOR UPDATE SKIP LOCKED)"
               " RETURNING id, attempts, claims")
FLOOR_COMPLETE = f"UPDATE {SCHEMA}.jobs SET status = 'completed', lease_expires_at = NULL WHERE id = ANY($1::bigint[])"

# The CHECK constraints of migrations 0001-0002, which 0005 dropped.
OLD_CHECKS = ("status IN ('pending', 'running', 'completed', 'failed', 'cancelled')", "attempts >= 0",
              "max_attempts >= 1", "timeout > 0", "misfire IN ('skip', 'all')", "overlap IN ('wait', 'skip')")


class Tally:
    """Nanoseconds and items per variant; the first ``skip`` samples of each are warm-up."""

    def __init__(self, names: Sequence[str], skip: int = 5) -> None:
        self.sums = {name: [0, 0] for name in names}
        self.seen = dict.fromkeys(names, 0)
        self.skip = skip

    def add(self, name: str, ns: int, items: int) -> None:
        self.seen[name] += 1
        if self.seen[name] > self.skip:
            self.sums[name][0] += ns
            self.sums[name][1] += items

    def per_item_us(self, name: str) -> float:
        ns, items = self.sums[name]
        return ns / items / 1000 if items else float("nan")

    def report(self, what: str) -> None:
        """One line per variant: µs of ``what``."""
        width = max(map(len, self.sums))
        for name in self.sums:
            print(f"  {name:{width}s} {self.per_item_us(name):7.2f} µs of {what}")


async def _alternate(pid: int, calls: int,
                     variants: Mapping[str, Callable[[int], Awaitable[object]]]) -> tuple[Tally, Tally]:
    """``calls`` calls in all, the variants in turn: backend CPU (of ``pid``) and wall time of each."""
    names = list(variants)
    cpu, wall = Tally(names, skip=50), Tally(names, skip=50)
    for i in range(calls):
        name = names[i % len(names)]
        start, started = process_cpu_ns(pid) or 0, time.perf_counter_ns()
        await variants[name](i)
        wall.add(name, time.perf_counter_ns() - started, 1)
        cpu.add(name, (process_cpu_ns(pid) or 0) - start, 1)
    return cpu, wall


def _statement(run: Callable[..., Awaitable[object]], sql: str, *args: Any) -> Callable[[int], Awaitable[object]]:
    """A variant for :func:`_alternate`: ``run(sql, *args)`` at every call."""
    return lambda _: run(sql, *args)


def _succeeded(found: Sequence[ClaimedJob], now: int, scheduled: datetime | None = None) -> list[Outcome]:
    """Our outcomes for a claimed batch whose every job ran and succeeded at ``now`` (microseconds)."""
    return [Outcome(j.id, j.attempt, j.token, JobStatus.COMPLETED, RunStatus.COMPLETED, now, now, "w1", scheduled)
            for j in found]


@contextlib.asynccontextmanager
async def _probe_app(dsn: str, schema: str = SCHEMA) -> AsyncIterator[App]:
    """An open app on a fresh schema (``bench_probes`` by default), dropped afterwards."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await admin.close()
    app = App(dsn, schema=schema)
    app.register("noop", lambda data: None)
    await app.open()
    try:
        yield app
    finally:
        await app.pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await app.close()


async def completion(dsn: str, jobs: int) -> None:
    """The floor's and our claim and completion in their pairings (and the floor's on its own table)."""
    names = ["floor's statements, floor's table", "floor claim + floor completion", "our claim + floor completion",
             "floor claim + our completion", "our claim + our completion", "our claim + our general completion"]
    for history in (False, True):
        tally = Tally(names)
        async with _probe_app(dsn) as app, app.pool.acquire() as conn, floor._fresh_schema(dsn) as floor_admin:
            await app.enqueue_many([{"handler": "noop", "data": {"i": i}} for i in range(jobs)])
            await floor._preload(floor_admin, (jobs // BATCH // len(names) + 1) * BATCH)  # its share of batches
            await conn.execute(f"VACUUM ANALYZE {SCHEMA}.jobs")
            pid = conn.get_server_pid()
            scheduled = datetime.now(UTC)
            now = micros(scheduled)
            for i in range(jobs // BATCH):
                name = names[i % len(names)]
                start = process_cpu_ns(pid) or 0
                if name.endswith("floor's table"):
                    rows = await conn.fetch(floor.CLAIM, BATCH)
                    claimed = [(r["id"], 0, 0) for r in rows]
                    await conn.execute(floor.COMPLETE, [c[0] for c in claimed])
                else:
                    if name.startswith("floor claim"):
                        rows = await conn.fetch(FLOOR_CLAIM, BATCH)
                        claimed = [(r["id"], r["attempts"], r["claims"]) for r in rows]
                    else:
                        found = await app.queries.claim(conn, ["default"], BATCH, 60.0, "w1")
                        claimed = [(j.id, j.attempt, j.token) for j in found]
                    if name.endswith("floor completion"):
                        await conn.execute(FLOOR_COMPLETE, [c[0] for c in claimed])
                    else:
                        outcomes = [Outcome(c[0], c[1], c[2], JobStatus.COMPLETED, RunStatus.COMPLETED, now, now, "w1",
                                            scheduled) for c in claimed]
                        if name.endswith("general completion"):
                            # A failure of a job that does not exist (fenced out, writes nothing) sends the
                            # batch through "complete" instead of "complete_success".
                            outcomes.append(Outcome(0, 1, 0, JobStatus.FAILED, RunStatus.FAILED, now, now, "w1"))
                        await app.queries.complete(conn, outcomes, history=history)
                tally.add(name, (process_cpu_ns(pid) or 0) - start, len(claimed))
        print(f"history {'on' if history else 'off'} (our completion only; the floor's writes none):")
        tally.report("backend CPU per job")


# move-to-history: the completion the engine had before migration 0006, leaner than it was (status,
# result and lease only), for comparison with ours, which moves the row into its history row.
_LEAN_UPDATE = f"""WITH o AS MATERIALIZED (
    SELECT unnest($1::bigint[]) AS id, unnest($2::int[]) AS attempt, unnest($3::bigint[]) AS token,
           unnest($4::text[]) AS result, unnest($5::bigint[]) AS started, unnest($6::bigint[]) AS finished,
           'running'::text AS running), upd AS (
    UPDATE {SCHEMA}.jobs j SET status = 'completed', result = o.result::jsonb, lease_expires_at = NULL,
                                updated_at = now()
    FROM o WHERE j.id = o.id AND j.status = o.running AND j.attempts = o.attempt AND j.claims = o.token
    RETURNING j.id, j.attempts, j.worker_id, o.result AS o_result, o.started, o.finished)
INSERT INTO {SCHEMA}.job_runs (job_id, attempt, worker_id, status, started_at, completed_at, duration_ms, result)
SELECT id, attempts, worker_id, 'completed', 'epoch'::timestamptz + started * interval '1 microsecond',
       'epoch'::timestamptz + finished * interval '1 microsecond', (finished - started) / 1000.0, o_result::jsonb
FROM upd"""


async def move_to_history(dsn: str, jobs: int) -> None:
    """Claim and complete per batch of 100, alternating: ours (the row moves) and the update it replaced."""
    names = ["ours (the row moves into its history row)", "lean update + history row (before 0006)"]
    tally = Tally(names)
    async with _probe_app(dsn) as app, app.pool.acquire() as conn:
        await app.enqueue_many([{"handler": "noop", "data": {"i": i}} for i in range(jobs)])
        await conn.execute(f"VACUUM ANALYZE {SCHEMA}.jobs")
        pid = conn.get_server_pid()
        now = micros(datetime.now(UTC))
        for i in range(jobs // BATCH):
            name = names[i % len(names)]
            start = process_cpu_ns(pid) or 0
            found = await app.queries.claim(conn, ["default"], BATCH, 60.0, "w1")
            if name.startswith("ours"):
                await app.queries.complete(conn, _succeeded(found, now), history=True)
            else:
                await conn.execute(_LEAN_UPDATE, [j.id for j in found], [j.attempt for j in found],
                                   [j.token for j in found], [None] * len(found), [now] * len(found),
                                   [now] * len(found))
            tally.add(name, (process_cpu_ns(pid) or 0) - start, len(found))
    tally.report("backend CPU per job (claim and completion)")


async def checks(dsn: str, calls: int) -> None:
    """Single inserts into jobs and into a copy with the old CHECK constraints, per call."""
    async with _probe_app(dsn) as app:
        copy = "jobs_checked"
        await app.pool.execute(f"CREATE TABLE {SCHEMA}.{copy} (LIKE {SCHEMA}.jobs INCLUDING ALL)")
        for i, check in enumerate(OLD_CHECKS):
            await app.pool.execute(f"ALTER TABLE {SCHEMA}.{copy} ADD CONSTRAINT old_check_{i} CHECK ({check})")
        sql = app.queries.sql["insert"]
        statements = {"jobs (no checks)": sql, "with the six old checks": sql.replace(f"{SCHEMA}.jobs ",
                                                                                     f"{SCHEMA}.{copy} ")}
        job = enq.prepare("noop", {"i": 0}, max_attempts=3)
        async with app.pool.acquire() as conn:
            cpu, _ = await _alternate(conn.get_server_pid(), calls, {
                name: _statement(conn.fetchrow, sql, *job.params(), app.queries.channel)
                for name, sql in statements.items()})
    cpu.report("backend CPU per insert")


async def enqueue_client(dsn: str, calls: int) -> None:
    """Client CPU per call of app.enqueue and of its parts."""
    async with _probe_app(dsn) as app:
        raw = await asyncpg.connect(dsn)
        raw_timeout = await asyncpg.connect(dsn, command_timeout=60)
        try:
            await app.enqueue("noop", {})  # the enqueue lane keeps its connection from here on
            lane = app._enqueue_lane
            assert lane is not None
            sql, channel = app.queries.sql["insert"], app.queries.channel
            job = enq.prepare("noop", {"i": 0}, max_attempts=3)

            async def with_prepare(i: int) -> Any:
                fresh = enq.prepare("noop", {"i": i}, max_attempts=3)
                return await lane.run(app.queries.insert_job, fresh.params(), dedup=False)

            variants: dict[str, Callable[[int], Awaitable[Any]]] = {
                "statement, plain connection": lambda i: raw.fetchrow(sql, *job.params(), channel),
                "statement, with command_timeout": lambda i: raw_timeout.fetchrow(sql, *job.params(), channel),
                "statement on the enqueue lane": lambda i: lane.run(app.queries.insert_job, job.params(),
                                                                    dedup=False),
                "lane + validation (prepare)": with_prepare,
                "lane + the returned Job (insert_one)": lambda i: lane.run(enq.insert_one, app.queries, job),
                "app.enqueue": lambda i: app.enqueue("noop", {"i": i}),
            }
            names = list(variants)
            tally = Tally(names, skip=50)
            for i in range(calls):
                name = names[i % len(names)]
                start = time.process_time_ns()
                await variants[name](i)
                tally.add(name, time.process_time_ns() - start, 1)
        finally:
            await raw.close()
            await raw_timeout.close()
    tally.report("client CPU per call")


async def insert_parts(dsn: str, calls: int) -> None:
    """Server CPU and wall time of single inserts into jobs and into copies with fewer indexes."""
    copies = {"jobs": "",
              "without the declared-schedule index": "periodic_key",
              "without it and the lease index": "periodic_key lease_expires_at"}
    async with _probe_app(dsn) as app:
        statements = {}
        for name, dropped in copies.items():
            table = "jobs"
            if dropped:
                table = "jobs_" + dropped.replace(" ", "_")
                await app.pool.execute(f"CREATE TABLE {SCHEMA}.{table} (LIKE {SCHEMA}.jobs INCLUDING ALL)")
                for column in dropped.split():
                    indexes = await app.pool.fetch(
                        "SELECT indexrelid::regclass::text AS name FROM pg_index WHERE indrelid = $1::regclass"
                        " AND pg_get_indexdef(indexrelid) LIKE '%btree (' || $2 || ')%'", f"{SCHEMA}.{table}", column)
                    for index in indexes:
                        await app.pool.execute(f"DROP INDEX {index['name']}")
            sql = app.queries.sql["insert"]
            statements[f"our insert, {name}"] = sql.replace(f"{SCHEMA}.jobs ", f"{SCHEMA}.{table} ")
        bare = f"INSERT INTO {SCHEMA}.{table} (handler, data) VALUES ($1, $2::jsonb)"
        job = enq.prepare("noop", {"i": 0}, max_attempts=3)
        async with app.pool.acquire() as conn, floor._fresh_schema(dsn):
            variants = {name: _statement(conn.fetchrow, sql, *job.params(), app.queries.channel)
                        for name, sql in statements.items()}
            variants["a bare insert (handler, data), the last table"] = _statement(
                conn.execute, bare, "noop", job.data_json)
            variants["the floor's insert, its own table"] = _statement(conn.execute, floor.INSERT_ONE, job.data_json)
            cpu, wall = await _alternate(conn.get_server_pid(), calls, variants)
        cpu.report("backend CPU per insert")
        wall.report("wall time per insert")
        plain, timed = await asyncpg.connect(dsn), await asyncpg.connect(dsn, command_timeout=60)
        names = ["a connection without command_timeout", "a connection with command_timeout=60"]
        client, wall = Tally(names, skip=50), Tally(names, skip=50)
        try:
            for i in range(calls):
                name = names[i % len(names)]
                start, started = time.process_time_ns(), time.perf_counter_ns()
                await (plain if i % 2 == 0 else timed).execute(bare, "noop", job.data_json)
                wall.add(name, time.perf_counter_ns() - started, 1)
                client.add(name, time.process_time_ns() - start, 1)
        finally:
            await plain.close()
            await timed.close()
        client.report("client CPU per bare insert")
        wall.report("wall time per bare insert")


def builders(calls: int) -> None:
    """Microseconds to build a Job and a ClaimedJob, three ways."""
    now = datetime.now(UTC)
    kinds: list[tuple[str, Any, Any, tuple[Any, ...]]] = [
        ("Job", Job, build_job, (7, "h", {}, "q", 0, JobStatus.PENDING, 0, 3, now, now, now, *[None] * 11,
                                 "skip", "wait", None)),
        ("ClaimedJob", ClaimedJob, build_claimed_job, (7, "h", {}, "q", 1, 3, None, None, None, now, now, None,
                                                        "skip", "wait", 1))]
    for name, cls, build, values in kinds:
        setters = [getattr(cls, f.name).__set__ for f in fields(cls)]

        def by_setters(*values: Any, cls: Any = cls, setters: Any = setters) -> Any:
            obj = object.__new__(cls)
            for set_field, value in zip(setters, values, strict=True):
                set_field(obj, value)
            return obj

        for way, make in [("frozen __init__", cls), ("models builder", build), ("slot setters", by_setters)]:
            started = time.perf_counter()
            for _ in range(calls):
                make(*values)
            print(f"  {name:10s} {way:16s} {(time.perf_counter() - started) / calls * 1e6:6.2f} µs")


async def enqueue_wall(dsn: str, calls: int) -> None:
    """Wall time per call of app.enqueue and of the floor's insert, alternating."""
    names = ["the floor's insert", "app.enqueue"]
    tally = Tally(names, skip=50)
    async with _probe_app(dsn) as app, floor._fresh_schema(dsn):
        conn = await asyncpg.connect(dsn)
        try:
            await app.enqueue("noop", {})  # the enqueue lane keeps its connection from here on
            for i in range(calls):
                started = time.perf_counter_ns()
                await conn.execute(floor.INSERT_ONE, f'{{"i": {i}}}')
                middle = time.perf_counter_ns()
                await app.enqueue("noop", {"i": i})
                tally.add(names[0], middle - started, 1)
                tally.add(names[1], time.perf_counter_ns() - middle, 1)
        finally:
            await conn.close()
    tally.report("wall time per call")
    print(f"  app.enqueue: {tally.per_item_us(names[0]) / tally.per_item_us(names[1]):.3f}x of the floor's calls/s")


async def enqueue_pieces(dsn: str, calls: int, block: int = 500) -> None:
    """Wall time and client CPU of app.enqueue built up piece by piece, in alternating blocks."""
    async with _probe_app(dsn) as app, floor._fresh_schema(dsn):
        conn = await asyncpg.connect(dsn)
        try:
            await app.enqueue("noop", {})  # the enqueue lane opens its connection
            lane = app._enqueue_lane
            assert lane is not None
            queries, validated = app.queries, app._validated
            job = enq.prepare_plain("noop", {"i": 0}, "default", 0, 3, None, validated)
            variants: dict[str, Callable[[int], Awaitable[Any]]] = {
                "the floor's insert": lambda i: conn.execute(floor.INSERT_ONE, job.data_json),
                "our statement through the lane": lambda i: lane.run(
                    queries.insert_plain, "noop", job.data_json, "default", 0, 3),
                "+ the returned Job (insert_one)": lambda i: lane.run(enq.insert_one, queries, job),
                "+ validation, encoding (prepare_plain)": lambda i: lane.run(
                    enq.insert_one, queries, enq.prepare_plain("noop", {"i": i}, "default", 0, 3, None, validated)),
                "app.enqueue": lambda i: app.enqueue("noop", {"i": i}),
            }
            names = list(variants)
            wall, client = Tally(names, skip=1), Tally(names, skip=1)  # the first round warms up
            for _ in range(max(2, calls // (block * len(names)))):
                for name in names:
                    run = variants[name]
                    start, started = time.process_time_ns(), time.perf_counter_ns()
                    for i in range(block):
                        await run(i)
                    wall.add(name, time.perf_counter_ns() - started, block)
                    client.add(name, time.process_time_ns() - start, block)
        finally:
            await conn.close()
    base = wall.per_item_us(names[0])
    for name in names:
        print(f"  {name:40s} {wall.per_item_us(name):7.1f} µs wall ({base / wall.per_item_us(name):.3f}x of the"
              f" floor's calls/s), {client.per_item_us(name):6.1f} µs client CPU")


async def _floor_insert_round(dsn: str, calls: int, statements: Mapping[str, tuple[str, str]], *,
                              listening: bool) -> tuple[Tally, Tally]:
    """The floor-insert probe's statements, on a fresh floor table, with or without a listener."""
    async with floor._fresh_schema(dsn):
        conn, listener = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            if listening:
                await listener.add_listener(floor.CHANNEL, lambda *_: None)

            def variant(method: str, sql: str) -> Callable[[int], Awaitable[object]]:
                run = getattr(conn, method)
                return lambda i: run(sql, f'{{"i": {i}}}')

            return await _alternate(conn.get_server_pid(), calls,
                                    {name: variant(*call) for name, call in statements.items()})
        finally:
            await conn.close()
            await listener.close()


async def floor_insert(dsn: str, calls: int) -> None:
    """The floor's insert, alone and with our insert's RETURNING and notification, without and with a listener."""
    returning = f"INSERT INTO {floor.TABLE} (data) VALUES ($1::jsonb) RETURNING id, created_at"
    statements: dict[str, tuple[str, str]] = {
        "the floor's insert": ("execute", floor.INSERT_ONE),
        "+ RETURNING id, created_at": ("fetchrow", returning),
        "+ pg_notify": ("execute", floor.INSERT_NOTIFY),
        "+ both": ("fetchrow", floor.INSERT_CONTRACT),
    }
    names = list(statements)
    for listening in (False, True):
        cpu, wall = await _floor_insert_round(dsn, calls, statements, listening=listening)
        print("with a connection listening on the channel:" if listening else "with nobody listening:")
        base = wall.per_item_us(names[0])
        for name in names:
            print(f"  {name:28s} {wall.per_item_us(name):7.1f} µs wall ({base / wall.per_item_us(name):.3f}x of the"
                  f" bare insert's calls/s), {cpu.per_item_us(name):6.1f} µs backend CPU")


# history-indexes: job_runs' indexes, and what each costs a drained job's history row.
_ONE_KEY = ("ALTER TABLE {s}.job_runs DROP CONSTRAINT job_runs_pkey; DROP INDEX {s}.job_runs_job_idx;"
            " ALTER TABLE {s}.job_runs ADD PRIMARY KEY (job_id, id)")
_HISTORY_INDEXES = {
    "job_runs as migrated: primary key (id), index (job_id, id)": "",
    "primary key (job_id, id) only": _ONE_KEY,
    "primary key (job_id, id), BRIN (id)": _ONE_KEY + "; CREATE INDEX ON {s}.job_runs USING brin (id)",
}


async def history_indexes(dsn: str, jobs: int) -> None:
    """Our claim and completion (history on) over copies of our schema that differ in job_runs' indexes."""
    async with contextlib.AsyncExitStack() as stack:
        copies = []
        for i, (name, ddl) in enumerate(_HISTORY_INDEXES.items()):
            schema = f"{SCHEMA}_h{i}"
            app = await stack.enter_async_context(_probe_app(dsn, schema))
            if ddl:
                await app.pool.execute(ddl.format(s=schema))
            await app.enqueue_many([{"handler": "noop", "data": {"i": i}} for i in range(jobs)])
            conn = await stack.enter_async_context(app.pool.acquire())
            await conn.execute(f"VACUUM ANALYZE {schema}.jobs")
            copies.append((name, app, conn))
        tally = Tally(list(_HISTORY_INDEXES))
        scheduled = datetime.now(UTC)
        now = micros(scheduled)
        for b in range(jobs // BATCH):
            for name, app, conn in copies if b % 2 == 0 else reversed(copies):
                pid = conn.get_server_pid()
                start = process_cpu_ns(pid) or 0
                found = await app.queries.claim(conn, ["default"], BATCH, 60.0, "w1")
                await app.queries.complete(conn, _succeeded(found, now, scheduled), history=True)
                tally.add(name, (process_cpu_ns(pid) or 0) - start, len(found))
        tally.report("backend CPU per job, claim and completion with history")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m benchmarks.probes", description=__doc__.split("\n\n")[0])
    p.add_argument("probe", choices=["completion", "move-to-history", "checks", "enqueue-client", "enqueue-wall",
                                     "enqueue-pieces", "insert-parts", "builders", "floor-insert",
                                     "history-indexes"])
    p.add_argument("-n", type=int, default=None,
                   help="jobs (completion, move-to-history: default 42,000; history-indexes: 30,000) or calls"
                        " (enqueue-pieces: 50,000; the others: 12,000)")
    p.add_argument("--dsn", default=None, help="default: $AIOJOBS_PG_BENCH_DSN or the local server")
    args = p.parse_args(argv)
    configure_logging("WARNING")
    dsn = args.dsn or bench_dsn()
    if args.probe == "completion":
        asyncio.run(completion(dsn, args.n or 42_000))
    elif args.probe == "move-to-history":
        asyncio.run(move_to_history(dsn, args.n or 42_000))
    elif args.probe == "checks":
        asyncio.run(checks(dsn, args.n or 12_000))
    elif args.probe == "enqueue-wall":
        asyncio.run(enqueue_wall(dsn, args.n or 12_000))
    elif args.probe == "enqueue-pieces":
        asyncio.run(enqueue_pieces(dsn, args.n or 50_000))
    elif args.probe == "insert-parts":
        asyncio.run(insert_parts(dsn, args.n or 12_000))
    elif args.probe == "floor-insert":
        asyncio.run(floor_insert(dsn, args.n or 12_000))
    elif args.probe == "history-indexes":
        asyncio.run(history_indexes(dsn, args.n or 30_000))
    elif args.probe == "builders":
        builders(args.n or 200_000)
    else:
        asyncio.run(enqueue_client(dsn, args.n or 12_000))


if __name__ == "__main__":
    main()
