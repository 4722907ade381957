"""``python -m aiojobs_pg serve MODULE:APP``: the API and dashboard under uvicorn.

This module imports neither Starlette nor uvicorn at import time, so the CLI can
define the command without the ``http`` extra and explain what is missing.
"""

from __future__ import annotations

import argparse
import socket
from typing import Any

from ..errors import ConfigurationError
from .apps import load_app, parse_queues
from .argtypes import bounded_int

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000


_port = bounded_int(0, 65535)
_concurrency = bounded_int(1, 10_000)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``serve`` command's arguments to ``parser``."""
    parser.add_argument("app", metavar="MODULE:APP", help="the App to serve, e.g. myproject.jobs:app")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only; "
                             "0.0.0.0 listens on every interface)")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"TCP port (default: {DEFAULT_PORT})")
    parser.add_argument("--with-worker", action="store_true",
                        help="also run a worker in this process (it drains when the server stops)")
    parser.add_argument("--concurrency", type=_concurrency, default=10, metavar="N",
                        help="with --with-worker: jobs run at once (default: 10)")
    parser.add_argument("--queues", default="default", metavar="Q1,Q2",
                        help="with --with-worker: queues to work on (default: default)")
    parser.add_argument("--root-path", default="", metavar="PATH",
                        help="path prefix under which a reverse proxy serves the API, e.g. /jobs-admin")
    parser.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                        help="another origin allowed to send changes (e.g. https://admin.example.com); repeatable")


#: what ``serve`` says when no token is set: shell advice, not the Python API's ``tokens=``
NO_TOKEN = ("serve needs a bearer token for the API and the dashboard's sign-in, in $AIOJOBS_PG_API_TOKEN "
            "(several: comma-separated). Set one and run again:\n"
            "  export AIOJOBS_PG_API_TOKEN=\"$(python -c 'import secrets; print(secrets.token_urlsafe(32))')\"")


def dashboard_url(host: str, port: int) -> str:
    """Where a browser on this machine finds the dashboard of a server bound to ``host:port``."""
    # A wildcard address is not one to browse to: this machine's loopback answers for it.
    shown = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/dashboard"


def serve_command(args: argparse.Namespace) -> int:
    """Serve the API and dashboard of ``args.app`` until SIGINT/SIGTERM; returns the exit code.

    The token comes from ``$AIOJOBS_PG_API_TOKEN``: without one nothing could be
    called, so the command refuses to start. Once the server listens, the dashboard's
    URL is printed on stdout.
    """
    try:
        import uvicorn

        from ..http.api import create_asgi_app
        from ..http.auth import load_tokens
    except ModuleNotFoundError as exc:
        raise ConfigurationError(f"serve needs the 'http' extra: pip install 'aiojobs_pg[http]' "
                                 f"({exc.name} is missing)") from None
    if not load_tokens(None):
        raise ConfigurationError(NO_TOKEN)
    queues = parse_queues(args.queues)
    app = load_app(args.app)
    app.retarget(dsn=getattr(args, "dsn", None), schema=getattr(args, "schema", None))
    asgi = create_asgi_app(app, with_worker=args.with_worker, concurrency=args.concurrency, queues=queues,
                           allowed_origins=args.allow_origin)
    options: dict[str, Any] = {"host": args.host, "port": args.port, "lifespan": "on", "root_path": args.root_path,
                               "server_header": False, "log_level": getattr(args, "log_level", None) or "info"}
    root_path: str = args.root_path

    class Server(uvicorn.Server):
        async def startup(self, sockets: list[socket.socket] | None = None) -> None:
            await super().startup(sockets=sockets)
            if self.started and self.servers and self.servers[0].sockets:
                port = self.servers[0].sockets[0].getsockname()[1]  # the one bound, should --port be 0
                behind = f" (through your proxy: {root_path.rstrip('/')}/dashboard)" if root_path else ""
                print(f"dashboard: {dashboard_url(args.host, port)}{behind}; sign in with the token in "
                      "$AIOJOBS_PG_API_TOKEN", flush=True)

    server = Server(uvicorn.Config(asgi, **options))
    server.run()
    return 0 if server.started else 1
