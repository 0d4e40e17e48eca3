"""Retrieval quality: hit@1/3/5, MRR and nDCG@5 for dense, BM25, hybrid and hybrid + rerank search.

    python -m evals.retrieval [--modes dense bm25 hybrid rerank] [--out FILE.json]
    python -m evals.retrieval --real      # the real-question dev set: tuning and held-out halves
    python -m evals.retrieval --real --independent FILE.jsonl   # a labelled set kept elsewhere instead

The gold set is the bank authors' own queries. `--real` scores the covered questions of the dev set
(coverage full or partial; right = the labelled bank_id or one of its alt_ids), each half on its own,
and counts the default mode's refusals (covered answered, uncovered refused). `--independent` does the
same for a file in the dev set's shape labelled against the current bank (`evals.datasets.
independent_questions`), for example questions from collections nothing here was tuned on.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

from evals.datasets import GOLD, HALVES, INDEPENDENT, independent_questions, load_jsonl, real_gold, real_uncovered
from evals.metrics import ranking_scores

METRICS = ("hit@1", "hit@3", "hit@5", "mrr", "ndcg@5")
MODES = ("dense", "bm25", "hybrid", "rerank")
LABELS = {"rerank": "hybrid + rerank"}


def evaluate(retriever, gold: list[dict], mode: str = "hybrid", k: int = 5, topics: dict | None = None) -> dict:
    """Aggregate metrics plus per-style, per-part and per-topic breakdowns and search latency."""
    topics = topics if topics is not None else bank_topics()
    rows, latencies = [], []
    retriever.embeddings.clear_cache()  # time real query embedding, not cache hits
    for item in gold:
        hits = retriever.search(item["query"], k=k, mode=mode)
        latencies.append(retriever.last_timing_ms)
        rows.append(score(item, [hit.metadata.get("qid") for hit in hits], topics))
    return {"mode": mode, **summarize(rows, latencies)}


def score(item: dict, ranked: list[str], topics: dict[str, str]) -> dict:
    """One gold query's figures, labelled with the style, part and topic of the entry it expects."""
    best = item["expected"][0]
    return {"style": item.get("style", "?"), "part": _part_of(best), "topic": topics.get(best, "?"),
            **ranking_scores(ranked, item["expected"])}


def summarize(rows: list[dict], latencies: list[float]) -> dict:
    def average(group):
        return {m: round(float(np.mean([r[m] for r in group])), 4) for m in METRICS} | {"n": len(group)}

    by = defaultdict(lambda: defaultdict(list))
    for r in rows:
        for label in ("style", "part", "topic"):
            by[label][r[label]].append(r)
    return {**average(rows),
            "latency_ms": {"p50": round(float(np.percentile(latencies, 50)), 2),
                           "p95": round(float(np.percentile(latencies, 95)), 2)},
            "by_style": {s: average(g) for s, g in sorted(by["style"].items())},
            "by_part": {str(p): average(g) for p, g in sorted(by["part"].items(), key=lambda kv: str(kv[0]))},
            "by_topic": {t: average(g) for t, g in sorted(by["topic"].items())}}


def bank_topics() -> dict[str, str]:
    """Bank id -> topic, to break the figures down per topic."""
    from coach.bank import load_bank
    from coach.config import get_settings

    return {entry.id: entry.topic for entry in load_bank(get_settings().corpus_dir)}


def _part_of(qid: str) -> int | None:
    return int(qid[1]) if qid[:1] == "p" and qid[1:2].isdigit() else None


def real_sets(independent: Path | None = None) -> dict[str, tuple[list[dict], list[dict]]]:
    """Per half, its (covered, uncovered) questions: the dev set's two halves, or one independent set."""
    if independent:
        rows = independent_questions(independent)
        return {INDEPENDENT: (real_gold(INDEPENDENT, rows), real_uncovered(INDEPENDENT, rows))}
    return {half: (real_gold(half), real_uncovered(half)) for half in HALVES}


def real(retriever, modes=MODES, sets: dict | None = None) -> dict[str, list[dict]]:
    """Per half, the figures of each mode on its covered questions ({} without the dev set)."""
    topics = bank_topics()
    sets = real_sets() if sets is None else sets
    return {half: [evaluate(retriever, covered, mode, topics=topics) for mode in modes]
            for half, (covered, _) in sets.items() if covered}


