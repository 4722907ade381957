"""The delivery handler alone (no database, no network): what each answer of a receiver makes of a delivery."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_pg import Backoff, Cancel, Fail, JobContext, Retry, ValidationError, WebhookOptions
from aiojobs_pg.models import Webhook
from aiojobs_pg.webhooks import Response, body_of, delivery_spec, sign, verify

SECRET = "0123456789abcdef0123"
DATA = {"webhook": 7, "url": "https://r.example/h", "event": "failed", "occurred_at": "2026-01-01T00:00:00+00:00",
        "job": {"id": 5, "handler": "h", "queue": "default", "status": "failed", "attempt": 3, "max_attempts": 3,
                "error": "boom", "result": None}}


WEBHOOK = Webhook(7, "https://r.example/h", ["failed"], None, None, 8, None, datetime(2026, 1, 1, tzinfo=UTC),
                        SECRET)


class FakeQueries:
    def __init__(self, row: Webhook | None) -> None:
        self.row = row

    async def get_webhook(self, db: Any, webhook_id: int) -> Webhook | None:
        assert webhook_id == 7
        return self.row


def ctx(attempt: int = 1) -> JobContext:
    return JobContext(job_id=99, handler="aiojobs_pg.webhook", queue="aiojobs_pg.webhooks", attempt=attempt,
                      max_attempts=8, worker_id="w", scheduled_at=datetime.now(UTC), name=None)


async def deliver(answer: Response | Exception, row: Webhook | None = None,
                  options: WebhookOptions | None = None) -> tuple[Any, list[tuple[str, bytes, dict[str, str]]]]:
    sent: list[tuple[str, bytes, dict[str, str]]] = []

    def poster(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
        sent.append((url, body, dict(headers)))
        if isinstance(answer, Exception):
            raise answer
        return answer

    queries: Any = FakeQueries(WEBHOOK if row is None else row)
    spec = delivery_spec(lambda: None, queries, options or WebhookOptions(), poster=poster)  # type: ignore[arg-type,return-value]
    return await spec.call(DATA, ctx()), sent


async def test_2xx_is_delivered_and_signed() -> None:
    result, [(url, body, headers)] = await deliver(Response(204, {}, b""))
    assert result["status"] == 204 and url == "https://r.example/h"
    assert body == body_of(99, DATA)
    assert verify(SECRET, body, headers)["job"]["id"] == 5
    assert headers["X-Aiojobs-Delivery"] == headers["Idempotency-Key"] == "99"


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503])
async def test_retried_statuses(status: int) -> None:
    with pytest.raises(Retry) as err:
        await deliver(Response(status, {}, b"busy"))
    assert err.value.after is None and f"HTTP {status}: 'busy'" in err.value.reason


async def test_retry_after_is_honoured_up_to_the_backoff_cap() -> None:
    with pytest.raises(Retry) as err:
        await deliver(Response(429, {"Retry-After": "7"}, b""))
    assert err.value.after == 7
    capped = WebhookOptions(backoff=Backoff(base=1, cap=5))
    with pytest.raises(Retry) as err:
        await deliver(Response(503, {"retry-after": "120"}, b""), options=capped)
    assert err.value.after == 5


@pytest.mark.parametrize("answer", [TimeoutError("timed out"), ConnectionRefusedError(111, "refused")])
async def test_network_errors_are_retried(answer: Exception) -> None:
    with pytest.raises(Retry) as err:
        await deliver(answer)
    assert "POST https://r.example/h" in err.value.reason


@pytest.mark.parametrize("status", [400, 401, 404, 410, 301, 302, 307])
async def test_other_statuses_fail_for_good(status: int) -> None:
    with pytest.raises(Fail) as err:
        await deliver(Response(status, {"Location": "https://elsewhere.example/"}, b"no"))
    assert f"HTTP {status}" in err.value.reason
    assert ("not followed" in err.value.reason) == (300 <= status < 400)


async def test_a_removed_webhook_cancels_the_delivery() -> None:
    queries: Any = FakeQueries(None)
    spec = delivery_spec(lambda: None, queries, WebhookOptions())  # type: ignore[arg-type,return-value]
    with pytest.raises(Cancel):
        await spec.call(DATA, ctx())


def test_options_are_checked() -> None:
    with pytest.raises(ValidationError):
        WebhookOptions(timeout=0)


async def test_sign_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"a":1}'
    expected = hmac.new(b"k" * 16, b"1700000000." + body, hashlib.sha256).hexdigest()
    assert sign("k" * 16, 1700000000, body) == "sha256=" + expected
