"""Command line interface: ``python -m aiojobs_pg`` (or the ``aiojobs-pg`` script).

Commands: ``worker`` (run the handlers of an App), ``migrate``, ``jobs``
(list/show/enqueue/retry/cancel/trigger/delete) and ``demo``. Exit codes: 0 on
success, 1 when a job or database operation fails, 2 on usage errors.
Command output goes to stdout, logs and errors to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from ..app import App
from ..errors import AiojobsPgError, ConfigurationError
from ..logs import ENV_LEVEL, LEVELS, configure_logging, env_json, parse_level
from ..models import Job, JobStatus, Run
from ..queries import DB_ERRORS, DEFAULT_SCHEMA, ServerError, UndefinedTable, schema_or_default
from ..schedules import upcoming_runs
from ..schema import migrations, pending_migrations, render_sql
from .apps import CommandError, UsageError, load_app, parse_queues
from .argtypes import bounded_int
from .render import format_time, jobs_table, print_json, render_table, runs_table, to_dict, workers_table
from .serve import add_serve_arguments, serve_command

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


T = TypeVar("T")



# --- argument types ---

_positive_int = bounded_int(1)
_job_id = bounded_int(1, 2**63 - 1)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text}")
    return value


def _level(text: str) -> str:
    if text.lower() not in LEVELS:
        raise argparse.ArgumentTypeError(f"invalid level {text!r}; expected one of {', '.join(LEVELS)}")
    return text.lower()


# --- the parser ---

def _prog() -> str:
    return "python -m aiojobs_pg" if os.path.basename(sys.argv[0]) == "__main__.py" else "aiojobs-pg"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; global options are accepted before or after the command."""
    common = argparse.ArgumentParser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument("--dsn", default=argparse.SUPPRESS,
                   help="PostgreSQL DSN (default: $AIOJOBS_PG_DSN, then $DATABASE_URL, then an embedded server "
                        "under ./.aiojobs_pg/)")
    g.add_argument("--schema", default=argparse.SUPPRESS,
                   help=f"schema holding the tables (default: $AIOJOBS_PG_SCHEMA, then {DEFAULT_SCHEMA!r})")
    g.add_argument("--log-level", type=_level, default=argparse.SUPPRESS, metavar="LEVEL",
                   help=f"{', '.join(LEVELS)} (default: ${ENV_LEVEL}, then info for worker and demo, "
                        "warning otherwise)")
    g.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS,
                   help="log JSON lines (also with AIOJOBS_PG_LOG_JSON=1)")

    def sub_parser(subs: Any, name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subs.add_parser(name, parents=[common], help=help_text,
                                                     description=description or help_text)
        return p

    parser = argparse.ArgumentParser(
        prog=_prog(), parents=[common],
        description="aiojobs_pg: asyncio background jobs stored in PostgreSQL.",
        epilog="Exit codes: 0 success, 1 job or database error, 2 usage error.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub_parser(commands, "worker", "run a worker for an App",
                   "Import the App object MODULE:ATTRIBUTE (like uvicorn; the current directory is importable) "
                   "and run its handlers. The first SIGTERM/SIGINT drains running jobs; a second one exits at once.")
    p.add_argument("app", metavar="MODULE:APP", help="where the App lives, e.g. myproject.jobs:app")
    p.add_argument("--concurrency", type=_positive_int, default=10, metavar="N",
                   help="jobs run at once (default: 10)")
    p.add_argument("--queues", default="default", metavar="A,B",
                   help="comma-separated queues to take jobs from (default: default)")
    p.add_argument("--burst", action="store_true", help="exit once no job is due")
    p.set_defaults(func=cmd_worker, default_level="info")

    p = sub_parser(commands, "migrate", "create or upgrade the tables")
    p.add_argument("--print-sql", action="store_true",
                   help="print the whole schema as SQL instead of applying it (no database needed)")
    p.set_defaults(func=cmd_migrate)

    jobs = sub_parser(commands, "jobs", "list, inspect, enqueue and manage jobs")
    actions = jobs.add_subparsers(dest="action", metavar="ACTION", required=True)

    p = sub_parser(actions, "list", "list jobs, newest first")
    p.add_argument("--status", choices=[s.value for s in JobStatus], help="only jobs with this status")
    p.add_argument("--queue", metavar="Q", help="only jobs of this queue")
    p.add_argument("--handler", metavar="H", help="only jobs of this handler")
    p.add_argument("--limit", type=_positive_int, default=50, metavar="N", help="at most N jobs (default: 50)")
    p.add_argument("--cursor", type=_job_id, metavar="ID", help="only jobs older than this id (next page)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_list)

    p = sub_parser(actions, "show", "show one job")
    p.add_argument("job_id", type=_job_id, metavar="ID")
    p.add_argument("--history", action="store_true", help="also show every recorded run")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_show)

    p = sub_parser(actions, "enqueue", "add a job",
                   "Add a job for HANDLER. Any handler name is accepted here: the workers that "
                   "know it will run the job.")
    p.add_argument("handler", metavar="HANDLER")
    p.add_argument("--data", metavar="JSON", help="the job's data as JSON; @FILE reads a file, - reads stdin")
    p.add_argument("--queue", default="default", metavar="Q", help="queue (default: default)")
    p.add_argument("--priority", type=int, default=0, metavar="N", help="higher runs first (default: 0)")
    p.add_argument("--delay", metavar="DURATION", help="run after this long: 30, 10s, 5m, 2h, 1d")
    p.add_argument("--max-attempts", type=int, metavar="N", help="attempts before the job fails (default: 3)")
    p.add_argument("--timeout", metavar="DURATION", help="stop an attempt after this long")
    p.add_argument("--schedule", metavar="EXPR", help="recurring: an interval (30s, 5m) or a cron expression")
    p.add_argument("--timezone", metavar="TZ", help="time zone of a cron schedule, e.g. Europe/Paris")
    p.add_argument("--dedup-key", metavar="K", help="do not add a second live job with this key")
    p.add_argument("--name", metavar="NAME", help="a label shown in listings")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=cmd_jobs_enqueue)

    for name, help_text in [
        ("retry", "re-queue a failed or cancelled job with a fresh attempt count"),
        ("cancel", "cancel a pending or running job (pauses a recurring one)"),
        ("trigger", "run a job now (re-queues a finished one)"),
        ("delete", "delete a job and its history"),
    ]:
        p = sub_parser(actions, name, help_text)
        p.add_argument("job_id", type=_job_id, metavar="ID")
        if name != "delete":
            p.add_argument("--json", action="store_true", help="print the job as JSON")
        p.set_defaults(func=cmd_jobs_change, operation=name)

    p = sub_parser(actions, "wait", "wait until a job finishes and print its result",
                   "Wait until the job finishes (woken by its completion's notification) and print its result as "
                   "JSON. Exits 1 if the job failed or was cancelled, or if --timeout passes first.")
    p.add_argument("job_id", type=_job_id, metavar="ID")
    p.add_argument("--timeout", metavar="DURATION", help="give up after this long: 30, 10s, 5m (default: never)")
    p.set_defaults(func=cmd_jobs_wait)

    for name, help_text, description in [
        ("retry-failed", "re-queue every failed job (of a queue, a handler)",
         "Re-queue every failed job, due now, with a fresh attempt count; only those of --queue and/or "
         "--handler when given. One statement; prints how many."),
        ("cancel-pending", "cancel every pending job (of a queue, a handler)",
         "Cancel every pending job (a recurring one is paused); only those of --queue and/or --handler when "
         "given. Running jobs are left alone. One statement; prints how many."),
        ("delete-finished", "delete jobs that finished long ago, with their history",
         "Delete the completed, failed and cancelled one-off jobs that finished more than --older-than ago, "
         "with their history; only those of --queue and/or --handler when given. One statement; prints how many."),
    ]:
        p = sub_parser(actions, name, help_text, description)
        p.add_argument("--queue", metavar="Q", help="only jobs of this queue")
        p.add_argument("--handler", metavar="H", help="only jobs of this handler")
        if name == "delete-finished":
            p.add_argument("--older-than", required=True, metavar="DURATION", help="e.g. 30d, 12h, 3600")
        p.add_argument("--json", action="store_true", help="print JSON")
        p.set_defaults(func=cmd_jobs_bulk, operation=name)

    queues = sub_parser(commands, "queues", "list, pause and resume queues")
    queue_actions = queues.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub_parser(queue_actions, "list", "job counts per queue and status, and which queues are paused")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_queues_list)
    for name, help_text in [("pause", "stop every worker on every host from claiming the queue's jobs "
                                      "(stored; running jobs finish)"),
                            ("resume", "let workers claim the queue's jobs again")]:
        p = sub_parser(queue_actions, name, help_text)
        p.add_argument("queue", metavar="QUEUE")
        p.set_defaults(func=cmd_queues_pause, paused=name == "pause")

    p = sub_parser(commands, "workers", "list the workers registered on every host",
                   "List every registered worker: its host and pid, its queues and handlers, its last heartbeat "
                   "and whether it is alive (a heartbeat younger than its lease). Then the pending jobs that no "
                   "live worker can run, because none serves their queue with their handler.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_workers)

    scheds = sub_parser(commands, "schedules", "inspect recurring jobs")
    sched_actions = scheds.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub_parser(sched_actions, "list", "list recurring jobs with their next five run times",
                   "List every job with a schedule and its next five run times. Given MODULE:APP, also "
                   "report schedules stored in the database that the App no longer declares, and "
                   "declarations that no worker has created yet.")
    p.add_argument("app", metavar="MODULE:APP", nargs="?", help="compare with this App's @app.periodic declarations")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_schedules_list)

    p = sub_parser(commands, "demo", "watch a demo App run sample jobs",
                   "Enqueue sample jobs (one-off, deferred, retried, failing, recurring, a batch) in the schema "
                   "aiojobs_pg_demo (or --schema), run a worker and print their statuses every second. "
                   "Without a DSN it starts an embedded server under ./.aiojobs_pg/.")
    p.add_argument("--duration", type=_positive_float, default=20.0, metavar="SECONDS",
                   help="how long to run (default: 20; Ctrl-C stops earlier)")
    p.set_defaults(func=cmd_demo, default_level="info")

    p = sub_parser(commands, "serve", "serve the HTTP API and dashboard (needs the http extra)",
                   "Import the App MODULE:ATTRIBUTE and serve its management API and dashboard with uvicorn, "
                   "on 127.0.0.1 unless --host says otherwise. Callers need the bearer token in "
                   "$AIOJOBS_PG_API_TOKEN. SIGTERM/SIGINT stops the server and drains the --with-worker worker.")
    add_serve_arguments(p)
    p.set_defaults(func=serve_command, default_level="info")
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("aiojobs_pg")
    except Exception:  # not installed: no version to show
        return "unknown"


