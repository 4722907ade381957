"""Fleet-wide limits (docs/limits.md): concurrency and rate, per handler, per key and per queue.

In one process, several workers share nothing but the database, as workers on different hosts
would; the last tests start worker processes (tests/apps/limits_app.py) that record every run in
a ledger, and count the overlaps and the starts per window from it.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aiojobs_pg import App, JobStatus, ValidationError, Worker
from aiojobs_pg.admin import QueueSettings
from aiojobs_pg.validation import RateLimit
from tests.helpers import REPO, eventually
from tests.integration.test_cli import cli_env, run_cli
from tests.integration.test_plans import BATCH, TABLE_ROWS, _executed_plan
from tests.integration.test_processes import Procs

__all__ = ["cli_env"]  # a fixture of test_cli's, used here


class Gauge:
    """How many runs are in progress now, per key, and the most there ever were."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self.done = 0

    @asynccontextmanager
    async def run(self, *keys: str) -> AsyncIterator[None]:
        for key in keys:
            self.now[key] += 1
            self.peak[key] = max(self.peak[key], self.now[key])
        try:
            yield
        finally:
            for key in keys:
                self.now[key] -= 1
            self.done += 1


@asynccontextmanager
async def workers(app: App, count: int, **kwargs: Any) -> AsyncIterator[list[Worker]]:
    """``count`` workers of ``app``, each with a claim loop, a lane and a listener of its own."""
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(app.worker(**kwargs)) for _ in range(count)]


async def test_a_handler_concurrency_limit_holds_across_workers(app: App) -> None:
    gauge = Gauge()

    @app.handler(concurrency_limit=2)
    async def call_api(data: int) -> None:
        async with gauge.run("all"):
            await asyncio.sleep(0.03)

    await app.enqueue_many([{"handler": "call_api", "data": i} for i in range(24)])
    async with workers(app, 3, concurrency=10, poll_interval=0.05):
        await eventually(lambda: gauge.done == 24, timeout=20)
    assert gauge.peak["all"] == 2  # reached, never passed (30 slots were free)


async def test_a_concurrency_key_limits_each_key_on_its_own(app: App) -> None:
    gauge = Gauge()

    @app.handler(concurrency_limit=1)
    async def sync_account(data: dict[str, Any], ctx: Any) -> None:
        async with gauge.run("all", data["key"] or "none"):
            await asyncio.sleep(0.03)

    # customer a's jobs come first in claim order: b's and the unkeyed ones must not wait behind them
    for key in ["a"] * 8 + ["b"] * 4 + [None] * 4:
        await app.enqueue("sync_account", {"key": key}, concurrency_key=key)
    job = await app.enqueue("sync_account", {"key": "c"}, concurrency_key="c")
    assert job.concurrency_key == "c" and (await app.get_job(job.id)).concurrency_key == "c"
    async with workers(app, 2, concurrency=10, poll_interval=0.05):
        await eventually(lambda: gauge.done == 17, timeout=20)
    assert gauge.peak["a"] == gauge.peak["b"] == gauge.peak["none"] == 1
    assert gauge.peak["all"] >= 2  # keys ran side by side
    assert (await app.get_job(job.id)).concurrency_key == "c"  # kept in the history


async def test_a_queue_concurrency_limit_counts_every_handler_of_the_queue(app: App) -> None:
    gauge = Gauge()

    @app.handler()
    async def mail(data: None) -> None:
        async with gauge.run("mail"):
            await asyncio.sleep(0.03)

    @app.handler()
    async def sms(data: None) -> None:
        async with gauge.run("mail"):
            await asyncio.sleep(0.03)

    settings = await app.set_queue("mail", concurrency_limit=3)
    assert settings == QueueSettings("mail", concurrency_limit=3)
    await app.enqueue_many([{"handler": h, "queue": "mail"} for h in ["mail", "sms"] * 10]
                           + [{"handler": "mail"} for _ in range(10)])  # default: no limit
    async with workers(app, 2, concurrency=10, queues=["mail", "default"], poll_interval=0.05):
        await eventually(lambda: gauge.done == 30, timeout=20)
    assert gauge.peak["mail"] >= 3
    limited = [r for r in await _runs(app) if r["queue"] == "mail"]
    assert _peak_overlap(limited) == 3


