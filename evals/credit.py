"""The credit model's data, training and out-of-fold check (coach/credit.py).

    python -m evals.credit --train [--force]   # fine-tune MiniLM, export to ONNX (`make setup` runs it)
    python -m evals.credit --crossvalidate     # two folds by question: the grader's figures per way of combining

**Data.** Every answer of the six fitting blind sets (evals.grader.fitting_sets, all five kinds) and the 1,400
training answers to their 140 questions (`sets/mistake_answers.jsonl` and `sets/credit_answers.jsonl`, fourteen
authors who saw only each question and its numbered key points), each paired with every key point of its entry;
the label is the human's: is the point in the answer's `covered` list. 13,379 pairs, 4,447 positive. No
never-fitted set's question is among them (tests/test_credit.py checks).

**Training.** The mistake model's recipe (evals.mistakes.train: MiniLM with a one-logit head, positives weighted
to the negatives' count, AdamW lr 3e-5, batches of 16, seed 0) for **one** epoch on pairs cut to 256 word pieces
(the answers are whole); chosen once (2026-12-05) and not tuned: evals/README.md, "Grader, eleventh pass".
"""
from __future__ import annotations

import argparse
import hashlib
import sys

import numpy as np

from coach.credit import MAX_WORD_PIECES, model_path
from evals.datasets import SETS, load_jsonl
from evals.mistakes import train, train_and_export

ANSWERS = (SETS / "mistake_answers.jsonl", SETS / "credit_answers.jsonl")  # 1,400 training answers
EPOCHS = 1
FOLDS = 2
COMBINATIONS = {"rules": lambda c, p: c, "mean": lambda c, p: (c + p) / 2, "max": max, "model": lambda c, p: p}


def answers() -> list[dict]:
    """The fitting sets' answers, then the training answers (this order: training is seeded on it)."""
    from evals.grader import fitting_sets

    rows = [row for rows in fitting_sets().values() for row in rows]
    return rows + [row for path in ANSWERS for row in load_jsonl(path)]


def pairs_of(rows: list[dict], bank) -> list[dict]:
    """(key point, answer, label) for every key point of every answer's entry."""
    return [{"qid": row["qid"], "point": point, "answer": row["answer"], "label": int(i in (row.get("covered") or []))}
            for row in rows for i, point in enumerate(bank[row["qid"]].key_points)]


def fit(pairs: list[dict]):
    return train(pairs, first="point", second="answer", max_length=MAX_WORD_PIECES, epochs=EPOCHS)


def fold_of(qid: str) -> int:
    return int(hashlib.sha1(qid.encode()).hexdigest(), 16) % FOLDS


def crossvalidate() -> int:
    """Each fold's questions graded with a model trained on the other fold's answers: the grader's figures on the
    fitting sets for each way of combining the rules' credit c with the model's probability p."""
    from unittest.mock import patch

    import torch

    from coach import grader as grading
    from evals.grader import fitting_sets, summarise_blind

    grader = grading.Grader()
    rows = answers()
    folds = {k: fit(pairs_of([r for r in rows if fold_of(r["qid"]) != k], grader.bank)) for k in range(FOLDS)}
    graded = []
    with patch.object(grading, "stated", lambda points, text: None):
        for row in (r for rs in fitting_sets().values() for r in rs):
            entry = grader.bank[row["qid"]]
            results, counts, mistakes = grader.assess(entry, row["answer"])
            text = usable_text(grader, entry, row["answer"])
            model, tokenizer = folds[fold_of(row["qid"])]
            p = np.zeros(len(entry.key_points))
            if text:
                encoded = tokenizer(list(entry.key_points), [text] * len(entry.key_points), padding=True,
                                    truncation=True, max_length=MAX_WORD_PIECES, return_tensors="pt")
                with torch.no_grad():
                    p = torch.sigmoid(model(**encoded).logits.reshape(-1)).numpy()
            graded.append((row, [r.credit for r in results], p, counts, [m.wrong for m in mistakes]))
    for name, combine in COMBINATIONS.items():
        scored = [{**row, "named": named, "grader": grading.Grader.score(
                      [grading.PointResult("", combine(ci, pi), None) for ci, pi in zip(c, p, strict=True)], counts)}
                  for row, c, p, counts, named in graded]
        s = summarise_blind(scored)
        print(f"{name:6} Spearman {s['spearman']:.3f}  ordering {s['ordering']:.1%}  "
              + " / ".join(f"{k} {v:.2f}" for k, v in s["per_kind"].items()))
    return 0


def usable_text(grader, entry, answer: str) -> str:
    """The sentences coach.grader.Grader.second_opinion reads: claims with new words and no mistake, joined."""
    signals = grader.signals(entry, answer)
    if signals is None:
        return ""
    _, mistaken = grader.mistakes(entry, signals)
    return " ".join(s for j, s in enumerate(signals.sentences)
                    if j not in mistaken and signals.claims[j] and signals.new[signals.owner == j].any())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.credit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--train", action="store_true", help="train on every pair and export the model to ONNX")
    task.add_argument("--crossvalidate", action="store_true", help="two folds by question, each combination")
    parser.add_argument("--force", action="store_true", help="with --train: train again even if the model exists")
    args = parser.parse_args(argv)
    if args.crossvalidate:
        return crossvalidate()
    return train_and_export(model_path(), all_pairs, fit, args.force)  # about half an hour on 2 cores


def all_pairs() -> list[dict]:
    from coach.bank import load_bank
    from coach.config import get_settings

    return pairs_of(answers(), {entry.id: entry for entry in load_bank(get_settings().corpus_dir)})

if __name__ == "__main__":
    sys.exit(main())
