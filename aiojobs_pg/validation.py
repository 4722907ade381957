"""Checks of values at the API's edges, shared by enqueue, the admin API and the App's settings.

Each raises :class:`~aiojobs_pg.errors.ValidationError` naming the field, so a
rejected call writes nothing and tells the caller what to fix. Durations and
schedules are parsed in :mod:`aiojobs_pg.schedules`; job data in
:func:`aiojobs_pg.models.dump_json`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from .errors import ValidationError
from .events import EVENTS
from .schedules import parse_duration

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


#: what a dependent does when a parent fails or is cancelled; None (the default) ends it as its parent ended
PARENT_FAILURE_POLICIES = ("cancel", "run")
#: parents one job may wait for
MAX_PARENTS = 1000


def check_parents(after: object, on_parent_failure: object, *, recurring: bool,
                  field: str = "on_parent_failure") -> tuple[int, ...] | None:
    """The ids of ``after=`` (job ids or jobs, deduplicated, in order); None when there are none."""
    if on_parent_failure is not None and on_parent_failure not in PARENT_FAILURE_POLICIES:
        allowed = ", ".join(PARENT_FAILURE_POLICIES)
        raise ValidationError(field, f"must be one of {allowed} (or None), got {on_parent_failure!r}")
    if after is None:
        if on_parent_failure is not None:
            raise ValidationError("on_parent_failure", "only applies to a job with after=")
        return None
    if isinstance(after, str | bytes) or not hasattr(after, "__iter__"):
        raise ValidationError("after", f"must be a list of job ids, got {type(after).__name__}")
    ids: dict[int, None] = {}
    for item in after:
        job_id = getattr(item, "id", item)  # a Job (or anything with an id) stands for its id
        check_int(job_id, "after", minimum=1, maximum=2**63 - 1)
        ids[job_id] = None
    if not ids:
        raise ValidationError("after", "must name at least one job")
    if len(ids) > MAX_PARENTS:
        raise ValidationError("after", f"names {len(ids)} jobs; the limit is {MAX_PARENTS}")
    if recurring:
        raise ValidationError("after", "a recurring job cannot wait for other jobs")
    return tuple(ids)


#: the longest period of a rate limit: the claim keeps a start for as long as its period
MAX_RATE_PERIOD = timedelta(days=1)
_UNIT_SECONDS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` jobs start in any window of ``period`` seconds (written ``"100/1m"``)."""

    count: int
    period: float

    def __str__(self) -> str:
        return f"{self.count}/{duration_text(self.period)}"


def duration_text(seconds: float) -> str:
    """``seconds`` as :func:`~aiojobs_pg.schedules.parse_duration` reads it back: ``"1m"``, ``"90s"``, ``"0.5"``."""
    if seconds == int(seconds):
        for unit, size in _UNIT_SECONDS:
            if seconds % size == 0:
                return f"{int(seconds) // size}{unit}"
    return f"{seconds:g}"


def parse_rate_limit(value: object, field: str = "rate_limit") -> RateLimit:
    """A rate limit: ``"N/period"`` with a duration as ``delay=`` takes it (``"100/1m"``, ``"50/1s"``,
    ``"5/0.5"``), or a bare unit for one of it (``"100/m"``), or a :class:`RateLimit`.

    N is from 1 to 2^31-1; the period is more than zero and at most a day.
    """
    if isinstance(value, RateLimit):
        count, seconds = value.count, value.period
    elif isinstance(value, str):
        number, slash, period = value.strip().partition("/")
        if not slash or not number.strip().isdigit() or not number.strip().isascii():
            raise ValidationError(field, f"invalid rate limit {value[:60]!r}: expected N/period, such as '100/1m'")
        count = int(number)
        period = period.strip()
        if period.lower() in ("s", "m", "h", "d"):
            period = "1" + period
        seconds = parse_duration(period, field=field, allow_zero=False).total_seconds()
    else:
        raise ValidationError(field, f"must be a string such as '100/1m', got {type(value).__name__}")
    check_int(count, field, minimum=1)
    longest = MAX_RATE_PERIOD.total_seconds()
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or not 0 < seconds <= longest:
        raise ValidationError(field, f"the period must be more than 0 and at most {duration_text(longest)}")
    return RateLimit(count, float(seconds))


