"""Schemathesis against the live server: every documented operation, generated inputs, no 5xx.

The schema under test is the document the code builds; the first test checks the
server serves exactly that document, so the fuzzing covers ``/openapi.json``.
Both ways round: a request the document rules out must be refused
(``negative_data_rejection``), and one it allows must be accepted
(``positive_data_acceptance``). For the second, a valid request gets what the
document cannot give it (:func:`complete`: a job that exists, a registered
handler, a cron expression and a time zone the server knows), so that the rest
of it is what the server judges; the few refusals left that the document cannot
rule out are listed, with why, in :func:`expected_refusal`.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    allow_header_conformance,
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
)

from aiojobs_pg.errors import InvalidSchedule  # noqa: E402
from aiojobs_pg.http.openapi import openapi_document  # noqa: E402
from aiojobs_pg.schedules import parse_schedule  # noqa: E402
from tests.http.conftest import METRICS, LiveServer, bearer  # noqa: E402

# schemathesis's own strategies trip a Hypothesis deprecation warning on some versions
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
# A valid request is accepted: 2xx, or a redirect (/, /login, /logout). Any other answer to one must be
# a refusal that expected_refusal lists.
CONFIG = schemathesis.Config.from_dict({"checks": {"positive_data_acceptance": {"expected-statuses": ["2xx", "3xx"]}}})
schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)
#: examples per operation; raise it for a longer hunt (AIOJOBS_PG_FUZZ_EXAMPLES=500)
EXAMPLES = int(os.environ.get("AIOJOBS_PG_FUZZ_EXAMPLES", "30"))


def is_valid(case: schemathesis.Case) -> bool:
    """Whether schemathesis generated ``case`` to match the document (positive mode)."""
    return case.meta is not None and case.meta.generation.mode.is_positive


def complete(case: schemathesis.Case, api: httpx.Client) -> None:
    """Give a valid request what the document cannot state, so the server judges the rest of it.

    * ``{id}``: a job that exists (a recurring one, next due in 2100), or under ``/webhooks`` a webhook:
      any id in range is valid, but only an existing one gets as far as its body;
    * ``handler``: one the server registered (handlers are registered in code, not listed), in a chain's
      or group's jobs too;
    * ``timezone`` and ``schedule``: a zone the server's tz database has, and a cron expression whose
      fields are in range and whose dates occur (the document gives their syntax; the server's
      refusal of the others is tested in ``test_jobs.py``).
    """
    if not is_valid(case):
        return
    if "id" in (case.path_parameters or {}) and case.path.startswith("/webhooks/"):
        created = api.post("/webhooks", json={"url": "https://receiver.example/hooks", "events": ["failed"]})
        case.path_parameters["id"] = created.json()["id"]  # a webhook that exists
    elif "id" in (case.path_parameters or {}):
        created = api.post("/jobs", json={"handler": "echo", "schedule": "1h", "runAt": "2100-01-01T00:00:00Z"})
        case.path_parameters["id"] = created.json()["id"]
    body = case.body
    if not isinstance(body, dict):
        return
    if case.method.upper() == "POST" and case.path == "/jobs":
        body["handler"] = "echo"
    if case.method.upper() == "POST" and case.path in ("/chains", "/groups"):
        for item in [*body.get("steps", []), *body.get("members", []), body.get("then")]:
            if isinstance(item, dict):
                item["handler"] = "echo"
    if isinstance(body.get("timezone"), str):
        try:
            parse_schedule("1h", body["timezone"])
        except InvalidSchedule:
            body["timezone"] = "Europe/Paris"
    if isinstance(body.get("schedule"), str):
        zone = body.get("timezone")
        try:
            parse_schedule(body["schedule"], zone if isinstance(zone, str) else None)
        except InvalidSchedule:
            body["schedule"] = "*/5 * * * *"


def _nul_in_a_key(value: object) -> bool:
    if isinstance(value, dict):
        return any("\x00" in key or _nul_in_a_key(item) for key, item in value.items())
    return isinstance(value, list) and any(_nul_in_a_key(item) for item in value)


def expected_refusal(case: schemathesis.Case, response: Any) -> bool:
    """Whether the server's refusal of a valid (and :func:`complete`) request is one the document cannot rule out."""
    path, status = case.path, response.status_code
    if status == 409 and (path in ("/jobs/{id}/retry", "/jobs/runner/start", "/jobs/runner/stop")):
        return True  # state, not input: the job is pending (nothing to retry); a worker runs already, or none does
    if status == 409 and path == "/jobs/{id}/wait":
        return True  # complete() gives {id} a recurring job, which never finishes: there is nothing to wait for
    if status == 401 and path == "/login":
        return True  # any string is a well-formed token; only the right one signs in
    if status == 404 and path == "/metrics" and not METRICS:
        return True  # without the metrics extra the server cannot enable them
    if status != 422:
        return False
    try:
        error = response.json()
    except ValueError:
        return False
    if path == "/jobs" and case.method.upper() == "GET" and error.get("field") == "data":
        return True  # ?data=: the document gives a JSON object's outline ({...}); whether it parses is the server's
    body = case.body if isinstance(case.body, dict) else {}
    if str(error.get("field")).rpartition(".")[2] == "after" and (
            "not found" in error.get("message", "") or "recurring" in error.get("message", "")):
        return True  # state, not input: the jobs named in after must exist, and be one-off jobs
    # OpenAPI 3.0 has no propertyNames: a NUL in an object key of data cannot be ruled out (jsonb cannot store it);
    # in a chain's or group's jobs the field names the item (then[0].data, members[2].data)
    return (str(error.get("field")).rpartition(".")[2] == "data" and "NUL" in error.get("message", "")
            and _nul_in_a_key(body))


@schemathesis.check
def positive_data_accepted(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``positive_data_acceptance``, less the refusals :func:`expected_refusal` lists."""
    if expected_refusal(case, response):
        return None
    return positive_data_acceptance(ctx, response, case)


# unsupported_method and allow_header_conformance: a method the document does not list is a 405 whose
# Allow names exactly the documented methods (and HEAD)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection, positive_data_accepted, unsupported_method,
          allow_header_conformance]


def test_served_document_is_the_one_under_test(live_server: LiveServer) -> None:
    with live_server.client() as c:
        assert c.get("/openapi.json").json() == openapi_document()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), database=None)
def test_no_server_errors_and_responses_match_the_document(case: schemathesis.Case, live_server: LiveServer) -> None:
    with live_server.client() as api:
        complete(case, api)
    case.call_and_validate(base_url=live_server.url, headers=bearer(live_server.token), checks=CHECKS,
                           allow_redirects=False, timeout=15)
