"""Scenario 13: every backend of the calling app and of the workers is terminated, with calls running.

On the shared server, so ``pg_terminate_backend`` is aimed by ``application_name`` at this
scenario's own sessions only: the calling App's (``chaos-api``) and the workers' (``chaos0``,
``chaos1``). The workers' ledger pools are spared: the ledger is the observer, as in scenario 7.
Each of three rounds is a short storm, as while a failover completes: for half a second, every
backend of theirs is terminated as soon as it appears. Meanwhile four callers keep enqueueing
(one job and batches of three), reading jobs back (``get_job``) and listing them.

Issue 20, point 8: the enqueuing app's next ``get_job`` raised asyncpg's ``InternalClientError``
(three runs in four). Now every call either succeeds on a fresh connection or raises
:class:`~aiojobs_pg.DatabaseUnavailable`, naming the driver's error it comes from; an enqueue
that raised it with ``may_have_run=False`` wrote nothing. Once the storms are over, every call
succeeds, and every job that was enqueued runs exactly once.
"""

from __future__ import annotations

import itertools
import random
import time
from collections import Counter
from collections.abc import Awaitable
from typing import Any

import anyio
import pytest

from aiojobs_pg import App, DatabaseUnavailable
from tests.chaos.harness import Env, rounded, with_app_name
from tests.chaos.steps import wait_completed, wait_started
from tests.helpers import eventually

pytestmark = pytest.mark.slow

API = "chaos-api"
ROUNDS = 3
STORM = 0.5  # seconds during which every new backend is terminated too
BETWEEN = 1.5  # seconds of calm between storms, and after the last one
CALLERS = 4
HEALED_CALLS = 20


async def test_13_terminate_every_backend_with_calls_running(shared_env: Env, figures: dict[str, object]) -> None:
    """Backends of the API app and the workers terminated 3 times under calls: only DatabaseUnavailable, then healed."""
    env = shared_env
    workers = [env.fleet.start(10, lease=5) for _ in range(2)]
    await wait_started(env, *workers)
    api = App(with_app_name(env.dsn, API), schema=env.schema, auto_migrate=False, pool_max_size=10)
    await api.open()
    targets = [API, *(w.name for w in workers)]

    outcomes: Counter[tuple[str, str]] = Counter()
    raw_errors: list[str] = []  # anything but DatabaseUnavailable, or one without its cause
    enqueued: dict[int, int] = {}  # token -> job id, for every enqueue that returned
    may_exist: set[int] = set()  # tokens of enqueues that raised with may_have_run=True
    not_written: set[int] = set()  # tokens of enqueues that raised with may_have_run=False
    tokens = itertools.count()
    terminated: Counter[str] = Counter()

    async def call(kind: str, pending: Awaitable[Any], batch: list[int] | None = None) -> None:
        try:
            result = await pending
        except DatabaseUnavailable as exc:
            outcomes[(kind, "DatabaseUnavailable")] += 1
            cause = exc.__cause__
            if cause is None or type(cause).__name__ not in str(exc):
                raw_errors.append(f"{kind}: DatabaseUnavailable without its cause: {exc}")
            if batch is not None:
                (may_exist if exc.may_have_run else not_written).update(batch)
            return
        except Exception as exc:
            outcomes[(kind, type(exc).__name__)] += 1
            raw_errors.append(f"{kind}: {exc!r}")
            return
        outcomes[(kind, "ok")] += 1
        if batch is not None:
            jobs = list(result) if kind == "enqueue_many" else [result]
            enqueued.update({n: job.id for n, job in zip(batch, jobs, strict=True)})

    async def caller(stop: anyio.Event) -> None:
        while not stop.is_set():
            one = next(tokens)
            await call("enqueue", api.enqueue("record", {"n": one, "sleep": 0.05}), [one])
            three = [next(tokens) for _ in range(3)]
            await call("enqueue_many", api.enqueue_many(
                [{"handler": "record", "data": {"n": n, "sleep": 0.05}} for n in three]), three)
            if enqueued:
                await call("get_job", api.get_job(random.choice(list(enqueued.values()))))
            await call("list_jobs", api.list_jobs(limit=10))
            await anyio.sleep(0.01)

    async def storm() -> None:
        # Every backend of the targets, and every new one for STORM seconds: the fixture's App (no
        # application_name) reads on; nobody else's session is touched.
        until = time.monotonic() + STORM
        while time.monotonic() < until:
            rows = await env.pool.fetch(
                "SELECT application_name AS name, pg_terminate_backend(pid) AS done FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = ANY($1) AND pid <> pg_backend_pid()",
                targets)
            terminated.update(r["name"] for r in rows if r["done"])
            await anyio.sleep(0.05)

    t0 = time.monotonic()
    stop = anyio.Event()
    try:
        async with anyio.create_task_group() as tg:
            for _ in range(CALLERS):
                tg.start_soon(caller, stop)
            await anyio.sleep(BETWEEN)
            for _ in range(ROUNDS):
                await storm()
                await anyio.sleep(BETWEEN)  # calls right after the storm: succeed, or DatabaseUnavailable
            stop.set()
        during = dict(outcomes)

        # Healed: every call succeeds, at once.
        healed_at = time.monotonic()
        for _ in range(HEALED_CALLS):
            n = next(tokens)
            job = await api.enqueue("record", {"n": n, "sleep": 0.05})
            enqueued[n] = job.id
            assert (await api.get_job(job.id)).id == job.id
            assert job.id in {j.id for j in await api.list_jobs(limit=10)}
        healed_s = time.monotonic() - healed_at
    finally:
        await api.close()

    # Every job is one that an enqueue returned, or one whose outcome the error said was unknown.
    rows = await env.pool.fetch(f"SELECT id, (data->>'n')::int AS n FROM {env.schema}.all_jobs")
    by_token: Counter[int] = Counter(r["n"] for r in rows)
    ids = [r["id"] for r in rows]
    await wait_completed(env, ids, 60, alive=workers)

    async def settled() -> bool:  # a ledger row closes in the background when its write had to wait
        return (await env.ledger.summary(env.pool, ids)).open_runs == 0

    await eventually(settled, timeout=30, interval=0.2, message="ledger runs still open")
    summary = await env.ledger.summary(env.pool, ids)
    figures.update(
        rounds=ROUNDS, storm_s=STORM, backends_terminated=dict(terminated), run_s=rounded(time.monotonic() - t0, 1),
        calls={f"{kind} {outcome}": count for (kind, outcome), count in sorted(during.items())},
        enqueue_outcome_unknown=len(may_exist), enqueue_not_written=len(not_written),
        of_unknown_written=sum(1 for n in may_exist if by_token[n]), healed_calls_s=rounded(healed_s, 2),
        workers_alive=[w.alive for w in workers], **summary.figures())

    assert raw_errors == [], raw_errors[:10]
    assert terminated[API] >= ROUNDS and all(terminated[w.name] >= ROUNDS for w in workers), dict(terminated)
    assert all(w.alive for w in workers)
    assert all(by_token[n] == 1 for n in enqueued), "an enqueue that returned has no job"
    assert not any(by_token[n] for n in not_written), "an enqueue that said it wrote nothing wrote a job"
    assert set(by_token) <= set(enqueued) | may_exist and max(by_token.values()) == 1
    assert summary.lost == [] and summary.mismatched == []
    assert summary.double_runs == 0
