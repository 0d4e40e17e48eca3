"""The credit model's data, training and out-of-fold check (coach/credit.py).

    python -m evals.credit --train [--force]   # fine-tune MiniLM, export to ONNX (`make setup` runs it)
    python -m evals.credit --sentences         # what the grader reads of each model answer, to a file
    python -m evals.credit --crossvalidate     # two folds by question: main's grader against the model's
    python -m evals.credit --calibrate         # choose stating_nothing's constants for the model present

**Data.** Two kinds of (key point, answer) -> does the answer state the point?
- Other people's answers: every answer of the six fitting blind sets (evals.grader.fitting_sets, all five kinds)
  and the 1,400 training answers to their 140 questions (`sets/mistake_answers.jsonl`, `sets/credit_answers.jsonl`:
  fourteen authors who saw only each question and its numbered key points), each paired with every key point of
  its entry, labelled by the human's `covered` list: 13,379 pairs, 4,447 positive. No never-fitted set's answer is
  among them (tests/test_credit.py checks).
- The bank's own wording (`bank_pairs`), for every entry and key point: the window of the model answer that holds
  most of the point's words and the key points written as an answer (in the points' own words or one of their
  alternatives) state it; the same key points without it, the entry's misconceptions, and the model answer of
  another entry of the same part do not: 9,344 pairs. Without them the model learned other people's paraphrases
  only and gave the bank's own key points, stated word for word, 0.08-0.48 (evals/README.md, "Grader, eleventh
  pass"). With them the bank's wording is credited out of fold, but so is the model answer of a neighbouring
  question (a third of the entries over 2.0, main a sixth), and the nearest entry as the negative instead made
  that worse: the twelfth and thirteenth passes, not landed.
- Which sentences of a model answer those windows are cut from is the grader's choice (those it reads for its
  second opinion: claims with new words, none accused), kept in a file, `sets/credit_sentences.jsonl`, as the
  mistake model keeps its pairs. Read from the grader at training time, the model changed with every rule of
  coach/grader.py, and a fresh machine trained another model than the one the figures were measured with (CI,
  2026-12-06: the twenty-eighth and thirty-third passes' rules read eighteen more sentences; evals/README.md,
  "The credit model's sentences").

**Calibration.** How low the model reads a wrong claim against the key points (coach.grader.stating_nothing names
such a claim) is a property of one training run: with one set of that rule's constants, four runs of the same recipe
named 84%, 69%, 65% and 56% of the never-fitted wrong answers. So after training, `--calibrate` grades the
naming-tuned sets (fresh5-9, evals.grader.NAMING_TUNED) once, keeping for each answer what the rule read (the
key-point credits; each candidate claim's highest stated probability and highest misconception logit) and whether
another rule named a mistake, replays the rule over NAMING_GRID, and keeps the setting that names the most wrong
answers there with at most MOST_ACCUSED of the correct ones accused (ties: fewer accused, then the fewest grid steps
from coach/grader.py's own constants). It writes them beside the model (coach.credit.CALIBRATION_FILE) with both
models' MD5s. Chosen and first read in the thirty-seventh pass (evals/README.md): never-fitted sets only after the
choice, over three runs.

**Training.** The mistake model's recipe (evals.mistakes.train: MiniLM with a one-logit head, positives weighted
to the negatives' count, AdamW lr 3e-5, batches of 16, seed 0) for **one** epoch on pairs cut to 256 word pieces,
batches grouped by length (half the time of random batches here); chosen once (2026-12-05) and not tuned:
evals/README.md, "Grader, twelfth and thirteenth passes".
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import random
import sys
import tempfile
from pathlib import Path

import numpy as np

from coach.credit import MAX_WORD_PIECES, calibration_path, model_path, windows
from evals.datasets import SETS, load_jsonl, write_jsonl
from evals.mistakes import export, train, train_and_export

ANSWERS = (SETS / "mistake_answers.jsonl", SETS / "credit_answers.jsonl")  # 1,400 training answers
SENTENCES = SETS / "credit_sentences.jsonl"   # (id, sentences): what the grader reads of each entry's model answer
EPOCHS = 1
FOLDS = 2
BANK_SEED = 12          # which other entry of the same part each entry's key points are paired with
HALF_THE_WORDS = 0.5    # a model-answer window states a key point when it holds at least this share of its words
# stating_nothing's constants tried by --calibrate (coach.grader.StatesNothing; each holds the grader's own value)
NAMING_GRID = {"p": (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5), "credit": (0.3, 0.35, 0.4, 0.45, 0.5),
               "most": (0.5, 0.6, 0.7, 0.8), "logit": (-1.0, -0.5, 0.0, 0.5, 1.0)}
MOST_ACCUSED = 0.04     # correct answers of fresh5-9 a setting may accuse: the landed model's 3.96% with the constants


def answers() -> list[dict]:
    """The fitting sets' answers, then the training answers (this order: training is seeded on it)."""
    from evals.grader import fitting_sets

    rows = [row for rows in fitting_sets().values() for row in rows]
    return rows + [row for path in ANSWERS for row in load_jsonl(path)]


