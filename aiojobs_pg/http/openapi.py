"""The OpenAPI 3.0 document served at ``/openapi.json``.

Written by hand to say exactly what the handlers do, the server's constraints
included: a request the document allows is accepted, but for what JSON Schema
cannot say (a handler not registered, a cron field out of range, a time zone the
server does not know, a time zone for a job without a schedule, a NUL in an
object key of ``data``), which each field's description names and which the
server refuses with 422. The patterns come from :mod:`.serialize`, which
enforces them. ``tests/http`` checks the document against the running server
with schemathesis, valid and invalid requests both.
"""

from __future__ import annotations

import copy
from typing import Any

from ..admin import MAX_PAGE, MAX_THROUGHPUT_MINUTES
from ..events import EVENTS
from ..models import MAX_BACKOFF, MAX_BACKOFF_FACTOR, MAX_JSON_DEPTH, JobStatus, RunStatus
from ..schedules import MAX_EXPR_LENGTH
from ..validation import (
    MAX_ATTEMPTS,
    MAX_DELAY,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PARENTS,
    MAX_QUEUE_LENGTH,
    MAX_SECRET_LENGTH,
    MAX_URL_LENGTH,
    MAX_WEBHOOK_ATTEMPTS,
    MAX_WEBHOOK_FILTERS,
    MIN_SECRET_LENGTH,
    PARENT_FAILURE_POLICIES,
    URL_PATTERN,
)
from . import serialize as ser

_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_JOB_STATUSES = [s.value for s in JobStatus]
_RUN_STATUSES = [s.value for s in RunStatus]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_ANY: dict[str, Any] = {"nullable": True, "description": "any JSON value"}
_NULL_ONLY = {"nullable": True, "enum": [None]}


def _duration(least: str, minimum: float, pattern: str) -> dict[str, Any]:
    return {
        "description": f"seconds, from {least} to {ser.MAX_DURATION} ({MAX_DELAY.days} days): a number, or a "
                       "string of seconds ('30', '1.5', at most six decimals) or '<n>s', '<n>m', '<n>h', '<n>d'",
        "oneOf": [{"type": "number", "minimum": minimum, "maximum": ser.MAX_DURATION},
                  {"type": "string", "pattern": pattern}],
    }


_DELAY = _duration("0", 0, ser.DELAY_PATTERN)
_TIMEOUT = _duration("one microsecond", ser.MIN_TIMEOUT, ser.TIMEOUT_PATTERN)
_BACKOFF_FIELDS: dict[str, Any] = {
    "base": {"type": "number", "minimum": 0, "maximum": MAX_BACKOFF,
             "description": "seconds before the first retry (default 1)"},
    "factor": {"type": "number", "minimum": 1, "maximum": MAX_BACKOFF_FACTOR,
               "description": "each retry waits this many times longer than the one before (default 2; 1: fixed)"},
    "cap": {"type": "number", "minimum": 0, "maximum": MAX_BACKOFF,
            "description": "the longest wait, in seconds (default 3600)"},
    "jitter": {"type": "number", "minimum": 0, "maximum": 1,
               "description": "each wait is spread over +-jitter of itself (default 0.2)"},
}
_BACKOFF_IN = {
    "description": "how long its failed attempts wait before the next, in preference to its handler's and the "
                   "app's: base * factor ** (attempt - 1) seconds, capped; or a number: that many seconds each "
                   "time (fixed, no jitter)",
    "oneOf": [{"type": "number", "minimum": 0, "maximum": MAX_BACKOFF},
              {"type": "object", "additionalProperties": False, "properties": _BACKOFF_FIELDS}],
}


def _text(max_length: int, description: str = "", *, blank: bool = True) -> dict[str, Any]:
    """A string PostgreSQL stores (no NUL), at most ``max_length`` long; not white space only unless ``blank``."""
    schema: dict[str, Any] = {"type": "string", "maxLength": max_length,
                              "pattern": ser.NO_NUL_PATTERN if blank else ser.NOT_BLANK_PATTERN}
    if not blank:
        schema["minLength"] = 1
    if description:
        schema["description"] = description
    return schema


_HANDLER = _text(MAX_NAME_LENGTH, "the name a handler is registered under; a name the server does not know is "
                                  "refused with 422 (handlers are registered in code, not listed here)", blank=False)
_QUEUE = _text(MAX_QUEUE_LENGTH, blank=False)
_SCHEDULE_TEXT = ("an interval '<n>s', '<n>m', '<n>h' or '<n>d' (up to 3660 days), an alias (@hourly, @daily, "
                  "@midnight, @weekly, @monthly, @yearly, @annually), or a cron expression of 5 fields (minute hour "
                  "day-of-month month day-of-week) or 6 (a leading seconds field). The pattern states the syntax; a "
                  "cron field out of range, or a date that never occurs (30 February), is refused with 422")
