"""Durations and recurring schedules (fixed intervals and cron expressions).

Two schedule forms are accepted:

* an interval ``<n>s``, ``<n>m``, ``<n>h`` or ``<n>d`` (``n`` a positive integer);
* a cron expression: five fields ``minute hour day-of-month month day-of-week``,
  or six with a LEADING seconds field (``"*/10 * * * * *"`` = every ten
  seconds), or one of ``@yearly @annually @monthly @weekly @daily @midnight
  @hourly``.

Ticks are a pure function of the schedule and an instant, so every worker
computes the same ticks without sharing state.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo

from .cron import CronError, CronSpec, compile_cron
from .errors import InvalidSchedule, ValidationError
from .models import Job, JobStatus

__all__ = ["Schedule", "next_run_times", "parse_duration", "parse_interval", "parse_schedule", "upcoming_runs"]

#: Longest accepted schedule expression, after stripping.
MAX_EXPR_LENGTH = 200
#: Longest accepted interval; longer ones would overflow ``datetime`` arithmetic.
MAX_INTERVAL = timedelta(days=3660)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DATE = date(1970, 1, 1)
_ONE_SECOND = timedelta(seconds=1)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_INTERVAL_FORMS = "<n>s, <n>m, <n>h or <n>d with n a positive integer (e.g. '30s', '5m', '2h', '1d')"
_CRON_FORMS = (
    "5 fields 'minute hour day month weekday', 6 fields with a leading seconds "
    "field, or one of @yearly @annually @monthly @weekly @daily @midnight @hourly"
)
# re.ASCII: \d would otherwise accept non-ASCII digits that int() happily converts.
_INTERVAL_RE = re.compile(r"(\d+)([smhd])", re.IGNORECASE | re.ASCII)
_SECONDS_RE = re.compile(r"\d+(?:\.\d*)?|\.\d+", re.ASCII)
_CRON_FIELD_RE = re.compile(r"[0-9A-Za-z*/,#?-]+")
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


def _show(value: object) -> str:
    """Repr of ``value`` cut short, so messages stay readable for huge inputs."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def parse_duration(
    value: float | int | timedelta | str, *, field: str = "duration", allow_zero: bool = True
) -> timedelta:
    """Convert a duration given at an API edge into a :class:`timedelta`.

    Accepts a number of seconds (``int``/``float``, not ``bool``), a ``timedelta``,
    a string ``"<n>s"``, ``"<n>m"``, ``"<n>h"``, ``"<n>d"`` or a plain number of
    seconds as a string (``"30"``, ``"1.5"``). Negative, non-finite, malformed and
    (unless ``allow_zero``) zero durations raise :class:`ValidationError` for ``field``.
    """

    def fail(reason: str) -> ValidationError:
        return ValidationError(field, f"invalid duration {_show(value)}: {reason}")

    # bool is an int subclass; True seconds is almost certainly a mistake.
    if isinstance(value, bool):
        raise fail("expected a number of seconds, a timedelta or a string like '30s'")
    try:
        if isinstance(value, timedelta):
            result = value
        elif isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise fail("must be a finite number of seconds")
            if value < 0:
                raise fail("must not be negative")
            result = timedelta(seconds=value)
        elif isinstance(value, str):
            text = value.strip()
            if match := _INTERVAL_RE.fullmatch(text):
                number, unit = match.groups()
                result = timedelta(seconds=int(number) * _UNITS[unit.lower()])
            elif _SECONDS_RE.fullmatch(text):
                seconds = float(text)
                if not math.isfinite(seconds):
                    raise fail("is too large")
                result = timedelta(seconds=seconds)
            else:
                raise fail("expected seconds ('30', '1.5') or <n>s, <n>m, <n>h, <n>d ('5m')")
        else:
            raise fail(f"expected a number of seconds, a timedelta or a string, not {type(value).__name__}")
    except OverflowError:
        raise fail("is too large") from None
    if result < timedelta(0):
        raise fail("must not be negative")
    if not allow_zero and not result:
        raise fail("must be greater than zero")
    return result


