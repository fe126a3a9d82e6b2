"""Q&A pairs from CSV and XLSX: one unsplittable document, so one chunk and one vector, per pair."""

from __future__ import annotations

import datetime
import io
from pathlib import Path

import pytest
from openpyxl import Workbook

from chatbot.chunking import ApproximateCounter, ChunkConfig, chunk_documents
from chatbot.sources.document import SourceError, content_hash
from chatbot.sources.qa import csv_pairs, load_qa_file, xlsx_pairs


def _xlsx(sheets: dict[str, list[list[object]]]) -> bytes:
    workbook = Workbook()
    workbook.remove(workbook.active)  # type: ignore[arg-type]
    for title, rows in sheets.items():
        sheet = workbook.create_sheet(title)
        for row in rows:
            sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def test_csv_headers_match_case_insensitively_and_extra_columns_are_ignored() -> None:
    data = b"ID, QUESTION ,Answer,Owner\n1,How do I reset my password?,Use the link on the login page.,ops\n"
    result = csv_pairs(data, source_id="s1", location="faq.csv")
    (document,) = result.documents
    assert document.text == "Q: How do I reset my password?\nA: Use the link on the login page."
    assert document.title == "How do I reset my password?"
    assert document.location == "faq.csv#row=2"
    assert document.content_hash == content_hash(data)
    assert not document.splittable
    assert result.errors == []


def test_one_chunk_per_pair_even_when_the_answer_is_long() -> None:
    long_answer = " ".join(f"Step {i}: press the button marked {i}." for i in range(80))
    data = f'question,answer\nShort one?,Yes.\nLong one?,"{long_answer}"\n'.encode()
    result = csv_pairs(data, source_id="s", location="faq.csv")
    chunks = chunk_documents(
        result.documents, ChunkConfig(max_tokens=50, overlap_tokens=10), ApproximateCounter()
    )
    assert len(chunks) == 2
    assert chunks[1].text.endswith("press the button marked 79.")
    assert chunks[1].token_count > 50


def test_semicolon_csv_with_a_bom_quoted_newlines_and_problem_rows() -> None:
    data = (
        "\ufeffQuestion;Answer\n"
        'Opening hours?;"Mon-Fri 9-17\nSat 10-14"\n'
        "\n"
        "No answer here?;\n"
        ";An answer without a question\n"
        "Refunds?;Within 30 days.\n"
    ).encode()
    result = csv_pairs(data, source_id="s", location="faq.csv")
    assert [d.text for d in result.documents] == [
        "Q: Opening hours?\nA: Mon-Fri 9-17\nSat 10-14",
        "Q: Refunds?\nA: Within 30 days.",
    ]
    assert [str(e) for e in result.errors] == ["faq.csv row 5: empty answer", "faq.csv row 6: empty question"]


def test_a_missing_column_is_named_with_the_columns_there_are() -> None:
    with pytest.raises(
        SourceError, match=r"faq\.csv: no 'answer' column \(the header row has: 'Question', 'Reply'\)"
    ):
        csv_pairs(b"Question,Reply\nq,a\n", source_id="s", location="faq.csv")
    with pytest.raises(SourceError, match=r"no 'question' or 'answer' column"):
        csv_pairs(b"a,b\n1,2\n", source_id="s", location="faq.csv")


def test_an_empty_csv_is_refused() -> None:
    with pytest.raises(SourceError, match=r"faq\.csv: empty: no header row"):
        csv_pairs(b"\n\n", source_id="s", location="faq.csv")


def test_xlsx_reads_every_sheet_with_the_columns(tmp_path: Path) -> None:
    data = _xlsx(
        {
            "Billing": [
                ["Question", "Answer"],
                ["Invoice date?", datetime.date(2026, 1, 31)],
                ["Seats?", 42.0],
            ],
            "Notes": [["Topic", "Text"], ["x", "y"]],
            "Shipping FAQ": [[None, None], ["QUESTION", "ANSWER"], ["Ship abroad?", "Yes, to 40 countries."]],
        }
    )
    path = tmp_path / "faq.xlsx"
    path.write_bytes(data)
    result = load_qa_file(path, source_id="s", location="faq.xlsx")
    assert [(d.text, d.location) for d in result.documents] == [
        ("Q: Invoice date?\nA: 2026-01-31", "faq.xlsx#sheet=Billing&row=2"),
        ("Q: Seats?\nA: 42", "faq.xlsx#sheet=Billing&row=3"),
        ("Q: Ship abroad?\nA: Yes, to 40 countries.", "faq.xlsx#sheet=Shipping%20FAQ&row=3"),
    ]
    assert [str(e) for e in result.errors] == [
        "faq.xlsx sheet 'Notes': no 'question' or 'answer' column (the header row has: 'Topic', 'Text')"
    ]


def test_xlsx_without_the_columns_anywhere_is_refused() -> None:
    data = _xlsx({"Sheet": [["Q", "Answer"], ["a", "b"]]})
    with pytest.raises(SourceError, match=r"faq\.xlsx sheet 'Sheet': no 'question' column"):
        xlsx_pairs(data, source_id="s", location="faq.xlsx")


def test_a_broken_workbook_is_named() -> None:
    with pytest.raises(SourceError, match=r"faq\.xlsx: not a readable XLSX workbook \(BadZipFile"):
        xlsx_pairs(b"not a zip at all", source_id="s", location="faq.xlsx")


def test_the_pair_count_is_capped() -> None:
    rows = "".join(f"q{i},a{i}\n" for i in range(5))
    result = csv_pairs(f"question,answer\n{rows}".encode(), source_id="s", location="faq.csv", max_pairs=3)
    assert len(result.documents) == 3
    assert [str(e) for e in result.errors] == [
        "faq.csv row 5: over the 3-pair limit; this row and the rest skipped"
    ]


def test_load_qa_file_refuses_other_suffixes(tmp_path: Path) -> None:
    path = tmp_path / "faq.json"
    path.write_text("{}")
    with pytest.raises(SourceError, match=r"faq\.json: not a Q&A file"):
        load_qa_file(path, source_id="s", location="faq.json")
