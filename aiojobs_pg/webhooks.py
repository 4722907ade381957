"""Webhooks: job events POSTed, signed, to URLs registered for the whole fleet (docs/webhooks.md).

``await app.add_webhook("https://ops.example/hooks", events=["failed"], secret=...)`` stores a row in
``webhooks`` (migration 0014). From then on, each event a webhook asks for (``completed``, ``failed``,
``cancelled``, ``retrying``; of the handlers and queues it names, if it names any) becomes a delivery:
a job of the built-in handler ``aiojobs_pg.webhook`` on the queue ``aiojobs_pg.webhooks``, inserted by
the statement that writes the outcome, in its transaction. A delivery is retried with backoff like any
job, its attempts are in the history, and its id is the idempotency id its receiver sees on every attempt.

Which statement reports which event:

- the completion of a worker's runs (``Queries.complete``, also used by the rescue of an expired lease):
  ``completed``; ``retrying`` (an attempt failed, or its worker was lost, and the job runs again); a
  recurring job's tick that ``failed`` for good (the job stays pending for its next tick);
- the trigger ``jobs_webhooks_ended`` (migration 0014), for every change of a job's status to ``failed``
  or ``cancelled`` by whatever statement: a one-off job's last attempt, a rescue that fails it for good,
  a handler's ``Cancel``, ``cancel`` of a pending or running job, ``cancel_pending``, a parent that failed.

Who delivers: every worker whose queues were not given (``app.worker()``, ``run_worker()``, the CLI's
``worker`` without ``--queues``) serves the delivery queue beside ``default``, but only while there is
something to deliver: a webhook exists or a delivery is pending. A worker given ``queues=`` delivers only
if they include :data:`WEBHOOK_QUEUE`.
"""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import anyio.to_thread

from .errors import Cancel, Fail, Retry, ValidationError
from .executor import Backoff, HandlerSpec, JobContext
from .models import Webhook as Webhook  # a registered webhook: plain data, read by the query layer
from .queries import DB, WEBHOOK_HANDLER, WEBHOOK_QUEUE, Queries
from .validation import (
    MAX_NAME_LENGTH,
    MAX_QUEUE_LENGTH,
    MAX_WEBHOOK_ATTEMPTS,
    check_events,
    check_int,
    check_names,
    check_secret,
    check_text,
    check_url,
)

__all__ = [
    "ATTEMPT_HEADER", "DELIVERY_HEADER", "EVENT_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "WEBHOOK_HANDLER",
    "WEBHOOK_QUEUE", "InvalidSignature", "Webhook", "WebhookOptions", "sign", "verify",
]

#: the delivery's id: the same on every attempt of one delivery (deduplicate on it)
DELIVERY_HEADER = "X-Aiojobs-Delivery"
#: the event: completed, failed, cancelled or retrying
EVENT_HEADER = "X-Aiojobs-Event"
#: when this attempt was signed, in seconds since the epoch (refuse old ones: replays)
TIMESTAMP_HEADER = "X-Aiojobs-Timestamp"
#: ``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>`` keyed with the webhook's secret
SIGNATURE_HEADER = "X-Aiojobs-Signature"
#: which attempt of the delivery this is (1, 2, ...)
ATTEMPT_HEADER = "X-Aiojobs-Attempt"

#: how much of a response is read (the rest is dropped), and how much of it an error quotes
_READ_LIMIT = 64 * 1024
_QUOTED = 200


#: 5 s, 15 s, 45 s, ... at most an hour, each spread by ±20%: a receiver down for an hour still gets its
#: deliveries with the default 8 attempts (about 1.5 hours in all)
DEFAULT_BACKOFF = Backoff(base=5.0, factor=3.0, cap=3600.0, jitter=0.2)


@dataclass(frozen=True)
class WebhookOptions:
    """How this App's workers deliver (``app.webhook_options``; set before the worker starts).

    ``timeout``: seconds to connect, and to wait for each read of the response; the whole attempt is
    stopped after ``timeout + 5`` s. ``backoff``: the wait before each retry (by default 5 s, 15 s,
    45 s, ... up to an hour), unless the receiver's ``Retry-After`` says how long.
    """

    timeout: float = 10.0
    backoff: Backoff = DEFAULT_BACKOFF

    def __post_init__(self) -> None:
        if isinstance(self.timeout, bool) or not isinstance(self.timeout, (int, float)) or not 0 < self.timeout <= 300:
            raise ValidationError("timeout", f"must be a number of seconds in (0, 300], got {self.timeout!r}")


