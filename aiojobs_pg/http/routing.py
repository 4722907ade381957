"""One Starlette route per path, dispatching by method, so a 405 lists every method of the path.

Starlette answers a method a route does not serve with 405 and the ``Allow`` of
that one route: with one route per method, ``OPTIONS /jobs`` said ``Allow: GET,
HEAD`` although ``POST /jobs`` is served too. RFC 9110 (section 15.5.6) wants
every method the target resource supports, which :class:`Resource` knows.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection, Mapping

from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Route
from starlette.types import Receive, Scope, Send

Endpoint = Callable[[Request], Awaitable[Response]]


class AnyText(Convertor[str]):
    """``{name:any}``: any text at all, ``/`` and line breaks included (Starlette's ``path`` stops at a
    line break), so that every queue name the core accepts has its URL (``/queues/{queue:any}/pause``)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any", AnyText())


class Resource(Route):
    """The handlers of one path, by method (``get=…, post=…``); HEAD is served by GET's handler.

    ``reserved`` maps a path parameter to values it never takes: ``/jobs/runner``
    is the runner's path, so ``PUT /jobs/runner`` is a 405 there rather than a
    match of ``/jobs/{job_id}`` looking for a job called "runner".
    """

    def __init__(self, path: str, *, name: str, reserved: Mapping[str, Collection[str]] | None = None,
                 **handlers: Endpoint) -> None:
        self.handlers = {method.upper(): handler for method, handler in handlers.items()}
        if "GET" in self.handlers:
            self.handlers.setdefault("HEAD", self.handlers["GET"])
        self.reserved = {param: frozenset(values) for param, values in (reserved or {}).items()}
        super().__init__(path, self._dispatch, methods=list(self.handlers), name=name)
        # A fixed order (Route keeps a set): GET, HEAD, POST, PUT, PATCH, DELETE, then any other.
        order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
        self.allow = ", ".join(sorted(self.handlers, key=lambda m: (order.index(m) if m in order else 99, m)))

    async def _dispatch(self, request: Request) -> Response:
        return await self.handlers[request.method](request)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Starlette's match, but none when a path parameter has a reserved value."""
        match, child = super().matches(scope)
        if match is not Match.NONE and any(child["path_params"].get(param) in values
                                           for param, values in self.reserved.items()):
            return Match.NONE, {}
        return match, child

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve the request, or refuse its method with 405 and every method of the path in ``Allow``."""
        if scope["method"] not in self.handlers:
            raise HTTPException(405, f"{scope['method']} is not allowed here; allowed: {self.allow}",
                                headers={"Allow": self.allow})
        await self.app(scope, receive, send)
