"""Sources a bot learns from, read into documents: text and Markdown, PDF, websites, Q&A sheets.

One module per kind (text, pdf, website, qa), `folder` to read a directory of files of any of
those kinds, and `document` for the types they share. Every reader names the item and what is
wrong in its errors, and one bad item never stops the rest of a source.
"""

from chatbot.sources.document import (
    Document,
    ItemError,
    LoadResult,
    SourceError,
    TextFormat,
    combined_hash,
    content_hash,
)

__all__ = [
    "Document",
    "ItemError",
    "LoadResult",
    "SourceError",
    "TextFormat",
    "combined_hash",
    "content_hash",
]
