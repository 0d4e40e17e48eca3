"""Fit the retriever's relevance score and the refusal threshold on in-scope and out-of-scope questions.

    python -m evals.calibrate [--out coach/calibration.json] [--plot DIR]
    python -m evals.calibrate --titles     # the title gate for uploaded documents (DOC_TITLE_MIN)
    python -m evals.calibrate --with-near  # issue 16's experiment: refit with the near-domain sets; writes nothing

Each retrieved question gets P(relevant) = sigmoid(b + w1 * cosine + w2 * log(1 + bm25) + w3 * key
cosine): a logistic regression fitted on the best result (default mode) of every query: in scope are
the gold set and the covered questions of the real-question dev set's TUNING half (relevant when the
result is an expected bank id), out of scope are `out_of_scope.jsonl` and the tuning half's uncovered
questions (never relevant). Fitting on the best result only keeps the labels clean: lower-ranked
neighbours are often partly relevant without being listed. The refusal threshold is the one that best
separates in-scope from out-of-scope questions (Youden's J). Out-of-sample figures come from 5-fold
cross-validation over queries, and from the dev set's held-out half, which is only measured here.

`--with-near` adds our near-domain sets (`out_of_scope_near.jsonl`, `in_scope_near.jsonl`) to the fitting
data and prints evals/README.md's adoption rule for them: the committed calibration on all of it against
refits with the three inputs or the three plus one more piece of evidence a hit already carries (EXTRAS),
5-fold cross-validated over 10 seeds, and the dev set's tuning half. It never writes or reads the
held-out half: a refit that passes is written by a plain run once the fitting data include the sets.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from evals.datasets import GOLD, OUT_OF_SCOPE, OUT_OF_SCOPE_NEAR, in_scope_near, load_jsonl, real_gold, real_uncovered

K = 1  # the best result per query: P(it is the passage that answers the question)
EXTRAS = ("log_key_bm25", "rerank")  # tried as a fourth input by --with-near (evals/README.md)
SEEDS = 10  # cross-validation splits averaged by --with-near: one split moves a figure by a query or two


def collect(retriever, gold: list[dict], outside: list[dict]):
    """Feature rows (one per retrieved question), labels, and the query each row belongs to."""
    from coach.retrieval import Calibration

    rows, labels, groups, in_scope, named, extras = [], [], [], [], [], []
    for q, item in enumerate(gold + outside):
        relevant = set(item.get("expected", []))
        in_scope.append(bool(relevant))
        for hit in retriever.search(item["query"], k=K):
            rows.append(Calibration.features(hit.dense, hit.bm25, hit.key_dense))
            extras.append((float(np.log1p(max(hit.key_bm25, 0.0))), hit.rerank))
            labels.append(int(hit.metadata.get("qid") in relevant))
            groups.append(q)
            named.append(hit.absent_concept is None)
    return (np.array(rows), np.array(labels), np.array(groups), np.array(in_scope), np.array(named),
            np.array(extras).reshape(-1, len(EXTRAS)))


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


def cross_validated_seeds(x, y, groups, in_scope, named, seeds: int = SEEDS) -> dict:
    """cross_validated's answered and refused shares, averaged over `seeds` splits."""
    runs = [cross_validated(x, y, groups, in_scope, named, seed=seed) for seed in range(seeds)]
    return {name: round(float(np.mean([run[name] for run in runs])), 4)
            for name in ("answered_in_scope", "refused_out_of_scope", "auc_in_vs_out")}


def rates(best: np.ndarray, in_scope: np.ndarray, threshold: float, queries=None) -> tuple[float, float]:
    """(in-scope answered, out-of-scope refused) at a threshold, over `queries` (a mask) or all."""
    chosen = np.ones(len(best), dtype=bool) if queries is None else queries
    inside, outside = best[chosen & in_scope], best[chosen & ~in_scope]
    return (round(float(np.mean(inside >= threshold)), 4) if len(inside) else None,
            round(float(np.mean(outside < threshold)), 4) if len(outside) else None)


def committed_best(calibration, x, groups, named, n_queries) -> np.ndarray:
    """The best calibrated score per query under fixed weights (x holds Calibration.features rows)."""
    weights = np.array([calibration.w_dense, calibration.w_bm25, calibration.w_key])
    probabilities = 1.0 / (1.0 + np.exp(-(calibration.bias + x @ weights)))
    return best_per_query(probabilities * named, groups, n_queries)


def refit_tuning_half(x, y, groups, in_scope, named, tuning) -> tuple[float, float]:
    """Fitted on everything, threshold by Youden's J: the dev set's tuning half (in-sample)."""
    best = best_per_query(fit(x, y).predict_proba(x)[:, 1] * named, groups, len(in_scope))
    return rates(best, in_scope, choose_threshold(tradeoff(best, in_scope))["threshold"], tuning)


