"""Unit tests for aiojobs_pg.schedules: durations, intervals, cron and DST rules."""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aiojobs_pg.errors import InvalidSchedule, ValidationError
from aiojobs_pg.schedules import (
    Schedule,
    parse_duration,
    parse_interval,
    parse_schedule,
)

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")

# Zones with DST, including southern-hemisphere ones, 30/45-minute offsets or
# shifts, transitions at midnight (Santiago, Havana, Beirut) and Dublin's
# "negative" DST.
DST_ZONES = [
    "Europe/Paris",
    "Europe/London",
    "Europe/Dublin",
    "America/New_York",
    "America/Los_Angeles",
    "America/St_Johns",
    "America/Havana",
    "America/Santiago",
    "America/Sao_Paulo",
    "Australia/Sydney",
    "Australia/Adelaide",
    "Australia/Lord_Howe",
    "Pacific/Auckland",
    "Pacific/Chatham",
    "Asia/Beirut",
    "Asia/Tehran",
    "Africa/Cairo",
]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def local(zone: str | ZoneInfo, *args: int, fold: int = 0) -> datetime:
    tz = zone if isinstance(zone, ZoneInfo) else ZoneInfo(zone)
    return datetime(*args, tzinfo=tz, fold=fold)  # type: ignore[misc]


def ticks_between(schedule: Schedule, start: datetime, end: datetime) -> list[datetime]:
    """All ticks in (start, end], checking each step moves strictly forward."""
    result = []
    current = start
    while True:
        tick = schedule.next_after(current)
        assert tick > current
        assert tick.tzinfo is UTC
        if tick > end:
            return result
        result.append(tick)
        current = tick


def wall_exists(zone: ZoneInfo, wall: datetime) -> bool:
    aware = wall.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == wall


# ---------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, timedelta(seconds=30)),
        (0, timedelta(0)),
        (1.5, timedelta(seconds=1.5)),
        (0.0, timedelta(0)),
        (timedelta(minutes=5), timedelta(minutes=5)),
        (timedelta(0), timedelta(0)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("5M", timedelta(minutes=5)),
        ("0s", timedelta(0)),
        (" 10s ", timedelta(seconds=10)),
        ("30", timedelta(seconds=30)),
        ("1.5", timedelta(seconds=1.5)),
        (".5", timedelta(seconds=0.5)),
        ("2.", timedelta(seconds=2)),
        ("0", timedelta(0)),
    ],
)
def test_parse_duration_valid(value: object, expected: timedelta) -> None:
    assert parse_duration(value) == expected  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "value",
    [
        -1,
        -0.5,
        float("nan"),
        float("inf"),
        float("-inf"),
        True,
        False,
        None,
        [1],
        b"5s",
        "",
        "   ",
        "abc",
        "-5s",
        "+5s",
        "-1",
        "5 s",
        "5w",
        "5ms",
        "1.5m",
        "1e3",
        "nan",
        "inf",
        "5s5",
        "0x10",
        "\u0665s",
        timedelta(seconds=-1),
        10**30,
        1e300,
        "9" * 400,
        "9" * 30 + "d",
    ],
)
def test_parse_duration_invalid(value: object) -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration(value, field="timeout")  # type: ignore[arg-type]
    assert info.value.field == "timeout"
    assert repr(value)[:40] in str(info.value)


@pytest.mark.parametrize("value", [0, 0.0, "0", "0s", "0.0", timedelta(0), 1e-9])
def test_parse_duration_zero_rejected_when_not_allowed(value: object) -> None:
    with pytest.raises(ValidationError, match="greater than zero"):
        parse_duration(value, allow_zero=False)  # type: ignore[arg-type]


def test_parse_duration_default_field_name() -> None:
    with pytest.raises(ValidationError) as info:
        parse_duration("soon")
    assert info.value.field == "duration"
    assert "'soon'" in info.value.message


