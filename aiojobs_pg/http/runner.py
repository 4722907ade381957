"""The worker an ASGI app runs in its own process (``POST /jobs/runner/start|stop``).

At most one worker at a time. It runs in a task group that the ASGI lifespan
opens, so it lives exactly as long as the server: shutting the server down
drains it (running jobs get ``drain_timeout`` to finish).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
from anyio.abc import TaskGroup

from ..app import App
from ..logs import get_logger
from ..worker import Worker
from .serialize import iso

log = get_logger("aiojobs_pg.http")

#: how long ``start`` waits for a new worker to be up before it answers
START_TIMEOUT = 15.0


class RunnerError(Exception):
    """The runner cannot do what was asked; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Runner:
    """Starts, stops and reports the worker attached to one ASGI app."""

    def __init__(self, app: App) -> None:
        self.app = app
        self.worker: Worker | None = None
        self.started_at: datetime | None = None
        self.stopping = False
        self.last_error: str | None = None
        self._tg: TaskGroup | None = None

    def attach(self, tg: TaskGroup | None) -> None:
        """Run workers in ``tg`` (the lifespan's task group); None detaches."""
        self._tg = tg

    @property
    def state(self) -> str:
        """``running``, ``stopping`` or ``stopped``."""
        if self.worker is None or self.worker.stopped.is_set():
            return "stopped"
        return "stopping" if self.stopping else "running"

    async def start(self, *, concurrency: int = 10, queues: Sequence[str] | None = None) -> Worker:
        """Start a worker and wait until it runs (or failed to start)."""
        if self._tg is None:
            raise RunnerError(503, "the runner needs the ASGI lifespan: serve the app with lifespan on "
                                   "(mounted in another app, give it api.lifespan: see docs/asgi.md)")
        # As every worker does when it starts (App.worker, run_worker): the App's @app.periodic
        # declarations get their rows, or a schedule declared in code would never run. Before the
        # state check, so that no await separates that check from taking the slot (an idempotent upsert).
        await self.app.sync_periodic()
        if self.state != "stopped":
            raise RunnerError(409, f"a worker is already {self.state} in this process")
        worker = self.app.create_worker(concurrency=concurrency, queues=queues)
        self.worker, self.stopping, self.last_error = worker, False, None
        self.started_at = datetime.now(UTC)
        self._tg.start_soon(self._run, worker)
        with anyio.move_on_after(START_TIMEOUT):
            async with anyio.create_task_group() as waiters:
                for event in (worker.started, worker.stopped):
                    waiters.start_soon(_set_then_cancel, event, waiters)
        if worker.stopped.is_set():
            raise RunnerError(503, f"the worker stopped at once: {self.last_error or 'unknown error'}")
        return worker

    async def _run(self, worker: Worker) -> None:
        try:
            await worker.run()
        except Exception as exc:  # a failed worker must not take the server down with it
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.exception("runner_worker_failed", worker_id=worker.id)

    def stop(self) -> Worker:
        """Ask the worker to drain and stop; returns at once (``state`` says when it is done)."""
        if self.worker is None or self.state != "running":
            raise RunnerError(409, f"no worker is running in this process (it is {self.state})")
        self.stopping = True
        self.worker.stop()
        return self.worker

    async def shutdown(self) -> None:
        """Drain the worker, if any, and wait for it (used when the server stops)."""
        worker = self.worker
        if worker is None or worker.stopped.is_set():
            return
        self.stopping = True
        worker.stop()
        with anyio.move_on_after(worker.settings.drain_timeout + 10):
            await worker.stopped.wait()
        if not worker.stopped.is_set():
            worker.stop(force=True)
            with anyio.move_on_after(worker.settings.force_exit_timeout + 5):
                await worker.stopped.wait()

    def local_json(self) -> list[dict[str, Any]]:
        """The worker of this process, if it has not stopped."""
        worker = self.worker
        if worker is None or self.state == "stopped":
            return []
        return [{
            "id": worker.id, "state": self.state, "concurrency": worker.settings.concurrency,
            "queues": list(worker.settings.queues), "inflight": len(worker.inflight),
            "listenerConnected": worker.notifier.connected, "startedAt": iso(self.started_at),
        }]

    def listener_ok(self) -> bool | None:
        """Whether the local worker's LISTEN connection is up (None without a running worker, or for a
        worker that polls without one: PgBouncer and no ``listen_dsn``)."""
        if self.worker is None or self.state != "running" or not self.worker.listening:
            return None
        return self.worker.notifier.connected


async def _set_then_cancel(event: anyio.Event, group: TaskGroup) -> None:
    await event.wait()
    group.cancel_scope.cancel()