async def test_a_rate_limit_holds_in_every_window(app: App) -> None:
    @app.handler(rate_limit="4/0.5")
    async def ping(data: None) -> None:
        return None

    await app.enqueue_many([{"handler": "ping"} for _ in range(14)])
    started = time.monotonic()
    async with workers(app, 2, concurrency=10, poll_interval=0.05):
        await eventually(lambda: _drained(app), timeout=20)
    # 14 starts at 4 per half second take at least three windows
    assert time.monotonic() - started >= 1.0
    claims = sorted(r["last_run_at"] for r in await _runs(app))
    assert len(claims) == 14 and _most_in_a_window(claims, timedelta(seconds=0.5)) == 4


async def test_a_queue_rate_limit_and_set_queue_reaches_running_workers(app: App) -> None:
    @app.handler()
    async def push(data: None) -> None:
        return None

    async with workers(app, 2, concurrency=5, queues=["push"], poll_interval=0.05) as ws:
        signals = [w.signals.counts["limits"] for w in ws]
        await app.set_queue("push", rate_limit="3/1s")  # the notification reloads each worker's limits
        for w, seen in zip(ws, signals, strict=True):
            await asyncio.wait_for(w.signals.wait("limits", seen + 1), 10)
        await app.enqueue_many([{"handler": "push", "queue": "push"} for _ in range(7)])
        await eventually(lambda: _drained(app), timeout=20)
        claims = sorted(r["last_run_at"] for r in await _runs(app))
        assert _most_in_a_window(claims, timedelta(seconds=1)) == 3
        # removing it (None) lets the queue run free again
        assert (await app.set_queue("push", rate_limit=None)).rate_limit is None
        await eventually(lambda: all(w.producer.plan is None for w in ws), timeout=10)


async def test_the_plain_claim_never_takes_a_job_of_a_queue_with_limits(app: App) -> None:
    # A worker that has not heard of a queue's new limits yet claims it with the plain statement: that
    # statement itself skips the queue, so no job escapes the limit meanwhile.
    @app.handler()
    async def job(data: None) -> None:
        return None

    await app.enqueue("job", queue="q")
    await app.set_queue("q", concurrency_limit=5)
    claim = app.queries.claim_for(["job"])
    assert await app.queries.claim(app.pool, ["q"], 10, 30, "w", claim) == []
    limited = app.queries.claim_limited_for(["job"])
    claimed = await app.queries.claim_limited(app.pool, [("q", "job")], 10, 30, "w", limited,
                                              ([], [], [], []))
    assert len(claimed) == 1


@pytest.mark.parametrize("mode", ["force_generic_plan", "force_custom_plan"])
async def test_the_limited_claim_reads_its_ranges_and_no_more(app: App, mode: str) -> None:
    # Whatever plan PostgreSQL caches: jobs read through the claim index (the pairs' ranges) and the primary
    # key only, and a plan cheap enough never to be compiled with JIT (a limit it could not know, guessed
    # at a tenth of the queue, made it cost 50-180 ms per claim).
    await app.pool.execute(f"INSERT INTO {app.schema}.jobs (handler, queue, concurrency_key)"
                           f" SELECT 'h', 'q', 'k' || (g % 50) FROM generate_series(1, {TABLE_ROWS}) g")
    await app.pool.execute(f"ANALYZE {app.schema}.jobs")
    await app.set_queue("q", concurrency_limit=TABLE_ROWS, rate_limit=f"{TABLE_ROWS}/1m")
    claim = app.queries.claim_limited_for(["h"])
    args = (["q"], BATCH, 30.0, "w", ["h"], ["h"], [3], [None], [None])
    plan = await _executed_plan(app, mode, claim.sql, args)
    reads = [n for n in plan if n.get("Relation Name") == "jobs" and "Scan" in n["Node Type"]]
    assert {(n["Node Type"], n.get("Index Name")) for n in reads} == {("Index Scan", "jobs_claim_idx"),
                                                                     ("Index Scan", "jobs_pkey")}, reads
    assert plan[0]["Total Cost"] < 100_000  # under jit_above_cost
    # 50 keys of 3 each, in one claim: every group takes what it may, and no more
    claimed = await app.queries.claim_limited(app.pool, [("q", "h")], BATCH, 30.0, "w", claim,
                                              (["h"], [3], [None], [None]))
    keys = Counter(await app.pool.fetch(f"SELECT concurrency_key FROM {app.schema}.jobs WHERE status = 'running'"))
    assert len(claimed) == 150 and set(keys.values()) == {3}


