"""Backoff per job: ``enqueue(backoff=)`` is stored with the job, claimed with it, and retries use it in
preference to the handler's and the app's."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aiojobs_pg import App, Backoff, JobContext, JobStatus, RunStatus, ValidationError
from tests.integration.test_cli import _base_env, run_cli


@pytest.fixture
def cli_env(pg_dsn: str, schema_name: str) -> dict[str, str]:
    """The environment of a CLI process pointed at the test schema (as tests/integration/test_cli.py's)."""
    return {**_base_env(), "AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": schema_name}


# --- stored, claimed, used (the database; the value alone: tests/unit/test_backoff.py) ---

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
