"""chatbot.vectors against a real Milvus Lite file in tmp_path (and Lite's gRPC server on
loopback for the server-URI path): isolation, threshold, re-ingest, delete, dimensions,
hybrid search and its dense-only fallback. Vectors are 8-dimensional to stay fast."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest

from chatbot.vectors import (
    ChunkVector,
    DimensionMismatchError,
    InvalidIdentifierError,
    SchemaMismatchError,
    VectorSpace,
    VectorStore,
    VectorStoreError,
)
from chatbot.vectors import rows as rows_mod
from chatbot.vectors.expr import quote, scope
from chatbot.vectors.naming import collection_name
from chatbot.vectors.schema import build_indexes, build_schema

pytestmark = pytest.mark.timeout(90)

DIM = 8
MODEL = "test-model"


def unit(*components: float) -> list[float]:
    """An 8-dimensional vector with the given leading components."""
    values = [*components] + [0.0] * (DIM - len(components))
    return values


def chunks(texts: list[str], vector: list[float] | None = None, title: str = "T") -> list[ChunkVector]:
    return [
        ChunkVector(position=i, text=text, vector=vector or unit(1.0), title=title, page=i + 1)
        for i, text in enumerate(texts)
    ]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[VectorStore]:
    opened = await VectorStore.open(str(tmp_path / "vectors.db"))
    try:
        yield opened
    finally:
        await opened.close()


@pytest.fixture
async def space(store: VectorStore) -> VectorSpace:
    return await store.space(MODEL, DIM)


async def test_search_never_returns_another_bots_or_tenants_chunks(space: VectorSpace) -> None:
    same = unit(1.0, 0.5)
    await space.upsert_source("t1", "bot-a", "s", chunks(["a1", "a2"], same))
    await space.upsert_source("t1", "bot-b", "s", chunks(["b1", "b2"], same))
    # The same bot id under another tenant is another bot.
    await space.upsert_source("t2", "bot-a", "s", chunks(["t2a1"], same))

    found = {
        (tenant, bot): sorted(hit.text for hit in await space.search(tenant, bot, same, k=10, threshold=-1.0))
        for tenant, bot in [("t1", "bot-a"), ("t1", "bot-b"), ("t2", "bot-a"), ("t2", "bot-b")]
    }
    assert found == {
        ("t1", "bot-a"): ["a1", "a2"],
        ("t1", "bot-b"): ["b1", "b2"],
        ("t2", "bot-a"): ["t2a1"],
        ("t2", "bot-b"): [],
    }
    assert await space.count("t1", "bot-a") == 2
    assert await space.count("t2", "bot-a") == 1


@pytest.mark.parametrize(
    "evil",
    ['x" or bot_id != "', 'x" || tenant != "', "back\\", "it's", '\\" or 1 == 1 or "'],
)
async def test_quotes_in_an_id_neither_break_nor_widen_the_filter(space: VectorSpace, evil: str) -> None:
    vector = unit(0.3, 1.0)
    await space.upsert_source("t1", "bot-a", "s", chunks(["bystander"], vector))
    await space.upsert_source("t1", evil, "s", chunks(["own"], vector))

    assert [h.text for h in await space.search("t1", evil, vector, k=10, threshold=-1.0)] == ["own"]
    assert [h.text for h in await space.search("t1", "x", vector, k=10, threshold=-1.0)] == []
    assert [h.text for h in await space.search(evil, "bot-a", vector, k=10, threshold=-1.0)] == []
    assert await space.count("t1", evil) == 1

    await space.delete_bot("t1", evil)
    await space.delete_source(evil, "bot-a", "s")
    assert await space.count("t1", evil) == 0
    assert await space.count("t1", "bot-a") == 1


def test_quote_escapes_backslash_and_quote() -> None:
    assert quote('a"b\\c') == '"a\\"b\\\\c"'
    assert scope("t", 'b"') == 'tenant == "t" and bot_id == "b\\""'


@pytest.mark.parametrize("bad", ["", "new\nline", "nul\0", "x" * 129])
async def test_unusable_ids_are_refused_before_milvus(space: VectorSpace, bad: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        await space.search("t1", bad, unit(1.0), k=3, threshold=0.0)
    with pytest.raises(InvalidIdentifierError):
        await space.upsert_source(bad, "bot", "s", chunks(["x"]))


async def test_threshold_drops_results_below_it_and_scores_are_cosine(space: VectorSpace) -> None:
    await space.upsert_source(
        "t1",
        "bot",
        "s",
        [
            ChunkVector(0, "same", unit(1.0)),
            ChunkVector(1, "close", unit(1.0, 1.0)),  # cosine 0.7071
            ChunkVector(2, "orthogonal", unit(0.0, 1.0)),  # cosine 0
        ],
    )
    hits = await space.search("t1", "bot", unit(2.0), k=5, threshold=0.5)
    assert [h.text for h in hits] == ["same", "close"]
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    assert hits[1].score == pytest.approx(0.70710678, abs=1e-5)
    assert (hits[0].page, hits[0].position, hits[0].source_id) == (None, 0, "s")
    assert await space.search("t1", "bot", unit(0.0, 0.0, 1.0), k=5, threshold=0.1) == []
    assert len(await space.search("t1", "bot", unit(1.0), k=1, threshold=-1.0)) == 1


async def test_a_hit_keeps_its_title_page_and_location(space: VectorSpace) -> None:
    url = "https://docs.example.com/leave?lang=en"
    await space.upsert_source("t1", "bot", "s", [ChunkVector(0, "25 days", unit(1.0), "Leave", 3, url)])
    (hit,) = await space.search("t1", "bot", unit(1.0), k=5, threshold=0.5)
    assert (hit.title, hit.page, hit.location) == ("Leave", 3, url)
    (hybrid,) = await space.search("t1", "bot", unit(1.0), k=5, threshold=0.5, query_text="days")
    assert hybrid.location == url


async def test_reingest_replaces_the_source_and_is_idempotent(space: VectorSpace) -> None:
    await space.upsert_source("t1", "bot", "doc", chunks([f"old {i}" for i in range(5)]))
    await space.upsert_source("t1", "bot", "other", chunks(["keep me"]))
    assert await space.count("t1", "bot", "doc") == 5

    new = chunks(["new 0", "new 1", "new 2"])
    for _ in range(2):
        assert await space.upsert_source("t1", "bot", "doc", new) == 3
        assert await space.count("t1", "bot", "doc") == 3
    texts = sorted(h.text for h in await space.search("t1", "bot", unit(1.0), k=10, threshold=-1.0))
    assert texts == ["keep me", "new 0", "new 1", "new 2"]
    cited = {
        h.text: (h.source_id, h.title, h.page, h.position)
        for h in await space.search("t1", "bot", unit(1.0), k=10, threshold=-1.0)
    }
    assert cited["new 2"] == ("doc", "T", 3, 2)


async def test_a_crash_between_insert_and_stale_delete_converges_on_reingest(space: VectorSpace) -> None:
    await space.upsert_source("t1", "bot", "doc", chunks(["old 0", "old 1", "old 2"]))
    # What a crash after the insert and before the delete leaves: a second revision's rows
    # beside the first's (inserted here as the crashed ingest did, below the public API).
    crashed = rows_mod.build_rows("t1", "bot", "doc", "crashedrevision", chunks(["new 0", "new 1"]), DIM, 0)
    await asyncio.to_thread(space._client.insert, space.name, crashed)
    assert await space.count("t1", "bot", "doc") == 5

    await space.upsert_source("t1", "bot", "doc", chunks(["new 0", "new 1"]))
    assert await space.count("t1", "bot", "doc") == 2
    found = await space.search("t1", "bot", unit(1.0), k=10, threshold=-1.0)
    assert sorted(h.text for h in found) == ["new 0", "new 1"]


async def test_empty_reingest_and_delete_source_remove_only_that_source(space: VectorSpace) -> None:
    await space.upsert_source("t1", "bot", "a", chunks(["a0", "a1"]))
    await space.upsert_source("t1", "bot", "b", chunks(["b0"]))
    await space.upsert_source("t1", "bot2", "a", chunks(["other bot"]))
    await space.delete_source("t1", "bot", "a")
    assert await space.count("t1", "bot", "a") == 0
    assert await space.count("t1", "bot") == 1
    await space.upsert_source("t1", "bot", "b", [])
    assert await space.count("t1", "bot") == 0
    assert await space.count("t1", "bot2") == 1


async def test_delete_bot_reaches_every_model_collection(store: VectorStore) -> None:
    small = await store.space(MODEL, DIM)
    other = await store.space("another-model", 4)
    await small.upsert_source("t1", "bot", "s", chunks(["x"]))
    await other.upsert_source("t1", "bot", "s", [ChunkVector(0, "y", [1.0, 0, 0, 0])])
    await other.upsert_source("t1", "keep", "s", [ChunkVector(0, "z", [1.0, 0, 0, 0])])
    await store.delete_bot("t1", "bot")
    assert await small.count("t1", "bot") == 0
    assert await other.count("t1", "bot") == 0
    assert await other.count("t1", "keep") == 1


async def test_delete_source_reaches_every_model_collection(store: VectorStore) -> None:
    small = await store.space(MODEL, DIM)
    other = await store.space("another-model", 4)
    await small.upsert_source("t1", "bot", "gone", chunks(["x"]))
    await other.upsert_source("t1", "bot", "gone", [ChunkVector(0, "y", [1.0, 0, 0, 0])])
    await other.upsert_source("t1", "bot", "kept", [ChunkVector(0, "z", [1.0, 0, 0, 0])])
    await store.delete_source("t1", "bot", "gone")
    assert await small.count("t1", "bot") == 0
    assert await other.count("t1", "bot", "gone") == 0
    assert await other.count("t1", "bot", "kept") == 1


async def test_dimension_mismatch_is_a_clear_error_and_writes_nothing(space: VectorSpace) -> None:
    bad = [ChunkVector(0, "ok", unit(1.0)), ChunkVector(1, "short", [1.0, 2.0, 3.0])]
    with pytest.raises(
        DimensionMismatchError, match="chunk at position 1: expected a vector of dimension 8, got 3"
    ):
        await space.upsert_source("t1", "bot", "s", bad)
    assert await space.count("t1", "bot") == 0
    with pytest.raises(DimensionMismatchError, match="query: expected a vector of dimension 8, got 9"):
        await space.search("t1", "bot", [1.0] * 9, k=3, threshold=0.0)
    with pytest.raises(ValueError, match="all zeros"):
        await space.search("t1", "bot", [0.0] * DIM, k=3, threshold=0.0)
    with pytest.raises(ValueError, match="share this position"):
        await space.upsert_source(
            "t1", "bot", "s", [ChunkVector(0, "a", unit(1.0)), ChunkVector(0, "b", unit(1.0))]
        )


async def test_one_collection_per_model_and_dimension(store: VectorStore) -> None:
    a = await store.space("m", 8)
    assert (await store.space("m", 8)) is a
    b = await store.space("m", 4)
    c = await store.space("m-", 8)  # slug collides with "m", the hash does not
    assert len({a.name, b.name, c.name}) == 3
    assert a.name == collection_name("m", 8)
    assert all(name.replace("_", "").isalnum() for name in (a.name, b.name, c.name))


async def test_hybrid_search_promotes_the_keyword_match(space: VectorSpace) -> None:
    assert space.full_text_search is True
    # Near-equal cosines: dense alone ranks "generic" first; BM25 knows the rare word.
    await space.upsert_source(
        "t1",
        "bot",
        "s",
        [
            ChunkVector(0, "generic words about refunds", unit(1.0, 0.01)),
            ChunkVector(1, "the zorblax warranty covers parts", unit(1.0, 0.05)),
            ChunkVector(2, "shipping times and carriers", unit(1.0, 0.06)),
            ChunkVector(3, "unrelated far away", unit(0.0, 1.0)),
        ],
    )
    await space.upsert_source("t1", "other", "s", chunks(["zorblax zorblax zorblax"], unit(1.0)))
    query = unit(1.0)
    dense = await space.search("t1", "bot", query, k=2, threshold=0.5)
    assert dense[0].text == "generic words about refunds"
    hybrid = await space.search("t1", "bot", query, k=2, threshold=0.5, query_text="zorblax warranty")
    assert hybrid[0].text == "the zorblax warranty covers parts"
    assert hybrid[0].score == pytest.approx(float(np.cos(np.arctan(0.05))), abs=1e-4)
    assert hybrid[0].rank_score != hybrid[0].score  # ordered by the fused score
    # The cosine gate holds in hybrid mode: the BM25 match below the threshold stays out.
    gated = await space.search("t1", "bot", unit(0.0, 1.0), k=4, threshold=0.9, query_text="zorblax")
    assert [h.text for h in gated] == ["unrelated far away"]


async def test_dense_only_fallback_is_reported_and_detected_on_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "dense.db")
    async with await VectorStore.open(path, full_text=False) as store:
        space = await store.space(MODEL, DIM)
        assert space.full_text_search is False
        await space.upsert_source("t1", "bot", "s", chunks(["alpha", "beta zorblax"], unit(1.0)))
        dense = await space.search("t1", "bot", unit(1.0), k=2, threshold=0.0)
        with_text = await space.search("t1", "bot", unit(1.0), k=2, threshold=0.0, query_text="zorblax")
        assert [h.chunk_id for h in with_text] == [h.chunk_id for h in dense]
    # Reopened wanting full text: the collection has no BM25 function, and that is detected.
    async with await VectorStore.open(path) as store:
        space = await store.space(MODEL, DIM)
        assert space.full_text_search is False
        assert await space.count("t1", "bot") == 2


async def test_lite_partition_hint_finds_every_bot(space: VectorSpace) -> None:
    assert space._buckets == 16  # the hint is on for this Milvus Lite
    vector = unit(1.0, 1.0)
    bots = [f"bot-{i}" for i in range(40)]
    for bot in bots:
        await space.upsert_source("t1", bot, "s", chunks([f"text of {bot}"], vector))
    for bot in bots:
        hits = await space.search("t1", bot, vector, k=5, threshold=0.0)
        assert [h.text for h in hits] == [f"text of {bot}"]
        assert await space.count("t1", bot) == 1


async def test_data_persists_across_reopen(tmp_path: Path) -> None:
    path = str(tmp_path / "persist.db")
    async with await VectorStore.open(path) as store:
        await (await store.space(MODEL, DIM)).upsert_source("t1", "bot", "s", chunks(["kept"]))
    async with await VectorStore.open(path) as store:
        space = await store.space(MODEL, DIM)
        assert space.full_text_search is True  # read back from the collection's BM25 function
        assert [h.text for h in await space.search("t1", "bot", unit(1.0), k=3, threshold=0.0)] == ["kept"]
        hybrid = await space.search("t1", "bot", unit(1.0), k=3, threshold=0.0, query_text="kept")
        assert [h.text for h in hybrid] == ["kept"]


async def test_a_foreign_collection_under_our_name_is_refused(store: VectorStore) -> None:
    name = collection_name(MODEL, DIM)
    client = store._client
    wrong_dim = build_schema(16, full_text=False)
    await asyncio.to_thread(
        client.create_collection, name, schema=wrong_dim, index_params=build_indexes(client, "FLAT", False)
    )
    with pytest.raises(DimensionMismatchError, match="expected a vector of dimension 16, got 8"):
        await store.space(MODEL, DIM)
    other = collection_name("quick", 4)
    await asyncio.to_thread(client.create_collection, other, dimension=4)
    with pytest.raises(SchemaMismatchError, match="lacks fields"):
        await store.space("quick", 4)


@pytest.fixture
def lite_server(tmp_path: Path) -> Iterator[int]:
    from milvus_lite.adapter.grpc.server import start_server_in_thread  # type: ignore[import-untyped]

    server, db, port = start_server_in_thread(str(tmp_path / "server-data"), host="127.0.0.1", port=0)
    try:
        yield port
    finally:
        server.stop(grace=0)
        db.close()


async def test_a_server_uri_runs_the_same_code(lite_server: int) -> None:
    async with await VectorStore.open(f"http://127.0.0.1:{lite_server}") as store:
        assert store.is_lite is False
        space = await store.space(MODEL, DIM)
        assert space._buckets is None  # a server prunes partitions itself: no hint
        await space.upsert_source("t1", "a", "s", chunks(["mine"], unit(1.0)))
        await space.upsert_source("t1", "b", "s", chunks(["theirs"], unit(1.0)))
        assert [h.text for h in await space.search("t1", "a", unit(1.0), k=5, threshold=0.0)] == ["mine"]


async def test_calls_run_off_the_event_loop(space: VectorSpace) -> None:
    seen: list[str] = []
    original = space._client.search

    def spy(*args: object, **kwargs: object) -> object:
        seen.append(threading.current_thread().name)
        return original(*args, **kwargs)

    space._client.search = spy
    try:
        await space.search("t1", "bot", unit(1.0), k=1, threshold=0.0)
    finally:
        space._client.search = original
    assert len(seen) == 1
    assert seen[0].startswith("milvus")


async def test_bad_uris_and_arguments_are_refused(tmp_path: Path, space: VectorSpace) -> None:
    with pytest.raises(ValueError, match=r"ending in \.db"):
        await VectorStore.open(str(tmp_path / "vectors.sqlite"))
    with pytest.raises(ValueError, match="scheme"):
        await VectorStore.open("ftp://example.invalid/x.db")
    with pytest.raises(ValueError, match="k must be"):
        await space.search("t1", "bot", unit(1.0), k=0, threshold=0.0)
    with pytest.raises(ValueError, match="threshold"):
        await space.search("t1", "bot", unit(1.0), k=1, threshold=1.5)


async def test_flushed_segments_keep_isolation_and_replacement(space: VectorSpace) -> None:
    # 1,200 rows pass the Lite flush threshold: reads and deletes then go through segments.
    rng = np.random.default_rng(3)
    for bot in ("bot-x", "bot-y", "bot-z"):
        vectors = rng.standard_normal((400, DIM)).astype(np.float32)
        many = [ChunkVector(i, f"{bot} {i}", vectors[i]) for i in range(400)]
        await space.upsert_source("t1", bot, "big", many)
    assert space._pending_rows < 1000  # a flush happened
    for bot in ("bot-x", "bot-y", "bot-z"):
        hits = await space.search("t1", bot, rng.standard_normal(DIM).tolist(), k=20, threshold=-1.0)
        assert len(hits) == 20
        assert all(h.text.startswith(f"{bot} ") for h in hits)
        assert await space.count("t1", bot) == 400
    await space.upsert_source("t1", "bot-y", "big", chunks(["only one"]))
    assert await space.count("t1", "bot-y") == 1
    assert await space.count("t1", "bot-x") == 400


async def test_an_unreachable_server_fails_clearly_without_its_credentials() -> None:
    with pytest.raises(VectorStoreError) as caught:
        await VectorStore.open("http://admin:pw-secret@127.0.0.1:9", token="tok-secret", timeout=2.0)
    message = str(caught.value)
    assert "cannot open vector store http://127.0.0.1:9" in message
    assert "pw-secret" not in message
    assert "tok-secret" not in message