# --- shared plumbing ---

def _opt(args: argparse.Namespace, name: str) -> Any:
    return getattr(args, name, None)


def schema_from(args: argparse.Namespace) -> str:
    """The schema: ``--schema``, then ``$AIOJOBS_PG_SCHEMA``, then the default."""
    return schema_or_default(_opt(args, "schema"))


def _with_app(args: argparse.Namespace, action: Callable[[App], Awaitable[T]], *, migrating: bool = False) -> T:
    """Open a plain App (no handlers, no auto-migration) and run ``action`` on it.

    Unless ``migrating``, a schema with pending migrations is an error: the
    statements would not match its tables.
    """
    async def run() -> T:
        app = App(_opt(args, "dsn"), schema=schema_from(args), auto_migrate=False, pool_min_size=1, pool_max_size=2)
        try:
            async with app:
                if not migrating:
                    async with app.pool.acquire() as conn:
                        pending = await pending_migrations(conn, app.schema)
                    if pending:
                        versions = ", ".join(str(m.version) for m in pending)
                        state = ("has no aiojobs_pg tables" if len(pending) == len(migrations(app.schema))
                                 else f"is not up to date (pending migrations: {versions})")
                        raise CommandError(f"schema {app.schema!r} {state}; run '{_prog()} migrate' first")
                return await action(app)
        except UndefinedTable as exc:
            raise CommandError(f"{exc} (is the schema {app.schema!r} migrated? "
                               f"run '{_prog()} migrate')") from None
    return asyncio.run(run())


