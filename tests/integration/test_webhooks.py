"""Webhooks: job events POSTed, signed, to a receiver; each delivery a durable job (docs/webhooks.md).

The receiver is a local HTTP server in the test process (a thread). It checks every request as a real
receiver would (the HMAC-SHA256 signature of ``timestamp.body`` with the shared secret, a timestamp near
now), records it, and answers from a script: 500 then 200, or hold the request until the test lets go.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import anyio
import pytest

from aiojobs_pg import (
    App,
    Backoff,
    Cancel,
    JobContext,
    JobStatus,
    RunStatus,
    ValidationError,
    WebhookNotFound,
    WebhookOptions,
)
from aiojobs_pg.executor import Executor
from aiojobs_pg.models import micros
from aiojobs_pg.queries import WEBHOOK_HANDLER, WEBHOOK_QUEUE
from aiojobs_pg.webhooks import InvalidSignature, verify
from tests.helpers import REPO, eventually, spawn_python

SECRET = "s3cret-s3cret-s3cret"
FAST = WebhookOptions(timeout=5, backoff=Backoff(base=0.05, factor=1, jitter=0))


@dataclass
class Request:
    """One request the receiver got, and what it made of it."""

    headers: dict[str, str]
    body: bytes
    signature_ok: bool
    fresh: bool
    answered: int | None = None

    @property
    def delivery(self) -> str:
        return self.headers["x-aiojobs-delivery"]

    @property
    def payload(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Receiver:
    """A webhook receiver: checks, records and answers each request (``script``: statuses to answer, in
    order, then 200; ``"hold"`` keeps the request until :attr:`release` is set, then answers 200)."""

    secret: str
    script: list[int | str] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: the deliveries processed, by idempotency id: what a receiver that deduplicates does once
    processed: dict[str, dict[str, Any]] = field(default_factory=dict)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def handle(self, headers: dict[str, str], body: bytes) -> int:
        timestamp, signature = headers.get("x-aiojobs-timestamp", ""), headers.get("x-aiojobs-signature", "")
        # The check a receiver in any language does, written out: HMAC-SHA256 of "<timestamp>.<body>".
        expected = "sha256=" + hmac.new(self.secret.encode(), timestamp.encode() + b"." + body,
                                        hashlib.sha256).hexdigest()
        request = Request(headers, body, hmac.compare_digest(expected, signature),
                          timestamp.isdigit() and abs(time.time() - int(timestamp)) < 300)
        self.requests.append(request)
        action = self.script.pop(0) if self.script else 200
        if action == "hold":
            self.release.wait(60)
            action = 200
        assert isinstance(action, int)
        if 200 <= action < 300 and request.signature_ok and request.fresh:
            self.processed.setdefault(request.delivery, request.payload)
        request.answered = action
        return action

    def delivered(self) -> list[Request]:
        return [r for r in self.requests if r.answered is not None and 200 <= r.answered < 300]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver(SECRET)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name for it
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            status = recv.handle({k.lower(): v for k, v in self.headers.items()}, body)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            with contextlib.suppress(OSError):  # the worker that sent it may be gone
                self.wfile.write(b"ok")

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    recv.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    try:
        yield recv
    finally:
        recv.release.set()
        server.shutdown()
        server.server_close()


async def deliveries(app: App) -> list[dict[str, Any]]:
    """The delivery jobs (pending or finished), oldest first: id, status, data, attempts."""
    rows = await app.pool.fetch(f"SELECT id, status, data, attempts FROM {app.schema}.all_jobs "
                                f"WHERE handler = $1 ORDER BY id", WEBHOOK_HANDLER)
    return [dict(r) for r in rows]


async def test_a_delivery_is_signed_retried_after_a_5xx_and_delivered_once(app: App, receiver: Receiver) -> None:
    app.webhook_options = FAST
    receiver.script = [500]
    hook = await app.add_webhook(receiver.url, events=["failed"], secret=SECRET)

    @app.handler()
    async def boom(data: Any) -> None:
        raise ValueError("no good")

    job = await app.enqueue("boom", {"n": 1}, max_attempts=1)
    async with app.worker():
        await eventually(lambda: len(receiver.delivered()) == 1, timeout=20, message="never delivered")
        [delivery] = await deliveries(app)
        await eventually(lambda: _status(app, delivery["id"], JobStatus.COMPLETED), timeout=10)

    first, second = receiver.requests
    assert (first.answered, second.answered) == (500, 200)
    for r in (first, second):
        assert r.signature_ok and r.fresh
        assert r.headers["x-aiojobs-event"] == "failed"
        assert r.delivery == str(delivery["id"])  # the idempotency id: the same on both attempts
        assert r.headers["idempotency-key"] == r.delivery
    assert first.body == second.body
    assert (first.headers["x-aiojobs-attempt"], second.headers["x-aiojobs-attempt"]) == ("1", "2")
    body = second.payload
    assert body["delivery"] == delivery["id"] and body["event"] == "failed" and body["webhook"] == hook.id
    assert body["job"]["id"] == job.id and body["job"]["handler"] == "boom" and body["job"]["status"] == "failed"
    assert "ValueError: no good" in body["job"]["error"]
    assert list(receiver.processed) == [str(delivery["id"])]
    # The delivery is a job like any other: its attempts are in the history.
    runs = await app.job_history(delivery["id"])
    assert [r.status.value for r in runs] == ["failed", "completed"]
    assert "HTTP 500" in (runs[0].error or "")
    assert (await app.get_job(delivery["id"])).result["status"] == 200
    assert (await app.get_job(delivery["id"])).queue == WEBHOOK_QUEUE
    # The library's own check agrees with the receiver's, and refuses what it should.
    assert verify(SECRET, second.body, second.headers)["delivery"] == delivery["id"]
    with pytest.raises(InvalidSignature):
        verify("another-secret-entirely", second.body, second.headers)
    with pytest.raises(InvalidSignature):
        verify(SECRET, second.body + b" ", second.headers)
    with pytest.raises(InvalidSignature):  # a replay, an hour later
        verify(SECRET, second.body, second.headers, now=time.time() + 3600)


async def _status(app: App, job_id: int, status: JobStatus) -> bool:
    return (await app.get_job(job_id)).status is status


async def test_a_4xx_fails_the_delivery_for_good(app: App, receiver: Receiver) -> None:
    app.webhook_options = FAST
    receiver.script = [410]
    await app.add_webhook(receiver.url, events=["completed"], secret=SECRET, max_attempts=5)
    app.register("fine", _fine)
    await app.enqueue("fine")
    async with app.worker():
        await eventually(lambda: _deliveries_in(app, "failed", 1), timeout=20)
    [delivery] = await deliveries(app)
    assert delivery["attempts"] == 1 and len(receiver.requests) == 1  # not retried
    job = await app.get_job(delivery["id"])
    assert "HTTP 410" in (job.last_error or "") and (job.last_error or "").startswith("Fail: ")


async def _fine(data: Any) -> str:
    return "done"


async def _deliveries_in(app: App, status: str, n: int) -> bool:
    found: int = sum(d["status"] == status for d in await deliveries(app))
    return found == n


async def test_each_path_reports_its_event_in_its_own_transaction(app: App) -> None:
    """completed, retrying and failed from the completion statement (and the rescue of an expired lease),
    cancelled from a cancel, a bulk cancel and a handler's Cancel: one delivery each, and none from a
    completion that rolled back."""
    await app.add_webhook("https://receiver.example/hooks", events=["completed", "failed", "cancelled", "retrying"],
                          secret=SECRET)
    for name in ("a", "b", "c", "d", "e"):
        app.register(name, _fine)
    ex = Executor({}, worker_id="w1", backoff=Backoff(base=60))

    async def claim(handler: str, lease: float = 30.0) -> Any:
        [claimed] = await app.queries.claim(app.pool, ["default"], 1, lease, "w1", app.queries.claim_for([handler]))
        return claimed

    # A completion rolled back creates nothing; committed, its delivery.
    done = await app.enqueue("a", max_attempts=2)
    job = await claim("a")
    outcome = ex.outcome(job, micros(job.claimed_at), JobStatus.COMPLETED, RunStatus.COMPLETED,
                         result_json='{"ok": true}')
    async with app.pool.acquire() as conn:
        tr = conn.transaction()
        await tr.start()
        assert await app.queries.complete(conn, [outcome], history=True) == {done.id}
        assert len(await deliveries(app)) == 0  # not visible outside the transaction
        await tr.rollback()
    assert await deliveries(app) == []
    assert await app.queries.complete(app.pool, [outcome], history=True) == {done.id}
    # A failed attempt with attempts left (retrying), then the last one (failed).
    flaky = await app.enqueue("b", max_attempts=2)
    job = await claim("b")
    await app.queries.complete(app.pool, [ex.failure(job, micros(job.claimed_at), "boom 1")], history=True)
    await app.pool.execute(f"UPDATE {app.schema}.jobs SET next_run_at = now() WHERE id = $1", flaky.id)
    job = await claim("b")
    await app.queries.complete(app.pool, [ex.failure(job, micros(job.claimed_at), "boom 2")], history=True)
    # A worker lost on the last attempt: the rescue fails the job for good.
    lost = await app.enqueue("c", max_attempts=1)
    await claim("c", lease=0.05)
    worker = app.create_worker(queues=["default"])

    async def rescued() -> bool:
        return await worker.maintenance.rescue() > 0

    await eventually(rescued, timeout=5)
    # Cancels: of a pending job, of a running one (its run stopped afterwards reports nothing more),
    # in bulk, and by the handler.
    pending = await app.enqueue("d")
    await app.cancel(pending.id)
    running = await app.enqueue("d")
    job = await claim("d")
    await app.cancel(running.id)
    await app.queries.complete(app.pool, [ex.cancelled(job, micros(job.claimed_at))], history=True)
    bulk = [await app.enqueue("e", queue="bulk") for _ in range(3)]
    assert await app.cancel_pending(queue="bulk") == 3
    stopped = await app.enqueue("a")
    job = await claim("a")
    await app.queries.complete(app.pool, [ex.outcome(job, micros(job.claimed_at), JobStatus.CANCELLED,
                                                     RunStatus.CANCELLED, error="Cancel: not needed")], history=True)

    # A recurring job: a tick that completed, then one that failed for good (the job stays pending).
    tick = await app.enqueue("a", schedule="1h", max_attempts=1)
    for ok in (True, False):
        await app.pool.execute(f"UPDATE {app.schema}.jobs SET next_run_at = now() WHERE id = $1", tick.id)
        job = await claim("a")
        outcome = (ex.outcome(job, micros(job.claimed_at), JobStatus.PENDING, RunStatus.COMPLETED,
                              next_run_at=datetime.now(UTC) + timedelta(hours=1), reset_attempts=True) if ok
                   else ex.failure(job, micros(job.claimed_at), "tick broke"))
        assert await app.queries.complete(app.pool, [outcome], history=True) == {tick.id}

    got = sorted((d["data"]["job"]["id"], d["data"]["event"], d["data"]["job"]["attempt"])
                 for d in await deliveries(app))
    assert got == sorted([
        (done.id, "completed", 1), (flaky.id, "retrying", 1), (flaky.id, "failed", 2), (lost.id, "failed", 1),
        (pending.id, "cancelled", 0), (running.id, "cancelled", 1), *((j.id, "cancelled", 0) for j in bulk),
        (stopped.id, "cancelled", 1), (tick.id, "completed", 1), (tick.id, "failed", 1),
    ])
    by_job = {(d["data"]["job"]["id"], d["data"]["event"]): d["data"]["job"] for d in await deliveries(app)}
    assert by_job[(done.id, "completed")]["result"] == {"ok": True}
    assert by_job[(flaky.id, "retrying")]["error"] == "boom 1"
    assert by_job[(lost.id, "failed")]["error"].startswith("worker lost")
    assert by_job[(stopped.id, "cancelled")]["error"] == "Cancel: not needed"
    assert by_job[(pending.id, "cancelled")]["error"] is None
    assert by_job[(tick.id, "failed")]["status"] == "pending" and by_job[(tick.id, "failed")]["error"] == "tick broke"


async def test_filters_by_event_handler_and_queue(app: App) -> None:
    only_a = await app.add_webhook("https://a.example/", events=["completed"], handlers=["a"], secret=SECRET)
    mail = await app.add_webhook("https://mail.example/", events=["cancelled"], queues=["mail"], secret=SECRET)
    await app.enqueue("a", queue="mail")
    await app.enqueue("b", queue="mail")
    await app.enqueue("a", queue="other")
    for job in [j for j in await app.list_jobs() if j.status is JobStatus.PENDING]:
        await app.cancel(job.id)  # cancelled: only the mail queue's count, whatever the handler
    assert sorted((d["data"]["webhook"], d["data"]["job"]["handler"]) for d in await deliveries(app)) == [
        (mail.id, "a"), (mail.id, "b")]
    assert only_a.id not in {d["data"]["webhook"] for d in await deliveries(app)}


async def test_add_list_remove_and_validation(app: App) -> None:
    made = await app.add_webhook("https://ops.example/hooks", events=["failed"], description="ops")
    assert made.secret is not None and len(made.secret) >= 32  # made for us, returned once
    listed = await app.webhooks()
    assert [(w.id, w.url, w.events, w.secret) for w in listed] == [(made.id, "https://ops.example/hooks",
                                                                    ["failed"], None)]
    await app.remove_webhook(made.id)
    assert await app.webhooks() == []
    with pytest.raises(WebhookNotFound):
        await app.remove_webhook(made.id)
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"url": "ftp://x.example/"}, "url", "https://"),
        ({"url": "https://user:pw@x.example/"}, "url", "credentials"),
        ({"url": "https:///path"}, "url", "no host"),
        ({"url": "https://x.example/a b"}, "url", "white space"),
        ({"events": "failed"}, "events", "list"),
        ({"events": []}, "events", "at least one"),
        ({"events": ["finished"]}, "events", "unknown event 'finished'"),
        ({"secret": "short"}, "secret", "at least 16"),
        ({"max_attempts": 0}, "max_attempts", "between 1"),
        ({"handlers": []}, "handlers", "1 to"),
        ({"queues": "mail"}, "queues", "list"),
    ]
    for kwargs, field_name, words in cases:
        args: dict[str, Any] = {"url": "https://ok.example/", "events": ["failed"], "secret": SECRET, **kwargs}
        with pytest.raises(ValidationError) as err:
            await app.add_webhook(args.pop("url"), args.pop("events"), **args)
        assert err.value.field == field_name and words in err.value.message, err.value
    assert await app.webhooks() == []
    with pytest.raises(ValidationError):
        app.register(WEBHOOK_HANDLER, _fine)


async def test_deliveries_cost_nothing_until_a_webhook_exists(app: App, receiver: Receiver) -> None:
    """A worker whose queues were not given claims from the deliveries' queue only while there is
    something to deliver; a worker given its queues never does unless they name it."""
    app.webhook_options = FAST
    app.register("fine", _fine)
    async with app.worker() as worker, app.worker(queues=["default"]) as explicit:
        await eventually(lambda: worker.signals.counts["claim"] > 0)
        assert worker.producer.queues == ["default"] and WEBHOOK_HANDLER not in worker.producer.claim.handlers
        hook = await app.add_webhook(receiver.url, events=["completed"], secret=SECRET)
        await eventually(lambda: WEBHOOK_QUEUE in worker.producer.queues, timeout=5,
                         message="the notification of the new webhook did not reach the worker")
        await app.enqueue("fine")
        await eventually(lambda: len(receiver.delivered()) == 1, timeout=20)
        assert explicit.producer.queues == ["default"]
        await eventually(lambda: _deliveries_in(app, "completed", 1), timeout=10)
        await app.remove_webhook(hook.id)
        await eventually(lambda: worker.producer.queues == ["default"], timeout=10)
    workers_seen = {w["id"]: w for w in await app.admin().workers()}
    assert workers_seen == {}  # both gone


async def test_a_worker_given_queues_delivers_only_if_they_name_the_deliveries_queue(
        app: App, receiver: Receiver) -> None:
    app.webhook_options = FAST
    app.register("fine", _fine)
    await app.add_webhook(receiver.url, events=["completed"], secret=SECRET)
    await app.enqueue("fine")
    async with app.worker(queues=["default"]):
        await eventually(lambda: _deliveries_in(app, "pending", 1), timeout=10)
    assert receiver.requests == []  # its queues did not name the deliveries' queue
    # operators see it waiting for a worker that delivers
    assert await app.admin().unserved() == {(WEBHOOK_QUEUE, WEBHOOK_HANDLER): 1}
    async with app.worker(queues=[WEBHOOK_QUEUE]) as deliverer:
        assert WEBHOOK_HANDLER in deliverer.producer.claim.handlers
        await eventually(lambda: len(receiver.delivered()) == 1, timeout=20)


async def test_a_delivery_whose_webhook_was_removed_is_cancelled(app: App) -> None:
    app.webhook_options = FAST
    hook = await app.add_webhook("http://127.0.0.1:9/never", events=["cancelled"], secret=SECRET)
    job = await app.enqueue("x")
    await app.cancel(job.id)
    await app.remove_webhook(hook.id)
    async with app.worker():
        await eventually(lambda: _deliveries_in(app, "cancelled", 1), timeout=10)
    [delivery] = await deliveries(app)
    assert "was removed" in ((await app.get_job(delivery["id"])).last_error or "")


# --- a worker killed mid-delivery ---

class WorkerProcs:
    """Worker processes (``python -m tests.apps.webhook_app``) on the test's schema; the test's own pids are
    stopped at teardown, and their output printed."""

    def __init__(self, dsn: str, schema: str, tmp_path: Path) -> None:
        self.env = {"AIOJOBS_PG_DSN": dsn, "AIOJOBS_PG_SCHEMA": schema, "PROC_LEASE": "2"}
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path, Any]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log_path = self.tmp_path / f"webhook-worker-{len(self.started)}.log"
        proc, out, _ = spawn_python("tests.apps.webhook_app", [], self.env, log_path)
        self.started.append((proc, log_path, out))
        return proc

    def cleanup(self) -> None:
        for proc, _, _ in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc, log_path, out in self.started:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            out.close()
            print(f"----- worker pid {proc.pid} exit {proc.returncode} -----")
            print(log_path.read_text(errors="replace")[-10_000:])


@pytest.fixture
def worker_procs(app: App, pg_dsn: str, tmp_path: Path) -> Iterator[WorkerProcs]:
    # Depends on ``app``: the processes stop before ``app`` drops the schema.
    procs = WorkerProcs(pg_dsn, app.schema, tmp_path)
    try:
        yield procs
    finally:
        procs.cleanup()


async def test_a_worker_killed_mid_delivery_sends_it_again_with_the_same_id(
        app: App, receiver: Receiver, worker_procs: WorkerProcs) -> None:
    receiver.script = ["hold"]  # the first request waits: its worker is killed while it sends
    await app.add_webhook(receiver.url, events=["completed"], handlers=["noop"], secret=SECRET)
    job = await app.enqueue("noop", {"n": 1})
    first = worker_procs.start()
    await eventually(lambda: len(receiver.requests) == 1, timeout=30, message="the delivery never started")
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    receiver.release.set()  # the held request's worker is gone: its answer goes nowhere
    worker_procs.start()
    await eventually(lambda: len(receiver.delivered()) >= 1 and len(receiver.requests) >= 2, timeout=40,
                     message="the delivery was not sent again after its worker died")
    [delivery] = await deliveries(app)
    await eventually(lambda: _status(app, delivery["id"], JobStatus.COMPLETED), timeout=10)
    ids = {r.delivery for r in receiver.requests}
    assert ids == {str(delivery["id"])}  # every attempt carried the same idempotency id
    assert all(r.signature_ok and r.fresh for r in receiver.requests)
    assert len({r.body for r in receiver.requests}) == 1
    # Deduplicated by that id, the receiver processed the event once.
    assert len(receiver.processed) == 1
    assert receiver.processed[str(delivery["id"])]["job"]["id"] == job.id
    runs = await app.job_history(delivery["id"])
    assert [r.status.value for r in runs] == ["failed", "completed"]
    assert (runs[0].error or "").startswith("worker lost")


async def test_a_handler_cancel_is_not_a_delivery_of_a_delivery(app: App) -> None:
    """Deliveries report on no delivery: a failing delivery creates no delivery about itself."""
    app.webhook_options = FAST
    await app.add_webhook("http://127.0.0.1:9/closed", events=["failed", "retrying", "completed", "cancelled"],
                          secret=SECRET, max_attempts=2)

    @app.handler()
    async def stop(data: Any, ctx: JobContext) -> None:
        raise Cancel("no")

    await app.enqueue("stop")
    async with app.worker():
        await eventually(lambda: _deliveries_in(app, "failed", 1), timeout=20)
    assert len(await deliveries(app)) == 1


def _cli(pg_dsn: str, schema: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("AIOJOBS_PG_DSN", "DATABASE_URL", "AIOJOBS_PG_SCHEMA")}
    env.update(AIOJOBS_PG_DSN=pg_dsn, AIOJOBS_PG_SCHEMA=schema)
    return subprocess.run([sys.executable, "-m", "aiojobs_pg", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=60, input=stdin)


async def test_cli_add_list_remove(app: App, pg_dsn: str) -> None:
    added = await anyio.to_thread.run_sync(lambda: _cli(
        pg_dsn, app.schema, "webhooks", "add", "https://ops.example/hooks", "--event", "failed", "--event",
        "cancelled", "--handler", "send_mail", "--secret", "-", "--json", stdin=SECRET + "\n"))
    assert added.returncode == 0, added.stderr
    hook = json.loads(added.stdout)
    assert (hook["events"], hook["handlers"], hook["secret"]) == (["failed", "cancelled"], ["send_mail"], SECRET)
    [stored] = await app.webhooks()
    assert stored.id == hook["id"]
    made = await anyio.to_thread.run_sync(lambda: _cli(
        pg_dsn, app.schema, "webhooks", "add", "http://127.0.0.1:8000/in", "--event", "completed"))
    assert made.returncode == 0 and "secret (shown once): " in made.stdout, made.stderr
    listed = await anyio.to_thread.run_sync(lambda: _cli(pg_dsn, app.schema, "webhooks", "list"))
    assert "https://ops.example/hooks" in listed.stdout and "failed,cancelled" in listed.stdout
    assert SECRET not in listed.stdout
    removed = await anyio.to_thread.run_sync(lambda: _cli(pg_dsn, app.schema, "webhooks", "remove", str(hook["id"])))
    assert removed.returncode == 0 and f"removed webhook {hook['id']}" in removed.stdout
    again = await anyio.to_thread.run_sync(lambda: _cli(pg_dsn, app.schema, "webhooks", "remove", str(hook["id"])))
    assert again.returncode == 1 and "not found" in again.stderr
    bad = await anyio.to_thread.run_sync(lambda: _cli(pg_dsn, app.schema, "webhooks", "add", "https://x.example/",
                                                      "--event", "failed", "--secret", "short"))
    assert bad.returncode == 1 and "secret" in bad.stderr
    assert [w.url for w in await app.webhooks()] == ["http://127.0.0.1:8000/in"]
