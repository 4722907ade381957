"""The App's settings, checked when it is built (no database: it connects only when opened).

Moved from the integration tests of each feature (data limit, enqueue, retention, PgBouncer), which
keep what needs a database.
"""

from __future__ import annotations

from typing import Any

import pytest

from aiojobs_pg import App, ValidationError

DEFAULT_LIMIT = 1_048_576


# --- max_data_bytes (tests/integration/test_data_limit.py) ---

def test_the_default_is_one_mebibyte_and_none_turns_it_off() -> None:
    assert App("postgresql://unused", schema="unused").max_data_bytes == DEFAULT_LIMIT
    assert App("postgresql://unused", schema="unused", max_data_bytes=None).max_data_bytes is None


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "1024"])
def test_max_data_bytes_is_validated(bad: Any) -> None:
    with pytest.raises(ValidationError) as info:
        App("postgresql://unused", schema="unused", max_data_bytes=bad)
    assert info.value.field == "max_data_bytes"


# --- default_max_attempts (tests/integration/test_enqueue.py) ---

def test_default_max_attempts_is_validated() -> None:
    for bad in (0, -1, True, "3"):
        with pytest.raises(ValidationError) as info:
            App("postgresql://unused", schema="unused", default_max_attempts=bad)  # type: ignore[arg-type]
        assert info.value.field == "default_max_attempts"


def test_default_max_attempts_above_enqueue_limit_is_rejected() -> None:
    with pytest.raises(ValidationError) as info:
        App("postgresql://unused", schema="unused", default_max_attempts=10_001)
    assert info.value.field == "default_max_attempts"


# --- keep_completed (tests/integration/test_retention.py) ---

def test_keep_completed_is_a_setting_of_the_app_and_its_workers() -> None:
    assert App("postgresql://unused", keep_completed=100).keep_completed == 100
    with pytest.raises(ValidationError):
        App("postgresql://unused", keep_completed=-1)


# --- PgBouncer (tests/integration/test_pgbouncer.py) ---

def test_bad_pgbouncer_settings_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError) as err:
        App("postgresql://x/y", listen_dsn="  ")
    assert err.value.field == "listen_dsn"
    with pytest.raises(ValidationError) as err:
        App("postgresql://x/y", pgbouncer="yes")  # type: ignore[arg-type]
    assert err.value.field == "pgbouncer"
    monkeypatch.setenv("AIOJOBS_PG_PGBOUNCER", "maybe")
    with pytest.raises(ValidationError) as err:
        App("postgresql://x/y")
    assert err.value.field == "AIOJOBS_PG_PGBOUNCER"


def test_pgbouncer_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert App("postgresql://x/y").pgbouncer is False
    monkeypatch.setenv("AIOJOBS_PG_PGBOUNCER", "true")
    monkeypatch.setenv("AIOJOBS_PG_LISTEN_DSN", "postgresql://direct/y")
    app = App("postgresql://bouncer/y")
    assert app.pgbouncer is True and app.listen_dsn == "postgresql://direct/y"
    assert App("postgresql://bouncer/y", pgbouncer=False, listen_dsn="postgresql://d/y").listen_dsn == "postgresql://d/y"