# --- commands ---

def cmd_worker(args: argparse.Namespace) -> int:
    """``worker MODULE:APP``: run the App's handlers until stopped (or idle with --burst)."""
    queues = parse_queues(args.queues)
    app = load_app(args.app)
    app.retarget(dsn=_opt(args, "dsn"), schema=_opt(args, "schema"))

    async def run() -> None:
        async with app:
            await app.run_worker(concurrency=args.concurrency, queues=queues, burst=args.burst)

    asyncio.run(run())
    return EXIT_OK


def cmd_migrate(args: argparse.Namespace) -> int:
    """``migrate``: apply pending migrations, or print the SQL."""
    schema = schema_from(args)
    if args.print_sql:
        sys.stdout.write(render_sql(schema))
        return EXIT_OK

    async def migrate(app: App) -> list[int]:
        return await app.migrate()

    applied = _with_app(args, migrate, migrating=True)
    if applied:
        print(f"schema {schema}: applied migration(s) {', '.join(str(v) for v in applied)}")
    else:
        print(f"schema {schema}: up to date")
    return EXIT_OK


def cmd_jobs_list(args: argparse.Namespace) -> int:
    """``jobs list``."""
    async def fetch(app: App) -> tuple[list[Job], int | None, frozenset[tuple[str, str]]]:
        page = await app.admin().list_jobs(status=args.status, queue=args.queue, handler=args.handler,
                                           limit=args.limit, cursor=args.cursor)
        return page.jobs, page.next_cursor, await app.admin().served()

    jobs, next_cursor, served = _with_app(args, fetch)
    if args.json:
        print_json([{**to_dict(j), "no_worker": j.waits_for_a_worker(served)} for j in jobs])
    elif not jobs:
        print("no jobs")
    else:
        print(jobs_table(jobs, served))
        if any(j.waits_for_a_worker(served) for j in jobs):
            print("(no worker: no live worker serves this queue with this handler; the job waits, "
                  f"no attempt spent; see '{_prog()} workers')")
        if next_cursor is not None:
            print(f"(more jobs: add --cursor {next_cursor})")
    return EXIT_OK


