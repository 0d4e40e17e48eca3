"""Fit the grader's constants on the tuning half of the blind grading set (`python -m evals.grader --fit`).

Three steps, each on the tuning half only, in the order the grader uses them:
1. the misconception and swap margins: the triple that names a misconception in the most wrong answers while
   accusing at most MAX_ACCUSED of the complete and partial answers;
2. the credit model: a logistic regression of the human "covered" label of every (answer, key point)
   on the point's (cosine, terms, specific cosine);
3. the 0-10 mapping (SCORE_LOW, SCORE_HIGH, SCORE_FLOOR): among those that keep the issue's bands per
   kind of answer, the one that orders most questions complete > partial > wrong, then the one closest
   to the human scores.
It prints the constants to paste into coach/grader.py; nothing is written.

`fit_rules` (`python -m evals.grader --fit-rules`, 2026-12-03) chooses the note threshold and the
accusation rules' constants on the blind sets it is given (the CLI: all but the one never fitted on): the
sentence and answer margins, the gates, the clause rule's margin and least length (fourth pass: clauses are
read apart from their sentences), and the recall from which a reversed statement is named;
`crossvalidate_rules` grades each of 5 folds of questions, or each set, with what was chosen without it.
"""
from __future__ import annotations

from contextlib import contextmanager
from itertools import product

import numpy as np

import coach.grader as grading

MAX_ACCUSED = 0.05