async def test_a_job_that_leaves_running_by_any_way_frees_its_place(app: App) -> None:
    # The completion frees a job's place in its own statement; a rescue goes through it too. A job that
    # leaves running another way (cancelled while no worker runs it) holds its place until maintenance
    # finds it no longer running: one too many counted for a while, never one too few.
    @app.handler(concurrency_limit=1)
    async def one(data: None) -> None:
        return None

    for _ in range(4):
        await app.enqueue("one")
    limited = app.queries.claim_limited_for(["one"])
    limits = (["one"], [1], [None], [None])

    async def claim(lease: float = 30) -> list[int]:
        jobs = await app.queries.claim_limited(app.pool, [("default", "one")], 10, lease, "w", limited, limits)
        return [j.id for j in jobs]

    first = await claim()
    assert len(first) == 1 and await claim() == []
    await app.cancel(first[0])
    assert await claim() == []  # its worker (gone) never recorded the cancelled run: the place is still held
    async with app.worker(concurrency=1, queues=["nothing"]) as worker:  # maintenance, and nothing else
        await asyncio.wait_for(worker.signals.wait("prune", worker.signals.counts["prune"] + 1), 10)
        second = await claim(lease=0.01)  # maintenance freed it
        assert len(second) == 1 and await claim() == []
        # Its lease runs out: its worker is lost; maintenance rescues it.
        await eventually(lambda: app.pool.fetchval(
            f"SELECT lease_expires_at < now() FROM {app.schema}.jobs WHERE id = $1", second[0]))
        await asyncio.wait_for(worker.signals.wait("rescue", worker.signals.counts["rescue"] + 1), 10)
        assert (await app.get_job(second[0])).status is JobStatus.PENDING
        assert len(await claim()) == 1  # the rescue freed its place in its own statement
    counts = await app.pool.fetch(f"SELECT kind, name, ckey, running FROM {app.schema}.limit_counts")
    holders = await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.limit_holders")
    assert [tuple(r) for r in counts if r["running"]] == [("h", "one", "", 1)] and holders == 1


async def test_limits_are_validated(app: App) -> None:
    async def handler(data: None) -> None:
        return None

    bad: list[tuple[str, Any]] = [("concurrency_limit", 0), ("concurrency_limit", True), ("rate_limit", "10"),
                                  ("rate_limit", "0/1s"), ("rate_limit", "5/2d"), ("rate_limit", 5)]
    for field, value in bad:
        with pytest.raises(ValidationError) as err:
            app.register(f"h_{field}", handler, **{field: value})
        assert err.value.field == field
        with pytest.raises(ValidationError) as err:
            await app.set_queue("q", **{field: value})
        assert err.value.field == field
    with pytest.raises(ValidationError) as err:
        await app.set_queue("", concurrency_limit=1)
    assert err.value.field == "queue"
    app.register("ok", handler)
    with pytest.raises(ValidationError) as err:
        await app.enqueue("ok", concurrency_key="")
    assert err.value.field == "concurrency_key"
    assert await app.admin().queue_settings() == {}  # nothing was written