def pairs_of(rows: list[dict], bank) -> list[dict]:
    """(key point, answer, label) for every key point of every answer's entry."""
    return [{"qid": row["qid"], "point": point, "answer": row["answer"], "label": int(i in (row.get("covered") or []))}
            for row in rows for i, point in enumerate(bank[row["qid"]].key_points)]


def bank_pairs(bank: dict) -> list[dict]:
    """(key point, text in the bank's words, label) for every key point of every entry (see the docstring)."""
    from coach.embedder import word_pieces

    tokenizer = word_pieces(MAX_WORD_PIECES)
    chooser = random.Random(BANK_SEED)
    entries = list(bank.values())
    read = read_sentences(bank)
    pairs = []
    for entry in entries:
        other = chooser.choice([e for e in entries if e.part == entry.part and e.id != entry.id])
        texts = {"answer": windows(read[entry.id], tokenizer), "other": windows(read[other.id], tokenizer),
                 "misconceptions": as_answer([m.wrong for m in entry.misconceptions])}
        pairs += [{"qid": entry.id, **pair} for pair in point_pairs(entry, texts)]
    return pairs


def point_pairs(entry, texts: dict) -> list[dict]:
    from coach.text import content_words

    alternatives = entry.key_point_alternatives or tuple(() for _ in entry.key_points)
    wordings = [list(entry.key_points)] + [[alts[n] if len(alts) > n else point for point, alts in
                                            zip(entry.key_points, alternatives, strict=True)] for n in (0, 1)]
    pairs = []
    for i, point in enumerate(entry.key_points):
        words, wording = content_words(point), wordings[i % len(wordings)]
        shares = [len(words & content_words(window)) / max(len(words), 1) for window in texts["answer"]]
        if shares and max(shares) >= HALF_THE_WORDS:
            pairs.append({"point": point, "answer": texts["answer"][int(np.argmax(shares))], "label": 1})
        pairs.append({"point": point, "answer": as_answer(wording), "label": 1})
        negatives = [(as_answer(wording[:i] + wording[i + 1:]), 0), (texts["misconceptions"], 0),
                  (texts["other"][0] if texts["other"] else "", 0)]
        pairs += [{"point": point, "answer": text, "label": label} for text, label in negatives if text]
    return pairs


def as_answer(sentences: list[str]) -> str:
    """Statements written as an answer: each a sentence of its own."""
    return " ".join(s[0].upper() + s[1:] + ("" if s.endswith(".") else ".") for s in sentences if s)


def usable_sentences(grader, entry, answer: str) -> list[str]:
    """The sentences coach.grader.Grader.second_opinion reads: claims with new words and no mistake."""
    signals = grader.signals(entry, answer)
    if signals is None:
        return []
    _, mistaken = grader.mistakes(entry, signals)
    return [s for j, s in enumerate(signals.sentences)
            if j not in mistaken and signals.claims[j] and signals.new[signals.owner == j].any()]


def write_sentences(path: Path = SENTENCES) -> int:
    """What this grader reads of every entry's model answer, to the file training reads (see the docstring)."""
    from coach.grader import Grader

    grader = Grader()
    rows = [{"id": entry.id, "sentences": usable_sentences(grader, entry, entry.answer)}
            for entry in grader.bank.values()]
    write_jsonl(path, rows)
    print(f"wrote {sum(len(row['sentences']) for row in rows)} sentences of {len(rows)} entries to {path}",
          file=sys.stderr)
    return 0


def read_sentences(bank: dict, path: Path = SENTENCES) -> dict[str, list[str]]:
    """{entry id: the sentences of its model answer the grader reads}, from the file; an error that says what to run
    when the bank has an entry the file lacks or a sentence its model answer no longer holds."""
    read = {row["id"]: row["sentences"] for row in load_jsonl(path)}
    stale = [entry.id for entry in bank.values()
             if entry.id not in read or not all(sentence in entry.answer for sentence in read[entry.id])]
    if stale:
        raise ValueError(f"{path.name} does not match the bank's model answers ({', '.join(stale[:5])}"
                         f"{' …' if len(stale) > 5 else ''}): run `python -m evals.credit --sentences` (this "
                         "changes the credit model: measure the grader again)")
    return read


