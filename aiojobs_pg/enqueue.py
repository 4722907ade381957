"""Validate new jobs, then insert them (one, or many in one statement) and notify.

Everything is checked before the first byte goes to the database, so a rejected
call writes nothing. Inserts run on the caller's connection when one is given,
which puts the job in the caller's transaction: it exists (and its notification
is delivered) only if that transaction commits.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import MISSING, dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any, Literal, overload

from .errors import DataTooLarge, UnknownHandler, ValidationError
from .models import Backoff, Job, JobStatus, build_job, dump_json, json_array, load_json
from .models import NewJob as NewJob  # what prepare makes: part of this module's interface
from .queries import DB, Inserted, Queries
from .schedules import parse_duration, parse_schedule
from .validation import (
    INT32_MAX,
    MAX_ATTEMPTS,
    MAX_DELAY,
    MAX_KEY_LENGTH,
    MAX_NAME_LENGTH,
    MAX_PARENTS,
    MAX_QUEUE_LENGTH,
    Duration,
    check_int,
    check_parents,
    check_policy,
    check_run_at,
    check_text,
)


def prepare(
    handler: str,
    data: Any = None,
    *,
    name: str | None = None,
    queue: str = "default",
    priority: int = 0,
    max_attempts: int,
    timeout: Duration | None = None,
    delay: Duration | None = None,
    run_at: datetime | None = None,
    dedup_key: str | None = None,
    schedule: str | None = None,
    timezone: str | None = None,
    misfire: str = "skip",
    overlap: str = "wait",
    after: Collection[int | Job] | None = None,
    on_parent_failure: str | None = None,
    dedup_window: Duration | None = None,
    backoff: Backoff | Mapping[str, float] | float | None = None,
    concurrency_key: str | None = None,
    known_handlers: Collection[str] | None = None,
    max_data_bytes: int | None = None,
) -> NewJob:
    """Validate everything about one new job; raise :class:`ValidationError` naming the field.

    ``max_data_bytes`` bounds the JSON encoding of ``data`` (``None``: no limit). ``backoff`` is
    read by :meth:`Backoff.parse` (a Backoff, a mapping of its fields, or seconds for a fixed one).
    """
    check_text(handler, "handler", max_length=MAX_NAME_LENGTH)
    if known_handlers is not None and handler not in known_handlers:
        raise UnknownHandler(handler, list(known_handlers))
    check_text(queue, "queue", max_length=MAX_QUEUE_LENGTH)
    check_text(name, "name", max_length=MAX_NAME_LENGTH, required=False)
    check_text(dedup_key, "dedup_key", max_length=MAX_KEY_LENGTH, required=False)
    if concurrency_key is not None:  # never empty: the limits count the jobs without one under ''
        check_text(concurrency_key, "concurrency_key", max_length=MAX_KEY_LENGTH)
    check_int(priority, "priority", minimum=-INT32_MAX - 1)
    check_int(max_attempts, "max_attempts", minimum=1, maximum=MAX_ATTEMPTS)
    timeout_s = None
    if timeout is not None:
        timeout_s = parse_duration(timeout, field="timeout", allow_zero=False).total_seconds()
    if delay is not None and run_at is not None:
        raise ValidationError("delay", "give either delay or run_at, not both")
    delay_s = None
    if delay is not None:
        wait = parse_duration(delay, field="delay")
        if wait > MAX_DELAY:
            raise ValidationError("delay", f"must be at most {MAX_DELAY.days} days")
        delay_s = wait.total_seconds()
    when = None if run_at is None else check_run_at(run_at)
    if schedule is not None:
        check_text(schedule, "schedule", max_length=200)
        parsed = parse_schedule(schedule, timezone)
        schedule, timezone = parsed.expr, parsed.timezone
        if when is None and delay_s is None:
            # A recurring job first runs at its first tick, not at enqueue time.
            when = parsed.next_after(datetime.now(UTC))
    elif timezone is not None:
        raise ValidationError("timezone", "only applies to a job with a schedule")
    check_policy(misfire, overlap, recurring=schedule is not None)
    parents = check_parents(after, on_parent_failure, recurring=schedule is not None)
    window_s = None
    if dedup_window is not None:
        if dedup_key is None:
            raise ValidationError("dedup_window", "needs a dedup_key: the window is the key's")
        window = parse_duration(dedup_window, field="dedup_window", allow_zero=False)
        if window > MAX_DELAY:
            raise ValidationError("dedup_window", f"must be at most {MAX_DELAY.days} days")
        window_s = window.total_seconds()
    job_backoff = None if backoff is None else Backoff.parse(backoff)
    return NewJob(
        handler=handler, data_json=dump_json(data, "data", max_data_bytes), queue=queue, priority=priority,
        max_attempts=max_attempts, name=name, schedule=schedule, timezone=timezone, timeout=timeout_s,
        run_at=when, delay=delay_s, dedup_key=dedup_key, misfire=misfire, overlap=overlap,
        parents=parents, on_parent_failure=on_parent_failure, backoff=job_backoff,
        backoff_json=None if job_backoff is None else dump_json(job_backoff.to_dict(), "backoff"),
        dedup_window=window_s, concurrency_key=concurrency_key,
    )


async def insert_one(db: DB, queries: Queries, job: NewJob) -> Job:
    """Insert one job in one round trip; with a dedup key, return the live job holding it instead (or, with a
    ``dedup_window``, any job with the key created within it), marked :attr:`Job.existing`."""
    if job.dedup_key is None:
        if job.parents is not None:  # the trigger of migration 0012 decides its status
            return await queries.insert_after(db, job)
        insert = queries.insert_plain if job.plain else queries.insert_job
        job_id, created_at, due = await insert(db, job)
        return _inserted(job, job_id, due, created_at, load_json(job.data_json))
    if job.dedup_window is not None:
        return await _insert_windowed(db, queries, job)
    # The holder of the key can finish between our insert and our lookup: try again then.
    for _ in range(10):
        inserted = await queries.insert_dedup(db, job)
        if inserted is not None:
            return inserted
        live = await queries.find_live_dedup(db, job.dedup_key)
        if live is not None:
            return replace(live, existing=True)
    raise ValidationError("dedup_key", f"{job.dedup_key!r} is contended; try again")


async def _insert_windowed(db: DB, queries: Queries, job: NewJob) -> Job:
    """A job with a ``dedup_window``: the job holding its key (live, or created within the window, whatever
    its status), else the new one. Exact under concurrency: see migration 0015's dedup_holders."""
    for _ in range(10):
        done = await queries.insert_window(db, job)
        if done.job is not None:
            return done.job
        if done.holder is not None:
            held = await queries.get_job(db, done.holder)
            if held is not None:
                return replace(held, existing=True)
        # A live job took the key after the lookup (an enqueue without a window takes no lock), or the
        # holder was deleted since: look again.
    raise ValidationError("dedup_key", f"{job.dedup_key!r} is contended; try again")


