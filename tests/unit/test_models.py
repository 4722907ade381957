"""Unit tests (no database) of the plain data in ``models``."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest

from aiojobs_pg.models import ClaimedJob, Job, JobStatus, build_claimed_job, build_job, micros

NOW = datetime(2026, 12, 1, 12, 30, 15, 123456, tzinfo=UTC)
JOB = (7, "h", {"a": [1]}, "q", 3, JobStatus.PENDING, 1, 5, NOW, NOW, NOW, "n", "*/5 * * * *", "UTC", 2.5,
       NOW, "boom", {"r": 1}, "k", NOW, "w1", "p", "all", "skip", NOW)
CLAIMED = (7, "h", {"a": [1]}, "q", 1, 3, 2.5, None, None, NOW, NOW, "n", "skip", "wait", 4)


@pytest.mark.parametrize(("cls", "build", "values"), [(Job, build_job, JOB), (ClaimedJob, build_claimed_job, CLAIMED)])
def test_the_fast_builders_make_the_same_frozen_objects_as_the_constructors(cls: Any, build: Any,
                                                                            values: tuple[Any, ...]) -> None:
    built = build(*values)
    assert type(built) is cls
    assert built == cls(*values)
    assert dataclasses.astuple(built) == values
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.id = 8
    with pytest.raises(TypeError):
        build(*values[:-1])  # every field, in order


def test_micros_is_exact() -> None:
    assert micros(NOW) == 1796128215123456
    assert micros(datetime(1970, 1, 1, tzinfo=UTC)) == 0
    assert micros(datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)) == -1
