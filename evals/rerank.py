"""Fit the second retrieval stage's weights on the TUNING half of the real-question dev set.

    python -m evals.rerank [--with-gold] [--with-set FILE ...] [--out coach/rerank.json]

The first stage (hybrid: dense and BM25 over chunks and question keys, fused by reciprocal rank) gives
each question its best `Reranker.candidates` entries with their evidence (coach.retrieval.Reranker
.FEATURES). A logistic regression learns which candidate is an entry that answers the question (the
labelled `bank_id` or one of its `alt_ids`) from those features; its coefficients are the reranker's
weights (the intercept does not change an order, so it is dropped). Which features take part (all
five, or all but one) and the regularisation strength are chosen together by 5-fold cross-validation
over tuning questions, on MRR; a feature left out gets weight 0. The held-out half is never read
here: `python -m evals.retrieval --real` reports both halves afterwards.

`--with-gold` fits on the bank authors' gold set as well (160 more questions, most of them written in
other styles: terse, misspelled, scenario). Then the gold set's own figures must not come from weights
that saw it: each question is ranked by weights fitted without its fold, the features and strength
chosen again inside that fold's training part (nested cross-validation), and those out-of-fold figures
are what the report gives for either set.

`--with-set FILE` (repeatable) fits on the covered questions of a labelled set kept outside the project
as well (the dev set's shape, labels against the current bank: `evals.datasets.independent_questions`),
for example real questions from other public collections; its figures are out-of-fold in the same way.
"""
from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np

from evals.datasets import GOLD, INDEPENDENT, independent_questions, load_jsonl, real_gold
from evals.metrics import hit_at_k, reciprocal_rank

STRENGTHS = (0.1, 0.3, 1.0, 3.0, 10.0)   # inverse regularisation strengths tried
FOLDS = 5


def candidates(retriever, items: list[dict]) -> list[tuple[np.ndarray, np.ndarray, list[str]]]:
    """Per question: the feature matrix of its first-stage candidates, their labels and their ids."""
    from coach.retrieval import Reranker

    out = []
    for item in items:
        hits = retriever.search(item["query"], k=retriever.reranker.candidates, mode="hybrid")
        top_fused = max((hit.fused for hit in hits), default=0.0)
        x = np.array([Reranker.features(hit, top_fused) for hit in hits]).reshape(-1, len(Reranker.FEATURES))
        ids = [hit.metadata.get("qid") for hit in hits]
        out.append((x, np.array([int(i in item["expected"]) for i in ids]), ids))
    return out


def fit(groups, strength: float, used: tuple[int, ...] | None = None) -> np.ndarray:
    """Weights for every feature; those not in `used` (default: all) are 0."""
    from sklearn.linear_model import LogisticRegression

    x = np.vstack([g[0] for g in groups])
    used = tuple(range(x.shape[1])) if used is None else used
    y = np.concatenate([g[1] for g in groups])
    model = LogisticRegression(C=strength, max_iter=2000, class_weight="balanced").fit(x[:, used], y)
    weights = np.zeros(x.shape[1])
    weights[list(used)] = model.coef_[0]
    return weights


def ranked(group, weights: np.ndarray) -> list[str]:
    """A question's candidate ids, best first by the weighted features (ties in first-stage order)."""
    x, _, ids = group
    return [ids[i] for i in np.argsort(-(x @ weights), kind="stable")] if len(ids) else []


def mrr(groups, items, weights: np.ndarray) -> float:
    return float(np.mean([reciprocal_rank(ranked(g, weights), item["expected"])
                          for g, item in zip(groups, items, strict=True)]))


def hit1(groups, items, weights: np.ndarray) -> float:
    return float(np.mean([hit_at_k(ranked(g, weights), item["expected"], 1)
                          for g, item in zip(groups, items, strict=True)]))


def feature_sets(n: int) -> list[tuple[int, ...]]:
    """All features, then each set that leaves one out."""
    return [tuple(range(n))] + [tuple(i for i in range(n) if i != out) for out in range(n)]


def cross_validated(groups, items, strength: float, used: tuple[int, ...] | None = None) -> float:
    fold_of = np.arange(len(groups)) % FOLDS
    scores = []
    for f in range(FOLDS):
        train = [g for g, fold in zip(groups, fold_of, strict=True) if fold != f]
        test = [n for n in range(len(groups)) if fold_of[n] == f]
        weights = fit(train, strength, used)
        scores.append(mrr([groups[n] for n in test], [items[n] for n in test], weights) * len(test))
    return float(sum(scores) / len(groups))


def select(groups, items) -> tuple[dict, tuple[int, ...], float]:
    """CV MRR of every (feature set, strength) and the best pair."""
    n = groups[0][0].shape[1]
    tried = {(used, c): cross_validated(groups, items, c, used) for used in feature_sets(n) for c in STRENGTHS}
    used, strength = max(tried, key=tried.get)
    return tried, used, strength