def cmd_jobs_wait(args: argparse.Namespace) -> int:
    """``jobs wait ID``: the result once the job completed (JobFailed / JobCancelled exit 1)."""
    async def wait(app: App) -> Any:
        try:
            return await app.wait(args.job_id, timeout=args.timeout)
        except TimeoutError:
            raise CommandError(f"job {args.job_id} did not finish within {args.timeout}") from None

    print_json(_with_app(args, wait))
    return EXIT_OK


def cmd_jobs_bulk(args: argparse.Namespace) -> int:
    """``jobs retry-failed|cancel-pending|delete-finished``."""
    async def act(app: App) -> int:
        admin = app.admin()
        if args.operation == "retry-failed":
            return await admin.retry_failed(queue=args.queue, handler=args.handler)
        if args.operation == "cancel-pending":
            return await admin.cancel_pending(queue=args.queue, handler=args.handler)
        return await admin.delete_finished(args.older_than, queue=args.queue, handler=args.handler)

    count = _with_app(args, act)
    if args.json:
        print_json({"count": count})
    else:
        done = {"retry-failed": "re-queued", "cancel-pending": "cancelled", "delete-finished": "deleted"}
        print(f"{done[args.operation]} {count} job(s)")
    return EXIT_OK


def cmd_queues_list(args: argparse.Namespace) -> int:
    """``queues list``."""
    async def fetch(app: App) -> tuple[list[dict[str, Any]], list[str]]:
        return await app.admin().queue_stats(), await app.admin().paused_queues()

    rows, paused = _with_app(args, fetch)
    counts: dict[str, dict[str, int]] = {q: {} for q in paused}
    for row in rows:
        counts.setdefault(row["queue"], {})[row["status"]] = row["count"]
    if args.json:
        print_json([{"queue": q, "paused": q in paused, "counts": c} for q, c in sorted(counts.items())])
        return EXIT_OK
    if not counts:
        print("no queues")
        return EXIT_OK
    statuses = [s.value for s in JobStatus]
    print(render_table(["QUEUE", "STATE", *(s.upper() for s in statuses)],
                       [[q, "paused" if q in paused else "active", *(str(c.get(s, 0)) for s in statuses)]
                        for q, c in sorted(counts.items())], right=tuple(range(2, 2 + len(statuses)))))
    return EXIT_OK


