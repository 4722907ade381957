"""The worker in-process: running, retries, dead letter, timeouts, leases, fencing, shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from aiojobs_pg import App, Backoff, Cancel, JobContext, JobNotFound, JobStatus, Retry, RunStatus
from aiojobs_pg.executor import now_us
from aiojobs_pg.models import ClaimedJob, Outcome
from aiojobs_pg.models import JobStatus as Status
from aiojobs_pg.models import RunStatus as RStatus
from tests.helpers import eventually, register_slow

FAST = Backoff(base=0.05, factor=2, cap=0.2, jitter=0)


async def status_of(app: App, job_id: int) -> JobStatus:
    return (await app.get_job(job_id)).status


async def wait_status(app: App, job_id: int, status: JobStatus, timeout: float = 10) -> None:
    async def check() -> bool:
        return await status_of(app, job_id) == status

    await eventually(check, timeout=timeout, message=f"job {job_id} never became {status}")


async def test_success_stores_result_and_history(app: App) -> None:
    seen: list[tuple[Any, int]] = []

    @app.handler()
    async def greet(data: dict[str, str], ctx: JobContext) -> dict[str, str]:
        seen.append((data, ctx.attempt))
        ctx.log.info("greeting", who=data["who"])
        return {"hello": data["who"]}

    job = await app.enqueue("greet", {"who": "ada"})
    await app.run_worker(burst=True, handle_signals=False)
    done = await app.get_job(job.id)
    assert done.status is JobStatus.COMPLETED
    assert done.result == {"hello": "ada"}
    assert done.attempts == 1
    assert seen == [({"who": "ada"}, 1)]
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status, r.result, r.error) for r in runs] == [
        (1, RunStatus.COMPLETED, {"hello": "ada"}, None)]
    assert runs[0].worker_id and runs[0].duration_ms is not None and runs[0].duration_ms >= 0
    assert runs[0].started_at and runs[0].completed_at and runs[0].completed_at >= runs[0].started_at


async def test_retries_with_backoff_then_success(app: App) -> None:
    app.backoff = FAST

    @app.handler()
    async def flaky(data: None, ctx: JobContext) -> str:
        if ctx.attempt < 3:
            raise RuntimeError(f"boom on attempt {ctx.attempt}")
        return "ok"

    job = await app.enqueue("flaky", max_attempts=3)
    async with app.worker(concurrency=2):
        await wait_status(app, job.id, JobStatus.COMPLETED)
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.FAILED), (2, RunStatus.FAILED), (3, RunStatus.COMPLETED)]
    assert "RuntimeError: boom on attempt 1" in (runs[0].error or "")
    assert "Traceback" in (runs[0].error or "")
    final = await app.get_job(job.id)
    assert final.attempts == 3 and final.result == "ok"
    assert "boom on attempt 2" in (final.last_error or "")


async def test_backoff_delays_the_retry_on_the_database_clock(app: App) -> None:
    app.backoff = Backoff(base=60, factor=2, jitter=0)

    @app.handler()
    async def fails(data: None) -> None:
        raise ValueError("nope")

    job = await app.enqueue("fails", max_attempts=3)
    await app.run_worker(burst=True, handle_signals=False)
    after = await app.get_job(job.id)
    now = await app.pool.fetchval("SELECT now()")
    assert after.status is JobStatus.PENDING and after.attempts == 1
    assert timedelta(seconds=55) < after.next_run_at - now < timedelta(seconds=61)


async def test_dead_letter_then_manual_retry(app: App) -> None:
    app.backoff = FAST
    fail = True

    @app.handler()
    async def fragile(data: None) -> str:
        if fail:
            raise RuntimeError("always")
        return "fixed"

    job = await app.enqueue("fragile", max_attempts=2)
    async with app.worker():
        await wait_status(app, job.id, JobStatus.FAILED)
        dead = await app.get_job(job.id)
        assert dead.attempts == 2 and "RuntimeError: always" in (dead.last_error or "")
        assert [j.id for j in await app.list_jobs(status="failed")] == [job.id]
        fail = False
        await app.retry(job.id)
        await wait_status(app, job.id, JobStatus.COMPLETED)
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status) for r in runs] == [
        (1, RunStatus.FAILED), (2, RunStatus.FAILED), (1, RunStatus.COMPLETED)]


async def test_retry_signal_and_cancel_signal(app: App) -> None:
    @app.handler()
    async def later(data: None, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise Retry(after=0.1, reason="not yet")
        return "now"

    @app.handler()
    async def give_up(data: None) -> None:
        raise Cancel("not needed any more")

    a = await app.enqueue("later")
    b = await app.enqueue("give_up", max_attempts=5)
    async with app.worker():
        await wait_status(app, a.id, JobStatus.COMPLETED)
        await wait_status(app, b.id, JobStatus.CANCELLED)
    runs = await app.job_history(a.id)
    assert runs[0].status is RunStatus.FAILED and "not yet" in (runs[0].error or "")
    cancelled = await app.get_job(b.id)
    assert cancelled.attempts == 1 and "not needed any more" in (cancelled.last_error or "")


async def test_timeout_fails_the_attempt(app: App) -> None:
    @app.handler()
    async def slow(data: None) -> None:
        await asyncio.sleep(30)

    job = await app.enqueue("slow", timeout=0.2, max_attempts=1)
    started = asyncio.get_running_loop().time()
    await app.run_worker(burst=True, handle_signals=False)
    assert asyncio.get_running_loop().time() - started < 10
    done = await app.get_job(job.id)
    assert done.status is JobStatus.FAILED
    assert "timeout" in (done.last_error or "").lower()


async def test_sync_handler_runs_in_a_thread_and_data_only_signature(app: App) -> None:
    threads: list[str] = []

    @app.handler("sync-job")
    def blocking(data: dict[str, int]) -> int:
        threads.append(threading.current_thread().name)
        return data["n"] * 2

    job = await app.enqueue("sync-job", {"n": 21})
    await app.run_worker(burst=True, handle_signals=False)
    assert (await app.get_job(job.id)).result == 42
    assert threads and threads[0] != threading.main_thread().name


async def test_unstorable_result_fails_the_attempt(app: App) -> None:
    @app.handler()
    async def returns_a_set(data: None) -> object:
        return {1, 2}

    job = await app.enqueue("returns_a_set", max_attempts=1)
    await app.run_worker(burst=True, handle_signals=False)
    done = await app.get_job(job.id)
    assert done.status is JobStatus.FAILED and "cannot be stored" in (done.last_error or "")


async def test_history_can_be_turned_off(app: App) -> None:
    app.enable_history = False

    @app.handler()
    async def quiet(data: None) -> None:
        return None

    @app.handler()
    async def broken(data: None) -> None:
        raise RuntimeError("boom")

    job = await app.enqueue("quiet")
    failing = await app.enqueue("broken", max_attempts=2)
    app.backoff = Backoff(base=0.05, jitter=0)
    async with app.worker():
        await wait_status(app, failing.id, JobStatus.FAILED)
    # Without history a completed one-off job leaves nothing behind: its row is gone, and no run is kept.
    with pytest.raises(JobNotFound):
        await app.get_job(job.id)
    assert await app.pool.fetchval(f"SELECT count(*) FROM {app.schema}.job_runs") == 0
    # A job that failed for good stays, as a dead letter, with its error but no runs.
    dead = await app.get_job(failing.id)
    assert dead.attempts == 2 and "boom" in (dead.last_error or "")
    assert await app.job_history(failing.id) == []


async def test_priority_then_due_time_order(app: App) -> None:
    order: list[str] = []

    @app.handler()
    async def note(data: str) -> None:
        order.append(data)

    await app.enqueue("note", "low", priority=0)
    await app.enqueue("note", "high", priority=10)
    await app.enqueue("note", "mid", priority=5)
    await app.enqueue("note", "low-2", priority=0)
    await app.run_worker(concurrency=1, burst=True, handle_signals=False)
    assert order == ["high", "mid", "low", "low-2"]


async def test_deferred_job_waits_for_its_time(app: App) -> None:
    ran = asyncio.Event()

    @app.handler()
    async def deferred(data: None) -> None:
        ran.set()

    job = await app.enqueue("deferred", delay=1.0)
    async with app.worker() as worker:
        await asyncio.wait_for(worker.signals.wait("claim", 1), 5)  # a claim ran, and left the job alone
        assert not ran.is_set() and await status_of(app, job.id) is JobStatus.PENDING
        await wait_status(app, job.id, JobStatus.COMPLETED, timeout=5)
    runs = await app.job_history(job.id)
    assert runs[0].started_at is not None and runs[0].started_at >= job.next_run_at


async def test_only_its_queues(app: App) -> None:
    @app.handler()
    async def q(data: None) -> None:
        return None

    mine = await app.enqueue("q", queue="mine")
    other = await app.enqueue("q", queue="other")
    await app.run_worker(queues=["mine"], burst=True, handle_signals=False)
    assert await status_of(app, mine.id) is JobStatus.COMPLETED
    assert await status_of(app, other.id) is JobStatus.PENDING


async def test_notification_wakes_an_idle_worker_before_the_poll(app: App) -> None:
    ran = asyncio.Event()

    @app.handler()
    async def ping(data: None) -> None:
        ran.set()

    async with app.worker(poll_interval=30) as worker:
        await eventually(lambda: worker.notifier.connected, message="listener never connected")
        await asyncio.wait_for(worker.signals.wait("claim", 1), 5)  # startup claim done: only a notify wakes it
        await app.enqueue("ping")
        await asyncio.wait_for(ran.wait(), timeout=3)


async def test_poll_finds_jobs_without_notification(app: App) -> None:
    @app.handler()
    async def silent(data: None) -> None:
        return None

    async with app.worker(poll_interval=0.2) as worker:
        await eventually(lambda: worker.notifier.connected)
        # Inserted behind the engine's back: no pg_notify.
        job_id = await app.pool.fetchval(
            f"INSERT INTO {app.schema}.jobs (handler, data) VALUES ('silent', 'null') RETURNING id")
        await wait_status(app, job_id, JobStatus.COMPLETED, timeout=5)


async def test_a_retry_is_claimed_when_due_not_at_the_next_poll(app: App) -> None:
    # A completion sends no notification: only the producer's due hint can claim the retry before the poll.
    attempts: list[float] = []

    @app.handler()
    async def flaky(data: None) -> None:
        attempts.append(asyncio.get_running_loop().time())
        if len(attempts) == 1:
            raise Retry(after=0.3, reason="once")

    async with app.worker(poll_interval=30) as worker:
        await eventually(lambda: worker.notifier.connected, message="listener never connected")
        await asyncio.wait_for(worker.signals.wait("claim", 1), 5)  # the startup claim is done: only the hint wakes it
        job = await app.enqueue("flaky")
        await wait_status(app, job.id, JobStatus.COMPLETED, timeout=5)
    assert len(attempts) == 2
    assert 0.3 <= attempts[1] - attempts[0] < 3.0


async def test_several_workers_run_each_job_exactly_once(app: App) -> None:
    runs: list[int] = []

    @app.handler()
    async def count(data: int) -> None:
        runs.append(data)
        await asyncio.sleep(0)

    await app.enqueue_many([{"handler": "count", "data": i} for i in range(600)])
    async with app.worker(concurrency=7), app.worker(concurrency=13), app.worker(concurrency=50):
        async def all_done() -> bool:
            page = await app.admin().list_jobs(status="completed", limit=1000)
            return len(page.jobs) == 600

        await eventually(all_done, timeout=30)
    assert sorted(runs) == list(range(600))


async def test_fenced_completion_changes_nothing(app: App) -> None:
    job = await app.enqueue("whatever")
    # Claimed twice: the first claim's worker lost its lease, and the job was claimed again.
    await app.pool.execute(
        f"UPDATE {app.schema}.jobs SET status = 'running', attempts = 2, claims = 2 WHERE id = $1", job.id)
    now = now_us()
    stale = Outcome(job_id=job.id, attempt=1, token=1, job_status=Status.COMPLETED, run_status=RStatus.COMPLETED,
                    started_us=now, finished_us=now, worker_id="late-worker", result_json='"late"')
    applied = await app.queries.complete(app.pool, [stale], history=True)
    assert applied == set()
    row = await app.get_job(job.id)
    assert row.status is JobStatus.RUNNING and row.result is None
    assert await app.job_history(job.id) == []
    current = Outcome(job_id=job.id, attempt=2, token=2, job_status=Status.COMPLETED, run_status=RStatus.COMPLETED,
                      started_us=now, finished_us=now, worker_id="owner", result_json='"mine"')
    assert await app.queries.complete(app.pool, [stale, current], history=True) == {job.id}
    assert (await app.get_job(job.id)).result == "mine"
    assert [r.worker_id for r in await app.job_history(job.id)] == ["owner"]


class _Recording:
    """The pool, recording which statements complete() sends."""

    def __init__(self, app: App) -> None:
        self.pool = app.pool
        self.sent: list[str] = []

    async def fetchval(self, query: str, *args: Any) -> Any:
        self.sent.append(query)
        return await self.pool.fetchval(query, *args)


async def test_a_flush_of_successes_writes_what_the_general_statement_writes(app: App) -> None:
    # complete() sends a flush of one-off successes from one worker through "complete_success"; any
    # other outcome in the flush sends all of it through "complete". Both must write the same rows.
    for i in range(4):
        await app.enqueue("h", {"i": i})
    claimed = await app.queries.claim(app.pool, ["default"], 4, 30.0, "w1", app.queries.claim_for(["h"]))
    started = now_us()
    finished = started + 7000

    def success(job: ClaimedJob) -> Outcome:
        return Outcome(job_id=job.id, attempt=job.attempt, token=job.token, job_status=Status.COMPLETED,
                       run_status=RStatus.COMPLETED, started_us=started, finished_us=finished, worker_id="w1",
                       scheduled_at=job.scheduled_at, result_json='{"r": [1, "x"]}')

    plain, general = claimed[:2], claimed[2:]
    recording = _Recording(app)
    assert await app.queries.complete(recording, [success(j) for j in plain], history=True) == {  # type: ignore[arg-type]
        j.id for j in plain}
    # A fenced-out failure of a job that is no longer running sends the same successes the general way.
    stray = Outcome(job_id=plain[0].id, attempt=plain[0].attempt, token=plain[0].token, job_status=Status.FAILED,
                    run_status=RStatus.FAILED, started_us=started, finished_us=finished, worker_id="w1",
                    error="late")
    assert await app.queries.complete(recording, [*map(success, general), stray], history=True) == {  # type: ignore[arg-type]
        j.id for j in general}
    assert recording.sent == [app.queries.sql["complete_success"], app.queries.sql["complete"]]

    jobs = {j.id: await app.get_job(j.id) for j in claimed}
    runs = {j.id: await app.job_history(j.id) for j in claimed}
    same_job = {"id": 0, "data": None, "created_at": None, "updated_at": None, "next_run_at": None}
    for a, b in zip(plain, general, strict=True):
        assert dataclasses.replace(jobs[a.id], **same_job) == dataclasses.replace(jobs[b.id], **same_job)
        assert jobs[a.id].status is JobStatus.COMPLETED and jobs[a.id].result == {"r": [1, "x"]}
        assert [dataclasses.replace(r, id=0, job_id=0, scheduled_at=None) for r in runs[a.id]] == [
            dataclasses.replace(r, id=0, job_id=0, scheduled_at=None) for r in runs[b.id]]
        assert [(r.status, r.worker_id, r.duration_ms, r.error, r.scheduled_at) for r in runs[a.id]] == [
            (RunStatus.COMPLETED, "w1", 7.0, None, a.scheduled_at)]
        assert [r.scheduled_at for r in runs[b.id]] == [b.scheduled_at]


async def test_expired_lease_is_rescued_and_rerun(app: App) -> None:
    app.backoff = FAST
    ran: list[int] = []

    @app.handler()
    async def orphan(data: None, ctx: JobContext) -> None:
        ran.append(ctx.attempt)

    job = await app.enqueue("orphan", max_attempts=3)
    # As if a worker claimed it and died: running, lease already expired.
    await app.pool.execute(
        f"""UPDATE {app.schema}.jobs SET status = 'running', attempts = 1, worker_id = 'dead-worker',
            last_run_at = now() - interval '1 minute', lease_expires_at = now() - interval '1 second'
            WHERE id = $1""", job.id)
    async with app.worker():
        await wait_status(app, job.id, JobStatus.COMPLETED)
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.FAILED), (2, RunStatus.COMPLETED)]
    assert "worker lost" in (runs[0].error or "") and runs[0].worker_id == "dead-worker"
    assert ran == [2]


async def test_rescue_of_last_attempt_is_the_dead_letter(app: App) -> None:
    job = await app.enqueue("never-registered", max_attempts=1)
    await app.pool.execute(
        f"""UPDATE {app.schema}.jobs SET status = 'running', attempts = 1, worker_id = 'gone',
            lease_expires_at = now() - interval '1 second' WHERE id = $1""", job.id)
    worker = app.create_worker()
    assert await worker.maintenance.rescue() == 1
    dead = await app.get_job(job.id)
    assert dead.status is JobStatus.FAILED and "worker lost" in (dead.last_error or "")
    assert await worker.maintenance.rescue() == 0


async def test_leases_are_renewed_for_long_jobs(app: App) -> None:
    # A lease of 1 s; the job runs 2.5 s (past two leases) and must not be rescued meanwhile.
    @app.handler()
    async def long(data: None, ctx: JobContext) -> int:
        await asyncio.sleep(2.5)
        return ctx.attempt

    job = await app.enqueue("long", max_attempts=1)
    # The second worker's maintenance (every 0.5 s) would rescue an expired lease.
    async with app.worker(lease=1), app.worker(lease=1):
        await wait_status(app, job.id, JobStatus.COMPLETED, timeout=15)
    assert (await app.get_job(job.id)).result == 1
    assert [r.status for r in await app.job_history(job.id)] == [RunStatus.COMPLETED]


async def test_cancelling_a_running_job_stops_its_handler(app: App) -> None:
    started, stopped = register_slow(app)
    job = await app.enqueue("slow")
    async with app.worker() as worker:
        await asyncio.wait_for(started.wait(), 5)
        await app.cancel(job.id)
        # The cancel's notification (or, missed, the next lease renewal) stops the handler.
        await asyncio.wait_for(stopped.wait(), 5)
        await eventually(lambda: not worker.inflight)
    assert await status_of(app, job.id) is JobStatus.CANCELLED


async def test_graceful_stop_releases_unfinished_jobs_without_charging_an_attempt(app: App) -> None:
    started = asyncio.Event()

    @app.handler()
    async def forever(data: None) -> None:
        started.set()
        await asyncio.sleep(60)

    @app.handler()
    async def quick(data: None) -> str:
        await asyncio.sleep(0.2)
        return "done"

    long_job = await app.enqueue("forever")
    async with app.worker(drain_timeout=0.5) as worker:
        await asyncio.wait_for(started.wait(), 5)
        short_job = await app.enqueue("quick")
        await eventually(lambda: short_job.id in worker.inflight)
    assert await status_of(app, short_job.id) is JobStatus.COMPLETED
    released = await app.get_job(long_job.id)
    assert released.status is JobStatus.PENDING and released.attempts == 0
    assert [r.status for r in await app.job_history(long_job.id)] == [RunStatus.RELEASED]
    assert await app.admin().workers() == []


async def test_worker_registers_and_beats(app: App) -> None:
    async with app.worker(concurrency=3, queues=["a", "b"]) as worker:
        workers = await app.admin().workers()
        assert [(w["id"], w["concurrency"], w["queues"]) for w in workers] == [(worker.id, 3, ["a", "b"])]
    assert await app.admin().workers() == []


async def test_recurring_job_returns_to_pending_at_its_next_tick(app: App) -> None:
    ticks: list[datetime] = []

    @app.handler()
    async def heartbeat(data: None, ctx: JobContext) -> None:
        ticks.append(ctx.scheduled_at)

    job = await app.enqueue("heartbeat", schedule="1s")
    async with app.worker():
        await eventually(lambda: len(ticks) >= 3, timeout=10)
    assert all(t.microsecond == 0 for t in ticks), "interval ticks sit on the whole-second grid"
    assert all(b - a >= timedelta(seconds=1) for a, b in itertools.pairwise(ticks))
    again = await app.get_job(job.id)
    assert again.status is JobStatus.PENDING and again.attempts == 0
    assert again.next_run_at > ticks[-1]


async def test_recurring_job_failure_keeps_the_schedule(app: App) -> None:
    app.backoff = FAST

    @app.handler()
    async def broken_cron(data: None) -> None:
        raise RuntimeError("cron broke")

    job = await app.enqueue("broken_cron", schedule="1s", max_attempts=1)
    async with app.worker():
        async def failed_twice() -> bool:
            return len(await app.job_history(job.id)) >= 2

        await eventually(failed_twice, timeout=10)
    after = await app.get_job(job.id)
    assert after.status in (JobStatus.PENDING, JobStatus.RUNNING)
    assert "cron broke" in (after.last_error or "")


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_burst_returns_when_nothing_is_due(app: App, concurrency: int) -> None:
    @app.handler()
    async def tiny(data: int) -> int:
        return data

    jobs = await app.enqueue_many([{"handler": "tiny", "data": i} for i in range(25)])
    later = await app.enqueue("tiny", 99, delay=60)
    await asyncio.wait_for(app.run_worker(concurrency=concurrency, burst=True, handle_signals=False), 20)
    for j in jobs:
        assert await status_of(app, j.id) is JobStatus.COMPLETED
    assert await status_of(app, later.id) is JobStatus.PENDING


async def test_worker_that_cannot_renew_stops_its_own_jobs(app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    started, stopped = register_slow(app)
    job = await app.enqueue("slow")
    async with app.worker() as worker:
        await asyncio.wait_for(started.wait(), 5)

        async def unreachable(*args: object, **kwargs: object) -> set[int]:
            raise OSError("database unreachable")

        monkeypatch.setattr(worker.queries, "renew_leases", unreachable)
        # lease is 3 s: past it, the worker must give the job up by itself.
        await asyncio.wait_for(stopped.wait(), 8)
        assert job.id not in worker.inflight
        monkeypatch.undo()
    # Nothing was written by the worker that lost the job: it is still running until rescued.
    assert (await app.get_job(job.id)).status in (JobStatus.RUNNING, JobStatus.PENDING)


async def test_listener_reconnects_after_its_backend_is_killed(app: App) -> None:
    ran: list[int] = []

    @app.handler()
    async def wake(data: int) -> None:
        ran.append(data)

    async with app.worker(poll_interval=30) as worker:
        await eventually(lambda: worker.notifier.connected)
        assert await app.pool.fetchval("SELECT pg_terminate_backend($1)", worker.notifier.backend_pid)
        await eventually(lambda: worker.notifier.reconnects >= 1 and worker.notifier.connected, timeout=10)
        await app.enqueue("wake", 1)
        # poll_interval is 30 s: only the re-established LISTEN can deliver this quickly.
        await eventually(lambda: ran == [1], timeout=5)


async def test_several_queues_are_claimed_in_one_priority_order(app: App) -> None:
    order: list[str] = []

    @app.handler()
    async def mark(data: str) -> None:
        order.append(data)

    await app.enqueue("mark", "a-low", queue="a", priority=1)
    await app.enqueue("mark", "b-high", queue="b", priority=9)
    await app.enqueue("mark", "c-ignored", queue="c", priority=99)
    await app.enqueue("mark", "a-mid", queue="a", priority=5)
    await app.run_worker(concurrency=1, queues=["a", "b"], burst=True, handle_signals=False)
    assert order == ["b-high", "a-mid", "a-low"]


async def test_a_handler_raising_cancelled_error_fails_its_attempt(app: App) -> None:
    app.backoff = FAST

    @app.handler()
    async def confused(data: None, ctx: JobContext) -> str:
        if ctx.attempt == 1:
            raise asyncio.CancelledError()
        return "second time lucky"

    job = await app.enqueue("confused")
    async with app.worker():
        await wait_status(app, job.id, JobStatus.COMPLETED, timeout=5)
    runs = await app.job_history(job.id)
    assert [(r.attempt, r.status) for r in runs] == [(1, RunStatus.FAILED), (2, RunStatus.COMPLETED)]
    assert "CancelledError" in (runs[0].error or "")


async def test_a_stale_lease_renewal_never_drops_a_newer_claim_of_the_same_job(
        app: App, monkeypatch: pytest.MonkeyPatch) -> None:
    """A renewal sent for claim 1 comes back after the job finished and was claimed again (claim 2).

    The database renews nothing for claim 1; the worker must not take that as claim 2's lease
    being lost (it once did: the second run's outcome was dropped and the job waited for rescue).
    """
    now = datetime.now(UTC)
    worker = app.create_worker(concurrency=2)
    first = ClaimedJob(id=42, handler="h", data=None, queue="default", attempt=1, max_attempts=3, timeout=None,
                       schedule=None, timezone=None, scheduled_at=now, claimed_at=now, token=1)
    second = dataclasses.replace(first, token=2)
    running = dataclasses.replace(first, id=43, token=7)  # still running under claim 7; its lease is gone
    worker.inflight.update({42: first, 43: running})
    release = asyncio.Event()
    for job in (42, 43):
        worker.tasks[job] = asyncio.create_task(release.wait())

    async def renew(db: Any, jobs: Any, lease: float) -> set[int]:
        assert sorted(jobs) == [(42, 1), (43, 7)]
        worker.inflight[42] = second  # claim 1 ended and claim 2 began while the renewal was in flight
        return set()

    monkeypatch.setattr(app.queries, "renew_leases", renew)
    try:
        await worker._renew_once()
        assert worker.inflight.get(42) is second
        assert not worker.tasks[42].cancelled()
        assert 43 not in worker.inflight  # a lease really lost still stops its job
        await asyncio.sleep(0)
        assert worker.tasks[43].cancelled()
    finally:
        release.set()
        await asyncio.gather(*worker.tasks.values(), return_exceptions=True)