def real_summary(retriever, pick=lambda rows: rows, sets: dict | None = None) -> dict:
    """For `python -m evals`: per dev-set half (or the given `sets`), the default mode's figures on
    covered questions (right: bank_id or an alt_id), the right entry at rank 1 (the labelled bank_id
    itself, no alternative), and the refusal decision (covered answered, uncovered refused). {} without
    the dev set; `pick` samples."""
    out = {}
    for half, (covered, uncovered) in (real_sets() if sets is None else sets).items():
        covered, uncovered = pick(covered), pick(uncovered)
        if not covered:
            continue
        result = evaluate(retriever, covered, retriever.mode)
        threshold = retriever.calibration.threshold
        firsts = [retriever.search(item["query"], k=1) for item in covered]
        best_out = [(retriever.search(item["query"], k=1) or [None])[0] for item in uncovered]
        out[half] = {"covered": len(covered), "uncovered": len(uncovered), "mode": retriever.mode,
                     **{m: result[m] for m in METRICS},
                     "right_entry_at_1": round(float(np.mean([bool(hits) and hits[0].metadata.get("qid") == item["expected"][0]
                                                              for hits, item in zip(firsts, covered, strict=True)])), 4),
                     "covered_answered": round(float(np.mean([bool(h) and h[0].score >= threshold for h in firsts])), 4),
                     "uncovered_refused": round(float(np.mean([h is None or h.score < threshold for h in best_out])), 4)
                     if uncovered else None}
    return out


def table(results: list[dict]) -> str:
    lines = ["| mode | hit@1 | hit@3 | hit@5 | MRR | nDCG@5 | p50 ms |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {LABELS.get(r['mode'], r['mode'])} | {r['hit@1']:.3f} | {r['hit@3']:.3f} | {r['hit@5']:.3f} | {r['mrr']:.3f} "
                     f"| {r['ndcg@5']:.3f} | {r['latency_ms']['p50']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.retrieval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modes", nargs="+", default=list(MODES), choices=MODES)
    parser.add_argument("--gold", type=Path, default=GOLD)
    parser.add_argument("--real", action="store_true", help="the real-question dev set's two halves instead")
    parser.add_argument("--independent", type=Path, metavar="FILE",
                        help="this labelled set (the dev set's shape, labels against the current bank) "
                             "instead of the dev set; implies --real")
    parser.add_argument("--out", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)

    from coach.config import setup_logging
    from coach.retrieval import HybridRetriever

    setup_logging()
    retriever = HybridRetriever()
    gold = load_jsonl(args.gold)
    retriever.search(gold[0]["query"])  # load models before timing anything
    if args.real or args.independent:
        return _print_real(retriever, args)
    results = [evaluate(retriever, gold, mode) for mode in args.modes]
    print(f"{len(gold)} gold queries, {retriever.store.count()} chunks, "
          f"embedder {retriever.store.settings.embedder}\n")
    print(table(results))
    _save(args.out, results)
    return 0


def _print_real(retriever, args) -> int:
    try:
        sets = real_sets(args.independent)
    except (OSError, ValueError) as exc:
        print(f"cannot read the independent set: {exc}", file=sys.stderr)
        return 2
    halves = real(retriever, args.modes, sets)
    if not halves:
        print("the real-question dev set is absent (../shared/real-questions/dev.jsonl)", file=sys.stderr)
        return 1
    refusals = real_summary(retriever, sets=sets)
    for half, results in halves.items():
        print(f"\n{half} half: {results[0]['n']} covered questions (right: bank_id or an alt_id), "
              f"{retriever.store.count()} chunks\n")
        print(table(results))
        print(refusal_line(refusals[half], len(sets[half][1])))
    _save(args.out, {half: {"modes": results, "refusal": refusals[half]} for half, results in halves.items()})
    return 0


def refusal_line(summary: dict, uncovered: int) -> str:
    """The default mode's refusal decision on one half, as counts and shares."""
    line = f"\n{LABELS.get(summary['mode'], summary['mode'])}: covered answered {summary['covered_answered']:.3f}"
    if uncovered:
        refused = round(summary["uncovered_refused"] * uncovered)
        line += f", uncovered refused {refused}/{uncovered} ({summary['uncovered_refused']:.3f})"
    return line


def _save(path: Path | None, results) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
