"""Hybrid retrieval on the real bank: quality floors on the gold set, filters, de-duplication, scores."""
from __future__ import annotations

import pytest

from conftest import ROOT
from evals import datasets
from evals.retrieval import evaluate

GOLD = datasets.load_jsonl(datasets.GOLD)
OUT_OF_SCOPE = datasets.load_jsonl(datasets.OUT_OF_SCOPE)


def test_gold_set_is_big_and_varied_and_points_at_real_questions():
    from coach.bank import load_bank

    ids = {e.id for e in load_bank(ROOT / "corpus")}
    titles = {e.id: e.question.lower() for e in load_bank(ROOT / "corpus")}
    assert len(GOLD) >= 60
    assert {item["style"] for item in GOLD} >= {"paraphrase", "terse", "misspelled", "follow-up", "scenario"}
    for item in GOLD:
        assert item["expected"] and set(item["expected"]) <= ids, item
        assert item["query"].lower() != titles[item["expected"][0]]  # users do not type the titles


@pytest.fixture(scope="module")
def scores(retriever):
    return {mode: evaluate(retriever, GOLD, mode) for mode in ("hybrid", "dense", "bm25")}


def test_hybrid_quality_floors(scores):
    hybrid = scores["hybrid"]
    # Floors sit a few points under the measured figures (hit@5 0.981, MRR 0.900, hit@1 0.838 on
    # 160 queries; see evals/README.md), so a real regression fails while a reworded answer does not.
    assert hybrid["hit@5"] >= 0.94
    assert hybrid["mrr"] >= 0.86
    assert hybrid["hit@1"] >= 0.80


def test_hybrid_is_at_least_as_good_as_either_retriever_alone(scores):
    for single in ("dense", "bm25"):
        assert scores["hybrid"]["hit@5"] >= scores[single]["hit@5"] - 0.02
        assert scores["hybrid"]["mrr"] >= scores[single]["mrr"] - 0.03


def test_filters_apply(retriever):
    hits = retriever.search("how does attention work", k=8, part=2, difficulty="hard")
    assert hits and all(h.metadata["part"] == 2 and h.metadata["difficulty"] == "hard" for h in hits)
    hits = retriever.search("how to stop overfitting", k=5, topic="dropout")
    assert hits and all(h.metadata["topic"] == "dropout" for h in hits)
    assert retriever.search("how to stop overfitting", topic="no such topic") == []


def test_one_result_per_question(retriever):
    hits = retriever.search("transformer self attention multi head scaled dot product", k=10)
    keys = [(h.metadata["source"], h.metadata["qid"]) for h in hits]
    assert len(keys) == len(set(keys)) == 10
    assert [h.rank for h in hits] == list(range(1, 11))


def test_calibrated_score_separates_in_scope_from_out_of_scope(retriever):
    """The answer step refuses below the threshold: most in-scope questions clear it, most others do not."""
    threshold = retriever.calibration.threshold
    inside = [retriever.search(item["query"], k=1)[0].score for item in GOLD]
    outside = [(retriever.search(item["query"], k=1) or [None])[0] for item in OUT_OF_SCOPE]
    outside = [hit.score if hit else 0.0 for hit in outside]
    assert all(0.0 <= s <= 1.0 for s in inside + outside)
    assert sum(s >= threshold for s in inside) / len(inside) >= 0.85
    assert sum(s < threshold for s in outside) / len(outside) >= 0.85


def test_langchain_retriever_interface(retriever):
    docs = retriever.invoke("what is the reparameterization trick")
    assert len(docs) == retriever.k
    assert docs[0].metadata["qid"] == "p2-reparameterization-trick"
    assert {"chunk_id", "score", "source", "question"} <= set(docs[0].metadata)


def test_chroma_never_uses_its_default_embedding_function(corpus_index):
    assert corpus_index.collection._embedding_function is None
    assert corpus_index.collection.configuration.get("embedding_function") is None