async def insert_many(db: DB, queries: Queries, jobs: Sequence[NewJob] | Uniform) -> Sequence[Job]:
    """Insert jobs and notify each queue once, in one statement; results follow input order."""
    if isinstance(jobs, Uniform):
        kind, count = jobs.kind, jobs.count
        created_at, job_ids = await queries.insert_uniform(db, kind, jobs.data)
        return JobBatch([kind] * count, job_ids, [None] * count, created_at, jobs.data)
    if not jobs:
        return []
    # Every job's data in one JSON array: one parameter to send, and one decode for the returned jobs.
    data_array = json_array([j.data_json for j in jobs])
    dedup = any(j.dedup_key is not None for j in jobs)
    row = await queries.insert_many(db, jobs, data_array, dedup=dedup)
    result: Sequence[Job] = (JobBatch(jobs, row.ids, row.due, row.now, data_array) if not dedup
                             else await _deduplicated(db, queries, jobs, row))
    if any(j.parents is not None for j in jobs):
        # the status of a job with parents is migration 0012's trigger's: read what was written
        found = {j.id: j for j in await queries.get_jobs(db, [j.id for j in result])}
        return [replace(found[j.id], existing=j.existing) for j in result]  # existing is not stored
    return result


async def _deduplicated(db: DB, queries: Queries, jobs: Sequence[NewJob], row: Inserted) -> list[Job]:
    """The jobs of a batch with dedup keys, in input order: each key's new job, or the one holding it (live,
    or within the item's ``dedup_window``), marked :attr:`Job.existing`."""
    now = row.now
    holders: Sequence[int | None] = row.holders or [None] * len(jobs)
    held_ids = [h for h in holders if h is not None]
    held = {} if not held_ids else {j.id: replace(j, existing=True)
                                    for j in await queries.get_jobs(db, held_ids)}
    inserted: dict[str, tuple[int, datetime | None]] = {}
    plain_rows: list[tuple[int, datetime | None]] = []
    for job_id, at, key in zip(row.ids, row.due, row.keys, strict=True):
        if key is None:
            plain_rows.append((job_id, at))
        else:
            inserted[key] = (job_id, at)
    plain = iter(plain_rows)
    by_key: dict[str, Job] = {}
    result = []
    for job, holder in zip(jobs, holders, strict=True):
        if job.dedup_key is None:
            job_id, at = next(plain)
            result.append(_inserted(job, job_id, at or now, now, load_json(job.data_json)))
            continue
        if holder is not None and holder in held:  # the job its window found (not inserted)
            result.append(held[holder])
            continue
        if job.dedup_key not in by_key:
            hit = inserted.pop(job.dedup_key, None)
            if hit is not None:
                by_key[job.dedup_key] = _inserted(job, hit[0], hit[1] or now, now, load_json(job.data_json))
            else:
                live = await queries.find_live_dedup(db, job.dedup_key)
                if live is None:
                    raise ValidationError("dedup_key", f"{job.dedup_key!r} is contended; try again")
                by_key[job.dedup_key] = replace(live, existing=True)
        result.append(by_key[job.dedup_key])
    return result


