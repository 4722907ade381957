"""The OpenAPI 3.0 document served at ``/openapi.json``.

Written by hand to say exactly what the handlers do; ``tests/http`` checks it
against the running server with schemathesis.
"""

from __future__ import annotations

import copy
from typing import Any

from ..models import JobStatus, RunStatus

_INT32 = 2**31 - 1
_INT64 = 2**63 - 1
_JOB_STATUSES = [s.value for s in JobStatus]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_STR = {"type": "string"}
_TIME = {"type": "string", "format": "date-time"}
_ANY: dict[str, Any] = {"nullable": True, "description": "any JSON value"}
_DURATION = {
    "description": "seconds (a number, or a string like '30', '1.5', '30s', '10m', '2h', '1d')",
    "oneOf": [{"type": "number", "minimum": 0}, {"type": "string", "maxLength": 40}],
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
}

_SCHEMAS: dict[str, Any] = {
    "Job": {"type": "object", "required": list(_JOB_FIELDS), "properties": _JOB_FIELDS},
    "JobCreate": {
        "type": "object", "required": ["handler"], "additionalProperties": False,
        "properties": {
            "handler": {"type": "string", "minLength": 1, "maxLength": 500},
            "name": _nullable({"type": "string", "maxLength": 500}),
            "data": _ANY,
            "schedule": _nullable({"type": "string", "maxLength": 200,
                                   "description": "an interval ('10m') or a 5/6-field cron expression"}),
            "timezone": _nullable({"type": "string", "description": "IANA time zone of a cron schedule"}),
            "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 10_000},
            "queue": {"type": "string", "minLength": 1, "maxLength": 100},
            "priority": {"type": "integer", "minimum": -_INT32, "maximum": _INT32},
            "runAt": _nullable({**_TIME, "description": "with a time zone offset; not with delay"}),
            "delay": _nullable(_DURATION),
            "dedupKey": _nullable({"type": "string", "maxLength": 500}),
            "timeout": _nullable(_DURATION),
        },
    },
    "JobUpdate": {
        "type": "object", "additionalProperties": False,
        "description": "Fields to change; absent fields stay as they are. null clears name, schedule, timezone, "
                       "timeout.",
        "properties": {
            "name": _nullable({"type": "string", "maxLength": 500}),
            "data": _ANY,
            "schedule": _nullable({"type": "string", "maxLength": 200}),
            "timezone": _nullable(_STR),
            "maxAttempts": {"type": "integer", "minimum": 1, "maximum": 10_000},
            "priority": {"type": "integer", "minimum": -_INT32, "maximum": _INT32},
            "runAt": _TIME,
            "queue": {"type": "string", "minLength": 1, "maxLength": 100},
            "timeout": _nullable(_DURATION),
        },
    },
    "JobPage": {
        "type": "object", "required": ["data", "nextCursor"],
        "properties": {"data": {"type": "array", "items": _ref("Job")},
                       "nextCursor": _nullable({"type": "string", "description": "pass as ?cursor= for the "
                                                                                 "next page; null at the end"})},
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
        "required": ["id", "hostname", "pid", "queues", "concurrency", "startedAt", "heartbeatAt"],
        "properties": {
            "id": _STR, "hostname": _STR, "pid": {"type": "integer"}, "queues": {"type": "array", "items": _STR},
            "concurrency": {"type": "integer"}, "startedAt": _TIME, "heartbeatAt": _TIME,
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
            "queues": {"type": "array", "minItems": 1, "maxItems": 50,
                       "items": {"type": "string", "minLength": 1, "maxLength": 100}},
        },
    },
    "Queues": {
        "type": "object", "required": ["data"],
        "properties": {"data": {"type": "array", "items": {
            "type": "object",
            "required": ["queue", "counts", "total", "oldestPendingAt", "oldestPendingAgeSeconds"],
            "properties": {
                "queue": _STR,
                "counts": {"type": "object", "required": _JOB_STATUSES,
                           "properties": {s: {"type": "integer"} for s in _JOB_STATUSES}},
                "total": {"type": "integer"},
                "oldestPendingAt": _nullable({**_TIME, "description": "the oldest due pending job's due time"}),
                "oldestPendingAgeSeconds": _nullable({"type": "number"}),
            },
        }}},
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
        },
    },
}

_ERRORS = {
    401: "no valid credentials", 403: "refused: cross-origin request or denied by a guard",
    404: "no such job", 409: "the job's status does not allow this", 413: "request body over 1 MiB",
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
                       _query("queue", {"type": "string", "minLength": 1, "maxLength": 100}, "only this queue"),
                       _query("handler", {"type": "string", "minLength": 1, "maxLength": 500}, "only this handler"),
                       _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size (50)"),
                       _query("cursor", {"type": "string", "pattern": "^[1-9][0-9]{0,18}$"},
                              "nextCursor of the previous page"),
                   ]),
        "post": _op("Enqueue a job", {201: {**_JOB, "headers": {"Location": {"schema": _STR}}}},
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
    "/jobs/{id}/history": {"get": _op("A job's runs, oldest first", {200: _json(_ref("History"), "the runs")},
                                      (404, 503), params=[_JOB_ID])},
    "/jobs/runner": {"get": _op("This process's worker and every live worker", {200: _json(_ref("Runner"), "")},
                                (503,))},
    "/jobs/runner/start": {"post": _op("Start a worker in this process", {201: _json(_ref("Runner"), "started")},
                                       (409, 413, 422, 503), body="RunnerStart", body_required=False)},
    "/jobs/runner/stop": {"post": _op("Drain and stop this process's worker",
                                      {202: _json(_ref("Runner"), "stopping")}, (409, 503))},
    "/queues": {"get": _op("Job counts per queue and status", {200: _json(_ref("Queues"), "")}, (503,))},
    "/health": {"get": _op("Database reachable and listener connected (no credentials needed)",
                           {200: _json(_ref("Health"), "healthy"), 503: _json(_ref("Health"), "unhealthy")},
                           public=True)},
    "/openapi.json": {"get": _op("This document", {200: _json({"type": "object"}, "OpenAPI 3.0")})},
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
                                "UTC. Errors are {error, message[, field]}."},
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
