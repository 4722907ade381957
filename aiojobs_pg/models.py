"""Plain data: job rows, new jobs, history rows, run outcomes. No I/O here."""

from __future__ import annotations

import enum
import json
import keyword
import math
import random
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields, make_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from .errors import DataTooLarge, ValidationError


class JobStatus(enum.StrEnum):
    """Where a job is in its life. Only these six values exist."""

    #: enqueued with ``after=``: some of its parents have not completed yet (never claimed)
    WAITING = "waiting"
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value


class RunStatus(enum.StrEnum):
    """How one attempt (one history row) ended."""

    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    #: the worker stopped before the handler finished; the attempt was given back
    RELEASED = "released"

    def __str__(self) -> str:
        return self.value


#: A field's metadata that says it is not a column: a value that travels with the object but is never
#: stored (``Job.existing``, ``NewJob.dedup_window``); queries.py leaves it out of the row's declarations.
NOT_STORED: Mapping[str, Any] = {"stored": False}


def stored_fields(cls: type) -> list[str]:
    """The fields of the dataclass ``cls`` that are columns of the job row (all but those marked NOT_STORED)."""
    return [f.name for f in fields(cls) if f.metadata.get("stored", True)]


#: the longest a backoff waits, in seconds (validation.MAX_DELAY, as a job's delay)
MAX_BACKOFF = 36_600 * 86_400
#: the largest growth factor of a backoff
MAX_BACKOFF_FACTOR = 1_000_000


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False
_BACKOFF_FIELDS = ("base", "factor", "cap", "jitter")