async def insert_chain(db: DB, queries: Queries, steps: Sequence[NewJob]) -> list[Job]:
    """Insert each step after the one before it (on one connection, in the caller's transaction)."""
    chain: list[Job] = []
    for index, step in enumerate(steps):
        if chain:
            step = replace(step, parents=tuple(dict.fromkeys((*(step.parents or ()), chain[-1].id))))
        with _naming(f"steps[{index}]"):
            chain.append(await insert_one(db, queries, step))
    return chain


@contextmanager
def _naming(item: str) -> Iterator[None]:
    """Name the workflow's item in a refusal from the database (a parent not found)."""
    try:
        yield
    except ValidationError as exc:
        raise ValidationError(f"{item}.{exc.field}", exc.message) from None


async def insert_group(db: DB, queries: Queries, members: Sequence[NewJob], then: NewJob) -> tuple[list[Job], Job]:
    """Insert the members in one statement, then ``then`` after all of them (in the caller's transaction)."""
    with _naming("members[]"):
        jobs = list(await insert_many(db, queries, members))
    parents = tuple(dict.fromkeys((*(then.parents or ()), *(j.id for j in jobs))))
    if len(parents) > MAX_PARENTS:
        raise ValidationError("members", f"a group's callback can wait for at most {MAX_PARENTS} jobs")
    with _naming("then"):
        return jobs, await insert_one(db, queries, replace(then, parents=parents))


@dataclass(slots=True)
class Uniform:
    """A batch of plain jobs of one kind (from :func:`prepare_many`): what they share, and their data."""

    #: every job's fields but its data (this job's ``data_json`` is nobody's)
    kind: NewJob
    #: every job's data, in input order, as one JSON array
    data: str
    count: int


