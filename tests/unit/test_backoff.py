"""Backoff, the value (no database): the waits it gives, what it parses and refuses, and which one the
executor applies. Stored, claimed and used with a database: ``tests/integration/test_job_backoff.py``."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_pg import Backoff, ValidationError
from aiojobs_pg.executor import Executor, HandlerSpec
from aiojobs_pg.models import MAX_BACKOFF, ClaimedJob

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


def test_backoff_math() -> None:
    b = Backoff(base=1, factor=2, cap=10, jitter=0)
    assert [b.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    jittered = Backoff(base=10, factor=1, cap=100, jitter=0.5)
    values = {jittered.delay(1) for _ in range(200)}
    assert min(values) >= 5 and max(values) <= 15 and len(values) > 100
    assert Backoff(base=1, factor=10, cap=5).delay(10_000) <= 5
