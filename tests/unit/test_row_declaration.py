"""Unit tests (no database) of what the write side of the job row generates from its declaration
(``queries.NEW_JOB_COLUMNS``): statements, parameters read by name, and the Job an insert returns."""

from __future__ import annotations

import re
from dataclasses import MISSING, dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aiojobs_pg import queries as q
from aiojobs_pg.enqueue import _inserted
from aiojobs_pg.models import (
    NOT_STORED,
    Backoff,
    Job,
    JobStatus,
    NewJob,
    Outcome,
    RunStatus,
    attributes,
    stored_fields,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def _other(i: int, name: str, annotation: str) -> Any:
    # A value of the field's type that is no default and no other field's value.
    kind = annotation.split(" |")[0]
    return {"str": f"{name}!", "int": 100 + i, "float": i + 0.5, "datetime": NOW + timedelta(seconds=i),
            "tuple[int, ...]": (100 + i, 200 + i), "Backoff": Backoff(base=i)}[kind]


# A value for every field of NewJob, none of them its default.
OTHER = {f.name: _other(i, f.name, str(f.type)) for i, f in enumerate(fields(NewJob))}


def parameters(sql: str) -> set[int]:
    return {int(n) for n in re.findall(r"\$(\d+)", sql)}


@pytest.mark.parametrize("name", ["insert", "insert_dedup", "insert_after", "insert_window", "upsert_periodic",
                                  "insert_plain", "insert_uniform", "insert_many", "insert_many_dedup",
                                  "insert_many_window", "update_job", "complete", "complete_success"])
def test_each_statement_uses_every_parameter_once_numbered(name: str) -> None:
    used = parameters(q.Queries("s").sql[name])
    assert used == set(range(1, max(used) + 1))


def test_an_insert_sends_each_field_at_its_parameter() -> None:
    job = NewJob(**OTHER)
    params = q._new_job_params(job)
    assert len(params) == len(q.NEW_JOB_COLUMNS)
    for name, position in q._INSERT_PARAMS.items():
        assert params[position - 1] == OTHER[name]
        kind = q.NEW_JOB_COLUMNS[name][1]
        assert f"${position}::{kind}" in q.Queries("s").sql["insert"]


def test_attributes_reads_by_name_and_refuses_what_is_no_name() -> None:
    job = NewJob(**OTHER)
    assert attributes(["queue"])(job) == ("queue!",)
    assert attributes(["name", "handler"])(job) == ("name!", "handler!")
    for bad in (["a.b"], ["x)"], ["class"], []):
        with pytest.raises(ValueError, match="not attribute names"):
            attributes(bad)


def test_plain_means_every_field_with_a_default_has_it() -> None:
    base = NewJob("h", "{}", "q", 0, 3)
    assert base.plain
    for f in fields(NewJob):
        if f.default is not MISSING:
            assert not replace(base, **{f.name: OTHER[f.name]}).plain, f.name


def test_the_inserted_job_carries_every_field_it_shares_with_new_job() -> None:
    job = NewJob(**OTHER)
    built = _inserted(job, 5, NOW, NOW, {"a": 1})  # data as stored: decoded
    shared = {f.name for f in fields(Job)} & {f.name for f in fields(NewJob)}
    assert shared and all(getattr(built, name) == OTHER[name] for name in shared)
    assert (built.id, built.data, built.attempts, built.next_run_at, built.created_at, built.updated_at) == (
        5, {"a": 1}, 0, NOW, NOW, NOW)


class FakeDB:
    def __init__(self) -> None:
        self.args: tuple[Any, ...] = ()

    async def fetchrow(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        self.args = args
        return None  # no such job: only what was sent is checked


async def test_update_job_sends_what_changes_by_name() -> None:
    db = FakeDB()
    await q.Queries("s").update_job(db, 4, {"priority": 2, "name": None})  # type: ignore[arg-type]
    job_id, names, *values = db.args
    assert (job_id, names) == (4, ["priority", "name"])
    by_column = dict(zip(q._UPDATE_PARAMS, values, strict=True))
    assert by_column["priority"] == 2
    assert all(v is None for c, v in by_column.items() if c != "priority")


async def test_update_job_refuses_a_column_it_cannot_set() -> None:
    with pytest.raises(ValueError, match="cannot set progress, status"):
        await q.Queries("s").update_job(FakeDB(), 4, {"status": "failed", "progress": 1.0})  # type: ignore[arg-type]


# --- the completion: what it sends of its outcomes (queries.OUTCOME_PARAMS) ---

def _array(values: list[Any]) -> str:
    # the wire format of a number, flag or word array: a PostgreSQL array literal, NULL for None
    return "{" + ",".join("NULL" if v is None else str(v) for v in values) + "}"


def _us(at: datetime) -> int:
    return (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


# Outcomes of one flush, every field set somewhere; "w2" ran one of them, the batch's worker is "w1".
RETRY = Outcome(11, 2, 21, JobStatus.PENDING, RunStatus.FAILED, 1001, 2001, "w1", NOW, error="boom", delay=1.5)
TICK = Outcome(12, 1, 22, JobStatus.PENDING, RunStatus.COMPLETED, 1002, 2002, "w2", NOW + timedelta(seconds=1),
               result_json="7", next_run_at=NOW + timedelta(minutes=1), reset_attempts=True)
RELEASED = Outcome(13, 3, 23, JobStatus.PENDING, RunStatus.RELEASED, 1003, 2003, "w1", None, error="bye",
                   delay=0.0, release=True)
CANCELLED = Outcome(14, 1, 24, JobStatus.CANCELLED, RunStatus.CANCELLED, 1004, 2004, "w1", None,
                    error="cancelled", after_cancel=True)
DONE = [Outcome(15, 1, 25, JobStatus.COMPLETED, RunStatus.COMPLETED, 1005, 2005, "w1", NOW, None, '{"a": 1}'),
        Outcome(16, 1, 26, JobStatus.COMPLETED, RunStatus.COMPLETED, 1006, 2006, "w2", NOW)]
REST = [RETRY, TICK, RELEASED, CANCELLED]

# What each unnested column must receive, written out (not read from the declaration).
EXPECTED_REST = {
    "id": _array([11, 12, 13, 14]), "attempt": _array([2, 1, 3, 1]), "token": _array([21, 22, 23, 24]),
    "job_status": _array(["pending", "pending", "pending", "cancelled"]),
    "run_status": _array(["failed", "completed", "released", "cancelled"]),
    "delay": _array([1.5, None, 0.0, None]),
    "next_run_at": _array([None, _us(NOW + timedelta(minutes=1)), None, None]),
    "error": ["boom", None, "bye", "cancelled"], "result": [None, "7", None, None],
    "started_at": _array([1001, 1002, 1003, 1004]), "finished_at": _array([2001, 2002, 2003, 2004]),
    "release": _array([None, None, True, None]), "reset": _array([None, True, None, None]),
    "worker_id": [None, "w2", None, None],
    "scheduled_at": _array([_us(NOW), _us(NOW + timedelta(seconds=1)), None, None]),
    "after_cancel": _array([None, None, None, True]),
}
EXPECTED_DONE = {"id": _array([15, 16]), "token": _array([25, 26]), "result": ['{"a": 1}', None],
                 "started_at": _array([1005, 1006]), "finished_at": _array([2005, 2006]), "worker_id": [None, "w2"]}


def _unnested(sql: str, cte: str) -> dict[str, int]:
    """Each column the CTE ``cte`` unnests, with its parameter's number."""
    body = sql.split(f"{cte} AS MATERIALIZED (", 1)[1].split(") u\n", 1)[0]
    return {name: int(n) for n, name in re.findall(r"unnest\(\$(\d+)::[a-z0-9:]+\[\]\) AS (\w+)", body)}


def _scalars(sql: str) -> dict[str, int]:
    return {"worker_id": int(re.findall(r"COALESCE\(u\.worker_id, \$(\d+)\)", sql)[0]),
            "history": int(re.findall(r"WHERE \$(\d+)\n", sql)[0]),
            "control": int(re.findall(r"pg_notify\(\$(\d+), 'done '", sql)[0])}


class CompleteDB:
    def __init__(self) -> None:
        self.query = ""
        self.args: tuple[Any, ...] = ()

    async def fetchval(self, query: str, *args: Any, timeout: float | None = None) -> Any:
        self.query, self.args = query, args
        return None


@pytest.mark.parametrize("outcomes", [REST + DONE, DONE], ids=["complete", "complete_success"])
async def test_a_completion_sends_each_outcome_field_at_its_parameter(outcomes: list[Outcome]) -> None:
    queries = q.Queries("s")
    db = CompleteDB()
    await queries.complete(db, outcomes, history=True)  # type: ignore[arg-type]
    name = "complete" if outcomes is not DONE else "complete_success"
    sql = queries.sql[name]
    assert db.query == sql
    sent: dict[str, Any] = {}
    if name == "complete":
        assert _unnested(sql, "o").keys() == EXPECTED_REST.keys()
        sent |= {f"o.{c}": db.args[n - 1] for c, n in _unnested(sql, "o").items()}
    assert _unnested(sql, "d").keys() == EXPECTED_DONE.keys()
    sent |= {f"d.{c}": db.args[n - 1] for c, n in _unnested(sql, "d").items()}
    sent |= {c: db.args[n - 1] for c, n in _scalars(sql).items()}
    expected = {f"d.{c}": v for c, v in EXPECTED_DONE.items()} | {
        "worker_id": "w1", "history": True, "control": queries.control_channel}
    if name == "complete":
        expected |= {f"o.{c}": v for c, v in EXPECTED_REST.items()}
    assert sent == expected
    assert len(db.args) == len(expected)  # nothing sent that the statement does not read


async def test_a_column_no_outcome_sets_is_sent_as_one_null() -> None:
    # one worker, no result, no error, no flag, no tick: those arrays go as NULL, which unnest pads
    queries = q.Queries("s")
    db = CompleteDB()
    retry = Outcome(1, 1, 1, JobStatus.PENDING, RunStatus.FAILED, 5, 6, "w1", None, delay=2.0)
    await queries.complete(db, [retry, DONE[0]], history=False)  # type: ignore[arg-type]
    sql = queries.sql["complete"]
    rest = {c: db.args[n - 1] for c, n in _unnested(sql, "o").items()}
    assert all(rest[c] is None for c in ("next_run_at", "error", "result", "release", "reset", "worker_id",
                                         "scheduled_at", "after_cancel"))
    assert db.args[_unnested(sql, "d")["worker_id"] - 1] is None
    assert db.args[_scalars(sql)["worker_id"] - 1] == "w1"


async def test_a_completion_sends_its_jobs_in_id_order() -> None:
    # the order in which an enqueue with parents locks them (migration 0019): no lock cycle between the two
    queries = q.Queries("s")
    db = CompleteDB()
    done = [Outcome(i, 1, i, JobStatus.COMPLETED, RunStatus.COMPLETED, 5, 6, "w1", None) for i in (7, 3, 9, 1)]
    retry = [Outcome(i, 1, i, JobStatus.PENDING, RunStatus.FAILED, 5, 6, "w1", None, delay=2.0) for i in (8, 2)]
    await queries.complete(db, done, history=True)  # type: ignore[arg-type]
    assert db.args[_unnested(queries.sql["complete_success"], "d")["id"] - 1] == "{1,3,7,9}"
    await queries.complete(db, retry + done, history=True)  # type: ignore[arg-type]
    sql = queries.sql["complete"]
    assert db.args[_unnested(sql, "o")["id"] - 1] == "{2,8}"
    assert db.args[_unnested(sql, "d")["id"] - 1] == "{1,3,7,9}"


def test_a_completion_placeholder_must_be_declared_and_used() -> None:
    with pytest.raises(AssertionError, match="o_extra"):
        q._numbered("SELECT :o_id", ["o_id", "o_extra"])
    with pytest.raises(AssertionError, match="o_typo"):
        q._numbered("SELECT :o_id, :o_typo", ["o_id"])
    assert q._numbered("SELECT :b::int, :a, :b", ["a", "b"]) == "SELECT $2::int, $1, $2"


# --- what a column needs in the query layer: the write side and the history follow from the declarations ---

def test_a_new_job_field_fills_the_column_of_its_name_with_the_type_of_its_annotation() -> None:
    @dataclass
    class Fields:
        note: str | None = None
        count: int = 0
        data_json: str = "{}"
        transient: float | None = field(default=None, metadata=NOT_STORED)

    written = q._written_columns(Fields, {"data_json": ("data", "jsonb")})
    assert written == {"note": ("note", "text"), "count": ("count", "int"), "data_json": ("data", "jsonb")}

    @dataclass
    class Unknown:
        blob: bytes | None = None

    with pytest.raises(TypeError, match=r"Unknown\.blob: no SQL type"):
        q._written_columns(Unknown, {})


def test_new_job_columns_name_every_stored_field_of_new_job_and_fill_columns_of_the_job_row() -> None:
    assert list(q.NEW_JOB_COLUMNS) == stored_fields(NewJob)
    assert {column for column, _ in q.NEW_JOB_COLUMNS.values()} <= q.JOB_COLUMNS.keys()


def test_the_history_keeps_the_columns_read_from_it_as_themselves_but_the_runs_own() -> None:
    columns = {"id": "job_id", "note": "note", "result": "result", "worker_id": "worker_id", "tick": "NULL::text"}
    assert q._kept_in_history(columns, "job_id, worker_id, result") == ("note",)
    kept = set(q._DONE_JOB)
    assert {"handler", "data", "queue", "concurrency_key", "backoff"} <= kept
    assert not kept & {"result", "worker_id", "status", "progress", "trace_context"}
    # what is kept is copied at completion, and back by a restore
    sql = q.Queries("s").sql
    assert all(f"j.{c}" in sql["complete_success"] for c in kept)
    assert q._DONE_JOB_COLUMNS in sql["restore_job"]
