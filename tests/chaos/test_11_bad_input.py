"""Scenario 11: bad input, fuzzed with hypothesis, through the real API, the real database and a real worker.

Queue names, handler names, job names, dedup keys, schedules, time zones,
durations and payloads full of quotes, ``;``, NUL, lone surrogates (invalid
UTF-8), 8 KB+ strings, huge and deeply nested JSON. Every call must either
succeed (and store exactly what was given) or raise a typed
:class:`~aiojobs_pg.errors.AiojobsPgError`; never a database error or anything
else. A worker process runs every job that lands in its queue and must survive
them all. A LISTEN connection checks that NOTIFY payloads carry queue names only.

Hypothesis runs in a thread (``anyio.to_thread``) and each example calls the
App on the test's event loop (``anyio.from_thread``), so failures shrink.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import timedelta
from decimal import Decimal
from typing import Any

import anyio
import anyio.from_thread
import anyio.to_thread
import asyncpg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiojobs_pg.errors import AiojobsPgError
from tests.chaos.harness import Env, rounded
from tests.chaos.steps import wait_started
from tests.helpers import eventually

pytestmark = pytest.mark.slow

EXAMPLES = 600

#: quotes, SQL and shell metacharacters, odd but valid Unicode: stored as they are
NASTY = ["'", '"', "';--", "'); DROP TABLE jobs; --", ";", "\\", "$1", "%s", "{schema}", "\u2028", "\ufeff",
         "\U0001f4a9", "\x7f", "NULL", "\n\r\t", "LISTEN x; NOTIFY y", "' OR '1'='1", "\\u0000", "\\\\u0000",
         "default", " "]
#: what PostgreSQL text cannot hold, or what is out of bounds: refused with a typed error
BAD = ["\x00", "a\x00b", "\ud800", "x\udfffy", "", "   "]

_any_char = st.characters(blacklist_categories=())  # every code point, surrogates and NUL included
_valid_char = st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00")


def valid_text(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(_valid_char, min_size=1, max_size=min(max_size, 30)),
        st.lists(st.one_of(st.sampled_from(NASTY), st.text(_valid_char, max_size=4)), min_size=1,
                 max_size=5).map("".join),
        st.builds(lambda c, n: c * n, st.sampled_from(["a", "\u00e9", "\U0001f600", "'", ";"]),
                  st.integers(1, max_size)),
    ).filter(lambda t: t.strip() != "" and len(t) <= max_size)


bad_text = st.one_of(
    st.sampled_from(BAD),
    st.text(_any_char, min_size=1, max_size=10).map(lambda t: t + "\x00"),
    st.builds(lambda c, n: c * n, st.sampled_from(["a", "\U0001f600", ";"]), st.integers(8193, 20_000)),
)


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth - 1):
        value = [value] if i % 2 else {"k": value}
    return value


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | valid_text(10_000),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(valid_text(50), children, max_size=4),
    max_leaves=12)

#: per field: (usual values, odd values). Each example makes at most one field odd, so that most
#: calls get through the validation and exercise the database and the worker.
FIELDS: dict[str, tuple[st.SearchStrategy[Any], st.SearchStrategy[Any]]] = {
    "handler": (st.sampled_from(["echo", "echo", "record", "nope"]) | valid_text(500), bad_text),
    # Nesting stops at 500 levels here: deeper payloads near the recursion limit kill workers today, which
    # test_11_deepest_accepted_payload_does_not_kill_workers shows deterministically.
    "data": (st.one_of(json_values, json_values, st.integers(1, 500).map(nested),
                       st.builds(lambda n: {"blob": "x" * n}, st.integers(8193, 2_000_000))),
             st.one_of(bad_text, st.sampled_from([b"bytes", {1, 2}, 10**5000, float("nan"), [float("inf")],
                                                  object()]),
                       st.dictionaries(bad_text, st.none(), min_size=1, max_size=1))),
    "queue": (st.sampled_from(["default"] * 6) | valid_text(100), bad_text),
    "name": (st.none() | valid_text(500), bad_text),
    "dedup_key": (st.none() | st.none() | valid_text(500), bad_text),
    "schedule": (st.none() | st.none() | st.none() | st.sampled_from(
        ["10s", "1m", "*/5 * * * *", "0 0 * * *", "@daily", "*/10 * * * * *", "0 9 * * MON-FRI"]),
                 st.sampled_from(["61 * * * *", "* * * *", "1x", "0s", "-5m", "@reboot", "H * * * *",
                                  "0 0 30 2 *", "*/0 * * * *"]) | valid_text(300) | bad_text),
    "timezone": (st.none(), st.sampled_from(["UTC", "Europe/Paris", "../etc/passwd", "Nope/Zone", "UTC\x00"])
                 | valid_text(60) | bad_text),
    "priority": (st.integers(-100, 100), st.integers(-(2**40), 2**40)),
    "delay": (st.none() | st.none() | st.sampled_from([0, 0.5, "1s"]),
              st.floats() | st.integers(-10, 10**15) | st.sampled_from(["5x", "-1s", "1d"]) | valid_text(20)),
    "timeout": (st.none() | st.sampled_from([0.001, 30, "1h"]),
                st.floats() | st.integers(-10, 10**15) | st.sampled_from(["5x", "-1s"]) | valid_text(20)),
}


@st.composite
def calls(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    odd = draw(st.sampled_from([None, None, *FIELDS]))
    kwargs = {name: draw(pair[1] if name == odd else pair[0]) for name, pair in FIELDS.items()}
    if kwargs["schedule"] is not None and odd != "timezone":
        kwargs["timezone"] = draw(st.sampled_from([None, "UTC", "Europe/Paris", "America/New_York"]))
    return draw(st.sampled_from(["enqueue", "enqueue", "enqueue", "update", "list"])), kwargs


#: the handlers of the fault suite's worker app (tests/chaos/apps/worker.py)
WORKER_HANDLERS = frozenset({"record", "poison", "echo"})


def canonical(value: Any) -> Any:
    """JSON as PostgreSQL's jsonb keeps it: numbers compared as decimals (1e16 comes back as an integer)."""
    return json.loads(json.dumps(value), parse_float=Decimal, parse_int=Decimal)


