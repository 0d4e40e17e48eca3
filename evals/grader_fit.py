"""Fit the grader's constants on the tuning half of the blind grading set (`python -m evals.grader --fit`).

Three steps, each on the tuning half only, in the order the grader uses them:
1. the misconception margins: the pair that names a misconception in the most wrong answers while
   accusing at most MAX_ACCUSED of the complete and partial answers;
2. the credit model: a logistic regression of the human "covered" label of every (answer, key point)
   on the point's (cosine, terms, specific cosine);
3. the 0-10 mapping: SCORE_LOW and SCORE_HIGH that bring the scores closest to the human ones.
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
    sentence_margin, answer_margin, detected, accused = fit_margins(grader, rows, entries, signals)
    with constants(SENTENCE_MARGIN=sentence_margin, ANSWER_MARGIN=answer_margin):
        bias, weights = fit_credit(grader, rows, entries)
        with constants(CREDIT_BIAS=bias, CREDIT_WEIGHTS=weights):
            low, high, error = fit_mapping(grader, rows, entries)
    return (f"# fitted on {len(rows)} answers to {len({r['qid'] for r in rows})} questions (tuning half)\n"
            f"CREDIT_BIAS, CREDIT_WEIGHTS = {bias:.2f}, ({', '.join(f'{w:.2f}' for w in weights)})\n"
            f"SCORE_LOW, SCORE_HIGH = {low:.2f}, {high:.2f}   # mean absolute error {error:.2f}\n"
            f"SENTENCE_MARGIN, ANSWER_MARGIN = {sentence_margin:.2f}, {answer_margin:.2f}"
            f"   # wrong answers named {detected:.0%}, correct answers accused {accused:.1%}")


def fit_margins(grader, rows, entries, signals) -> tuple[float, float, float, float]:
    best = None
    wrong = [n for n, r in enumerate(rows) if r["kind"] == "wrong"]
    correct = [n for n, r in enumerate(rows) if r["kind"] in ("complete", "partial")]
    for sentence_margin, answer_margin in product(np.arange(0.05, 0.30, 0.01), np.arange(-0.15, 0.10, 0.01)):
        with constants(SENTENCE_MARGIN=sentence_margin, ANSWER_MARGIN=answer_margin):
            named = [bool(grader.mistakes(entries[n], signals[n])[0]) if signals[n] else False for n in range(len(rows))]
        detected, accused = np.mean([named[n] for n in wrong]), np.mean([named[n] for n in correct])
        if accused <= MAX_ACCUSED and (best is None or detected > best[2]):
            best = (float(sentence_margin), float(answer_margin), float(detected), float(accused))
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


def fit_mapping(grader, rows, entries) -> tuple[float, float, float]:
    assessed = [grader.assess(entry, row["answer"]) for entry, row in zip(entries, rows, strict=True)]
    human = np.array([row["score"] for row in rows])
    best = None
    for low, high in product(np.arange(0.0, 0.30, 0.01), np.arange(0.40, 1.0, 0.01)):
        with constants(SCORE_LOW=low, SCORE_HIGH=high):
            scores = np.array([grader.score(points, counts) for points, counts, _ in assessed])
        error = float(np.mean(np.abs(scores - human)))
        if best is None or error < best[2]:
            best = (float(low), float(high), error)
    return best
