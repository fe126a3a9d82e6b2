"""Website crawling against a real aiohttp site on loopback (loopback allowed explicitly)."""

from __future__ import annotations

import gzip
import time

import pytest

from chatbot.chunking import ApproximateCounter, ChunkConfig, chunk_documents
from chatbot.fetch import FetchPolicy, SafeFetcher
from chatbot.sources.document import LoadResult, SourceError, content_hash
from chatbot.sources.sitemap import parse_sitemap
from chatbot.sources.website import CrawlLimits, crawl_website
from tests.chatbot._ingest_fixtures import LoopbackSite, Page, html_page, loopback_policy

LONG = (
    "Our widgets are machined from a single block of stainless steel, so they do not rust and "
    "they survive being dropped. Every widget is tested for ten thousand cycles before it ships."
)


def _urlset(site: LoopbackSite, *paths: str) -> str:
    urls = "".join(f"<url><loc>{site.url(p)}</loc></url>" for p in paths)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{urls}</urlset>'


def _xml(body: str | bytes) -> Page:
    return Page(body, content_type="application/xml")


def _text(body: str) -> Page:
    return Page(body, content_type="text/plain")


async def _crawl(site: LoopbackSite, start: str = "/", **limits: object) -> LoadResult:
    async with SafeFetcher(loopback_policy()) as fetcher:
        return await crawl_website(
            site.url(start),
            source_id="web-1",
            fetcher=fetcher,
            limits=CrawlLimits(**limits),  # type: ignore[arg-type]
        )


async def test_sitemaps_from_robots_with_an_index_and_gzip_and_robots_obeyed() -> None:
    site = LoopbackSite({})
    site.pages.update(
        {
            "/robots.txt": _text("User-agent: *\nDisallow: /private/\nSitemap: /maps/index.xml\n"),
            "/": Page(html_page("Home", LONG)),
            "/widgets": Page(
                html_page("Widgets", LONG, "Widgets come in three sizes: small, medium and large.")
            ),
            "/care": Page(html_page("Care", "Clean a widget with a dry cloth once a week. " + LONG)),
            "/private/secret": Page(html_page("Secret", "Internal only. " + LONG)),
        }
    )
    async with site:
        # robots.txt names a sitemap index by a relative path; it lists one plain and one gzipped sitemap
        site.pages["/robots.txt"] = _text(
            f"User-agent: *\nDisallow: /private/\nSitemap: {site.url('/maps/index.xml')}\n"
        )
        site.pages["/maps/index.xml"] = _xml(
            '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<sitemap><loc>{site.url('/maps/a.xml')}</loc></sitemap>"
            f"<sitemap><loc>{site.url('/maps/b.xml.gz')}</loc></sitemap></sitemapindex>"
        )
        site.pages["/maps/a.xml"] = _xml(_urlset(site, "/widgets", "/private/secret"))
        site.pages["/maps/b.xml.gz"] = Page(
            gzip.compress(_urlset(site, "/care", "/widgets#sizes").encode()), content_type="application/gzip"
        )
        result = await _crawl(site)
    assert [d.location for d in result.documents] == [site.url("/widgets"), site.url("/care")]
    assert "/private/secret" not in site.requests  # disallowed: never asked for
    assert result.errors == []
    widgets = result.documents[0]
    assert widgets.title == "Widgets"
    assert widgets.format == "markdown"
    assert widgets.text.startswith("# Widgets")
    assert "three sizes" in widgets.text
    assert "Copyright" not in widgets.text  # the footer is boilerplate, left out
    assert widgets.content_hash == content_hash(site.pages["/widgets"].body.encode())  # type: ignore[union-attr]
    chunks = chunk_documents(result.documents, ChunkConfig(), ApproximateCounter())
    assert chunks[0].heading_path == ("Widgets",)
    assert chunks[0].location == site.url("/widgets")


async def test_sitemap_xml_is_found_without_robots_txt() -> None:
    site = LoopbackSite({"/": Page(html_page("Home", LONG))})
    async with site:
        site.pages["/sitemap.xml"] = _xml(_urlset(site, "/", "/faq"))
        site.pages["/faq"] = Page(html_page("FAQ", LONG))
        result = await _crawl(site)
    assert [d.title for d in result.documents] == ["Home", "FAQ"]
    assert site.requests[:2] == ["/robots.txt", "/sitemap.xml"]


