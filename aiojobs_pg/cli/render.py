"""Tables and JSON for the command line (and the demo's live view)."""

from __future__ import annotations

import enum
import json
from collections.abc import Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ..models import Job, JobStatus, Run
from ..webhooks import Webhook


def truncate(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with an ellipsis when cut."""
    return text if len(text) <= width else text[: max(width - 1, 0)] + "…"


def error_summary(error: str | None, width: int = 60) -> str:
    """One line of an error: its first line, or the exception line of a traceback."""
    if not error:
        return "-"
    lines = [line.strip() for line in error.strip().splitlines() if line.strip()]
    if not lines:
        return "-"
    line = lines[-1] if lines[0].startswith("Traceback") else lines[0]
    return truncate(line, width)


def format_time(value: datetime | None) -> str:
    """A timestamp as ``YYYY-MM-DD HH:MM:SSZ`` (UTC), or ``-``."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """An aligned plain-text table; columns whose index is in ``right`` are right-aligned."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)])


def next_run(job: Job) -> datetime | None:
    """When the job runs next, as far as a listing should say: only a pending job has a next run (a
    finished job's ``next_run_at`` is when it last became due, in the past; a running one's next tick
    is set when it completes)."""
    return job.next_run_at if job.status is JobStatus.PENDING else None


def current_error(job: Job) -> str | None:
    """The error worth showing beside the job: none once it completed (``last_error`` then belongs
    to an earlier attempt that the completion made moot)."""
    return None if job.status is JobStatus.COMPLETED else job.last_error


def jobs_table(jobs: Sequence[Job], served: Collection[tuple[str, str]] | None = None) -> str:
    """The ``jobs list`` table; given what live workers serve (``Admin.served``), a pending job that
    none of them can run says so in its status."""
    headers = ["ID", "NAME", "HANDLER", "QUEUE", "STATUS", "ATTEMPTS", "NEXT RUN (UTC)", "LAST ERROR"]
    rows = [[str(j.id), truncate(j.name or "-", 30), truncate(j.handler, 30), truncate(j.queue, 20),
             j.status.value + (" (no worker)" if served is not None and j.waits_for_a_worker(served) else ""),
             f"{j.attempts}/{j.max_attempts}", format_time(next_run(j)), error_summary(current_error(j))]
            for j in jobs]
    return render_table(headers, rows, right=(0, 5))


def workers_table(workers: Sequence[Mapping[str, Any]]) -> str:
    """The ``workers`` table: one row per registered worker."""
    headers = ["WORKER", "QUEUES", "HANDLERS", "CONCURRENCY", "HEARTBEAT (UTC)", "ALIVE"]
    rows = [[w["id"], truncate(",".join(w["queues"] or []), 30), truncate(",".join(w["handlers"] or []), 40),
             str(w["concurrency"]), format_time(w["heartbeat_at"]), "yes" if w["alive"] else "no"]
            for w in workers]
    return render_table(headers, rows, right=(3,))


def webhooks_table(hooks: Sequence[Webhook]) -> str:
    """The ``webhooks list`` table."""
    headers = ["ID", "URL", "EVENTS", "HANDLERS", "QUEUES", "ATTEMPTS", "CREATED (UTC)", "DESCRIPTION"]
    rows = [[str(h.id), truncate(h.url, 60), ",".join(h.events), truncate(",".join(h.handlers or ["*"]), 30),
             truncate(",".join(h.queues or ["*"]), 30), str(h.max_attempts), format_time(h.created_at),
             truncate(h.description or "-", 40)] for h in hooks]
    return render_table(headers, rows, right=(0, 5))


def runs_table(runs: Sequence[Run]) -> str:
    """A job's history as a table."""
    headers = ["ATTEMPT", "STATUS", "STARTED (UTC)", "DURATION", "WORKER", "ERROR"]
    rows = [[str(r.attempt), r.status.value, format_time(r.started_at),
             "-" if r.duration_ms is None else f"{r.duration_ms:.0f} ms", r.worker_id or "-", error_summary(r.error)]
            for r in runs]
    return render_table(headers, rows, right=(0, 3))


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    raise TypeError(f"cannot encode {type(value).__name__}")


def print_json(value: Any) -> None:
    """Print ``value`` as indented JSON (datetimes as ISO 8601). Jobs, runs, queues and workers are
    built by :mod:`aiojobs_pg.http.serialize` first, so the CLI's JSON is the HTTP API's (camelCase)."""
    print(json.dumps(value, indent=2, ensure_ascii=False, default=_json_default))
