"""Text and Markdown files, and folders of files of every supported kind."""

from __future__ import annotations

import codecs
import os
from pathlib import Path

import pytest

from chatbot.chunking import ApproximateCounter, ChunkConfig, chunk_documents
from chatbot.sources.document import SourceError, combined_hash, content_hash
from chatbot.sources.folder import load_file, load_folder
from chatbot.sources.text import load_text_file, text_document
from tests.chatbot._ingest_fixtures import make_pdf


def test_a_text_file_is_one_plain_document_titled_by_its_name(tmp_path: Path) -> None:
    path = tmp_path / "release-notes.txt"
    path.write_bytes(b"Version 2 adds exports.\r\nIt also fixes login.\r\n")
    document = load_text_file(path, source_id="s1")
    assert document.text == "Version 2 adds exports.\nIt also fixes login.\n"  # newlines normalised
    assert document.title == "release-notes"
    assert document.format == "plain"
    assert document.location == str(path)
    assert document.content_hash == content_hash(path.read_bytes())  # of the raw bytes
    assert document.page is None
    assert document.splittable


def test_markdown_is_titled_by_front_matter_and_loses_it(tmp_path: Path) -> None:
    path = tmp_path / "guide.md"
    path.write_text('---\ntitle: "Setup Guide"\ntags: [a]\n---\n# Installing\n\nRun the installer.\n')
    document = load_text_file(path, source_id="s1", location="guide.md")
    assert document.title == "Setup Guide"
    assert document.text == "# Installing\n\nRun the installer.\n"
    assert document.format == "markdown"
    assert document.location == "guide.md"


def test_markdown_without_front_matter_is_titled_by_its_first_h1() -> None:
    document = text_document(
        b"Some preface.\n\n# The Real Title #\n\nBody.\n", source_id="s", location="x.md", format="markdown"
    )
    assert document.title == "The Real Title"


def test_utf16_with_a_byte_order_mark_is_read() -> None:
    data = codecs.BOM_UTF16_LE + "Grüße aus Köln".encode("utf-16-le")
    assert text_document(data, source_id="s", location="a.txt", format="plain").text == "Grüße aus Köln"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            b"caf\xe9 au lait",
            r"notes\.txt: not UTF-8 text \(undecodable byte at offset 3\); save it as UTF-8",
        ),
        (b"PK\x03\x04\x00\x00binary", r"notes\.txt: a binary file, not text \(it contains NUL bytes\)"),
        (b" \n\n\t", r"notes\.txt: empty: no text to ingest"),
    ],
)
def test_unreadable_text_names_the_file_and_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(SourceError, match=message):
        text_document(data, source_id="s", location="notes.txt", format="plain")


def test_a_file_over_the_size_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "big.txt"
    path.write_bytes(b"a" * 1001)
    with pytest.raises(SourceError, match=r"big\.txt: larger than the 1000-byte limit"):
        load_text_file(path, source_id="s", max_bytes=1000)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"gone\.md: cannot read \(No such file or directory\)"):
        load_text_file(tmp_path / "gone.md", source_id="s", location="gone.md")


def _folder(root: Path) -> None:
    (root / "docs" / "deep").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / "a.md").write_text("# Alpha\n\nAlpha text.\n")
    (root / "docs" / "b.txt").write_text("Beta text.\n")
    (root / "docs" / "deep" / "c.pdf").write_bytes(make_pdf(["Gamma page one.", "Gamma page two."]))
    (root / "docs" / "faq.csv").write_text("question,answer\nWhat is delta?,Delta is the fourth.\n")
    (root / ".hidden.md").write_text("# Secret\n")
    (root / ".git" / "config.txt").write_text("not content\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n")
    (root / "broken.pdf").write_bytes(b"%PDF-1.7\nthis is not really a pdf")


def test_a_folder_reads_every_kind_in_a_stable_order(tmp_path: Path) -> None:
    _folder(tmp_path)
    result = load_folder(tmp_path, source_id="s1")
    assert [(d.location, d.page) for d in result.documents] == [
        ("a.md", None),
        ("docs/b.txt", None),
        ("docs/deep/c.pdf", 1),
        ("docs/deep/c.pdf", 2),
        ("docs/faq.csv#row=2", None),
    ]
    assert {d.source_id for d in result.documents} == {"s1"}
    errors = {e.item: e.message for e in result.errors}
    assert set(errors) == {"broken.pdf", "logo.png"}
    assert errors["broken.pdf"].startswith("not a readable PDF")
    assert errors["logo.png"].startswith("unsupported file type '.png'")
    chunks = chunk_documents(result.documents, ChunkConfig(), ApproximateCounter())
    assert [c.text for c in chunks][-1] == "Q: What is delta?\nA: Delta is the fourth."


def test_an_unchanged_folder_has_the_same_combined_hash(tmp_path: Path) -> None:
    _folder(tmp_path)
    before = combined_hash(load_folder(tmp_path, source_id="s").documents)
    assert combined_hash(load_folder(tmp_path, source_id="s").documents) == before
    (tmp_path / "docs" / "b.txt").write_text("Beta text, revised.\n")
    assert combined_hash(load_folder(tmp_path, source_id="s").documents) != before


def test_symbolic_links_are_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("private key material\n")
    root = tmp_path / "upload"
    root.mkdir()
    (root / "ok.txt").write_text("fine\n")
    os.symlink(outside / "secret.txt", root / "link.txt")
    os.symlink(outside, root / "linked-dir")
    result = load_folder(root, source_id="s")
    assert [d.location for d in result.documents] == ["ok.txt"]
    assert [(e.item, e.message) for e in result.errors] == [("link.txt", "a symbolic link: not followed")]


def test_the_file_count_is_capped(tmp_path: Path) -> None:
    for name in "abcde":
        (tmp_path / f"{name}.txt").write_text(f"{name}\n")
    result = load_folder(tmp_path, source_id="s", max_files=3)
    assert [d.location for d in result.documents] == ["a.txt", "b.txt", "c.txt"]
    assert [str(e) for e in result.errors] == ["d.txt: over the 3-file limit; it and the rest skipped"]


def test_load_file_refuses_an_unknown_kind_and_a_non_folder(tmp_path: Path) -> None:
    path = tmp_path / "slides.pptx"
    path.write_bytes(b"x")
    with pytest.raises(SourceError, match=r"slides\.pptx: unsupported file type '\.pptx'"):
        load_file(path, source_id="s", location="slides.pptx")
    with pytest.raises(SourceError, match="not a folder"):
        load_folder(path, source_id="s")
