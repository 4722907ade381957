"""aiojobs_pg.testing without a database: run_job, make_context, and how enqueued data is matched."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_pg import App, Backoff, Cancel, JobContext, Retry, UnknownHandler, ValidationError
from aiojobs_pg.testing import DrainResult, FailedRun, make_context, run_job
from aiojobs_pg.testing import _contains as contains

# Never opened: run_job needs no database, and an App pointed at nowhere proves it.
NOWHERE = "postgresql://nobody@127.0.0.1:1/none"


@pytest.fixture
def app() -> App:
    """A closed App with a backoff without jitter, so that retry delays are exact."""
    return App(NOWHERE, schema="unit", backoff=Backoff(base=10, factor=3, jitter=0), max_data_bytes=100)


async def test_a_completed_run_has_the_stored_result_and_the_progress(app: App) -> None:
    seen: list[JobContext] = []

    @app.handler()
    async def resize(data: Any, ctx: JobContext) -> Any:
        seen.append(ctx)
        await ctx.progress(0.5, "half")
        await ctx.progress(1)
        return ("done", data)

    run = await run_job(app, "resize", (1, 2), attempt=2, max_attempts=4, queue="images", job_id=42, name="big")
    assert run.status == "completed" and run.unwrap() == ["done", [1, 2]]  # both through JSON, as stored
    assert (run.error, run.exception, run.retry_in, run.next_run_at) == (None, None, None, None)
    assert run.progress == [(0.5, "half"), (1.0, None)]
    assert run.job.data == [1, 2] and run.duration >= 0
    ctx = seen[0]
    assert (ctx.job_id, ctx.handler, ctx.queue, ctx.attempt, ctx.max_attempts, ctx.name) == (
        42, "resize", "images", 2, 4, "big")
    assert ctx.worker_id == "aiojobs_pg.testing" and not ctx.is_last_attempt


async def test_retry_gives_its_delay_and_the_exception(app: App) -> None:
    @app.handler()
    async def poll(data: None) -> None:
        raise Retry(after=5, reason="not ready")

    run = await run_job(app, "poll")
    assert (run.status, run.retry_in, run.error) == ("retrying", 5, "Retry: not ready")
    assert isinstance(run.exception, Retry)


async def test_a_failure_retries_after_the_apps_backoff_until_the_last_attempt(app: App) -> None:
    @app.handler()
    async def charge(data: dict[str, int]) -> None:
        raise ValueError(f"bad amount {data['amount']}")

    first = await run_job(app, "charge", {"amount": -1})
    assert (first.status, first.retry_in) == ("retrying", 10)  # Backoff(base=10), attempt 1
    assert isinstance(first.exception, ValueError) and first.error is not None
    assert "Traceback" in first.error and "ValueError: bad amount -1" in first.error
    second = await run_job(app, "charge", {"amount": -1}, attempt=2)
    assert second.retry_in == 30
    last = await run_job(app, "charge", {"amount": -1}, attempt=3)  # the app's default_max_attempts
    assert (last.status, last.retry_in) == ("failed", None)
    with pytest.raises(AssertionError, match=r"'charge' failed, not completed: ValueError: bad amount -1") as info:
        last.unwrap()
    assert isinstance(info.value.__cause__, ValueError)  # the handler's traceback is in the report


async def test_a_handlers_own_backoff_and_timeout_apply(app: App) -> None:
    @app.handler(backoff=Backoff(base=1, jitter=0), timeout=0.05)
    async def hang(data: None) -> None:
        await asyncio.Event().wait()  # never set: only the timeout ends it

    run = await run_job(app, "hang")
    assert run.status == "retrying" and run.retry_in == 1
    assert run.error == "TimeoutError: job exceeded its timeout of 0.05 s"


async def test_cancel_and_a_result_over_the_limit(app: App) -> None:
    @app.handler()
    async def stop(data: None) -> None:
        raise Cancel("not needed")

    @app.handler()
    async def big(data: None) -> str:
        return "x" * 200  # over max_data_bytes=100

    cancelled = await run_job(app, "stop")
    assert (cancelled.status, cancelled.error, cancelled.retry_in) == ("cancelled", "Cancel: not needed", None)
    too_big = await run_job(app, "big")
    assert too_big.status == "retrying" and too_big.error is not None and "result too large" in too_big.error


async def test_a_sync_handler_runs_in_a_thread(app: App) -> None:
    @app.handler()
    def add(data: list[int]) -> dict[str, Any]:
        return {"sum": sum(data), "main_thread": threading.current_thread() is threading.main_thread()}

    assert (await run_job(app, "add", [1, 2, 3])).unwrap() == {"sum": 6, "main_thread": False}


async def test_a_recurring_job_gives_its_next_tick(app: App) -> None:
    @app.handler()
    async def report(data: None) -> int:
        return 1

    before = datetime.now(UTC)
    run = await run_job(app, "report", schedule="1h")
    assert run.status == "completed" and run.next_run_at is not None and run.next_run_at > before


async def test_the_job_is_validated_as_enqueue_validates_it(app: App) -> None:
    @app.handler()
    async def known(data: Any) -> None:
        return None

    with pytest.raises(UnknownHandler, match=r"unknown handler 'nope' \(registered: known\)"):
        await run_job(app, "nope")
    with pytest.raises(ValidationError) as data_error:
        await run_job(app, "known", {"when": datetime.now(UTC)})
    assert data_error.value.field == "data"
    with pytest.raises(ValidationError) as attempt_error:
        await run_job(app, "known", attempt=4, max_attempts=3)
    assert attempt_error.value.field == "attempt"
    with pytest.raises(ValidationError) as id_error:
        await run_job(app, "known", job_id=0)
    assert id_error.value.field == "job_id"


async def test_make_context_calls_a_handler_directly() -> None:
    async def handler(data: int, ctx: JobContext) -> int:
        await ctx.progress(0.25)
        return data * ctx.attempt

    ctx = make_context("double", attempt=3, max_attempts=3)
    assert await handler(7, ctx) == 21
    assert ctx.last_progress == (0.25, None) and ctx.is_last_attempt and ctx.handler == "double"


@pytest.mark.parametrize(("actual", "expected", "matches"), [
    ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 2}}, True),
    ({"a": 1}, {"a": 1, "b": 2}, False),
    ({"tags": ["x", "y", "z"]}, {"tags": ["z", "x"]}, True),
    ({"tags": ["x"]}, {"tags": ["w"]}, False),
    ([{"id": 1, "n": 2}, {"id": 3}], [{"id": 1}], True),
    ({"flag": 1}, {"flag": True}, False),  # JSON's true is not 1
    ({"flag": True}, {"flag": True}, True),
    ({"n": 1.0}, {"n": 1}, True),
    (5, 5, True),
    ("5", 5, False),
    ({"a": {"b": 1}}, {"a": 1}, False),
    (None, None, True),
])
def test_data_matches_as_jsonb_containment(actual: Any, expected: Any, matches: bool) -> None:
    assert contains(actual, expected) is matches


def test_a_drain_result_prints_its_counts_and_failures() -> None:
    failure = FailedRun(9, "charge", 3, "failed", "Traceback…\nKeyError: 'x'")
    result = DrainResult(completed=2, failed=1, failures=[failure])
    assert result.total == 3
    assert str(result) == ("2 completed, 0 retried, 1 failed, 0 cancelled, 0 remaining\n"
                           "  job 9 'charge' attempt 3 failed: KeyError: 'x'")
