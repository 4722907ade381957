"""The rescue's outcome for a job whose worker was lost, decided without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from aiojobs_pg.maintenance import lost_worker
from aiojobs_pg.models import JobStatus, RunStatus, micros
from aiojobs_pg.queries import ExpiredLease

TICK = datetime(2025, 1, 1, 9, tzinfo=UTC)


def row(**changes: Any) -> ExpiredLease:
    """A row of ``expired_leases``."""
    values = {"id": 7, "token": 12, "attempts": 1, "max_attempts": 3, "schedule": None, "timezone": None,
              "misfire": "skip", "overlap": "wait", "worker_id": "host:1:ab", "last_run_at": TICK,
              "scheduled_at": TICK}
    return ExpiredLease(**(values | changes))


def test_attempts_left_run_again_at_once_without_backoff() -> None:
    o = lost_worker(row())
    assert (o.job_id, o.attempt, o.token, o.worker_id) == (7, 1, 12, "host:1:ab")
    assert (o.job_status, o.run_status, o.delay, o.next_run_at) == (JobStatus.PENDING, RunStatus.FAILED, 0.0, None)
    assert o.started_us == micros(TICK) and o.finished_us > o.started_us
    assert o.error is not None and "worker lost" in o.error and "host:1:ab" in o.error


def test_the_last_attempt_fails_the_job() -> None:
    o = lost_worker(row(attempts=3))
    assert (o.job_status, o.run_status, o.delay) == (JobStatus.FAILED, RunStatus.FAILED, None)


def test_a_recurring_job_on_its_last_attempt_moves_to_its_next_tick() -> None:
    o = lost_worker(row(attempts=3, schedule="1h", last_run_at=None))
    assert (o.job_status, o.reset_attempts) == (JobStatus.PENDING, True)
    assert o.started_us == micros(TICK)  # never claimed on record: counted from its tick
    assert o.next_run_at == TICK + timedelta(hours=1)  # the tick after the one it ran for (misfire decides later)