async def test_set_queue_keeps_what_it_is_not_given(app: App) -> None:
    await app.pause_queue("q")
    assert await app.set_queue("q", concurrency_limit=4) == QueueSettings("q", True, 4, None)
    assert await app.set_queue("q", rate_limit="10/1m") == QueueSettings("q", True, 4, RateLimit(10, 60.0))
    assert await app.set_queue("q", concurrency_limit=None) == QueueSettings("q", True, None, RateLimit(10, 60.0))
    await app.resume_queue("q")
    assert (await app.admin().queue_settings())["q"] == QueueSettings("q", False, None, RateLimit(10, 60.0))


async def test_the_cli_sets_and_lists_a_queue_s_limits(app: App, cli_env: dict[str, str]) -> None:
    done = await run_cli(cli_env, "queues", "set", "mail", "--concurrency-limit", "10", "--rate-limit", "50/1s")
    assert done.returncode == 0, done.stderr
    assert "concurrency limit 10, rate limit 50/1s" in done.stdout
    assert (await app.admin().queue_settings())["mail"] == QueueSettings("mail", False, 10, RateLimit(50, 1.0))
    cleared = await run_cli(cli_env, "queues", "set", "mail", "--rate-limit", "none", "--json")
    assert json.loads(cleared.stdout) == {"queue": "mail", "paused": False, "concurrencyLimit": 10, "rateLimit": None}
    [listed] = json.loads((await run_cli(cli_env, "queues", "list", "--json")).stdout)
    assert (listed["queue"], listed["concurrencyLimit"], listed["rateLimit"]) == ("mail", 10, None)
    table = (await run_cli(cli_env, "queues", "list")).stdout
    assert re.search(r"mail\s+active\s+10\s+none", table), table
    bad = await run_cli(cli_env, "queues", "set", "mail", "--rate-limit", "fast")
    assert bad.returncode == 1 and "rate_limit" in bad.stderr
    nothing = await run_cli(cli_env, "queues", "set", "mail")
    assert nothing.returncode == 2 and "--concurrency-limit" in nothing.stderr
    keyed = await run_cli(cli_env, "jobs", "enqueue", "send", "--concurrency-key", "customer-7", "--json")
    assert json.loads(keyed.stdout)["concurrencyKey"] == "customer-7"


# --- several worker processes ---


@pytest.fixture
def limits_procs(app: App, pg_dsn: str, tmp_path: Path) -> Iterator[Procs]:
    procs = LimitsProcs(tmp_path, pg_dsn, app.schema)
    try:
        yield procs
    finally:
        procs.cleanup()
        procs.dump()


class LimitsProcs(Procs):
    """Worker processes of tests/apps/limits_app.py."""

    def start_limits(self, concurrency: int, queues: list[str]) -> None:
        from tests.helpers import spawn_python

        env_vars = {"AIOJOBS_PG_DSN": self.dsn, "AIOJOBS_PG_SCHEMA": self.schema}
        log_path = self.tmp_path / f"worker-{len(self.started)}.log"
        proc, out, _ = spawn_python("tests.apps.limits_app", ["--concurrency", str(concurrency), "--queues", *queues],
                                    env_vars, log_path)
        self.started.append((proc, log_path, out))
        self.logs[proc.pid] = log_path


@pytest.fixture
async def ledger(app: App, pg_owner_dsn: str) -> str:
    table = f"{app.schema}.ledger"
    owner = await asyncpg.connect(pg_owner_dsn)
    try:
        await owner.execute(f"CREATE TABLE {table} (id bigserial PRIMARY KEY, job_id bigint, handler text, "
                            "queue text, ckey text, pid int, claimed_at timestamptz, started_at timestamptz, "
                            "finished_at timestamptz)")
        await owner.execute(f"GRANT ALL ON {table}, {table}_id_seq TO PUBLIC")
    finally:
        await owner.close()
    return table


