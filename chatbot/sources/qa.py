"""Q&A pairs from CSV or XLSX: a question column and an answer column, one document per pair.

Columns are found by header, case- and space-insensitively ("Question", " ANSWER "); a sheet
without one names the missing column and the columns it has. A pair becomes one unsplittable
document ("Q: ...\\nA: ...", titled with the question), so it is embedded as one vector. A row
with one of the two cells empty is an ItemError naming its row; blank rows are skipped.
"""

from __future__ import annotations

import csv
import datetime
import io
import urllib.parse
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from chatbot.sources.document import Document, ItemError, LoadResult, SourceError, content_hash
from chatbot.sources.text import decode_text, read_capped

CSV_SUFFIXES = frozenset({".csv", ".tsv"})
XLSX_SUFFIXES = frozenset({".xlsx", ".xlsm"})
QA_SUFFIXES = CSV_SUFFIXES | XLSX_SUFFIXES
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
DEFAULT_MAX_PAIRS = 100_000
_QUESTION, _ANSWER = "question", "answer"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime.datetime) and value.time() == datetime.time():
        return value.date().isoformat()  # a spreadsheet stores a date as midnight of that day
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a spreadsheet's 42.0 is the 42 its user typed
    return str(value).strip()


def _columns(header: Sequence[str], where: str) -> tuple[int, int]:
    names = [name.strip().casefold() for name in header]
    missing = [column for column in (_QUESTION, _ANSWER) if column not in names]
    if missing:
        shown = ", ".join(repr(name) for name in header if name.strip()) or "none"
        raise SourceError(
            where, f"no {' or '.join(repr(m) for m in missing)} column (the header row has: {shown})"
        )
    return names.index(_QUESTION), names.index(_ANSWER)


def _pairs(
    rows: Iterable[tuple[int, list[str]]],
    *,
    source_id: str,
    location: str,
    sheet: str | None,
    digest: str,
    max_pairs: int,
) -> LoadResult:
    """Documents from (row number, cells) after the header has been found."""
    result = LoadResult()
    where = location if sheet is None else f"{location} sheet {sheet!r}"
    anchor = "#" if sheet is None else f"#sheet={urllib.parse.quote(sheet)}&"
    columns: tuple[int, int] | None = None
    for number, cells in rows:
        if not any(cells):
            continue
        if columns is None:
            columns = _columns(cells, where)
            continue
        item = f"{where} row {number}"
        question = cells[columns[0]] if columns[0] < len(cells) else ""
        answer = cells[columns[1]] if columns[1] < len(cells) else ""
        if not question or not answer:
            result.errors.append(ItemError(item, f"empty {_QUESTION if not question else _ANSWER}"))
            continue
        if len(result.documents) >= max_pairs:
            result.errors.append(
                ItemError(item, f"over the {max_pairs}-pair limit; this row and the rest skipped")
            )
            break
        result.documents.append(
            Document(
                source_id=source_id,
                text=f"Q: {question}\nA: {answer}",
                title=question,
                location=f"{location}{anchor}row={number}",
                content_hash=digest,
                splittable=False,
            )
        )
    if columns is None:
        raise SourceError(where, "empty: no header row with 'question' and 'answer'")
    return result


def csv_pairs(
    data: bytes, *, source_id: str, location: str, max_pairs: int = DEFAULT_MAX_PAIRS
) -> LoadResult:
    """Pairs from CSV bytes (UTF-8; the delimiter , ; or tab sniffed from the header)."""
    text = decode_text(data, location)
    first_line = text.split("\n", 1)[0]
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(first_line, delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        rows = [(reader.line_num, [cell.strip() for cell in row]) for row in reader]
    except csv.Error as exc:
        raise SourceError(f"{location} line {reader.line_num}", f"not valid CSV ({exc})") from None
    return _pairs(
        rows,
        source_id=source_id,
        location=location,
        sheet=None,
        digest=content_hash(data),
        max_pairs=max_pairs,
    )


def xlsx_pairs(
    data: bytes, *, source_id: str, location: str, max_pairs: int = DEFAULT_MAX_PAIRS
) -> LoadResult:
    """Pairs from every sheet of an XLSX workbook that has the two columns.

    A sheet without them is an ItemError, unless no sheet has them: then the workbook is refused.
    """
    try:
        from openpyxl import load_workbook
    except ImportError:  # the chatbot extra brings openpyxl
        raise SourceError(
            location, "reading XLSX needs openpyxl: pip install 'integration-hub[chatbot]'"
        ) from None
    try:
        workbook = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise SourceError(location, f"not a readable XLSX workbook ({type(exc).__name__}: {exc})") from None
    digest = content_hash(data)
    result = LoadResult()
    refusals: list[SourceError] = []
    try:
        for sheet in workbook.worksheets:
            rows = (
                (number, [_cell(value) for value in values])
                for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
            )
            try:
                result.extend(
                    _pairs(
                        rows,
                        source_id=source_id,
                        location=location,
                        sheet=sheet.title,
                        digest=digest,
                        max_pairs=max_pairs - len(result.documents),
                    )
                )
            except SourceError as exc:
                refusals.append(exc)
    finally:
        workbook.close()
    if refusals and len(refusals) == len(workbook.worksheets):
        raise refusals[0]
    result.errors.extend(refusal.as_item_error() for refusal in refusals)
    return result


def load_qa_file(
    path: Path, *, source_id: str, location: str | None = None, max_bytes: int = DEFAULT_MAX_BYTES
) -> LoadResult:
    """Pairs from a .csv/.tsv or .xlsx/.xlsm file, by suffix."""
    shown = location or str(path)
    suffix = path.suffix.lower()
    if suffix not in QA_SUFFIXES:
        raise SourceError(shown, f"not a Q&A file (expected one of {', '.join(sorted(QA_SUFFIXES))})")
    data = read_capped(path, max_bytes, shown)
    reader = csv_pairs if suffix in CSV_SUFFIXES else xlsx_pairs
    return reader(data, source_id=source_id, location=shown)
