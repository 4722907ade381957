"""Who may call the HTTP API: bearer tokens, dashboard sessions, guards, and the cross-origin check.

Every request except ``GET /health`` (and ``GET /metrics`` when the API was created with
``public_metrics=True``) passes through :class:`Gate`:

1. a mutating request (``POST``, ``PUT``, ``PATCH``, ``DELETE``) from a foreign origin
   (``Sec-Fetch-Site: cross-site``, or an ``Origin`` that is not the server's own) is
   refused with 403, so a browser session cannot be ridden by another site;
2. the caller is authenticated by a bearer token (``Authorization: Bearer …``) or by
   the dashboard's signed session cookie; without either, 401;
3. a declared body larger than the limit is refused with 413;
4. each guard (an ``async def guard(request) -> bool``) may deny with 403.

The authenticated :class:`Principal` is in ``request.state.principal`` for guards and
handlers.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import ConfigurationError
from ..logs import get_logger

log = get_logger("aiojobs_pg.http")

#: environment variable holding the API token (several may be given, separated by commas)
ENV_TOKEN = "AIOJOBS_PG_API_TOKEN"
#: the dashboard's session cookie (HttpOnly, SameSite=Strict, signed with the token)
SESSION_COOKIE = "aiojobs_pg_session"
#: seconds a dashboard session lasts
SESSION_TTL = 12 * 3600
#: methods that change nothing; everything else is "mutating"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
#: paths answered without credentials
PUBLIC_PATHS = frozenset({"/health"})
#: paths that authenticate (or forget) a dashboard session; guards do not apply to them
SESSION_PATHS = frozenset({"/login", "/logout"})
MIN_TOKEN_LENGTH = 16

#: an async callable that sees the request and returns True to allow it, False to deny it (403);
#: it may also raise :class:`starlette.exceptions.HTTPException` to answer with another status
Guard = Callable[[Request], Awaitable[bool]]
#: tokens as accepted by :func:`load_tokens`
Tokens = Mapping[str, str] | Iterable[str] | str | None


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: ``name`` is the token's name; ``via`` is token, session or none."""

    name: str
    via: str


def principal(request: Request) -> Principal | None:
    """The caller of ``request`` once :class:`Gate` has let it through (None before)."""
    value = getattr(request.state, "principal", None)
    return value if isinstance(value, Principal) else None


def load_tokens(tokens: Tokens) -> dict[str, str]:
    """Tokens by name, from a mapping ``{name: token}``, a list, one string, or (None) the environment.

    Unnamed tokens are called ``token`` (one) or ``token1``, ``token2``, …
    """
    if tokens is None:
        tokens = [t.strip() for t in os.environ.get(ENV_TOKEN, "").split(",") if t.strip()]
    if isinstance(tokens, str):
        tokens = [tokens]
    if isinstance(tokens, Mapping):
        named = dict(tokens)
    else:
        listed = list(tokens)
        named = {("token" if len(listed) == 1 else f"token{i}"): t for i, t in enumerate(listed, 1)}
    for name, token in named.items():
        if not isinstance(name, str) or not name or not isinstance(token, str) or not token.strip():
            raise ConfigurationError("API tokens must be non-empty strings, named by non-empty strings")
        if token != token.strip() or any(c.isspace() or not c.isprintable() for c in token):
            raise ConfigurationError(f"API token {name!r} contains whitespace or control characters")
        if len(token) < MIN_TOKEN_LENGTH:
            log.warning("short_api_token", token_name=name, length=len(token), recommended=MIN_TOKEN_LENGTH)
    if len(set(named.values())) != len(named):
        raise ConfigurationError("two API token names share one token")
    return named


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Authenticator:
    """Checks bearer tokens and session cookies in constant time.

    A session cookie is ``name.expiry.signature``, signed with the named token:
    replacing or removing a token ends its sessions, on every process at once.
    """

    def __init__(self, tokens: Mapping[str, str], *, require_token: bool = True,
                 session_ttl: int = SESSION_TTL) -> None:
        self.tokens = {name: token.encode() for name, token in tokens.items()}
        self.require_token = require_token
        self.session_ttl = session_ttl

    def match_token(self, presented: str) -> str | None:
        """The name of the token equal to ``presented`` (every token is compared, to leak no timing)."""
        found = None
        candidate = presented.encode("utf-8", "surrogateescape")
        for name, token in self.tokens.items():
            if hmac.compare_digest(candidate, token):
                found = name
        return found

    def _sign(self, token: bytes, payload: str) -> str:
        return _b64(hmac.new(token, b"aiojobs_pg-session:" + payload.encode(), hashlib.sha256).digest())

    def issue_session(self, name: str, now: float | None = None) -> str:
        """A session cookie value for the token called ``name``."""
        expires = int(now if now is not None else time.time()) + self.session_ttl
        payload = f"{_b64(name.encode())}.{expires}"
        return f"{payload}.{self._sign(self.tokens[name], payload)}"

    def check_session(self, value: str, now: float | None = None) -> str | None:
        """The token name a session cookie was issued for, if it is genuine and not expired."""
        parts = value.split(".")
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        try:
            name = _unb64(parts[0]).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        token = self.tokens.get(name)
        if token is None or int(parts[1]) < (now if now is not None else time.time()):
            return None
        expected = self._sign(token, f"{parts[0]}.{parts[1]}")
        return name if hmac.compare_digest(expected.encode(), parts[2].encode("utf-8", "surrogateescape")) else None

    def authenticate(self, request: Request) -> Principal | None:
        """The caller, or None when the request carries no valid credentials."""
        header = request.headers.get("authorization")
        if header is not None:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer":
                return None
            name = self.match_token(value.strip())
            return None if name is None else Principal(name, "token")
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            name = self.check_session(cookie)
            if name is not None:
                return Principal(name, "session")
        if not self.require_token:
            return Principal("anonymous", "none")
        return None