_TIMEZONE_TEXT = ("the IANA time zone of the schedule (default UTC), e.g. 'Europe/Paris'; a name the server's time "
                  "zone database does not have is refused with 422")


def _schedule(description: str) -> dict[str, Any]:
    return _nullable({"type": "string", "maxLength": MAX_EXPR_LENGTH, "pattern": ser.SCHEDULE_PATTERN,
                      "description": description})


def _timezone(description: str) -> dict[str, Any]:
    return _nullable({"type": "string", "pattern": ser.TIMEZONE_PATTERN, "description": description})


_RUN_AT_TEXT = ("when to run: an RFC 3339 date-time with an offset ('2030-01-01T12:00:00Z'), from 0001-01-02 to "
                "9999-12-30")
_RUN_AT = {**_TIME, "pattern": ser.DATE_TIME_PATTERN, "description": _RUN_AT_TEXT}
#: strings without NUL (PostgreSQL's jsonb cannot store it), to any depth
_JSON_VALUE = {
    "nullable": True,
    "description": f"any JSON value: no string in it may contain a NUL character, nor may an object key (which "
                   f"OpenAPI 3.0 cannot state: 422); nested at most {MAX_JSON_DEPTH} deep; at most the app's "
                   f"max_data_bytes (1 MiB by default) as stored",
    "anyOf": [{"type": "string", "pattern": ser.NO_NUL_PATTERN}, {"type": "number"}, {"type": "boolean"},
              {"type": "array", "items": {"$ref": "#/components/schemas/JsonValue"}},
              {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/JsonValue"}}],
}

_JOB_FIELDS: dict[str, Any] = {
    "id": {"type": "integer", "minimum": 1, "format": "int64"},
    "name": _nullable(_STR),
    "handler": _STR,
    "data": _ANY,
    "schedule": _nullable({**_STR, "description": "an interval ('10m') or a cron expression"}),
    "timezone": _nullable(_STR),
    "queue": _STR,
    "priority": {"type": "integer"},
    "status": {"type": "string", "enum": _JOB_STATUSES},
    "attempts": {"type": "integer", "minimum": 0},
    "maxAttempts": {"type": "integer", "minimum": 1},
    "timeout": _nullable({"type": "number", "description": "seconds"}),
    "dedupKey": _nullable(_STR),
    "workerId": _nullable(_STR),
    "lastRunAt": _nullable(_TIME),
    "nextRunAt": _TIME,
    "lastError": _nullable(_STR),
    "result": _ANY,
    "createdAt": _TIME,
    "updatedAt": _TIME,
    "nextRuns": {"type": "array", "items": _TIME, "maxItems": ser.NEXT_RUNS,
                 "description": f"a recurring job's next {ser.NEXT_RUNS} runs: nextRunAt, then the schedule's ticks "
                                "after it (after now, if it is due); [] for a one-off job and for a failed or "
                                "cancelled one, which does not run again by itself"},
    "progress": _nullable({"type": "number", "minimum": 0, "maximum": 1,
                           "description": "how far the running attempt says it got (ctx.progress); null before "
                                          "it reports, and once the job completed"}),
    "progressMessage": _nullable({**_STR, "description": "what the running attempt said with its progress"}),
    "parents": _nullable({"type": "array", "items": {"type": "integer", "format": "int64"},
                          "description": "the jobs it was enqueued after (null once it completed)"}),
    "waitingFor": _nullable({"type": "array", "items": {"type": "integer", "format": "int64"},
                             "description": "those of its parents not completed yet (status waiting)"}),
    "onParentFailure": _nullable({"type": "string", "enum": list(PARENT_FAILURE_POLICIES),
                                  "description": "null: a failed or cancelled parent ends it the same way"}),
    "backoff": _nullable({"type": "object", "required": list(_BACKOFF_FIELDS), "properties": _BACKOFF_FIELDS,
                          "description": "its own retry backoff (null: its handler's, else the app's)"}),
    "concurrencyKey": _nullable({**_STR, "description": "the key its handler's limits count it under (null: the "
                                                        "handler's own)"}),
}

#: a queue's limits, as GET /queues and POST /queues/{queue}/settings show them
_QUEUE_LIMITS: dict[str, Any] = {
    "concurrencyLimit": _nullable({"type": "integer", "description": "at most this many of its jobs run at once, "
                                                                     "fleet-wide (null: no limit)"}),
    "rateLimit": _nullable({**_STR, "description": "at most N of its jobs start in any window of the period, "
                                                   "'N/period' (null: no limit)"}),
}

# What POST /jobs takes (JobCreate), and a chain's or group's jobs, but their schedule (WorkflowJob).
_JOB_CREATE_FIELDS: dict[str, Any] = {
    "handler": _HANDLER,
    "name": _nullable(_text(MAX_NAME_LENGTH)),
    "data": _ref("JsonValue"),
    "schedule": _schedule("makes the job recurring: " + _SCHEDULE_TEXT),
    "timezone": _timezone(_TIMEZONE_TEXT + "; only with a schedule"),
    "maxAttempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
    "queue": _QUEUE,
    "priority": {"type": "integer", "minimum": -_INT32 - 1, "maximum": _INT32},
    "runAt": _nullable({**_RUN_AT, "description": _RUN_AT_TEXT + "; not with delay"}),
    "delay": _nullable(_DELAY),
    "dedupKey": _nullable(_text(MAX_KEY_LENGTH)),
    "timeout": _nullable(_TIMEOUT),
    "after": _nullable({"type": "array", "minItems": 1, "maxItems": MAX_PARENTS,
                        "items": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1, "format": "int64"},
                        "description": "ids of one-off jobs this one waits for (status waiting) until they "
                                       "all completed; an id no job has is refused with 422"}),
    "onParentFailure": _nullable({"type": "string", "enum": list(PARENT_FAILURE_POLICIES),
                                  "description": "when a parent fails or is cancelled: cancel this job, or "
                                                 "run it anyway; null (the default) ends it as the parent "
                                                 "ended. Only with after"}),
    "dedupWindow": _nullable({**_TIMEOUT, "description": "with dedupKey: return the newest job with the key "
                              "created within this window, whatever its status (completed, failed, "
                              "cancelled too), instead of adding one; " + _TIMEOUT["description"]}),
    "backoff": _nullable(_BACKOFF_IN),
    "concurrencyKey": _nullable({**_text(MAX_KEY_LENGTH, blank=False),
                                 "description": "its handler's concurrency and rate limits count per key "
                                                "(a customer id, say): docs/limits.md"}),
}

_SCHEMAS: dict[str, Any] = {
    "Job": {"type": "object", "required": [*_JOB_FIELDS, "noWorker"], "properties": {
        **_JOB_FIELDS,
        "noWorker": {"type": "boolean",
                     "description": "the job is pending and no live worker serves its queue with its handler, "
                                    "so it waits (no attempt spent) for one that does"},
    }},
    "JobCreate": {
        "type": "object", "required": ["handler"], "additionalProperties": False,
        "properties": _JOB_CREATE_FIELDS,
        "allOf": [
            {"description": "dedupWindow needs dedupKey",
             "anyOf": [{"properties": {"dedupWindow": _NULL_ONLY}},
                       {"required": ["dedupKey"], "properties": {"dedupKey": {"type": "string"}}}]},
            {"description": "onParentFailure needs after",
             "anyOf": [{"properties": {"onParentFailure": _NULL_ONLY}},
                       {"required": ["after"], "properties": {"after": {"type": "array"}}}]},
            {"description": "a recurring job cannot wait for other jobs",
             "anyOf": [{"properties": {"after": _NULL_ONLY}}, {"properties": {"schedule": _NULL_ONLY}}]},
            {"description": "a time zone needs a schedule",
             "anyOf": [{"properties": {"timezone": _NULL_ONLY}},
                       {"required": ["schedule"], "properties": {"schedule": {"type": "string"}}}]},
            {"description": "delay or runAt, not both",
             "anyOf": [{"properties": {"delay": _NULL_ONLY}}, {"properties": {"runAt": _NULL_ONLY}}]},
        ],
    },
    "JobUpdate": {
        "type": "object", "additionalProperties": False,
        "description": "Fields to change; absent fields stay as they are. null clears name, schedule, timezone, "
                       "timeout.",
        "properties": {
            "name": _nullable(_text(MAX_NAME_LENGTH)),
            "data": _ref("JsonValue"),
            "schedule": _schedule("null makes the job one-off; " + _SCHEDULE_TEXT),
            "timezone": _timezone(_TIMEZONE_TEXT + ". Without a schedule in the body the job's own applies: a time "
                                  "zone for a job that has none is refused with 422, which this document cannot "
                                  "state"),
            "maxAttempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
            "priority": {"type": "integer", "minimum": -_INT32 - 1, "maximum": _INT32},
            "runAt": _RUN_AT,
            "queue": _QUEUE,
            "timeout": _nullable(_TIMEOUT),
        },
        "anyOf": [{"properties": {"timezone": _NULL_ONLY}}, {"properties": {"schedule": {"type": "string"}}}],
    },
    "JsonValue": _JSON_VALUE,
    "JobPage": {
        "type": "object", "required": ["data", "nextCursor"],
        "properties": {"data": {"type": "array", "items": _ref("Job")},
                       "nextCursor": _nullable({"type": "string", "description": "pass as ?cursor= for the "
                                                                                 "next page; null at the end"})},
    },
    "JobList": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "array", "items": _ref("Job")}},
    },
    "Throughput": {
        "type": "object", "required": ["now", "data"],
        "properties": {
            "now": {**_TIME, "description": "the server's current minute (the last entry)"},
            "data": {"type": "array", "description": "one entry per minute, oldest first, zeros included",
                     "items": {"type": "object", "required": ["minute", *_RUN_STATUSES], "properties": {
                         "minute": _TIME,
                         **{s: {"type": "integer", "minimum": 0,
                                "description": f"runs recorded as {s} that minute"} for s in _RUN_STATUSES}}}},
        },
    },
    "Run": {
        "type": "object",
        "required": ["id", "jobId", "attempt", "status", "startedAt", "completedAt", "duration", "error", "result"],
        "properties": {
            "id": {"type": "integer"}, "jobId": {"type": "integer"}, "attempt": {"type": "integer"},
            "status": {"type": "string", "enum": [s.value for s in RunStatus]},
            "workerId": _nullable(_STR), "startedAt": _nullable(_TIME), "completedAt": _nullable(_TIME),
            "duration": _nullable({"type": "number", "description": "milliseconds"}),
            "error": _nullable({**_STR, "description": "the error, with its traceback"}), "result": _ANY,
        },
    },
    "History": {"type": "object", "required": ["data"],
                "properties": {"data": {"type": "array", "items": _ref("Run")}}},
    "LocalWorker": {
        "type": "object",
        "required": ["id", "state", "concurrency", "queues", "inflight", "listenerConnected", "startedAt"],
        "properties": {
            "id": _STR, "state": {"type": "string", "enum": ["running", "stopping"]},
            "concurrency": {"type": "integer"}, "queues": {"type": "array", "items": _STR},
            "inflight": {"type": "integer"}, "listenerConnected": {"type": "boolean"}, "startedAt": _TIME,
        },
    },
    "LiveWorker": {
        "type": "object",
        "required": ["id", "hostname", "pid", "queues", "handlers", "concurrency", "startedAt", "heartbeatAt",
                     "alive"],
        "properties": {
            "id": _STR, "hostname": _STR, "pid": {"type": "integer"}, "queues": {"type": "array", "items": _STR},
            "handlers": {"type": "array", "items": _STR,
                         "description": "the handlers it runs: it claims only their jobs"},
            "concurrency": {"type": "integer"}, "startedAt": _TIME, "heartbeatAt": _TIME,
            "alive": {"type": "boolean", "description": "its last heartbeat is younger than its lease"},
        },
    },
    "Runner": {
        "type": "object", "required": ["running", "state", "workers", "liveWorkers", "lastError"],
        "properties": {
            "running": {"type": "boolean"},
            "state": {"type": "string", "enum": ["running", "stopping", "stopped"]},
            "workers": {"type": "array", "items": _ref("LocalWorker"),
                        "description": "the worker attached to this server process"},
            "liveWorkers": {"type": "array", "items": _ref("LiveWorker"),
                            "description": "every registered worker, on any host, with its heartbeat"},
            "lastError": _nullable(_STR),
        },
    },
    "RunnerStart": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "concurrency": {"type": "integer", "minimum": 1, "maximum": 10_000},
            "queues": {"type": "array", "minItems": 1, "maxItems": ser.MAX_RUNNER_QUEUES, "items": _QUEUE},
        },
    },
    "BulkFilter": {
        "type": "object", "additionalProperties": False,
        "properties": {"queue": _QUEUE, "handler": _HANDLER},
        "description": "only the jobs of this queue and/or handler; all jobs when neither is given",
    },
    "BulkDelete": {
        "type": "object", "additionalProperties": False, "required": ["olderThan"],
        "properties": {
            "queue": _QUEUE, "handler": _HANDLER,
            "olderThan": {"oneOf": [{"type": "number", "minimum": 0, "maximum": ser.MAX_DURATION},
                                    {"type": "string", "pattern": ser.DELAY_PATTERN}],
                          "description": "jobs that finished longer ago than this: seconds, or '30d', '12h'"},
        },
    },
    "Webhook": {
        "type": "object",
        "required": ["id", "url", "events", "handlers", "queues", "maxAttempts", "description", "createdAt"],
        "properties": {
            "id": {"type": "integer", "minimum": 1, "format": "int64"}, "url": _STR,
            "events": {"type": "array", "items": {"type": "string", "enum": list(EVENTS)}},
            "handlers": _nullable({"type": "array", "items": _STR, "description": "null: every handler"}),
            "queues": _nullable({"type": "array", "items": _STR, "description": "null: every queue"}),
            "maxAttempts": {"type": "integer", "minimum": 1}, "description": _nullable(_STR), "createdAt": _TIME,
            "secret": {**_STR, "description": "only in the answer to POST /webhooks: keep it, no read returns it"},
        },
    },
    "WebhookCreate": {
        "type": "object", "required": ["url", "events"], "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "maxLength": MAX_URL_LENGTH, "pattern": URL_PATTERN,
                    "description": "where deliveries are POSTed: http(s), a host name or IPv4 address, printable "
                                   "ASCII (percent-encode the rest), no user:password@, no #fragment"},
            "events": {"type": "array", "minItems": 1, "maxItems": len(EVENTS), "uniqueItems": True,
                       "items": {"type": "string", "enum": list(EVENTS)}},
            "secret": _nullable({**_text(MAX_SECRET_LENGTH, blank=False), "minLength": MIN_SECRET_LENGTH,
                                 "description": "the HMAC-SHA256 key of the signatures; null or absent: one is "
                                                "made (in the answer)"}),
            "handlers": _nullable({"type": "array", "minItems": 1, "maxItems": MAX_WEBHOOK_FILTERS,
                                   "items": _HANDLER, "description": "only jobs of these handlers; null: all"}),
            "queues": _nullable({"type": "array", "minItems": 1, "maxItems": MAX_WEBHOOK_FILTERS, "items": _QUEUE,
                                 "description": "only jobs of these queues; null: all"}),
            "maxAttempts": {"type": "integer", "minimum": 1, "maximum": MAX_WEBHOOK_ATTEMPTS,
                            "description": "attempts of each delivery before it fails (8)"},
            "description": _nullable(_text(MAX_NAME_LENGTH)),
        },
    },
    "WebhookList": {"type": "object", "required": ["data"],
                    "properties": {"data": {"type": "array", "items": _ref("Webhook")}}},
    "BulkCount": {"type": "object", "required": ["count"],
                  "properties": {"count": {"type": "integer", "minimum": 0, "description": "jobs changed"}}},
    "QueueState": {"type": "object", "required": ["queue", "paused"],
                   "properties": {"queue": _STR, "paused": {"type": "boolean"}}},
    "QueueSettings": {"type": "object", "required": ["queue", "paused", *_QUEUE_LIMITS],
                      "properties": {"queue": _STR, "paused": {"type": "boolean"}, **_QUEUE_LIMITS}},
    "QueueSettingsUpdate": {
        "type": "object", "additionalProperties": False, "minProperties": 1,
        "properties": {
            "concurrencyLimit": _nullable({"type": "integer", "minimum": 1, "maximum": _INT32,
                                           "description": "at most this many of its jobs run at once, on every "
                                                          "worker of every host together; null: no limit"}),
            "rateLimit": _nullable({"type": "string", "pattern": ser.RATE_LIMIT_PATTERN,
                                    "description": "at most N of its jobs start in any window of the period: "
                                                   "'N/period', such as '100/1m' or '50/1s' (a duration of at "
                                                   "most 1d, or a unit alone: '100/m'); null: no limit"}),
        },
        "description": "a field left out is kept; null removes that limit (docs/limits.md)",
    },
    "Queues": {
        "type": "object", "required": ["data", "completedFrom"],
        "properties": {
            "completedFrom": {
                "type": "string", "enum": [ser.COMPLETED_FROM],
                "description": "Where counts.completed comes from. 'counters': the completed one-off jobs the "
                               "history keeps (history_retention, keep_completed), exactly, from counters that "
                               "completion, pruning and deletion keep in their own transactions; not a time "
                               "window. The other statuses are counted exactly from the live jobs."},
            "data": {"type": "array", "items": {
                "type": "object",
                "required": ["queue", "counts", "total", "oldestPendingAt", "oldestPendingAgeSeconds", "paused",
                             "noWorker", *_QUEUE_LIMITS],
                "properties": {
                    "queue": _STR,
                    "counts": {"type": "object", "required": _JOB_STATUSES,
                               "properties": {s: {"type": "integer"} for s in _JOB_STATUSES}},
                    "total": {"type": "integer"},
                    "oldestPendingAt": _nullable({**_TIME, "description": "the oldest due pending job's due time"}),
                    "oldestPendingAgeSeconds": _nullable({"type": "number"}),
                    "paused": {"type": "boolean", "description": "no worker claims its jobs (POST .../resume)"},
                    "noWorker": {"type": "object", "additionalProperties": {"type": "integer"},
                                 "description": "pending jobs no live worker can run (none serves this queue with "
                                                "their handler), by handler"},
                    **_QUEUE_LIMITS,
                },
            }},
        },
    },
    "Health": {
        "type": "object", "required": ["status", "database", "listener"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "database": {"type": "boolean"},
            "listener": _nullable({"type": "boolean",
                                   "description": "the local worker's LISTEN connection; null without one"}),
        },
    },
    "Error": {
        "type": "object", "required": ["error", "message"],
        "properties": {
            "error": _STR, "message": _STR,
            "field": {**_STR, "description": "the offending field (422)"},
            "status": {**_STR, "description": "the job's status (409)"},
            "job": {**_ref("Job"), "description": "the job (409 job_failed, job_cancelled)"},
        },
    },
    # A job of a chain or group: JobCreate's fields and rules but two. It is one-off (no schedule: a recurring
    # job never completes, and would hold up what waits for it), and onParentFailure needs no after of its
    # own: the chain or group gives it parents.
    "WorkflowJob": {
        "type": "object", "required": ["handler"], "additionalProperties": False,
        "properties": {name: prop for name, prop in _JOB_CREATE_FIELDS.items() if name not in ("schedule", "timezone")},
        "allOf": [
            {"description": "dedupWindow needs dedupKey",
             "anyOf": [{"properties": {"dedupWindow": _NULL_ONLY}},
                       {"required": ["dedupKey"], "properties": {"dedupKey": {"type": "string"}}}]},
            {"description": "delay or runAt, not both",
             "anyOf": [{"properties": {"delay": _NULL_ONLY}}, {"properties": {"runAt": _NULL_ONLY}}]},
        ],
    },
    "ChainCreate": {
        "type": "object", "required": ["steps"], "additionalProperties": False,
        "properties": {"steps": {"type": "array", "minItems": 1, "maxItems": MAX_PARENTS, "items": _ref("WorkflowJob"),
                                 "description": "each step waits for the one before it (after=)"}},
    },
    "GroupCreate": {
        "type": "object", "required": ["members", "then"], "additionalProperties": False,
        "properties": {
            "members": {"type": "array", "minItems": 1, "maxItems": MAX_PARENTS, "items": _ref("WorkflowJob"),
                        "description": "jobs that run side by side"},
            "then": {**_ref("WorkflowJob"), "description": "runs once every member completed"},
        },
    },
    "CreatedJob": {"allOf": [_ref("Job"), {
        "type": "object", "required": ["existing"],
        "properties": {"existing": {"type": "boolean", "description": (
            "true when no job was added: a job holding dedupKey came back (a pending or running one, or with "
            "dedupWindow one created within it)")}}}]},
}