async def test_worker_processes_never_pass_the_limits(app: App, limits_procs: LimitsProcs, ledger: str) -> None:
    await app.set_queue("capped", concurrency_limit=3)
    jobs = ([{"handler": "limited", "data": {"sleep": 0.08}, "concurrency_key": k} for k in ["a", "b"] * 12]
            + [{"handler": "limited", "data": {"sleep": 0.08}} for _ in range(12)]
            + [{"handler": "rated", "data": {"sleep": 0.01}} for _ in range(16)]
            + [{"handler": "free", "queue": "capped", "data": {"sleep": 0.08}} for _ in range(18)]
            + [{"handler": "free", "data": {"sleep": 0.01}} for _ in range(20)])  # no limit: runs as it comes
    for _ in range(3):
        limits_procs.start_limits(6, ["default", "capped"])
    await app.enqueue_many(jobs)
    total = len(jobs)
    async def all_ran() -> bool:
        return await _count(app, "SELECT count(*) FROM {schema}.ledger WHERE finished_at IS NOT NULL") == total

    await eventually(all_ran, timeout=60, interval=0.2, message="the workers did not run every job")
    rows = [dict(r) for r in await app.pool.fetch(f"SELECT * FROM {ledger}")]
    assert len({r["job_id"] for r in rows}) == total  # each job ran once
    assert len({r["pid"] for r in rows}) == 3  # every process took part

    def runs(**match: Any) -> list[dict[str, Any]]:
        return [r for r in rows if all(r[k] == v for k, v in match.items())]

    # at most 2 at once per key of limited (and for its jobs without a key), however many processes
    for key in ["a", "b", None]:
        assert _peak_overlap(runs(handler="limited", ckey=key)) == 2, key
    assert _peak_overlap(runs(handler="limited")) > 2  # the keys ran side by side
    # at most 3 at once in the queue whose limit set_queue set
    assert _peak_overlap(runs(queue="capped")) == 3
    # at most 5 claims of rated in any window of a second: 16 of them take more than three seconds
    claims = sorted(r["claimed_at"] for r in runs(handler="rated"))
    assert _most_in_a_window(claims, timedelta(seconds=1)) == 5
    assert claims[-1] - claims[0] >= timedelta(seconds=3)
    # the handler ran inside its claim: what the ledger saw started no earlier than the claim
    assert all(r["claimed_at"] is not None and r["started_at"] >= r["claimed_at"] for r in rows)


def test_the_docs_example_runs_as_written(pg_dsn: str, own_schema: str, needs_ddl: None) -> None:
    # docs/limits.md's Python blocks as one script, in a fresh interpreter on a schema of its own
    text = (REPO / "docs" / "limits.md").read_text(encoding="utf-8")
    script = "\n".join(re.findall(r"^```python\n(.*?)^```", text, re.S | re.M))
    env = {"AIOJOBS_PG_DSN": pg_dsn, "AIOJOBS_PG_SCHEMA": own_schema, "PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["10 50/1s", "at most 2 at once"]


# --- helpers ---


async def _count(app: App, sql: str) -> int:
    return int(await app.pool.fetchval(sql.replace("{schema}", app.schema)))


async def _drained(app: App) -> bool:
    return await _count(app, "SELECT count(*) FROM {schema}.jobs") == 0


async def _runs(app: App) -> list[Any]:
    """Every completed job's history row: its claim time (last_run_at), start and end."""
    return list(await app.pool.fetch(
        f"SELECT job_id, queue, handler, last_run_at, started_at, completed_at AS finished_at"
        f" FROM {app.schema}.job_runs WHERE handler IS NOT NULL"))


def _peak_overlap(runs: list[Any]) -> int:
    """The most runs in progress at once (a run is [started_at, finished_at))."""
    events = sorted([(r["started_at"], 1) for r in runs] + [(r["finished_at"], -1) for r in runs],
                    key=lambda e: (e[0], e[1]))  # an end before a start at the same instant
    now = peak = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def _most_in_a_window(times: list[datetime], period: timedelta) -> int:
    """The most of ``times`` (sorted) in any window [t, t + period)."""
    most, first = 0, 0
    for last, t in enumerate(times):
        while times[first] <= t - period:
            first += 1
        most = max(most, last - first + 1)
    return most
