"""Schemathesis against the live server: every documented operation, generated inputs, no 5xx.

The schema under test is the document the code builds; the first test checks the
server serves exactly that document, so the fuzzing covers ``/openapi.json``.
"""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (pip install schemathesis)")

from hypothesis import HealthCheck, Phase, settings  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from aiojobs_pg.http.openapi import openapi_document  # noqa: E402
from tests.http.conftest import LiveServer, bearer  # noqa: E402

# schemathesis's own strategies trip a Hypothesis deprecation warning on some versions
pytestmark = pytest.mark.filterwarnings("ignore::hypothesis.errors.HypothesisDeprecationWarning")
schema = schemathesis.openapi.from_dict(openapi_document())
#: examples per operation; raise it for a longer hunt (AIOJOBS_PG_FUZZ_EXAMPLES=500)
EXAMPLES = int(os.environ.get("AIOJOBS_PG_FUZZ_EXAMPLES", "30"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]


def test_served_document_is_the_one_under_test(live_server: LiveServer) -> None:
    with live_server.client() as c:
        assert c.get("/openapi.json").json() == openapi_document()


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=list(HealthCheck), database=None)
def test_no_server_errors_and_responses_match_the_document(case: schemathesis.Case, live_server: LiveServer) -> None:
    case.call_and_validate(base_url=live_server.url, headers=bearer(live_server.token), checks=CHECKS,
                           allow_redirects=False, timeout=15)