def check_concurrency_limit(value: object, field: str = "concurrency_limit") -> int:
    """A concurrency limit: how many jobs may run at once, 1 to 2^31-1."""
    return check_int(value, field, minimum=1)


# --- webhooks (webhooks.py) ---

MAX_URL_LENGTH = 2000
MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 500
#: the most attempts a webhook's deliveries may have
MAX_WEBHOOK_ATTEMPTS = 100
#: the most handlers (or queues) a webhook may be limited to
MAX_WEBHOOK_FILTERS = 100
_PORT = "(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
#: A webhook URL as the OpenAPI document states it, and check_url enforces: http(s), a host name or IPv4
#: address, an optional port, then a path and query of printable ASCII (percent-encode the rest, punycode
#: an international name). No user:password@ (the signature authenticates deliveries, and the URL shows
#: in every delivery's data), no #fragment, no IPv6 literal.
URL_PATTERN = rf"^https?://[A-Za-z0-9._~-]+(?::{_PORT})?(?:[/?][A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?$"
_URL_RE = re.compile(URL_PATTERN)


def check_url(value: object, field: str = "url") -> str:
    """A webhook's URL: absolute http(s) with a host, no white space, no credentials in it (they would
    show in every delivery's data; the signature authenticates deliveries), no fragment."""
    url = check_text(value, field, max_length=MAX_URL_LENGTH)
    assert url is not None
    if _URL_RE.fullmatch(url) is not None:
        return url
    # What is wrong with it, in words.
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ValidationError(field, "must not contain white space or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (read for its check: a port out of range raises ValueError)
    except ValueError as exc:
        raise ValidationError(field, f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not url.startswith(parts.scheme):
        raise ValidationError(field, f"must start with https:// or http://, got {url[:40]!r}")
    if not parts.hostname:
        raise ValidationError(field, f"has no host: {url[:60]!r}")
    if parts.username is not None or parts.password is not None:
        raise ValidationError(field, "must not hold credentials (user:password@): the signature authenticates "
                                     "deliveries")
    if parts.fragment or "#" in url:
        raise ValidationError(field, "must not have a #fragment")
    raise ValidationError(field, "must be printable ASCII, a host name or IPv4 address (no IPv6 literal): "
                                 "percent-encode other characters of the path, punycode an international name")


def check_events(value: object, field: str = "events") -> list[str]:
    """A non-empty list of distinct event names (:data:`aiojobs_pg.events.EVENTS`)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(field, f"must be a list of event names (some of {', '.join(EVENTS)}), "
                                     f"got {type(value).__name__}")
    events = list(value)
    if not events:
        raise ValidationError(field, f"must name at least one event: {', '.join(EVENTS)}")
    for event in events:
        if event not in EVENTS:
            raise ValidationError(field, f"unknown event {event!r}; use some of {', '.join(EVENTS)}")
    if len(set(events)) != len(events):
        raise ValidationError(field, "names an event twice")
    return events


def check_secret(value: object, field: str = "secret") -> str:
    """A webhook's shared secret: at least 16 characters (``secrets.token_urlsafe(32)`` makes a good one)."""
    if not isinstance(value, str):
        raise ValidationError(field, f"must be a string, got {type(value).__name__}")
    if len(value) < MIN_SECRET_LENGTH:
        raise ValidationError(field, f"is {len(value)} characters long; use at least {MIN_SECRET_LENGTH} "
                                     "(secrets.token_urlsafe(32) makes a good one), or leave it out to have one made")
    check_text(value, field, max_length=MAX_SECRET_LENGTH)
    return value


def check_names(value: object, field: str, *, max_length: int) -> list[str] | None:
    """An optional list of 1 to :data:`MAX_WEBHOOK_FILTERS` handler or queue names (None: all)."""
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValidationError(field, f"must be a list of names, got {type(value).__name__}")
    names = list(value)
    if not 1 <= len(names) <= MAX_WEBHOOK_FILTERS:
        raise ValidationError(field, f"must name 1 to {MAX_WEBHOOK_FILTERS} values, or be left out for all")
    for name in names:
        check_text(name, field, max_length=max_length)
    return names
