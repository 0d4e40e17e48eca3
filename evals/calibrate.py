"""Fit the retriever's relevance score and the refusal threshold on in-scope and out-of-scope questions.

    python -m evals.calibrate [--out coach/calibration.json] [--plot DIR]
    python -m evals.calibrate --titles     # the title gate for uploaded documents (DOC_TITLE_MIN)

Each retrieved question gets P(relevant) = sigmoid(b + w1 * cosine + w2 * log(1 + bm25) + w3 * key
cosine): a logistic regression fitted on the best result (default mode) of every query: in scope are
the gold set and the covered questions of the real-question dev set's TUNING half (relevant when the
result is an expected bank id), out of scope are `out_of_scope.jsonl` and the tuning half's uncovered
questions (never relevant). Fitting on the best result only keeps the labels clean: lower-ranked
neighbours are often partly relevant without being listed. The refusal threshold is the one that best
separates in-scope from out-of-scope questions (Youden's J). Out-of-sample figures come from 5-fold
cross-validation over queries, and from the dev set's held-out half, which is only measured here.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from evals.datasets import GOLD, OUT_OF_SCOPE, load_jsonl, real_gold, real_uncovered

K = 1  # the best result per query: P(it is the passage that answers the question)


def collect(retriever, gold: list[dict], outside: list[dict]):
    """Feature rows (one per retrieved question), labels, and the query each row belongs to."""
    from coach.retrieval import Calibration

    rows, labels, groups, in_scope, named = [], [], [], [], []
    for q, item in enumerate(gold + outside):
        relevant = set(item.get("expected", []))
        in_scope.append(bool(relevant))
        for hit in retriever.search(item["query"], k=K):
            rows.append(Calibration.features(hit.dense, hit.bm25, hit.key_dense))
            labels.append(int(hit.metadata.get("qid") in relevant))
            groups.append(q)
            named.append(hit.absent_concept is None)
    return np.array(rows), np.array(labels), np.array(groups), np.array(in_scope), np.array(named)


def fit(x, y):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=10.0, max_iter=1000).fit(x, y)


def best_per_query(probabilities, groups, n_queries) -> np.ndarray:
    best = np.zeros(n_queries)
    np.maximum.at(best, groups, probabilities)
    return best


def tradeoff(best: np.ndarray, in_scope: np.ndarray) -> list[dict]:
    """For each threshold: share of in-scope questions answered and of out-of-scope ones refused."""
    curve = []
    for threshold in np.round(np.linspace(0.0, 1.0, 101), 2):
        answered = float(np.mean(best[in_scope] >= threshold))
        refused = float(np.mean(best[~in_scope] < threshold))
        curve.append({"threshold": float(threshold), "answered_in_scope": round(answered, 4),
                      "refused_out_of_scope": round(refused, 4)})
    return curve


def choose_threshold(curve: list[dict]) -> dict:
    """Youden's J; among equals, the lowest threshold (a false refusal costs a user more)."""
    return max(curve, key=lambda p: (round(p["answered_in_scope"] + p["refused_out_of_scope"], 4),
                                     -p["threshold"]))


def cross_validated(x, y, groups, in_scope, named=None, folds: int = 5, seed: int = 0) -> dict:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    fold_of = rng.permutation(len(in_scope)) % folds
    best = np.zeros(len(in_scope))
    for f in range(folds):
        train = fold_of[groups] != f
        model = fit(x[train], y[train])
        test = ~train
        kept = 1 if named is None else named[test]
        best_f = best_per_query(model.predict_proba(x[test])[:, 1] * kept, groups[test], len(in_scope))
        best[fold_of == f] = best_f[fold_of == f]
    point = choose_threshold(tradeoff(best, in_scope))
    return {"auc_in_vs_out": round(float(roc_auc_score(in_scope, best)), 4), **point}


def held_out(retriever, calibration) -> dict:
    """The refusal decision on the dev set's held-out half: covered questions answered (in-scope
    refusals are the rest) and uncovered ones refused; {} without the dev set."""
    covered, uncovered = real_gold("heldout"), real_uncovered("heldout")
    if not covered:
        return {}

    def best(item) -> float:
        hits = retriever.search(item["query"], k=1)
        if not hits or hits[0].absent_concept:
            return 0.0
        return calibration(hits[0].dense, hits[0].bm25, hits[0].key_dense)

    answered = [best(item) >= calibration.threshold for item in covered]
    refused = [best(item) < calibration.threshold for item in uncovered]
    return {"covered": len(covered), "covered_answered": round(float(np.mean(answered)), 4),
            "uncovered": len(uncovered), "uncovered_refused": round(float(np.mean(refused)), 4) if refused else None}


