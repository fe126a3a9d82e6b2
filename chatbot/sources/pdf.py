"""PDF files with pypdf: one document per page with text, page numbers kept (1-based).

A file pypdf cannot open raises SourceError naming it; a page whose text cannot be extracted is
an ItemError naming the page, and the other pages are still read. A PDF with no text on any page
(a scan) is refused as such: text recognition is not part of ingestion.
"""

from __future__ import annotations

import io
import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from chatbot.sources.document import Document, ItemError, LoadResult, SourceError, content_hash
from chatbot.sources.text import read_capped

PDF_SUFFIXES = frozenset({".pdf"})
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
_log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from pypdf import PageObject, PdfReader


def _pdf_reader_class() -> type[PdfReader]:
    try:
        from pypdf import PdfReader
    except ImportError:  # the chatbot extra brings pypdf
        raise SourceError("pdf", "reading PDFs needs pypdf: pip install 'integration-hub[chatbot]'") from None
    return PdfReader


def _open(data: bytes, location: str) -> PdfReader:
    reader_class = _pdf_reader_class()
    if not data.lstrip()[:5].startswith(b"%PDF-"):
        raise SourceError(location, "not a PDF (no %PDF- header)")
    try:
        reader = reader_class(io.BytesIO(data), strict=False)
        if reader.is_encrypted and not reader.decrypt(""):
            raise SourceError(location, "encrypted PDF: it needs a password, which ingestion does not take")
        _ = len(reader.pages)  # reading the page tree is where a broken file fails
    except SourceError:
        raise
    except Exception as exc:  # pypdf raises many types (PdfReadError, ValueError, KeyError...) on damage
        raise SourceError(location, f"not a readable PDF ({type(exc).__name__}: {exc})") from None
    return reader


class _Warnings(logging.Handler):
    """pypdf's warnings raised by this thread: in its lenient mode a damaged page only warns."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self._thread:
            self.messages.append(record.getMessage())


def _page_text(page: PageObject) -> tuple[str, list[str]]:
    """A page's text and the warnings pypdf gave while extracting it."""
    warnings = _Warnings()
    pypdf_log = logging.getLogger("pypdf")
    pypdf_log.addHandler(warnings)
    try:
        text = page.extract_text() or ""
    finally:
        pypdf_log.removeHandler(warnings)
    return text, warnings.messages


def pdf_documents(data: bytes, *, source_id: str, location: str, title: str | None = None) -> LoadResult:
    """The pages of a PDF's bytes, as documents; the page-level failures as errors."""
    reader = _open(data, location)
    digest = content_hash(data)
    doc_title = title or _metadata_title(reader) or Path(location).stem or location
    result = LoadResult()
    for number, page in enumerate(reader.pages, start=1):
        item = f"{location} page {number}"
        try:
            text, warnings = _page_text(page)
        except Exception as exc:  # a damaged content stream on one page: keep the others
            result.errors.append(ItemError(item, f"text not extractable ({type(exc).__name__}: {exc})"))
            continue
        text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
        if not text.strip():
            if warnings:  # no text because the page is damaged, not because it is blank
                result.errors.append(ItemError(item, f"text not extractable ({warnings[0]})"))
            continue  # a blank page, or an image: nothing to index
        result.documents.append(
            Document(
                source_id=source_id,
                text=text,
                title=doc_title,
                location=location,
                content_hash=digest,
                page=number,
            )
        )
    if not result.documents and not result.errors:
        raise SourceError(
            location, "no text on any page (a scanned PDF needs text recognition, not supported)"
        )
    return result


def _metadata_title(reader: PdfReader) -> str | None:
    try:
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except Exception:  # damaged metadata is no reason to lose the text
        _log.debug("unreadable PDF metadata", exc_info=True)
        return None
    return (str(title).strip() or None) if title else None  # a blank title is no title


def load_pdf_file(
    path: Path, *, source_id: str, location: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> LoadResult:
    shown = location or str(path)
    return pdf_documents(read_capped(path, max_bytes, shown), source_id=source_id, location=shown)
