"""PDF files through pypdf: pages kept, damage reported per file or per page."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot.chunking import ApproximateCounter, ChunkConfig, chunk_documents
from chatbot.sources.document import SourceError, content_hash
from chatbot.sources.pdf import load_pdf_file, pdf_documents
from tests.chatbot._ingest_fixtures import make_pdf


def test_pages_become_documents_with_their_numbers(tmp_path: Path) -> None:
    data = make_pdf(
        ["Chapter one (intro).\nWidgets are made of steel.", "", "Chapter three.\nThey last ten years."],
        title="Widget Manual",
    )
    path = tmp_path / "manual.pdf"
    path.write_bytes(data)
    result = load_pdf_file(path, source_id="s1", location="manual.pdf")
    assert result.errors == []
    assert [d.page for d in result.documents] == [1, 3]  # the blank page 2 has nothing to index
    first, third = result.documents
    assert "Chapter one (intro)." in first.text
    assert "Widgets are made of steel." in first.text
    assert "They last ten years." in third.text
    assert {d.title for d in result.documents} == {"Widget Manual"}  # from the PDF's metadata
    assert {d.content_hash for d in result.documents} == {content_hash(data)}
    assert {d.location for d in result.documents} == {"manual.pdf"}


def test_without_a_metadata_title_the_file_name_is_the_title() -> None:
    result = pdf_documents(make_pdf(["Text."]), source_id="s", location="docs/price-list.pdf")
    assert result.documents[0].title == "price-list"


def test_chunks_of_a_pdf_keep_their_page() -> None:
    lines = "\n".join(f"Line {i} of the handbook explains rule {i} in detail." for i in range(40))
    result = pdf_documents(make_pdf([lines, lines]), source_id="s", location="h.pdf")
    chunks = chunk_documents(
        result.documents, ChunkConfig(max_tokens=60, overlap_tokens=10), ApproximateCounter()
    )
    assert {c.page for c in chunks} == {1, 2}
    assert all(c.location == "h.pdf" for c in chunks)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (make_pdf(["Some text."])[:150], r"broken\.pdf: not a readable PDF \("),
        (b"%PDF-1.4\nnothing but noise here\n", r"broken\.pdf: not a readable PDF \("),
        (b"<html>not a pdf</html>", r"broken\.pdf: not a PDF \(no %PDF- header\)"),
        (b"", r"broken\.pdf: not a PDF"),
    ],
)
def test_a_broken_pdf_is_a_clear_error_naming_the_file(data: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        pdf_documents(data, source_id="s", location="broken.pdf")


def test_a_pdf_without_any_text_is_refused_as_such() -> None:
    with pytest.raises(
        SourceError, match=r"scan\.pdf: no text on any page \(a scanned PDF needs text recognition"
    ):
        pdf_documents(make_pdf(["", ""]), source_id="s", location="scan.pdf")


def test_a_damaged_page_is_an_item_error_and_the_others_are_read() -> None:
    data = make_pdf(["Good page one.", "Bad page.", "Good page three."], damaged=frozenset({2}))
    result = pdf_documents(data, source_id="s", location="mixed.pdf")
    assert [d.page for d in result.documents] == [1, 3]
    assert [e.item for e in result.errors] == ["mixed.pdf page 2"]
    assert result.errors[0].message.startswith("text not extractable (")