def _split_interval(text: str) -> tuple[int, str]:
    """Validate an interval and return ``(n, unit)`` with the unit lower-cased."""
    match = _INTERVAL_RE.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise InvalidSchedule(f"invalid interval {_show(text)}: expected {_INTERVAL_FORMS}")
    number, unit = int(match.group(1)), match.group(2).lower()
    if number == 0:
        raise InvalidSchedule(f"invalid interval {_show(text)}: n must be positive; expected {_INTERVAL_FORMS}")
    if number * _UNITS[unit] > MAX_INTERVAL.total_seconds():
        raise InvalidSchedule(f"invalid interval {_show(text)}: longer than the maximum of {MAX_INTERVAL.days}d")
    return number, unit


def parse_interval(text: str) -> timedelta:
    """Parse an interval schedule ``<n>s``, ``<n>m``, ``<n>h`` or ``<n>d`` exactly.

    ``n`` is a positive integer with no sign and no spaces; the unit may be upper
    case. Anything else raises :class:`InvalidSchedule`.
    """
    number, unit = _split_interval(text)
    return timedelta(seconds=number * _UNITS[unit])


def _load_zone(name: object) -> ZoneInfo:
    """Return the IANA zone ``name`` or raise ``InvalidSchedule`` on the timezone field."""
    try:
        # "localtime" is the host's zone file: workers on different hosts would disagree.
        if not isinstance(name, str) or name == "localtime":
            raise ValueError(name)
        return ZoneInfo(name)
    except (ValueError, KeyError, OSError):  # ZoneInfoNotFoundError is a KeyError
        raise InvalidSchedule(
            f"unknown time zone {_show(name)}: expected an IANA name such as 'Europe/Paris'",
            field="timezone",
        ) from None


def _compile(expr: str) -> CronSpec:
    """Compile our cron syntax (aliases expanded, seconds leading) for croniter."""
    fields = _ALIASES.get(expr.lower(), expr).split()
    if len(fields) == 1:
        raise InvalidSchedule(
            f"invalid schedule {_show(expr)}: neither an interval ({_INTERVAL_FORMS}) "
            f"nor a cron expression ({_CRON_FORMS})"
        )
    bad = f"invalid cron expression {_show(expr)}:"
    if len(fields) not in (5, 6):
        raise InvalidSchedule(f"{bad} got {len(fields)} fields, expected {_CRON_FORMS}")
    for item in fields:
        if not _CRON_FIELD_RE.fullmatch(item):
            raise InvalidSchedule(f"{bad} unexpected characters in field {_show(item)}")
    try:
        return compile_cron(fields)
    except CronError as exc:
        raise InvalidSchedule(f"{bad} {exc}") from None


