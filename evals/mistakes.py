"""The mistake model's data, training and threshold (coach/mistakes.py).

    python -m evals.mistakes --pairs           # weak labels -> sets/mistake_pairs.jsonl (needs the index)
    python -m evals.mistakes --train           # fine-tune MiniLM on them, export to ONNX (`make setup` runs it)
    python -m evals.mistakes --crossvalidate   # the threshold curve, leaving each fitting set out

**Data.** Other people's answers to the fitting blind sets' 140 questions (evals.grader.fitting_sets: the six
sets no never-fitted set is among) and `sets/mistake_answers.jsonl` (700 more answers to the same questions by
seven further authors who saw only each question and its key points: per question one complete, two partial, two
wrong). The answers carry a kind, not a sentence label, so the labels are weak: in a wrong answer, the sentence
leaning most towards a misconception (coach.grader's `leaning`) states its nearest one (label 1); every sentence
of a complete or partial answer, paired with its nearest misconception, states none (label 0); the other
sentences of a wrong answer are left out. The pairs are written to a file so training needs neither the index
nor the grader.

**Training.** MiniLM (the packaged weights) with a one-logit head, binary cross-entropy with the positives
weighted up to the negatives' count, 2 epochs of AdamW (lr 3e-5, weight decay 0.01, batches of 16, seed 0),
pairs cut to 128 word pieces. Chosen once (2026-12-04) and not tuned: see evals/README.md, "Grader, eighth pass".

**The same model on every machine.** Seeded training on the same pairs still gave another model on another CPU:
torch's kernels sum in another order with AVX-512 than with AVX2, and training carries the difference far (CI,
2026-12-06: four of eighty more correct answers accused on four never-fitted sets). Training is pinned to the AVX2
kernels (`SAME_KERNELS`, set before torch loads), which every x86-64 machine of this project has: trained so on an
AVX-512 machine, both models gave CI's figures exactly (evals/README.md, "The grader's models on every machine").
MKL keeps that branch on Intel CPUs only: on an AMD CPU it runs its AUTO branch (MKL_VERBOSE prints "CNR:AUTO"), and
both models come out other bits, which grade fresh5-22 and the mixed sets to the Intel pair's figures (evals/README.md,
"The grader's models on an AMD CPU"); the one branch MKL keeps on every x86-64 CPU, COMPATIBLE, took 26 ms for a
2048 x 384 x 1536 matrix product there, against 12 ms.
torch also cuts its sums by thread, so the thread count is pinned too (`TRAINING_THREADS`): 40 batches trained
with 1, 2 and 4 threads gave three different sets of weights (2026-12-06, looking for why CI's figures differed
again; that time the cause was the credit model's data: evals/credit.py).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coach.embedder import model_dir
from coach.mistakes import MAX_WORD_PIECES, model_path
from evals.datasets import SETS, load_jsonl, write_jsonl

# MKL's conditional numerical reproducibility, ATen's and oneDNN's kernels: AVX2 wherever torch runs the training
SAME_KERNELS = {"MKL_CBWR": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}
for _name, _value in SAME_KERNELS.items():
    os.environ.setdefault(_name, _value)
TRAINING_THREADS = 2  # torch's threads for training, whatever the machine's cores: this project's machines have 2

ANSWERS = SETS / "mistake_answers.jsonl"   # 700 training answers to the fitting sets' questions
PAIRS = SETS / "mistake_pairs.jsonl"       # (set, qid, misconception, sentence, label): the training pairs
EPOCHS, LEARNING_RATE, WEIGHT_DECAY, BATCH, SEED = 2, 3e-5, 0.01, 16, 0
GROUP = 50  # batches sorted by length together when grouped (evals.credit)
THRESHOLDS = (-3.0, -2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)


def weak_pairs(grader, name: str, rows: list[dict]) -> list[dict]:
    """The labelled (misconception, sentence) pairs of one set's complete, partial and wrong answers."""
    pairs = []
    for row in rows:
        entry = grader.bank[row["qid"]]
        signals = grader.signals(entry, row["answer"]) if row["kind"] in ("complete", "partial", "wrong") else None
        if signals is None or not entry.misconceptions:
            continue
        most_leaning = int(np.argmax(signals.leaning))
        for j, sentence in enumerate(signals.sentences):
            if row["kind"] == "wrong" and j != most_leaning:
                continue
            wrong = entry.misconceptions[int(signals.nearest_misconception[j])].wrong
            pairs.append({"set": name, "qid": row["qid"], "wrong": wrong, "sentence": sentence,
                          "label": int(row["kind"] == "wrong")})
    return pairs


def write_pairs(path: Path = PAIRS) -> int:
    from coach.grader import Grader
    from evals.grader import fitting_sets

    grader = Grader()
    named = {**fitting_sets(), "answers": load_jsonl(ANSWERS)}
    pairs = [pair for name, rows in named.items() for pair in weak_pairs(grader, name, rows)]
    write_jsonl(path, pairs)
    print(f"wrote {len(pairs)} pairs ({sum(p['label'] for p in pairs)} positive) to {path}", file=sys.stderr)
    return 0


