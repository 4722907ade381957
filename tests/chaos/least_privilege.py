"""Run the default suite as a database role without DDL rights (scenario 12, second half).

    python -m pytest -p tests.chaos.least_privilege

A pytest plugin (loaded with ``-p``; it changes nothing unless loaded). It starts a
private PostgreSQL and creates two roles:

- ``aiojobs_installer``: ``CREATE`` on the database; it installs (and drops) the
  per-test schemas;
- ``aiojobs_app``: ``LOGIN`` only. Default privileges of the installer give it
  ``USAGE`` on every schema, ``SELECT, INSERT, UPDATE, DELETE`` on every table
  and ``USAGE`` on every sequence the installer creates; nothing else.

``AIOJOBS_PG_TEST_DSN`` then points at ``aiojobs_app``: every App of the tests and
every process they start connects as that role. Two seams of the *test harness*
(never of the engine) go to the installer instead:

- ``aiojobs_pg.app.migrate``: an App migrates its schema as the installer first,
  then runs its own migration as ``aiojobs_app``, which must find nothing to do;
- ``asyncpg.connect`` as seen from the ``conftest.py`` modules: their fixtures drop
  the tests' schemas.

What still fails is what needs DDL from the role itself: tests that create
their own tables through the App's pool, or that migrate a fresh schema from a
subprocess (the CLI). docs/reliability.md lists them.
"""

from __future__ import annotations

import asyncio
import os
from types import SimpleNamespace
from typing import Any

import asyncpg
import pytest

from tests.chaos.harness import PrivatePG

INSTALLER = "aiojobs_installer"
APP_ROLE = "aiojobs_app"

_state = SimpleNamespace(server=None, installer_dsn="", app_dsn="", migrations_checked=0)


def _dsn_as(dsn: str, role: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{role}@{parts.netloc.rsplit('@', 1)[-1]}"))


async def _create_roles(superuser_dsn: str) -> None:
    conn = await asyncpg.connect(superuser_dsn)
    try:
        await conn.execute(f"""
            CREATE ROLE {INSTALLER} LOGIN;
            GRANT CREATE ON DATABASE postgres TO {INSTALLER};
            CREATE ROLE {APP_ROLE} LOGIN;
            ALTER DEFAULT PRIVILEGES FOR ROLE {INSTALLER} GRANT USAGE ON SCHEMAS TO {APP_ROLE};
            ALTER DEFAULT PRIVILEGES FOR ROLE {INSTALLER}
                GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE};
            ALTER DEFAULT PRIVILEGES FOR ROLE {INSTALLER} GRANT USAGE ON SEQUENCES TO {APP_ROLE};""")
    finally:
        await conn.close()


def pytest_configure(config: pytest.Config) -> None:
    server = PrivatePG()
    _state.server = server
    asyncio.run(_create_roles(server.dsn))
    _state.installer_dsn = _dsn_as(server.dsn, INSTALLER)
    _state.app_dsn = _dsn_as(server.dsn, APP_ROLE)
    os.environ["AIOJOBS_PG_TEST_DSN"] = _state.app_dsn
    os.environ["AIOJOBS_PG_TEST_OWNER_DSN"] = _state.installer_dsn

    import aiojobs_pg.app as app_module

    real_migrate = app_module.migrate  # type: ignore[attr-defined]

    async def migrate(conn: Any, schema: str) -> list[int]:
        if await conn.fetchval("SELECT current_user") != APP_ROLE:  # e.g. a test's own embedded server
            return await real_migrate(conn, schema)
        installer = await asyncpg.connect(_state.installer_dsn)
        try:
            await real_migrate(installer, schema)
        finally:
            await installer.close()
        applied = await real_migrate(conn, schema)  # as the app role: nothing left to do
        assert applied == [], f"the app role applied migrations {applied}"
        _state.migrations_checked += 1
        return applied

    setattr(app_module, "migrate", migrate)  # noqa: B010 - replaces the name app.py calls



class InstallerAsyncpg:
    """``asyncpg`` for the conftest fixtures, which drop the tests' schemas: they connect as the installer."""

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncpg, name)

    @staticmethod
    async def connect(dsn: str | None = None, **kwargs: Any) -> asyncpg.Connection:
        return await asyncpg.connect(_state.installer_dsn if dsn == _state.app_dsn else dsn, **kwargs)


def pytest_plugin_registered(plugin: Any) -> None:
    name = getattr(plugin, "__name__", "")
    if name.endswith("conftest") and getattr(plugin, "asyncpg", None) is asyncpg:
        plugin.asyncpg = InstallerAsyncpg()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line(
        f"least privilege: tests ran as role {APP_ROLE!r}; {_state.migrations_checked} App migrations by the "
        f"app role were no-ops")


def pytest_unconfigure(config: pytest.Config) -> None:
    if _state.server is not None:
        _state.server.cleanup()
