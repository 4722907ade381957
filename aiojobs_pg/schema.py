"""Migrator: numbered SQL files under ``sql/``, applied once each, under an advisory lock."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from .logs import get_logger
from .queries import Conn, validate_schema_name

log = get_logger("aiojobs_pg.schema")


_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered migration file."""

    version: int
    name: str
    sql: str


def migrations(schema: str) -> list[Migration]:
    """All migrations shipped with the package, in order, rendered for ``schema``."""
    validate_schema_name(schema)
    found = []
    for entry in resources.files("aiojobs_pg").joinpath("sql").iterdir():
        m = _FILE.match(entry.name)
        if m:
            sql = entry.read_text(encoding="utf-8").replace("{schema}", schema)
            found.append(Migration(int(m.group(1)), m.group(2), sql))
    return sorted(found, key=lambda mig: mig.version)


def _bootstrap_sql(schema: str) -> str:
    return f"""
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
);"""


def render_sql(schema: str) -> str:
    """The whole schema as one SQL script (for ``migrate --print-sql``)."""
    parts = [_bootstrap_sql(schema).strip()]
    for mig in migrations(schema):
        parts.append(f"-- migration {mig.version:04d}_{mig.name}\n{mig.sql.strip()}")
        parts.append(f"INSERT INTO {schema}.migrations (version, name) VALUES ({mig.version}, '{mig.name}');")
    return "\n\n".join(parts) + "\n"


async def pending_migrations(conn: Conn, schema: str) -> list[Migration]:
    """Migrations not yet applied to ``schema`` (all of them if it does not exist)."""
    exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", f"{schema}.migrations")
    applied: set[int] = set()
    if exists:
        applied = {r["version"] for r in await conn.fetch(f"SELECT version FROM {schema}.migrations")}
    return [m for m in migrations(schema) if m.version not in applied]


async def migrated_schemas(conn: Conn) -> list[str]:
    """The schemas of this database that hold aiojobs_pg's tables (visible to this role), by name."""
    rows = await conn.fetch(
        "SELECT table_schema FROM information_schema.tables WHERE table_name IN ('migrations', 'jobs', 'job_runs') "
        "GROUP BY table_schema HAVING count(DISTINCT table_name) = 3 ORDER BY table_schema")
    return [r["table_schema"] for r in rows]


async def migrate(conn: Conn, schema: str, *, up_to: int | None = None, xact_lock: bool = False) -> list[int]:
    """Apply pending migrations (those numbered up to ``up_to`` if given); safe when many processes start at once.

    Returns the versions applied by this call. A role without DDL rights can run
    this against an up-to-date schema: nothing is created then.

    ``xact_lock``: ``conn``'s session is not ours to keep (PgBouncer in transaction mode), so each
    migration takes the lock for its own transaction, in which it looks again at what is pending.
    """
    validate_schema_name(schema)

    async def pending() -> list[Migration]:
        return [m for m in await pending_migrations(conn, schema) if up_to is None or m.version <= up_to]

    if not await pending():
        return []
    if xact_lock:
        return await _migrate_in_transactions(conn, schema, pending)
    # Serialise concurrent migrators on a lock derived from the schema name.
    await conn.execute("SELECT pg_advisory_lock(hashtext($1))", f"aiojobs_pg:{schema}")
    try:
        await conn.execute(_bootstrap_sql(schema))
        applied = []
        for mig in await pending():
            async with conn.transaction():
                await conn.execute(mig.sql)
                await conn.execute(
                    f"INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2)", mig.version, mig.name
                )
            log.info("migration_applied", schema=schema, version=mig.version, name=mig.name)
            applied.append(mig.version)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock(hashtext($1))", f"aiojobs_pg:{schema}")


async def _migrate_in_transactions(conn: Conn, schema: str,
                                   pending: Callable[[], Awaitable[list[Migration]]]) -> list[int]:
    # The same lock as the session's in migrate(), so both kinds of migrator exclude each other.
    applied: list[int] = []
    while True:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"aiojobs_pg:{schema}")
            # An advisory lock does not make the backend read the catalog changes committed while it
            # waited (a relation lock does): without this, CREATE SCHEMA IF NOT EXISTS still saw no schema.
            await conn.execute("LOCK TABLE pg_catalog.pg_namespace IN ACCESS SHARE MODE")
            await conn.execute(_bootstrap_sql(schema))
            todo = await pending()
            if not todo:
                return applied
            mig = todo[0]
            await conn.execute(mig.sql)
            await conn.execute(f"INSERT INTO {schema}.migrations (version, name) VALUES ($1, $2)",
                               mig.version, mig.name)
        log.info("migration_applied", schema=schema, version=mig.version, name=mig.name)
        applied.append(mig.version)


async def drop_schema(conn: Conn, schema: str) -> None:
    """Drop ``schema`` with everything in it, if it exists (the test fixtures' cleanup)."""
    await conn.execute(f"DROP SCHEMA IF EXISTS {validate_schema_name(schema)} CASCADE")
