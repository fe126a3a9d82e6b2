"""Retrieval evaluation of the chatbot layer: recall@5 and MRR on a written corpus, and citations.

    python bench/chatbot_eval.py [--limit N] [--ask-sample 20] [--json bench/out/chatbot_eval.json]

The corpus (bench/chatbot_eval/corpus/) is a fictional company's handbook, policies, product
docs, runbooks and FAQs: Markdown and plain text, Q&A sheets (CSV), and PDFs written at run time
from `*.pdf.txt` (pages split on form feeds) by the tests' tiny PDF writer, so no binary is
committed. bench/chatbot_eval/questions.jsonl holds the questions, each paraphrased, with its
supporting source(s) and a short passage that the supporting chunk must contain.

Everything runs the real path on loopback: a hub in-process (tests.harness.running_hub) with a
`local` credential (all-MiniLM-L6-v2 on the CPU) and an `openai` credential on the fake upstream;
the chatbot server (Chatbot.open/serve) with SQLite and Milvus Lite in a temporary directory.
Every file is added through ChatbotService.AddSource, so the chatbot's IngestWorker reads,
chunks, embeds (through the hub's Embed) and stores it. Each question is then asked of
HubRetriever with the bot's defaults (top_k 5, the default score threshold, no rerank model).

What is counted:
- hit at rank r: the r-th retrieved passage comes from a supporting source and contains the
  supporting passage (whitespace collapsed, case ignored). recall@5 = questions with a hit in
  the top 5 / questions; MRR = mean of 1/(first hit rank), 0 when none.
- source recall@5: a passage from a supporting source in the top 5, whatever its text.
- citations: for an evenly spaced sample, Ask through the gRPC API with the fake upstream
  answering "[1]", so the answer cites the top passage; counted as citing a supporting source
  when its first citation's source_name is one of the question's sources.

Prints a Markdown section and writes the figures (with every miss) to --json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from chatbot.auth import Caller
from chatbot.config import Settings
from chatbot.ingest import model_key
from chatbot.retrieval import HubRetriever
from chatbot.server import Chatbot
from chatbot.v1 import chatbot_pb2 as pb
from chatbot.v1 import chatbot_pb2_grpc
from integration_hub.v1 import credentials_pb2 as cpb
from tests.chatbot._ingest_fixtures import make_pdf
from tests.fakes.openai_server import ChatReply, FakeOpenAI
from tests.harness import HubUnderTest, running_hub, settings_for

EVAL_DIR = Path(__file__).resolve().parent / "chatbot_eval"
CORPUS = EVAL_DIR / "corpus"
QUESTIONS = EVAL_DIR / "questions.jsonl"
UNANSWERABLE = EVAL_DIR / "unanswerable.jsonl"
DEFAULT_JSON = Path(__file__).resolve().parent / "out" / "chatbot_eval.json"
OPENAI_KEY = "sk-test-ChatbotEval0123456789abcd"
POLICY = "[defaults]\nmax_attempts = 1\n"
TIMEOUT = 120.0
INGEST_SECONDS = 600.0
K = 5
MINILM_DIMENSIONS = 384


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    question: str
    sources: tuple[str, ...]
    passage: str


@dataclass(frozen=True, slots=True)
class Upload:
    name: str  # the corpus-relative path, which is the source's name
    kind: pb.SourceKind.ValueType
    filename: str
    data: bytes


@dataclass
class Outcome:
    id: str
    question: str
    rank: int | None  # 1-based rank of the first hit, None when none in the top K
    source_rank: int | None  # 1-based rank of the first passage from a supporting source
    retrieved: list[str]  # "source_name#title" of each passage, in order
    top_score: float
    seconds: float


@dataclass
class AskOutcome:
    id: str
    cited: list[str]
    fallback: bool
    cites_support: bool


@dataclass
class Report:
    documents: int
    kinds: dict[str, int]
    chunks: int
    questions: int
    recall_at_k: float
    source_recall_at_k: float
    mrr: float
    retrieval_ms_p50: float
    ingest_seconds: float
    asked: int
    asked_citing_support: int
    threshold: float
    hybrid: bool  # dense + BM25 fused, as the vector store does where the engine has full-text search
    unanswerable: int
    unanswerable_fallback: int  # of those, how many found nothing above the threshold
    misses: list[Outcome] = field(default_factory=list)
    asks: list[AskOutcome] = field(default_factory=list)


def normalized(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def load_questions(path: Path = QUESTIONS) -> list[Question]:
    questions = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            questions.append(Question(row["id"], row["question"], tuple(row["sources"]), row["passage"]))
    return questions


def load_unanswerable(path: Path = UNANSWERABLE) -> list[str]:
    return [json.loads(line)["question"] for line in path.read_text().splitlines() if line.strip()]


def corpus_uploads(corpus: Path = CORPUS) -> list[Upload]:
    """Every corpus file as the AddSource it becomes; `x.pdf.txt` becomes the PDF `x.pdf`."""
    uploads = []
    for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
        name = path.relative_to(corpus).as_posix()
        if name.endswith(".pdf.txt"):
            name = name.removesuffix(".txt")
            pages = path.read_text().split("\f")
            data = make_pdf(pages, title=pages[0].splitlines()[0])
            uploads.append(Upload(name, pb.SOURCE_KIND_PDF, name, data))
        elif path.suffix == ".csv":
            uploads.append(Upload(name, pb.SOURCE_KIND_QA, name, path.read_bytes()))
        elif path.suffix in (".md", ".txt"):
            uploads.append(Upload(name, pb.SOURCE_KIND_TEXT, name, path.read_bytes()))
        else:
            raise ValueError(f"{path}: no source kind for this file")
    return uploads


def kind_counts(uploads: Sequence[Upload]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for upload in uploads:
        suffix = Path(upload.name).suffix.lstrip(".")
        counts[suffix] = counts.get(suffix, 0) + 1
    return counts


@dataclass
class Env:
    hut: HubUnderTest
    upstream: FakeOpenAI
    chatbot: Chatbot
    stub: chatbot_pb2_grpc.ChatbotServiceStub

    def admin(self) -> list[tuple[str, str]]:
        return self.hut.auth(self.hut.tokens.admin)


@asynccontextmanager
async def running_env(tmp: Path) -> AsyncIterator[Env]:
    """A hub in-process with local and fake-openai credentials, and the chatbot server on it."""
    async with (
        FakeOpenAI(valid_keys={OPENAI_KEY}) as upstream,
        running_hub(settings_for(tmp, database_url=None, policy=POLICY)) as hut,
    ):
        for provider, name, secret, options in (
            ("openai", "openai", {"api_key": OPENAI_KEY}, {"base_url": upstream.base_url}),
            ("local", "local", {}, {}),
        ):
            await hut.credentials_stub().CreateCredential(
                cpb.CreateCredentialRequest(provider=provider, name=name, secret=secret, options=options),
                metadata=hut.auth(hut.tokens.admin),
                timeout=TIMEOUT,
            )
        tokens_file = tmp / "chatbot-tokens"
        tokens_file.write_text(hut.tokens.invoke_only + "\n")
        settings = Settings(
            hub_target=hut.grpc_target,
            hub_tokens_file=str(tokens_file),
            database_url=f"sqlite:///{tmp / 'chatbot.db'}",
            vectors_uri=str(tmp / "vectors.db"),
            grpc_port=0,
            http_port=0,
        )
        chatbot = await Chatbot.open(settings)
        try:
            await chatbot.serve()
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{chatbot.grpc_port}")
            try:
                yield Env(hut, upstream, chatbot, chatbot_pb2_grpc.ChatbotServiceStub(channel))
            finally:
                await channel.close()
        finally:
            await chatbot.close()


def eval_bot(threshold: float | None = None) -> pb.Bot:
    # top_k left unset, and the threshold unless asked for: the bot's defaults are what is measured.
    bot = pb.Bot(
        name="Larkspur helpdesk",
        purpose=pb.PURPOSE_SUPPORT,
        chat_model=pb.ModelRef(credential="openai", model="gpt-4o-mini"),
        embedding_model=pb.ModelRef(credential="local", model="all-MiniLM-L6-v2"),
    )
    if threshold is not None:
        bot.score_threshold = threshold
    return bot


async def ingest_all(env: Env, bot: pb.Bot, uploads: Sequence[Upload]) -> int:
    """Adds every upload, waits for every task; returns the chunks written. Raises on a failure."""
    tasks = []
    for upload in uploads:
        request = pb.AddSourceRequest(
            bot_id=bot.id, name=upload.name, kind=upload.kind, data=upload.data, filename=upload.filename
        )
        tasks.append((await env.stub.AddSource(request, metadata=env.admin(), timeout=TIMEOUT)).task)
    chunks = 0
    async with asyncio.timeout(INGEST_SECONDS):
        for task in tasks:
            while task.state in (pb.TASK_STATE_QUEUED, pb.TASK_STATE_RUNNING):
                await asyncio.sleep(0.05)
                poll = pb.GetIngestionTaskRequest(id=task.id)
                task = (await env.stub.GetIngestionTask(poll, metadata=env.admin())).task
            if task.state != pb.TASK_STATE_SUCCEEDED or task.errors:
                raise RuntimeError(f"ingesting {task.source_id} did not succeed cleanly: {task}")
            chunks += task.chunks_written
    return chunks


def first_rank(passages: Sequence[tuple[str, str]], question: Question, *, text: bool) -> int | None:
    wanted = normalized(question.passage)
    for rank, (source, passage) in enumerate(passages, start=1):
        if source in question.sources and (not text or wanted in normalized(passage)):
            return rank
    return None


CALLER = Caller(tenant="acme", scopes=frozenset({"invoke"}))  # the hub harness's tenant


def retriever(env: Env) -> HubRetriever:
    return HubRetriever(env.chatbot.hubs, env.chatbot.vectors, env.chatbot.parts.catalog)


async def retrieve_all(env: Env, bot: pb.Bot, questions: Sequence[Question]) -> list[Outcome]:
    found_by = retriever(env)
    outcomes = []
    for question in questions:
        started = time.perf_counter()
        passages = await found_by.retrieve(CALLER, bot, question.question)
        seconds = time.perf_counter() - started
        found = [(p.source_name, p.text) for p in passages]
        outcomes.append(
            Outcome(
                id=question.id,
                question=question.question,
                rank=first_rank(found[:K], question, text=True),
                source_rank=first_rank(found[:K], question, text=False),
                retrieved=[f"{p.source_name}#{p.title}" for p in passages],
                top_score=round(passages[0].score, 4) if passages else 0.0,
                seconds=seconds,
            )
        )
    return outcomes


def sample(questions: Sequence[Question], count: int) -> list[Question]:
    """`count` questions evenly spaced through the list (all of them when there are fewer)."""
    if count <= 0:
        return []
    if count >= len(questions):
        return list(questions)
    step = len(questions) / count
    return [questions[int(i * step)] for i in range(count)]


async def ask_sample(env: Env, bot: pb.Bot, questions: Sequence[Question]) -> list[AskOutcome]:
    env.upstream.default_reply = ChatReply(text="[1]")  # the answer cites its top passage
    outcomes = []
    for question in questions:
        answer = await env.stub.Ask(
            pb.AskRequest(bot_id=bot.id, question=question.question), metadata=env.admin(), timeout=TIMEOUT
        )
        cited = [c.source_name for c in answer.citations]
        outcomes.append(
            AskOutcome(
                id=question.id,
                cited=cited,
                fallback=answer.fallback,
                cites_support=bool(cited) and cited[0] in question.sources,
            )
        )
    return outcomes


async def fallbacks(env: Env, bot: pb.Bot, questions: Sequence[str]) -> int:
    """How many questions find nothing above the threshold: the bot's fallback, with no model call."""
    found_by = retriever(env)
    empty = 0
    for question in questions:
        if not await found_by.retrieve(CALLER, bot, question):
            empty += 1
    return empty