# ---------------------------------------------------------------- intervals


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1s", timedelta(seconds=1)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("2h", timedelta(hours=2)),
        ("1d", timedelta(days=1)),
        ("7D", timedelta(days=7)),
        ("15M", timedelta(minutes=15)),
        ("05m", timedelta(minutes=5)),
        ("3660d", timedelta(days=3660)),
    ],
)
def test_parse_interval_valid(text: str, expected: timedelta) -> None:
    assert parse_interval(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "0s",
        "00m",
        "-5m",
        "+5m",
        "5",
        "m",
        "5 m",
        " 5m",
        "5m ",
        "5m\n",
        "5w",
        "1.5h",
        "5ms",
        "5mm",
        "",
        "\u0665m",
        "3661d",
        "9" * 40 + "s",
    ],
)
def test_parse_interval_invalid(text: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse_interval(text)
    assert info.value.field == "schedule"
    assert repr(text)[:40] in info.value.message
    # Malformed or zero intervals get a reminder of the accepted forms.
    assert "<n>s, <n>m, <n>h or <n>d" in info.value.message or "maximum" in info.value.message


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("10s", utc(2025, 1, 1, 0, 0, 5), utc(2025, 1, 1, 0, 0, 10)),
        ("10s", utc(2025, 1, 1, 0, 0, 10), utc(2025, 1, 1, 0, 0, 20)),
        ("7m", utc(2025, 1, 1), utc(2025, 1, 1, 0, 5)),  # 2025-01-01 is epoch + 7m*k + 2m
        ("1h", utc(2025, 1, 1, 10, 59, 59, 999999), utc(2025, 1, 1, 11)),
        ("5h", utc(1970, 1, 1), utc(1970, 1, 1, 5)),
        ("1m", utc(1969, 12, 31, 23, 59, 30), utc(1970, 1, 1)),
        ("1d", utc(2025, 1, 1, 12), utc(2025, 1, 2)),
        ("2d", utc(2025, 1, 2, 12), utc(2025, 1, 4)),  # 2025-01-02 is day 20090: even
    ],
)
def test_interval_next_after(expr: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(expr).next_after(after) == expected


def test_interval_ignores_timezone_for_hours() -> None:
    paris = parse_schedule("1h", "Europe/Paris")
    kolkata = parse_schedule("1h", "Asia/Kolkata")  # +05:30 does not shift the grid
    after = utc(2025, 3, 30, 0, 30)
    assert paris.next_after(after) == kolkata.next_after(after) == utc(2025, 3, 30, 1)


def test_day_interval_ticks_at_local_midnight_across_dst() -> None:
    schedule = parse_schedule("1d", "Europe/Paris")
    ticks = schedule.next_times(local(PARIS, 2025, 3, 28, 12), 4)
    assert [t.astimezone(PARIS).replace(tzinfo=None) for t in ticks] == [datetime(2025, 3, d) for d in (29, 30, 31)] + [
        datetime(2025, 4, 1)
    ]
    # 23 hours on the spring-forward day, 24 otherwise.
    assert [b - a for a, b in itertools.pairwise(ticks)] == [
        timedelta(hours=24),
        timedelta(hours=23),
        timedelta(hours=24),
    ]


def test_day_interval_when_midnight_does_not_exist() -> None:
    # Santiago jumps from 00:00 to 01:00 on 2025-09-07: the day starts at 01:00.
    santiago = ZoneInfo("America/Santiago")
    tick = parse_schedule("1d", "America/Santiago").next_after(local(santiago, 2025, 9, 6, 12))
    assert tick.astimezone(santiago) == local(santiago, 2025, 9, 7, 1)


def test_interval_next_times() -> None:
    times = parse_schedule("15m").next_times(utc(2025, 1, 1, 0, 1), 3)
    assert times == [utc(2025, 1, 1, 0, 15), utc(2025, 1, 1, 0, 30), utc(2025, 1, 1, 0, 45)]


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(1, 500),
    unit=st.sampled_from(["s", "m", "h"]),
    after=st.datetimes(datetime(1900, 1, 1), datetime(2200, 1, 1)),
    zone=st.sampled_from(["UTC", *DST_ZONES]),
)
def test_interval_property(n: int, unit: str, after: datetime, zone: str) -> None:
    schedule = parse_schedule(f"{n}{unit}", zone)
    step = parse_interval(f"{n}{unit}")
    aware = after.replace(tzinfo=ZoneInfo(zone))
    tick = schedule.next_after(aware)
    # Intervals count elapsed time: add the step in UTC (adding it to a zoned datetime moves the wall clock).
    start = aware.astimezone(UTC)
    assert start < tick <= start + step
    assert (tick - EPOCH) % step == timedelta(0)


