"""Does an answer state a key point? The credit model: the second opinion on every key point's credit.

The grader's credit for a key point (coach.grader's logistic credit) reads MiniLM cosines and shared words, and
those score a paraphrase in plain words low and a wrong answer in the topic's words high: on text no constant saw,
main ordered complete > partial > wrong for 73% of questions (fresh6-9, evals/README.md). This model reads the pair
(key point, the answer's usable sentences joined) together:
MiniLM fine-tuned as a cross-encoder on the human `covered` labels of other people's answers (the six
fitting blind sets and the 1,400 training answers to their questions: every answer x every key point) and on the
bank's own wording (each key point against its model answer, the key points written as an answer with and
without it, the entry's misconceptions and another entry's answer: without these it learned other people's
paraphrases only and gave the bank's key points, stated word for word, 0.08-0.48). The grader's credit for a
point becomes the mean of its own credit and the model's probability (the mean, not the max or the model alone,
chosen out of fold; evals/README.md, "Grader, eleventh pass" and "twelfth pass"), but at most 0.1 over the rules'
own: the model lowers what the rules over-credit, and may not credit what they did not find, since it also credits
an answer that is about the right area and states the point nowhere (coach.grader.MODEL_RAISE, fifteenth to
eighteenth passes).

Trained once by `make setup` (`python -m evals.credit --train`: about half an hour of torch on 2 cores, 22,723
pairs) and exported to ONNX beside MiniLM's export; read on onnxruntime (coach.crossencoder). Without the file the
grader credits as it did before this model and says so once in the log.

The grader also names a wrong claim when this model reads it as stating no key point (coach.grader.stating_nothing).
How low such a claim reads differs from one training run to the next (56-84% of never-fitted wrong answers named
with one set of constants over four runs), so `make setup` then chooses that rule's constants for the model it has
made, on the naming-tuned answers only, and writes them beside it (`python -m evals.credit --calibrate`, about
three minutes; `calibration` below).
"""
from __future__ import annotations

import json
import logging
from functools import cache
from pathlib import Path

import numpy as np

from coach.config import cache_dir
from coach.crossencoder import CrossEncoder, file_md5
from coach.mistakes import model_path as mistake_model_path

MODEL_FILE = "credit-model.onnx"
CALIBRATION_FILE = "credit-model.json"   # stating_nothing's constants chosen for the model beside it (evals.credit)
CONSTANTS = ("p", "credit", "most", "logit")  # which: coach.grader.StatesNothing's fields
MAX_WORD_PIECES = 256   # key point + the answer's sentences, as in training (evals/credit.py)
WINDOW_PIECES = 200     # room left for the key point (at most ~50 word pieces in the bank) within MAX_WORD_PIECES

log = logging.getLogger(__name__)


def model_path() -> Path:
    """Where `make setup` writes the model: COACH_MODEL_CACHE, else .cache/ in the repository."""
    return cache_dir() / MODEL_FILE


@cache
def credit_model() -> CrossEncoder | None:
    """The model, loaded once per process; None (said once in the log) when `make setup` has not made it."""
    if model_path().is_file():
        return CrossEncoder(model_path(), MAX_WORD_PIECES)
    log.warning("no credit model at %s: key points are credited by the rules alone; `make setup` or "
                "`python -m evals.credit --train` makes it", model_path())
    return None


def calibration_path() -> Path:
    return cache_dir() / CALIBRATION_FILE


@cache
def calibration() -> dict[str, float] | None:
    """read_calibration, once per process."""
    return read_calibration()


def read_calibration() -> dict[str, float] | None:
    """coach.grader.StatesNothing's constants chosen for the credit model present, or None (said in the log) when
    there is no model, no calibration file, or the file was written for another credit or mistake model."""
    path = calibration_path()
    if not model_path().is_file():
        return None
    remedy = "`make setup` or `python -m evals.credit --calibrate` writes it; until then the grader's own constants"
    try:
        chosen = json.loads(path.read_text())
        constants = {name: float(chosen["states_nothing"][name]) for name in CONSTANTS}
        written_for = (chosen["model_md5"], chosen["mistake_model_md5"])
    except FileNotFoundError:
        log.warning("no calibration of the credit model at %s: %s", path, remedy)
        return None
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("the credit model's calibration %s is unreadable (%s): %s", path, exc, remedy)
        return None
    mistakes = mistake_model_path()
    if written_for != (file_md5(model_path()), file_md5(mistakes) if mistakes.is_file() else None):
        log.warning("the credit model's calibration %s was chosen for other model files: %s", path, remedy)
        return None
    return constants


def stated(points: list[str], sentences: list[str]) -> np.ndarray | None:
    """(len(points),) probability that the sentences state each key point; None without the model or sentences.
    The model read answers of up to about 200 words in training (sets/mistake_answers.jsonl: complete answers 96-198
    words, partial and wrong ones 11-57); a longer answer is read in windows of whole sentences of at most
    WINDOW_PIECES word pieces, and a point counts as stated as well as its best window states it. A short answer is
    read whole, not sentence by sentence as well: that raised wrong answers more than partial ones and lost 11
    points of ordering on the never-fitted sets (thirty-eighth pass, evals/README.md)."""
    model = credit_model() if sentences and points else None
    if model is None:
        return None
    chunks = windows(sentences, model.tokenizer)
    logits = model.logits([(point, chunk) for point in points for chunk in chunks])  # (points * windows,)
    return 1.0 / (1.0 + np.exp(-logits.reshape(len(points), len(chunks)).max(axis=1)))


def stated_by_each(points: list[str], sentences: list[str]) -> np.ndarray | None:
    """(len(points), len(sentences)) probability that each sentence, read alone, states each key point; None without
    the model, the points or the sentences. What a sentence that states none of them is: a wrong statement, when the
    answer is about the entry (coach.grader.stating_nothing)."""
    model = credit_model() if sentences and points else None
    if model is None:
        return None
    logits = model.logits([(point, sentence) for point in points for sentence in sentences])  # (points * sentences,)
    return 1.0 / (1.0 + np.exp(-logits.reshape(len(points), len(sentences))))


def windows(sentences: list[str], tokenizer) -> list[str]:
    """The sentences joined into consecutive windows of at most WINDOW_PIECES word pieces (a longer sentence alone),
    counted by MiniLM's `tokenizer` (coach.embedder.word_pieces)."""
    sizes = [sum(encoded.attention_mask) for encoded in tokenizer.encode_batch(sentences)]  # padding aside
    chunks, current, size = [], [], 0
    for sentence, pieces in zip(sentences, sizes, strict=True):
        if current and size + pieces > WINDOW_PIECES:
            chunks.append(" ".join(current))
            current, size = [], 0
        current.append(sentence)
        size += pieces
    return [*chunks, " ".join(current)]
