"""Helpers for the ingestion tests: PDFs written by hand, a real website on loopback, a hosts file.

Nothing here stands in for the code under test: the PDFs are valid PDF files (pypdf reads them
as it would any other), the site is a real aiohttp server on 127.0.0.1, and `HostsResolver` is
a resolver in the sense of aiohttp's AbstractResolver that answers from a table, as /etc/hosts
does, so that tests can give a name the answers a hostile DNS server would.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult

from chatbot.fetch import FetchPolicy, parse_allow_list


def loopback_policy(**overrides: object) -> FetchPolicy:
    """A fetch policy that lets tests reach servers on loopback (and only that, beyond the rules)."""
    settings: dict[str, object] = {"allow_networks": parse_allow_list("127.0.0.0/8, ::1/128")}
    settings.update(overrides)
    return FetchPolicy(**settings)  # type: ignore[arg-type]


# --- PDFs -------------------------------------------------------------------------------------


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: list[str], *, title: str | None = None, damaged: frozenset[int] = frozenset()) -> bytes:
    """A valid PDF 1.4 whose pages show the given ASCII text (lines split on \\n) in Helvetica.

    The 1-based pages in `damaged` get a content stream that claims Flate compression but is not
    compressed: a well-formed file with one unreadable page.
    """
    count = len(pages)
    objects: dict[int, bytes] = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: (
            "<< /Type /Pages /Kids ["
            + " ".join(f"{4 + 2 * i} 0 R" for i in range(count))
            + f"] /Count {count} >>"
        ).encode(),
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    }
    for index, text in enumerate(pages):
        page_id = 4 + 2 * index
        shown = " ".join(f"{_pdf_string(line)} Tj T*" for line in text.split("\n")) if text else ""
        stream = f"BT /F1 11 Tf 14 TL 72 740 Td {shown} ET".encode()
        objects[page_id] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {page_id + 1} 0 R >>"
        ).encode()
        flate = b" /Filter /FlateDecode" if index + 1 in damaged else b""
        objects[page_id + 1] = b"<< /Length %d%s >>\nstream\n%s\nendstream" % (len(stream), flate, stream)
    info_id = 4 + 2 * count
    objects[info_id] = f"<< /Title {_pdf_string(title)} >>".encode() if title else b"<< >>"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (info_id + 1)
    for number in range(1, info_id + 1):
        out += b"%010d 00000 n \n" % offsets[number]
    out += b"trailer\n<< /Size %d /Root 1 0 R /Info %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        info_id + 1,
        info_id,
        xref,
    )
    return bytes(out)


# --- a website on loopback --------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(slots=True)
class Page:
    body: bytes | str
    content_type: str = "text/html"
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering, to see concurrency


def html_page(title: str, *paragraphs: str, links: tuple[str, ...] = (), head: str = "") -> str:
    """A page with a nav bar and a footer around its main text, as real sites have."""
    nav = " ".join(f'<a href="{href}">{href}</a>' for href in links)
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    return (
        f"<!doctype html><html><head><title>{title}</title>{head}</head><body>"
        f"<nav>{nav}</nav><main><article><h1>{title}</h1>{body}</article></main>"
        "<footer>Copyright 2026 Example Ltd. All rights reserved.</footer></body></html>"
    )


class LoopbackSite:
    """A real HTTP server on 127.0.0.1 serving a table of pages, recording what was asked."""

    def __init__(self, pages: Mapping[str, Page | Handler]) -> None:
        self.pages: dict[str, Page | Handler] = dict(pages)  # tests may add pages once the port is known
        self.requests: list[str] = []  # paths (with query) in arrival order
        self.user_agents: set[str] = set()
        self.hosts: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._runner: web.AppRunner | None = None
        self.port = 0

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request.path_qs)
        self.user_agents.add(request.headers.get("User-Agent", ""))
        self.hosts.append(request.headers.get("Host", ""))
        entry = self.pages.get(request.path_qs) or self.pages.get(request.path)
        if entry is None:
            return web.Response(status=404, text="not found")
        if not isinstance(entry, Page):
            return await entry(request)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if entry.delay:
                await asyncio.sleep(entry.delay)
            body = entry.body.encode() if isinstance(entry.body, str) else entry.body
            headers = {"Content-Type": entry.content_type, **entry.headers}
            return web.Response(status=entry.status, body=body, headers=headers)
        finally:
            self.in_flight -= 1

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


# --- a hosts table ----------------------------------------------------------------------------


class HostsResolver(AbstractResolver):
    """Answers names from a table; a name with several answer lists gives them in turn."""

    def __init__(self, table: dict[str, list[list[str]]]) -> None:
        self.table = table
        self.calls: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = self.table.get(host)
        turn = self.calls.count(host)
        self.calls.append(host)
        if not answers:
            raise OSError(f"no such host {host!r}")
        addresses = answers[min(turn, len(answers) - 1)]
        return [
            {
                "hostname": host,
                "host": address,
                "port": port,
                "family": socket.AF_INET6 if ":" in address else socket.AF_INET,
                "proto": 0,
                "flags": socket.AI_NUMERICHOST,
            }
            for address in addresses
        ]

    async def close(self) -> None:
        return None