def test_an_interval_spanning_a_dst_change_is_elapsed_time() -> None:
    # Hypothesis found this one: 332 h from midnight GMT on 2185-03-15 ends after London's clocks go forward.
    london = ZoneInfo("Europe/London")
    start = datetime(2185, 3, 15, tzinfo=london)
    tick = parse_schedule("332h", "Europe/London").next_after(start)
    assert tick == utc(2185, 3, 28, 20)
    assert tick - start.astimezone(UTC) == timedelta(hours=332)
    assert tick.astimezone(london).hour == 21  # BST by then: the wall clock moved 333 hours


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(1, 10),
    after=st.datetimes(datetime(2000, 1, 1), datetime(2037, 12, 31), timezones=st.just(UTC)),
    zone=st.sampled_from(["UTC", *DST_ZONES]),
)
def test_day_interval_property(n: int, after: datetime, zone: str) -> None:
    tz = ZoneInfo(zone)
    tick = parse_schedule(f"{n}d", zone).next_after(after)
    assert after < tick <= after + timedelta(days=n, hours=2)
    wall = tick.astimezone(tz).replace(tzinfo=None)
    assert (wall.date() - date(1970, 1, 1)).days % n == 0
    midnight = datetime.combine(wall.date(), time())
    assert wall == midnight or not wall_exists(tz, midnight)