@dataclass(frozen=True)
class Backoff:
    """How long a failed attempt waits before the next: ``base * factor ** (attempt - 1)`` seconds, capped.

    Exponential by default; ``factor=1`` (:meth:`fixed`) waits ``base`` every time (BullMQ's
    ``fixed``). The delay is then spread uniformly over ``±jitter`` of itself (``jitter`` is a
    fraction in [0, 1]) so that jobs failing together do not retry together. Set per app
    (``App(backoff=)``), per handler (``@app.handler(backoff=)``) or per job
    (``app.enqueue(..., backoff=)``): a job's own wins, then its handler's, then the app's.
    """

    base: float = 1.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        for name in _BACKOFF_FIELDS:
            value = getattr(self, name)
            # a bool is an int to Python, and NaN or infinity would reach the database as a due time
            if isinstance(value, bool) or not isinstance(value, int | float) or not _finite(value):
                raise ValidationError("backoff", f"{name} must be a finite number, got {str(value)[:40]}")
        if not (self.base >= 0 and self.factor >= 1 and self.cap >= 0 and 0 <= self.jitter <= 1):
            raise ValidationError("backoff", "need base >= 0, factor >= 1, cap >= 0 and 0 <= jitter <= 1")
        if self.base > MAX_BACKOFF or self.cap > MAX_BACKOFF:
            raise ValidationError("backoff", f"base and cap must be at most {MAX_BACKOFF} seconds (36600 days)")
        if self.factor > MAX_BACKOFF_FACTOR:
            # any cap is reached at the second retry long before: a limit that keeps the arithmetic in floats
            raise ValidationError("backoff", f"factor must be at most {MAX_BACKOFF_FACTOR}")
        for name in _BACKOFF_FIELDS:  # floats, as read back from the database: the same repr either way
            object.__setattr__(self, name, float(getattr(self, name)))

    @classmethod
    def fixed(cls, delay: float, *, jitter: float = 0.0) -> Backoff:
        """``delay`` seconds before every retry, without jitter unless asked (BullMQ's ``fixed``)."""
        return cls(base=delay, factor=1.0, cap=delay, jitter=jitter)

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before the attempt after ``attempt`` (1-based)."""
        exponent = max(0, attempt - 1)
        try:
            raw = min(self.cap, self.base * self.factor**exponent)
        except OverflowError:  # a large factor over many attempts: the cap won long before
            raw = self.cap
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return max(0.0, min(self.cap, raw * (1 + spread)))

    def to_dict(self) -> dict[str, float]:
        """``{"base", "factor", "cap", "jitter"}``: as stored, and as the HTTP API shows it."""
        return {name: float(getattr(self, name)) for name in _BACKOFF_FIELDS}

    @classmethod
    def parse(cls, value: object, field: str = "backoff") -> Backoff:
        """A Backoff from what the edges accept: a Backoff; a mapping of some of ``base``, ``factor``, ``cap``
        and ``jitter`` (the rest default, as in the constructor); a number of seconds (:meth:`fixed`); or the
        JSON text of one of those. Raises :class:`ValidationError` naming ``field``."""
        if isinstance(value, str):
            text = value
            try:
                value = json.loads(text)
            except ValueError:
                raise ValidationError(field, f"is not JSON: {text[:60]!r}") from None
        if isinstance(value, Backoff):
            return value
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return cls.fixed(value)
            if isinstance(value, Mapping):
                unknown = sorted(str(k) for k in value if k not in _BACKOFF_FIELDS)
                if unknown:
                    raise ValidationError(field, f"unknown key {unknown[0]!r}; expected some of "
                                                 f"{', '.join(_BACKOFF_FIELDS)}")
                return cls(**value)
        except ValidationError as exc:
            raise ValidationError(field, exc.message) from None
        raise ValidationError(field, "must be a Backoff (e.g. Backoff(base=2, factor=3) or Backoff.fixed(5)), a "
                                     "mapping of base, factor, cap and jitter, or a number of seconds (fixed); "
                                     f"got {type(value).__name__}")


@dataclass(frozen=True, slots=True)
class Job:
    """A job row as stored in the ``jobs`` table."""

    id: int
    handler: str
    data: Any
    queue: str
    priority: int
    status: JobStatus
    attempts: int
    max_attempts: int
    next_run_at: datetime
    created_at: datetime
    updated_at: datetime
    name: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    timeout: float | None = None
    last_run_at: datetime | None = None
    last_error: str | None = None
    result: Any = None
    dedup_key: str | None = None
    lease_expires_at: datetime | None = None
    worker_id: str | None = None
    periodic_key: str | None = None
    misfire: str = "skip"
    overlap: str = "wait"
    #: the tick a retried run of a recurring job still belongs to
    tick_at: datetime | None = None
    #: how far the running handler says it got, from 0 to 1, and what it said (None once completed)
    progress: float | None = None
    progress_message: str | None = None
    #: the jobs it was enqueued ``after=`` (None once completed: the history does not keep them)
    parents: list[int] | None = None
    #: those of its parents that have not completed yet (status ``waiting``)
    waiting_for: list[int] | None = None
    #: what it does when a parent fails or is cancelled: None follows the parent, ``"cancel"``, ``"run"``
    on_parent_failure: str | None = None
    #: the key its handler's limits count it under (``enqueue(concurrency_key=)``): docs/limits.md
    concurrency_key: str | None = None
    #: its own retry backoff (``enqueue(backoff=)``); None: its handler's, else the app's
    backoff: Backoff | None = None
    #: the creation context it was enqueued with when tracing was on (aiojobs_pg.tracing: the propagator's
    #: carrier as JSON text); None otherwise, and for a completed job (the history does not keep it)
    trace_context: str | None = None
    #: only on the Job an enqueue returns: True when it returned a job that existed already (its
    #: ``dedup_key`` held by a live job, or by one created within ``dedup_window``) instead of creating one.
    #: Not stored (False on every job read back), and not compared: the same job either way.
    existing: bool = field(default=False, compare=False, metadata=NOT_STORED)

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Job:
        """Build a Job from a row with a column of each field's name (asyncpg Record or dict).

        A field with a default may be missing from the row (one read before its migration).
        """
        values = {name: value for name in _JOB_FIELDS if (value := row.get(name, MISSING)) is not MISSING}
        values["status"] = JobStatus(values["status"])
        if values.get("backoff") is not None:
            values["backoff"] = Backoff.parse(values["backoff"])
        return cls(**values)

    def waits_for_a_worker(self, served: Collection[tuple[str, str]]) -> bool:
        """Pending, and no live worker serves its (queue, handler) among ``served`` (``Admin.served``)."""
        return self.status is JobStatus.PENDING and (self.queue, self.handler) not in served


T = TypeVar("T")


def _builder(cls: type[T]) -> Callable[..., T]:
    """Build the frozen slotted dataclass ``cls`` from its fields' values, in declaration order, fast.

    A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__``, paid per
    inserted and per claimed job. A mutable twin with the same slots is built by its plain
    ``__init__`` instead, and then becomes a ``cls`` (the layouts are the same, which CPython
    checks here, once); the result is a frozen ``cls`` like any other. Fields with a default may
    be left out. Why it stays: docs/performance.md, "Python".
    """
    twin: Any = make_dataclass(f"_{cls.__name__}Draft",
                               [(f.name, f.type, field(default=f.default)) if f.default is not MISSING
                                else (f.name, f.type) for f in fields(cls)],  # type: ignore[arg-type]
                               slots=True)
    object.__new__(twin).__class__ = cls  # raises TypeError at import if the layouts ever differ

    def build(*values: Any) -> T:
        obj = twin(*values)
        obj.__class__ = cls
        return cast(T, obj)

    return build


build_job = _builder(Job)
_JOB_FIELDS = tuple(f.name for f in fields(Job))


def attributes(names: Sequence[str]) -> Callable[[Any], tuple[Any, ...]]:
    """``lambda o: (o.a, o.b, …)`` for these attribute names, compiled once.

    What ``operator.attrgetter(*names)`` does, as fast as the tuple written out: the interpreter
    specialises each attribute load of a slotted class, where attrgetter looks every name up from
    scratch (about three times slower for NewJob's fourteen fields, paid per job of a batch).
    """
    bad = [n for n in names if not n.isidentifier() or keyword.iskeyword(n)]
    if bad or not names:
        raise ValueError(f"not attribute names: {bad or names!r}")
    getter: Callable[[Any], tuple[Any, ...]] = eval(f"lambda o: ({''.join(f'o.{n}, ' for n in names)})", {})
    return getter


@dataclass(slots=True)  # not frozen: a frozen dataclass costs twice as much to build, per job of a batch
class NewJob:
    """A validated job, ready to insert (``enqueue.prepare`` makes one).

    Its fields are the values an insert sends, read by name: each fills the column of its name (but those
    that ``queries.NEW_JOB_COLUMNS`` lists otherwise), unless marked NOT_STORED.
    """

    handler: str
    data_json: str
    queue: str
    priority: int
    max_attempts: int
    name: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    timeout: float | None = None
    run_at: datetime | None = None
    delay: float | None = None
    dedup_key: str | None = None
    misfire: str = "skip"
    overlap: str = "wait"
    #: the jobs it waits for (``after=``): a tuple of ids, at least one
    parents: tuple[int, ...] | None = None
    on_parent_failure: str | None = None
    #: the key its handler's concurrency and rate limits count it under (None: the handler's own)
    concurrency_key: str | None = None
    #: its own retry backoff (``backoff=``): the object, for the Job an insert returns; what is stored is
    #: ``backoff_json``, its JSON (:meth:`Backoff.to_dict`)
    backoff: Backoff | None = field(default=None, metadata=NOT_STORED)
    backoff_json: str | None = None
    #: ``dedup_window`` in seconds: the insert looks for a job with the key created this recently, whatever
    #: its status (not stored: it belongs to this enqueue, not to the job)
    dedup_window: float | None = field(default=None, metadata=NOT_STORED)
    #: the creation context for tracing (aiojobs_pg.tracing stamps it; None when tracing is off): a job with
    #: one is not plain, so a traced enqueue takes the general insert
    trace_context: str | None = None

    @property
    def plain(self) -> bool:
        """Every field with a default has it: only the fields without one (handler, data, queue, priority
        and max_attempts) go to the database, by the plain inserts."""
        return _has_defaults(self)


def _defaults_check(cls: type) -> Callable[[Any], bool]:
    """``lambda o: o.a is None and o.b == 'x' and …`` over the fields of ``cls`` with a default (None or a
    string), compiled once: a field added with a default joins the check, which costs what it would
    written out (each job of a single enqueue pays it)."""
    checks = []
    for f in fields(cls):
        if f.default is None:
            checks.append(f"o.{f.name} is None")
        elif isinstance(f.default, str):
            checks.append(f"o.{f.name} == {f.default!r}")
        elif f.default is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name}: only None and strings are checked as defaults")
    check: Callable[[Any], bool] = eval(f"lambda o: {' and '.join(checks)}", {})
    return check


_has_defaults = _defaults_check(NewJob)


@dataclass(frozen=True, slots=True)
class Run:
    """One attempt of a job: a row of the execution history."""

    id: int
    job_id: int
    attempt: int
    worker_id: str | None
    status: RunStatus
    scheduled_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    duration_ms: float | None
    error: str | None
    result: Any

    @classmethod
    def from_record(cls, row: Mapping[str, Any]) -> Run:
        """Build a Run from a ``job_runs`` row."""
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            attempt=row["attempt"],
            worker_id=row["worker_id"],
            status=RunStatus(row["status"]),
            scheduled_at=row["scheduled_at"],
            started_at=row["started_at"],
            completed_at=row["completed_at"],
            duration_ms=row["duration_ms"],
            error=row["error"],
            result=row["result"],
        )


@dataclass(frozen=True, slots=True)
class ClaimedJob:
    """What a worker gets from a claim: enough to run the job and to fence its completion."""

    id: int
    handler: str
    data: Any
    queue: str
    attempt: int
    max_attempts: int
    timeout: float | None
    schedule: str | None
    timezone: str | None
    scheduled_at: datetime
    #: when the claim came back (the worker's clock; one value for every job of a claim)
    claimed_at: datetime
    name: str | None = None
    misfire: str = "skip"
    overlap: str = "wait"
    #: the fencing token: the job's claim counter as this claim set it (never reset, unlike attempt)
    token: int = 0
    #: the jobs it was enqueued ``after=`` (their results are the handler's ``ctx.parent_results``)
    parents: list[int] | None = None
    #: its own retry backoff as stored, JSON text (``Backoff.parse`` reads it); None: the handler's, else the
    #: app's. Text, decoded only when an attempt fails: the claim of a job without one pays nothing for it.
    backoff: str | None = None
    #: the creation context it was enqueued with (JSON text), for tracing; None when it was enqueued without
    trace_context: str | None = None


build_claimed_job = _builder(ClaimedJob)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def micros(value: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime (exact)."""
    return (value - _EPOCH) // _MICROSECOND


@dataclass(slots=True)
class Outcome:
    """The result of one attempt, decided by the executor, written by the completer.

    ``job_status`` is the job's next status; ``delay`` is seconds from the database's
    ``now()`` until the job is due again (``None`` keeps ``next_run_at`` as it is)
    unless ``next_run_at`` gives an absolute time (recurring jobs). A ``COMPLETED``
    job status means a one-off job's successful run, and nothing else is set then.
    Times are microseconds since the epoch on the worker's clock: taking and sending
    them costs a fraction of what datetimes cost, once per job.
    """

    job_id: int
    attempt: int
    #: the claim token of the run, which fences the write (with the job's status)
    token: int
    job_status: JobStatus
    run_status: RunStatus
    started_us: int
    finished_us: int
    worker_id: str
    #: the tick (or due time) this run was for (a flush of successes reads it from the row instead)
    scheduled_at: datetime | None = None
    error: str | None = None
    result_json: str | None = None
    delay: float | None = None
    next_run_at: datetime | None = None
    #: give the attempt back (graceful shutdown): attempts is decremented
    release: bool = False
    #: reset the attempt counter (a recurring job moving on to its next tick)
    reset_attempts: bool = False
    #: the run was stopped because the job was cancelled meanwhile: written under the job's ``cancelled``
    #: status (with the same claim token) instead of ``running``
    after_cancel: bool = False
    #: jobs the handler enqueued with ``ctx.enqueue``: inserted in the completion's transaction, only if the
    #: run completed and the fence let the outcome through
    follow_ups: list[NewJob] | None = None


@dataclass(frozen=True)
class Webhook:
    """A registered webhook. ``secret`` is set only on what :meth:`App.add_webhook` returns (and on the
    row a delivery reads to sign with): no listing shows it."""

    id: int
    url: str
    events: list[str]
    #: only jobs of these handlers; None: every handler
    handlers: list[str] | None
    #: only jobs of these queues; None: every queue
    queues: list[str] | None
    #: attempts of each delivery before it fails for good
    max_attempts: int
    description: str | None
    created_at: datetime
    secret: str | None = field(default=None, repr=False)


#: Default of ``App(max_data_bytes=...)``: 1 MiB, the HTTP API's request-body limit, so that no way in
#: accepts data the other refuses, and no worker loads more than that per claimed job.
DEFAULT_MAX_DATA_BYTES = 1_048_576

#: Deepest nesting accepted in data and results. json.dumps accepts what the caller's stack allows,
#: but whoever decodes it (a worker, inside its claim) may be deeper in its own stack: far below
#: Python's recursion limit, any process can read back what any other wrote.
MAX_JSON_DEPTH = 256
_JSON_TOKEN = re.compile(r'[\[\]{}]|"(?:[^"\\]|\\.)*"')


def json_depth(text: str) -> int:
    """The nesting depth of a JSON text (brackets inside strings do not count)."""
    depth = deepest = 0
    for token in _JSON_TOKEN.finditer(text):
        char = token.group()
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


# json.dumps escapes NUL as \u0000; an even run of backslashes before it is a literal "\\u0000" text.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _make_encoder() -> Callable[[Any], str]:
    """One encoder for every call: ``JSONEncoder.encode`` builds a new C encoder per call (3x the cost).

    Without circular-reference markers, so that one shared encoder holds no state between
    calls: a circular value fails on the recursion limit instead.
    """
    options = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"), check_circular=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (e.g. PyPy)
        return options.encode

    def encode(value: Any) -> str:
        return "".join(chunks(value, 0))

    # Trusted only if it encodes as the options say: the same text, and NaN refused.
    sample = {"a": [1, 2.5, None, True, "\u00e9\n"], "b": {}}
    try:
        chunks = make(None, options.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
        same = encode(sample) == options.encode(sample)
    except (TypeError, ValueError):  # another signature than the one this code knows
        return options.encode
    try:
        encode(float("nan"))
    except ValueError:
        return encode if same else options.encode
    return options.encode


_encode = _make_encoder()


#: How job data and results are decoded, everywhere (one place to change it). A private scanner
#: here once skipped json.loads' Python layers; it bought nothing measurable (docs/performance.md).
load_json = json.loads


def json_array(texts: Iterable[str]) -> str:
    """One JSON array text of JSON documents: one ``json.loads`` (or one parameter) for many.

    Decoding a claim's or a batch's data this way costs a fraction of one call per document.
    """
    return "[" + ",".join(texts) + "]"


def dump_json(value: Any, field_name: str, max_bytes: int | None = None) -> str:
    """Encode ``value`` as JSON that PostgreSQL's ``jsonb`` accepts.

    Raises :class:`~aiojobs_pg.errors.ValidationError` naming ``field_name``
    for values json cannot encode, NaN/Infinity, and NUL characters
    (``jsonb`` rejects ``\\u0000``); :class:`~aiojobs_pg.errors.DataTooLarge`
    when the UTF-8 encoding of the text is over ``max_bytes`` (``None``: no limit).
    """
    if value is None:  # the common result of a handler: skip the encoder
        if max_bytes is not None and max_bytes < 4:  # "null" is stored too, and counted like any text
            raise DataTooLarge(field_name, 4, max_bytes)
        return "null"
    try:
        text = _encode(value)
    except RecursionError:
        raise ValidationError(field_name, "is circular, or nested too deeply to encode") from None
    except (TypeError, ValueError) as exc:
        raise ValidationError(field_name, f"not JSON-serialisable: {exc}") from None
    # Each check starts with a cheap test that rules out the common case.
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValidationError(field_name, "contains a NUL character, which PostgreSQL cannot store")
    # Counting brackets is cheap; the exact depth is only worked out when there are enough of them.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise ValidationError(field_name, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    # The size is that of the UTF-8 bytes sent to PostgreSQL: the length itself for ASCII text, else
    # the length of the encoding that the surrogate check makes anyway (no second encoding).
    size = len(text)
    if not text.isascii():
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValidationError(field_name, "contains a lone surrogate, which is not valid UTF-8") from None
    if max_bytes is not None and size > max_bytes:
        raise DataTooLarge(field_name, size, max_bytes)
    return text
