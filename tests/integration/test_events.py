"""@app.on: lifecycle hooks in the worker's process, after the outcome was committed."""

from __future__ import annotations

import asyncio

import pytest

from aiojobs_pg import App, Cancel, ClaimedJob, JobContext, JobStatus, Retry, ValidationError
from tests.helpers import eventually


async def test_hooks_fire_once_per_event_after_the_outcome_is_committed(app: App) -> None:
    seen: list[tuple[str, int, int, str | None]] = []
    committed: list[bool] = []

    def recorder(event: str):  # type: ignore[no-untyped-def]
        async def hook(job: ClaimedJob, error: str | None) -> None:
            runs = await app.job_history(job.id)
            committed.append(any(r.attempt == job.attempt for r in runs))  # its run is in the database already
            seen.append((event, job.id, job.attempt, (error or "").strip().splitlines()[-1:][0] if error else None))
        return hook

    for event in ("completed", "failed", "cancelled", "retrying"):
        app.on(event)(recorder(event))

    @app.on("failed")
    def sync_hook_that_breaks(job: ClaimedJob, error: str | None) -> None:
        raise RuntimeError("a broken hook")  # logged; changes nothing

    @app.handler()
    async def work(data: str, ctx: JobContext) -> str:
        if data == "flaky" and ctx.attempt == 1:
            raise Retry(after=0)
        if data == "broken":
            raise ValueError("no good")
        if data == "stop":
            raise Cancel("not needed")
        return "ok"

    jobs = {d: await app.enqueue("work", d, max_attempts=2 if d == "flaky" else 1)
            for d in ("fine", "flaky", "broken", "stop")}
    await app.run_worker(burst=True, handle_signals=False)
    await eventually(lambda: len(seen) == 5)
    await asyncio.sleep(0.1)  # nothing more comes
    assert sorted(seen) == sorted([
        ("completed", jobs["fine"].id, 1, None),
        ("retrying", jobs["flaky"].id, 1, "Retry: retry requested"),
        ("completed", jobs["flaky"].id, 2, None),
        ("failed", jobs["broken"].id, 1, "ValueError: no good"),
        ("cancelled", jobs["stop"].id, 1, "Cancel: not needed"),
    ])
    assert all(committed)
    assert (await app.get_job(jobs["broken"].id)).status is JobStatus.FAILED  # the broken hook changed nothing


async def test_an_unknown_event_is_refused(app: App) -> None:
    with pytest.raises(ValidationError) as err:
        app.on("finished")
    assert err.value.field == "event" and "completed" in str(err.value)


async def test_a_worker_that_stops_lets_its_last_hooks_finish(app: App) -> None:
    finished: list[int] = []

    @app.handler()
    async def quick(data: None) -> None:
        return None

    @app.on("completed")
    async def slow_hook(job: ClaimedJob, error: str | None) -> None:
        await asyncio.sleep(0.3)  # the hook's own work, outlasting the worker's last flush
        finished.append(job.id)

    job = await app.enqueue("quick")
    await app.run_worker(burst=True, handle_signals=False)
    assert finished == [job.id]  # not dropped when the burst worker returned