def train(pairs: list[dict], first: str = "wrong", second: str = "sentence", max_length: int = MAX_WORD_PIECES,
          epochs: int = EPOCHS, grouped: bool = False):
    """MiniLM fine-tuned on the labelled pairs (`first`, `second`) -> `label`; returns (model, tokenizer), both
    torch/transformers. evals.credit trains its model with the same function, its batches `grouped` by length."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        print(f"training on torch's {torch.backends.cpu.get_cpu_capability()} kernels, not AVX2 (torch was loaded "
              "before evals.mistakes, or this CPU has no AVX2): the model will differ from other machines'",
              file=sys.stderr)
    if not intel_cpu():
        print("MKL keeps its AVX2 branch on Intel CPUs only: the model will differ in its bits from an Intel "
              "machine's (on AMD the grades measured the same: evals/README.md, \"The grader's models on an AMD "
              "CPU\")", file=sys.stderr)
    torch.set_num_threads(TRAINING_THREADS)
    torch.manual_seed(SEED)
    shuffler = random.Random(SEED)
    tokenizer = AutoTokenizer.from_pretrained(str(model_dir()))
    model = AutoModelForSequenceClassification.from_pretrained(str(model_dir()), num_labels=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    positives = sum(p["label"] for p in pairs)
    loss_of = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor((len(pairs) - positives) / positives))
    model.train()
    for _ in range(epochs):
        for batch in tqdm(batches(pairs, shuffler, (first, second) if grouped else None), desc="training",
                          unit="batch", file=sys.stderr, mininterval=30):
            encoded = tokenizer([p[first] for p in batch], [p[second] for p in batch], padding=True,
                                truncation=True, max_length=max_length, return_tensors="pt")
            loss = loss_of(model(**encoded).logits.squeeze(-1), torch.tensor([float(p["label"]) for p in batch]))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    return model.eval(), tokenizer


def intel_cpu() -> bool:
    """Whether MKL keeps SAME_KERNELS' branch here: on Intel CPUs only (elsewhere it runs its AUTO branch)."""
    try:
        return "GenuineIntel" in Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False


def batches(pairs: list[dict], shuffler: random.Random, grouped_on: tuple[str, str] | None) -> list[list[dict]]:
    """One epoch's batches of BATCH shuffled pairs. Grouped on two fields: each run of GROUP batches is sorted by
    the fields' length before it is cut, and the batches are shuffled, so a batch pads to its own length."""
    order = list(pairs)
    shuffler.shuffle(order)
    if grouped_on is None:
        return [order[start:start + BATCH] for start in range(0, len(order), BATCH)]
    cut = []
    for start in range(0, len(order), BATCH * GROUP):
        run = sorted(order[start:start + BATCH * GROUP], key=lambda p: sum(len(p[field]) for field in grouped_on))
        cut += [run[n:n + BATCH] for n in range(0, len(run), BATCH)]
    shuffler.shuffle(cut)
    return cut


def export(model, target: Path) -> None:
    """The classifier as ONNX: MiniLM's inputs, output `logits` (batch, 1)."""
    from coach.onnx_export import write

    write(model, target, "logits", {0: "batch"})


def crossvalidate() -> int:
    """Leaving each fitting set out (and the training answers to its questions), the model's logits for the
    misconception accusations main makes on that set; then wrong answers named and correct answers accused
    per threshold (coach.grader.MISTAKE_MIN is the one with the most named less accused)."""
    from unittest.mock import patch

    import torch

    from coach import grader as grading
    from evals.grader import fitting_sets

    pairs = load_jsonl(PAIRS)
    graded = []
    with patch.object(grading, "MISTAKE_MIN", -np.inf):  # the rules alone: the accusations the model is asked about
        grader = grading.Grader()
        for held, rows in fitting_sets().items():
            questions = {row["qid"] for row in rows}
            model, tokenizer = train([p for p in pairs if p["set"] != held
                                      and not (p["set"] == "answers" and p["qid"] in questions)])
            for row in rows:
                mistakes = grader.grade(row["question"], row["answer"]).mistakes
                said = [m for m in mistakes if m.kind == "misconception"]
                logits = []
                if said:
                    encoded = tokenizer([m.wrong for m in said], [m.sentence for m in said], padding=True,
                                        truncation=True, max_length=MAX_WORD_PIECES, return_tensors="pt")
                    with torch.no_grad():
                        logits = model(**encoded).logits.reshape(-1).tolist()
                graded.append({"kind": row["kind"], "others": len(mistakes) - len(said), "logits": logits})
            print(f"{held}: done", file=sys.stderr)
    for threshold in (None, *THRESHOLDS):
        kept = [r["others"] > 0 or any(threshold is None or x > threshold for x in r["logits"]) for r in graded]
        named = sum(k for k, r in zip(kept, graded, strict=True) if r["kind"] == "wrong")
        accused = sum(k for k, r in zip(kept, graded, strict=True) if r["kind"] in ("complete", "partial"))
        print(f"threshold {threshold}: wrong answers named {named}, correct answers accused {accused}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.mistakes", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    task = parser.add_mutually_exclusive_group(required=True)
    task.add_argument("--pairs", action="store_true", help=f"write the weak-label pairs to {PAIRS.name}")
    task.add_argument("--train", action="store_true", help="train on the pairs and export the model to ONNX")
    task.add_argument("--crossvalidate", action="store_true", help="the threshold curve, each fitting set left out")
    parser.add_argument("--force", action="store_true", help="with --train: train again even if the model exists")
    args = parser.parse_args(argv)
    if args.pairs:
        return write_pairs()
    if args.crossvalidate:
        return crossvalidate()
    return train_and_export(model_path(), lambda: load_jsonl(PAIRS), train, args.force)


def train_and_export(target: Path, pairs_of, fit, force: bool) -> int:
    """`--train`: fit a model on the pairs (read only when needed) and export it to `target`, unless it exists."""
    if target.is_file() and not force:
        print(f"{target} exists (--force to train again)", file=sys.stderr)
        return 0
    started = time.perf_counter()
    pairs = pairs_of()
    print(f"training on {len(pairs)} pairs", file=sys.stderr)
    model, _ = fit(pairs)
    export(model, target)
    print(f"trained on {len(pairs)} pairs, wrote {target} in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
