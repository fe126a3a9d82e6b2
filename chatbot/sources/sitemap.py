"""Sitemaps (sitemaps.org): XML url sets and sitemap indexes, gzipped or not, and text sitemaps.

The XML comes from the web, so it is parsed without entities, DTDs or network access (no
billion-laughs, no external entities), and a gzipped sitemap is inflated only up to a cap.
"""

from __future__ import annotations

import zlib

from lxml import etree

from chatbot.sources.document import SourceError

DEFAULT_MAX_BYTES = 50 * 1024 * 1024  # the protocol's own limit for one uncompressed sitemap


def _gunzip(data: bytes, max_bytes: int, item: str) -> bytes:
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(data, max_bytes + 1)
    except zlib.error as exc:
        raise SourceError(item, f"not valid gzip ({exc})") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise SourceError(item, f"larger than {max_bytes} bytes once inflated")
    return out


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False, remove_comments=True
    )


def parse_sitemap(
    data: bytes, *, item: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[str], list[str]]:
    """(page URLs, child sitemap URLs) of a sitemap's bytes, in document order."""
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, max_bytes, item)
    body = data.lstrip()
    if not body.startswith(b"<"):
        # A text sitemap: one absolute URL a line.
        lines = body.decode("utf-8", errors="replace").splitlines()
        return [line.strip() for line in lines if line.strip().startswith(("http://", "https://"))], []
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        raise SourceError(item, f"not a valid sitemap ({exc})") from None
    kind = etree.QName(root).localname
    locations = [
        element.text.strip()
        for element in root.iter()
        if isinstance(element.tag, str) and etree.QName(element).localname == "loc" and element.text
    ]
    if kind == "sitemapindex":
        return [], locations
    if kind == "urlset":
        return locations, []
    raise SourceError(item, f"not a sitemap (its root element is <{kind}>, not <urlset> or <sitemapindex>)")
