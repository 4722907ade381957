"""Cron expressions: our dialect, parsed here and handed to croniter in a form it reads right.

croniter reads some forms differently from Vixie cron and cronie (``23-23`` as
the whole field, ``7/4`` in the day of week as ``0/4``, a restricted day of the
month beside ``5#2`` dropped), so this module parses every field itself and
gives croniter only explicit value lists, ``*``, ``L``, ``L<d>`` and ``<d>#<n>``.
The day fields are combined as Vixie cron does (see :func:`compile_cron`); where
croniter cannot express the combination in one expression, the schedule is the
union of several, each read with ``day_or=False``.

The dialect (documented with examples in ``docs/schedules.md``):

* fields ``[second] minute hour day-of-month month day-of-week``; a field is a
  comma-separated list of ``*``, ``n``, ``a-b``, each optionally ``/step``
  (``a/step`` is ``a-max/step``); a range whose start is after its end wraps
  (``22-2`` is 22, 23, 0, 1, 2);
* names ``JAN``-``DEC`` and ``SUN``-``SAT`` (any case) in the month and day-of-week
  fields; the day of week is 0-7, with both 0 and 7 meaning Sunday;
* ``?`` in a day field is ``*``; ``L`` in the day of the month is its last day;
  ``<d>#<n>`` in the day of week is the n-th such weekday of the month (n 1-5),
  ``<d>L`` (or ``L<d>``) the last one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from croniter import CroniterBadDateError, croniter

__all__ = ["CronError", "CronSpec", "compile_cron"]

_MONTHS = {name: i for i, name in enumerate(
    ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"), start=1)}
_DAYS = {name: i for i, name in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"))}


@dataclass(frozen=True)
class _Field:
    name: str
    lo: int
    hi: int
    names: dict[str, int] | None = None


_SECOND = _Field("second", 0, 59)
_MINUTE = _Field("minute", 0, 59)
_HOUR = _Field("hour", 0, 23)
_DOM = _Field("day-of-month", 1, 31)
_MONTH = _Field("month", 1, 12, _MONTHS)
_DOW = _Field("day-of-week", 0, 7, _DAYS)

# re.ASCII: \d would otherwise accept non-ASCII digits that int() happily converts.
_ITEM_RE = re.compile(r"(?P<base>\*|\?|(?P<a>\w+)(?:-(?P<b>\w+))?)(?:/(?P<step>\w+))?", re.ASCII)
_NTH_RE = re.compile(r"(?P<d>\w+)#(?P<n>\w+)", re.ASCII)
_LAST_RE = re.compile(r"(?P<d>[0-9A-Za-z]+?)L|L(?P<d2>[0-9A-Za-z]+)", re.ASCII | re.IGNORECASE)
# croniter's R (random) and H (hashed) values differ between processes or need a hash id: workers
# would disagree on the ticks.
_NONDETERMINISTIC = {"H", "R"}


class CronError(ValueError):
    """Why a cron expression is invalid (the caller adds the expression)."""


class _FieldError(Exception):
    """A problem with one field; :func:`compile_cron` adds the field's name and text."""


def _value(token: str, spec: _Field) -> int:
    upper = token.upper()
    if upper in _NONDETERMINISTIC:
        raise _FieldError("random (R) and hashed (H) values are not supported")
    if spec.names is not None and upper in spec.names:
        return spec.names[upper]
    if not token.isascii() or not token.isdigit():
        names = f" or a name ({', '.join(spec.names)})" if spec.names else ""
        raise _FieldError(f"{token!r} is not a number{names}")
    number = int(token)
    if not spec.lo <= number <= spec.hi:
        raise _FieldError(f"{number} is out of range {spec.lo}-{spec.hi}")
    return number


def _item(text: str, spec: _Field) -> list[int]:
    """The values of one list item (``*``, ``n``, ``a-b``, each with an optional ``/step``), in order."""
    match = _ITEM_RE.fullmatch(text)
    if match is None:
        raise _FieldError(f"cannot read {text!r}")
    step = 1
    if match["step"] is not None:
        if not match["step"].isdigit() or int(match["step"]) == 0:
            raise _FieldError(f"step {match['step']!r} must be a positive number")
        step = int(match["step"])
    if match["a"] is None:  # * or ?
        start, end = spec.lo, spec.hi
    else:
        start = _value(match["a"], spec)
        # a/step runs to the field's end; a alone is itself.
        end = _value(match["b"], spec) if match["b"] is not None else (spec.hi if match["step"] else start)
    if start <= end:
        span = list(range(start, end + 1))
    else:  # a range that wraps: start..max, then min..end
        span = list(range(start, spec.hi + 1)) + list(range(spec.lo, end + 1))
    return span[::step]


