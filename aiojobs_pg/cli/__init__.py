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
import select
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from ..admin import UNSET, QueueSettings
from ..app import App
from ..errors import AiojobsPgError, ConfigurationError
from ..events import EVENTS
from ..http.serialize import (
    job_json,
    live_worker_json,
    queue_settings_json,
    queues_json,
    run_json,
    webhook_json,
    workflow_item,
)
from ..logs import ENV_LEVEL, LEVELS, configure_logging, env_json, parse_level
from ..models import Backoff, Job, JobStatus, Run
from ..queries import DB_ERRORS, DEFAULT_SCHEMA, ServerError, UndefinedTable, schema_or_default
from ..schedules import upcoming_runs
from ..schema import migrated_schemas, migrations, pending_migrations, render_sql
from ..webhooks import Webhook
from .apps import CommandError, UsageError, describe_database, load_app, parse_queues
from .argtypes import bounded_int
from .render import (
    current_error,
    format_time,
    jobs_table,
    next_run,
    print_json,
    render_table,
    runs_table,
    webhooks_table,
    workers_table,
)
from .serve import add_serve_arguments, serve_command

if TYPE_CHECKING:
    from ..metrics import Metrics

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
#: the reader of our output went away (``| head``): what a shell reports for a tool that SIGPIPE ended
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE


T = TypeVar("T")



# --- argument types ---

_positive_int = bounded_int(1)
_job_id = bounded_int(1, 2**63 - 1)
_port = bounded_int(0, 65535)


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