def plot(curve: list[dict], chosen: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [p["threshold"] for p in curve]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    ax.plot(t, [p["answered_in_scope"] for p in curve], label="in-scope answered")
    ax.plot(t, [p["refused_out_of_scope"] for p in curve], label="out-of-scope refused")
    ax.axvline(chosen["threshold"], color="grey", linestyle="--", label=f"threshold {chosen['threshold']:.2f}")
    ax.set_xlabel("refusal threshold on the best calibrated score")
    ax.set_ylabel("share of questions")
    ax.set_title("Refusal trade-off")
    ax.legend(loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def title_cosines(embeddings, titles: dict[str, str], gold: list[dict], outside: list[dict]):
    """Cosines of the gold queries to their entry's title, and of the out-of-scope ones to the nearest title."""
    ids = list(titles)
    vectors = np.asarray(embeddings.embed_sentences([titles[i] for i in ids]))

    def cosines(query):
        return vectors @ np.asarray(embeddings.embed_query(query))
    inside = [float(cosines(g["query"])[ids.index(g["expected"][0])]) for g in gold if g["expected"][0] in titles]
    outer = [float(cosines(o["query"]).max()) for o in outside]
    return np.array(inside), np.array(outer)


def title_threshold(embeddings, titles: dict[str, str], gold: list[dict], outside: list[dict]) -> dict:
    """The query-to-title cosine that best separates the gold queries (to their entry's title) from the
    out-of-scope ones (to the nearest title), by Youden's J: the gate an uploaded passage's own question
    must clear (coach.retrieval.DOC_TITLE_MIN). Chosen on the bank, never on uploaded documents."""
    inside, outer = title_cosines(embeddings, titles, gold, outside)
    best = np.concatenate([inside, outer])
    return choose_threshold(tradeoff(best, np.array([True] * len(inside) + [False] * len(outer))))


def title_rates(embeddings, titles: dict[str, str], half: str, threshold: float) -> dict:
    """At a chosen title gate, one half of the real-question dev set: its covered questions over it, its
    uncovered ones under it (a read-out; the gate is never chosen on it)."""
    inside, outer = title_cosines(embeddings, titles, real_gold(half), real_uncovered(half))
    return {"covered_over": round(float(np.mean(inside >= threshold)), 4), "covered": len(inside),
            "uncovered_under": round(float(np.mean(outer < threshold)), 4), "uncovered": len(outer)}


def print_title_gate(embeddings) -> None:
    """`--titles`: the gate chosen on the gold and out-of-scope sets, then each dev half at it."""
    from coach.bank import load_bank
    from coach.config import get_settings

    titles = {e.id: e.question for e in load_bank(get_settings().corpus_dir)}
    gold, outside = load_jsonl(GOLD), load_jsonl(OUT_OF_SCOPE)
    chosen = title_threshold(embeddings, titles, gold, outside)
    print(f"bank of {len(titles)} entries; title cosine {chosen['threshold']:.2f}: {len(gold)} gold queries over it "
          f"{chosen['answered_in_scope']:.1%}, {len(outside)} out-of-scope queries under it "
          f"{chosen['refused_out_of_scope']:.1%}")
    for half in ("tuning", "heldout"):
        print(f"  dev set {half} half at it: {title_rates(embeddings, titles, half, chosen['threshold'])}")


def main(argv=None) -> int:
    from coach.retrieval import CALIBRATION_FILE

    parser = argparse.ArgumentParser(prog="python -m evals.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--plot", type=Path, default=Path("evals/reports/calibration"))
    parser.add_argument("--titles", action="store_true", help="only print the title gate for uploaded documents")
    args = parser.parse_args(argv)

    from coach.config import setup_logging
    from coach.retrieval import Calibration, HybridRetriever

    setup_logging()
    retriever = HybridRetriever(calibration=Calibration())
    if args.titles:  # a separate read-out: the bank's threshold and weights are not touched
        print_title_gate(retriever.embeddings)
        return 0
    gold = load_jsonl(GOLD) + real_gold("tuning")
    outside = load_jsonl(OUT_OF_SCOPE) + real_uncovered("tuning")
    x, y, groups, in_scope, named = collect(retriever, gold, outside)
    model = fit(x, y)
    # the retriever scores 0 a query that defines a concept the bank never names (coach.concepts)
    best = best_per_query(model.predict_proba(x)[:, 1] * named, groups, len(in_scope))
    curve = tradeoff(best, in_scope)
    chosen = choose_threshold(curve)
    cv = cross_validated(x, y, groups, in_scope, named)
    calibration = {"bias": round(float(model.intercept_[0]), 4), "w_dense": round(float(model.coef_[0][0]), 4),
                   "w_bm25": round(float(model.coef_[0][1]), 4), "w_key": round(float(model.coef_[0][2]), 4),
                   "threshold": chosen["threshold"]}
    heldout = held_out(retriever, Calibration(**calibration))
    info = {"in_scope_queries": len(gold), "out_of_scope_queries": len(outside), "pairs": int(len(y)),
            "fitted_on": "gold set + out_of_scope.jsonl + the dev set's tuning half (covered in scope, "
                         "uncovered out of scope)",
            "embedder": retriever.store.settings.embedder, "mode": retriever.mode, "fitted": chosen,
            "cross_validated": cv, "heldout_dev_half": heldout, "curve": curve}
    calibration["info"] = info
    args.out.write_text(json.dumps(calibration, indent=1) + "\n")
    plot(curve, chosen, args.plot / "threshold_curve.png")
    print(f"P(relevant) = sigmoid({calibration['bias']} + {calibration['w_dense']} * cosine "
          f"+ {calibration['w_bm25']} * log1p(bm25) + {calibration['w_key']} * key cosine)")
    print(f"threshold {chosen['threshold']:.2f}: in-scope answered {chosen['answered_in_scope']:.1%}, "
          f"out-of-scope refused {chosen['refused_out_of_scope']:.1%} (fitted)")
    print(f"5-fold cross-validated: AUC {cv['auc_in_vs_out']:.3f}, threshold {cv['threshold']:.2f}, "
          f"answered {cv['answered_in_scope']:.1%}, refused {cv['refused_out_of_scope']:.1%}")
    if heldout:
        print(f"dev set, held-out half (never fitted on): covered answered {heldout['covered_answered']:.1%} "
              f"of {heldout['covered']}, uncovered refused {heldout['uncovered_refused']:.1%} of {heldout['uncovered']}")
    print(f"wrote {args.out} and {args.plot / 'threshold_curve.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