@contextmanager
def constants(**values):
    """coach.grader's module constants set to `values` for the duration (the grid search's trials)."""
    saved = {name: getattr(grading, name) for name in values}
    for name, value in values.items():
        setattr(grading, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(grading, name, value)


def fit(grader, rows: list[dict]) -> str:
    entries = [grader.bank[row["qid"]] for row in rows]
    signals = [grader.signals(entry, row["answer"]) for entry, row in zip(entries, rows, strict=True)]
    sentence_margin, answer_margin, swap_margin, detected, accused = fit_margins(grader, rows, entries, signals)
    with constants(SENTENCE_MARGIN=sentence_margin, ANSWER_MARGIN=answer_margin, SWAP_MARGIN=swap_margin):
        bias, weights = fit_credit(grader, rows, entries)
        with constants(CREDIT_BIAS=bias, CREDIT_WEIGHTS=weights):
            low, high, floor, error = fit_mapping(grader, rows, entries)
    return (f"# fitted on {len(rows)} answers to {len({r['qid'] for r in rows})} questions (tuning half)\n"
            f"CREDIT_BIAS, CREDIT_WEIGHTS = {bias:.2f}, ({', '.join(f'{w:.2f}' for w in weights)})\n"
            f"SCORE_LOW, SCORE_HIGH, SCORE_FLOOR = {low:.2f}, {high:.2f}, {floor:.2f}   # mean absolute error {error:.2f}\n"
            f"SENTENCE_MARGIN, ANSWER_MARGIN = {sentence_margin:.2f}, {answer_margin:.2f}\n"
            f"SWAP_MARGIN = {swap_margin:.3f}"
            f"   # wrong answers named {detected:.0%}, correct answers accused {accused:.1%}")


def fit_margins(grader, rows, entries, signals) -> tuple[float, float, float, float, float]:
    """(sentence margin, answer margin, swap margin, wrong answers named, correct answers accused): the
    most wrong answers named with at most MAX_ACCUSED of the correct ones accused, then the fewest accused.
    An answer is named when the misconception rules or the swap test name it, so each is tabled apart."""
    wrong = [n for n, r in enumerate(rows) if r["kind"] == "wrong"]
    correct = [n for n, r in enumerate(rows) if r["kind"] in ("complete", "partial")]

    def named(**margins) -> np.ndarray:
        with constants(**margins):
            return np.array([bool(grader.mistakes(entries[n], signals[n])[0]) if signals[n] else False
                             for n in range(len(rows))])

    never = float("inf")
    by_swap = {float(w): named(SENTENCE_MARGIN=never, ANSWER_MARGIN=never, SWAP_MARGIN=w)
               for w in np.arange(0.05, 0.40, 0.025)}
    best = None
    for sentence_margin, answer_margin in product(np.arange(0.05, 0.30, 0.01), np.arange(-0.15, 0.10, 0.01)):
        by_misconception = named(SENTENCE_MARGIN=sentence_margin, ANSWER_MARGIN=answer_margin, SWAP_MARGIN=never)
        for swap_margin, swapped in by_swap.items():
            either = by_misconception | swapped
            detected, accused = either[wrong].mean(), either[correct].mean()
            if accused <= MAX_ACCUSED and (best is None or (detected, -accused) > (best[3], -best[4])):
                best = (float(sentence_margin), float(answer_margin), swap_margin, float(detected), float(accused))
    return best


def fit_credit(grader, rows, entries) -> tuple[float, tuple[float, ...]]:
    from sklearn.linear_model import LogisticRegression

    features, labels = [], []
    for entry, row in zip(entries, rows, strict=True):
        points, _, _ = grader.assess(entry, row["answer"])
        for i, point in enumerate(points):
            if any(point.features):
                features.append(point.features)
                labels.append(i in row["covered"])
    model = LogisticRegression(C=10.0).fit(np.array(features), np.array(labels))
    return float(model.intercept_[0]), tuple(float(w) for w in model.coef_[0])


# The bands per kind of answer (evals/README.md): a mapping must keep all of them on the tuning half.
BANDS = {"complete": (7.5, 10.0), "partial": (2.0, 6.0), "wrong": (0.0, 2.0), "restating": (0.0, 1.0),
         "off_topic": (0.0, 0.5)}


def fit_mapping(grader, rows, entries) -> tuple[float, float, float, float]:
    """(low, high, floor, mean absolute error): among the mappings whose mean score per kind stays in
    BANDS, the one with the most questions ordered complete > partial > wrong, then the smallest error."""
    assessed = [grader.assess(entry, row["answer"]) for entry, row in zip(entries, rows, strict=True)]
    human = np.array([row["score"] for row in rows])
    kinds = np.array([row["kind"] for row in rows])
    best = None
    for low, high, floor in product(np.arange(0.0, 0.26, 0.02), np.arange(0.50, 1.0, 0.02), np.arange(0.0, 0.6, 0.1)):
        with constants(SCORE_LOW=low, SCORE_HIGH=high, SCORE_FLOOR=floor):
            scores = np.array([grader.score(points, counts) for points, counts, _ in assessed])
        if not all(lo <= scores[kinds == kind].mean() <= hi for kind, (lo, hi) in BANDS.items() if (kinds == kind).any()):
            continue
        key = (_ordered(rows, scores), -float(np.mean(np.abs(scores - human))))
        if best is None or key > best[0]:
            best = (key, float(low), float(high), float(floor))
    (_, error), low, high, floor = best
    return low, high, floor, -error


def _ordered(rows, scores) -> float:
    """Share of questions whose complete answers average above their partial ones, above the wrong one."""
    by_question: dict = {}
    for row, score in zip(rows, scores, strict=True):
        by_question.setdefault(row["qid"], {}).setdefault(row["kind"], []).append(score)
    return float(np.mean([np.mean(k["complete"]) > np.mean(k["partial"]) > max(k["wrong"])
                          for k in by_question.values() if {"complete", "partial", "wrong"} <= set(k)]))


# --- the rules that accuse and the notes' threshold, on all the blind sets (2026-12-03) ------------------
NOTE_CANDIDATES = (1.01, 0.1, 0.2, 0.3)        # NOTE_MIN_OWN; 1.01 = no fragment is read as a note
OVER_CANDIDATES = (0.0, 0.05, 0.1, 0.15, 0.2)  # SENTENCE_OVER_CORRECTION
COVERAGE_CANDIDATES = (1.01, 0.8, 0.7, 0.6, 0.5, 0.4)  # ANSWER_RULE_MAX_COVERAGE; 1.01 = the rule always applies
SENTENCES_CANDIDATES = (1, 2, 3)               # ANSWER_RULE_MIN_SENTENCES
# third pass (2026-12-03, all four sets): the two margins and reversals; fourth pass (2026-12-04, all five
# sets): the clauses read apart, with their own margin and least length
SENTENCE_MARGIN_CANDIDATES = (0.08, 0.12, 0.16, 0.2, 0.25, 0.3, 0.4)
ANSWER_MARGIN_CANDIDATES = (-0.1, -0.08, -0.06, -0.04, -0.02)
CLAUSE_CANDIDATES = tuple(product((float("inf"), 0.25, 0.3, 0.35), (2, 4, 6)))  # CLAUSE_MARGIN, CLAUSE_MIN_WORDS
REVERSAL_CANDIDATES = (float("inf"), 0.6, 0.5, 0.4, 0.3)  # REVERSAL_RECALL; inf = no reversal is read
# Where the search starts, whatever coach/grader.py holds (so that a rerun chooses the same): the gates open,
# the sentence margins as before the third pass, no clause and no reversal read.
LOOSE = {"SENTENCE_MARGIN": 0.08, "SENTENCE_OVER_CORRECTION": 0.0, "ANSWER_RULE_MAX_COVERAGE": 1.01,
         "ANSWER_RULE_MIN_SENTENCES": 1, "ANSWER_MARGIN": -0.08, "CLAUSE_MARGIN": float("inf"),
         "CLAUSE_MIN_WORDS": 2, "REVERSAL_RECALL": float("inf")}
# Each accusation constant (or pair) in the order chosen, with the value that changes the rule least on a tie
# (the margins: nearest the values before the third pass, 0.08 and -0.08, so that a rerun chooses the same).
ACCUSATION_STEPS = ((("SENTENCE_MARGIN",), SENTENCE_MARGIN_CANDIDATES, lambda v: -abs(v - 0.08)),
                    (("SENTENCE_OVER_CORRECTION",), OVER_CANDIDATES, lambda v: -v),
                    (("ANSWER_RULE_MAX_COVERAGE",), COVERAGE_CANDIDATES, lambda v: v),
                    (("ANSWER_RULE_MIN_SENTENCES",), SENTENCES_CANDIDATES, lambda v: -v),
                    (("ANSWER_MARGIN",), ANSWER_MARGIN_CANDIDATES, lambda v: -abs(v + 0.08)),
                    (("CLAUSE_MARGIN", "CLAUSE_MIN_WORDS"), CLAUSE_CANDIDATES, lambda v: v),
                    (("REVERSAL_RECALL",), REVERSAL_CANDIDATES, lambda v: v))


def fit_rules(grader, rows: list[dict]) -> dict:
    """NOTE_MIN_OWN and the accusation constants (ACCUSATION_STEPS) on `rows` (the credit model and the
    mapping stay): the note threshold with the largest Spearman against the human scores; then each
    accusation constant in turn, the value with the most wrong answers named less correct answers accused
    (counted in answers: one wrong answer named is worth one correct answer not accused), ties to the larger
    Spearman, then to the value that changes the rule least."""
    from scipy.stats import spearmanr

    cached = _cached_signals(grader, rows)

    def run(**values) -> tuple[float, int]:
        with constants(**values):
            _reclaim(grader, cached)
            graded = [grader.assess(grader.bank[r["qid"]], r["answer"]) for r in rows]
            scores = [grader.score(points, counts) for points, counts, _ in graded]
        named = [bool(m) for _, _, m in graded]
        named_wrong = sum(n for n, r in zip(named, rows, strict=True) if r["kind"] == "wrong")
        accused = sum(n for n, r in zip(named, rows, strict=True) if r["kind"] in ("complete", "partial"))
        return float(spearmanr(scores, [r["score"] for r in rows]).statistic), named_wrong - accused

    note = max(NOTE_CANDIDATES, key=lambda v: (run(NOTE_MIN_OWN=v)[0], -v))
    chosen = {"NOTE_MIN_OWN": note, **LOOSE}
    for names, candidates, least_change in ACCUSATION_STEPS:
        others = {k: v for k, v in chosen.items() if k not in names}

        def key(value, names=names, others=others, least_change=least_change):
            values = value if isinstance(value, tuple) else (value,)
            spearman, count = run(**others, **dict(zip(names, values, strict=True)))
            return count, round(spearman, 4), least_change(value)
        best = max(candidates, key=key)
        chosen.update(zip(names, best if isinstance(best, tuple) else (best,), strict=True))
    _reclaim(grader, cached)  # the claims as the module's constants read them
    return chosen


def _cached_signals(grader, rows) -> dict:
    """The answers' signals computed once (the rules above only change what is read from them); the
    grader reads them from this cache for the rest of the process."""
    cached = {(r["qid"], r["answer"]): grader.signals(grader.bank[r["qid"]], r["answer"]) for r in rows}
    measure = grader.signals
    grader.signals = lambda entry, answer: cached[(entry.id, answer)] if (entry.id, answer) in cached \
        else measure(entry, answer)
    return cached


def _reclaim(grader, cached: dict) -> None:
    """Which sentences are claims, again, under the current NOTE_MIN_OWN."""
    for (qid, _), signals in cached.items():
        if signals is not None:
            known = grading.entry_words(grader.bank[qid])
            signals.claims = [grading.is_claim(s) or grading.is_note(s, known) for s in signals.sentences]


def crossvalidate_rules(grader, rows: list[dict], folds: int = 5, by_set: bool = False) -> list[dict]:
    """Out-of-fold grades: questions split into `folds` folds (by the SHA-256 of their id), or with `by_set`
    one fold per set (row["set"]); fit_rules on the others, each fold graded with what was fitted without it.
    Returns the rows with `grader`, `named` and the constants `fitted` for their fold."""
    import hashlib

    if by_set:
        fold_of = {r["qid"]: r["set"] for r in rows}
    else:
        qids = sorted({r["qid"] for r in rows}, key=lambda q: hashlib.sha256(q.encode()).hexdigest())
        fold_of = {qid: n % folds for n, qid in enumerate(qids)}
    out = []
    for fold in sorted(set(fold_of.values()), key=str):
        chosen = fit_rules(grader, [r for r in rows if fold_of[r["qid"]] != fold])
        with constants(**chosen):
            _reclaim(grader, _cached_signals(grader, rows))
            for r in (r for r in rows if fold_of[r["qid"]] == fold):
                points, counts, mistakes = grader.assess(grader.bank[r["qid"]], r["answer"])
                out.append({**r, "grader": grader.score(points, counts), "named": [m.wrong for m in mistakes],
                            "fitted": chosen})
    _reclaim(grader, _cached_signals(grader, rows))
    return out
