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
            f"SCORE_LOW, SCORE_HIGH, SCORE_FLOOR = {low:.2f}, {high:.2f}, {floor:.1f}   # mean absolute error {error:.2f}\n"
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