# --- a new webhook: its values, checked (by validation.py's checks) ---

@dataclass(frozen=True)
class NewWebhook:
    """A webhook's values, checked, ready to insert."""

    url: str
    events: list[str]
    handlers: list[str] | None
    queues: list[str] | None
    secret: str
    max_attempts: int
    description: str | None


def prepare(url: object, events: object, *, secret: object, handlers: object, queues: object,
            max_attempts: object, description: object) -> NewWebhook:
    """Check a new webhook's values (ValidationError naming the field); a secret is made when None."""
    return NewWebhook(
        check_url(url), check_events(events), check_names(handlers, "handlers", max_length=MAX_NAME_LENGTH),
        check_names(queues, "queues", max_length=MAX_QUEUE_LENGTH),
        secrets.token_urlsafe(32) if secret is None else check_secret(secret),
        check_int(max_attempts, "max_attempts", minimum=1, maximum=MAX_WEBHOOK_ATTEMPTS),
        check_text(description, "description", max_length=MAX_NAME_LENGTH, required=False))


def webhook_id(value: object) -> int:
    """A webhook's id, checked."""
    return check_int(value, "webhook_id", minimum=1, maximum=2**63 - 1)


# --- signing ---

class InvalidSignature(ValueError):
    """A delivery whose signature or timestamp does not check out (:func:`verify`)."""


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the hex HMAC-SHA256 of ``<timestamp>.<body>``."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp}.".encode("ascii") + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: str, body: bytes, headers: Mapping[str, str], *, tolerance: float = 300,
           now: float | None = None) -> dict[str, Any]:
    """Check a delivery as its receiver: the signature of the raw ``body``, and a timestamp within
    ``tolerance`` seconds of ``now`` (a replay of an old request fails). Returns the body, parsed.

    ``headers`` is any mapping of the request's headers (their names in any case). Raises
    :class:`InvalidSignature`. Deduplicate on the :data:`DELIVERY_HEADER` (or the body's ``delivery``)
    afterwards: a delivery whose answer was lost is sent again, with the same id.
    """
    lower = {k.lower(): v for k, v in headers.items()}
    timestamp, signature = lower.get(TIMESTAMP_HEADER.lower()), lower.get(SIGNATURE_HEADER.lower())
    if not timestamp or not signature:
        raise InvalidSignature(f"missing {TIMESTAMP_HEADER} or {SIGNATURE_HEADER}")
    if not timestamp.isascii() or not timestamp.isdigit():
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is not a number of seconds")
    if abs((time.time() if now is None else now) - int(timestamp)) > tolerance:
        raise InvalidSignature(f"{TIMESTAMP_HEADER} is more than {tolerance:g} s away from now (a replay?)")
    if not hmac.compare_digest(sign(secret, timestamp, body), signature):
        raise InvalidSignature("the signature does not match the body")
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def body_of(delivery_id: int, data: Mapping[str, Any]) -> bytes:
    """What a delivery POSTs: the same bytes on every attempt (keys sorted, compact JSON)."""
    payload = {"delivery": delivery_id, "event": data["event"], "webhook": data["webhook"],
               "occurred_at": data["occurred_at"], "job": data["job"]}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# --- delivering ---

class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect is not followed: urllib would re-send a POST as a GET without its body. It is answered
    # as an error instead, so the operator registers the final URL.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Response:
    """What a receiver answered."""

    status: int
    headers: Mapping[str, str]
    body: bytes


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Response:
    """POST ``body`` (blocking: run it in a thread). HTTP error statuses are answers, not exceptions;
    connection errors and timeouts raise OSError (or http.client.HTTPException)."""
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            return Response(response.status, dict(response.headers), response.read(_READ_LIMIT))
    except urllib.error.HTTPError as exc:
        try:
            answered = exc.read(_READ_LIMIT)
        except (OSError, http.client.HTTPException):
            answered = b""
        finally:
            exc.close()
        return Response(exc.code, dict(exc.headers or {}), answered)
    except urllib.error.URLError as exc:
        reason = exc.reason
        raise reason if isinstance(reason, OSError) else OSError(str(reason)) from exc


