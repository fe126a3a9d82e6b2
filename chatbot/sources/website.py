"""A website: pages found by its sitemaps (or by following its links), main text by trafilatura.

Every request goes through the SafeFetcher (so a site on a private address is refused unless
allowed). The crawl:

- reads robots.txt first and obeys it for the fetcher's user agent (RFC 9309: a 4xx means no
  rules; a 5xx or no answer means the whole site is off limits, so nothing is crawled), and its
  Crawl-delay, up to `max_crawl_delay`, by fetching one page at a time;
- finds pages in the sitemaps that robots.txt names and in /sitemap.xml (sitemap indexes, gzip
  and text sitemaps too, at most `max_sitemaps` files); without any, it starts at the start URL
  and follows links (when `follow_links`), honouring `<meta name="robots">` noindex/nofollow;
- stays inside the start URL's scheme, host, port and folder (a start of https://x.org/docs/
  crawls /docs/... only), also after redirects;
- fetches at most `max_pages` pages, `concurrency` at a time, each at most `max_page_bytes`;
- turns each HTML page into Markdown with trafilatura (headings kept, navigation and footers
  left out; its title kept), and a PDF linked from the site into its pages.

A page that fails is an ItemError naming its URL; the crawl goes on. Documents come back in the
order their pages were found, whatever order they were fetched in.
"""

from __future__ import annotations

import asyncio
import mimetypes
import posixpath
import urllib.robotparser
from dataclasses import dataclass, field

from yarl import URL

from chatbot.fetch import FetchError, FetchRefused, FetchResult, SafeFetcher, check_url, redact
from chatbot.sources.document import Document, ItemError, LoadResult, SourceError, content_hash
from chatbot.sources.pdf import pdf_documents
from chatbot.sources.sitemap import parse_sitemap

_HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
_PDF_TYPES = frozenset({"application/pdf", "application/x-pdf"})
_PAGE_ACCEPT = "text/html,application/xhtml+xml;q=0.9,application/pdf;q=0.8,*/*;q=0.1"
_ROBOTS_MAX_BYTES = 512 * 1024  # RFC 9309 asks crawlers to read at least 500 KiB
# Links whose suffix names one of these are not pages: skipped without a request.
_NOT_PAGE_KINDS = ("image/", "audio/", "video/", "font/")
_NOT_PAGE_TYPES = frozenset(
    {"text/css", "text/javascript", "application/javascript", "application/json", "application/zip"}
    | {"application/gzip", "application/x-tar", "application/octet-stream", "application/x-msdownload"}
)


def _not_a_page(url: URL) -> bool:
    kind = mimetypes.guess_type(url.path)[0] or ""
    return kind.startswith(_NOT_PAGE_KINDS) or kind in _NOT_PAGE_TYPES


@dataclass(slots=True, frozen=True)
class CrawlLimits:
    max_pages: int = 500
    max_page_bytes: int = 5 * 1024 * 1024
    max_sitemaps: int = 50
    max_sitemap_bytes: int = 20 * 1024 * 1024
    concurrency: int = 4
    follow_links: bool = True  # used only when no sitemap lists a page
    max_crawl_delay: float = 10.0  # a longer Crawl-delay in robots.txt is cut to this

    def __post_init__(self) -> None:
        if self.max_pages < 1 or self.concurrency < 1 or self.max_sitemaps < 0:
            raise ValueError("crawl max_pages and concurrency must be at least 1, max_sitemaps at least 0")


@dataclass(slots=True, frozen=True)
class _Scope:
    """The part of the web a crawl may visit: the start's origin and folder."""

    scheme: str
    host: str
    port: int | None
    folder: str  # ends with "/"

    @classmethod
    def of(cls, start: URL) -> _Scope:
        path = start.path or "/"
        folder = path if path.endswith("/") else posixpath.dirname(path).rstrip("/") + "/"
        return cls(start.scheme, (start.host or "").lower(), start.port, folder)

    def contains(self, url: URL) -> bool:
        return (
            url.scheme == self.scheme
            and (url.host or "").lower() == self.host
            and url.port == self.port
            and (url.path or "/").startswith(self.folder)
        )


def _normalize(url: URL) -> URL:
    """The URL a page is known by: no fragment, an empty path as "/"."""
    url = url.with_fragment(None)
    return url.with_path("/") if not url.raw_path else url


@dataclass(slots=True)
class _Page:
    text: str
    title: str
    links: list[str]
    noindex: bool
    nofollow: bool