async def test_without_a_sitemap_links_are_followed_within_the_site() -> None:
    pages: dict[str, Page] = {
        "/docs/": Page(
            html_page(
                "Docs",
                LONG,
                links=(
                    "a",
                    "/docs/b#part",
                    "/docs/b",
                    "/outside",
                    "http://example.com/x",
                    "mailto:x@y.z",
                    "logo.png",
                ),
            )
        ),
        "/docs/a": Page(html_page("A", LONG, links=("/docs/", "/docs/c"))),
        "/docs/b": Page(html_page("B", LONG)),
        "/docs/c": Page(
            html_page("C", LONG, head='<meta name="robots" content="noindex">', links=("/docs/d",))
        ),
        "/docs/d": Page(
            html_page("D", LONG, head='<meta name="ROBOTS" content="nofollow">', links=("/docs/e",))
        ),
        "/docs/e": Page(html_page("E", LONG)),
        "/outside": Page(html_page("Outside", LONG)),
    }
    async with LoopbackSite(pages) as site:
        result = await _crawl(site, "/docs/")
    assert [d.title for d in result.documents] == ["Docs", "A", "B", "D"]  # C is noindex, E behind nofollow
    assert "/outside" not in site.requests
    assert "/docs/e" not in site.requests
    assert "/docs/logo.png" not in site.requests
    assert site.requests.count("/docs/b") == 1
    assert result.errors == []


async def test_page_count_and_page_size_are_capped_and_failures_are_per_page() -> None:
    pages: dict[str, Page] = {
        "/": Page(
            html_page("Home", LONG, links=("/big", "/broken", "/p1", "/p2", "/p3", "/p4", "/file.bin"))
        ),
        "/big": Page(html_page("Big", LONG * 400)),
        "/broken": Page("oops", status=500, content_type="text/plain"),
        "/p1": Page(html_page("P1", LONG)),
        "/p2": Page(html_page("P2", LONG)),
        "/p3": Page(html_page("P3", LONG)),
        "/p4": Page(html_page("P4", LONG)),
    }
    async with LoopbackSite(pages) as site:
        result = await _crawl(site, max_pages=5, max_page_bytes=20_000, concurrency=2)
        errors = {e.item: e.message for e in result.errors}
        assert [d.title for d in result.documents] == ["Home", "P1", "P2"]
        assert errors[site.url("/big")] == "body of 72199 bytes is over the 20000-byte limit"
        assert errors[site.url("/broken")] == "HTTP 500"
        assert errors[site.url("/")] == "over the 5-page limit; 2 more pages not crawled"
        assert "/p3" not in site.requests
        assert "/p4" not in site.requests


async def test_concurrency_is_bounded() -> None:
    paths = [f"/p{i}" for i in range(8)]
    pages: dict[str, Page] = {p: Page(html_page(p, LONG), delay=0.15) for p in paths}
    async with LoopbackSite(pages) as site:
        site.pages["/sitemap.xml"] = _xml(_urlset(site, *paths))
        result = await _crawl(site, concurrency=3)
    assert len(result.documents) == 8
    assert site.max_in_flight == 3


async def test_crawl_delay_is_obeyed_one_page_at_a_time() -> None:
    paths = ["/a", "/b", "/c"]
    pages: dict[str, Page] = {p: Page(html_page(p, LONG)) for p in paths}
    pages["/robots.txt"] = _text("User-agent: *\nCrawl-delay: 5\n")
    async with LoopbackSite(pages) as site:
        site.pages["/sitemap.xml"] = _xml(_urlset(site, *paths))
        started = time.monotonic()
        result = await _crawl(site, concurrency=4, max_crawl_delay=0.2)  # the site's 5 s cut to 0.2 s
        elapsed = time.monotonic() - started
    assert len(result.documents) == 3
    assert elapsed >= 0.4  # two waits between three pages
    assert site.max_in_flight == 1


