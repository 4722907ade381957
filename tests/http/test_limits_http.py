"""Limits in the HTTP API (docs/limits.md): a queue's settings, GET /queues, a job's concurrencyKey."""

from __future__ import annotations

import re

import httpx
import jsonschema
import pytest

from aiojobs_pg import App
from aiojobs_pg.admin import QueueSettings
from aiojobs_pg.errors import ValidationError
from aiojobs_pg.http import serialize as ser
from aiojobs_pg.validation import RateLimit, parse_rate_limit
from tests.http.test_openapi_constraints import body_schema


async def test_a_queue_s_limits_are_set_kept_and_removed(client: httpx.AsyncClient, app: App) -> None:
    set_ = await client.post("/queues/mail%2Fout/settings", json={"concurrencyLimit": 5, "rateLimit": "50/1s"})
    assert set_.status_code == 200
    assert set_.json() == {"queue": "mail/out", "paused": False, "concurrencyLimit": 5, "rateLimit": "50/1s"}
    assert (await app.admin().queue_settings())["mail/out"] == QueueSettings("mail/out", False, 5, RateLimit(50, 1.0))
    # a field left out is kept; null removes the limit
    kept = await client.post("/queues/mail%2Fout/settings", json={"rateLimit": "100/m"})
    assert kept.json() == {"queue": "mail/out", "paused": False, "concurrencyLimit": 5, "rateLimit": "100/1m"}
    cleared = await client.post("/queues/mail%2Fout/settings", json={"concurrencyLimit": None})
    assert cleared.json()["concurrencyLimit"] is None and cleared.json()["rateLimit"] == "100/1m"
    # GET /queues shows them, for a queue with no job too
    queues = (await client.get("/queues")).json()["data"]
    assert [(q["queue"], q["concurrencyLimit"], q["rateLimit"]) for q in queues] == [("mail/out", None, "100/1m")]


@pytest.mark.parametrize(("body", "field"), [
    ({}, "body"),
    ({"paused": True}, "paused"),
    ({"concurrencyLimit": 0}, "concurrencyLimit"),
    ({"concurrencyLimit": True}, "concurrencyLimit"),
    ({"concurrencyLimit": "5"}, "concurrencyLimit"),
    ({"rateLimit": "50"}, "rateLimit"),
    ({"rateLimit": " 50/1s"}, "rateLimit"),
    ({"rateLimit": "50/2d"}, "rateLimit"),
    ({"rateLimit": 50}, "rateLimit"),
])
async def test_bad_settings_are_refused_naming_the_field(client: httpx.AsyncClient, app: App, body: dict[str, object],
                                                         field: str) -> None:
    response = await client.post("/queues/q/settings", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert await app.admin().queue_settings() == {}  # nothing was written


async def test_a_job_s_concurrency_key_goes_in_and_out(client: httpx.AsyncClient) -> None:
    created = await client.post("/jobs", json={"handler": "echo", "concurrencyKey": "customer-42"})
    assert created.status_code == 201 and created.json()["concurrencyKey"] == "customer-42"
    assert (await client.get(f"/jobs/{created.json()['id']}")).json()["concurrencyKey"] == "customer-42"
    blank = await client.post("/jobs", json={"handler": "echo", "concurrencyKey": " "})
    assert blank.status_code == 422 and blank.json()["field"] == "concurrencyKey"


def test_the_document_states_what_the_server_reads_as_a_rate_limit() -> None:
    schema = body_schema("/queues/{queue}/settings", "post")
    pattern = re.compile(ser.RATE_LIMIT_PATTERN)
    for text in ["1/1s", "100/m", "5/0.5", "2147483647/1d", "007/86400", "3/90S"]:
        assert pattern.fullmatch(text) and schema.is_valid({"rateLimit": text})
        parse_rate_limit(text)
    for text in ["0/1s", "2147483648/1s", "1/0", "1/86401", "1/2d", "1/1.5s", "1 /1s", "1/"]:
        assert not pattern.fullmatch(text) and not schema.is_valid({"rateLimit": text})
        with pytest.raises((ValidationError, jsonschema.ValidationError)):
            ser.queue_settings_kwargs({"rateLimit": text})
