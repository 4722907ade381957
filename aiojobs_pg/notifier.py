"""One LISTEN connection per worker; reconnects by itself.

Notifications are only a hint that work is waiting: the producer also polls, so
a lost notification (a dead listener, a restart) costs latency, never a job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
import asyncpg

from .logs import get_logger

log = get_logger("aiojobs_pg.notifier")


class Notifier:
    """Listens on some channels and calls ``channels[channel](payload)`` for each notification.

    ``on_reconnect`` is called after every (re)connection, because anything sent
    while the listener was away is lost. ``connected`` is set while listening.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]],
                 channels: Mapping[str, Callable[[str], None]], *, on_reconnect: Callable[[], None],
                 health_interval: float = 5.0, health_timeout: float = 5.0,
                 max_backoff: float = 5.0) -> None:
        self.connect = connect
        self.channels = dict(channels)
        self.on_reconnect = on_reconnect
        self.health_interval = health_interval
        self.health_timeout = health_timeout
        self.max_backoff = max_backoff
        self.connected = False
        self.reconnects = 0
        #: server process id of the listening connection (for operators and fault tests)
        self.backend_pid: int | None = None

    def _listener(self, _conn: Any, _pid: int, channel: str, payload: object) -> None:
        self.channels[channel](str(payload))

    async def run(self) -> None:
        """Listen forever (until cancelled), reconnecting with capped exponential backoff."""
        backoff = 0.1
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await self.connect()
                lost = anyio.Event()
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in self.channels:
                    await conn.add_listener(channel, self._listener)
                self.connected = True
                self.backend_pid = conn.get_server_pid()
                backoff = 0.1
                log.debug("listener_connected", channels=list(self.channels))
                self.on_reconnect()
                # asyncpg reports a closed socket through the termination listener; a
                # silently dead network only shows up when a query times out.
                while not lost.is_set():
                    with anyio.move_on_after(self.health_interval):
                        await lost.wait()
                    if not lost.is_set():
                        await conn.fetchval("SELECT 1", timeout=self.health_timeout)
                raise ConnectionError("listener connection closed")
            except Exception as exc:  # whatever broke the listener: reconnect, never fatal
                log.warning("listener_lost", error=repr(exc), retry_in=backoff)
            finally:
                self.connected = False
                if conn is not None and not conn.is_closed():
                    conn.terminate()
            self.reconnects += 1
            await anyio.sleep(backoff)
            backoff = min(self.max_backoff, backoff * 2)
