"""The admin console: static files served by the hub at /console/, under a strict CSP.

The pages are plain JavaScript modules and CSS (static/, no build step, nothing from a
CDN). In the browser they call the hub's own REST API with the admin token in an
Authorization header: there is no cookie, so a cross-site request carries no credential
(no CSRF), and every value from the API is put in the page with textContent, never as
HTML. The Content-Security-Policy below lets only the hub's own scripts and styles run,
so an injected inline script would not run even if a page had such a bug.

The files are read once at start-up into memory: the set served is exactly the set
shipped, and no request path ever reaches the file system.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from aiohttp import web

STATIC = Path(__file__).with_name("static")
PREFIX = "/console/"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    # Revalidated on every load: an upgraded hub's console is picked up at once.
    "Cache-Control": "no-cache",
    "Cross-Origin-Opener-Policy": "same-origin",
}
_TYPES = {".js": "text/javascript", ".css": "text/css", ".html": "text/html", ".svg": "image/svg+xml"}


def _content_type(path: Path) -> str:
    return _TYPES.get(path.suffix) or mimetypes.guess_type(path.name)[0] or "application/octet-stream"


def load_files(root: Path = STATIC) -> dict[str, tuple[bytes, str]]:
    """Relative path ("js/app.js") -> (body, content type), for every file under root."""
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), _content_type(path))
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def routes(root: Path = STATIC) -> list[web.RouteDef]:
    files = load_files(root)
    if "index.html" not in files:
        raise RuntimeError(f"the console's index.html is missing from {root}")

    def respond(name: str) -> web.Response:
        body, content_type = files[name]
        charset = "utf-8" if content_type.startswith("text/") else None
        return web.Response(body=body, content_type=content_type, charset=charset, headers=SECURITY_HEADERS)

    async def index(_: web.Request) -> web.Response:
        return respond("index.html")

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in files:
            raise web.HTTPNotFound()
        return respond(name)

    async def to_index(_: web.Request) -> web.Response:
        raise web.HTTPPermanentRedirect(PREFIX)

    return [
        web.get("/console", to_index),
        web.get(PREFIX, index),
        web.get(PREFIX + "{name:.+}", asset),
    ]
