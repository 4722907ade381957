"""The OpenAPI document states the server's constraints: what it allows is accepted, what it rules out refused.

The fuzz test (``test_openapi_fuzz.py``) checks this against the live server with
generated requests; these tests pin the cases the independent check reported,
and check the patterns of :mod:`aiojobs_pg.http.serialize` (which the document
states and the server enforces) against the core's own parsers.
"""

from __future__ import annotations

import copy
import re
import zoneinfo
from datetime import date, time, timedelta
from typing import Any

import httpx
import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from aiojobs_pg.errors import ValidationError
from aiojobs_pg.http import serialize as ser
from aiojobs_pg.http.openapi import openapi_document
from aiojobs_pg.schedules import parse_duration, parse_schedule
from aiojobs_pg.validation import MAX_DELAY, check_text

DOC = openapi_document()


def _json_schema(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable`` as JSON Schema (draft 4, which 3.0 extends)."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _json_schema(value) for key, value in schema.items() if key != "nullable"}
    return {"anyOf": [converted, {"type": "null"}]} if schema.get("nullable") else converted


def validator(schema: dict[str, Any]) -> jsonschema.Draft4Validator:
    """A validator of ``schema``, whose ``$ref``s point into the document's components."""
    root = {**_json_schema(schema), "components": _json_schema(copy.deepcopy(DOC["components"]))}
    return jsonschema.Draft4Validator(root, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def body_schema(path: str, method: str) -> jsonschema.Draft4Validator:
    return validator(DOC["paths"][path][method]["requestBody"]["content"]["application/json"]["schema"])


def query_schema(name: str) -> jsonschema.Draft4Validator:
    params = {p["name"]: p["schema"] for p in DOC["paths"]["/jobs"]["get"]["parameters"]}
    return validator(params[name])


async def job_id(client: httpx.AsyncClient, **body: Any) -> int:
    response = await client.post("/jobs", json={"handler": "echo", **body})
    assert response.status_code == 201, response.text
    created: int = response.json()["id"]
    return created


# --- what the check reported, and its neighbours: ruled out by the document, refused by the server ---

@pytest.mark.parametrize(("body", "field"), [
    ({"timeout": ""}, "timeout"),                       # an empty-string timeout
    ({"delay": 1.49e308}, "delay"),                     # a delay of 1.49e308 s
    ({"delay": 3162240000.000001}, "delay"),            # just over 36600 days
    ({"delay": "36601d"}, "delay"), ({"delay": " 5m"}, "delay"), ({"delay": "1.0000001"}, "delay"),
    ({"timeout": 0}, "timeout"), ({"timeout": "0.0000001"}, "timeout"), ({"timeout": 0.0000009}, "timeout"),
    ({"timeout": "00"}, "timeout"), ({"timeout": 4e9}, "timeout"),
    ({"timezone": "Europe/Paris"}, "timezone"),         # a time zone without a schedule
    ({"timezone": "Europe/Paris", "schedule": None}, "timezone"),
    ({"delay": 5, "runAt": "2030-01-01T00:00:00Z"}, "delay"),
    ({"runAt": "2030-01-01T00:00Z"}, "runAt"), ({"runAt": "2030-01-01 00:00:00Z"}, "runAt"),
    ({"runAt": "0001-01-01T03:00:00+05:00"}, "runAt"), ({"runAt": "9999-12-31T23:00:00-01:00"}, "runAt"),
    ({"runAt": "2030-01-01T23:59:60Z"}, "runAt"),
    ({"schedule": ""}, "schedule"), ({"schedule": "0s"}, "schedule"), ({"schedule": "3661d"}, "schedule"),
    ({"schedule": "* * * *"}, "schedule"), ({"schedule": "@often"}, "schedule"),
    ({"handler": " "}, "handler"), ({"queue": "\t"}, "queue"), ({"name": "a\x00b"}, "name"),
    ({"dedupKey": "\x00"}, "dedupKey"), ({"data": {"text": "\x00"}}, "data"),
    ({"priority": -(2**31) - 1}, "priority"),
])
async def test_create_bodies_the_document_rules_out_are_refused(
        client: httpx.AsyncClient, body: dict[str, Any], field: str) -> None:
    body = {"handler": "echo", **body}
    assert not body_schema("/jobs", "post").is_valid(body), body
    response = await client.post("/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize("body", [
    {"priority": -(2**31)}, {"priority": 2**31 - 1}, {"delay": 0}, {"delay": "3162240000"}, {"delay": "36600d"},
    {"delay": "000.5"}, {"delay": "5."}, {"delay": ".000001"}, {"timeout": "0.000001"}, {"timeout": 0.000001},
    {"timeout": "3162240000.000000"}, {"timeout": "1S"}, {"runAt": "0001-01-02T00:00:00+23:59"},
    {"runAt": "9999-12-30T23:59:59.999999999-23:59"}, {"runAt": "2030-06-01T12:00:00.5+02:00"},
    {"schedule": " 3660D\u3000"}, {"schedule": "@Hourly"}, {"schedule": "*/10 * * * * *"}, {"name": ""},
    {"schedule": "0 9 * * MON", "timezone": "Etc/GMT+5"}, {"dedupKey": " "}, {"data": {"a": [1, "b", None]}},
    {"queue": " q "}, {"timezone": None, "runAt": None, "delay": None, "schedule": None, "timeout": None},
])
async def test_create_bodies_the_document_allows_are_accepted(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    body = {"handler": "echo", **body}
    body_schema("/jobs", "post").validate(body)
    response = await client.post("/jobs", json=body)
    assert response.status_code == 201, response.text


async def test_update_bodies(client: httpx.AsyncClient) -> None:
    one_off = await job_id(client)
    recurring = await job_id(client, schedule="1h")
    schema = body_schema("/jobs/{id}", "put")
    # a time zone and schedule: null together are ruled out; both refused
    for body in ({"schedule": None, "timezone": "UTC"}, {"runAt": None}, {"timeout": ""}, {"queue": ""}):
        assert not schema.is_valid(body), body
        assert (await client.put(f"/jobs/{recurring}", json=body)).status_code == 422, body
    # a time zone alone depends on the job, which the document can only say in words
    assert schema.is_valid({"timezone": "Europe/Paris"})
    assert "422" in DOC["components"]["schemas"]["JobUpdate"]["properties"]["timezone"]["description"]
    assert (await client.put(f"/jobs/{recurring}", json={"timezone": "Europe/Paris"})).status_code == 200
    refused = await client.put(f"/jobs/{one_off}", json={"timezone": "Europe/Paris"})
    assert refused.status_code == 422 and refused.json()["field"] == "timezone"


@pytest.mark.parametrize(("name", "value"), [
    ("queue", "a\x00b"), ("handler", "\x00"),          # NUL in query filters
    ("cursor", "9223372036854775808"),                 # a cursor above 2**63 - 1
    ("cursor", "99999999999999999999"), ("cursor", "01"), ("queue", ""), ("queue", "q" * 101),
])
async def test_query_values_the_document_rules_out_are_refused(client: httpx.AsyncClient, name: str,
                                                               value: str) -> None:
    assert not query_schema(name).is_valid(value)
    response = await client.get("/jobs", params={name: value})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == name


async def test_query_values_the_document_allows_are_accepted(client: httpx.AsyncClient) -> None:
    for name, value in [("cursor", "9223372036854775807"), ("cursor", "1"), ("queue", " "), ("handler", "h" * 500)]:
        query_schema(name).validate(value)
        response = await client.get("/jobs", params={name: value})
        assert response.status_code == 200, response.text


def test_runner_start_schema_matches_the_limit() -> None:
    schema = body_schema("/jobs/runner/start", "post")
    assert schema.is_valid({"queues": ["q"] * ser.MAX_RUNNER_QUEUES})
    assert not schema.is_valid({"queues": ["q"] * (ser.MAX_RUNNER_QUEUES + 1)})
    assert not schema.is_valid({"queues": [" "]})


# --- the patterns against the core's parsers ---

def test_numbers_to_matches_exactly_zero_or_one_to_n() -> None:
    for n in [*range(0, 130), 999, 1000, 1001, 3162240000, 2**63 - 1]:
        for zero in (True, False) if n else (True,):
            pattern = re.compile(ser._numbers_to(n, zero=zero))
            probes = {*range(0, min(n, 2000) + 3), n - 1, n, n + 1, 10 * n, n // 10}
            for k in probes:
                assert bool(pattern.fullmatch(str(k))) == ((0 if zero else 1) <= k <= n), (n, zero, k)
            assert not pattern.fullmatch("01") and not pattern.fullmatch("")


_DECIMAL = st.from_regex(r"\A[0-9]{0,11}(\.[0-9]{0,8})?[smhdSMHD]?\Z")


def _core_seconds(text: str, *, allow_zero: bool) -> float | None:
    try:
        return parse_duration(text, allow_zero=allow_zero).total_seconds()
    except ValidationError:
        return None


@given(_DECIMAL)
def test_duration_patterns_are_the_core_less_spaces_long_decimals_and_over_36600_days(text: str) -> None:
    decimals = len(text.partition(".")[2].rstrip("smhdSMHD"))
    for pattern, zero in ((ser.DELAY_PATTERN, True), (ser.TIMEOUT_PATTERN, False)):
        seconds = _core_seconds(text, allow_zero=zero)
        expected = seconds is not None and seconds <= MAX_DELAY.total_seconds() and decimals <= 6
        assert bool(re.fullmatch(pattern, text)) == expected, (text, pattern is ser.TIMEOUT_PATTERN)


@given(st.from_regex(ser.TIMEOUT_PATTERN, fullmatch=True) | st.from_regex(ser.DELAY_PATTERN, fullmatch=True))
def test_every_duration_the_patterns_allow_is_accepted(text: str) -> None:
    zero = not re.fullmatch(ser.TIMEOUT_PATTERN, text)
    seconds = _core_seconds(text, allow_zero=zero)
    assert seconds is not None and seconds <= MAX_DELAY.total_seconds()
    assert ser.check_duration(text, "delay" if zero else "timeout") == text


@given(st.dates(), st.times(), st.integers(-1439, 1439), st.integers(0, 9))
def test_every_date_time_the_pattern_allows_is_accepted(day: date, moment: time, offset: int, digits: int) -> None:
    sign, minutes = ("-" if offset < 0 else "+"), abs(offset)
    zone = "Z" if offset == 0 and digits % 2 else f"{sign}{minutes // 60:02d}:{minutes % 60:02d}"
    fraction = f".{moment.microsecond:06d}{'0' * digits}"[: digits + 1] if digits else ""
    text = f"{day.isoformat()}T{moment.strftime('%H:%M:%S')}{fraction}{zone}"
    if re.fullmatch(ser.DATE_TIME_PATTERN, text):
        ser.parse_time(text, "runAt")  # no overflow: the first and last days are ruled out
    else:
        assert day in (date.min, date.max), text
        with pytest.raises(ValidationError, match="range"):
            ser.parse_time(text, "runAt")


@given(st.text())
def test_text_patterns_are_the_cores_text_checks(text: str) -> None:
    def accepted(*, required: bool) -> bool:
        try:
            check_text(text, "f", max_length=10**9, required=required)
        except ValidationError:
            return False
        return True

    assert bool(re.search(ser.NOT_BLANK_PATTERN, text)) == accepted(required=True)
    assert bool(re.search(ser.NO_NUL_PATTERN, text)) == accepted(required=False)


_CRON_FIELD = st.from_regex(r"\A[0-9*/,#?LW-]{1,5}\Z") | st.sampled_from(["MON", "jan-mar", "SUN#2", "5L", "?"])
_SPACES = st.text(alphabet=" \t\u3000\x1c", min_size=1, max_size=2)
_SCHEDULES = (st.lists(st.tuples(_CRON_FIELD, _SPACES), min_size=5, max_size=6)
              .map(lambda fields: "".join(f + s for f, s in fields))
              | st.from_regex(r"\A *[0-9]{1,9}[smhdSMHD] *\Z")
              | st.sampled_from(["@yearly", "@Annually", "@MONTHLY", "@weekly", "@daily", "@midnight", "@hourly"]))


@given(_SCHEDULES)
def test_every_schedule_the_core_accepts_matches_the_pattern(text: str) -> None:
    try:
        parse_schedule(text)
    except ValidationError:
        return
    assert re.fullmatch(ser.SCHEDULE_PATTERN, text), text


@given(st.from_regex(ser.SCHEDULE_PATTERN, fullmatch=True))
def test_every_interval_and_alias_the_pattern_allows_is_accepted(text: str) -> None:
    if len(text.split()) == 1:  # cron expressions: the pattern gives their syntax only (see the description)
        parse_schedule(text)


def test_every_known_time_zone_matches_the_pattern() -> None:
    zones = zoneinfo.available_timezones()
    assert zones and all(re.fullmatch(ser.TIMEZONE_PATTERN, zone) for zone in zones)


def test_next_runs_are_documented() -> None:
    job = DOC["components"]["schemas"]["Job"]
    assert "nextRuns" in job["required"] and job["properties"]["nextRuns"]["maxItems"] == ser.NEXT_RUNS
    assert "[] for a one-off job" in job["properties"]["nextRuns"]["description"]
    assert timedelta(seconds=ser.MAX_DURATION) == MAX_DELAY
