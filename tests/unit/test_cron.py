"""The cron dialect: the forms croniter reads differently, the Vixie day rule, and a second implementation.

The property test compares our run times with cronsim (a test-only dependency,
written independently of croniter) on random expressions and DST-heavy zones.
cronsim iterates local wall-clock times; the test maps them to UTC with the rule
``README.md`` states (a time in a spring-forward gap runs when the clocks jump, a
repeated time runs at its first occurrence), written here on its own.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cronsim import CronSim, CronSimError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiojobs_pg import InvalidSchedule, next_run_times
from aiojobs_pg.schedules import MAX_PREVIEW

START = datetime(2025, 1, 1, tzinfo=UTC)  # a Wednesday


def runs(expr: str, n: int = 6, zone: str = "UTC") -> list[str]:
    return [t.strftime("%a %Y-%m-%d %H:%M:%S") for t in next_run_times(expr, n, timezone=zone, after=START)]


# ---------------------------------------------------------------- the reproducers


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        # a range whose ends are equal is that one value, not the whole field
        ("30 23-23 * * *", ["Wed 2025-01-01 23:30:00", "Thu 2025-01-02 23:30:00", "Fri 2025-01-03 23:30:00"]),
        ("0 9 1-1 * *", ["Wed 2025-01-01 09:00:00", "Sat 2025-02-01 09:00:00", "Sat 2025-03-01 09:00:00"]),
        ("0 0 * * MON-MON", ["Mon 2025-01-06 00:00:00", "Mon 2025-01-13 00:00:00", "Mon 2025-01-20 00:00:00"]),
        ("0-0/20 * * * *", ["Wed 2025-01-01 01:00:00", "Wed 2025-01-01 02:00:00", "Wed 2025-01-01 03:00:00"]),
        # d#n beside a restricted day of the month: either one matches
        ("0 9 13 * 5#2", ["Fri 2025-01-10 09:00:00", "Mon 2025-01-13 09:00:00", "Thu 2025-02-13 09:00:00"]),
        ("0 9 17 * 2#2", ["Tue 2025-01-14 09:00:00", "Fri 2025-01-17 09:00:00", "Tue 2025-02-11 09:00:00"]),
        # 7 is Sunday, also as the start of a step or a range
        ("0 0 * * 7/4", ["Sun 2025-01-05 00:00:00", "Sun 2025-01-12 00:00:00", "Sun 2025-01-19 00:00:00"]),
        ("0 0 * * 7-SUN", ["Sun 2025-01-05 00:00:00", "Sun 2025-01-12 00:00:00", "Sun 2025-01-19 00:00:00"]),
        # a day field starting with * restricts nothing on its own: the days must match both fields
        ("0 9 */2 * MON", ["Mon 2025-01-13 09:00:00", "Mon 2025-01-27 09:00:00", "Mon 2025-02-03 09:00:00"]),
        ("0 9 1 * */2", ["Sat 2025-02-01 09:00:00", "Sat 2025-03-01 09:00:00", "Tue 2025-04-01 09:00:00"]),
    ],
)
def test_forms_croniter_reads_differently(expr: str, expected: list[str]) -> None:
    assert runs(expr, 3) == expected


# ---------------------------------------------------------------- the day rule (docs/schedules.md)


def test_two_restricted_day_fields_match_either() -> None:
    # the 1st and 15th, and every Monday
    assert runs("0 9 1,15 * MON", 5) == [
        "Wed 2025-01-01 09:00:00", "Mon 2025-01-06 09:00:00", "Mon 2025-01-13 09:00:00",
        "Wed 2025-01-15 09:00:00", "Mon 2025-01-20 09:00:00",
    ]


def test_a_star_day_field_defers_to_the_other() -> None:
    assert runs("0 9 * * MON", 2) == runs("0 9 ? * MON", 2) == ["Mon 2025-01-06 09:00:00", "Mon 2025-01-13 09:00:00"]
    assert runs("0 9 15 * *", 2) == ["Wed 2025-01-15 09:00:00", "Sat 2025-02-15 09:00:00"]


def test_a_full_range_is_a_restriction() -> None:
    # 1-31 does not start with *: with a restricted weekday the two are ORed, so every day runs
    assert runs("0 9 1-31 * MON", 3) == [
        "Wed 2025-01-01 09:00:00", "Thu 2025-01-02 09:00:00", "Fri 2025-01-03 09:00:00"]


def test_last_day_and_last_weekday() -> None:
    assert runs("0 9 L * *", 3) == ["Fri 2025-01-31 09:00:00", "Fri 2025-02-28 09:00:00", "Mon 2025-03-31 09:00:00"]
    assert runs("0 9 * * 5L", 2) == runs("0 9 * * L5", 2) == runs("0 9 * * FRIL", 2) == [
        "Fri 2025-01-31 09:00:00", "Fri 2025-02-28 09:00:00"]
    assert runs("0 9 1,L * *", 3) == ["Wed 2025-01-01 09:00:00", "Fri 2025-01-31 09:00:00", "Sat 2025-02-01 09:00:00"]


def test_weekday_kinds_mix_in_one_list() -> None:
    # Mondays, and the first Friday (croniter alone refuses to mix the two)
    assert runs("0 9 * * 1,5#1", 3) == ["Fri 2025-01-03 09:00:00", "Mon 2025-01-06 09:00:00", "Mon 2025-01-13 09:00:00"]


def test_ranges_that_wrap() -> None:
    assert runs("0 22-1 * * *", 4) == [
        "Wed 2025-01-01 01:00:00", "Wed 2025-01-01 22:00:00", "Wed 2025-01-01 23:00:00", "Thu 2025-01-02 00:00:00"]
    assert runs("0 0 * * FRI-MON", 4) == [
        "Fri 2025-01-03 00:00:00", "Sat 2025-01-04 00:00:00", "Sun 2025-01-05 00:00:00", "Mon 2025-01-06 00:00:00"]


def test_day_of_week_steps_run_to_seven() -> None:
    # 1/2 is 1-7/2: Monday, Wednesday, Friday and Sunday
    assert runs("0 0 * * 1/2", 4) == [
        "Fri 2025-01-03 00:00:00", "Sun 2025-01-05 00:00:00", "Mon 2025-01-06 00:00:00", "Wed 2025-01-08 00:00:00"]


def test_seconds_field_leads() -> None:
    assert runs("*/20 0 9 * * *", 3) == [
        "Wed 2025-01-01 09:00:00", "Wed 2025-01-01 09:00:20", "Wed 2025-01-01 09:00:40"]


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("0 9 LW * *", "only a plain L"),
        ("0 9 15W * *", "only a plain L"),
        ("0 9 L-3 * *", "only a plain L"),
        ("0 9 * * 5#6", "1-5"),
        ("0 9 * * 5#0", "1-5"),
        ("0 9 * * 1-5#2", "day-of-week field"),
        ("0 9 * * 8#1", "out of range 0-7"),
        ("? 9 * * *", "only allowed in the day fields"),
        ("0 9 * * MON/0", "step"),
        ("0 24-1 * * *", "out of range 0-23"),
        ("0 0 * JAN-FOO *", "month field"),
        ("0 0 */15 2 5L", "never fires"),
    ],
)
def test_refused_forms_name_the_problem(expr: str, hint: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        next_run_times(expr, 1)
    assert repr(expr) in info.value.message
    assert hint in info.value.message


# ---------------------------------------------------------------- next_run_times


def test_next_run_times_is_public_and_validates() -> None:
    times = next_run_times("15m", 3, after=START)
    assert times == [START + timedelta(minutes=15 * k) for k in (1, 2, 3)]
    assert all(t.tzinfo is UTC for t in next_run_times("0 9 * * *", 2, timezone="Asia/Tokyo"))
    assert next_run_times("0 9 * * *", 1, timezone="Asia/Tokyo", after=START) == [datetime(2025, 1, 2, 0, tzinfo=UTC)]
    now = datetime.now(UTC)
    assert now < next_run_times("1s", 1)[0] <= now + timedelta(seconds=2)
    assert next_run_times("5m", 0) == []
    for bad_n in (-1, MAX_PREVIEW + 1, 2.0, True):
        with pytest.raises(InvalidSchedule) as info:
            next_run_times("5m", bad_n)  # type: ignore[arg-type]
        assert info.value.field == "n"
    with pytest.raises(InvalidSchedule) as info:
        next_run_times("5m", 1, after=datetime(2025, 1, 1))
    assert info.value.field == "after"
    with pytest.raises(InvalidSchedule) as info:
        next_run_times("0 9 * * *", 1, timezone="Mars/Base")
    assert info.value.field == "timezone"


# ---------------------------------------------------------------- against cronsim

ZONES = ["UTC", "Europe/Paris", "America/New_York", "Australia/Lord_Howe", "America/Santiago",
         "Europe/Dublin", "Pacific/Chatham", "America/St_Johns", "Asia/Kolkata", "Africa/Casablanca"]


def field(lo: int, hi: int, names: list[str] | None = None) -> st.SearchStrategy[str]:
    def value(v: int) -> st.SearchStrategy[str]:
        if names is None:
            return st.just(str(v))
        return st.sampled_from([str(v), names[v - lo].upper(), names[v - lo].lower()]) if v - lo < len(names) \
            else st.just(str(v))

    number = st.integers(lo, hi)
    step = st.integers(1, hi - lo + 1).map(lambda s: f"/{s}")
    single = number.flatmap(value)
    ranged = st.tuples(number, number).map(sorted).flatmap(
        lambda ab: st.tuples(value(ab[0]), value(ab[1])).map("-".join))
    item = st.one_of(
        st.just("*"),
        step.map(lambda s: "*" + s),
        single,
        ranged,
        st.tuples(ranged, step).map("".join),
        st.tuples(single, step).map("".join),
    )
    return st.lists(item, min_size=1, max_size=3).map(",".join)


MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
dom = st.one_of(field(1, 31), st.just("L"), st.sampled_from(["1,L", "L,15"]))
dow = st.one_of(
    field(0, 7, DAYS),
    st.tuples(st.integers(0, 7), st.integers(1, 5)).map(lambda dn: f"{dn[0]}#{dn[1]}"),
    st.integers(0, 7).map(lambda d: f"{d}L"),
    st.tuples(field(0, 6), st.integers(0, 6)).map(lambda fd: f"{fd[0]},{fd[1]}#2"),
)
expressions = st.one_of(
    st.tuples(field(0, 59), field(0, 23), dom, field(1, 12, MONTHS), dow).map(" ".join),
    # seconds: keep the other fields dense, or eight runs would take years to check
    st.tuples(field(0, 59), field(0, 59), st.sampled_from(["*", "9", "*/6"]), st.just("*"), st.just("*"),
              st.sampled_from(["*", "MON-FRI"])).map(" ".join),
)


def first_instant(wall: datetime, zone: ZoneInfo) -> datetime:
    """README's rule: the first UTC instant whose local time is ``wall``, or the jump over it in a gap."""
    instants = [wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1)]
    real = [i for i in instants if i.astimezone(zone).replace(tzinfo=None) == wall]
    if real:
        return min(real)
    # In a gap: walk a minute at a time from the earlier reading to the first local time past
    # ``wall`` (these zones change their clocks on whole minutes).
    at = min(instants).replace(second=0)
    while at.astimezone(zone).replace(tzinfo=None) < wall:
        at += timedelta(minutes=1)
    return at


def reference(expr: str, zone_name: str, after: datetime, n: int) -> list[datetime]:
    zone = ZoneInfo(zone_name)
    # Start before ``after`` by more than any clock change, so a repeated local time whose first
    # occurrence came before ``after`` is seen (and dropped) there.
    walls = CronSim(expr, (after.astimezone(zone) - timedelta(hours=3)).replace(tzinfo=None, microsecond=0))
    out: list[datetime] = []
    for wall in walls:
        instant = first_instant(wall, zone)
        if instant > after and (not out or instant != out[-1]):
            out.append(instant)
        if len(out) == n:
            return out
    return out


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=expressions, zone=st.sampled_from(ZONES),
       after=st.datetimes(datetime(2020, 1, 1), datetime(2032, 1, 1), timezones=st.just(UTC)))
def test_runs_match_cronsim_with_our_dst_rule(expr: str, zone: str, after: datetime) -> None:
    try:
        ours = next_run_times(expr, 8, timezone=zone, after=after)
    except InvalidSchedule as exc:
        assert "never fires" in exc.message
        with pytest.raises((CronSimError, StopIteration)):
            next(CronSim(expr, datetime(2000, 1, 1)))
        return
    assert ours == reference(expr, zone, after, 8)