def out_of_fold(groups, items) -> list[list[str]]:
    """Each question's candidates ranked by weights that never saw it: per outer fold, the features and
    strength are chosen by cross-validation on the other folds alone, then fitted there."""
    fold_of = np.arange(len(groups)) % FOLDS
    rankings: list[list[str]] = [[] for _ in groups]
    for f in range(FOLDS):
        train = [n for n in range(len(groups)) if fold_of[n] != f]
        _, used, strength = select([groups[n] for n in train], [items[n] for n in train])
        weights = fit([groups[n] for n in train], strength, used)
        for n in (n for n in range(len(groups)) if fold_of[n] == f):
            rankings[n] = ranked(groups[n], weights)
    return rankings


def held_apart(rankings: list[list[str]], items: list[dict], names: dict[str, range]) -> dict:
    """hit@1 and MRR of out-of-fold rankings, per set of questions."""
    def figures(span):
        return {"questions": len(span),
                "hit@1": round(float(np.mean([hit_at_k(rankings[n], items[n]["expected"], 1) for n in span])), 4),
                "mrr": round(float(np.mean([reciprocal_rank(rankings[n], items[n]["expected"]) for n in span])), 4)}
    return {name: figures(span) for name, span in names.items()}


def main(argv=None) -> int:
    from coach.retrieval import RERANK_FILE, HybridRetriever, Reranker

    parser = argparse.ArgumentParser(prog="python -m evals.rerank", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=RERANK_FILE)
    parser.add_argument("--with-gold", action="store_true",
                        help="fit on the bank authors' gold set too; its figures are then out-of-fold")
    parser.add_argument("--with-set", type=Path, action="append", default=[], metavar="FILE",
                        help="fit on this labelled set's covered questions too (repeatable)")
    args = parser.parse_args(argv)

    from coach.config import setup_logging

    setup_logging()
    items = real_gold("tuning")
    if not items:
        print("the dev set is absent: nothing to fit on", file=sys.stderr)
        return 1
    sets = {"tuning": range(len(items))}
    if args.with_gold:
        gold = load_jsonl(GOLD)
        sets["gold"] = range(len(items), len(items) + len(gold))
        items = items + gold
    for path in args.with_set:
        extra = real_gold(INDEPENDENT, independent_questions(path))
        sets[path.stem] = range(len(items), len(items) + len(extra))
        items = items + extra
    retriever = HybridRetriever(reranker=Reranker())
    groups = candidates(retriever, items)
    names = Reranker.FEATURES
    tried, used, strength = select(groups, items)
    weights = fit(groups, strength, used)
    first_stage = np.eye(len(Reranker.FEATURES))[-1]  # the fused score alone: the hybrid order
    figures = {"tuning_questions": len(sets["tuning"]), "gold_questions": len(sets.get("gold", ())),
               "other_questions": {name: len(span) for name, span in sets.items() if name not in ("tuning", "gold")},
               "candidates": retriever.reranker.candidates,
               "cv_mrr": {f"{'+'.join(names[i] for i in u)} C={c}": round(v, 4) for (u, c), v in tried.items()},
               "chosen": {"features": [names[i] for i in used], "strength": strength,
                          "cv_mrr": round(tried[(used, strength)], 4)},
               "tuning_hybrid": {"hit@1": round(hit1(groups, items, first_stage), 4),
                                 "mrr": round(mrr(groups, items, first_stage), 4)},
               "tuning_reranked": {"hit@1": round(hit1(groups, items, weights), 4),
                                   "mrr": round(mrr(groups, items, weights), 4)},
               "out_of_fold": held_apart(out_of_fold(groups, items), items, sets)}
    data = {"about": "Weights of the second retrieval stage (coach.retrieval.Reranker): a logistic regression "
                     "over each first-stage candidate's evidence, fitted by `python -m evals.rerank` on the "
                     "covered questions of the TUNING half of the real-question dev set"
                     + (" and on the bank authors' gold set" if args.with_gold else "")
                     + "".join(f" and on {name} (covered questions of a labelled set of real questions kept "
                               "outside the project)" for name in list(sets)[1:] if name != "gold")
                     + (" only" if len(sets) == 1 else "")
                     + " (an entry is right when it is the labelled bank_id or one of its alt_ids); the features "
                     "used (a weight of 0 leaves one out) and the regularisation were chosen by 5-fold "
                     "cross-validation on MRR. Never fitted on the held-out half."
                     + (" figures.out_of_fold: each question ranked by weights fitted, and chosen, without "
                        "its fold." if len(sets) > 1 else ""),
            "fitted": datetime.date.today().isoformat(), "candidates": retriever.reranker.candidates,
            "weights": {name: round(float(w), 4) for name, w in zip(Reranker.FEATURES, weights, strict=True)},
            "figures": figures}
    args.out.write_text(json.dumps(data, indent=1) + "\n")
    print(json.dumps(figures, indent=1))
    print(f"weights {data['weights']}\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
