"""Retention and the overview, measured: ``python -m benchmarks.retention [--only SECTION,...]``.

The figures of issue 20, points 4 and 5 (docs/architecture.md, "Retention"; docs/performance.md,
"Retention and the overview"). Sections:

- ``prune``: a pruning round over ``--runs`` history rows past their age (completed one-off jobs,
  made by the server), then over as many completed jobs past a count limit: rows deleted per second,
  and server CPU per row. To set against the drain: one process drains ~55,000 no-op jobs/s.
- ``pace``: ``--processes`` worker processes drain ``--pace-jobs`` jobs with a one-second history
  retention and maintenance every second; the history's size is sampled as they go. Pruning keeps pace
  if the history stays near (drain rate) x (retention + a round) instead of growing with the drain.
  Each process reports its rounds that pruned and those it skipped (another worker held the lock).
- ``counting``: what counting completed jobs costs the hot path: the server CPU of claiming and
  completing ``--block-jobs`` jobs 100 at a time on one connection, in blocks that take turns between
  the statements as shipped (their CTE done_counted), the same without it, and a statement trigger on
  job_runs instead, ``--blocks`` times each; medians. (A whole drain's jobs/s moved by more than the
  difference from one block to the next on the shared machine, so it could not tell 2% from 10%.)
- ``partitions``: the alternative to batched deletes, history partitioned by ranges of ids (so of
  completion time) and dropped a partition at a time: the same hot path into a partitioned history,
  and the time to drop a partition of ``--runs`` rows.
- ``overview``: over ``--runs`` history rows, 10,000 pending and 100 failed jobs: ``GET /queues``
  (through the ASGI app when the ``http`` extra is installed), ``queue_stats`` and the statement it
  replaced, and ``jobs list`` pages (the CLI's and the dashboard's ``list_jobs``) after enough calls
  that PostgreSQL may use a generic plan; median ms of ``--calls`` calls each.

Schemas are ``bench_retention_<section>_<pid>``, dropped at the end of each section.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import re
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from aiojobs_pg import App
from aiojobs_pg.maintenance import Maintenance
from aiojobs_pg.models import JobStatus, Outcome, RunStatus, micros
from benchmarks.common import ROOT, Result, bench_dsn, measured, ready, schema_name, tagged

SECTIONS = ("prune", "pace", "counting", "partitions", "overview")
DRAIN_REFERENCE = 55_000  # jobs/s one process drained here (docs/performance.md, 2026-12-06)


async def noop(data: Any) -> None:
    """The job handler: does nothing."""
    return None


@contextlib.asynccontextmanager
async def fresh(dsn: str, name: str, **settings: Any) -> AsyncIterator[tuple[App, Any]]:
    """An open App on a freshly migrated schema of its own, and an admin connection; dropped on exit."""
    schema = schema_name(f"retention_{name}")
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        app = App(dsn, schema=schema, **settings)
        app.register("noop", noop)
        async with app:
            yield app, admin
    finally:
        try:
            await admin.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        finally:
            await admin.close()


async def history(admin: Any, schema: str, n: int, *, age: str = "30 days", queues: int = 1,
                  first_job: int = 10**9) -> None:
    """``n`` history rows of completed one-off jobs, completed ``age`` ago in id order, spread over ``queues``."""
    for start in range(0, n, 200_000):
        await admin.execute(
            f"""INSERT INTO {schema}.job_runs
                    (job_id, claim, attempt, worker_id, status, started_at, completed_at, duration_ms, scheduled_at,
                     handler, data, queue, priority, max_attempts, created_at, last_run_at)
                SELECT $4 + g, 1, 1, 'w', 'completed', t, t, 0.1, t, 'noop', jsonb_build_object('i', g),
                       'q' || (g % $5), 0, 3, t, t
                FROM generate_series($1::bigint, $2::bigint) AS g,
                     LATERAL (SELECT now() - $3::text::interval + g * interval '1 microsecond') AS c(t)""",
            start + 1, min(n, start + 200_000), age, first_job, queues)
    await admin.execute(f"SELECT {schema}.recount_completed()")  # rows written by hand are counted so


async def preload(admin: Any, schema: str, n: int) -> None:
    """``n`` pending no-op jobs made by the server, then VACUUM ANALYZE (not measured)."""
    for start in range(0, n, 200_000):
        await admin.execute(f"INSERT INTO {schema}.jobs (handler, data) SELECT 'noop', jsonb_build_object('i', g)"
                            " FROM generate_series($1::int, $2::int) AS g", start, min(n, start + 200_000) - 1)
    await admin.execute(f"VACUUM ANALYZE {schema}.jobs")


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def table(rows: list[tuple[Any, ...]], head: tuple[str, ...]) -> None:
    cells = [head, *[tuple(f"{c:,.1f}" if isinstance(c, float) else f"{c:,}" if isinstance(c, int) else str(c)
                          for c in r) for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(head))]
    for k, r in enumerate(cells):
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))))
        if k == 0:
            print("  ".join("-" * w for w in widths))


# --------------------------------------------------------------------------- prune


async def prune(args: argparse.Namespace) -> None:
    """Rows per second of a pruning round: past their age, then past a count limit."""
    dsn, n = tagged(args.dsn), args.runs
    rows = []
    async with fresh(dsn, "prune") as (app, admin):
        for kind in ("age", "count"):
            await admin.execute(f"TRUNCATE {app.schema}.job_runs")
            await history(admin, app.schema, n, age="30 days" if kind == "age" else "1 minute", queues=4)
            await admin.execute(f"VACUUM ANALYZE {app.schema}.job_runs")
            keep = n // 40 if kind == "count" else None  # a tenth of each of the 4 queues stays
            worker = Maintenance(app.pool, app.queries, history=True, interval=5, history_retention=86400.0,
                                 job_retention=None, worker_retention=60, keep_completed=keep,
                                 prune_budget=math.inf)
            async with measured(admin) as m:
                done = await worker.prune()
            assert done is not None
            deleted = done.runs + done.completed
            res = m.fill(Result("ours", "prune", kind, deleted), deleted)
            left = await admin.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs")
            rows.append((f"{kind} limit", deleted, left, res.seconds, round(res.jobs_per_s or 0),
                         res.us_per_job(res.pg_cpu_s) or math.nan,
                         f"{(res.jobs_per_s or 0) / DRAIN_REFERENCE:.1f}x", "; ".join(res.notes)))
    print(f"\nprune: one round over {n:,} history rows (batches of 5,000, no time budget)")
    table(rows, ("limit", "deleted", "left", "seconds", "rows/s", "server µs/row", "vs 55k jobs/s", "notes"))


# --------------------------------------------------------------------------- pace


async def pace(args: argparse.Namespace) -> None:
    """Worker processes drain with a one-second retention; the history's size as they go."""
    dsn, n = tagged(args.dsn), args.pace_jobs
    async with fresh(dsn, "pace") as (app, admin):
        await preload(admin, app.schema, n)
        procs = [await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.retention", "--child", "--dsn", dsn, "--schema", app.schema,
            cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            for _ in range(args.processes)]
        samples: list[tuple[float, int, int]] = []
        try:
            for p in procs:
                await _line(p, "READY")
            t0 = time.perf_counter()
            for p in procs:
                assert p.stdin is not None
                p.stdin.write(b"go\n")
            waiting = [asyncio.create_task(_line(p, "DONE")) for p in procs]
            while not all(w.done() for w in waiting):
                # Completed jobs left jobs: its deleted rows, from the statistics (cheaper than counting it).
                drained = await admin.fetchval("SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = $1::regclass",
                                               f"{app.schema}.jobs")
                kept = await admin.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs")
                samples.append((time.perf_counter() - t0, drained, kept))
                await asyncio.wait(waiting, timeout=1.0)
            seconds = time.perf_counter() - t0
            dones = [json.loads(w.result()) for w in waiting]
        finally:
            for p in procs:
                if p.returncode is None and p.stdin is not None:
                    p.stdin.close()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(p.wait(), 30)
    rate = n / seconds
    print(f"\npace: {args.processes} worker processes drain {n:,} jobs, history_retention 1 s, maintenance every 1 s")
    table([(f"{t:.1f}", d, k) for t, d, k in samples[::max(1, len(samples) // 30)]],
          ("s", "jobs done (about)", "history rows"))
    steady = [k for t, _, k in samples if t > 5]
    print(f"drained at {rate:,.0f} jobs/s; history rows after 5 s: at most {max(steady, default=0):,}"
          f" (the drain would have left {n:,}); rounds that pruned / skipped per process:"
          f" {[(d['pruned_rounds'], d['skipped_rounds']) for d in dones]}; rows each pruned:"
          f" {[d['pruned'] for d in dones]}")


async def _line(proc: asyncio.subprocess.Process, prefix: str) -> str:
    assert proc.stdout is not None
    while True:
        raw = await asyncio.wait_for(proc.stdout.readline(), 600)
        if not raw:
            raise RuntimeError(f"worker process {proc.pid} exited before {prefix}")
        if (line := raw.decode().strip()).startswith(prefix):
            return line[len(prefix):].strip()


async def _child(args: argparse.Namespace) -> None:
    app = App(args.dsn, schema=args.schema, auto_migrate=False, history_retention=1, maintenance_interval=1)
    app.register("noop", noop)
    async with app:
        await ready()
        cpu0 = time.process_time()
        worker = app.create_worker(concurrency=100, burst=True)
        await worker.run()
        print("DONE " + json.dumps({
            "claimed": worker.producer.claimed, "cpu_s": time.process_time() - cpu0,
            "pruned": worker.maintenance.pruned.runs, "pruned_rounds": worker.signals.counts["prune"],
            "skipped_rounds": worker.signals.counts["prune_skipped"]}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)


# --------------------------------------------------------------------------- counting, partitions

Variant = Callable[[App, Any], Awaitable[None]]
COUNTED = re.compile(r"done_counted AS \(.*?\n\), ", re.S)


async def _uncounted(app: App, admin: Any) -> None:
    """The completion statements without their counting CTE (done_counted)."""
    for name in ("complete", "complete_success"):
        text = COUNTED.sub("", app.queries.sql[name])
        assert text != app.queries.sql[name], f"{name} has no done_counted CTE to take out"
        app.queries.sql[name] = text


async def _trigger(app: App, admin: Any) -> None:
    """Counting by a statement trigger on job_runs (transition table) instead of the statement's CTE."""
    await _uncounted(app, admin)
    s = app.schema
    await admin.execute(f"""
        CREATE FUNCTION {s}.bench_counted() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO {s}.queue_counts AS c (queue, backend, completed)
            SELECT queue, pg_backend_pid(), count(*) FROM added WHERE handler IS NOT NULL GROUP BY queue
            ON CONFLICT (queue, backend) DO UPDATE SET completed = c.completed + EXCLUDED.completed;
            RETURN NULL;
        END $$;
        CREATE TRIGGER bench_counted AFTER INSERT ON {s}.job_runs
            REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION {s}.bench_counted();""")


async def _partitioned(app: App, admin: Any) -> None:
    """job_runs partitioned by ranges of 10^6 ids (completion order), with the same indexes and triggers."""
    s = app.schema
    await admin.execute(f"""
        DROP VIEW {s}.all_jobs;
        ALTER TABLE {s}.job_runs RENAME TO job_runs_plain;
        DROP TRIGGER queue_counts_delete ON {s}.job_runs_plain;
        DROP TRIGGER queue_counts_update ON {s}.job_runs_plain;
        DROP TRIGGER queue_counts_truncate ON {s}.job_runs_plain;
        CREATE TABLE {s}.job_runs (LIKE {s}.job_runs_plain INCLUDING DEFAULTS INCLUDING IDENTITY)
            PARTITION BY RANGE (id);
        ALTER TABLE {s}.job_runs ADD PRIMARY KEY (id);
        CREATE INDEX ON {s}.job_runs (job_id, id);
        CREATE TRIGGER queue_counts_delete AFTER DELETE ON {s}.job_runs
            REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION {s}.queue_counts_removed();""")
    for k in range(20):
        await admin.execute(f"CREATE TABLE {s}.job_runs_p{k} PARTITION OF {s}.job_runs"
                            f" FOR VALUES FROM ({k * 10**6}) TO ({(k + 1) * 10**6})")


def _backend_cpu_s(pid: int) -> float:
    """A backend's CPU seconds so far (the server on this machine), from /proc/<pid>/schedstat."""
    with open(f"/proc/{pid}/schedstat") as f:
        return int(f.read().split()[0]) / 1e9


async def ab(args: argparse.Namespace, name: str, variants: dict[str, Variant | None]) -> dict[str, list[float]]:
    """Server CPU per job of the hot path, claim and completion of 100 jobs at a time on one connection,
    in blocks of ``block_jobs`` that take turns between the variants' schemas (so the machine's drift
    reaches each alike). The drain's other costs (Python, the handler, the socket) are the same for all."""
    dsn = tagged(args.dsn)
    per_job: dict[str, list[float]] = {v: [] for v in variants}
    async with contextlib.AsyncExitStack() as stack:
        setups = {}
        for v, change in variants.items():
            app, admin = await stack.enter_async_context(fresh(dsn, f"{name}_{v}"))
            if change is not None:
                await change(app, admin)
            conn = await stack.enter_async_context(app.pool.acquire())
            setups[v] = (app, admin, conn, await conn.fetchval("SELECT pg_backend_pid()"),
                         app.queries.claim_for(["noop"]))
        names = list(variants)
        for block in range(args.blocks):
            for v in names[block % len(names):] + names[:block % len(names)]:
                app, admin, conn, pid, claim = setups[v]
                await preload(admin, app.schema, args.block_jobs)
                done, cpu0 = 0, _backend_cpu_s(pid)
                while jobs := await app.queries.claim(conn, ["default"], 100, 30.0, "bench", claim):
                    now = micros(datetime.now(UTC))
                    await app.queries.complete(conn, [Outcome(j.id, j.attempt, j.token, JobStatus.COMPLETED,
                                                              RunStatus.COMPLETED, now, now, "bench") for j in jobs],
                                               history=True)
                    done += len(jobs)
                assert done == args.block_jobs, (v, done)
                per_job[v].append((_backend_cpu_s(pid) - cpu0) * 1e6 / done)
                await admin.execute(f"TRUNCATE {app.schema}.job_runs")
    return per_job


def report_ab(title: str, per_job: dict[str, list[float]], base: str) -> None:
    print(f"\n{title}")
    base_us = median(per_job[base])
    table([(v, len(xs), median(xs), f"{median(xs) / base_us - 1:+.1%}", f"{median(xs) - base_us:+.2f}",
            str([round(x, 1) for x in xs])) for v, xs in per_job.items()],
          ("variant", "blocks", "server µs/job", "vs " + base, "µs/job", "each block"))


async def counting(args: argparse.Namespace) -> None:
    """The hot path with the counting CTE (as shipped), without it, and with a trigger instead."""
    per_job = await ab(args, "counting", {"uncounted": _uncounted, "shipped": None, "trigger": _trigger})
    report_ab(f"counting: claim + completion of {args.block_jobs:,} jobs, 100 at a time, in turns", per_job,
              "uncounted")


async def partitions(args: argparse.Namespace) -> None:
    """The drain into a partitioned history, and dropping a partition."""
    per_job = await ab(args, "partitions", {"plain": None, "partitioned": _partitioned})
    report_ab(f"partitions: claim + completion of {args.block_jobs:,} jobs, 100 at a time, into a history"
              " partitioned by id ranges, in turns with the plain one", per_job, "plain")
    async with fresh(args.dsn, "drop") as (app, admin):
        await _partitioned(app, admin)
        await history(admin, app.schema, args.runs, first_job=1)
        await admin.execute(f"CHECKPOINT; ANALYZE {app.schema}.job_runs")
        t0 = time.perf_counter()
        await admin.execute(f"DROP TABLE {app.schema}.job_runs_p0")
        dropped = time.perf_counter() - t0
    print(f"dropping the partition of ids below 10^6 ({min(args.runs, 10**6 - 1):,} rows): {dropped * 1000:.1f} ms")


# --------------------------------------------------------------------------- overview


async def overview(args: argparse.Namespace) -> None:
    """GET /queues, queue_stats and jobs list over a long history."""
    n, calls = args.runs, args.calls
    async with fresh(args.dsn, "overview") as (app, admin):
        s = app.schema
        await history(admin, s, n, age="1 hour", queues=4)
        await admin.execute(f"INSERT INTO {s}.jobs (handler, queue) SELECT 'noop', 'q' || (g % 4)"
                            " FROM generate_series(1, 10000) AS g")
        await admin.execute(f"INSERT INTO {s}.jobs (handler, queue, status, attempts) SELECT 'noop', 'q1', 'failed', 3"
                            " FROM generate_series(1, 100)")
        await admin.execute(f"VACUUM ANALYZE {s}.jobs, {s}.job_runs")
        middle = await admin.fetchval(f"SELECT job_id FROM {s}.job_runs ORDER BY id OFFSET {n // 2} LIMIT 1")
        admin_api = app.admin()
        old_stats = f"""SELECT queue, status, count(*) AS count,
            min(next_run_at) FILTER (WHERE status = 'pending' AND next_run_at <= now()) AS oldest_due
            FROM {s}.all_jobs GROUP BY queue, status ORDER BY queue, status"""
        cases: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            ("queue_stats (counters)", admin_api.queue_stats),
            ("queue_stats before (counts all_jobs)", lambda: app.pool.fetch(old_stats)),
            ("jobs list: first page", lambda: admin_api.list_jobs(limit=50)),
            ("jobs list: completed", lambda: admin_api.list_jobs(status="completed", limit=50)),
            ("jobs list: failed", lambda: admin_api.list_jobs(status="failed", limit=50)),
            ("jobs list: queue q1", lambda: admin_api.list_jobs(queue="q1", limit=50)),
            ("jobs list: handler noop", lambda: admin_api.list_jobs(handler="noop", limit=50)),
            ("jobs list: page in the middle", lambda: admin_api.list_jobs(limit=50, cursor=middle)),
            # The known limit: no index on the history's queue or handler, so a value that no completed
            # job holds reads the whole history to say so.
            ("jobs list: queue none has (limit)", lambda: admin_api.list_jobs(queue="none", limit=50)),
        ]
        client = await _http_client(app)
        if client is not None:
            cases.insert(0, ("GET /queues", lambda: client.get("/queues")))
        rows = []
        try:
            for label, call in cases:
                for _ in range(6):  # prepared, and past the five runs after which a generic plan may be used
                    await call()
                times = []
                for _ in range(calls):
                    t0 = time.perf_counter()
                    await call()
                    times.append((time.perf_counter() - t0) * 1000)
                rows.append((label, median(times), max(times)))
        finally:
            if client is not None:
                await client.aclose()
    print(f"\noverview: {n:,} history rows (completed jobs in 4 queues), 10,000 pending and 100 failed jobs;"
          f" {calls} calls each")
    table(rows, ("call", "median ms", "max ms"))


async def _http_client(app: App) -> Any:
    """An httpx client of the app's ASGI API, or None without the http extra."""
    try:
        import httpx

        from aiojobs_pg.http import create_asgi_app
    except ImportError:
        print("(the http extra is not installed: GET /queues is not measured)")
        return None
    token = "bench-token-0123456789abcdef"
    api = create_asgi_app(app, tokens={"bench": token})
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=api), base_url="http://bench",
                             headers={"Authorization": f"Bearer {token}"})


async def main(args: argparse.Namespace) -> None:
    for section in args.only:
        await globals()[section](args)


def _sections(text: str) -> list[str]:
    names = [s.strip() for s in text.split(",") if s.strip()]
    unknown = set(names) - set(SECTIONS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return names


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m benchmarks.retention", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", type=_sections, default=list(SECTIONS), metavar="A,B",
                   help=f"sections to run, in this order (default: {','.join(SECTIONS)})")
    p.add_argument("--dsn", default=bench_dsn())
    p.add_argument("--runs", type=int, default=1_000_000, help="history rows of prune, partitions and overview")
    p.add_argument("--pace-jobs", type=int, default=1_000_000, help="jobs drained by the pace section")
    p.add_argument("--processes", type=int, default=2, help="worker processes of the pace section")
    p.add_argument("--blocks", type=int, default=12, help="blocks per variant in counting and partitions")
    p.add_argument("--block-jobs", type=int, default=20_000, help="jobs per block in counting and partitions")
    p.add_argument("--calls", type=int, default=20, help="timed calls per case in overview")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--schema", help=argparse.SUPPRESS)
    parsed = p.parse_args()
    asyncio.run(_child(parsed) if parsed.child else main(parsed))