_ERRORS = {
    401: "no valid credentials", 403: "refused: cross-origin request or denied by a guard",
    404: "no such job (or webhook)", 409: "the job's status does not allow this", 413: "request body over 1 MiB",
    422: "invalid input; `field` names it", 503: "the database is unavailable",
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _op(summary: str, ok: dict[int, Any], errors: tuple[int, ...] = (), *, body: str | None = None,
        body_required: bool = True, params: list[dict[str, Any]] | None = None,
        public: bool = False) -> dict[str, Any]:
    responses = {str(code): response for code, response in ok.items()}
    for code in (() if public else (401, 403)) + errors:
        responses[str(code)] = _json(_ref("Error"), _ERRORS[code])
    op: dict[str, Any] = {"summary": summary, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": body_required, "content": {"application/json": {"schema": _ref(body)}}}
    if params:
        op["parameters"] = params
    if public:
        op["security"] = []
    return op


_JOB_ID = {"name": "id", "in": "path", "required": True,
           "schema": {"type": "integer", "minimum": 1, "maximum": _INT64, "format": "int64"}}
_JOB = _json(_ref("Job"), "the job")
_QUEUE_PARAM = {"name": "queue", "in": "path", "required": True, "schema": _QUEUE}
_CHANGE = (404, 409, 503)
_HTML = {"description": "HTML", "content": {"text/html": {"schema": _STR}}}
_REDIRECT = {"description": "redirect to the dashboard", "headers": {"Location": {"schema": _STR}}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_PATHS: dict[str, Any] = {
    "/jobs": {
        "get": _op("List jobs, newest first (keyset pagination)", {200: _json(_ref("JobPage"), "one page")},
                   (422, 503), params=[
                       _query("status", {"type": "string", "enum": _JOB_STATUSES}, "only this status"),
                       _query("queue", {**_text(MAX_QUEUE_LENGTH), "minLength": 1}, "only this queue"),
                       _query("handler", {**_text(MAX_NAME_LENGTH), "minLength": 1}, "only this handler"),
                       _query("data", {"type": "string", "pattern": ser.DATA_FILTER_PATTERN},
                              "only jobs whose data contains this JSON object (jsonb @>): {\"user\": 7} matches "
                              "{\"user\": 7, \"plan\": \"pro\"}; the text must parse as JSON, with no NUL "
                              "(\\u0000) and at most 256 levels deep, else 422"),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                              f"page size ({ser.DEFAULT_PAGE})"),
                       _query("cursor", {"type": "string", "pattern": ser.CURSOR_PATTERN},
                              "nextCursor of the previous page"),
                   ]),
        "post": _op("Enqueue a job (or, with dedupKey, get the job holding the key: existing)",
                    {201: {**_json(_ref("CreatedJob"), "the job"), "headers": {"Location": {"schema": _STR}}}},
                    (413, 422, 503), body="JobCreate"),
    },
    "/jobs/{id}": {
        "get": _op("Get a job", {200: _JOB}, (404, 503), params=[_JOB_ID]),
        "put": _op("Change a job's fields (not a completed job's)", {200: _JOB}, (404, 409, 413, 422, 503),
                   body="JobUpdate", params=[_JOB_ID]),
        "delete": _op("Delete a job and its history", {204: {"description": "deleted"}}, (404, 503),
                      params=[_JOB_ID]),
    },
    "/jobs/{id}/trigger": {"post": _op("Run a job now", {200: _JOB}, _CHANGE, params=[_JOB_ID])},
    "/jobs/{id}/cancel": {"post": _op("Cancel a pending or running job", {200: _JOB}, _CHANGE, params=[_JOB_ID])},
    "/jobs/{id}/retry": {"post": _op("Re-queue a failed or cancelled job", {200: _JOB}, _CHANGE,
                                     params=[_JOB_ID])},
    "/jobs/{id}/wait": {"get": _op(
        "Wait until a job finishes (a long poll, woken by the job's completion)",
        {200: _json(_ref("Job"), "it completed: its result is in result"),
         202: _json(_ref("Job"), "timeout passed first: the job as it stands (ask again)"),
         409: _json(_ref("Error"), "error job_failed or job_cancelled: it failed (its attempts spent) or was "
                                   "cancelled, the job in job; error conflict: it is recurring, and never finishes")},
        (404, 422, 503), params=[_JOB_ID, _query(
            "timeout", {"type": "number", "minimum": ser.MIN_WAIT, "maximum": ser.MAX_WAIT},
            f"seconds to wait at most (default {ser.DEFAULT_WAIT:g}, at most {ser.MAX_WAIT:g})")])},
    "/jobs/{id}/history": {"get": _op("A job's runs, oldest first", {200: _json(_ref("History"), "the runs")},
                                      (404, 503), params=[_JOB_ID])},
    "/jobs/runner": {"get": _op("This process's worker and every live worker", {200: _json(_ref("Runner"), "")},
                                (503,))},
    "/jobs/runner/start": {"post": _op("Start a worker in this process", {201: _json(_ref("Runner"), "started")},
                                       (409, 413, 422, 503), body="RunnerStart", body_required=False)},
    "/jobs/runner/stop": {"post": _op("Drain and stop this process's worker",
                                      {202: _json(_ref("Runner"), "stopping")}, (409, 503))},
    "/queues": {"get": _op("Job counts per queue and status", {200: _json(_ref("Queues"), "")}, (503,))},
    "/schedules": {"get": _op("Every recurring job, soonest first, with its next runs (nextRuns)",
                              {200: _json(_ref("JobList"), "the recurring jobs")}, (503,))},
    "/stats/throughput": {"get": _op(
        "Recorded runs per minute and status over the last minutes, from the history (a scan of it: no index "
        "on completion times)", {200: _json(_ref("Throughput"), "per minute")}, (422, 503), params=[
            _query("minutes", {"type": "integer", "minimum": 1, "maximum": MAX_THROUGHPUT_MINUTES},
                   "how many minutes, the current one included (60)")])},
    "/queues/{queue}/pause": {"post": _op(
        "Pause a queue for every worker on every host (stored; running jobs finish)",
        {200: _json(_ref("QueueState"), "paused")}, (422, 503), params=[_QUEUE_PARAM])},
    "/queues/{queue}/resume": {"post": _op("Resume a paused queue", {200: _json(_ref("QueueState"), "resumed")},
                                           (422, 503), params=[_QUEUE_PARAM])},
    "/queues/{queue}/settings": {"post": _op(
        "Set or remove a queue's concurrency and rate limits, for every worker on every host (stored)",
        {200: _json(_ref("QueueSettings"), "the queue's settings now")}, (413, 422, 503),
        body="QueueSettingsUpdate", params=[_QUEUE_PARAM])},
    "/chains": {"post": _op("Enqueue jobs that run one after another, in one transaction",
                            {201: _json({"type": "object", "required": ["data"],
                                         "properties": {"data": {"type": "array", "items": _ref("Job")}}},
                                        "the steps, in order: the first pending, the others waiting")},
                            (413, 422, 503), body="ChainCreate")},
    "/groups": {"post": _op("Enqueue jobs side by side and a callback after all of them, in one transaction",
                            {201: _json({"type": "object", "required": ["members", "then"],
                                         "properties": {"members": {"type": "array", "items": _ref("Job")},
                                                        "then": _ref("Job")}},
                                        "the members, and the callback (waiting)")},
                            (413, 422, 503), body="GroupCreate")},
    "/bulk/retry-failed": {"post": _op("Re-queue every failed job (of a queue and/or handler), due now",
                                       {200: _json(_ref("BulkCount"), "how many")}, (413, 422, 503),
                                       body="BulkFilter", body_required=False)},
    "/bulk/cancel-pending": {"post": _op("Cancel every pending job (of a queue and/or handler)",
                                         {200: _json(_ref("BulkCount"), "how many")}, (413, 422, 503),
                                         body="BulkFilter", body_required=False)},
    "/bulk/delete-finished": {"post": _op(
        "Delete the jobs (of a queue and/or handler) that finished longer ago than olderThan, with their history",
        {200: _json(_ref("BulkCount"), "how many")}, (413, 422, 503), body="BulkDelete")},
    "/webhooks": {
        "get": _op("Every webhook, oldest first (without secrets)", {200: _json(_ref("WebhookList"), "")}, (503,)),
        "post": _op("Register a URL for job events, for every worker (docs/webhooks.md)",
                    {201: {**_json(_ref("Webhook"), "the webhook, with its secret"),
                           "headers": {"Location": {"schema": _STR}}}}, (413, 422, 503), body="WebhookCreate"),
    },
    "/webhooks/{id}": {"delete": _op("Remove a webhook (its deliveries not sent yet are cancelled)",
                                     {204: {"description": "removed"}}, (404, 503), params=[_JOB_ID])},
    "/health": {"get": _op("Database reachable and listener connected (no credentials needed)",
                           {200: _json(_ref("Health"), "healthy"), 503: _json(_ref("Health"), "unhealthy")},
                           public=True)},
    "/openapi.json": {"get": _op("This document", {200: _json({"type": "object"}, "OpenAPI 3.0")})},
    "/metrics": {"get": _op(
        "Prometheus metrics of this process (see docs/metrics.md); without credentials when the server was "
        "created with public_metrics=True",
        {200: {"description": "the Prometheus text format (OpenMetrics when the Accept header asks for it)",
               "content": {"text/plain": {"schema": _STR}, "application/openmetrics-text": {"schema": _STR}}},
         404: _json(_ref("Error"), "metrics are not enabled: aiojobs_pg.metrics.instrument(app) was not called")})},
    "/": {"get": {"summary": "To the dashboard", "responses": {"307": _REDIRECT,
                                                                "401": {**_HTML, "description": "sign-in form"}}}},
    "/dashboard": {"get": {"summary": "The dashboard",
                           "responses": {"200": _HTML, "401": {**_HTML, "description": "sign-in form"},
                                         "403": _json(_ref("Error"), _ERRORS[403])}}},
    "/login": {"post": {
        "summary": "Start a dashboard session (HttpOnly cookie) with a token", "security": [],
        "requestBody": {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": {
            "type": "object", "required": ["token"], "properties": {"token": _STR}}}}},
        "responses": {"303": _REDIRECT, "401": {**_HTML, "description": "invalid token: the form again"},
                      "403": _json(_ref("Error"), _ERRORS[403]), "413": _json(_ref("Error"), _ERRORS[413])}}},
    "/logout": {"post": {"summary": "End the dashboard session",
                         "responses": {"303": _REDIRECT, "401": _json(_ref("Error"), _ERRORS[401]),
                                       "403": _json(_ref("Error"), _ERRORS[403])}}},
}


def openapi_document(base_path: str = "") -> dict[str, Any]:
    """The document; ``base_path`` is where the API is mounted ('' at the root)."""
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "aiojobs_pg management API", "version": "1",
                 "description": "Jobs, history, queues and workers of an aiojobs_pg App. Times are ISO 8601 "
                                "UTC. Errors are {error, message[, field]}. The schemas state the server's "
                                "constraints: a request they allow is accepted, but for the few semantic checks "
                                "that fields' descriptions name (422). A method a path does not serve is 405, "
                                "with every method it serves in Allow."},
        "paths": copy.deepcopy(_PATHS),
        "components": {
            "schemas": copy.deepcopy(_SCHEMAS),
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "AIOJOBS_PG_API_TOKEN, or a token passed in code"},
                "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "aiojobs_pg_session",
                                  "description": "set by POST /login (the dashboard)"},
            },
        },
        "security": [{"bearerAuth": []}, {"sessionCookie": []}],
    }
    if base_path:
        doc["servers"] = [{"url": base_path}]
    return doc