async def hybrid_search(env: Env, bot: pb.Bot) -> bool:
    space = await env.chatbot.vectors.space(model_key(bot.embedding_model), MINILM_DIMENSIONS)
    return space.full_text_search


async def evaluate(
    tmp: Path,
    questions: Sequence[Question] | None = None,
    ask_count: int = 20,
    threshold: float | None = None,
    corpus: Path = CORPUS,
) -> Report:
    questions = list(questions) if questions is not None else load_questions()
    unanswerable = load_unanswerable()
    uploads = corpus_uploads(corpus)
    async with running_env(tmp) as env:
        request = pb.CreateBotRequest(bot=eval_bot(threshold))
        bot = (await env.stub.CreateBot(request, metadata=env.admin())).bot
        started = time.perf_counter()
        chunks = await ingest_all(env, bot, uploads)
        ingest_seconds = time.perf_counter() - started
        outcomes = await retrieve_all(env, bot, questions)
        asks = await ask_sample(env, bot, sample(questions, ask_count))
        unanswered = await fallbacks(env, bot, unanswerable)
        hybrid = await hybrid_search(env, bot)
    hits = [o for o in outcomes if o.rank is not None]
    return Report(
        documents=len(uploads),
        kinds=kind_counts(uploads),
        chunks=chunks,
        questions=len(outcomes),
        recall_at_k=len(hits) / len(outcomes),
        source_recall_at_k=sum(1 for o in outcomes if o.source_rank is not None) / len(outcomes),
        mrr=sum(1 / o.rank for o in hits if o.rank) / len(outcomes),
        retrieval_ms_p50=statistics.median(o.seconds for o in outcomes) * 1000,
        ingest_seconds=ingest_seconds,
        asked=len(asks),
        asked_citing_support=sum(1 for a in asks if a.cites_support),
        threshold=bot.score_threshold,
        hybrid=hybrid,
        unanswerable=len(unanswerable),
        unanswerable_fallback=unanswered,
        misses=[o for o in outcomes if o.rank is None],
        asks=asks,
    )


