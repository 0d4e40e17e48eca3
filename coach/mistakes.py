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
MiniLM's own tokenizer, as coach.embedder does, so the app never imports torch. Without the file the grader
accuses as it did before this model and says so once in the log.
"""
from __future__ import annotations

import logging
import os
from functools import cache
from pathlib import Path

import numpy as np

from coach.config import cache_dir
from coach.embedder import word_pieces

MODEL_FILE = "mistake-model.onnx"
MAX_WORD_PIECES = 128   # misconception + sentence, as in training (evals/mistakes.py)

log = logging.getLogger(__name__)


def model_path() -> Path:
    """Where `make setup` writes the model: COACH_MODEL_CACHE, else .cache/ in the repository."""
    return cache_dir() / MODEL_FILE


class MistakeModel:
    """The fine-tuned cross-encoder on onnxruntime: (misconception, sentence) pairs in, logits out."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = word_pieces(MAX_WORD_PIECES)  # (misconception, sentence) pairs, as in training

    def logits(self, pairs: list[tuple[str, str]]) -> np.ndarray:
        """(len(pairs),) float: above 0 the sentence reads as stating the misconception."""
        if not pairs:
            return np.zeros(0, dtype=np.float32)
        encoded = self.tokenizer.encode_batch(pairs)
        feed = {"input_ids": [e.ids for e in encoded], "attention_mask": [e.attention_mask for e in encoded],
                "token_type_ids": [e.type_ids for e in encoded]}
        feed = {name: np.asarray(value, dtype=np.int64) for name, value in feed.items()}  # (n, word pieces)
        return self.session.run(["logits"], feed)[0].reshape(-1)


@cache
def mistake_model() -> MistakeModel | None:
    """The model, loaded once per process; None (said once in the log) when `make setup` has not made it."""
    if model_path().is_file():
        return MistakeModel(model_path())
    log.warning("no mistake model at %s: misconception accusations are not read a second time; `make setup` "
                "or `python -m evals.mistakes --train` makes it", model_path())
    return None