class _Parser(argparse.ArgumentParser):
    """argparse's parser, except that a command group given no command (bare ``aiojobs-pg``, or
    ``aiojobs-pg jobs``) prints its help, which lists the commands, rather than only "the following
    arguments are required: COMMAND"."""

    def error(self, message: str) -> NoReturn:
        missing = message.removeprefix("the following arguments are required: ")
        if missing != message and missing.split(", ")[0] in ("COMMAND", "ACTION"):
            self.print_help(sys.stderr)
            self.exit(EXIT_USAGE, f"\n{self.prog}: error: give one of the {missing.split(', ')[0].lower()}s above\n")
        super().error(message)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; global options are accepted before or after the command."""
    common = _Parser(add_help=False)
    g = common.add_argument_group("global options")
    g.add_argument("--dsn", default=argparse.SUPPRESS,
                   help="PostgreSQL DSN (default: $AIOJOBS_PG_DSN, then $DATABASE_URL, then an embedded server "
                        "under ./.aiojobs_pg/)")
    g.add_argument("--schema", default=argparse.SUPPRESS,
                   help=f"schema holding the tables (default: $AIOJOBS_PG_SCHEMA, then {DEFAULT_SCHEMA!r})")
    g.add_argument("--log-level", type=_level, default=argparse.SUPPRESS, metavar="LEVEL",
                   help=f"{', '.join(LEVELS)} (default: ${ENV_LEVEL}, then info for worker and serve, "
                        "warning otherwise)")
    g.add_argument("--log-json", action="store_true", default=argparse.SUPPRESS,
                   help="log JSON lines (also with AIOJOBS_PG_LOG_JSON=1)")

    def sub_parser(subs: Any, name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = subs.add_parser(name, parents=[common], help=help_text,
                                                     description=description or help_text)
        return p

    parser = _Parser(
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
    p.add_argument("--queues", metavar="A,B",
                   help="comma-separated queues to take jobs from (default: default, and the webhook deliveries "
                        "whenever there are any; a worker given --queues delivers only if they name "
                        "aiojobs_pg.webhooks)")
    p.add_argument("--burst", action="store_true", help="exit once no job is due")
    p.add_argument("--metrics-port", type=_port, metavar="PORT",
                   help="serve Prometheus metrics at http://HOST:PORT/metrics (the 'metrics' extra; no "
                        "authentication; see docs/metrics.md)")
    p.add_argument("--metrics-host", metavar="HOST",
                   help="with --metrics-port: the address to listen on (default: 127.0.0.1, this machine only; "
                        "0.0.0.0 lets a Prometheus on another host scrape it)")
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
    p.add_argument("--concurrency-key", metavar="K",
                   help="the key its handler's concurrency and rate limits count it under (docs/limits.md)")
    p.add_argument("--dedup-window", metavar="DURATION",
                   help="with --dedup-key: nor one while a job with the key created this recently exists, whatever "
                        "its status (1h)")
    p.add_argument("--backoff", metavar="SPEC",
                   help="how long failed attempts wait: seconds (fixed, e.g. 5), or JSON of base, factor, cap, "
                        "jitter ('{\"base\": 2, \"factor\": 3}')")
    p.add_argument("--name", metavar="NAME", help="a label shown in listings")
    p.add_argument("--after", type=_job_id, action="append", metavar="ID",
                   help="wait until job ID completed (repeat for several); its result is in ctx.parent_results")
    p.add_argument("--on-parent-failure", choices=["cancel", "run"],
                   help="when a parent fails or is cancelled: cancel this job, or run it anyway "
                        "(default: end as the parent ended)")
    p.add_argument("--json", action="store_true", help="print the job as JSON")
    p.set_defaults(func=cmd_jobs_enqueue)

    job_text = ("a job as JSON, as POST /jobs takes it: {\"handler\": \"resize\", \"data\": {...}, "
                "\"maxAttempts\": 5, ...}")
    p = sub_parser(actions, "chain", "enqueue jobs that run one after another",
                   "Enqueue the steps in one transaction, each waiting for the one before it (a step that "
                   "fails or is cancelled ends the ones after it). Each --step is " + job_text + ".")
    p.add_argument("--step", action="append", required=True, metavar="JSON", help="a step, in order (repeat)")
    p.add_argument("--json", action="store_true", help="print the jobs as JSON")
    p.set_defaults(func=cmd_jobs_workflow, workflow="chain")

    p = sub_parser(actions, "group", "enqueue jobs side by side and a callback after all of them",
                   "Enqueue the members and the callback (--then) in one transaction; the callback waits until "
                   "every member completed and reads their results in ctx.parent_results. Each is " + job_text + ".")
    p.add_argument("--member", action="append", required=True, metavar="JSON", help="a member (repeat)")
    p.add_argument("--then", required=True, metavar="JSON", help="the callback")
    p.add_argument("--json", action="store_true", help="print the jobs as JSON")
    p.set_defaults(func=cmd_jobs_workflow, workflow="group")

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

    queues = sub_parser(commands, "queues", "list, pause, resume and limit queues")
    queue_actions = queues.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub_parser(queue_actions, "list", "job counts per queue and status, which queues are paused, their limits")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_queues_list)
    for name, help_text in [("pause", "stop every worker on every host from claiming the queue's jobs "
                                      "(stored; running jobs finish)"),
                            ("resume", "let workers claim the queue's jobs again")]:
        p = sub_parser(queue_actions, name, help_text)
        p.add_argument("queue", metavar="QUEUE")
        p.set_defaults(func=cmd_queues_pause, paused=name == "pause")
    p = sub_parser(queue_actions, "set", "set or remove a queue's limits, for every worker on every host (stored)",
                   "Set a queue's limits: at most --concurrency-limit of its jobs run at once, and at most N of "
                   "them start in any window of the period of --rate-limit N/PERIOD, across every worker and "
                   "host. 'none' removes a limit; a limit not given is kept (docs/limits.md).")
    p.add_argument("queue", metavar="QUEUE")
    p.add_argument("--concurrency-limit", type=_limit(int), default=UNSET, metavar="N|none",
                   help="jobs at once (none: no limit)")
    p.add_argument("--rate-limit", type=_limit(str), default=UNSET, metavar="N/PERIOD|none",
                   help="starts per period: 100/1m, 50/1s, 10/h (none: no limit)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_queues_set)

    hooks = sub_parser(commands, "webhooks", "add, list and remove webhooks",
                       "Webhooks: job events POSTed, signed with HMAC-SHA256, to URLs, for every worker of the schema "
                       "(docs/webhooks.md).")
    hook_actions = hooks.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub_parser(hook_actions, "add", "register a URL for job events",
                   "Register URL for the --event(s) given, of every job or only those of the --handler(s) and "
                   "--queue(s) given. Each delivery is a job on the queue aiojobs_pg.webhooks, retried with "
                   "backoff. Prints the webhook, with its secret (made when --secret is not given, and not shown "
                   "again).")
    p.add_argument("url", metavar="URL")
    p.add_argument("--event", dest="events", action="append", required=True, choices=list(EVENTS),
                   help="an event to send (repeat for several)")
    p.add_argument("--secret", metavar="SECRET",
                   help="the shared secret, at least 16 characters; '-' reads it from stdin (default: one is made)")
    p.add_argument("--handler", dest="handlers", action="append", metavar="H",
                   help="only jobs of this handler (repeat for several)")
    p.add_argument("--queue", dest="queues", action="append", metavar="Q",
                   help="only jobs of this queue (repeat for several)")
    p.add_argument("--max-attempts", type=_positive_int, default=8, metavar="N",
                   help="attempts of each delivery before it fails (default: 8)")
    p.add_argument("--description", metavar="TEXT", help="a note shown in listings")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_webhooks_add)
    p = sub_parser(hook_actions, "list", "list the webhooks (without their secrets)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_webhooks_list)
    p = sub_parser(hook_actions, "remove", "remove a webhook (its deliveries not sent yet are cancelled)")
    p.add_argument("webhook_id", type=_job_id, metavar="ID")
    p.set_defaults(func=cmd_webhooks_remove)

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
                   "aiojobs_pg_demo (or --schema), run a worker and show their statuses: one table redrawn in "
                   "place on a terminal, a line per change otherwise. It stops once every one-off job has "
                   "finished. One demo at a time per schema: a second one refuses to start. Without a DSN it "
                   "starts an embedded server under ./.aiojobs_pg/. The worker's log lines are hidden unless "
                   "--log-level says otherwise.")
    p.add_argument("--duration", type=_positive_float, default=60.0, metavar="SECONDS",
                   help="stop after this long even if jobs are left (default: 60; Ctrl-C stops earlier)")
    p.set_defaults(func=cmd_demo, default_level="warning")

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
                            raise CommandError(_not_migrated(args, app.schema, pending, migrations(app.schema),
                                                             await migrated_schemas(conn)))
                return await action(app)
        except UndefinedTable as exc:
            raise CommandError(f"{exc} (is the schema {app.schema!r} migrated? "
                               f"run '{_migrate_command(args)}')") from None
    return asyncio.run(run())


def _migrate_command(args: argparse.Namespace) -> str:
    """The ``migrate`` command that reaches the same database and schema as this one."""
    schema = _opt(args, "schema")
    return " ".join([_prog(), *(["--dsn", "DSN"] if _opt(args, "dsn") else []),
                     *(["--schema", schema] if schema else []), "migrate"])


def _not_migrated(args: argparse.Namespace, schema: str, pending: list[Any], shipped: list[Any],
                  others: list[str]) -> str:
    """What to say when the schema a command reads lacks (some of) its tables: where we looked,
    where jobs are (the demo's schema, say), and the command that creates them here."""
    where = describe_database(_opt(args, "dsn"))
    if len(pending) < len(shipped):
        versions = ", ".join(str(m.version) for m in pending)
        return (f"schema {schema!r} in {where} is not up to date (pending migrations: {versions}): "
                f"upgrade it with '{_migrate_command(args)}'")
    lines = [f"schema {schema!r} in {where} has no aiojobs_pg tables yet, so no jobs either."]
    others = [o for o in others if o != schema]
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        lines.append(f"schemas there that have them: {listed} (add --schema {others[0]} to read it)")
    lines.append(f"to create the tables in {schema!r}: '{_migrate_command(args)}' (a worker creates them "
                 "when it starts, too)")
    return "\n  ".join(lines)


# --- commands ---

def cmd_worker(args: argparse.Namespace) -> int:
    """``worker MODULE:APP``: run the App's handlers until stopped (or idle with --burst)."""
    queues = None if args.queues is None else parse_queues(args.queues)
    if args.metrics_host is not None and args.metrics_port is None:
        raise UsageError("--metrics-host needs --metrics-port")
    app = load_app(args.app)
    app.retarget(dsn=_opt(args, "dsn"), schema=_opt(args, "schema"))
    metrics = None if args.metrics_port is None else _instrument(app)

    async def run() -> None:
        async with app:
            server = None if metrics is None else metrics.start_http_server(args.metrics_port,
                                                                            args.metrics_host or "127.0.0.1")
            try:
                await app.run_worker(concurrency=args.concurrency, queues=queues, burst=args.burst)
            finally:
                if server is not None:
                    server.stop()

    asyncio.run(run())
    return EXIT_OK


def _instrument(app: App) -> Metrics:
    # The metrics extra is optional: say which package is missing rather than fail on the import.
    try:
        from ..metrics import instrument
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"--metrics-port needs the 'metrics' extra: pip install 'aiojobs_pg[metrics]' "
                                 f"({exc.name} is missing)") from None
    return instrument(app)


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
        now = datetime.now(UTC)
        print_json([job_json(j, now, served) for j in jobs])
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
    async def fetch(app: App) -> tuple[list[dict[str, Any]], list[str], dict[tuple[str, str], int],
                                       dict[str, QueueSettings]]:
        admin = app.admin()
        return (await admin.queue_stats(), await admin.paused_queues(), await admin.unserved(),
                await admin.queue_settings())

    rows, paused, unserved, settings = _with_app(args, fetch)
    queues = queues_json(rows, datetime.now(UTC), paused, unserved, settings=settings)
    if args.json:
        print_json(queues)
        return EXIT_OK
    if not queues:
        print("no queues")
        return EXIT_OK
    statuses = [s.value for s in JobStatus]
    print(render_table(["QUEUE", "STATE", "CONCURRENCY", "RATE", *(s.upper() for s in statuses)],
                       [[q["queue"], "paused" if q["paused"] else "active", _shown(q["concurrencyLimit"]),
                         _shown(q["rateLimit"]), *(str(q["counts"].get(s, 0)) for s in statuses)]
                        for q in queues], right=tuple(range(4, 4 + len(statuses)))))
    return EXIT_OK


