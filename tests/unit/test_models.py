"""Unit tests (no database) of the plain data in ``models``."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_pg import JobContext
from aiojobs_pg.models import ClaimedJob, Job, JobStatus, build_claimed_job, build_job, load_json, micros

NOW = datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=UTC)
JOB = (7, "h", {"a": [1]}, "q", 3, JobStatus.PENDING, 1, 5, NOW, NOW, NOW, "n", "*/5 * * * *", "UTC", 2.5,
       NOW, "boom", {"r": 1}, "k", NOW, "w1", "p", "all", "skip", NOW, 0.5, "half")
CLAIMED = (7, "h", {"a": [1]}, "q", 1, 3, 2.5, None, None, NOW, NOW, "n", "skip", "wait", 4)


@pytest.mark.parametrize(("cls", "build", "values"), [(Job, build_job, JOB), (ClaimedJob, build_claimed_job, CLAIMED)])
def test_the_fast_builders_make_the_same_frozen_objects_as_the_constructors(cls: Any, build: Any,
                                                                            values: tuple[Any, ...]) -> None:
    built = build(*values)
    assert type(built) is cls
    assert built == cls(*values)
    # the values given, in field order, and each later field's default
    defaults = tuple(f.default for f in dataclasses.fields(cls)[len(values):])
    assert dataclasses.astuple(built) == values + defaults
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = 8
    with pytest.raises(TypeError):
        build(*values[:10])  # every field without a default, in order
    assert build(*values[:11]) == cls(*values[:11])  # the others take their defaults


def test_micros_is_exact() -> None:
    assert micros(NOW) == 1796128215123456
    assert micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert micros(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1


@pytest.mark.parametrize("text", [
    '{"i":1}', '{"i": 1, "s": "\\u00e9\\n", "l": [1, 2.5, null, true, false]}', "[]", "{}", '"x"', "0", "-1.5e300",
    "null", "NaN", "-Infinity", "123456789012345678901234567890", '{"a":{"b":[[{"c":"\\ud83d\\ude00"}]]}}',
    ' {"i":1}', '{"i":1} ', "\n[1]\n", '{"a":1,"a":2}',
])
def test_load_json_decodes_as_json_loads_does(text: str) -> None:
    expected = json.loads(text)
    got = load_json(text)
    assert json.dumps(got) == json.dumps(expected) and type(got) is type(expected)


@pytest.mark.parametrize("text", ["", " ", "{", '{"i":1}x', '{"i":1} {', "[1,]", "'a'", "{'a': 1}", "tru", "1 2"])
def test_load_json_refuses_what_json_loads_refuses_with_its_error(text: str) -> None:
    with pytest.raises(json.JSONDecodeError) as expected:
        json.loads(text)
    with pytest.raises(json.JSONDecodeError) as got:
        load_json(text)
    assert (got.value.msg, got.value.pos) == (expected.value.msg, expected.value.pos)


async def test_a_job_context_is_built_in_a_users_test_from_public_fields_only() -> None:
    ctx = JobContext(job_id=1, handler="send", queue="default", attempt=3, max_attempts=3, worker_id="test",
                     scheduled_at=datetime.now(UTC), name=None)
    assert ctx.is_last_attempt
    ctx.log.info("from_a_test")  # bound without a worker: the library's own logger
    assert ctx.log is ctx.log
