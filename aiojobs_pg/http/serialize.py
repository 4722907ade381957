"""JSON in and out of the HTTP API: camelCase fields, ISO 8601 UTC times, request body checks.

Requests are checked here for shape (known fields, JSON types, dates), and
durations and dates against the exact patterns and bounds that the OpenAPI
document states (:data:`DELAY_PATTERN` and the like: the document is built from
them, so what it allows is what is accepted). Everything else about values
(queues, priorities, schedules, handlers) is checked by the core, which raises
:class:`~aiojobs_pg.errors.ValidationError` naming the field. :func:`api_field`
turns those Python names back into the API's names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_to_bytes

from ..admin import MAX_THROUGHPUT_MINUTES, UNSET, QueueSettings
from ..errors import ValidationError
from ..models import Job, JobStatus, Run
from ..schedules import MAX_INTERVAL, upcoming_runs
from ..validation import INT32_MAX, MAX_DELAY, MAX_RATE_PERIOD
from ..webhooks import Webhook

#: request bodies larger than this many bytes are refused with 413
MAX_BODY = 1024 * 1024
DEFAULT_PAGE = 50

# API field -> keyword of App.enqueue
_CREATE = {
    "handler": "handler", "name": "name", "data": "data", "schedule": "schedule", "timezone": "timezone",
    "maxAttempts": "max_attempts", "queue": "queue", "priority": "priority", "runAt": "run_at",
    "delay": "delay", "dedupKey": "dedup_key", "timeout": "timeout",
    "after": "after", "onParentFailure": "on_parent_failure",
    "dedupWindow": "dedup_window", "backoff": "backoff", "concurrencyKey": "concurrency_key",
}
# API field -> keyword of Admin.update_job
_UPDATE = {
    "name": "name", "data": "data", "schedule": "schedule", "timezone": "timezone",
    "maxAttempts": "max_attempts", "priority": "priority", "runAt": "run_at", "queue": "queue",
    "timeout": "timeout",
}
_RUNNER = {"concurrency": "concurrency", "queues": "queues"}
# API field -> keyword of the bulk actions (Admin.retry_failed, cancel_pending, delete_finished)
_BULK = {"queue": "queue", "handler": "handler", "olderThan": "older_than"}
# fields that take a value of their own type, never null (elsewhere null means "absent" or "clear")
_NOT_NULL_CREATE = frozenset({"handler", "queue", "priority", "maxAttempts"})
_NOT_NULL_UPDATE = frozenset({"queue", "priority", "maxAttempts", "runAt"})
_NOT_NULL_RUNNER = frozenset({"concurrency", "queues"})
# API field -> keyword of Admin.add_webhook
_WEBHOOK = {"url": "url", "events": "events", "secret": "secret", "handlers": "handlers", "queues": "queues",
            "maxAttempts": "max_attempts", "description": "description"}
_PY_TO_API = {py: api for table in (_CREATE, _UPDATE, _BULK, _WEBHOOK) for api, py in table.items()} | {
    "job_id": "id", "webhook_id": "id", "concurrency_limit": "concurrencyLimit", "rate_limit": "rateLimit"}
#: most queues a runner start may name
MAX_RUNNER_QUEUES = 50
#: run times a recurring job's ``nextRuns`` shows
NEXT_RUNS = 5


# --- patterns the OpenAPI document states and this module enforces ---
# Written in the common subset of Python's and ECMAScript's regular expressions (no \d or \s,
# whose meaning differs; no lookaround), so generated clients and fuzzers read them as we do.

#: the characters for which Python's ``str.isspace()`` is true: what ``strip()`` removes
WHITESPACE = r"\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
#: text PostgreSQL can store: no NUL
NO_NUL_PATTERN = r"^[^\x00]*$"
#: no NUL, and not only white space
NOT_BLANK_PATTERN = rf"^[^\x00]*[^\x00{WHITESPACE}][^\x00]*$"


def _numbers_to(n: int, *, zero: bool = True) -> str:
    """A regex of the decimal integers from 0 (1 without ``zero``) to ``n``, without leading zeros."""
    if n < (0 if zero else 1):
        raise ValueError(f"no integers from {0 if zero else 1} to {n}")
    digits = str(n)
    width = len(digits)
    alternatives = ["0"] if zero else []
    if width > 1:
        alternatives.append("[1-9]" + (f"[0-9]{{0,{width - 2}}}" if width > 2 else ""))
    for i, digit in enumerate(digits):  # as long as n, and below it from the i-th digit on
        low, high = (1 if i == 0 else 0), int(digit) - 1
        if high >= low:
            rest = width - i - 1
            alternatives.append(digits[:i] + (str(low) if low == high else f"[{low}-{high}]")
                                + (f"[0-9]{{{rest}}}" if rest > 1 else "[0-9]" if rest else ""))
    alternatives.append(digits)
    return "(?:" + "|".join(dict.fromkeys(alternatives)) + ")"


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# up to six decimals: every such value is a whole number of microseconds, as timedelta stores it
_FRACTION = r"(?:\.[0-9]{0,6})?"
_NONZERO_FRACTION = r"\.(?:" + "|".join("0" * i + "[1-9]" + (f"[0-9]{{0,{5 - i}}}" if i < 5 else "")
                                      for i in range(6)) + ")"


def _duration_pattern(limit_seconds: int, *, zero: bool) -> str:
    """Seconds ('30', '1.5', up to six decimals) or '<n>s|m|h|d', at most ``limit_seconds``."""
    forms = [f"0*{_numbers_to(limit_seconds - 1)}{_FRACTION}" if zero else
             f"0*{_numbers_to(limit_seconds - 1, zero=False)}{_FRACTION}|0*{_NONZERO_FRACTION}",
             rf"0*{limit_seconds}(?:\.0{{0,6}})?"]
    if zero:
        forms.append(r"\.[0-9]{1,6}")
    forms += [f"0*{_numbers_to(limit_seconds // size, zero=zero)}[{unit}{unit.upper()}]"
              for unit, size in _UNITS.items()]
    return "^(?:" + "|".join(forms) + ")$"


#: the longest delay (and timeout) in seconds
MAX_DURATION = int(MAX_DELAY.total_seconds())
#: the smallest timeout in seconds: one microsecond, the resolution of durations
MIN_TIMEOUT = 0.000001
DELAY_PATTERN = _duration_pattern(MAX_DURATION, zero=True)
TIMEOUT_PATTERN = _duration_pattern(MAX_DURATION, zero=False)
_DELAY_RE = re.compile(DELAY_PATTERN)
_TIMEOUT_RE = re.compile(TIMEOUT_PATTERN)
#: a rate limit, "N/period": N from 1 to 2^31-1, the period more than zero and at most a day (a duration, or
#: a bare unit for one of it: "100/m"); what :func:`aiojobs_pg.validation.parse_rate_limit` reads, less spaces
RATE_LIMIT_PATTERN = (f"^0*{_numbers_to(INT32_MAX, zero=False)}/(?:[smhdSMHD]|"
                      + _duration_pattern(int(MAX_RATE_PERIOD.total_seconds()), zero=False)[1:-1] + ")$")
_RATE_LIMIT_RE = re.compile(RATE_LIMIT_PATTERN)

# An RFC 3339 date-time that Python can hold in UTC whatever its offset: years 0001-9999 but not
# the first and last day (0001-01-01T00:00+05:00 is in year 0), upper-case T and Z, no leap second.
_YEAR = "(?:000[2-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
_DATE = (f"(?:{_YEAR}-[0-9]{{2}}-[0-9]{{2}}|0001-(?:0[2-9]|1[0-2])-[0-9]{{2}}|0001-01-(?:0[2-9]|[1-3][0-9])"
         "|9999-(?:0[1-9]|1[01])-[0-9]{2}|9999-12-(?:[0-2][0-9]|30))")
_HH_MM = "(?:[01][0-9]|2[0-3]):[0-5][0-9]"
DATE_TIME_PATTERN = rf"^{_DATE}T{_HH_MM}:[0-5][0-9](?:\.[0-9]+)?(?:Z|[+-]{_HH_MM})$"
_DATE_TIME_RE = re.compile(DATE_TIME_PATTERN)
_EDGE_DAYS = re.compile(r"0000|0001-01-01|9999-12-31")

# What a schedule may look like; the core decides the rest (a cron field in range, a date that occurs).
_FIELD = "[0-9A-Za-z*/,#?-]+"
_ALIASES = ("yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")
SCHEDULE_PATTERN = (
    f"^[{WHITESPACE}]*(?:"
    + "|".join(f"0*{_numbers_to(int(MAX_INTERVAL.total_seconds()) // size, zero=False)}[{unit}{unit.upper()}]"
               for unit, size in _UNITS.items())
    + "|@(?:" + "|".join("".join(f"[{c}{c.upper()}]" for c in alias) for alias in _ALIASES) + ")"
    + f"|{_FIELD}(?:[{WHITESPACE}]+{_FIELD}){{4,5}}"
    + f")[{WHITESPACE}]*$"
)
#: an IANA time zone name's shape; whether the server's time zone database has it is checked on use
TIMEZONE_PATTERN = r"^[A-Za-z0-9_+-]+(?:/[A-Za-z0-9_+-]+)*$"
#: a positive 64-bit integer in decimal, no sign or leading zero
CURSOR_PATTERN = f"^{_numbers_to(2**63 - 1, zero=False)}$"


def api_field(name: str) -> str:
    """The API's name for a field named in a core :class:`ValidationError` (``max_attempts`` → ``maxAttempts``,
    ``steps[2].max_attempts`` → ``steps[2].maxAttempts``)."""
    prefix, dot, last = name.rpartition(".")
    return prefix + dot + _PY_TO_API.get(last, last)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (None stays None)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: object, field: str) -> datetime:
    """An RFC 3339 date-time with an offset (``2030-01-01T12:00:00Z``, :data:`DATE_TIME_PATTERN`), as UTC."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be an ISO 8601 date-time string, got {_json_type(value)}")
    if _DATE_TIME_RE.fullmatch(value) is None:
        try:
            naive = datetime.fromisoformat(value).utcoffset() is None
        except ValueError:
            naive = False
        if naive:
            raise ValidationError(field, "must include a time zone offset (e.g. 'Z' or '+02:00')")
        if _EDGE_DAYS.match(value):
            raise ValidationError(field, "is out of range: from 0001-01-02 to 9999-12-30")
        raise ValidationError(field, f"is not an ISO 8601 (RFC 3339) date-time like '2030-01-01T12:00:00Z': "
                                     f"{value[:64]!r}")
    try:
        return datetime.fromisoformat(value).astimezone(UTC)
    except ValueError as exc:  # a day the month does not have
        raise ValidationError(field, f"is not a valid date-time: {exc}") from None