def fit(pairs: list[dict]):
    return train(pairs, first="point", second="answer", max_length=MAX_WORD_PIECES, epochs=EPOCHS, grouped=True)


def fold_of(qid: str) -> int:
    return int(hashlib.sha1(qid.encode()).hexdigest(), 16) % FOLDS


def crossvalidate() -> int:
    """Each fold's questions and entries graded with a model trained on the other fold's answers and bank pairs:
    the grader's figures on the fitting sets and the bank-wording checks, main's grader (the rules alone) beside."""
    from coach.credit import CrossEncoder
    from coach.grader import Grader

    grader = Grader()
    pairs = pairs_of(answers(), grader.bank) + bank_pairs(grader.bank)
    with tempfile.TemporaryDirectory() as folder:
        models = {}
        for k in range(FOLDS):
            model, _ = fit([p for p in pairs if fold_of(p["qid"]) != k])
            export(model, Path(folder) / f"fold{k}.onnx")
            models[k] = CrossEncoder(Path(folder) / f"fold{k}.onnx", MAX_WORD_PIECES)
        for name, model_for in (("rules", lambda k: None), ("model", models.get)):
            report(name, held_out_figures(grader, model_for))
    return 0


def held_out_figures(grader, model_for) -> dict:
    """The fitting sets' blind figures and the bank-wording checks, each fold read with `model_for(fold)`."""
    from unittest.mock import patch

    from evals.grader import evaluate_blind, fitting_sets, summarise_blind

    rows = [row for rows in fitting_sets().values() for row in rows]
    entries = list(grader.bank.values())
    scored, checks = [], []
    for k in range(FOLDS):
        with patch("coach.credit.credit_model", lambda k=k: model_for(k)):
            scored += evaluate_blind(grader, [r for r in rows if fold_of(r["qid"]) == k])["rows"]
            checks += [bank_wording(grader, entries, n) for n, e in enumerate(entries) if fold_of(e.id) == k]
    return {**summarise_blind(scored), "bank": {name: float(np.mean([c[name] for c in checks])) for name in checks[0]}}


def bank_wording(grader, entries: list, n: int) -> dict:
    """tests/test_grader.py's checks on entry n: its model answer >= 6.5, its key points as sentences >= 6.0, the
    next entry's model answer <= 2.0."""
    entry, other = entries[n], entries[(n + 1) % len(entries)]
    points = " ".join(f"In short, {point}." for point in entry.key_points)
    return {"model answer >= 6.5": grader.grade_entry(entry, entry.answer).score >= 6.5,
            "key points >= 6.0": grader.grade_entry(entry, points).score >= 6.0,
            "another entry's answer <= 2.0": grader.grade_entry(entry, other.answer).score <= 2.0}


def report(name: str, figures: dict) -> None:
    print(f"{name:6} Spearman {figures['spearman']:.3f}  ordering {figures['ordering']:.1%}  "
          + " / ".join(f"{k} {v:.2f}" for k, v in figures["per_kind"].items()) + "  |  bank wording: "
          + ", ".join(f"{k} {v:.1%}" for k, v in figures["bank"].items()))


def all_pairs() -> list[dict]:
    from coach.grader import Grader

    bank = Grader().bank
    return pairs_of(answers(), bank) + bank_pairs(bank)


# --- calibration --------------------------------------------------------------------------------
def read_answers(grader, rows: list[dict]) -> list[dict]:
    """Each answer graded against its entry, with what stating_nothing read (claim_readings) and whether another rule
    named a mistake."""
    from coach.grader import validate_answer

    read = []
    for row in rows:
        entry = grader.bank[row["qid"]]
        mistakes, seen = read_stating_nothing(grader, entry, validate_answer(row["answer"]))
        read.append({"kind": row["kind"], **seen, "other": any(m not in seen["named"] for m in mistakes)})
    return read


def read_stating_nothing(grader, entry, answer: str) -> tuple[list, dict]:
    """The answer's mistakes, and what stating_nothing read of it (it is given the grader's constants)."""
    seen = {}
    rule = grader.name_stating_nothing

    def reading(entry, signals, accused, results):
        seen.update(named=rule(entry, signals, accused, results), credits=[r.credit for r in results],
                    claims=claim_readings(entry, signals, accused))
        return seen["named"]

    grader.name_stating_nothing = reading
    try:
        _, _, mistakes = grader.assess(entry, answer)
    finally:
        del grader.name_stating_nothing
    return mistakes, seen or {"named": [], "credits": [], "claims": []}