def _wall_to_utc(wall: datetime, zone: ZoneInfo) -> datetime:
    """Map a naive local wall time to the UTC instant it runs at (see :class:`Schedule`)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    # fold=0 picks the first occurrence of an ambiguous time; a round trip detects gaps.
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # In a gap fold=1 uses the new offset (an instant before the jump) and fold=0 the
    # old one (after it): bisect for the instant the clocks jump.
    lo, hi = wall.replace(tzinfo=zone, fold=1).astimezone(UTC), first
    while hi - lo > _ONE_SECOND:
        mid = lo + timedelta(seconds=(hi - lo) // _ONE_SECOND // 2)
        if mid.astimezone(zone).replace(tzinfo=None) > wall:
            hi = mid
        else:
            lo = mid
    return hi


#: with ``misfire="all"``, catch up at most this many periods of missed ticks
MAX_CATCH_UP = 100


@dataclass(frozen=True)
class Schedule:
    """A validated recurring schedule; build one with :func:`parse_schedule`.

    ``expr`` is the stripped expression, ``timezone`` an IANA name and ``kind``
    ``"interval"`` or ``"cron"``.

    Intervals of seconds, minutes and hours tick on a grid anchored at the Unix
    epoch in UTC (``1970-01-01T00:00Z + k * interval``), whatever the time zone,
    so workers agree without coordination. Day intervals ``<n>d`` tick at local
    midnight in ``timezone`` on every n-th local calendar day counted from
    1970-01-01 (``"1d"`` in Europe/Paris ticks at Paris midnight; use ``"24h"``
    for a strict 24-hour grid).

    Cron expressions, and local midnights of day intervals, are matched on local
    wall-clock time in ``timezone``, and each matching wall time runs once:

    * spring forward: a wall time inside the gap (02:30 in Europe/Paris on the
      last Sunday of March) runs at the first instant after the gap, i.e. when
      the clocks jump (03:00 local); several skipped times merge into that one run;
    * fall back: a wall time that occurs twice runs only at its first occurrence,
      so the repeated hour produces no extra runs.
    """

    expr: str
    timezone: str = "UTC"
    kind: Literal["interval", "cron"] = field(kw_only=True)
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _step: timedelta = field(init=False, repr=False, compare=False)
    _days: int = field(init=False, repr=False, compare=False)
    _cron: CronSpec | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Normalise and validate every field at once, failing with InvalidSchedule."""
        if not isinstance(self.expr, str):
            raise InvalidSchedule(f"expected a string, not {type(self.expr).__name__}")
        expr = self.expr.strip()
        if not expr:
            raise InvalidSchedule("empty schedule: expected an interval or a cron expression")
        if len(expr) > MAX_EXPR_LENGTH:
            raise InvalidSchedule(f"schedule {_show(expr)} is longer than {MAX_EXPR_LENGTH} characters")
        if "\0" in expr:
            raise InvalidSchedule(f"schedule {_show(expr)} contains a NUL character")
        zone = _load_zone(self.timezone)
        step, days, cron = timedelta(0), 0, None
        if self.kind == "interval":
            number, unit = _split_interval(expr)
            step = timedelta(seconds=number * _UNITS[unit])
            days = number if unit == "d" else 0
        elif self.kind == "cron":
            # Bad fields and dates that never occur (Feb 31) fail here, not at run time.
            cron = _compile(expr)
        else:
            raise InvalidSchedule(
                f"unknown schedule kind {_show(self.kind)}: expected 'interval' or 'cron'", field="kind"
            )
        # Frozen dataclass: object.__setattr__ is the sanctioned way to fill derived fields.
        for name, value in (("expr", expr), ("_zone", zone), ("_step", step), ("_days", days), ("_cron", cron)):
            object.__setattr__(self, name, value)

    def next_after(self, after: datetime) -> datetime:
        """Return the first tick strictly after the aware datetime ``after``, in UTC."""
        if after.tzinfo is None or after.utcoffset() is None:
            raise ValueError("after must be a timezone-aware datetime")
        if self.kind == "interval" and not self._days:
            return _EPOCH + ((after - _EPOCH) // self._step + 1) * self._step
        if self.kind == "interval":
            day = after.astimezone(self._zone).date()
            day -= timedelta(days=(day - _EPOCH_DATE).days % self._days)
            while (tick := _wall_to_utc(datetime.combine(day, time()), self._zone)) <= after:
                day += timedelta(days=self._days)
            return tick
        assert self._cron is not None
        # Whole seconds suffice as croniter's start: ticks are whole seconds in wall time.
        wall = after.astimezone(self._zone).replace(tzinfo=None, microsecond=0, fold=0)
        first: datetime | None = None
        for ticks in self._cron.walls(wall):
            # The wall-to-UTC mapping never decreases, so the first later instant is the answer;
            # earlier candidates are repeated (fall-back) times whose first run is already past.
            while (tick := _wall_to_utc(ticks.get_next(datetime), self._zone)) <= after:
                pass
            first = tick if first is None else min(first, tick)
        assert first is not None  # a CronSpec has at least one variant
        return first

    def next_run(self, *, tick: datetime, claimed_at: datetime, finished_at: datetime,
                 misfire: str = "skip", overlap: str = "wait") -> datetime:
        """When a recurring job runs next, after the run for ``tick`` (claimed and finished as given).

        Never earlier than the tick after ``tick``, so a tick runs once (no drift from
        run time). ``misfire`` decides ticks missed before the claim (downtime, a late
        claim): ``"skip"`` runs once for all of them and continues on the grid after
        the claim; ``"all"`` runs each one in turn, but keeps at most
        :data:`MAX_CATCH_UP` periods of them. ``overlap`` decides ticks that pass while
        the run goes on: ``"wait"`` runs once right after it for all of them;
        ``"skip"`` drops them and continues after the run ends.
        """
        if misfire == "all":
            first, second = self.next_times(finished_at, 2)
            base = max(tick, finished_at - MAX_CATCH_UP * (second - first))
        else:
            base = max(tick, claimed_at)
        if overlap == "skip":
            base = max(base, finished_at)
        return self.next_after(base)

    def next_times(self, after: datetime, n: int) -> list[datetime]:
        """Return the ``n`` ticks following ``after``, in order (UTC)."""
        if n < 0:
            raise ValueError("n must not be negative")
        result: list[datetime] = []
        for _ in range(n):
            after = self.next_after(after)
            result.append(after)
        return result


def parse_schedule(expr: str, timezone: str | None = None) -> Schedule:
    """Parse and fully validate an interval or cron schedule.

    ``expr`` matching ``<n>s|m|h|d`` (case-insensitive) is an interval, anything
    else a cron expression; ``timezone`` defaults to ``"UTC"``. Raises only
    :class:`InvalidSchedule` (``field="timezone"`` for an unknown zone).
    """
    if not isinstance(expr, str):
        raise InvalidSchedule(f"expected a string, not {type(expr).__name__}")
    text = expr.strip()
    kind: Literal["interval", "cron"] = "interval" if _INTERVAL_RE.fullmatch(text) else "cron"
    return Schedule(text, "UTC" if timezone is None else timezone, kind=kind)


#: most run times :func:`next_run_times` returns in one call
MAX_PREVIEW = 1000


def next_run_times(expr: str, n: int, *, timezone: str = "UTC", after: datetime | None = None) -> list[datetime]:
    """The next ``n`` run times of the schedule ``expr``, as aware UTC datetimes.

    ``expr`` is an interval or a cron expression in ``timezone`` (an IANA name),
    read exactly as a recurring job reads it, so the preview is what will run.
    Times are strictly after ``after`` (an aware datetime; default: now). Raises
    :class:`InvalidSchedule` for a bad expression or zone, and for ``n`` outside
    0..:data:`MAX_PREVIEW` or a naive ``after``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_PREVIEW:
        raise InvalidSchedule(f"n must be an integer from 0 to {MAX_PREVIEW}, got {_show(n)}", field="n")
    if after is None:
        after = datetime.now(UTC)
    elif not isinstance(after, datetime) or after.tzinfo is None or after.utcoffset() is None:
        raise InvalidSchedule(f"after must be a timezone-aware datetime, got {_show(after)}", field="after")
    return parse_schedule(expr, timezone).next_times(after, n)


def upcoming_runs(job: Job, n: int, now: datetime | None = None) -> list[datetime]:
    """The next ``n`` runs of a recurring ``job``: ``next_run_at``, then the ticks after it (or after now, if due).

    A due job runs at once, then on the ticks after that run. Empty for a one-off
    job, and for one that will not run again by itself (failed or cancelled, which
    ``retry`` brings back). Cut short rather than raise where the ticks would pass
    year 9999 or the job's zone is gone from the time zone database.
    """
    if job.schedule is None or job.status not in (JobStatus.PENDING, JobStatus.RUNNING) or n <= 0:
        return []
    start = max(now or datetime.now(UTC), job.next_run_at)
    try:
        later = next_run_times(job.schedule, n - 1, timezone=job.timezone or "UTC", after=start)
    except (InvalidSchedule, OverflowError, ValueError):
        later = []
    return [job.next_run_at, *later]