async def test_robots_rules_for_the_bots_own_agent() -> None:
    agent = FetchPolicy().user_agent.split("/")[0]
    pages = {
        "/robots.txt": _text(f"User-agent: {agent}\nDisallow: /\n\nUser-agent: *\nAllow: /\n"),
        "/": Page(html_page("Home", LONG)),
    }
    async with LoopbackSite(pages) as site:
        with pytest.raises(SourceError, match=f"robots.txt does not allow '{agent}"):
            await _crawl(site)
        assert site.requests == ["/robots.txt"]


async def test_a_server_error_on_robots_txt_means_no_crawl() -> None:
    pages = {
        "/robots.txt": Page("down", status=503, content_type="text/plain"),
        "/": Page(html_page("H", LONG)),
    }
    async with LoopbackSite(pages) as site:
        with pytest.raises(SourceError, match="HTTP 503: under RFC 9309 a server error means the whole site"):
            await _crawl(site)
        assert site.requests == ["/robots.txt"]


async def test_a_redirect_out_of_the_site_is_an_item_error() -> None:
    async with LoopbackSite({"/elsewhere": Page(html_page("Other site", LONG))}) as other:
        pages = {
            "/": Page(html_page("Home", LONG, links=("/moved",))),
            "/moved": Page("", status=301, headers={"Location": other.url("/elsewhere")}),
        }
        async with LoopbackSite(pages) as site:
            result = await _crawl(site)
    assert [d.title for d in result.documents] == ["Home"]
    assert [str(e) for e in result.errors] == [
        f"{site.url('/moved')}: redirected out of the crawled site, to {other.url('/elsewhere')}"
    ]


async def test_a_pdf_on_the_site_is_read_into_pages() -> None:
    from tests.chatbot._ingest_fixtures import make_pdf

    pages = {
        "/": Page(html_page("Home", LONG, links=("/manual.pdf", "/data.json"))),
        "/manual.pdf": Page(
            make_pdf(["Manual page one.", "Manual page two."]), content_type="application/pdf"
        ),
        "/data.json": Page("{}", content_type="application/json"),
    }
    async with LoopbackSite(pages) as site:
        result = await _crawl(site)
    assert [(d.title, d.page) for d in result.documents] == [("Home", None), ("manual", 1), ("manual", 2)]
    assert "/data.json" not in site.requests  # not a page: no request


async def test_a_page_that_is_not_html_is_an_item_error() -> None:
    async with LoopbackSite({"/": Page(html_page("Home", LONG, links=("/notes",)))}) as site:
        site.pages["/notes"] = Page("plain words", content_type="text/plain")
        result = await _crawl(site)
    assert [str(e) for e in result.errors] == [
        f"{site.url('/notes')}: not a web page or PDF (content type 'text/plain')"
    ]


async def test_the_default_policy_refuses_a_loopback_site() -> None:
    async with LoopbackSite({"/": Page(html_page("Home", LONG))}) as site:
        async with SafeFetcher() as fetcher:
            with pytest.raises(SourceError, match=r"address 127\.0\.0\.1 is loopback"):
                await crawl_website(site.url("/"), source_id="s", fetcher=fetcher)
        assert site.requests == []


def test_sitemap_parsing_refuses_entities_and_names_bad_input() -> None:
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]>'
        b'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"><url><loc>http://x/&b;</loc></url></urlset>'
    )
    urls, children = parse_sitemap(bomb, item="map.xml")
    assert children == []
    assert all("aaaaaaaaaa" not in url for url in urls)
    with pytest.raises(SourceError, match=r"map\.xml: not a sitemap \(its root element is <html>"):
        parse_sitemap(b"<html><body>hi</body></html>", item="map.xml")
    with pytest.raises(SourceError, match=r"map\.xml: larger than 1000 bytes once inflated"):
        parse_sitemap(gzip.compress(b"<urlset>" + b" " * 5000 + b"</urlset>"), item="map.xml", max_bytes=1000)
    assert parse_sitemap(b"http://x/a\n# comment\nhttps://x/b\n", item="map.txt") == (
        ["http://x/a", "https://x/b"],
        [],
    )
