"""Unit tests (no database) of what the write side of the job row generates from its declaration
(``queries.NEW_JOB_COLUMNS``): statements, parameters read by name, and the Job an insert returns."""

from __future__ import annotations

import re
from dataclasses import MISSING, fields, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aiojobs_pg import queries as q
from aiojobs_pg.enqueue import _inserted
from aiojobs_pg.models import Backoff, Job, NewJob, attributes

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
                                  "insert_many_window", "update_job"])
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
