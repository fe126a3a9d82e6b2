"""From a question to the bot's passages, and from a prompt to a streamed answer, through the hub.

Retrieval: the question's vector from the hub's Embed (the bot's embedding model, as a
query), the bot's nearest chunks above its threshold (hybrid with BM25 where the
vector engine has it), and, when the bot has a rerank model, the hub's Rerank over
three times as many candidates, keeping the bot's top_k. The cosine threshold is the
gate in both cases: rerank reorders what passed it, it never admits a chunk it refused.

Hybrid search (dense + BM25) is off by default (CHATBOT_HYBRID_SEARCH=1 turns it on):
on bench/chatbot_eval, Milvus Lite's BM25 scores stop words ("Is there a ..." pulls in
unrelated FAQ rows) and the fusion pushed right dense hits out of the top 5 (recall@5
0.885 hybrid against 0.914 dense), at twice the search time.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from chatbot.answer import ChatUsage
from chatbot.auth import Caller
from chatbot.catalog import Catalog
from chatbot.errors import NotFound
from chatbot.hub_client import ChatEnd, Message, TextDelta
from chatbot.ingest import hub_model, model_key
from chatbot.prompts import Passage
from chatbot.tenants import TenantHubs
from chatbot.v1 import chatbot_pb2 as pb
from chatbot.vectors import MAX_K, Hit, VectorStore

RERANK_CANDIDATES = 3  # times top_k


class HubRetriever:
    def __init__(
        self, hubs: TenantHubs, vectors: VectorStore, catalog: Catalog, *, hybrid: bool = False
    ) -> None:
        self._hubs = hubs
        self._vectors = vectors
        self._catalog = catalog
        self._hybrid = hybrid

    async def retrieve(self, caller: Caller, bot: pb.Bot, question: str) -> list[Passage]:
        hub = self._hubs.hub(caller.tenant)
        embedded = await hub.embed([question], hub_model(bot.embedding_model), input_type="query")
        vector = embedded.vectors[0]
        space = await self._vectors.space(model_key(bot.embedding_model), len(vector))
        reranking = bot.HasField("rerank_model")
        wanted = min(MAX_K, bot.top_k * RERANK_CANDIDATES) if reranking else bot.top_k
        hits = await space.search(
            caller.tenant,
            bot.id,
            vector,
            wanted,
            bot.score_threshold,
            query_text=question if self._hybrid else None,
        )
        scored = [(hit, hit.score) for hit in hits]
        if reranking and hits:
            reranked = await hub.rerank(
                question, [hit.text for hit in hits], hub_model(bot.rerank_model), top_n=bot.top_k
            )
            scored = [(hits[r.index], r.score) for r in reranked.hits]
        return await self._passages(caller.tenant, bot.id, scored[: bot.top_k])

    async def _passages(self, tenant: str, bot_id: str, scored: list[tuple[Hit, float]]) -> list[Passage]:
        names: dict[str, str] = {}
        passages: list[Passage] = []
        for hit, score in scored:
            if hit.source_id not in names:
                try:
                    names[hit.source_id] = (await self._catalog.get(tenant, bot_id, hit.source_id)).name
                except NotFound:
                    # Deleted since it was searched: its vectors are going too; do not cite it.
                    names[hit.source_id] = ""
            if not names[hit.source_id]:
                continue
            passages.append(
                Passage(
                    text=hit.text,
                    source_id=hit.source_id,
                    source_name=names[hit.source_id],
                    title=hit.title,
                    page=hit.page or 0,
                    url=hit.location if hit.location.startswith(("http://", "https://")) else "",
                    score=score,
                )
            )
        return passages


class HubChat:
    """The hub's StreamChat as chatbot.answer wants it: text pieces, then the usage."""

    def __init__(self, hubs: TenantHubs) -> None:
        self._hubs = hubs

    async def stream(
        self, caller: Caller, model: pb.ModelRef, messages: list[tuple[str, str]]
    ) -> AsyncIterator[tuple[str, ChatUsage | None]]:
        hub = self._hubs.hub(caller.tenant)
        typed = [Message(role, text) for role, text in messages]  # type: ignore[arg-type]
        stream = hub.stream_chat(hub_model(model), typed)
        try:
            async for event in stream:
                if isinstance(event, TextDelta):
                    yield event.text, None
                elif isinstance(event, ChatEnd):
                    yield "", ChatUsage(event.usage.input_tokens, event.usage.output_tokens)
        finally:
            await stream.aclose()  # a consumer gone early cancels the hub call