def foreign_origin(request: Request, allowed_origins: Collection[str] = ()) -> str | None:
    """Why a mutating request looks cross-site (None when it does not).

    Browsers send ``Sec-Fetch-Site`` and ``Origin`` with every cross-origin
    ``fetch`` and form post; clients such as curl send neither and pass.
    """
    if request.headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "cross-site request (Sec-Fetch-Site: cross-site)"
    origin = request.headers.get("origin")
    if origin is None:
        return None
    own = f"{request.url.scheme}://{request.url.netloc}".lower()
    if origin.lower() == own or origin in allowed_origins:
        return None
    return f"origin {origin!r} is not this server's ({own})"


def route_path(scope: Scope) -> str:
    """The request path below the mount point (``root_path``)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root):]
    return path or "/"


def error_response(http_status: int, error: str, message: str, **extra: object) -> JSONResponse:
    """The JSON error body every failure of the API uses: ``{error, message, ...}``."""
    return JSONResponse({"error": error, "message": message, **extra}, status_code=http_status)


def require_admin(*admins: str) -> Guard:
    """A guard: every authenticated caller may read; only the named tokens may change anything."""
    allowed = frozenset(admins)

    async def guard(request: Request) -> bool:
        who = principal(request)
        return request.method in SAFE_METHODS or (who is not None and who.name in allowed)

    guard.__name__ = f"require_admin({', '.join(sorted(allowed))})"
    return guard


async def read_only(request: Request) -> bool:
    """A guard that allows only requests that change nothing (GET, HEAD, OPTIONS)."""
    return request.method in SAFE_METHODS


class Gate:
    """ASGI middleware applying the checks described in this module, in that order."""

    def __init__(self, app: ASGIApp, *, authenticator: Authenticator, guards: Sequence[Guard] = (),
                 allowed_origins: Collection[str] = (), max_body: int,
                 unauthenticated: Callable[[Request], Response],
                 public_paths: Collection[str] = PUBLIC_PATHS) -> None:
        self.app = app
        #: paths whose safe methods are answered without credentials
        self.public_paths = frozenset(public_paths)
        self.authenticator = authenticator
        self.guards = tuple(guards)
        self.allowed_origins = frozenset(allowed_origins)
        self.max_body = max_body
        self.unauthenticated = unauthenticated

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        response = await self.check(Request(scope, receive), route_path(scope))
        if response is None:
            await self.app(scope, receive, send)
        else:
            await response(scope, receive, send)

    async def check(self, request: Request, path: str) -> Response | None:
        """The response that refuses ``request``, or None to let it through."""
        if path in self.public_paths and request.method in SAFE_METHODS:
            return None
        if request.method not in SAFE_METHODS:
            reason = foreign_origin(request, self.allowed_origins)
            if reason is not None:
                log.warning("cross_origin_refused", path=path, reason=reason)
                return error_response(403, "forbidden", f"refused: {reason}")
        if path == "/login" and request.method == "POST":
            return None  # the login form authenticates itself
        who = self.authenticator.authenticate(request)
        if who is None:
            return self.unauthenticated(request)
        request.state.principal = who
        length = request.headers.get("content-length", "")
        if length.isdigit() and int(length) > self.max_body:
            return error_response(413, "too_large", f"request body over {self.max_body} bytes")
        if path in SESSION_PATHS:
            return None
        for guard in self.guards:
            try:
                allowed = await guard(request)
            except HTTPException as exc:
                return error_response(exc.status_code, "forbidden" if exc.status_code == 403 else "denied",
                                      str(exc.detail))
            if not allowed:
                return error_response(403, "forbidden", "not allowed")
        return None
