"""Backoff per job: ``enqueue(backoff=)`` is stored with the job, claimed with it, and retries use it in
preference to the handler's and the app's."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_pg import App, Backoff, JobContext, JobStatus, RunStatus, ValidationError
from aiojobs_pg.executor import Executor, HandlerSpec
from aiojobs_pg.models import MAX_BACKOFF, ClaimedJob
from tests.integration.test_cli import _base_env, run_cli


@pytest.fixture
def cli_env(pg_dsn: str, schema_name: str) -> dict[str, str]:
    """The environment of a CLI process pointed at the test schema (as tests/integration/test_cli.py's)."""
    return {**_base_env(), "AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": schema_name}


TICK = datetime(2025, 1, 1, 9, tzinfo=UTC)


# --- the value (no database) ---

def test_fixed_waits_the_same_every_time_and_exponential_grows() -> None:
    fixed = Backoff.fixed(5)
    assert (fixed.base, fixed.factor, fixed.cap, fixed.jitter) == (5, 1, 5, 0)
    assert [fixed.delay(n) for n in (1, 2, 10)] == [5, 5, 5]
    grows = Backoff(base=2, factor=3, cap=100, jitter=0)
    assert [grows.delay(n) for n in (1, 2, 3, 4, 5)] == [2, 6, 18, 54, 100]
    # A large factor over many attempts overflows a float: the cap holds instead of an error.
    assert Backoff(base=1, factor=1000, cap=60, jitter=0).delay(5000) == 60


@pytest.mark.parametrize(("value", "expected"), [
    (Backoff(base=3), Backoff(base=3)),
    ({"base": 2, "factor": 3}, Backoff(base=2, factor=3)),
    ({}, Backoff()),
    (7, Backoff.fixed(7)),
    (0.5, Backoff.fixed(0.5)),
    ('{"base": 2, "jitter": 0}', Backoff(base=2, jitter=0)),
    ("4", Backoff.fixed(4)),
])
def test_parse_reads_what_the_edges_accept(value: Any, expected: Backoff) -> None:
    assert Backoff.parse(value) == expected
    assert Backoff.parse(json.dumps(Backoff.parse(value).to_dict())) == expected


@pytest.mark.parametrize(("value", "fragment"), [
    ({"base": -1}, "base >= 0"),
    ({"factor": 0.5}, "factor >= 1"),
    ({"jitter": 2}, "jitter <= 1"),
    ({"base": float("inf")}, "finite"),
    ({"cap": float("nan")}, "finite"),
    ({"base": True}, "finite number"),
    ({"base": "2"}, "finite number"),
    ({"base": 10**400}, "finite"),
    ({"cap": MAX_BACKOFF + 1}, "at most"),
    ({"factor": 10**7}, "factor must be at most"),
    ({"bogus": 1}, "unknown key 'bogus'"),
    ("{not json", "not JSON"),
    (True, "must be a Backoff"),
    ([1, 2], "must be a Backoff"),
    (-3, "base >= 0"),
])
def test_parse_refuses_what_could_not_be_a_wait(value: Any, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment) as refused:
        Backoff.parse(value, "jobs[2].backoff")
    assert refused.value.field == "jobs[2].backoff"


def claimed(backoff: str | None, attempt: int = 1) -> ClaimedJob:
    return ClaimedJob(id=7, handler="h", data=None, queue="q", attempt=attempt, max_attempts=5, timeout=None,
                      schedule=None, timezone=None, scheduled_at=TICK, claimed_at=TICK, token=3, backoff=backoff)


async def test_the_executor_prefers_the_jobs_backoff_to_the_handlers_and_the_apps() -> None:
    async def h(data: Any) -> None:
        raise RuntimeError("no")

    app_wide = Backoff(base=1, jitter=0)
    with_handler = Executor({"h": HandlerSpec.build("h", h, backoff=Backoff.fixed(30))}, worker_id="w",
                            backoff=app_wide)
    without = Executor({"h": HandlerSpec.build("h", h)}, worker_id="w", backoff=app_wide)
    own = json.dumps(Backoff(base=10, factor=3, jitter=0).to_dict())
    assert (await with_handler.execute(claimed(own, attempt=2))).delay == 30  # 10 * 3
    assert (await without.execute(claimed(own, attempt=3))).delay == 90
    assert (await with_handler.execute(claimed(None, attempt=2))).delay == 30
    assert (await without.execute(claimed(None, attempt=2))).delay == 2
    # A value the enqueue would have refused (written by hand): the handler's, then the app's, apply.
    assert (await with_handler.execute(claimed('{"base": -1}'))).delay == 30
    assert (await without.execute(claimed("[]"))).delay == 1


# --- stored, claimed, used (the database) ---

async def test_a_retry_waits_as_the_job_says_not_as_its_handler_or_the_app(app: App) -> None:
    app.backoff = Backoff(base=0.01, jitter=0)

    @app.handler(backoff=Backoff.fixed(1000))
    async def fails(data: Any) -> None:
        raise RuntimeError("down")

    job = await app.enqueue("fails", backoff=Backoff(base=100, factor=3, jitter=0))
    plain = await app.enqueue("fails")
    await app.run_worker(burst=True, handle_signals=False)  # one attempt each; both then wait
    waited = {r["id"]: r["wait"] for r in await app.pool.fetch(
        f"SELECT id, extract(epoch FROM next_run_at - last_run_at)::float8 AS wait FROM {app.schema}.jobs")}
    assert 99 < waited[job.id] < 101 and 999 < waited[plain.id] < 1001
    # The second attempt, run now: the job's own factor applies (100 * 3).
    await app.trigger(job.id)
    await app.run_worker(burst=True, handle_signals=False)
    again = await app.get_job(job.id)
    assert again.attempts == 2
    assert 299 < (again.next_run_at - again.last_run_at).total_seconds() < 301  # type: ignore[operator]


async def test_a_short_backoff_of_its_own_retries_at_once_when_the_app_would_wait_an_hour(app: App) -> None:
    app.backoff = Backoff(base=3600, jitter=0)

    @app.handler()
    async def flaky(data: Any, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise RuntimeError("first time")
        return "second time"

    job = await app.enqueue("flaky", backoff=Backoff.fixed(0.05))
    async with app.worker():
        assert await app.wait(job.id, timeout=15) == "second time"
    runs = await app.job_history(job.id)
    assert [r.status for r in runs] == [RunStatus.FAILED, RunStatus.COMPLETED]


async def test_the_backoff_is_stored_read_back_and_kept_through_completion_and_trigger(app: App) -> None:
    @app.handler()
    async def ok(data: Any) -> str:
        return "done"

    wanted = Backoff(base=2, factor=3, cap=600, jitter=0.1)
    job = await app.enqueue("ok", backoff=wanted)
    assert job.backoff == wanted == (await app.get_job(job.id)).backoff
    assert (await app.list_jobs())[0].backoff == wanted
    stored = await app.pool.fetchval(f"SELECT backoff FROM {app.schema}.jobs WHERE id = $1", job.id)
    assert stored == {"base": 2.0, "factor": 3.0, "cap": 600.0, "jitter": 0.1}
    await app.run_worker(burst=True, handle_signals=False)
    done = await app.get_job(job.id)
    assert (done.status, done.backoff) == (JobStatus.COMPLETED, wanted)  # from its history row
    assert (await app.list_jobs(status="completed"))[0].backoff == wanted
    rerun = await app.trigger(job.id)  # back into jobs from its history row
    assert (rerun.status, rerun.backoff) == (JobStatus.PENDING, wanted)
    assert (await app.enqueue("ok")).backoff is None


async def test_enqueue_many_stores_each_items_backoff(app: App) -> None:
    @app.handler()
    async def ok(data: Any) -> None:
        return None

    jobs = await app.enqueue_many([
        {"handler": "ok", "backoff": Backoff.fixed(5)},
        {"handler": "ok"},
        {"handler": "ok", "backoff": {"base": 2, "factor": 3}},
        {"handler": "ok", "backoff": 9},
    ])
    expected = [Backoff.fixed(5), None, Backoff(base=2, factor=3), Backoff.fixed(9)]
    assert [j.backoff for j in jobs] == expected
    assert [(await app.get_job(j.id)).backoff for j in jobs] == expected
    same = await app.enqueue_many([{"handler": "ok", "backoff": Backoff.fixed(1)}] * 3)  # one value for all
    assert {(await app.get_job(j.id)).backoff for j in same} == {Backoff.fixed(1)}


@pytest.mark.parametrize(("backoff", "fragment"), [
    ("soon", "not JSON"), ({"base": -1}, "base >= 0"), ({"step": 1}, "unknown key"), (object(), "must be a Backoff"),
])
async def test_a_bad_backoff_is_refused_and_nothing_written(app: App, backoff: Any, fragment: str) -> None:
    @app.handler()
    async def ok(data: Any) -> None:
        return None

    with pytest.raises(ValidationError, match=fragment) as refused:
        await app.enqueue("ok", backoff=backoff)
    assert refused.value.field == "backoff"
    with pytest.raises(ValidationError, match=fragment) as in_batch:
        await app.enqueue_many([{"handler": "ok"}, {"handler": "ok", "backoff": backoff}])
    assert in_batch.value.field == "jobs[1].backoff"
    assert await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.jobs") == 0


async def test_the_cli_takes_a_backoff(app: App, cli_env: dict[str, str]) -> None:
    result = await run_cli(cli_env, "jobs", "enqueue", "ok", "--backoff", '{"base": 2, "factor": 3}', "--json")
    assert result.returncode == 0, result.stderr
    created = json.loads(result.stdout)
    assert created["backoff"] == {"base": 2.0, "factor": 3.0, "cap": 3600.0, "jitter": 0.2}
    assert (await app.get_job(created["id"])).backoff == Backoff(base=2, factor=3)
    result = await run_cli(cli_env, "jobs", "enqueue", "ok", "--backoff", "5", "--json")
    assert (await app.get_job(json.loads(result.stdout)["id"])).backoff == Backoff.fixed(5)
    result = await run_cli(cli_env, "jobs", "enqueue", "ok", "--backoff", '{"base": -2}')
    assert result.returncode != 0 and "--backoff" in result.stderr and "base >= 0" in result.stderr