def check_duration(value: object, field: str) -> object:
    """``delay`` or ``timeout`` as the document states it: a number or :data:`DELAY_PATTERN` / :data:`TIMEOUT_PATTERN`.

    Stricter than the core's :func:`~aiojobs_pg.schedules.parse_duration`: no spaces,
    six decimals at most, at most :data:`MAX_DURATION` seconds, a timeout at least one
    microsecond. Other types pass through for the core to refuse.
    """
    timeout = field in ("timeout", "dedupWindow")  # both more than zero
    if isinstance(value, str):
        if (_TIMEOUT_RE if timeout else _DELAY_RE).fullmatch(value) is None:
            raise ValidationError(field, f"invalid duration {value[:40]!r}: expected seconds ('30', '1.5', at most six "
                                         f"decimals) or <n>s, <n>m, <n>h, <n>d ('5m'), from "
                                         f"{'more than 0' if timeout else '0'} to {MAX_DURATION} s "
                                         f"({MAX_DELAY.days} days)")
    elif isinstance(value, int | float) and not isinstance(value, bool):  # the core refuses negatives and 0
        if value > MAX_DURATION:
            raise ValidationError(field, f"must be at most {MAX_DURATION} seconds ({MAX_DELAY.days} days), "
                                         f"got {str(value)[:40]}")
        if timeout and 0 < value < MIN_TIMEOUT:  # would round to a timeout of 0
            raise ValidationError(field, f"must be at least one microsecond ({MIN_TIMEOUT:f} s), got {value!r}")
    return value


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
        elif field in ("delay", "timeout", "dedupWindow") and value is not None:
            value = check_duration(value, field)
        kwargs[table[field]] = value
    return kwargs


