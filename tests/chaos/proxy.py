"""A TCP proxy that a test can cut and restore: the network link between a worker "host" and PostgreSQL.

It runs its own event loop in a thread, so a busy or blocked test loop never
stalls the link. Two ways to cut:

- ``blackhole`` (a real partition): nothing moves in either direction; existing
  connections stay open with their bytes held back, new connections are
  accepted but never reach the server. On restore the held bytes flow again,
  like TCP retransmissions after a partition heals.
- ``reset``: existing connections are aborted and new ones are refused (closed
  as soon as they are accepted).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Coroutine
from typing import Any


class CutProxy:
    """127.0.0.1:<port> → ``target``; :meth:`cut` and :meth:`restore` from any thread."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self.mode = "up"
        self.connections = 0
        self.bytes_forwarded = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chaos-proxy", daemon=True)
        self._up: asyncio.Event | None = None
        self._server: asyncio.base_events.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.closing = False

    # --- control (thread-safe) ---
    def start(self) -> CutProxy:
        self._thread.start()
        self._call(self._start())
        return self

    def cut(self, mode: str = "blackhole") -> None:
        assert mode in ("blackhole", "reset")
        self._call(self._cut(mode))

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._close(), timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _call(self, coro: Coroutine[Any, Any, Any], timeout: float = 10) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # --- inside the proxy's loop ---
    async def _start(self) -> None:
        self._up = asyncio.Event()
        self._up.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self, mode: str) -> None:
        assert self._up is not None
        self.mode = mode
        self._up.clear()
        if mode == "reset":
            for w in list(self._writers):
                _abort(w)

    async def _restore(self) -> None:
        assert self._up is not None
        self.mode = "up"
        self._up.set()

    async def _close(self) -> None:
        assert self._up is not None
        self.closing = True
        if self._server is not None:
            self._server.close()
        for w in list(self._writers):
            _abort(w)
        self._up.set()  # held connections wake up, find their sockets closed and end
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=2)
            for task in pending:
                task.cancel()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._up is not None
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self.connections += 1
        if self.mode == "reset":
            _abort(writer)
            return
        self._writers.add(writer)
        try:
            await self._up.wait()  # a blackholed connection never reaches the server
            if self.closing:
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
            except OSError:
                return
            self._writers.add(up_writer)
            try:
                await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))
            finally:
                self._writers.discard(up_writer)
                _abort(up_writer)
        finally:
            self._writers.discard(writer)
            _abort(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._up is not None
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                await self._up.wait()  # held back while the link is cut
                if writer.is_closing():
                    break
                writer.write(data)
                await writer.drain()
                self.bytes_forwarded += len(data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            _abort(writer)


def _abort(writer: asyncio.StreamWriter) -> None:
    transport = writer.transport
    if transport.is_closing():
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        # RST, not FIN: the peer sees the connection reset, as with a dropped route.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    transport.abort()