def claim_readings(entry, signals, accused: set[int]) -> list[tuple[float, float]]:
    """(highest probability of stating a key point, highest misconception logit) of each claim stating_nothing may
    name, whatever the constants (coach.grader.nothing_readings)."""
    from coach.grader import nothing_readings

    read = nothing_readings(entry, signals, accused)
    if read is None:
        return []
    _, highest, logits = read
    return [(float(p), float(logits(k).max())) for k, p in enumerate(highest)]


def named_with(answer: dict, bars) -> bool:
    """Is a mistake named in this read answer when stating_nothing has the constants `bars`?"""
    if answer["other"]:
        return True
    claims = answer["claims"]
    return bool(claims) and bars.reads(answer["credits"]) and \
        bars.first_claim(np.array([p for p, _ in claims]), lambda k: claims[k][1]) is not None


def naming_figures(answers: list[dict], bars) -> dict:
    from evals.grader import CORRECT_KINDS

    wrong = [named_with(a, bars) for a in answers if a["kind"] == "wrong"]
    correct = [named_with(a, bars) for a in answers if a["kind"] in CORRECT_KINDS]
    return {"named": round(float(np.mean(wrong)), 4), "accused": round(float(np.mean(correct)), 4)}


def choose_naming(answers: list[dict]):
    """The setting of NAMING_GRID naming the most wrong answers with at most MOST_ACCUSED of the correct ones
    accused; ties: fewer accused, then the fewest grid steps from the grader's own constants."""
    from dataclasses import asdict

    from coach.grader import StatesNothing

    own = asdict(StatesNothing())
    best = None
    for values in itertools.product(*NAMING_GRID.values()):
        bars = StatesNothing(**dict(zip(NAMING_GRID, values, strict=True)))
        figures = naming_figures(answers, bars)
        if figures["accused"] > MOST_ACCUSED:
            continue
        steps = sum(abs(grid.index(value) - grid.index(own[name]))
                    for (name, grid), value in zip(NAMING_GRID.items(), values, strict=True))
        key = (-figures["named"], figures["accused"], steps)
        if best is None or key < best[0]:
            best = (key, bars)
    return best[1] if best else StatesNothing()


def calibrate() -> int:
    """Choose stating_nothing's constants for the credit model present and write them beside it (see the docstring)."""
    from dataclasses import asdict

    from coach import mistakes
    from coach.crossencoder import file_md5
    from coach.grader import Grader, StatesNothing
    from evals.datasets import grading_fresh
    from evals.grader import NAMING_TUNED

    for name, path in (("credit", model_path()), ("mistake", mistakes.model_path())):
        if not path.is_file():
            print(f"no {name} model at {path}: `make setup` trains it", file=sys.stderr)
            return 1
    grader = Grader(naming=StatesNothing())
    answers = []
    for name in NAMING_TUNED:
        answers += read_answers(grader, grading_fresh(name))
        print(f"calibrating the credit model: read {name}", file=sys.stderr, flush=True)
    chosen = choose_naming(answers)
    record = {"states_nothing": asdict(chosen), "model_md5": file_md5(model_path()),
              "mistake_model_md5": file_md5(mistakes.model_path()), "chosen_on": list(NAMING_TUNED),
              "answers": len(answers), "figures": naming_figures(answers, chosen),
              "with_the_grader_s_own": naming_figures(answers, StatesNothing())}
    calibration_path().write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {calibration_path()}: {record['states_nothing']} (on {', '.join(NAMING_TUNED)}: named "
          f"{record['figures']['named']:.1%}, accused {record['figures']['accused']:.2%}; the grader's own constants: "
          f"{record['with_the_grader_s_own']['named']:.1%}, {record['with_the_grader_s_own']['accused']:.2%})",
          file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.credit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--train", action="store_true", help="train on every pair and export the model to ONNX")
    task.add_argument("--crossvalidate", action="store_true", help="two folds by question and entry")
    task.add_argument("--calibrate", action="store_true",
                      help="choose the grader's naming constants for the credit model present (`make setup` runs it)")
    task.add_argument("--sentences", action="store_true",
                      help=f"write what the grader reads of each model answer to {SENTENCES.name} (changes the model)")
    parser.add_argument("--force", action="store_true", help="with --train: train again even if the model exists")
    args = parser.parse_args(argv)
    if args.crossvalidate:
        return crossvalidate()
    if args.sentences:
        return write_sentences()
    if args.calibrate:
        return calibrate()
    return train_and_export(model_path(), all_pairs, fit, args.force)  # about half an hour on 2 cores


if __name__ == "__main__":
    sys.exit(main())