def enqueue_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords for :meth:`App.enqueue` from a ``POST /jobs`` body (``handler`` first, positional)."""
    if "handler" not in body:
        raise ValidationError("handler", "is required")
    kwargs = _keywords(body, _CREATE, _NOT_NULL_CREATE)
    for optional in ("name", "schedule", "timezone", "run_at", "delay", "dedup_key", "timeout", "after",
                     "on_parent_failure", "dedup_window", "backoff"):
        if optional in kwargs and kwargs[optional] is None:
            del kwargs[optional]
    backoff = kwargs.get("backoff")
    # as the document states it: the core would also read a string of JSON, which the document does not allow
    if backoff is not None and (isinstance(backoff, bool) or not isinstance(backoff, int | float | dict)):
        raise ValidationError("backoff", f"must be a number of seconds (fixed) or an object of base, factor, cap and "
                                         f"jitter, got {_json_type(backoff)}")
    return kwargs


def workflow_items(body: Mapping[str, Any], field: str) -> list[dict[str, Any]]:
    """The jobs of a ``POST /chains`` or ``POST /groups`` body's ``field``: each as :func:`enqueue_kwargs`
    reads a ``POST /jobs`` body, for :meth:`App.chain` / :meth:`App.group`; errors name the item."""
    items = body.get(field)
    if not isinstance(items, list):
        raise ValidationError(field, f"must be a list of jobs, got {_json_type(items)}")
    return [workflow_item(item, f"{field}[{i}]") for i, item in enumerate(items)]


def workflow_item(item: object, field: str) -> dict[str, Any]:
    """One job of a workflow body (see :func:`workflow_items`), ``field`` naming it in errors."""
    if not isinstance(item, dict):
        raise ValidationError(field, f"must be an object, got {_json_type(item)}")
    try:
        return enqueue_kwargs(item)
    except ValidationError as exc:
        raise ValidationError(f"{field}.{api_field(exc.field)}", exc.message) from None


def chain_steps(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The steps of a ``POST /chains`` body."""
    _keywords(body, {"steps": "steps"}, frozenset({"steps"}))
    return workflow_items(body, "steps")