def page_text(body: bytes, url: str, *, want_links: bool) -> _Page:
    """The main text of an HTML page as Markdown, its title, and its links (when asked for)."""
    import lxml.html
    import trafilatura

    try:
        tree = lxml.html.document_fromstring(body)
    except Exception as exc:  # lxml's ParserError for empty or hopeless documents
        raise SourceError(url, f"not parsable HTML ({exc})") from None
    directives = {
        token.strip().lower()
        for meta in tree.iter("meta")
        if (meta.get("name") or "").strip().lower() == "robots"
        for token in (meta.get("content") or "").split(",")
    }
    noindex = bool(directives & {"noindex", "none"})
    nofollow = bool(directives & {"nofollow", "none"})
    links = [href for a in tree.iter("a") if (href := a.get("href"))] if want_links and not nofollow else []
    text = (
        trafilatura.extract(
            body,
            url=url,
            output_format="markdown",
            include_formatting=True,
            include_comments=False,
            include_tables=True,
            with_metadata=False,
        )
        or ""
    )
    if not text.strip():
        # trafilatura keeps no main text on a very short page; its plain conversion still reads it.
        text = trafilatura.html2txt(body)
    title = ""
    metadata = trafilatura.extract_metadata(tree, default_url=url)
    if metadata is not None and metadata.title:
        title = metadata.title
    if not title:
        found = tree.findtext(".//title")
        title = (found or "").strip()
    return _Page(text.strip(), title or url, links, noindex, nofollow)


@dataclass(slots=True)
class _Crawl:
    source_id: str
    fetcher: SafeFetcher
    limits: CrawlLimits
    scope: _Scope
    robots: urllib.robotparser.RobotFileParser
    follow_links: bool
    delay: float
    queue: asyncio.Queue[tuple[int, URL]] = field(default_factory=asyncio.Queue)
    seen: set[URL] = field(default_factory=set)
    fetched: set[URL] = field(default_factory=set)
    found: dict[int, list[Document]] = field(default_factory=dict)
    errors: list[ItemError] = field(default_factory=list)
    scheduled: int = 0
    over_limit: int = 0

    def allowed(self, url: URL) -> bool:
        return self.robots.can_fetch(self.fetcher.policy.user_agent, str(url))

    def schedule(self, url: URL) -> None:
        url = _normalize(url)
        if url in self.seen or not self.scope.contains(url):
            return
        if _not_a_page(url):
            return
        self.seen.add(url)
        if not self.allowed(url):
            return  # robots.txt says no: not an error, the owner's choice
        if self.scheduled >= self.limits.max_pages:
            self.over_limit += 1
            return
        self.queue.put_nowait((self.scheduled, url))
        self.scheduled += 1

    async def worker(self) -> None:
        first = True
        while True:
            order, url = await self.queue.get()
            try:
                if self.delay and not first:
                    await asyncio.sleep(self.delay)
                first = False
                await self.visit(order, url)
            except SourceError as exc:
                self.errors.append(exc.as_item_error())
            except FetchError as exc:
                self.errors.append(ItemError(exc.url, exc.reason))
            except Exception as exc:  # one page's surprise (a parser's bug) must not stop the crawl
                self.errors.append(ItemError(str(url), f"unexpected {type(exc).__name__}: {exc}"))
            finally:
                self.queue.task_done()

    async def visit(self, order: int, url: URL) -> None:
        shown = str(url)
        result = await self.fetcher.get(shown, accept=_PAGE_ACCEPT, max_bytes=self.limits.max_page_bytes)
        if not result.ok:
            self.errors.append(ItemError(shown, f"HTTP {result.status}"))
            return
        final = _normalize(URL(result.url))
        if final != url:
            if not self.scope.contains(final):
                self.errors.append(ItemError(shown, f"redirected out of the crawled site, to {final}"))
                return
            if not self.allowed(final):
                return
        if final in self.fetched:
            return  # two URLs, one page
        self.fetched.add(final)
        self.found[order] = await self.documents(result, final)

    async def documents(self, result: FetchResult, final: URL) -> list[Document]:
        location = str(final)
        body = result.body
        html = result.content_type in _HTML_TYPES or (not result.content_type and body.lstrip()[:1] == b"<")
        if result.content_type in _PDF_TYPES:
            loaded = await asyncio.to_thread(pdf_documents, body, source_id=self.source_id, location=location)
            self.errors.extend(loaded.errors)
            return loaded.documents
        if not html:
            raise SourceError(
                location, f"not a web page or PDF (content type {result.content_type or 'none'!r})"
            )
        page = await asyncio.to_thread(page_text, body, location, want_links=self.follow_links)
        for link in page.links:
            try:
                target = final.join(URL(link))
            except ValueError:
                continue  # a malformed href is the page's problem, not the crawl's
            if target.scheme in ("http", "https"):
                self.schedule(target)
        if page.noindex:
            return []
        if not page.text:
            raise SourceError(location, "no text found on the page")
        return [
            Document(
                source_id=self.source_id,
                text=page.text,
                title=page.title,
                location=location,
                content_hash=content_hash(body),
                format="markdown",
            )
        ]


