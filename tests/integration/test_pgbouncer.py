"""Workers, enqueues, migrations and maintenance through a real PgBouncer in transaction mode.

Each test module run starts Debian's ``pgbouncer`` (``apt-get install pgbouncer``) on a free port in
front of the test database, and ends it by its PID; the tests are skipped when the binary is missing.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg
import pytest

from aiojobs_pg import App
from tests.helpers import eventually, register_slow

PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def bouncer_dsn(pg_dsn: str) -> Iterator[str]:
    """A DSN to the test database through a PgBouncer of this module's own, ``pool_mode = transaction``."""
    if PGBOUNCER is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer)")
    url = urlsplit(pg_dsn)
    if url.scheme not in ("postgres", "postgresql") or not url.hostname:
        pytest.skip(f"the test DSN is not a host URL PgBouncer can point at: {pg_dsn}")
    user = unquote(url.username or "postgres")
    password = unquote(url.password or "")
    dbname = url.path.lstrip("/") or user
    port = _free_port()
    tmp = Path(tempfile.mkdtemp(prefix="aiojobs_pg_pgbouncer_"))
    # PgBouncer refuses to run as root: it then runs as nobody, who must read its files.
    tmp.chmod(0o755)
    server = f"host={url.hostname} port={url.port or 5432} dbname={dbname} user={user}"
    (tmp / "pgbouncer.ini").write_text(f"""[databases]
{dbname} = {server}{f" password={password}" if password else ""}
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = trust
auth_file = {tmp / "users.txt"}
pool_mode = transaction
max_client_conn = 500
default_pool_size = 20
""")
    (tmp / "users.txt").write_text(f'"{user}" ""\n')
    for f in tmp.iterdir():
        f.chmod(0o644)
    as_user = ["-u", "nobody"] if os.geteuid() == 0 else []
    log = (tmp / "pgbouncer.log").open("wb")
    proc = subprocess.Popen([PGBOUNCER, *as_user, str(tmp / "pgbouncer.ini")], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while not _accepts(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"pgbouncer did not start: {(tmp / 'pgbouncer.log').read_text()}")
            time.sleep(0.05)
        yield f"postgresql://{user}@127.0.0.1:{port}/{dbname}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
async def bounced(bouncer_dsn: str, own_schema: str) -> AsyncIterator[str]:
    """The schema of one test, to be used through the bouncer; dropped afterwards (by ``own_schema``)."""
    yield own_schema


def _app(dsn: str, schema: str, **settings: object) -> App:
    base: dict[str, object] = {"lease": 3, "poll_interval": 0.2, "maintenance_interval": 0.3, "drain_timeout": 5}
    return App(dsn, schema=schema, pgbouncer=True, **{**base, **settings})  # type: ignore[arg-type]


async def _advisory_locks(pg_dsn: str, key: str) -> int:
    """Advisory locks held on ``key`` (a lock left behind on a pooled server connection would show here)."""
    conn = await asyncpg.connect(pg_dsn)
    try:
        return int(await conn.fetchval(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1 "
            "AND (classid::bigint << 32 | objid::bigint) = hashtext($1)::bigint", key))
    finally:
        await conn.close()


async def test_worker_through_pgbouncer_with_listen_dsn_picks_up_at_once(
        bouncer_dsn: str, pg_dsn: str, bounced: str) -> None:
    # A poll interval far longer than the test: a pickup within it can only come from a notification.
    app = _app(bouncer_dsn, bounced, poll_interval=60, listen_dsn=pg_dsn)
    done: list[int] = []

    @app.handler()
    async def work(n: int) -> int:
        done.append(n)
        return n * 2

    async with app:  # migrates through the bouncer
        await app.enqueue_many([{"handler": "work", "data": i} for i in range(100)])
        async with app.worker(concurrency=10) as worker:
            assert worker.listening
            await eventually(lambda: worker.notifier.connected, message="listener not connected")
            await eventually(lambda: len(done) == 100, message=f"drained {len(done)} of 100")
            started = time.monotonic()
            job = await app.enqueue("work", 21)
            assert await app.wait(job.id, timeout=5) == 42
            assert time.monotonic() - started < 5  # not the 60 s poll
        assert sorted(done) == sorted([*range(100), 21])


async def test_worker_through_pgbouncer_without_listen_dsn_polls(bouncer_dsn: str, bounced: str) -> None:
    app = _app(bouncer_dsn, bounced, poll_interval=0.2)
    done: list[int] = []

    @app.handler()
    async def work(n: int) -> int:
        done.append(n)
        return n + 1

    async with app, app.worker(concurrency=5) as worker:
        assert not worker.listening and not worker.notifier.connected
        jobs = [await app.enqueue("work", i) for i in range(30)]
        await eventually(lambda: len(done) == 30, message=f"drained {len(done)} of 30")
        # App.wait without a listener reads the job every poll_interval
        assert await app.wait(jobs[-1].id, timeout=5) == 30
        late = await app.enqueue("work", 99)
        assert await app.wait(late.id, timeout=5) == 100


async def test_cancel_reaches_a_poll_only_worker_through_its_lease_renewal(bouncer_dsn: str, bounced: str) -> None:
    app = _app(bouncer_dsn, bounced, lease=1.5)
    started, stopped = register_slow(app)

    async with app, app.worker() as worker:
        assert not worker.listening
        job = await app.enqueue("slow")
        await asyncio.wait_for(started.wait(), 5)
        await app.cancel(job.id)
        await asyncio.wait_for(stopped.wait(), 5)  # within a renewal (lease/3), with no notification
        await eventually(lambda: job.id not in worker.inflight)
        assert (await app.get_job(job.id)).status.value == "cancelled"


async def test_migrations_through_pgbouncer_at_once_leave_no_lock(
        bouncer_dsn: str, pg_dsn: str, bounced: str) -> None:
    apps = [_app(bouncer_dsn, bounced, auto_migrate=False) for _ in range(4)]
    for a in apps:
        await a.open()
    try:
        applied = await asyncio.gather(*(a.migrate() for a in apps))
    finally:
        for a in apps:
            await a.close()
    versions = sorted(v for one in applied for v in one)
    assert versions and versions == sorted(set(versions)), "a migration was applied twice"
    assert await _advisory_locks(pg_dsn, f"aiojobs_pg:{bounced}") == 0


async def test_maintenance_through_pgbouncer_prunes_and_rescues(
        bouncer_dsn: str, pg_dsn: str, bounced: str) -> None:
    app = _app(bouncer_dsn, bounced, history_retention=1)
    done: list[int] = []

    @app.handler()
    async def work(n: int) -> None:
        done.append(n)

    async with app:
        await app.enqueue_many([{"handler": "work", "data": i} for i in range(20)])
        # a job whose worker vanished: running, its lease expired
        lost = await app.enqueue("work", -1, queue="elsewhere")
        await app.pool.execute(f"UPDATE {bounced}.jobs SET status = 'running', attempts = 1, claims = claims + 1, "
                               "worker_id = 'gone', lease_expires_at = now() - interval '1 minute' WHERE id = $1",
                               lost.id)
        # two workers, so that two pruners meet at the lock
        async with app.worker() as one, app.worker() as two:
            await eventually(lambda: len(done) == 20)

            async def history() -> int:
                return int(await app.pool.fetchval(f"SELECT count(*) FROM {bounced}.job_runs"))

            await eventually(lambda: one.maintenance.rescued + two.maintenance.rescued == 1, message="not rescued")
            await eventually(lambda: one.maintenance.pruned.runs + two.maintenance.pruned.runs >= 20, timeout=15,
                             message="history not pruned")
            # only the rescued job's "worker lost" run may be left (it may be younger than a second)
            assert await history() <= 1
        assert (await app.get_job(lost.id)).status.value == "pending"
    assert await _advisory_locks(pg_dsn, f"aiojobs_pg:prune:{bounced}") == 0
