"""What the command line shows, without a database: help for a bare command, a file given as the
App, finished jobs' tables, the serve command's URL, and the demo's two views."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta

import pytest

from aiojobs_pg.cli import main
from aiojobs_pg.cli.apps import UsageError, load_app
from aiojobs_pg.cli.demo import DemoJobs, LineView, LiveView, settled
from aiojobs_pg.cli.render import jobs_table
from aiojobs_pg.cli.serve import dashboard_url
from aiojobs_pg.models import Job, JobStatus

COMMANDS = ["worker", "migrate", "jobs", "queues", "workers", "schedules", "demo", "serve"]
NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HOUR_AGO = NOW - timedelta(hours=1)


def job(job_id: int, status: JobStatus, *, attempts: int = 1, error: str | None = None,
        name: str | None = None, next_run_at: datetime = HOUR_AGO, last_run_at: datetime | None = None) -> Job:
    return Job(id=job_id, handler="h", data=None, queue="default", priority=0, status=status, attempts=attempts,
               max_attempts=3, next_run_at=next_run_at, created_at=HOUR_AGO, updated_at=HOUR_AGO, name=name,
               last_error=error, last_run_at=last_run_at)


def test_a_bare_command_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert all(f"\n    {name} " in err for name in COMMANDS), err
    assert err.rstrip().endswith("error: give one of the commands above")

    assert main(["jobs"]) == 2
    err = capsys.readouterr().err
    assert all(f"\n    {action} " in err for action in ("list", "show", "enqueue", "wait", "retry-failed")), err


def test_other_missing_arguments_stay_plain_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs", "show"]) == 2
    err = capsys.readouterr().err
    assert "the following arguments are required: ID" in err
    assert "positional arguments" not in err  # not the whole help


@pytest.mark.parametrize(("target", "suggested"), [
    ("myjobs.py:app", "myjobs:app"),
    ("./pkg/jobs.py:app", "pkg.jobs:app"),
    ("pkg/jobs:app", "pkg.jobs:app"),
])
def test_a_file_where_a_module_belongs_names_the_module(target: str, suggested: str) -> None:
    # load_app, not main(): main() would configure the process's logging (the CLI's job, not a test's).
    with pytest.raises(UsageError, match=re.escape(f"give the module, not the file: {suggested} ")):
        load_app(target)


def test_finished_jobs_show_no_next_run_and_a_completed_one_no_old_error() -> None:
    soon = NOW + timedelta(minutes=5)
    table = jobs_table([
        job(1, JobStatus.COMPLETED, attempts=3, error="ConnectionError: attempt 2"),
        job(2, JobStatus.FAILED, attempts=3, error="ValueError: declined"),
        job(3, JobStatus.PENDING, error="ConnectionError: attempt 1", next_run_at=soon),
        job(4, JobStatus.CANCELLED),
    ])
    rows = {line.split()[0]: line for line in table.splitlines()[2:]}
    past = HOUR_AGO.strftime("%Y-%m-%d %H:%M:%SZ")
    assert past not in table  # no finished job shows the time it last became due as its next run
    assert soon.strftime("%Y-%m-%d %H:%M:%SZ") in rows["3"]
    assert "attempt 2" not in rows["1"] and rows["1"].rstrip().endswith("-")
    assert "ValueError: declined" in rows["2"]  # a failed job's error is its outcome
    assert "ConnectionError: attempt 1" in rows["3"]  # a pending retry's error is current


@pytest.mark.parametrize(("host", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8123/dashboard"),
    ("0.0.0.0", "http://127.0.0.1:8123/dashboard"),
    ("::", "http://[::1]:8123/dashboard"),
    ("jobs.internal", "http://jobs.internal:8123/dashboard"),
])
def test_dashboard_url(host: str, url: str) -> None:
    assert dashboard_url(host, 8123) == url


DEMO = DemoJobs(singles=[1, 2, 5], retrying=2, batch=[10, 11], recurring=5)


def demo_jobs(*, retrying: JobStatus, recurring_ran: bool) -> dict[int, Job]:
    due = datetime.now(UTC) - timedelta(seconds=1)  # the views compare with the clock
    return {
        1: job(1, JobStatus.COMPLETED, name="welcome email", next_run_at=due),
        2: job(2, retrying, attempts=3, error="ConnectionError: attempt 2", name="inventory sync", next_run_at=due),
        5: job(5, JobStatus.PENDING, name="cleanup", last_run_at=due if recurring_ran else None,
               next_run_at=due + timedelta(minutes=1)),
        10: job(10, JobStatus.COMPLETED), 11: job(11, JobStatus.FAILED),
    }


def test_the_demo_settles_when_only_the_recurring_job_is_left() -> None:
    assert not settled(demo_jobs(retrying=JobStatus.PENDING, recurring_ran=True), DEMO)
    assert not settled(demo_jobs(retrying=JobStatus.COMPLETED, recurring_ran=False), DEMO)
    assert settled(demo_jobs(retrying=JobStatus.COMPLETED, recurring_ran=True), DEMO)


def test_the_live_view_redraws_one_table_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    out = io.StringIO()
    view = LiveView(DEMO, out)
    view.update(demo_jobs(retrying=JobStatus.PENDING, recurring_ran=False), 1.0)
    first = out.getvalue()
    assert "\x1b[" not in first and first.count("ATTEMPTS") == 1
    assert "last error: ConnectionError: attempt 2" in first  # pending a retry: its error is current
    view.update(demo_jobs(retrying=JobStatus.COMPLETED, recurring_ran=True), 2.0)
    second = out.getvalue()[len(first):]
    # Back to the first line of the table drawn before, cleared to the end, then the new table.
    assert second.startswith(f"\x1b[{first.count(chr(10))}F\x1b[J")
    assert second.count("ATTEMPTS") == 1 and "t =  2.0 s" in second
    assert "attempt 2" not in second  # completed: its earlier error is not its last error


def test_the_line_view_prints_changes_then_the_final_table() -> None:
    out = io.StringIO()
    view = LineView(DEMO, out)
    pending = demo_jobs(retrying=JobStatus.PENDING, recurring_ran=False)
    view.update(pending, 0.5)
    view.update(pending, 1.0)  # nothing changed: nothing printed
    done = demo_jobs(retrying=JobStatus.COMPLETED, recurring_ran=True)
    view.update(done, 1.5)
    view.finish(done, 1.5)
    lines = out.getvalue().splitlines()
    changes = [line for line in lines if line.lstrip().startswith(("0.5 s", "1.0 s", "1.5 s"))]
    # Three jobs and the batch at first; then the retried job's completion and the recurring job's run.
    assert [c.split()[0] for c in changes] == ["0.5"] * 4 + ["1.5"] * 2
    assert "job 2 inventory sync: pending (attempt 3/3): ConnectionError: attempt 2" in changes[1]
    assert changes[-2].endswith("job 2 inventory sync: completed (attempt 3/3)")
    assert "job 5 cleanup: pending, next run in 5" in changes[-1]  # in 59.x s
    assert out.getvalue().count("ATTEMPTS") == 1  # one table, at the end