def cmd_queues_pause(args: argparse.Namespace) -> int:
    """``queues pause|resume QUEUE``."""
    async def act(app: App) -> None:
        if args.paused:
            await app.admin().pause_queue(args.queue)
        else:
            await app.admin().resume_queue(args.queue)

    _with_app(args, act)
    print(f"queue {args.queue!r} {'paused' if args.paused else 'resumed'}")
    return EXIT_OK


def cmd_workers(args: argparse.Namespace) -> int:
    """``workers``."""
    async def fetch(app: App) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
        return await app.admin().workers(), await app.admin().unserved()

    workers, unserved = _with_app(args, fetch)
    if args.json:
        print_json({"workers": workers,
                    "unserved": [{"queue": q, "handler": h, "count": n} for (q, h), n in unserved.items()]})
        return EXIT_OK
    print(workers_table(workers) if workers else "no workers registered")
    if unserved:
        print("\npending jobs no live worker can run:")
        print(render_table(["QUEUE", "HANDLER", "JOBS"], [[q, h, str(n)] for (q, h), n in unserved.items()],
                           right=(2,)))
    return EXIT_OK


def cmd_jobs_show(args: argparse.Namespace) -> int:
    """``jobs show ID``."""
    async def fetch(app: App) -> tuple[Job, list[Run] | None]:
        job = await app.get_job(args.job_id)
        return job, (await app.job_history(args.job_id) if args.history else None)

    job, runs = _with_app(args, fetch)
    if args.json:
        out = to_dict(job)
        if runs is not None:
            out["history"] = [to_dict(r) for r in runs]
        print_json(out)
        return EXIT_OK
    fields = [
        ("id", str(job.id)), ("name", job.name or "-"), ("handler", job.handler), ("queue", job.queue),
        ("status", job.status.value), ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("priority", str(job.priority)),
        ("schedule", f"{job.schedule} ({job.timezone})" if job.schedule and job.timezone else job.schedule or "-"),
        ("next_run_at", format_time(job.next_run_at)), ("last_run_at", format_time(job.last_run_at)),
        ("created_at", format_time(job.created_at)), ("updated_at", format_time(job.updated_at)),
        ("timeout", "-" if job.timeout is None else f"{job.timeout:g} s"), ("dedup_key", job.dedup_key or "-"),
        ("worker_id", job.worker_id or "-"), ("lease_expires_at", format_time(job.lease_expires_at)),
        ("progress", "-" if job.progress is None
         else f"{job.progress:.0%}" + (f": {job.progress_message}" if job.progress_message else "")),
        ("data", json.dumps(job.data, ensure_ascii=False)),
        ("result", "-" if job.result is None else json.dumps(job.result, ensure_ascii=False)),
    ]
    width = max(len(k) for k, _ in fields) + 1
    for key, value in fields:
        print(f"{key + ':':<{width}} {value}")
    if job.last_error:
        print("last_error:")
        for line in job.last_error.rstrip().splitlines():
            print(f"  {line}")
    if runs is not None:
        print()
        print(runs_table(runs) if runs else "no recorded runs")
    return EXIT_OK


def _read_data(text: str | None) -> Any:
    if text is None:
        return None
    source = "--data"
    if text == "-":
        text, source = sys.stdin.read(), "--data from stdin"
    elif text.startswith("@"):
        path = text[1:]
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as exc:
            raise CommandError(f"--data: cannot read {path!r}: {exc.strerror}") from None
        source = f"--data file {path!r}"
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{source} is not valid JSON: {exc}") from None