def near_adoption(x, y, groups, in_scope, named, extras, tuning, committed) -> list[dict]:
    """evals/README.md's rule for the near-domain sets: the committed calibration on all fitting data
    against a refit with the three inputs, or three plus each of EXTRAS, cross-validated; the candidate
    with the most out-of-scope refusals among those within a point of the baseline's answered share is
    adopted if it refuses more and keeps the tuning half's covered ≥ 0.95 and its uncovered refused."""
    best = committed_best(committed, x, groups, named, len(in_scope))
    answered, refused = rates(best, in_scope, committed.threshold)
    rows = [{"model": "committed", "cv_answered": answered, "cv_refused": refused,
             "tuning": rates(best, in_scope, committed.threshold, tuning)}]
    for name, columns in [("three inputs", x)] + [(f"+ {e}", np.column_stack([x, extras[:, i]]))
                                                  for i, e in enumerate(EXTRAS)]:
        cv = cross_validated_seeds(columns, y, groups, in_scope, named)
        rows.append({"model": name, "cv_answered": cv["answered_in_scope"], "cv_refused": cv["refused_out_of_scope"],
                     "tuning": refit_tuning_half(columns, y, groups, in_scope, named, tuning)})
    base = rows[0]
    eligible = [r for r in rows[1:] if r["cv_answered"] >= round(base["cv_answered"] - 0.01, 4)]
    chosen = max(eligible, key=lambda r: r["cv_refused"], default=None)
    for row in rows[1:]:
        row["chosen"] = row is chosen
        row["adopt"] = row is chosen and row["cv_refused"] > base["cv_refused"] and \
            row["tuning"][0] >= 0.95 and row["tuning"][1] >= base["tuning"][1]
    return rows


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


def print_near_adoption(retriever) -> None:
    """`--with-near`: the fitting data plus the near-domain sets, and the adoption rule's figures."""
    from coach.retrieval import Calibration

    covered, uncovered = real_gold("tuning"), real_uncovered("tuning")
    gold = load_jsonl(GOLD) + covered + in_scope_near()
    outside = load_jsonl(OUT_OF_SCOPE) + uncovered + load_jsonl(OUT_OF_SCOPE_NEAR)
    x, y, groups, in_scope, named, extras = collect(retriever, gold, outside)
    tuning = np.zeros(len(in_scope), dtype=bool)
    first_covered, first_uncovered = len(load_jsonl(GOLD)), len(gold) + len(load_jsonl(OUT_OF_SCOPE))
    tuning[first_covered:first_covered + len(covered)] = True
    tuning[first_uncovered:first_uncovered + len(uncovered)] = True
    print(f"{int(in_scope.sum())} in-scope and {int((~in_scope).sum())} out-of-scope queries")
    for row in near_adoption(x, y, groups, in_scope, named, extras, tuning, Calibration.load()):
        decision = "" if "adopt" not in row else ("  ADOPT" if row["adopt"] else "  (tested)" if row["chosen"] else "")
        where = "as committed, on all" if row["model"] == "committed" else "5-fold CV"
        print(f"{row['model']:>14}: {where}: answered {row['cv_answered']:.1%}, refused {row['cv_refused']:.1%}; "
              f"tuning half covered answered {row['tuning'][0]:.1%}, uncovered refused {row['tuning'][1]:.1%}"
              f"{decision}")


def main(argv=None) -> int:
    from coach.retrieval import CALIBRATION_FILE

    parser = argparse.ArgumentParser(prog="python -m evals.calibrate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=CALIBRATION_FILE)
    parser.add_argument("--plot", type=Path, default=Path("evals/reports/calibration"))
    parser.add_argument("--titles", action="store_true", help="only print the title gate for uploaded documents")
    parser.add_argument("--with-near", action="store_true",
                        help="print the near-domain sets' adoption rule (evals/README.md); writes nothing")
    args = parser.parse_args(argv)

    from coach.config import setup_logging
    from coach.retrieval import Calibration, HybridRetriever

    setup_logging()
    retriever = HybridRetriever(calibration=Calibration())
    if args.titles:  # a separate read-out: the bank's threshold and weights are not touched
        print_title_gate(retriever.embeddings)
        return 0
    if args.with_near:
        print_near_adoption(retriever)
        return 0
    gold = load_jsonl(GOLD) + real_gold("tuning")
    outside = load_jsonl(OUT_OF_SCOPE) + real_uncovered("tuning")
    x, y, groups, in_scope, named, _ = collect(retriever, gold, outside)
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
