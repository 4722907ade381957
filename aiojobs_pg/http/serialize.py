"""JSON in and out of the HTTP API: camelCase fields, ISO 8601 UTC times, request body checks.

Requests are checked here only for shape (known fields, JSON types, dates);
everything about values (queues, priorities, schedules, handlers) is checked by
the core, which raises :class:`~aiojobs_pg.errors.ValidationError` naming the
field. :func:`api_field` turns those Python names back into the API's names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from ..admin import UNSET
from ..errors import ValidationError
from ..models import Job, JobStatus, Run

#: request bodies larger than this many bytes are refused with 413
MAX_BODY = 1024 * 1024
DEFAULT_PAGE = 50

# API field -> keyword of App.enqueue
_CREATE = {
    "handler": "handler", "name": "name", "data": "data", "schedule": "schedule", "timezone": "timezone",
    "maxAttempts": "max_attempts", "queue": "queue", "priority": "priority", "runAt": "run_at",
    "delay": "delay", "dedupKey": "dedup_key", "timeout": "timeout",
}
# API field -> keyword of Admin.update_job
_UPDATE = {
    "name": "name", "data": "data", "schedule": "schedule", "timezone": "timezone",
    "maxAttempts": "max_attempts", "priority": "priority", "runAt": "run_at", "queue": "queue",
    "timeout": "timeout",
}
_RUNNER = {"concurrency": "concurrency", "queues": "queues"}
# fields that take a value of their own type, never null (elsewhere null means "absent" or "clear")
_NOT_NULL_CREATE = frozenset({"handler", "queue", "priority", "maxAttempts"})
_NOT_NULL_UPDATE = frozenset({"queue", "priority", "maxAttempts", "runAt"})
_NOT_NULL_RUNNER = frozenset({"concurrency", "queues"})
_PY_TO_API = {py: api for table in (_CREATE, _UPDATE) for api, py in table.items()} | {"job_id": "id"}


def api_field(name: str) -> str:
    """The API's name for a field named in a core :class:`ValidationError` (``max_attempts`` → ``maxAttempts``)."""
    return _PY_TO_API.get(name, name)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: object, field: str) -> datetime:
    """An ISO 8601 date-time with an offset (``2030-01-01T12:00:00Z``), as UTC."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be an ISO 8601 date-time string, got {_json_type(value)}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationError(field, f"is not an ISO 8601 date-time: {value[:64]!r}") from None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        raise ValidationError(field, "must include a time zone offset (e.g. 'Z' or '+02:00')")
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        raise ValidationError(field, "is out of range") from None


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json_object(body: bytes, *, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; an empty body is ``{}`` unless ``required``."""
    if not body.strip():
        if required:
            raise ValidationError("body", "a JSON object is required")
        return {}
    try:
        value = json.loads(body, parse_constant=_reject_constant)
    except RecursionError:
        raise ValidationError("body", "is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, bad UTF-8, NaN/Infinity
        raise ValidationError("body", f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValidationError("body", f"must be a JSON object, got {_json_type(value)}")
    return value


def _keywords(body: Mapping[str, Any], table: Mapping[str, str], not_null: frozenset[str]) -> dict[str, Any]:
    unknown = sorted(set(body) - set(table))
    if unknown:
        allowed = ", ".join(sorted(table))
        raise ValidationError(unknown[0], f"unknown field; expected some of: {allowed}")
    kwargs: dict[str, Any] = {}
    for field, value in body.items():
        if value is None and field in not_null:
            raise ValidationError(field, "must not be null")
        if field == "runAt" and value is not None:
            value = parse_time(value, field)
        kwargs[table[field]] = value
    return kwargs


def enqueue_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords for :meth:`App.enqueue` from a ``POST /jobs`` body (``handler`` first, positional)."""
    if "handler" not in body:
        raise ValidationError("handler", "is required")
    kwargs = _keywords(body, _CREATE, _NOT_NULL_CREATE)
    for optional in ("name", "schedule", "timezone", "run_at", "delay", "dedup_key", "timeout"):
        if optional in kwargs and kwargs[optional] is None:
            del kwargs[optional]
    return kwargs


def update_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords for :meth:`Admin.update_job` from a ``PUT /jobs/{id}`` body; absent fields stay unset."""
    kwargs = _keywords(body, _UPDATE, _NOT_NULL_UPDATE)
    return {k: kwargs.get(k, UNSET) for k in _UPDATE.values()}


def runner_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """``concurrency`` and ``queues`` for a runner start; queues must be a list of strings."""
    kwargs = _keywords(body, _RUNNER, _NOT_NULL_RUNNER)
    queues = kwargs.get("queues")
    if queues is not None and (not isinstance(queues, list) or not queues):
        raise ValidationError("queues", "must be a non-empty array of queue names")
    return kwargs


_POSITIVE = re.compile(r"[1-9][0-9]{0,18}")


def query_int(params: Mapping[str, str], field: str, default: int | None) -> int | None:
    """A positive decimal integer query parameter, no sign or leading zero (absent: ``default``)."""
    text = params.get(field)
    if text is None:
        return default
    if not _POSITIVE.fullmatch(text):
        raise ValidationError(field, f"must be a positive integer, got {text[:40]!r}")
    return int(text)


def list_kwargs(params: Mapping[str, str]) -> dict[str, Any]:
    """Keywords for :meth:`Admin.list_jobs` from ``GET /jobs``'s query string (a filter given must not be empty)."""
    unknown = sorted(set(params) - {"status", "queue", "handler", "limit", "cursor"})
    if unknown:
        raise ValidationError(unknown[0], "unknown query parameter; expected status, queue, handler, limit, cursor")
    for field in ("status", "queue", "handler"):
        if params.get(field) == "":
            raise ValidationError(field, "must not be empty (leave the parameter out to match any)")
    return {
        "status": params.get("status"),
        "queue": params.get("queue"),
        "handler": params.get("handler"),
        "limit": query_int(params, "limit", DEFAULT_PAGE),
        "cursor": query_int(params, "cursor", None),
    }


def job_json(job: Job) -> dict[str, Any]:
    """A job as the API shows it."""
    return {
        "id": job.id, "name": job.name, "handler": job.handler, "data": job.data, "schedule": job.schedule,
        "timezone": job.timezone, "queue": job.queue, "priority": job.priority, "status": job.status.value,
        "attempts": job.attempts, "maxAttempts": job.max_attempts, "timeout": job.timeout,
        "dedupKey": job.dedup_key, "workerId": job.worker_id, "lastRunAt": iso(job.last_run_at),
        "nextRunAt": iso(job.next_run_at), "lastError": job.last_error, "result": job.result,
        "createdAt": iso(job.created_at), "updatedAt": iso(job.updated_at),
    }


def run_json(run: Run) -> dict[str, Any]:
    """One history row; ``duration`` is in milliseconds."""
    return {
        "id": run.id, "jobId": run.job_id, "attempt": run.attempt, "status": run.status.value,
        "workerId": run.worker_id, "startedAt": iso(run.started_at), "completedAt": iso(run.completed_at),
        "duration": run.duration_ms, "error": run.error, "result": run.result,
    }


def queues_json(rows: list[dict[str, Any]], now: datetime) -> list[dict[str, Any]]:
    """Rows of ``queue_stats`` (queue, status, count, oldest_due) folded into one object per queue."""
    queues: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = queues.setdefault(row["queue"], {
            "queue": row["queue"], "counts": {s.value: 0 for s in JobStatus}, "total": 0,
            "oldestPendingAt": None, "oldestPendingAgeSeconds": None,
        })
        entry["counts"][row["status"]] = row["count"]
        entry["total"] += row["count"]
        oldest = row.get("oldest_due")
        if oldest is not None:
            entry["oldestPendingAt"] = iso(oldest)
            entry["oldestPendingAgeSeconds"] = round(max((now - oldest).total_seconds(), 0.0), 3)
    return list(queues.values())


def live_worker_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of the workers table (any host)."""
    return {
        "id": row["id"], "hostname": row["hostname"], "pid": row["pid"], "queues": list(row["queues"] or []),
        "concurrency": row["concurrency"], "startedAt": iso(row["started_at"]),
        "heartbeatAt": iso(row["heartbeat_at"]),
    }
