"""The grader's mistake model (coach/mistakes.py): made by `make setup`, read on onnxruntime, and the second
reading it gives the grader's misconception accusations."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model():
    from coach.mistakes import mistake_model, model_path

    assert model_path().is_file(), f"`make setup` makes {model_path()} (python -m evals.mistakes --train)"
    return mistake_model()


def test_the_model_separates_its_own_training_pairs(model):
    """Sanity of training and export: on the pairs it was trained on, the ONNX model ranks the sentences that
    state a misconception above those that do not (AUC 0.957 on these 506 pairs, 64 positive, 2026-12-04)."""
    from sklearn.metrics import roc_auc_score

    from evals.datasets import load_jsonl
    from evals.mistakes import PAIRS

    pairs = load_jsonl(PAIRS)[::7]  # every 7th: ~500 pairs, both labels
    logits = model.logits([(p["wrong"], p["sentence"]) for p in pairs])
    assert logits.shape == (len(pairs),) and np.isfinite(logits).all()
    assert roc_auc_score([p["label"] for p in pairs], logits) > 0.85


def test_pairs_are_read_the_same_alone_and_in_a_batch(model):
    """Padding a pair to the longest of its batch does not change its logit (the attention mask is fed)."""
    pairs = [("a higher temperature gives the model more knowledge", "Higher temperature flattens the distribution."),
             ("dropout is applied at inference too", "At test time dropout is switched off and nothing is dropped, "
              "because the weights were already rescaled during training so expectations match.")]
    together = model.logits(pairs)
    alone = np.concatenate([model.logits([pair]) for pair in pairs])
    assert np.allclose(together, alone, atol=1e-4), (together, alone)
    assert model.logits([]).shape == (0,)


class Fixed:
    """A stand-in mistake model that gives every pair the same logit."""

    def __init__(self, logit: float):
        self.logit, self.asked = logit, []

    def logits(self, pairs):
        self.asked.extend(pairs)
        return np.full(len(pairs), self.logit)


def test_a_misconception_accusation_stands_only_over_the_threshold(grader, bank, monkeypatch):
    """The second reading drops a misconception accusation whose logit is not over MISTAKE_MIN (and the
    sentence is no longer set aside, so the answer scores higher); over it, the accusation stands."""
    import coach.grader as grading

    entry = bank["p2-beam-search"]
    answer = ("Beam search keeps the k best partial sequences by their total log-probability at each step. "
              "It is the decoder I would always pick for open-ended chat and for writing stories.")
    low, high = Fixed(grading.MISTAKE_MIN - 1), Fixed(grading.MISTAKE_MIN + 1)
    monkeypatch.setattr(grading, "mistake_model", lambda: high)
    kept = grader.grade_entry(entry, answer)
    assert [m.kind for m in kept.mistakes] == ["misconception"] and high.asked, kept.feedback
    assert high.asked[0] == (kept.mistakes[0].wrong, kept.mistakes[0].sentence)
    monkeypatch.setattr(grading, "mistake_model", lambda: low)
    dropped = grader.grade_entry(entry, answer)
    assert not dropped.mistakes and dropped.score > kept.score, dropped.feedback
    monkeypatch.setattr(grading, "MISTAKE_MIN", float("-inf"))  # the rules alone: the model is not asked
    low.asked.clear()
    assert grader.grade_entry(entry, answer).mistakes and not low.asked


def test_an_accusation_by_the_answer_level_rule_alone_needs_a_surer_model(grader, bank, monkeypatch):
    """A sentence only the answer-level rule accuses (fresh5's wrong answer to the pass@k question, a naming-tuned
    set) is set aside when the mistake model's logit is over ANSWER_RULE_MISTAKE_MIN, not when it is only over
    MISTAKE_MIN; the sentence rule's accusation of the beam-search answer stands at that same logit."""
    import coach.grader as grading
    from evals.datasets import grading_fresh

    answer = next(r["answer"] for r in grading_fresh("fresh5") if r["qid"] == "p4-pass-at-k" and r["kind"] == "wrong")
    between = Fixed((grading.MISTAKE_MIN + grading.ANSWER_RULE_MISTAKE_MIN) / 2)
    over = Fixed(grading.ANSWER_RULE_MISTAKE_MIN + 0.5)
    monkeypatch.setattr(grading, "mistake_model", lambda: over)
    accused = grader.grade_entry(bank["p4-pass-at-k"], answer)
    monkeypatch.setattr(grading, "mistake_model", lambda: between)
    spared = grader.grade_entry(bank["p4-pass-at-k"], answer)
    assert accused.sentence_counts["mistaken"] == 1 and spared.sentence_counts["mistaken"] == 0, spared.feedback
    assert spared.score > accused.score
    beam = ("Beam search keeps the k best partial sequences by their total log-probability at each step. "
            "It is the decoder I would always pick for open-ended chat and for writing stories.")
    assert grader.grade_entry(bank["p2-beam-search"], beam).sentence_counts["mistaken"] == 1


def test_without_the_model_the_rules_alone_decide(grader, bank, monkeypatch):
    import coach.grader as grading

    entry = bank["p2-beam-search"]
    answer = ("Beam search keeps the k best partial sequences by their total log-probability at each step. "
              "It is the decoder I would always pick for open-ended chat and for writing stories.")
    monkeypatch.setattr(grading, "mistake_model", lambda: None)
    assert grader.grade_entry(entry, answer).mistakes


def test_the_pairs_file_holds_the_fitting_sets_and_the_training_answers_only():
    """The model is trained on the six fitting blind sets and the training answers, never on a set the
    grader's figures are read on (evals.grader.UNFITTED), and the training answers ask only the fitting
    sets' questions."""
    from evals.datasets import load_jsonl
    from evals.grader import UNFITTED, blind_sets, fitting_sets
    from evals.mistakes import ANSWERS, PAIRS

    pairs = load_jsonl(PAIRS)
    fitting = {r["qid"] for rows in fitting_sets().values() for r in rows}
    never = {r["qid"] for name, rows in blind_sets().items() if name in UNFITTED for r in rows}
    assert {p["set"] for p in pairs} == {*fitting_sets(), "answers"}
    assert {p["qid"] for p in pairs} <= fitting and not {p["qid"] for p in pairs} & never
    answers = load_jsonl(ANSWERS)
    assert len(answers) == 700 and {a["qid"] for a in answers} == fitting
    assert {p["label"] for p in pairs} == {0, 1} and sum(p["label"] for p in pairs) >= 400
