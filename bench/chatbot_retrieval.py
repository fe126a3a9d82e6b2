"""Retrieval time of chatbot.vectors in Milvus Lite: a micro-measure, not a test.

    python bench/chatbot_retrieval.py [--chunks 100000] [--bots 50] [--queries 200]
                                      [--dim 384] [--index FLAT] [--hybrid] [--path FILE.db]

Loads --chunks synthetic chunks (random unit vectors of --dim, short synthetic texts)
spread over --bots bots of one tenant into a fresh Milvus Lite file through
VectorSpace.upsert_source (sources of 100 chunks), then times --queries searches of k=5
for one bot each (the bot filter always on) and prints the load rate and search p50/p99
in ms. The issue's target: p50 <= 30 ms at 100,000 chunks. The file is deleted after,
unless --path is given.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.vectors import ChunkVector, VectorSpace, VectorStore

SOURCE_CHUNKS = 100
WORDS = ["refund", "shipping", "warranty", "invoice", "account", "password", "billing", "order", "return"]


def synthetic_source(rng: np.random.Generator, dim: int, count: int) -> list[ChunkVector]:
    vectors = rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        ChunkVector(
            position=i,
            text=" ".join(rng.choice(WORDS, size=40)),
            vector=vectors[i],
            title=f"doc {i // 10}",
            page=i // 10 + 1,
        )
        for i in range(count)
    ]


async def load(space: VectorSpace, rng: np.random.Generator, args: argparse.Namespace) -> float:
    started = time.perf_counter()
    written = 0
    source = 0
    while written < args.chunks:
        count = min(SOURCE_CHUNKS, args.chunks - written)
        bot = f"bot-{source % args.bots}"
        await space.upsert_source("tenant", bot, f"source-{source}", synthetic_source(rng, args.dim, count))
        written += count
        source += 1
        if source % 100 == 0:
            print(f"  loaded {written} chunks", file=sys.stderr, flush=True)
    return written / (time.perf_counter() - started)


async def measure(space: VectorSpace, rng: np.random.Generator, args: argparse.Namespace) -> list[float]:
    timings: list[float] = []
    bots = min(args.bots, -(-args.chunks // SOURCE_CHUNKS))  # the bots that got a source
    for i in range(args.queries):
        query = rng.standard_normal(args.dim).astype(np.float32)
        text = " ".join(rng.choice(WORDS, size=3)) if args.hybrid else None
        started = time.perf_counter()
        bot = f"bot-{i % bots}"
        hits = await space.search("tenant", bot, query, k=5, threshold=-1.0, query_text=text)
        timings.append((time.perf_counter() - started) * 1000)
        if len(hits) != 5:
            raise SystemExit(f"search {i} found {len(hits)} chunks, expected 5")
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--bots", type=int, default=50)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--index", default="FLAT", help="vector index type (FLAT, AUTOINDEX, ...)")
    parser.add_argument("--hybrid", action="store_true", help="time hybrid dense + BM25 searches")
    parser.add_argument("--path", help="Milvus Lite file to (re)use; a temporary one by default")
    args = parser.parse_args()

    workdir = None if args.path else tempfile.mkdtemp(prefix="chatbot-retrieval-")
    path = args.path or str(Path(workdir or ".") / "bench.db")
    rng = np.random.default_rng(9)
    try:
        async with await VectorStore.open(path, index_type=args.index) as store:
            space = await store.space("bench-model", args.dim)
            existing = await space.count("tenant", "bot-0")
            rate = await load(space, rng, args) if existing == 0 else float("nan")
            await measure(space, rng, argparse.Namespace(**{**vars(args), "queries": 5}))  # warm-up
            timings = sorted(await measure(space, rng, args))
    finally:
        if workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    p50 = statistics.median(timings)
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    mode = "hybrid dense+BM25" if args.hybrid else "dense"
    print(
        f"chunks={args.chunks} bots={args.bots} dim={args.dim} index={args.index} {mode} k=5: "
        f"load {rate:.0f} chunks/s, search p50 {p50:.1f} ms, p99 {p99:.1f} ms over {len(timings)} queries "
        f"(target p50 <= 30 ms at 100,000 chunks: {'met' if p50 <= 30 else 'NOT met'})"
    )


if __name__ == "__main__":
    asyncio.run(main())