def markdown(report: Report, command: str) -> str:
    kinds = ", ".join(f"{count} {kind}" for kind, count in sorted(report.kinds.items()))
    lines = [
        "## Chatbot retrieval evaluation",
        "",
        f"`{command}`: {report.documents} documents ({kinds}), {report.chunks} chunks, "
        f"{report.questions} questions; the local all-MiniLM-L6-v2 through the hub, Milvus Lite, "
        f"HubRetriever with top_k {K}, score threshold {report.threshold:.2f}, no rerank model, "
        f"{'hybrid dense + BM25 (RRF)' if report.hybrid else 'dense only'}.",
        "",
        "| measure | value |",
        "| --- | --- |",
        f"| recall@{K} (supporting source and passage in a top-{K} chunk) | {report.recall_at_k:.3f} |",
        f"| source recall@{K} (a chunk of a supporting source in the top {K}) | "
        f"{report.source_recall_at_k:.3f} |",
        f"| MRR (first hit, top {K}) | {report.mrr:.3f} |",
        f'| answers citing a supporting source first (fake upstream answers "[1]") | '
        f"{report.asked_citing_support} / {report.asked} |",
        f"| unanswerable questions given the fallback (nothing above the threshold) | "
        f"{report.unanswerable_fallback} / {report.unanswerable} |",
        f"| retrieval p50 (Embed through the hub + Milvus Lite search) | {report.retrieval_ms_p50:.1f} ms |",
        f"| ingestion of the corpus (AddSource to every task done) | {report.ingest_seconds:.1f} s |",
        "",
    ]
    if report.misses:
        lines += ["Misses:", ""]
        lines += [f"- {m.id} {m.question!r}: got {m.retrieved[:3]}" for m in report.misses]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    parser.add_argument("--ask-sample", type=int, default=20, help="questions also asked through Ask")
    parser.add_argument(
        "--threshold", type=float, default=None, help="the bot's score threshold (default: the bot default)"
    )
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write the results")
    args = parser.parse_args()
    questions = load_questions()
    if args.limit:
        questions = questions[: args.limit]
    with tempfile.TemporaryDirectory(prefix="chatbot-eval-") as tmp:
        report = asyncio.run(evaluate(Path(tmp), questions, args.ask_sample, args.threshold))
    print(markdown(report, "python " + " ".join(["bench/chatbot_eval.py", *sys.argv[1:]])))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")
    print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
