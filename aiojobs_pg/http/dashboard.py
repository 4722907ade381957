"""The dashboard's pages: the single-page app, its static files, and the login form.

The static files ship inside the package (no build step, nothing fetched at
install time). Every HTML response carries a strict Content-Security-Policy: the
page runs only its own script, and that script writes job data with
``textContent``, so a ``<script>`` in a job's data is shown as text.
"""

from __future__ import annotations

import html
import secrets
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

_STATIC_TYPES = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}

_PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
             "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")

_COMMON_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # not no-referrer: with it, browsers send "Origin: null" on same-origin posts, which the
    # cross-origin check must refuse
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-cache",
}


def _read(name: str) -> bytes:
    return resources.files(__package__ or "aiojobs_pg.http").joinpath("static", name).read_bytes()


class Dashboard:
    """Serves the dashboard; the files are read once, on first use."""

    def __init__(self) -> None:
        self._files: dict[str, bytes] = {}

    def _file(self, name: str) -> bytes:
        if name not in self._files:
            self._files[name] = _read(name)
        return self._files[name]

    async def page(self, request: Request) -> Response:
        """``GET /dashboard``: the single-page app."""
        return Response(self._file("index.html"), media_type="text/html; charset=utf-8",
                        headers={**_COMMON_HEADERS, "Content-Security-Policy": _PAGE_CSP})

    async def static(self, request: Request) -> Response:
        """``GET /static/{name}``: the page's script and style sheet."""
        name = request.path_params["name"]
        media_type = _STATIC_TYPES.get(name)
        if media_type is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(self._file(name), media_type=media_type, headers=_COMMON_HEADERS)


def base_path(request: Request) -> str:
    """The path the API is mounted at ('' at the root)."""
    root: str = request.scope.get("root_path", "")
    return root.rstrip("/")


def login_page(request: Request, *, error: str | None = None, status: int = 401) -> HTMLResponse:
    """The token form shown to a browser that has no session (401 until a valid token is posted)."""
    nonce = secrets.token_urlsafe(16)
    action = html.escape(f"{base_path(request)}/login", quote=True)
    message = f'<p class="error" role="alert">{html.escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>aiojobs_pg · sign in</title><link rel="icon" href="data:,">
<style nonce="{nonce}">
body{{font:15px/1.4 system-ui,sans-serif;background:#f4f5f7;color:#1d2330;display:grid;place-items:center;
min-height:100vh;margin:0}}
form{{background:#fff;padding:2rem;border-radius:8px;box-shadow:0 1px 4px #0002;width:min(24rem,90vw)}}
h1{{font-size:1.2rem;margin:0 0 1rem}} input{{width:100%;box-sizing:border-box;padding:.5rem;margin:.3rem 0 1rem;
font:inherit}} button{{padding:.5rem 1rem;font:inherit;background:#2b59c3;color:#fff;border:0;border-radius:4px}}
.error{{color:#b3261e}} p.hint{{color:#5b6475;font-size:.85rem}}
</style></head>
<body><form method="post" action="{action}">
<h1>aiojobs_pg dashboard</h1>{message}
<label for="token">API token</label>
<input id="token" name="token" type="password" autocomplete="current-password" required autofocus>
<button type="submit">Sign in</button>
<p class="hint">The token is set with AIOJOBS_PG_API_TOKEN (or tokens= in code).</p>
</form></body></html>"""
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; img-src data:; form-action 'self'; frame-ancestors 'none'; "
           "base-uri 'none'")
    return HTMLResponse(body, status_code=status, headers={
        **_COMMON_HEADERS, "Cache-Control": "no-store", "Content-Security-Policy": csp,
        "WWW-Authenticate": 'Bearer realm="aiojobs_pg"'})