async def _robots(fetcher: SafeFetcher, start: URL) -> urllib.robotparser.RobotFileParser:
    url = start.origin().join(URL("/robots.txt"))
    parser = urllib.robotparser.RobotFileParser(str(url))
    try:
        result = await fetcher.get(str(url), accept="text/plain", max_bytes=_ROBOTS_MAX_BYTES)
    except FetchRefused:
        raise
    except FetchError as exc:
        raise SourceError(
            str(url), f"cannot be read ({exc.reason}): under RFC 9309 the site is then not crawled"
        ) from None
    if result.ok:
        parser.parse(result.text().splitlines())
    elif 400 <= result.status < 500:
        parser.parse([])  # no robots.txt: no rules
    else:
        raise SourceError(
            str(url),
            f"HTTP {result.status}: under RFC 9309 a server error means the whole site is off limits",
        )
    return parser


async def _sitemap_pages(
    fetcher: SafeFetcher,
    start: URL,
    scope: _Scope,
    robots: urllib.robotparser.RobotFileParser,
    limits: CrawlLimits,
) -> tuple[list[URL], list[ItemError]]:
    """Page URLs from the sitemaps robots.txt names and /sitemap.xml, indexes followed."""
    guess = start.origin().join(URL("/sitemap.xml"))
    pending = [URL(s) for s in robots.site_maps() or []]
    if guess not in pending:
        pending.append(guess)
    visited: set[URL] = set()
    pages: list[URL] = []
    errors: list[ItemError] = []
    while pending and len(visited) < limits.max_sitemaps:
        sitemap = pending.pop(0)
        if sitemap in visited:
            continue
        visited.add(sitemap)
        if (sitemap.host or "").lower() != scope.host:
            errors.append(ItemError(str(sitemap), "a sitemap on another host: not read"))
            continue
        try:
            result = await fetcher.get(
                str(sitemap),
                accept="application/xml,text/xml;q=0.9,*/*;q=0.1",
                max_bytes=limits.max_sitemap_bytes,
            )
            if not result.ok:
                if not (sitemap == guess and result.status == 404):  # a missing guess is no error
                    errors.append(ItemError(str(sitemap), f"HTTP {result.status}"))
                continue
            urls, children = parse_sitemap(result.body, item=str(sitemap), max_bytes=limits.max_sitemap_bytes)
        except FetchError as exc:
            errors.append(ItemError(exc.url, exc.reason))
            continue
        except SourceError as exc:
            errors.append(exc.as_item_error())
            continue
        pages.extend(URL(u) for u in urls)
        pending.extend(URL(c) for c in children)
    if pending:
        errors.append(
            ItemError(str(start), f"over the {limits.max_sitemaps}-sitemap limit; {len(pending)} not read")
        )
    return pages, errors


async def crawl_website(
    start_url: str, *, source_id: str, fetcher: SafeFetcher, limits: CrawlLimits | None = None
) -> LoadResult:
    """The pages of the site at start_url as documents, with the pages that failed as errors.

    Raises SourceError when the site cannot be crawled at all: a refused start URL, robots.txt
    unreachable or forbidding the start, no page read.
    """
    limits = limits or CrawlLimits()
    try:
        start = _normalize(URL(start_url))
        check_url(start, fetcher.policy.allow_networks)
    except FetchRefused as exc:
        raise SourceError(exc.url, exc.reason) from None
    except ValueError as exc:
        raise SourceError(start_url, f"not a URL ({exc})") from None
    shown = redact(start)
    try:
        robots = await _robots(fetcher, start)
    except FetchRefused as exc:
        raise SourceError(exc.url, exc.reason) from None
    user_agent = fetcher.policy.user_agent
    if not robots.can_fetch(user_agent, str(start)):
        raise SourceError(shown, f"robots.txt does not allow {user_agent!r} to crawl it")
    delay = float(robots.crawl_delay(user_agent) or 0)
    scope = _Scope.of(start)
    pages, errors = await _sitemap_pages(fetcher, start, scope, robots, limits)
    crawl = _Crawl(
        source_id=source_id,
        fetcher=fetcher,
        limits=limits,
        scope=scope,
        robots=robots,
        follow_links=limits.follow_links and not pages,
        delay=min(delay, limits.max_crawl_delay),
    )
    crawl.errors.extend(errors)
    for page in pages or [start]:
        crawl.schedule(page)
    workers = [asyncio.create_task(crawl.worker()) for _ in range(1 if crawl.delay else limits.concurrency)]
    try:
        await crawl.queue.join()
    finally:
        for worker in workers:
            worker.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    if crawl.over_limit:
        crawl.errors.append(
            ItemError(
                shown, f"over the {limits.max_pages}-page limit; {crawl.over_limit} more pages not crawled"
            )
        )
    documents = [document for order in sorted(crawl.found) for document in crawl.found[order]]
    if not documents and crawl.scheduled == 0:
        raise SourceError(shown, "no page to crawl: every page found is outside the site or disallowed")
    return LoadResult(documents=documents, errors=crawl.errors)