def cmd_jobs_enqueue(args: argparse.Namespace) -> int:
    """``jobs enqueue HANDLER``."""
    data = _read_data(args.data)

    async def enqueue(app: App) -> Job:
        return await app.enqueue(
            args.handler, data, name=args.name, queue=args.queue, priority=args.priority,
            max_attempts=args.max_attempts, timeout=args.timeout, delay=args.delay, dedup_key=args.dedup_key,
            schedule=args.schedule, timezone=args.timezone)

    job = _with_app(args, enqueue)
    if args.json:
        print_json(to_dict(job))
    else:
        print(f"enqueued job {job.id} ({job.handler} on queue {job.queue}, {job.status.value}, "
              f"next run {format_time(job.next_run_at)})")
    return EXIT_OK


def cmd_jobs_change(args: argparse.Namespace) -> int:
    """``jobs retry|cancel|trigger|delete ID``."""
    op: str = args.operation

    async def change(app: App) -> Job | None:
        if op == "delete":
            await app.delete_job(args.job_id)
            return None
        method: Callable[[int], Awaitable[Job]] = getattr(app, op)
        return await method(args.job_id)

    job = _with_app(args, change)
    if job is None:
        print(f"deleted job {args.job_id}")
    elif args.json:
        print_json(to_dict(job))
    else:
        due = f", next run {format_time(job.next_run_at)}" if job.status is JobStatus.PENDING else ""
        print(f"job {job.id}: {job.status.value}{due}")
    return EXIT_OK


def cmd_schedules_list(args: argparse.Namespace) -> int:
    """``schedules list [MODULE:APP]``: recurring jobs, their next runs, and stale declarations."""
    declared = set(load_app(args.app).periodic_jobs) if args.app else None

    async def fetch(app: App) -> list[Job]:
        return await app.admin().recurring()

    jobs = _with_app(args, fetch)
    now = datetime.now(UTC)
    rows = []
    for job in jobs:
        assert job.schedule is not None
        runs = upcoming_runs(job, 5, now)
        note = ""
        if declared is not None and job.periodic_key is not None and job.periodic_key not in declared:
            note = "no longer declared"
        rows.append((job, runs, note))
    missing = sorted(declared - {j.periodic_key for j in jobs}) if declared is not None else []
    if args.json:
        print_json({"schedules": [{**to_dict(job), "nextRuns": runs, "note": note or None}
                                  for job, runs, note in rows],
                    "declaredButNotCreated": missing})
        return EXIT_OK
    print(render_table(
        ["ID", "NAME", "SCHEDULE", "TZ", "STATUS", "NEXT RUNS (UTC)", "NOTE"],
        [[str(job.id), job.name or job.handler, job.schedule or "", job.timezone or "UTC", job.status.value,
          ", ".join(format_time(t) for t in runs), note] for job, runs, note in rows], right=[0]))
    for key in missing:
        print(f"declared but not created yet (no worker has started with it): {key}")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: the sample App at work."""
    from .demo import DEMO_SCHEMA, run_demo

    asyncio.run(run_demo(_opt(args, "dsn"), _opt(args, "schema") or DEMO_SCHEMA, args.duration, log_level=None))
    return EXIT_OK


# --- entry point ---

def _exit_code(code: object) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_ERROR


def _error(message: object) -> None:
    print(f"error: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return _exit_code(exc.code)
    try:
        level = str(_opt(args, "log_level") or os.environ.get(ENV_LEVEL) or getattr(args, "default_level", "warning"))
        parse_level(level)
    except ValueError as exc:
        _error(f"{ENV_LEVEL}: {exc}")
        return EXIT_USAGE
    configure_logging(level, json=bool(_opt(args, "log_json")) or env_json())
    try:
        code: int = args.func(args)
        return code
    except UsageError as exc:
        _error(exc)
        return EXIT_USAGE
    except ConfigurationError as exc:
        _error(exc)
        return EXIT_USAGE
    except (CommandError, AiojobsPgError) as exc:
        _error(exc)
        return EXIT_ERROR
    except ServerError as exc:
        _error(f"database: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    except DB_ERRORS as exc:
        _error(f"cannot reach the database: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
