"""A folder of files: each read by the reader its suffix names, errors collected per file.

The walk is sorted (the same folder always gives the same documents in the same order), skips
hidden files and folders, and never follows a symbolic link: a link inside an uploaded folder
must not pull in files from elsewhere on the machine. Locations are paths relative to the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

from chatbot.sources.document import ItemError, LoadResult, SourceError
from chatbot.sources.pdf import PDF_SUFFIXES, load_pdf_file
from chatbot.sources.qa import QA_SUFFIXES, load_qa_file
from chatbot.sources.text import MARKDOWN_SUFFIXES, TEXT_SUFFIXES, load_text_file

SUPPORTED_SUFFIXES = TEXT_SUFFIXES | MARKDOWN_SUFFIXES | PDF_SUFFIXES | QA_SUFFIXES
DEFAULT_MAX_FILES = 10_000


def load_file(path: Path, *, source_id: str, location: str | None = None) -> LoadResult:
    """One file by its suffix; raises SourceError for a file that cannot be read at all."""
    shown = location or str(path)
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES | MARKDOWN_SUFFIXES:
        return LoadResult(documents=[load_text_file(path, source_id=source_id, location=shown)])
    if suffix in PDF_SUFFIXES:
        return load_pdf_file(path, source_id=source_id, location=shown)
    if suffix in QA_SUFFIXES:
        return load_qa_file(path, source_id=source_id, location=shown)
    supported = ", ".join(sorted(SUPPORTED_SUFFIXES))
    raise SourceError(shown, f"unsupported file type {suffix or '(no suffix)'!r} (supported: {supported})")


def _files(root: Path) -> list[Path]:
    found: list[Path] = []
    for directory, folders, files in os.walk(root, followlinks=False):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found.extend(Path(directory) / name for name in files if not name.startswith("."))
    return sorted(found, key=lambda path: path.relative_to(root).parts)


def load_folder(root: Path, *, source_id: str, max_files: int = DEFAULT_MAX_FILES) -> LoadResult:
    """Every supported file under root; a file that fails is an ItemError, not the end."""
    if not root.is_dir():
        raise SourceError(str(root), "not a folder")
    result = LoadResult()
    files = _files(root)
    for index, path in enumerate(files):
        location = path.relative_to(root).as_posix()
        if index >= max_files:
            result.errors.append(
                ItemError(location, f"over the {max_files}-file limit; it and the rest skipped")
            )
            break
        if path.is_symlink():
            result.errors.append(ItemError(location, "a symbolic link: not followed"))
            continue
        try:
            result.extend(load_file(path, source_id=source_id, location=location))
        except SourceError as exc:
            result.errors.append(exc.as_item_error())
    return result