# ---------------------------------------------------------------- cron


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        ("*/15 * * * *", utc(2025, 1, 1, 10, 7, 30), utc(2025, 1, 1, 10, 15)),
        ("*/15 * * * *", utc(2025, 1, 1, 10, 15), utc(2025, 1, 1, 10, 30)),
        ("*/15 * * * *", utc(2025, 1, 1, 10, 15, 0, 500000), utc(2025, 1, 1, 10, 30)),
        ("5,35 * * * *", utc(2025, 1, 1, 10, 5), utc(2025, 1, 1, 10, 35)),
        ("1-3/2 */6 * * *", utc(2025, 1, 1, 6, 2), utc(2025, 1, 1, 6, 3)),
        ("1-3/2 */6 * * *", utc(2025, 1, 1, 6, 3), utc(2025, 1, 1, 12, 1)),
        ("0 9 * * MON-FRI", utc(2025, 1, 4, 12), utc(2025, 1, 6, 9)),  # Sat -> Mon
        ("0 9 * * mon-fri", utc(2025, 1, 6, 9), utc(2025, 1, 7, 9)),
        ("0 0 1 JAN,JUL *", utc(2025, 2, 1), utc(2025, 7, 1)),
        ("0 0 * * 0", utc(2025, 1, 1), utc(2025, 1, 5)),
        ("0 0 * * 7", utc(2025, 1, 1), utc(2025, 1, 5)),
        ("0 0 29 2 *", utc(2025, 1, 1), utc(2028, 2, 29)),
        ("0 0 L * *", utc(2025, 2, 3), utc(2025, 2, 28)),
        ("58-1 * * * *", utc(2025, 1, 1, 10, 2), utc(2025, 1, 1, 10, 58)),
        ("  0   12 * * *  ", utc(2025, 1, 1), utc(2025, 1, 1, 12)),
        # six fields: the LEADING field is seconds
        ("*/10 * * * * *", utc(2025, 1, 1, 12, 0, 5), utc(2025, 1, 1, 12, 0, 10)),
        ("*/10 * * * * *", utc(2025, 1, 1, 12, 0, 10), utc(2025, 1, 1, 12, 0, 20)),
        ("30 0 2 * * *", utc(2025, 1, 1), utc(2025, 1, 1, 2, 0, 30)),
        ("30 0 2 * * *", utc(2025, 1, 1, 2, 0, 30), utc(2025, 1, 2, 2, 0, 30)),
        ("0 0 0 1 1 *", utc(2025, 6, 1), utc(2026, 1, 1)),
        # aliases
        ("@hourly", utc(2025, 1, 1, 10), utc(2025, 1, 1, 11)),
        ("@daily", utc(2025, 1, 1, 0, 0, 1), utc(2025, 1, 2)),
        ("@midnight", utc(2025, 1, 1, 23, 59), utc(2025, 1, 2)),
        ("@weekly", utc(2025, 1, 1), utc(2025, 1, 5)),
        ("@monthly", utc(2025, 1, 15), utc(2025, 2, 1)),
        ("@yearly", utc(2025, 6, 1), utc(2026, 1, 1)),
        ("@ANNUALLY", utc(2025, 6, 1), utc(2026, 1, 1)),
    ],
)
def test_cron_next_after(expr: str, after: datetime, expected: datetime) -> None:
    schedule = parse_schedule(expr)
    assert schedule.kind == "cron"
    result = schedule.next_after(after)
    assert result == expected
    assert result.tzinfo is UTC


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        ("Europe/Paris", utc(2025, 7, 1), utc(2025, 7, 1, 10)),
        ("Europe/Paris", utc(2025, 1, 1), utc(2025, 1, 1, 11)),
        ("America/New_York", utc(2025, 1, 1), utc(2025, 1, 1, 17)),
        ("Asia/Kolkata", utc(2025, 1, 1), utc(2025, 1, 1, 6, 30)),
        ("Australia/Sydney", utc(2025, 1, 1), utc(2025, 1, 1, 1)),
    ],
)
def test_cron_evaluated_in_schedule_timezone(zone: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule("0 12 * * *", zone).next_after(after) == expected


def test_cron_accepts_after_in_any_timezone() -> None:
    after = local("Asia/Tokyo", 2025, 1, 1, 9)  # 00:00 UTC
    assert parse_schedule("0 * * * *").next_after(after) == utc(2025, 1, 1, 1)


def test_next_times_lists_successive_runs() -> None:
    runs = parse_schedule("0 9 * * MON-FRI", "Europe/Paris").next_times(utc(2025, 1, 3, 12), 5)
    assert [r.astimezone(PARIS).date().isoformat() for r in runs] == [
        "2025-01-06",
        "2025-01-07",
        "2025-01-08",
        "2025-01-09",
        "2025-01-10",
    ]
    assert all(r.astimezone(PARIS).time() == time(9) for r in runs)
    assert parse_schedule("5m").next_times(utc(2025, 1, 1), 0) == []
    with pytest.raises(ValueError, match="negative"):
        parse_schedule("5m").next_times(utc(2025, 1, 1), -1)


def test_next_after_requires_aware_datetime() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("5m").next_after(datetime(2025, 1, 1))


@pytest.mark.parametrize(
    ("expr", "hint"),
    [
        ("* * * *", "4 fields"),
        ("* * * * * * *", "7 fields"),
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day-of-month"),
        ("* * 32 * *", "day-of-month"),
        ("* * * 13 *", "month"),
        ("* * * 0 *", "month"),
        ("* * * * 8", "day-of-week"),
        ("* * * FOO *", "month"),
        ("* * * * FOO", "day-of-week"),
        ("61 * * * * *", "second"),
        ("*/0 * * * *", "minute"),
        ("-1 * * * *", "minute"),
        ("a b c d e", "minute"),
        ("0 0 31 2 *", "never fires"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 0 30 FEB *", "never fires"),
        ("@reboot", "neither an interval"),
        ("@every", "neither an interval"),
        ("5x", "neither an interval"),
        ("soon", "neither an interval"),
        ("R * * * *", "random"),
        ("H * * * *", "hashed"),
        ("0 h * * *", "hashed"),
        ("* * * * MON;", "unexpected characters"),
        ("* * * * 'MON'", "unexpected characters"),
        ("\u0663 * * * *", "unexpected characters"),
        ("0s", "positive"),
        ("0d", "positive"),
    ],
)
def test_invalid_cron(expr: str, hint: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse_schedule(expr)
    assert info.value.field == "schedule"
    assert repr(expr) in info.value.message
    assert hint in info.value.message


@pytest.mark.parametrize("expr", ["", "   ", "\t\n", "5m\0", "\0", "0 " * 150 + "0"])
def test_invalid_text(expr: str) -> None:
    with pytest.raises(InvalidSchedule):
        parse_schedule(expr)


def test_length_limit_applies_to_stripped_text() -> None:
    minutes = ",".join(["0"] * 96)  # 191 characters, 199 with the other fields
    assert parse_schedule(f"   {minutes} * * * *   ").expr == f"{minutes} * * * *"
    with pytest.raises(InvalidSchedule, match="longer than 200"):
        parse_schedule(f"{minutes},0 * * * *")


@pytest.mark.parametrize(
    "zone", ["Mars/Olympus", "", "localtime", "../etc/passwd", "UTC\0", "Europe/Paris ", "europe/paris"]
)
def test_invalid_timezone(zone: str) -> None:
    with pytest.raises(InvalidSchedule) as info:
        parse_schedule("5m", zone)
    assert info.value.field == "timezone"
    assert repr(zone) in info.value.message


def test_parse_schedule_kinds_and_normalisation() -> None:
    interval = parse_schedule("  5M \n")
    assert (interval.expr, interval.timezone, interval.kind) == ("5M", "UTC", "interval")
    cron = parse_schedule(" */5 * * * * ", "Europe/Paris")
    assert (cron.expr, cron.timezone, cron.kind) == ("*/5 * * * *", "Europe/Paris", "cron")
    assert parse_schedule("5m") == Schedule("5m", kind="interval")
    assert hash(parse_schedule("5m")) == hash(Schedule("5m", kind="interval"))
    assert "_zone" not in repr(cron)


def test_schedule_constructor_validates() -> None:
    with pytest.raises(InvalidSchedule):
        Schedule("5m", kind="cron")
    with pytest.raises(InvalidSchedule):
        Schedule("* * * * *", kind="interval")
    with pytest.raises(InvalidSchedule) as info:
        Schedule("5m", kind="weekly")  # type: ignore[arg-type]
    assert info.value.field == "kind"
    schedule = Schedule("5m", kind="interval")
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.expr = "6m"  # type: ignore[misc]
    moved = dataclasses.replace(schedule, expr="1d", timezone="Europe/Paris")
    assert moved.next_after(utc(2025, 1, 1, 12)) == utc(2025, 1, 1, 23)


# ---------------------------------------------------------------- DST


@pytest.mark.parametrize(
    ("spring", "fall"),
    [(date(2025, 3, 30), date(2025, 10, 26)), (date(2026, 3, 29), date(2026, 10, 25))],
)
def test_paris_daily_0230_runs_once_per_local_day(spring: date, fall: date) -> None:
    schedule = parse_schedule("30 2 * * *", "Europe/Paris")
    for day in (spring, fall):
        start = datetime.combine(day - timedelta(days=4), time(12), PARIS)
        end = datetime.combine(day + timedelta(days=4), time(12), PARIS)
        ticks = ticks_between(schedule, start, end)
        per_day = Counter(t.astimezone(PARIS).date() for t in ticks)
        assert per_day == {day + timedelta(days=i): 1 for i in range(-3, 5)}
    spring_tick = schedule.next_after(datetime.combine(spring, time(0), PARIS))
    # 02:30 does not exist: the run happens when the clocks jump to 03:00 CEST.
    assert spring_tick == datetime.combine(spring, time(1), UTC)
    assert spring_tick.astimezone(PARIS).time() == time(3)
    fall_tick = schedule.next_after(datetime.combine(fall, time(0), PARIS))
    # 02:30 happens twice: only the first (CEST, +02:00) occurrence runs.
    assert fall_tick == datetime.combine(fall, time(0, 30), UTC)
    second_occurrence = local(PARIS, fall.year, fall.month, fall.day, 2, 30, fold=1)
    assert schedule.next_after(fall_tick) == datetime.combine(fall + timedelta(days=1), time(1, 30), UTC)
    assert schedule.next_after(second_occurrence) == datetime.combine(fall + timedelta(days=1), time(1, 30), UTC)


def test_spring_forward_gap_merges_into_jump() -> None:
    walls = [
        t.astimezone(PARIS).strftime("%H:%M%z")
        for t in parse_schedule("*/15 * * * *", "Europe/Paris").next_times(local(PARIS, 2025, 3, 30, 1, 40), 4)
    ]
    assert walls == ["01:45+0100", "03:00+0200", "03:15+0200", "03:30+0200"]
    six = parse_schedule("0 30 2 * * *", "Europe/Paris").next_after(local(PARIS, 2025, 3, 30))
    assert six == utc(2025, 3, 30, 1)


def test_fall_back_repeated_hour_runs_once() -> None:
    schedule = parse_schedule("*/15 * * * *", "Europe/Paris")
    ticks = ticks_between(schedule, local(PARIS, 2025, 10, 26, 1), local(PARIS, 2025, 10, 26, 4))
    walls = [t.astimezone(PARIS).replace(tzinfo=None) for t in ticks]
    assert len(walls) == len(set(walls)) == 12  # 01:15 .. 04:00, each wall time once
    assert ticks[3] - ticks[2] == timedelta(minutes=15)  # 01:45 CEST -> 02:00 CEST
    assert ticks[7] - ticks[6] == timedelta(hours=1, minutes=15)  # 02:45 CEST -> 03:00 CET
    # Asking from inside the second 02:xx hour skips to 03:00 CET.
    inside = local(PARIS, 2025, 10, 26, 2, 10, fold=1)
    assert schedule.next_after(inside) == utc(2025, 10, 26, 2)


def test_lord_howe_half_hour_shifts() -> None:
    zone = ZoneInfo("Australia/Lord_Howe")
    # 2025-10-05: 02:00 +10:30 jumps to 02:30 +11:00; 02:15 runs at the jump.
    tick = parse_schedule("15 2 * * *", "Australia/Lord_Howe").next_after(local(zone, 2025, 10, 5))
    assert tick.astimezone(zone) == local(zone, 2025, 10, 5, 2, 30)
    # 2025-04-06: 02:00 +11:00 falls back to 01:30 +10:30; 01:45 runs once, at +11:00.
    schedule = parse_schedule("45 1 * * *", "Australia/Lord_Howe")
    ticks = ticks_between(schedule, local(zone, 2025, 4, 5, 12), local(zone, 2025, 4, 7, 12))
    assert ticks == [utc(2025, 4, 5, 14, 45), utc(2025, 4, 6, 15, 15)]


def test_santiago_midnight_transitions() -> None:
    zone = ZoneInfo("America/Santiago")
    daily = parse_schedule("@daily", "America/Santiago")
    # 2025-09-07 00:00 does not exist (clocks go to 01:00).
    assert daily.next_after(local(zone, 2025, 9, 6, 12)).astimezone(zone) == local(zone, 2025, 9, 7, 1)
    # 2025-04-05 23:30 happens twice (00:00 -03 falls back to 23:00 -04): runs once.
    late = parse_schedule("30 23 * * *", "America/Santiago")
    ticks = ticks_between(late, local(zone, 2025, 4, 5, 12), local(zone, 2025, 4, 6, 12))
    assert ticks == [utc(2025, 4, 6, 2, 30)]


@cache
def transition_days(zone_name: str, year: int) -> list[date]:
    """Local dates around which the zone's UTC offset changes during ``year``."""
    zone = ZoneInfo(zone_name)
    days = []
    noon = datetime(year, 1, 1, 12, tzinfo=zone)
    for i in range(366):
        today = noon + timedelta(days=i)
        yesterday = noon + timedelta(days=i - 1)
        if today.utcoffset() != yesterday.utcoffset():
            days.append(today.date())
    return days


@settings(max_examples=200, deadline=None)
@given(
    zone_name=st.sampled_from(DST_ZONES),
    year=st.integers(2000, 2037),
    hour=st.integers(0, 23),
    minute=st.integers(0, 59),
)
def test_daily_cron_runs_once_per_local_day_around_dst(zone_name: str, year: int, hour: int, minute: int) -> None:
    zone = ZoneInfo(zone_name)
    schedule = parse_schedule(f"{minute} {hour} * * *", zone_name)
    for day in transition_days(zone_name, year):
        start = datetime.combine(day - timedelta(days=4), time(12), zone)
        end = datetime.combine(day + timedelta(days=4), time(12), zone)
        ticks = ticks_between(schedule, start, end)
        assert ticks == sorted(set(ticks))
        per_day = Counter(t.astimezone(zone).date() for t in ticks)
        assert all(per_day[day + timedelta(days=i)] == 1 for i in range(-3, 4)), per_day
        for tick in ticks:
            wall = tick.astimezone(zone).replace(tzinfo=None)
            wanted = datetime.combine(wall.date(), time(hour, minute))
            # Either the wall time itself, or the jump when that time was skipped.
            assert wall == wanted or (wall > wanted and not wall_exists(zone, wanted))


# ---------------------------------------------------------------- fuzzing

CRON_TOKENS = st.sampled_from(
    [
        "*",
        "*/5",
        "0",
        "59",
        "60",
        "1-5",
        "5-1",
        "1,2",
        ",",
        "MON",
        "jan",
        "L",
        "5#3",
        "15W",
        "?",
        "R",
        "H",
        "@daily",
        "@hourly",
        ";",
        "'",
        '"',
        "\0",
        "-",
        "/",
        "\u00e9",
        "\u0663",
        "2",
        "31",
        "29",
        "FEB",
        "0s",
        "5m",
    ]
)


@settings(max_examples=400, deadline=None)
@given(
    expr=st.one_of(
        st.text(max_size=250),
        st.lists(CRON_TOKENS, min_size=1, max_size=8).map(" ".join),
        st.lists(CRON_TOKENS, min_size=1, max_size=4).map("".join),
    ),
    zone=st.one_of(st.none(), st.sampled_from(["UTC", "Europe/Paris", "Nope/Zone", ""]), st.text(max_size=20)),
)
def test_parse_schedule_only_raises_invalid_schedule(expr: str, zone: str | None) -> None:
    try:
        schedule = parse_schedule(expr, zone)
    except InvalidSchedule as exc:
        assert exc.field in {"schedule", "timezone"}
        return
    # Anything accepted must be able to produce ticks.
    now = datetime.now(UTC)
    assert schedule.next_after(now) > now


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=40), st.integers(-(10**20), 10**20), st.floats(), st.none()))
def test_parse_duration_only_raises_validation_error(value: object) -> None:
    try:
        result = parse_duration(value)  # type: ignore[arg-type]
    except ValidationError as exc:
        assert exc.field == "duration"
        return
    assert result >= timedelta(0)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_parse_interval_only_raises_invalid_schedule(text: str) -> None:
    try:
        result = parse_interval(text)
    except InvalidSchedule:
        return
    assert result > timedelta(0)


def test_overlap_policies() -> None:
    from aiojobs_pg.schedules import parse_schedule

    every_10s = parse_schedule("10s")
    t = datetime(2026, 1, 1, tzinfo=UTC)
    long_run = {"tick": t, "claimed_at": t, "finished_at": t + timedelta(seconds=25)}
    assert every_10s.next_run(**long_run) == t + timedelta(seconds=10)  # wait: right after the run
    assert every_10s.next_run(**long_run, overlap="skip") == t + timedelta(seconds=30)
    late_claim = {"tick": t, "claimed_at": t + timedelta(hours=1), "finished_at": t + timedelta(hours=1)}
    assert every_10s.next_run(**late_claim) == t + timedelta(hours=1, seconds=10)
    caught_up = every_10s.next_run(**late_claim, misfire="all")
    assert caught_up == t + timedelta(hours=1) - timedelta(seconds=1000) + timedelta(seconds=10)
