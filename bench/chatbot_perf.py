"""Chatbot speed: ingestion rate with local embeddings, and the layer's added time to first token.

    python bench/chatbot_perf.py [--chunks 10000] [--ttft-n 50]

The same set-up as bench/chatbot_eval.py (a hub in-process on loopback with the `local`
all-MiniLM-L6-v2 and the fake OpenAI upstream, the chatbot server with SQLite and Milvus
Lite in a temporary directory).

- Ingestion: plain-text sources made of the eval corpus's paragraphs (each copy numbered, so
  that no two chunks are the same text), enough of them to make at least --chunks chunks,
  added through ChatbotService.AddSource; the IngestWorker reads, chunks, embeds through the
  hub's Embed in slices of 256 and writes Milvus Lite. The model is loaded first; timed from
  the first AddSource to the last task done: chunks written / seconds. The embedding runs in
  the hub's process, on the machine's CPUs (2 here), shared with whatever else runs.
- Added TTFT: the bot answers over the ingested eval corpus; the fake upstream streams its
  answer in pieces. --ttft-n times, interleaved: StreamAsk on the chatbot's gRPC API, time to
  its first delta; and StreamChat direct to the hub (the chatbot's own hub client) with the
  very messages the chatbot sent upstream for that question (same prompt), time to its first
  text delta. The added TTFT is the difference of the p50s (also the p50 of the pairwise
  differences). It includes what the chatbot does before calling the model: the caller's
  token check (cached after the first), the question's Embed through the hub, the Milvus Lite
  search, the prompt, and one more gRPC hop.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import chatbot_eval as ev

from chatbot.chunking import chunk_documents, default_counter
from chatbot.hub_client import Message, ModelRef, TextDelta
from chatbot.sources.text import text_document
from chatbot.v1 import chatbot_pb2 as pb
from tests.fakes.openai_server import ChatReply

PARAGRAPHS_PER_SOURCE = 400
EMBEDDING = ModelRef("local", "all-MiniLM-L6-v2")
ANSWER_PIECES = ["Carried days ", "expire on ", "30 April [1]."]


def corpus_paragraphs() -> list[str]:
    paragraphs = []
    for path in sorted(ev.CORPUS.rglob("*.md")) + sorted(ev.CORPUS.rglob("*.txt")):
        for block in path.read_text().split("\n\n"):
            block = block.strip()
            if block and not block.startswith("#"):
                paragraphs.append(block.replace("\f", " "))
    return paragraphs


def synthetic_sources(wanted_chunks: int) -> list[tuple[str, bytes, int]]:
    """(name, text, chunks) sources whose chunks add up to at least wanted_chunks."""
    paragraphs = corpus_paragraphs()
    counter = default_counter()
    sources: list[tuple[str, bytes, int]] = []
    total = 0
    copy = 0
    while total < wanted_chunks:
        lines = []
        for _ in range(PARAGRAPHS_PER_SOURCE):
            lines.append(f"Note {copy}. {paragraphs[copy % len(paragraphs)]}")
            copy += 1
        text = "\n\n".join(lines) + "\n"
        name = f"bulk/part-{len(sources):03d}.txt"
        chunks = len(
            chunk_documents(
                [text_document(text.encode(), source_id=name, location=name, format="plain")], None, counter
            )
        )
        sources.append((name, text.encode(), chunks))
        total += chunks
    return sources


async def measure_ingestion(env: ev.Env, bot: pb.Bot, wanted: int) -> dict[str, float]:
    sources = synthetic_sources(wanted)
    uploads = [ev.Upload(name, pb.SOURCE_KIND_TEXT, name, data) for name, data, _ in sources]
    # The hub loads the model on its first Embed (seconds): load it before the clock starts.
    await env.chatbot.hubs.hub("acme").embed(["warm up"], EMBEDDING, input_type="document")
    started = time.perf_counter()
    chunks = await ev.ingest_all(env, bot, uploads)
    seconds = time.perf_counter() - started
    return {
        "sources": len(uploads),
        "chunks": chunks,
        "seconds": seconds,
        "chunks_per_second": chunks / seconds,
    }


async def stream_ask_ttft(env: ev.Env, bot: pb.Bot, question: str) -> float:
    started = time.perf_counter()
    call = env.stub.StreamAsk(
        pb.StreamAskRequest(bot_id=bot.id, question=question), metadata=env.admin(), timeout=ev.TIMEOUT
    )
    first = 0.0
    async for event in call:
        if event.delta and not first:
            first = time.perf_counter() - started
    if not first:
        raise RuntimeError(f"StreamAsk gave no delta for {question!r}")
    return first


async def stream_chat_ttft(env: ev.Env, messages: list[dict[str, str]]) -> float:
    hub = env.chatbot.hubs.hub("acme")
    typed = [Message(m["role"], m["content"]) for m in messages]  # type: ignore[arg-type]
    started = time.perf_counter()
    first = 0.0
    stream = hub.stream_chat(ModelRef("openai", "gpt-4o-mini"), typed)
    try:
        async for event in stream:
            if isinstance(event, TextDelta) and event.text and not first:
                first = time.perf_counter() - started
    finally:
        await stream.aclose()
    if not first:
        raise RuntimeError("StreamChat gave no text delta")
    return first


async def measure_ttft(env: ev.Env, bot: pb.Bot, count: int) -> dict[str, float]:
    env.upstream.default_reply = ChatReply(text="".join(ANSWER_PIECES), text_chunks=ANSWER_PIECES)
    questions = [q.question for q in ev.load_questions()]
    await stream_ask_ttft(env, bot, questions[0])  # warm: caller cache, channels, model
    ask: list[float] = []
    chat: list[float] = []
    for i in range(count):
        question = questions[i % len(questions)]
        ask.append(await stream_ask_ttft(env, bot, question))
        sent = env.upstream.requests[-1].json()["messages"]
        chat.append(await stream_chat_ttft(env, sent))
    ask_p50 = statistics.median(ask) * 1000
    chat_p50 = statistics.median(chat) * 1000
    return {
        "n": count,
        "stream_ask_p50_ms": ask_p50,
        "stream_chat_p50_ms": chat_p50,
        "added_p50_ms": ask_p50 - chat_p50,
        "added_pairwise_p50_ms": statistics.median(a - c for a, c in zip(ask, chat, strict=True)) * 1000,
        "stream_ask_p90_ms": statistics.quantiles(ask, n=10)[-1] * 1000,
        "stream_chat_p90_ms": statistics.quantiles(chat, n=10)[-1] * 1000,
    }


async def run(tmp: Path, chunks: int, ttft_n: int) -> tuple[dict[str, float], dict[str, float]]:
    async with ev.running_env(tmp) as env:
        request = pb.CreateBotRequest(bot=ev.eval_bot())
        bulk = (await env.stub.CreateBot(request, metadata=env.admin())).bot
        ingestion = await measure_ingestion(env, bulk, chunks)
        request.bot.name = "Larkspur TTFT"
        bot = (await env.stub.CreateBot(request, metadata=env.admin())).bot
        await ev.ingest_all(env, bot, ev.corpus_uploads())
        ttft = await measure_ttft(env, bot, ttft_n)
    return ingestion, ttft


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks to ingest (at least)")
    parser.add_argument("--ttft-n", type=int, default=50, help="timed StreamAsk/StreamChat pairs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="chatbot-perf-") as tmp:
        ingestion, ttft = asyncio.run(run(Path(tmp), args.chunks, args.ttft_n))
    print("## Chatbot speed\n")
    print(f"`python bench/chatbot_perf.py --chunks {args.chunks} --ttft-n {args.ttft_n}`\n")
    print("| measure | value |\n| --- | --- |")
    print(
        f"| ingestion, {ingestion['chunks']:.0f} chunks in {ingestion['sources']:.0f} text sources "
        f"(AddSource to done, local embeddings through the hub) | {ingestion['seconds']:.1f} s, "
        f"{ingestion['chunks_per_second']:.1f} chunks/s |"
    )
    print(
        f"| StreamChat direct to the hub, first delta p50 / p90 (N={ttft['n']:.0f}) | "
        f"{ttft['stream_chat_p50_ms']:.1f} / {ttft['stream_chat_p90_ms']:.1f} ms |"
    )
    print(
        f"| StreamAsk on the chatbot, first delta p50 / p90 | "
        f"{ttft['stream_ask_p50_ms']:.1f} / {ttft['stream_ask_p90_ms']:.1f} ms |"
    )
    print(
        f"| chatbot's added TTFT, p50 difference (pairwise p50) | {ttft['added_p50_ms']:.1f} ms "
        f"({ttft['added_pairwise_p50_ms']:.1f} ms) |"
    )


if __name__ == "__main__":
    main()