def _limit(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An argument type: a value of ``kind``, or ``none`` for no limit (None); left out, the option is UNSET."""
    def parse(text: str) -> Any:
        if text.strip().lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number or none, got {text!r}") from None
    return parse


def cmd_queues_set(args: argparse.Namespace) -> int:
    """``queues set QUEUE [--concurrency-limit N|none] [--rate-limit N/PERIOD|none]``."""
    if args.concurrency_limit is UNSET and args.rate_limit is UNSET:
        raise UsageError("queues set: give --concurrency-limit and/or --rate-limit")

    async def act(app: App) -> QueueSettings:
        return await app.set_queue(args.queue, concurrency_limit=args.concurrency_limit, rate_limit=args.rate_limit)

    settings = _with_app(args, act)
    if args.json:
        print_json(queue_settings_json(settings))
    else:
        print(f"queue {settings.queue!r}: concurrency limit {_shown(settings.concurrency_limit)}, "
              f"rate limit {_shown(settings.rate_limit)}")
    return EXIT_OK


def _shown(limit: object) -> str:
    return "none" if limit is None else str(limit)


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


def cmd_webhooks_add(args: argparse.Namespace) -> int:
    """``webhooks add URL --event E``."""
    secret = args.secret
    if secret == "-":
        secret = sys.stdin.readline().strip()

    async def add(app: App) -> Webhook:
        return await app.add_webhook(args.url, args.events, secret=secret, handlers=args.handlers,
                                     queues=args.queues, max_attempts=args.max_attempts,
                                     description=args.description)

    hook = _with_app(args, add)
    if args.json:
        print_json(webhook_json(hook))
    else:
        print(f"added webhook {hook.id}: {hook.url} ({', '.join(hook.events)})")
        if args.secret is None:
            print(f"secret (shown once): {hook.secret}")
    return EXIT_OK


def cmd_webhooks_list(args: argparse.Namespace) -> int:
    """``webhooks list``."""
    async def fetch(app: App) -> list[Webhook]:
        return await app.webhooks()

    hooks = _with_app(args, fetch)
    if args.json:
        print_json([webhook_json(h) for h in hooks])
    elif not hooks:
        print("no webhooks")
    else:
        print(webhooks_table(hooks))
    return EXIT_OK


def cmd_webhooks_remove(args: argparse.Namespace) -> int:
    """``webhooks remove ID``."""
    async def remove(app: App) -> None:
        await app.remove_webhook(args.webhook_id)

    _with_app(args, remove)
    print(f"removed webhook {args.webhook_id}")
    return EXIT_OK


def cmd_workers(args: argparse.Namespace) -> int:
    """``workers``."""
    async def fetch(app: App) -> tuple[list[dict[str, Any]], dict[tuple[str, str], int]]:
        return await app.admin().workers(), await app.admin().unserved()

    workers, unserved = _with_app(args, fetch)
    if args.json:
        print_json({"workers": [live_worker_json(w) for w in workers],
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
    async def fetch(app: App) -> tuple[Job, list[Run] | None, frozenset[tuple[str, str]]]:
        job = await app.get_job(args.job_id)
        return job, (await app.job_history(args.job_id) if args.history else None), await app.admin().served()

    job, runs, served = _with_app(args, fetch)
    if args.json:
        out = job_json(job, served=served)
        if runs is not None:
            out["history"] = [run_json(r) for r in runs]
        print_json(out)
        return EXIT_OK
    fields = [
        ("id", str(job.id)), ("name", job.name or "-"), ("handler", job.handler), ("queue", job.queue),
        ("status", job.status.value), ("attempts", f"{job.attempts}/{job.max_attempts}"),
        ("priority", str(job.priority)),
        ("schedule", f"{job.schedule} ({job.timezone})" if job.schedule and job.timezone else job.schedule or "-"),
        ("next_run_at", format_time(next_run(job))), ("last_run_at", format_time(job.last_run_at)),
        ("created_at", format_time(job.created_at)), ("updated_at", format_time(job.updated_at)),
        ("timeout", "-" if job.timeout is None else f"{job.timeout:g} s"), ("dedup_key", job.dedup_key or "-"),
        ("concurrency_key", job.concurrency_key or "-"),
        ("after", ", ".join(map(str, job.parents)) if job.parents else "-"),
        ("waiting_for", ", ".join(map(str, job.waiting_for)) if job.waiting_for else "-"),
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
        # A completed job keeps the error of an earlier attempt: say so rather than show it as current.
        print("last_error:" if current_error(job) else "last_error (of an earlier attempt; the job then completed):")
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


def _workflow_job(text: str, option: str) -> dict[str, Any]:
    try:
        return workflow_item(json.loads(text), option)
    except json.JSONDecodeError as exc:
        raise CommandError(f"{option} is not valid JSON: {exc}") from None


def cmd_jobs_workflow(args: argparse.Namespace) -> int:
    """``jobs chain --step JSON ...`` and ``jobs group --member JSON ... --then JSON``."""
    if args.workflow == "chain":
        steps = [_workflow_job(text, f"--step[{i}]") for i, text in enumerate(args.step)]

        async def enqueue(app: App) -> tuple[list[Job], frozenset[tuple[str, str]]]:
            return await app.chain(steps), await app.admin().served()
    else:
        members = [_workflow_job(text, f"--member[{i}]") for i, text in enumerate(args.member)]
        then = _workflow_job(args.then, "--then")

        async def enqueue(app: App) -> tuple[list[Job], frozenset[tuple[str, str]]]:
            jobs, callback = await app.group(members, then=then)
            return [*jobs, callback], await app.admin().served()

    jobs, served = _with_app(args, enqueue)
    if args.json:
        print_json([job_json(j, served=served) for j in jobs])
    elif args.workflow == "chain":
        print(f"enqueued a chain of {len(jobs)}: " + " -> ".join(f"job {j.id} ({j.handler})" for j in jobs))
    else:
        print(f"enqueued a group of {len(jobs) - 1}: " + ", ".join(f"job {j.id} ({j.handler})" for j in jobs[:-1])
              + f"; then job {jobs[-1].id} ({jobs[-1].handler}), {jobs[-1].status.value}")
    return EXIT_OK


def cmd_jobs_enqueue(args: argparse.Namespace) -> int:
    """``jobs enqueue HANDLER``."""
    data = _read_data(args.data)

    async def enqueue(app: App) -> tuple[Job, frozenset[tuple[str, str]]]:
        job = await app.enqueue(
            args.handler, data, name=args.name, queue=args.queue, priority=args.priority,
            max_attempts=args.max_attempts, timeout=args.timeout, delay=args.delay, dedup_key=args.dedup_key,
            schedule=args.schedule, timezone=args.timezone, after=args.after,
            on_parent_failure=args.on_parent_failure, dedup_window=args.dedup_window,
            backoff=None if args.backoff is None else Backoff.parse(args.backoff, "--backoff"),
            concurrency_key=args.concurrency_key)
        return job, await app.admin().served()

    job, served = _with_app(args, enqueue)
    if args.json:
        print_json({**job_json(job, served=served), "existing": job.existing})
    elif job.existing:
        print(f"not added: job {job.id} holds the dedup key {job.dedup_key!r} ({job.status.value})")
    else:
        print(f"enqueued job {job.id} ({job.handler} on queue {job.queue}, {job.status.value}, "
              f"next run {format_time(job.next_run_at)})")
    return EXIT_OK


def cmd_jobs_change(args: argparse.Namespace) -> int:
    """``jobs retry|cancel|trigger|delete ID``."""
    op: str = args.operation

    async def change(app: App) -> tuple[Job | None, frozenset[tuple[str, str]]]:
        if op == "delete":
            await app.delete_job(args.job_id)
            return None, frozenset()
        method: Callable[[int], Awaitable[Job]] = getattr(app, op)
        return await method(args.job_id), await app.admin().served()

    job, served = _with_app(args, change)
    if job is None:
        print(f"deleted job {args.job_id}")
    elif args.json:
        print_json(job_json(job, served=served))
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
        print_json({"schedules": [{**job_json(job, now), "note": note or None} for job, _runs, note in rows],
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

    # Redraw one table in place only on a terminal, and only when no log line lands in the middle of
    # it (logs go to stderr: a terminal too, unless redirected, and only warnings by default).
    level = parse_level(str(_opt(args, "log_level") or os.environ.get(ENV_LEVEL) or "warning"))
    live = (sys.stdout.isatty() and os.environ.get("TERM") != "dumb"
            and (level >= parse_level("warning") or not sys.stderr.isatty()))
    asyncio.run(run_demo(_opt(args, "dsn"), _opt(args, "schema") or DEMO_SCHEMA, args.duration, log_level=None,
                         live=live))
    return EXIT_OK


# --- entry point ---

def _exit_code(code: object) -> int:
    if code is None:
        return EXIT_OK
    return code if isinstance(code, int) else EXIT_ERROR


def _error(message: object) -> None:
    print(f"error: {message}", file=sys.stderr)


def _stdout_closed() -> bool:
    """Whether our standard output is a pipe whose reader has gone (``| head``)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _fd, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll() here (Windows), or no real stdout: assume so
        return True


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    try:
        return _main(argv)
    except BrokenPipeError:
        if not _stdout_closed():
            _error("cannot reach the database: BrokenPipeError")
            return EXIT_ERROR
        # The reader of our output went away (``jobs list | head -1``): like any Unix tool, end quietly.
        # Standard output now points at /dev/null, so that the interpreter's last flush does not fail too.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_BROKEN_PIPE


def _main(argv: list[str] | None) -> int:
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
    except BrokenPipeError:  # our output's reader went away, not the database: main() decides
        raise
    except DB_ERRORS as exc:
        _error(f"cannot reach the database: {type(exc).__name__}: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