async def test_11_fuzzed_input_typed_errors_only_worker_survives(shared_env: Env,
                                                                 figures: dict[str, object]) -> None:
    """600 fuzzed enqueue/update/list calls: success or a typed error, never a DB error; the worker survives."""
    env = shared_env
    worker = env.fleet.start(10, lease=5)
    await wait_started(env, worker)
    payloads_seen: list[str] = []
    listener = await asyncpg.connect(env.dsn)
    await listener.add_listener(f"{env.schema}_jobs", lambda _c, _p, _ch, payload: payloads_seen.append(payload))
    outcomes: Counter[str] = Counter()
    due_queues: set[str] = set()
    ran_here: list[int] = []  # one-off jobs due within seconds in the worker's queue, of a handler it has
    nobody_runs: list[int] = []  # the same, of a handler no worker has: they must wait, untouched
    t0 = time.monotonic()

    async def call(kind: str, kwargs: dict[str, Any]) -> None:
        try:
            if kind == "enqueue":
                job = await env.app.enqueue(**kwargs)
                stored = await env.app.get_job(job.id)
                assert stored.dedup_key == kwargs["dedup_key"]
                if kwargs["dedup_key"] is None:  # with a key, the job that already held it may come back
                    assert canonical(stored.data) == canonical(kwargs["data"]), "the stored payload differs"
                    for field in ("handler", "queue", "name", "priority"):
                        assert getattr(stored, field) == kwargs[field], field
                if stored.next_run_at <= stored.created_at:  # due at once: its insert notified
                    due_queues.add(stored.queue)
                # A valid odd delay (109 s, say) defers the job past the wait below: it is not due here.
                due_soon = stored.next_run_at <= stored.created_at + timedelta(seconds=5)
                if stored.schedule is None and stored.queue == "default" and due_soon:
                    (ran_here if stored.handler in WORKER_HANDLERS else nobody_runs).append(stored.id)
            elif kind == "update":
                job = await env.app.enqueue("echo", {"v": 1}, delay=3600)
                changed = await env.app.update_job(job.id, name=kwargs["name"], data=kwargs["data"],
                                                   queue=kwargs["queue"], priority=kwargs["priority"])
                assert canonical(changed.data) == canonical(kwargs["data"])
            else:
                await env.app.list_jobs(queue=kwargs["queue"], handler=kwargs["handler"], limit=5)
            outcomes[f"{kind}: ok"] += 1
        except AiojobsPgError as exc:
            outcomes[f"{kind}: {type(exc).__name__}"] += 1

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(calls())
    def example(drawn: tuple[str, dict[str, Any]]) -> None:
        anyio.from_thread.run(call, *drawn)

    try:
        await anyio.to_thread.run_sync(example)
        fuzz_s = time.monotonic() - t0

        async def settled() -> bool:
            assert worker.alive, f"the worker died (exit code {worker.returncode})"
            return await env.count(
                "SELECT count(*) FROM {schema}.all_jobs WHERE id = ANY($1) AND status IN ('pending', 'running')",
                ran_here) == 0

        await eventually(settled, timeout=60, interval=0.2, message="the fuzzed jobs were not all run")
        await anyio.sleep(0.5)  # the last notifications
    finally:
        await listener.close()

    results = {r["id"]: r for r in await env.pool.fetch(
        f"SELECT id, handler, status, data, result, last_error FROM {env.schema}.all_jobs WHERE id = ANY($1)",
        ran_here)}
    echo_mismatch = [i for i, r in results.items() if r["handler"] == "echo" and r["status"] == "completed"
                     and canonical(r["result"]) != canonical(r["data"])]
    statuses = Counter(r["status"] for r in results.values())
    figures.update(examples=EXAMPLES, fuzz_s=rounded(fuzz_s, 1), outcomes=dict(sorted(outcomes.items())),
                   jobs_run_by_the_worker=len(results), their_statuses=dict(statuses),
                   echo_results_differing_from_payload=len(echo_mismatch), worker_alive=worker.alive,
                   notifications=len(payloads_seen), distinct_notification_payloads=len(set(payloads_seen)),
                   longest_notification_payload=max((len(p) for p in payloads_seen), default=0))
    assert worker.alive
    assert echo_mismatch == []
    # A job whose handler no worker has is never claimed: it waits, pending, with no attempt spent.
    waiting = sorted(set(nobody_runs))  # an enqueue with a taken dedup key returns the same job again
    untouched = await env.pool.fetch(f"SELECT status, attempts FROM {env.schema}.jobs WHERE id = ANY($1)", waiting)
    assert len(untouched) == len(waiting) and {(r["status"], r["attempts"]) for r in untouched} <= {("pending", 0)}
    figures.update(jobs_no_worker_has=len(waiting))
    # NOTIFY carries the queue name of a due job, nothing else: never a payload, a name or a key.
    assert set(payloads_seen) <= due_queues
    assert max((len(p) for p in payloads_seen), default=0) <= 100