class JobBatch(Sequence[Job]):
    """The jobs one :meth:`App.enqueue_many <aiojobs_pg.App.enqueue_many>` call inserted, in input order.

    A read-only sequence whose :class:`Job` objects are built when it is first read: a batch
    nobody reads costs its ids and no more (building a thousand jobs takes about 2 ms). It
    compares equal to any sequence of the same jobs.
    """

    __slots__ = ("_built", "_data", "_due", "_ids", "_new", "_now")

    def __init__(self, new: Sequence[NewJob], ids: list[int], due: list[datetime | None], now: datetime,
                 data: str) -> None:
        if not len(new) == len(ids) == len(due):
            raise ValueError(f"{len(new)} jobs, {len(ids)} ids and {len(due)} due times")
        self._new, self._ids, self._due, self._now, self._data = new, ids, due, now, data
        self._built: list[Job] | None = None

    @property
    def ids(self) -> list[int]:
        """Every job's id, in input order, without building the jobs."""
        return list(self._ids)

    def _jobs(self) -> list[Job]:
        if self._built is None:
            now = self._now
            self._built = [_inserted(job, job_id, at or now, now, data) for job, job_id, at, data
                           in zip(self._new, self._ids, self._due, load_json(self._data), strict=True)]
        return self._built

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, index: int) -> Job: ...

    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        return self._jobs()[index]

    def __iter__(self) -> Iterator[Job]:
        return iter(self._jobs())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return self._jobs() == list(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"JobBatch({self._jobs()!r})"


def _inserted_builder() -> Callable[[NewJob, int, datetime, datetime, Any], Job]:
    """``_inserted(job, job_id, next_run_at, created_at, data)``: the Job an insert of ``job`` made.

    The statement returns only what the database chose; the rest is what we sent (data as stored:
    decoded): each field of NewJob that Job has too, by name, and every other field's default. It is
    generated once as one call of build_job with the values in Job's field order, as fast as that call
    written out, so that a field added to Job and NewJob needs nothing here.
    """
    chosen = {"id": "job_id", "data": "data", "status": "_pending", "attempts": "0", "next_run_at": "next_run_at",
              "created_at": "created_at", "updated_at": "created_at"}
    sent = {f.name for f in fields(NewJob)}
    namespace: dict[str, Any] = {"build_job": build_job, "_pending": JobStatus.PENDING}
    values = []
    for f in fields(Job):
        if f.name in chosen:
            values.append(chosen[f.name])
        elif f.name in sent:
            values.append(f"job.{f.name}")
        elif f.default is not MISSING:
            namespace[f"_{f.name}"] = f.default
            values.append(f"_{f.name}")
        else:
            raise TypeError(f"Job.{f.name} has no default, and an insert neither sends nor returns it")
    exec(f"def _inserted(job, job_id, next_run_at, created_at, data):\n"
         f"    return build_job({', '.join(values)})", namespace)
    inserted: Callable[[NewJob, int, datetime, datetime, Any], Job] = namespace["_inserted"]
    return inserted


_inserted = _inserted_builder()


#: (handler, queue, priority, max_attempts, checked against the handlers) that passed :func:`prepare`
Validated = set[tuple[str, str, int, int, bool]]
_VALIDATED_LIMIT = 4096  # distinct kinds remembered per app; past it, the others are validated each time


def prepare_plain(handler: str, data: Any, queue: str, priority: int, max_attempts: int,
                  known_handlers: Collection[str] | None, validated: Validated, *,
                  max_data_bytes: int | None = None) -> NewJob:
    """:func:`prepare` of a job with nothing but these fields, which ``validated`` may know already.

    A job like one validated before (by the same app) needs only its data encoded and checked:
    handlers are only ever added, so a known one stays known.
    """
    if type(handler) is str and type(queue) is str and type(priority) is int and type(max_attempts) is int:
        kind = (handler, queue, priority, max_attempts, known_handlers is not None)
        if kind not in validated:
            prepare(handler, queue=queue, priority=priority, max_attempts=max_attempts, known_handlers=known_handlers)
            if len(validated) < _VALIDATED_LIMIT:
                validated.add(kind)
        return NewJob(handler, dump_json(data, "data", max_data_bytes), queue, priority, max_attempts)
    return prepare(handler, data, queue=queue, priority=priority, max_attempts=max_attempts,
                   known_handlers=known_handlers, max_data_bytes=max_data_bytes)


# Items with only these keys share their validation with every other item of the same kind.
_PLAIN_KEYS = frozenset({"handler", "data", "queue", "priority"})


@overload
def prepare_many(items: Sequence[Mapping[str, Any]], *, max_attempts: int, known_handlers: Collection[str] | None,
                 validated: Validated | None = None, max_data_bytes: int | None = None,
                 uniform: Literal[False], field: str = "jobs") -> list[NewJob]: ...


@overload
def prepare_many(items: Sequence[Mapping[str, Any]], *, max_attempts: int, known_handlers: Collection[str] | None,
                 validated: Validated | None = None, max_data_bytes: int | None = None,
                 uniform: bool = True, field: str = "jobs") -> list[NewJob] | Uniform: ...


def prepare_many(items: Sequence[Mapping[str, Any]], *, max_attempts: int, known_handlers: Collection[str] | None,
                 validated: Validated | None = None, max_data_bytes: int | None = None,
                 uniform: bool = True, field: str = "jobs") -> list[NewJob] | Uniform:
    """Validate a batch; the error names the item's index.

    A plain item (a dict of handler, data and maybe queue and priority) goes through
    :func:`prepare_plain`: only its data is encoded and checked for each item. A batch of plain
    items that all share handler, queue and priority comes back as one :class:`Uniform`.
    """
    validated = set() if validated is None else validated
    if not isinstance(items, list | tuple):  # read twice below: a generator would be empty the second time
        items = list(items)
    same = _uniform(items, max_attempts, known_handlers, validated, max_data_bytes) if uniform else None
    if same is not None:
        return same
    prepared = []
    for index, item in enumerate(items):
        try:
            if type(item) is dict and item.keys() <= _PLAIN_KEYS and "handler" in item:
                prepared.append(prepare_plain(item["handler"], item.get("data"), item.get("queue", "default"),
                                              item.get("priority", 0), max_attempts, known_handlers, validated,
                                              max_data_bytes=max_data_bytes))
                continue
            if not isinstance(item, Mapping) or "handler" not in item:
                raise ValidationError(f"{field}[{index}]", "must be a mapping with at least a 'handler' key")
            kwargs = dict(item)
            if kwargs.get("max_attempts") is None:
                kwargs["max_attempts"] = max_attempts
            prepared.append(prepare(**kwargs, known_handlers=known_handlers, max_data_bytes=max_data_bytes))
        except DataTooLarge as exc:
            raise DataTooLarge(f"{field}[{index}].{exc.field}", exc.size, exc.limit) from None
        except ValidationError as exc:
            if exc.field.startswith(f"{field}["):
                raise
            raise ValidationError(f"{field}[{index}].{exc.field}", exc.message) from None
        except TypeError as exc:
            raise ValidationError(f"{field}[{index}]", str(exc)) from None
    return prepared


def _uniform(items: Sequence[Mapping[str, Any]], max_attempts: int, known_handlers: Collection[str] | None,
             validated: Validated, max_data_bytes: int | None) -> Uniform | None:
    """The batch as one kind of plain job and each job's data; None when it is anything else.

    The kind is validated once, as :func:`prepare_plain` would; each item's data as by it too.
    """
    kind = _plain_kind(items[0]) if items else None
    if kind is None:
        return None
    for item in items:
        if _plain_kind(item) != kind:
            return None
    handler, queue, priority = kind
    try:
        template = prepare_plain(handler, None, queue, priority, max_attempts, known_handlers, validated)
    except ValidationError as exc:  # what the items share is wrong in each: name the first
        raise ValidationError(f"jobs[0].{exc.field}", exc.message) from None
    texts = []
    for index, item in enumerate(items):
        try:
            texts.append(dump_json(item.get("data"), "data", max_data_bytes))
        except DataTooLarge as exc:
            raise DataTooLarge(f"jobs[{index}].data", exc.size, exc.limit) from None
        except ValidationError as exc:
            raise ValidationError(f"jobs[{index}].data", exc.message) from None
    return Uniform(template, json_array(texts), len(items))


def _plain_kind(item: object) -> tuple[str, str, int] | None:
    """(handler, queue, priority) of a plain item whose values have exactly those types, else None.

    Exact types, so that equal kinds are the same kind: ``True == 1``, but ``True`` is no priority.
    """
    if type(item) is not dict or not item.keys() <= _PLAIN_KEYS:
        return None
    handler, queue, priority = item.get("handler"), item.get("queue", "default"), item.get("priority", 0)
    if type(handler) is str and type(queue) is str and type(priority) is int:
        return handler, queue, priority
    return None
