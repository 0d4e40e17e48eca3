"""Ranking metrics over one query's ranked ids and its set of relevant ids (pure functions)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


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