def group_jobs(body: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The members and the callback (``then``) of a ``POST /groups`` body."""
    _keywords(body, {"members": "members", "then": "then"}, frozenset({"members", "then"}))
    if "then" not in body:
        raise ValidationError("then", "is required")
    return workflow_items(body, "members"), workflow_item(body["then"], "then")


def update_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords for :meth:`Admin.update_job` from a ``PUT /jobs/{id}`` body; absent fields stay unset."""
    kwargs = _keywords(body, _UPDATE, _NOT_NULL_UPDATE)
    return {k: kwargs.get(k, UNSET) for k in _UPDATE.values()}


def runner_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """``concurrency`` and ``queues`` for a runner start; queues must be a list of strings."""
    kwargs = _keywords(body, _RUNNER, _NOT_NULL_RUNNER)
    queues = kwargs.get("queues")
    if queues is not None and (not isinstance(queues, list) or not 1 <= len(queues) <= MAX_RUNNER_QUEUES):
        raise ValidationError("queues", f"must be an array of 1 to {MAX_RUNNER_QUEUES} queue names")
    return kwargs


def bulk_kwargs(body: Mapping[str, Any], *, older_than: bool) -> dict[str, Any]:
    """Keywords of a bulk action from its body: ``queue`` and ``handler`` filters, and for a delete
    ``olderThan`` (required, a duration as ``delay`` takes it)."""
    table = _BULK if older_than else {k: v for k, v in _BULK.items() if k != "olderThan"}
    kwargs = _keywords(body, table, frozenset(table))
    if older_than:
        if "older_than" not in kwargs:
            raise ValidationError("olderThan", "is required")
        kwargs["older_than"] = check_duration(kwargs["older_than"], "olderThan")
    return kwargs


_POSITIVE = re.compile(r"[1-9][0-9]{0,18}")


def query_params(query_string: bytes) -> dict[str, str]:
    """A raw query string as ``{name: value}``, percent-decoded as strict UTF-8.

    Starlette's parser puts U+FFFD for bytes that are not UTF-8 (``?queue=%FF``) and
    keeps the last of repeated names; both would search for something not asked for,
    so both are a :class:`ValidationError` naming the parameter.
    """
    params: dict[str, str] = {}
    for pair in query_string.split(b"&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition(b"=")
        name = _unquote(raw_name, None)
        value = _unquote(raw_value, name)
        if name in params:
            raise ValidationError(name, "is given more than once")
        params[name] = value
    return params


def _unquote(raw: bytes, name: str | None) -> str:
    data = unquote_to_bytes(raw.replace(b"+", b" "))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        field = name if name is not None else data.decode("utf-8", "replace")[:40]
        what = "value" if name is not None else "name"
        raise ValidationError(field, f"the query parameter's {what} is not valid UTF-8 once percent-decoded") from None


def query_int(params: Mapping[str, str], field: str, default: int | None) -> int | None:
    """A positive decimal integer query parameter, no sign or leading zero (absent: ``default``)."""
    text = params.get(field)
    if text is None:
        return default
    if not _POSITIVE.fullmatch(text):
        raise ValidationError(field, f"must be a positive integer, got {text[:40]!r}")
    return int(text)


#: ``GET /jobs/{id}/wait``: seconds it waits when no ``timeout`` is given, and the bounds of one that is
DEFAULT_WAIT = 30.0
MIN_WAIT = 0.001
MAX_WAIT = 300.0
#: a JSON number, as a query parameter states one (no sign: a timeout is positive)
_NUMBER = re.compile(r"(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def wait_timeout(params: Mapping[str, str]) -> float:
    """``GET /jobs/{id}/wait``'s ``timeout``: seconds, from :data:`MIN_WAIT` to :data:`MAX_WAIT` (a request
    holds a connection to the server meanwhile); :data:`DEFAULT_WAIT` when absent."""
    unknown = sorted(set(params) - {"timeout"})
    if unknown:
        raise ValidationError(unknown[0], "unknown query parameter; expected timeout")
    text = params.get("timeout")
    if text is None:
        return DEFAULT_WAIT
    if not _NUMBER.fullmatch(text):
        raise ValidationError("timeout", f"must be a number of seconds, got {text[:40]!r}")
    seconds = float(text)
    if not MIN_WAIT <= seconds <= MAX_WAIT:
        raise ValidationError("timeout", f"must be from {MIN_WAIT:g} to {MAX_WAIT:g} seconds, got {text[:40]}")
    return seconds


#: ``GET /jobs?data=``: the text of a JSON object (whether it parses, and holds no NUL, is checked on use;
#: its size is bounded as a job's data is, by ``max_data_bytes``). No maxLength in the document: schemathesis
#: folds one into the pattern and breaks it.
DATA_FILTER_PATTERN = r"^[{][^\x00]*[}]$"
_DATA_FILTER_RE = re.compile(DATA_FILTER_PATTERN)


def data_filter(text: str) -> dict[str, Any]:
    """``GET /jobs``'s ``data``: a JSON object (:data:`DATA_FILTER_PATTERN`) the jobs' data must contain."""
    if _DATA_FILTER_RE.fullmatch(text) is None:
        raise ValidationError("data", f'must be a JSON object, such as {{"user": 7}}, got {text[:40]!r}')
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        raise ValidationError("data", "is nested too deeply") from None
    except ValueError as exc:
        raise ValidationError("data", f"is not valid JSON: {exc}") from None
    if not isinstance(value, dict):  # "{} {}" and the like are refused above; this is the type's guard
        raise ValidationError("data", f"must be a JSON object, got {_json_type(value)}")
    return value


def list_kwargs(params: Mapping[str, str]) -> dict[str, Any]:
    """Keywords for :meth:`Admin.list_jobs` from ``GET /jobs``'s query string (a filter given must not be empty)."""
    unknown = sorted(set(params) - {"status", "queue", "handler", "data", "limit", "cursor"})
    if unknown:
        raise ValidationError(unknown[0], "unknown query parameter; expected status, queue, handler, data, limit, "
                                          "cursor")
    for field in ("status", "queue", "handler"):
        if params.get(field) == "":
            raise ValidationError(field, "must not be empty (leave the parameter out to match any)")
    data = params.get("data")
    return {
        "status": params.get("status"),
        "queue": params.get("queue"),
        "handler": params.get("handler"),
        "data": None if data is None else data_filter(data),
        "limit": query_int(params, "limit", DEFAULT_PAGE),
        "cursor": query_int(params, "cursor", None),
    }


def no_params(params: Mapping[str, str]) -> None:
    """Refuse any query parameter (a route that takes none)."""
    if params:
        raise ValidationError(sorted(params)[0], "unknown query parameter; this route takes none")


def throughput_minutes(params: Mapping[str, str]) -> int:
    """``GET /stats/throughput``'s ``minutes``: 1 to :data:`~aiojobs_pg.admin.MAX_THROUGHPUT_MINUTES` (60)."""
    unknown = sorted(set(params) - {"minutes"})
    if unknown:
        raise ValidationError(unknown[0], "unknown query parameter; expected minutes")
    minutes = query_int(params, "minutes", 60)
    assert minutes is not None
    if minutes > MAX_THROUGHPUT_MINUTES:
        raise ValidationError("minutes", f"must be at most {MAX_THROUGHPUT_MINUTES} (a day), got {minutes}")
    return minutes


def throughput_json(now: datetime, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``GET /stats/throughput``'s answer: one entry per minute, oldest first."""
    return {"now": iso(now), "data": [{**row, "minute": iso(row["minute"])} for row in rows]}


def job_json(job: Job, now: datetime | None = None, served: Collection[tuple[str, str]] | None = None
             ) -> dict[str, Any]:
    """A job as the API shows it; ``nextRuns`` from :func:`~aiojobs_pg.schedules.upcoming_runs` (from ``now``);
    given what live workers serve (``Admin.served``), ``noWorker``."""
    out = {
        "id": job.id, "name": job.name, "handler": job.handler, "data": job.data, "schedule": job.schedule,
        "timezone": job.timezone, "queue": job.queue, "priority": job.priority, "status": job.status.value,
        "attempts": job.attempts, "maxAttempts": job.max_attempts, "timeout": job.timeout,
        "dedupKey": job.dedup_key, "workerId": job.worker_id, "lastRunAt": iso(job.last_run_at),
        "nextRunAt": iso(job.next_run_at), "lastError": job.last_error, "result": job.result,
        "createdAt": iso(job.created_at), "updatedAt": iso(job.updated_at),
        "nextRuns": [iso(t) for t in upcoming_runs(job, NEXT_RUNS, now)],
        "progress": job.progress, "progressMessage": job.progress_message,
        "parents": job.parents, "waitingFor": job.waiting_for, "onParentFailure": job.on_parent_failure,
        "backoff": None if job.backoff is None else job.backoff.to_dict(),
        "concurrencyKey": job.concurrency_key,
    }
    if served is not None:
        out["noWorker"] = job.waits_for_a_worker(served)
    return out


def run_json(run: Run) -> dict[str, Any]:
    """One history row; ``duration`` is in milliseconds."""
    return {
        "id": run.id, "jobId": run.job_id, "attempt": run.attempt, "status": run.status.value,
        "workerId": run.worker_id, "startedAt": iso(run.started_at), "completedAt": iso(run.completed_at),
        "duration": run.duration_ms, "error": run.error, "result": run.result,
    }


#: where GET /queues' completed counts come from: counters that completion, pruning and deletion keep in
#: their own transactions (migration 0009), over the completed jobs the history keeps; not a time window
COMPLETED_FROM = "counters"


def queues_json(rows: list[dict[str, Any]], now: datetime, paused: Collection[str] = (),
                unserved: Mapping[tuple[str, str], int] | None = None, *,
                settings: Mapping[str, QueueSettings] | None = None) -> list[dict[str, Any]]:
    """Rows of ``queue_stats`` (queue, status, count, oldest_due) folded into one object per queue, with
    whether it is ``paused``, its pending jobs no live worker serves (``unserved``, by handler) and its
    limits (``settings``: ``concurrencyLimit``, ``rateLimit`` as ``"N/period"``; null for none)."""
    queues: dict[str, dict[str, Any]] = {}
    settings = settings or {}

    def entry_of(queue: str) -> dict[str, Any]:
        if queue not in queues:
            limits = settings.get(queue)
            queues[queue] = {
                "queue": queue, "counts": {s.value: 0 for s in JobStatus}, "total": 0,
                "oldestPendingAt": None, "oldestPendingAgeSeconds": None, "paused": queue in paused,
                "noWorker": {}, **queue_limits_json(limits),
            }
        return queues[queue]

    for queue in paused:
        entry_of(queue)
    for queue, limits in settings.items():
        if limits.concurrency_limit is not None or limits.rate_limit is not None:
            entry_of(queue)
    for (queue, handler), count in (unserved or {}).items():
        entry_of(queue)["noWorker"][handler] = count
    for row in rows:
        entry = entry_of(row["queue"])
        entry["counts"][row["status"]] = row["count"]
        entry["total"] += row["count"]
        oldest = row.get("oldest_due")
        if oldest is not None:
            entry["oldestPendingAt"] = iso(oldest)
            entry["oldestPendingAgeSeconds"] = round(max((now - oldest).total_seconds(), 0.0), 3)
    return sorted(queues.values(), key=lambda q: q["queue"])


def queue_limits_json(settings: QueueSettings | None) -> dict[str, Any]:
    """A queue's limits: ``concurrencyLimit`` (jobs at once) and ``rateLimit`` (``"N/period"``), null for none."""
    rate = None if settings is None else settings.rate_limit
    return {"concurrencyLimit": None if settings is None else settings.concurrency_limit,
            "rateLimit": None if rate is None else str(rate)}


def queue_settings_json(settings: QueueSettings) -> dict[str, Any]:
    """What ``POST /queues/{queue}/settings`` returns: the queue, whether it is paused, and its limits."""
    return {"queue": settings.queue, "paused": settings.paused, **queue_limits_json(settings)}


#: the fields of a ``POST /queues/{queue}/settings`` body; a field left out is kept, null removes that limit
QUEUE_SETTINGS_FIELDS = {"concurrencyLimit": "concurrency_limit", "rateLimit": "rate_limit"}


def queue_settings_kwargs(body: Any) -> dict[str, Any]:
    """Keywords for :meth:`Admin.set_queue` from a settings body: ``concurrencyLimit`` (an integer, or null),
    ``rateLimit`` (``"N/period"``, or null); at least one of them, and nothing else."""
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be a JSON object")
    unknown = sorted(set(body) - QUEUE_SETTINGS_FIELDS.keys())
    if unknown:
        raise ValidationError(unknown[0], f"unknown field; expected {' or '.join(QUEUE_SETTINGS_FIELDS)}")
    if not body:
        raise ValidationError("body", f"give {' and/or '.join(QUEUE_SETTINGS_FIELDS)}")
    rate = body.get("rateLimit")
    if isinstance(rate, str) and _RATE_LIMIT_RE.fullmatch(rate) is None:
        raise ValidationError("rateLimit", f"invalid rate limit {rate[:60]!r}: expected N/period, such as '100/1m' "
                                           "(N from 1 to 2147483647, the period more than 0 and at most 1d)")
    return {QUEUE_SETTINGS_FIELDS[k]: v for k, v in body.items()}


def webhook_json(hook: Webhook) -> dict[str, Any]:
    """A webhook; its ``secret`` only when it is known (what adding one returns)."""
    out: dict[str, Any] = {
        "id": hook.id, "url": hook.url, "events": hook.events, "handlers": hook.handlers, "queues": hook.queues,
        "maxAttempts": hook.max_attempts, "description": hook.description, "createdAt": iso(hook.created_at),
    }
    if hook.secret is not None:
        out["secret"] = hook.secret
    return out


def webhook_kwargs(body: Mapping[str, Any]) -> dict[str, Any]:
    """Keywords for :meth:`Admin.add_webhook` from a ``POST /webhooks`` body (``url`` and ``events`` required)."""
    for required in ("url", "events"):
        if required not in body:
            raise ValidationError(required, "is required")
    kwargs = _keywords(body, _WEBHOOK, frozenset({"url", "events", "maxAttempts"}))
    return {k: v for k, v in kwargs.items() if v is not None}


def live_worker_json(row: Mapping[str, Any]) -> dict[str, Any]:
    """A row of the workers table (any host)."""
    return {
        "id": row["id"], "hostname": row["hostname"], "pid": row["pid"], "queues": list(row["queues"] or []),
        "handlers": list(row["handlers"]), "concurrency": row["concurrency"], "startedAt": iso(row["started_at"]),
        "heartbeatAt": iso(row["heartbeat_at"]), "alive": row["alive"],
    }
