"""Limits without a database: the rate limit's notation, and which of a worker's pairs claim under limits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_pg.errors import ValidationError
from aiojobs_pg.executor import HandlerSpec
from aiojobs_pg.limits import ClaimPlan, QueueLimits, plan_claims
from aiojobs_pg.queries import Queries, QueueRow
from aiojobs_pg.schedules import parse_duration
from aiojobs_pg.validation import RateLimit, check_concurrency_limit, duration_text, parse_rate_limit

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("text", "count", "period", "canonical"), [
    ("100/1m", 100, 60.0, "100/1m"),
    ("50/1s", 50, 1.0, "50/1s"),
    (" 7 / 90s ", 7, 90.0, "7/90s"),
    ("100/m", 100, 60.0, "100/1m"),
    ("1/H", 1, 3600.0, "1/1h"),
    ("5/0.5", 5, 0.5, "5/0.5"),
    ("3/120", 3, 120.0, "3/2m"),
    ("2/1d", 2, 86400.0, "2/1d"),
])
def test_a_rate_limit_is_n_per_a_duration(text: str, count: int, period: float, canonical: str) -> None:
    rate = parse_rate_limit(text)
    assert rate == RateLimit(count, period)
    assert str(rate) == canonical
    assert parse_rate_limit(str(rate)) == rate  # what it prints reads back the same
    assert parse_rate_limit(rate) is not None


@pytest.mark.parametrize(("value", "says"), [
    ("100", "expected N/period"),
    ("/1s", "expected N/period"),
    ("-1/1s", "expected N/period"),
    ("1.5/1s", "expected N/period"),
    ("\u0661/1s", "expected N/period"),  # an Arabic-Indic digit: not ASCII
    ("0/1s", "between 1 and"),
    ("3000000000/1s", "between 1 and"),
    ("1/0", "greater than zero"),
    ("1/", "invalid duration"),
    ("1/5 minutes", "invalid duration"),
    ("1/2d", "at most 1d"),
    (RateLimit(1, 0.0), "more than 0"),
    (RateLimit(1, float("nan")), "more than 0"),
    (100, "must be a string"),
    (None, "must be a string"),
])
def test_a_bad_rate_limit_is_refused_naming_the_field(value: Any, says: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_rate_limit(value, "rate_limit")
    assert err.value.field == "rate_limit"
    assert says in err.value.message


@pytest.mark.parametrize("seconds", [1, 59, 60, 90, 3600, 5400, 86400, 0.25, 1.5])
def test_duration_text_reads_back_as_the_same_duration(seconds: float) -> None:
    assert parse_duration(duration_text(seconds)).total_seconds() == seconds


def test_a_concurrency_limit_is_a_positive_integer() -> None:
    assert check_concurrency_limit(3) == 3
    for bad in (0, -1, True, 2.0, "3", 2**31):
        with pytest.raises(ValidationError) as err:
            check_concurrency_limit(bad)
        assert err.value.field == "concurrency_limit"


def _specs(**limits: dict[str, Any]) -> dict[str, HandlerSpec]:
    async def fn(data: Any) -> None:
        return None
    return {name: HandlerSpec.build(name, fn, **kw) for name, kw in limits.items()}


def test_only_the_pairs_under_a_limit_take_the_limited_claim() -> None:
    specs = _specs(api={"concurrency_limit": 2}, mail={}, push={"rate_limit": RateLimit(5, 1.0)})
    limits = {"slow": QueueLimits(concurrency=3), "idle": QueueLimits()}
    plan = ClaimPlan(Queries("s"), ["default", "slow", "idle"], ["api", "mail", "push"], specs, limits)
    assert plan.pairs == [("default", "api"), ("default", "push"), ("slow", "api"), ("slow", "mail"),
                          ("slow", "push"), ("idle", "api"), ("idle", "push")]
    # the rest: queues without limits with handlers without limits, in one plain claim
    assert plan.plain_queues == ["default", "idle"]
    assert plan.plain is not None and plan.plain.handlers == ["mail"]
    assert plan.limited is not None and plan.limited.handlers == ["api", "mail", "push"]
    assert plan.handler_limits == (["api", "push"], [2, None], [None, 5], [None, 1.0])
    assert plan.queue_limits == {"slow": QueueLimits(concurrency=3)}


def test_a_worker_with_no_pair_under_a_limit_has_no_plan() -> None:
    specs = _specs(mail={})
    rows = [QueueRow("other", False, NOW, 1, None, None), QueueRow("default", False, NOW, None, None, None)]
    assert plan_claims(Queries("s"), ["default"], ["mail"], specs, rows) is None
    plan = plan_claims(Queries("s"), ["default", "other"], ["mail"], specs, rows)
    assert plan is not None and plan.pairs == [("other", "mail")]


def test_queue_limits_read_from_a_settings_row() -> None:
    row = QueueRow("default", False, NOW, None, 50, 1.0)
    assert QueueLimits.from_row(row) == QueueLimits(None, RateLimit(50, 1.0))
    assert str(QueueLimits(2, RateLimit(50, 1.0))) == "concurrency 2, rate 50/1s"
    assert not QueueLimits() and str(QueueLimits()) == "none"
