"""Does an answer sentence state a misconception? A second reading of the grader's accusations.

The grader's rules (coach.grader) read MiniLM cosines and shared words, and those put a correct sentence in a
misconception's words and the misconception itself in the same place: on the blind grading sets every rule that
named more wrong answers accused about as many correct ones (evals/README.md, the seventh and eighth passes).
This model reads the pair (misconception, answer sentence) together: MiniLM fine-tuned as a cross-encoder on
other people's interview answers (the fitting blind sets and the training answers in evals/sets/, weak labels:
a wrong answer's sentence leaning most towards a misconception states it, no sentence of a correct answer states
any). A misconception accusation stands only when the model's logit for its pair exceeds MISTAKE_MIN.

It is trained once by `make setup` (`python -m evals.mistakes --train`: a few minutes of torch on 2 cores, from
evals/sets/mistake_pairs.jsonl) and exported to ONNX beside MiniLM's export; here it runs on onnxruntime with
MiniLM's own tokenizer (coach.crossencoder), so the app never imports torch. Without the file the grader
accuses as it did before this model and says so once in the log.
"""
from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

from coach.config import cache_dir
from coach.crossencoder import CrossEncoder

MODEL_FILE = "mistake-model.onnx"
MAX_WORD_PIECES = 128   # misconception + sentence, as in training (evals/mistakes.py)

log = logging.getLogger(__name__)


def model_path() -> Path:
    """Where `make setup` writes the model: COACH_MODEL_CACHE, else .cache/ in the repository."""
    return cache_dir() / MODEL_FILE


@cache
def mistake_model() -> CrossEncoder | None:
    """The model, loaded once per process; None (said once in the log) when `make setup` has not made it."""
    if model_path().is_file():
        return CrossEncoder(model_path(), MAX_WORD_PIECES)
    log.warning("no mistake model at %s: misconception accusations are not read a second time; `make setup` "
                "or `python -m evals.mistakes --train` makes it", model_path())
    return None
