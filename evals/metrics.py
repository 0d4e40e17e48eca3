"""Metric functions (pure: plain lists and numbers in, a number out), each tested on hand-made cases.

Ranking metrics take one query's ranked ids and its set of relevant ids. The answer metrics follow
the definitions of RAGAS (faithfulness, answer relevancy, context precision and recall) and DeepEval,
computed locally: the per-sentence and per-fact judgements come from our own support check
(coach.support) and embedder instead of a hosted LLM judge.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np


# --- ranking -------------------------------------------------------------------------------------
def hit_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """1.0 if any relevant id is among the first k results."""
    relevant = set(relevant)
    return float(any(item in relevant for item in ranked[:k]))


def reciprocal_rank(ranked: Sequence[str], relevant: Iterable[str]) -> float:
    """1 / rank of the first relevant result; 0 when none is returned."""
    relevant = set(relevant)
    return next((1.0 / rank for rank, item in enumerate(ranked, start=1) if item in relevant), 0.0)


def ndcg_at_k(ranked: Sequence[str], relevant: Iterable[str], k: int) -> float:
    """Binary-relevance nDCG@k: DCG of the ranking over DCG of an ideal one."""
    relevant = set(relevant)
    dcg = sum(1.0 / math.log2(rank + 1) for rank, item in enumerate(ranked[:k], start=1) if item in relevant)
    ideal = sum(1.0 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def ranking_scores(ranked: Sequence[str], relevant: Iterable[str]) -> dict[str, float]:
    """The retrieval figures the reports show, for one query."""
    relevant = list(relevant)
    return {"hit@1": hit_at_k(ranked, relevant, 1), "hit@3": hit_at_k(ranked, relevant, 3),
            "hit@5": hit_at_k(ranked, relevant, 5), "mrr": reciprocal_rank(ranked, relevant),
            "ndcg@5": ndcg_at_k(ranked, relevant, 5)}


# --- answers -------------------------------------------------------------------------------------
def share(flags: Iterable[bool]) -> float | None:
    """Share of true flags; None when there is nothing to count (shown as "—", never as 0)."""
    flags = list(flags)
    return sum(map(bool, flags)) / len(flags) if flags else None


def set_precision(predicted: Iterable[str], relevant: Iterable[str]) -> float | None:
    """Share of the predicted ids that are relevant (citation precision); None when nothing was predicted."""
    predicted = set(predicted)
    return len(predicted & set(relevant)) / len(predicted) if predicted else None


def set_recall(predicted: Iterable[str], relevant: Iterable[str]) -> float | None:
    """Share of the relevant ids that were predicted (citation recall); None when nothing is relevant."""
    relevant = set(relevant)
    return len(relevant & set(predicted)) / len(relevant) if relevant else None


def context_precision(relevant_at: Sequence[bool]) -> float | None:
    """RAGAS context precision: the mean of precision@k over the ranks k that hold a relevant context,
    so relevant contexts ranked first score higher. 0 when no context is relevant; None for no contexts."""
    if not relevant_at:
        return None
    hits, total = 0, 0.0
    for k, relevant in enumerate(relevant_at, start=1):
        if relevant:
            hits += 1
            total += hits / k
    return total / hits if hits else 0.0


def cosine(a: Sequence[float], b: Sequence[float]) -> float:
    """Cosine similarity (answer relevancy compares the answer's and the question's embeddings)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b / norm) if norm else 0.0


def refusal_scores(refused: Sequence[bool], out_of_scope: Sequence[bool]) -> dict[str, float | None]:
    """Refusal as a classifier of out-of-scope questions: precision = share of refusals that were
    out of scope, recall = share of out-of-scope questions refused."""
    pairs = list(zip(refused, out_of_scope, strict=True))
    true_positive = sum(r and o for r, o in pairs)
    n_refused, n_outside = sum(r for r, _ in pairs), sum(o for _, o in pairs)
    return {"precision": true_positive / n_refused if n_refused else None,
            "recall": true_positive / n_outside if n_outside else None}


def latency_summary(values_ms: Iterable[float | None]) -> dict[str, float] | None:
    """p50 / p90 / p95 / mean / max of the measured latencies (None values are skipped)."""
    values = np.array([v for v in values_ms if v is not None], dtype=float)
    if not values.size:
        return None
    return {"n": int(values.size), "p50": round(float(np.percentile(values, 50)), 1),
            "p90": round(float(np.percentile(values, 90)), 1), "p95": round(float(np.percentile(values, 95)), 1),
            "mean": round(float(values.mean()), 1), "max": round(float(values.max()), 1)}


def mean(values: Iterable[float | None]) -> float | None:
    """Mean of the defined values, rounded for reports; None when none is defined."""
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None
