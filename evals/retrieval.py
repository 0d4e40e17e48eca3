"""Retrieval quality on the gold set: hit@1/3/5, MRR and nDCG@5 for dense, BM25 and hybrid search.

    python -m evals.retrieval [--modes hybrid dense bm25] [--out FILE.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from evals.metrics import hit_at_k, ndcg_at_k, reciprocal_rank

SETS = Path(__file__).with_name("sets")
GOLD = SETS / "retrieval.jsonl"


def load_jsonl(path: Path) -> list[dict]:
    rows = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON: {exc}") from None
    return rows


def evaluate(retriever, gold: list[dict], mode: str = "hybrid", k: int = 5) -> dict:
    """Aggregate metrics plus per-style and per-part breakdowns and search latency."""
    rows, latencies = [], []
    retriever.store.vectors.embeddings.clear_cache()  # time real query embedding, not cache hits
    for item in gold:
        hits = retriever.search(item["query"], k=k, mode=mode)
        latencies.append(retriever.last_timing_ms)
        ranked = [hit.metadata.get("qid") for hit in hits]
        rows.append({"style": item.get("style", "?"), "part": _part_of(item["expected"][0]),
                     "hit@1": hit_at_k(ranked, item["expected"], 1), "hit@3": hit_at_k(ranked, item["expected"], 3),
                     "hit@5": hit_at_k(ranked, item["expected"], 5), "mrr": reciprocal_rank(ranked, item["expected"]),
                     "ndcg@5": ndcg_at_k(ranked, item["expected"], 5)})
    metrics = ("hit@1", "hit@3", "hit@5", "mrr", "ndcg@5")

    def mean(group):
        return {m: round(float(np.mean([r[m] for r in group])), 4) for m in metrics} | {"n": len(group)}

    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        by["style"][r["style"]].append(r)
        by["part"][r["part"]].append(r)
    return {"mode": mode, **mean(rows),
            "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 2),
                           "p95": round(float(np.percentile(latencies, 95)), 2)},
            "by_style": {s: mean(g) for s, g in sorted(by["style"].items())},
            "by_part": {str(p): mean(g) for p, g in sorted(by["part"].items())}}


def _part_of(qid: str) -> int | None:
    return int(qid[1]) if qid[:1] == "p" and qid[1:2].isdigit() else None


def table(results: list[dict]) -> str:
    lines = ["| mode | hit@1 | hit@3 | hit@5 | MRR | nDCG@5 | p50 ms |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['mode']} | {r['hit@1']:.3f} | {r['hit@3']:.3f} | {r['hit@5']:.3f} | {r['mrr']:.3f} "
                     f"| {r['ndcg@5']:.3f} | {r['latency_ms']['p50']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=["dense", "bm25", "hybrid"])
    parser.add_argument("--gold", type=Path, default=GOLD)
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    from coach.config import setup_logging
    from coach.retrieval import HybridRetriever

    setup_logging()
    retriever = HybridRetriever()
    gold = load_jsonl(args.gold)
    retriever.search(gold[0]["query"])  # load models before timing anything
    results = [evaluate(retriever, gold, mode) for mode in args.modes]
    print(f"{len(gold)} gold queries, {retriever.store.count()} chunks, "
          f"embedder {retriever.store.settings.embedder}\n")
    print(table(results))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