async def test_11_deepest_accepted_payload_does_not_kill_workers(shared_env: Env, figures: dict[str, object]) -> None:
    """The deepest payload enqueue accepts (from a shallow stack) is refused, or runs without killing a worker."""
    from aiojobs_pg import enqueue as enq
    from aiojobs_pg.errors import ValidationError

    env = shared_env

    def deepest_accepted() -> tuple[int, enq.NewJob | None]:
        # A fresh thread has a shallow stack, like a small script that enqueues.
        lo, hi, job = 1, 5000, None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            try:
                job = enq.prepare("echo", nested(mid), max_attempts=2)
                lo = mid
            except ValidationError:
                hi = mid - 1
        return lo, enq.prepare("echo", nested(lo), max_attempts=2) if lo > 1 else job

    depth, job = await anyio.to_thread.run_sync(deepest_accepted)
    figures["deepest_payload_accepted"] = depth
    worker = env.fleet.start(10, lease=1.5)
    await wait_started(env, worker)
    assert job is not None
    # Written as that script wrote it; reading it back here, deeper in the stack, is part of the question.
    deep_id = await env.pool.fetchval(
        f"INSERT INTO {env.schema}.jobs (handler, data, max_attempts) VALUES ('echo', $1::jsonb, 2) RETURNING id",
        job.data_json)
    try:
        await env.app.get_job(deep_id)
        figures["reading_it_back_from_the_api"] = "ok"
    except Exception as exc:
        figures["reading_it_back_from_the_api"] = type(exc).__name__
    others = [j.id for j in await env.app.enqueue_many([{"handler": "record"}] * 5)]

    async def settled() -> bool:
        if not worker.alive:
            return True
        row = await env.pool.fetchrow(f"SELECT status FROM {env.schema}.all_jobs WHERE id = $1", deep_id)
        assert row is not None
        done = await env.count("SELECT count(*) FROM {schema}.all_jobs WHERE id = ANY($1) AND status = 'completed'",
                               others)
        return row["status"] in ("completed", "failed") and done == len(others)

    await eventually(settled, timeout=30, interval=0.1)
    figures.update(worker_alive=worker.alive, worker_exit_code=worker.returncode)
    assert worker.alive, f"the worker died on a {depth}-level payload (exit code {worker.returncode})"
