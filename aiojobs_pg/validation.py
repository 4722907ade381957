"""Checks of values at the API's edges, shared by enqueue, the admin API and the App's settings.

Each raises :class:`~aiojobs_pg.errors.ValidationError` naming the field, so a
rejected call writes nothing and tells the caller what to fix. Durations and
schedules are parsed in :mod:`aiojobs_pg.schedules`; job data in
:func:`aiojobs_pg.models.dump_json`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from .errors import ValidationError

MAX_QUEUE_LENGTH = 100
MAX_NAME_LENGTH = 500
MAX_KEY_LENGTH = 500
#: the largest value of PostgreSQL's integer (the columns priority and max_attempts)
INT32_MAX = 2**31 - 1
MAX_ATTEMPTS = 10_000
#: far enough for any real deferral, near enough that every due time stays a valid timestamp
MAX_DELAY = timedelta(days=36_600)

Duration = float | int | timedelta | str


def check_text(value: object, field: str, *, max_length: int, required: bool = True) -> str | None:
    """A string PostgreSQL can store in ``text``: no NUL, valid UTF-8, bounded length."""
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if required and not value.strip():
        raise ValidationError(field, "must not be empty")
    if len(value) > max_length:
        raise ValidationError(field, f"is {len(value)} characters long; the limit is {max_length}")
    if "\x00" in value:
        raise ValidationError(field, "contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(field, "is not valid UTF-8 (lone surrogate)") from None
    return value


def check_int(value: object, field: str, *, minimum: int, maximum: int = INT32_MAX) -> int:
    """An integer (not a bool) within [minimum, maximum]."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValidationError(field, f"must be an integer, got {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise ValidationError(field, f"must be between {minimum} and {maximum}, got {value}")
    return value


def check_run_at(value: object) -> datetime:
    """A timezone-aware datetime (naive ones are ambiguous and rejected)."""
    if not isinstance(value, datetime):
        raise ValidationError("run_at", f"must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationError("run_at", "must be timezone-aware (e.g. datetime.now(timezone.utc))")
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValidationError("run_at", "is out of range once converted to UTC") from None


MISFIRE_POLICIES = ("skip", "all")
OVERLAP_POLICIES = ("wait", "skip")


def check_policy(misfire: object, overlap: object, *, recurring: bool) -> None:
    """Validate the recurring-job policies (the defaults are accepted on any job)."""
    if misfire == "skip" and overlap == "wait":
        return
    for field, value, allowed, default in (("misfire", misfire, MISFIRE_POLICIES, "skip"),
                                           ("overlap", overlap, OVERLAP_POLICIES, "wait")):
        if value not in allowed:
            raise ValidationError(field, f"must be one of {', '.join(allowed)}; got {value!r}")
        if value != default and not recurring:
            raise ValidationError(field, "only applies to a job with a schedule")