def _plain(text: str, spec: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        values.update(_item(item, spec))
    return values


def _emit(values: set[int], spec: _Field) -> str:
    """``*`` for the whole range, else the sorted list."""
    return "*" if values >= set(range(spec.lo, spec.hi + 1)) else ",".join(map(str, sorted(values)))


def _dom(text: str) -> str:
    """The day-of-month field as croniter reads it: values and ``L`` (the month's last day)."""
    items = text.split(",")
    last = any(item.upper() == "L" for item in items)
    rest = [item for item in items if item.upper() != "L"]
    for item in rest:
        if "L" in item.upper() or "W" in item.upper():
            raise _FieldError(f"{item!r}: only a plain L (the last day) is supported, not L-n, LW or W")
    values = _plain(",".join(rest), _DOM) if rest else set()
    parts = [_emit(values, _DOM)] if values else []
    if last and parts != ["*"]:
        parts.append("L")
    return ",".join(parts)


def _dow(text: str) -> list[str]:
    """The day-of-week field as one or more croniter fields (croniter cannot mix their kinds)."""
    plain: set[int] = set()
    nth: list[str] = []
    last: list[str] = []
    for item in text.split(","):
        if "#" in item:
            match = _NTH_RE.fullmatch(item)
            if match is None:
                raise _FieldError(f"cannot read {item!r}: expected <weekday>#<n>")
            day = _value(match["d"], _DOW) % 7
            if not match["n"].isdigit() or not 1 <= int(match["n"]) <= 5:
                raise _FieldError(f"{item!r}: the n in <weekday>#<n> is 1-5")
            nth.append(f"{day}#{int(match['n'])}")
        elif (match := _LAST_RE.fullmatch(item)) is not None:
            last.append(f"L{_value(match['d'] or match['d2'], _DOW) % 7}")
        else:
            plain.update(value % 7 for value in _item(item, _DOW))
    # 7 was folded into 0, so the whole week is 0-6 here.
    fields = ["*" if plain >= set(range(7)) else ",".join(map(str, sorted(plain)))] if plain else []
    return fields + [",".join(nth)] * bool(nth) + [",".join(last)] * bool(last)


@dataclass(frozen=True)
class CronSpec:
    """A compiled cron expression: croniter expressions (seconds last) whose ticks, together, are its ticks.

    Read each with ``croniter(expr, start, day_or=False)``.
    """

    variants: tuple[str, ...]

    def walls(self, start: datetime) -> list[croniter]:
        """One croniter iterator per variant, from the naive ``start``."""
        return [croniter(v, start, day_or=False) for v in self.variants]


def compile_cron(fields: list[str]) -> CronSpec:
    """Compile the 5 or 6 ``fields`` of a cron expression (seconds first when 6), or raise :class:`CronError`.

    The two day fields combine as in Vixie cron and cronie: if either starts with
    ``*`` (or is ``?``), a day must match both (``*`` restricting nothing, ``*/2``
    only odd days); if both are restricted, a day matching either one runs.
    """
    specs = (_SECOND, _MINUTE, _HOUR, _DOM, _MONTH, _DOW)[6 - len(fields):]
    current = ""
    try:
        out: list[str] = []
        for spec, text in zip(specs, fields, strict=True):
            current = f"{spec.name} field {text!r}"
            if spec is _DOM:
                out.append(_dom(text))
            elif spec is _DOW:
                dows = _dow(text)
            else:
                if "?" in text:
                    raise _FieldError("? is only allowed in the day fields")
                out.append(_emit(_plain(text, spec), spec))
    except _FieldError as exc:
        raise CronError(f"bad {current}: {exc}") from None
    if len(fields) == 5:
        out.insert(0, "0")
    second, minute, hour, dom, month = out
    dom_star, dow_star = fields[-3][0] in "*?", fields[-1][0] in "*?"
    head, tail = f"{minute} {hour}", f"{month}"

    def build(day: str, week: str) -> str:
        return f"{head} {day} {tail} {week} {second}"

    if dom_star or dow_star:
        candidates = [build(dom, week) for week in dows]
    else:
        candidates = [build(dom, "*")] + [build("*", week) for week in dows]
    variants = tuple(v for v in dict.fromkeys(candidates) if _fires(v))
    if not variants:
        raise CronError("it never fires (no date matches its day and month fields)")
    return CronSpec(variants)


def _fires(variant: str) -> bool:
    try:
        croniter(variant, datetime(2000, 1, 1), day_or=False).get_next(datetime)
    except CroniterBadDateError:
        return False
    return True