def _quote(body: bytes) -> str:
    text = body[:_QUOTED].decode("utf-8", "replace").strip()
    return f": {text!r}" if text else ""


def _retry_after(headers: Mapping[str, str], cap: float) -> float | None:
    """Seconds the receiver asked to wait (``Retry-After``: seconds or an HTTP date), at most ``cap``."""
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return min(float(value), cap)
    try:
        return min(max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0), cap)
    except (TypeError, ValueError):
        return None


Poster = Callable[[str, bytes, Mapping[str, str], float], Response]


def delivery_spec(db: Callable[[], DB], queries: Queries, options: WebhookOptions, *,
                  poster: Poster = post) -> HandlerSpec:
    """The built-in delivery handler, registered under :data:`WEBHOOK_HANDLER` by every worker that delivers.

    ``db`` gives the connection (the App's pool, guarded) to read the webhook from. Outcomes: 2xx
    delivered (the result says the status and time); 408, 429, 5xx, a timeout or a connection error
    retried (after ``Retry-After`` when the receiver sent one, else ``options.backoff``); any other
    status, a redirect included, fails the delivery for good (it waits in ``failed`` for ``retry``).
    A delivery whose webhook was removed is cancelled. Each attempt stops after ``options.timeout + 5`` s.
    """
    async def deliver(data: dict[str, Any], ctx: JobContext) -> dict[str, Any]:
        row = await queries.get_webhook(db(), int(data["webhook"]))
        if row is None or row.secret is None:
            raise Cancel(f"webhook {data['webhook']} was removed before this delivery was sent")
        url = row.url
        body = body_of(ctx.job_id, data)
        timestamp = str(int(time.time()))
        headers = {
            "Content-Type": "application/json", "User-Agent": "aiojobs_pg-webhooks",
            DELIVERY_HEADER: str(ctx.job_id), "Idempotency-Key": str(ctx.job_id), EVENT_HEADER: data["event"],
            TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(row.secret, timestamp, body),
            ATTEMPT_HEADER: str(ctx.attempt),
        }
        started = time.perf_counter()
        try:
            # urllib in a thread: one POST per delivery needs no HTTP client dependency, and the thread
            # is abandoned (not waited for) if the attempt's own timeout stops the job first.
            response = await anyio.to_thread.run_sync(
                lambda: poster(url, body, headers, options.timeout), abandon_on_cancel=True)
        except (OSError, http.client.HTTPException) as exc:
            what = (f"timed out after {options.timeout:g} s" if isinstance(exc, TimeoutError)
                    else f"{type(exc).__name__}: {exc}")
            raise Retry(reason=f"POST {url}: {what}") from None
        ms = round((time.perf_counter() - started) * 1000, 1)
        status = response.status
        if 200 <= status < 300:
            return {"status": status, "url": url, "ms": ms}
        answer = f"POST {url}: HTTP {status}{_quote(response.body)}"
        if status in (408, 429) or status >= 500:
            raise Retry(_retry_after(response.headers, options.backoff.cap), reason=answer)
        if 300 <= status < 400:
            location = next((v for k, v in response.headers.items() if k.lower() == "location"), "?")
            raise Fail(f"{answer} (a redirect, to {location[:200]!r}, is not followed: register that URL)")
        raise Fail(answer)

    return HandlerSpec.build(WEBHOOK_HANDLER, deliver, backoff=options.backoff, timeout=options.timeout + 5)


# --- who delivers ---

def serving(queues: Sequence[str] | None) -> str:
    """How a worker created with ``queues`` delivers: ``"auto"`` (queues not given: it serves the delivery
    queue while there is anything to deliver), ``"always"`` (its queues name :data:`WEBHOOK_QUEUE`), or
    ``"off"``."""
    if not queues:
        return "auto"
    return "always" if WEBHOOK_QUEUE in queues else "off"
