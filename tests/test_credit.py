"""The grader's credit model (coach/credit.py): made by `make setup`, read on onnxruntime, and the second opinion
it gives on every key point's credit."""
from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(scope="module")
def model():
    from coach.credit import credit_model, model_path

    assert model_path().is_file(), f"`make setup` makes {model_path()} (python -m evals.credit --train)"
    return credit_model()


def test_the_model_reads_its_own_training_pairs(model):
    """Sanity of training and export: on pairs it was trained on, the ONNX model ranks the key points an answer
    states (by its human's `covered` list) above those it does not."""
    from sklearn.metrics import roc_auc_score

    from evals.credit import answers, pairs_of

    pairs = pairs_of(answers()[::40], _bank())  # ~60 answers of every kind and set, ~330 pairs
    logits = model.logits([(p["point"], p["answer"]) for p in pairs])
    assert logits.shape == (len(pairs),) and np.isfinite(logits).all()
    assert roc_auc_score([p["label"] for p in pairs], logits) > 0.85


def _bank():
    from coach.bank import load_bank
    from coach.config import get_settings

    return {entry.id: entry for entry in load_bank(get_settings().corpus_dir)}


def test_a_point_in_plain_words_is_stated_and_the_topics_words_are_not(model):
    """Hand-made, on a point no training answer asks about in these words: a plain paraphrase reads as stating
    it more than a sentence with the same topic words that says something else. Written to assert said > 0.5 >
    other; the first run gave 0.28 and 0.12: the ranking holds, but a paraphrase sharing none of the point's
    words stays under 0.5 (the model leans on words too, which is why the grader takes the mean with its
    rules). The ranking is what is asserted."""
    from coach.credit import stated

    point = "At inference, batch normalization uses running averages of the mean and variance collected in training"
    plain = ("When the network is deployed it no longer looks at the batch: it normalises with the averages it "
             "kept track of while it was learning.")
    topical = "Batch normalization makes training faster and lets you use a larger learning rate."
    said, other = float(stated([point], [plain])[0]), float(stated([point], [topical])[0])
    assert said > other and other < 0.5, (said, other)


def test_the_model_lowers_the_rules_credit_and_raises_it_only_a_little(grader, bank, monkeypatch):
    """Every key point's credit is the mean of the rules' credit and the model's probability, but at most
    MODEL_RAISE over the rules' own: a model sure of every point adds at most that, a model sure of none halves the
    rules' credit; without the model the rules alone credit, as before the model."""
    import coach.grader as grading

    entry = bank["p2-beam-search"]
    answer = "Beam search keeps the k best partial sequences by their total log-probability at each step."
    monkeypatch.setattr(grading, "stated", lambda points, sentences: None)
    rules = [p.credit for p in grader.grade_entry(entry, answer).points]
    assert any(0.0 < c < 0.8 for c in rules), rules  # the cap binds somewhere
    monkeypatch.setattr(grading, "stated", lambda points, sentences: np.ones(len(points)))
    certain = [p.credit for p in grader.grade_entry(entry, answer).points]
    assert certain == pytest.approx([min(0.5 * c + 0.5, c + grading.MODEL_RAISE) for c in rules])
    monkeypatch.setattr(grading, "stated", lambda points, sentences: np.zeros(len(points)))
    assert [p.credit for p in grader.grade_entry(entry, answer).points] == pytest.approx([0.5 * c for c in rules])
    asked = []
    monkeypatch.setattr(grading, "stated", lambda points, sentences: asked.append(sentences) or np.zeros(len(points)))
    grader.grade_entry(entry, "Beam search is a search.")  # nothing beyond the question's words: no text to read
    assert asked == [[]]


def test_the_training_answers_ask_only_the_fitting_questions():
    """The model is trained on the six fitting blind sets and the 1,400 training answers, never on an answer to a
    question of a set the grader's figures are read on (evals.grader.UNFITTED). The bank pairs hold every
    entry's own texts (key points, model answer, misconceptions): what the grader reads for every question anyway."""
    from evals.credit import ANSWERS, answers
    from evals.datasets import load_jsonl
    from evals.grader import UNFITTED, blind_sets, fitting_sets

    fitting = {r["qid"] for rows in fitting_sets().values() for r in rows}
    never = {r["qid"] for name, rows in blind_sets().items() if name in UNFITTED for r in rows}
    assert [len(load_jsonl(path)) for path in ANSWERS] == [700, 700]
    asked = {row["qid"] for row in answers()}
    assert asked == fitting and not asked & never


def test_the_bank_pairs_teach_each_point_in_the_banks_own_words(bank):
    """Every key point of an entry: stated by the model-answer window holding most of its words and by the key
    points written as an answer; not stated by those key points without it, by the entry's misconceptions, or by
    another entry's answer."""
    from evals.credit import as_answer, point_pairs

    entry, other = bank["p1-early-stopping"], bank["p4-lora"]
    texts = {"answer": ["A window that says nothing of it.", entry.answer], "other": [other.answer],
             "misconceptions": as_answer([m.wrong for m in entry.misconceptions])}
    pairs = point_pairs(entry, texts)
    for i, point in enumerate(entry.key_points):
        labelled = [(p["answer"], p["label"]) for p in pairs if p["point"] == point]
        assert [label for _, label in labelled] == [1, 1, 0, 0, 0], point
        window, wording, without, misconceptions, another = (text for text, _ in labelled)
        assert window == entry.answer and misconceptions == texts["misconceptions"] and another == other.answer
        assert len(without) < len(wording)
        if i % 3 == 0:  # the key points in their own words (else in one of their alternatives)
            assert as_answer([point]) in wording and as_answer([point]) not in without


def test_the_sentences_read_of_each_model_answer_come_from_a_file_that_matches_the_bank(bank):
    """Training reads which sentences of every model answer the grader reads from sets/credit_sentences.jsonl, not
    from the grader, so a change of coach/grader.py's rules does not change the model a fresh machine trains. The
    file covers every entry with sentences of its own model answer; an edited answer is an error saying what to run."""
    import dataclasses

    from evals.credit import read_sentences

    read = read_sentences(bank)
    assert set(read) == set(bank) and all(read[qid] for qid in bank)
    assert all(sentence in bank[qid].answer for qid in bank for sentence in read[qid])
    edited = {**bank, "p1-early-stopping": dataclasses.replace(bank["p1-early-stopping"], answer="Rewritten.")}
    with pytest.raises(ValueError, match="p1-early-stopping.*python -m evals.credit --sentences"):
        read_sentences(edited)


def test_each_sentence_is_read_alone_against_every_point(model, bank):
    """coach.credit.stated_by_each: a (points, sentences) table, one sentence per column read alone; a key point read
    as a sentence states itself more than an unrelated sentence states any point. None without sentences."""
    from coach.credit import stated_by_each

    points = bank["p2-beam-search"].key_points
    table = stated_by_each(points, [points[0], "A sourdough starter needs flour, water and a warm kitchen."])
    assert table.shape == (len(points), 2) and ((table >= 0) & (table <= 1)).all()
    assert table[0, 0] > table[:, 1].max()
    assert stated_by_each(points, []) is None


def test_a_claim_stating_no_key_point_is_named_in_an_answer_that_states_little(grader, bank, monkeypatch):
    """In an answer that earns under the grader's StatesNothing.credit (under .most on every point), an on-topic
    claim the credit model reads as stating no key point and the mistake model as near a misconception is named: as
    that misconception when the mistake model is sure (over MISTAKE_MIN), else as "not what the model answer says"
    beside the point it is about. A claim that states a point is not; the score does not move; without either
    reading nothing is named this way."""
    from dataclasses import replace

    import coach.grader as grading

    entry = bank["p2-beam-search"]
    answer = ("Beam search keeps the k best partial sequences by their total log-probability at each step. "
              "The beam width sets how many layers the decoder runs before it emits a token.")
    second = grading.split_sentences(answer)[1]

    class Mistakes:  # the mistake model, reading every pair with one logit
        logit = 0.0

        def logits(self, pairs):
            return np.full(len(pairs), self.logit)

    reader = Mistakes()
    monkeypatch.setattr(grading, "mistake_model", lambda: reader)
    monkeypatch.setattr(grader, "naming", replace(grader.naming, credit=1.0, most=1.01))  # whatever it earns

    def first_states_the_first_point(points, sentences):  # (points, sentences)
        return np.array([[float(s.startswith("Beam search keeps") and i == 0) for s in sentences]
                         for i in range(len(points))])

    def added_by_the_reading(logit):
        """The grade with the per-sentence reading, and the mistakes it adds to the rules' own."""
        reader.logit = logit
        monkeypatch.setattr(grading, "stated_by_each", lambda points, sentences: None)
        unread = grader.grade_entry(entry, answer)
        monkeypatch.setattr(grading, "stated_by_each", first_states_the_first_point)
        grade = grader.grade_entry(entry, answer)
        assert grade.mistakes[:len(unread.mistakes)] == unread.mistakes and grade.score == unread.score
        return grade, grade.mistakes[len(unread.mistakes):]

    grade, added = added_by_the_reading((grader.naming.logit + grading.MISTAKE_MIN) / 2)
    assert [(m.sentence, m.kind) for m in added] == [(second, "unsupported")], grade.feedback
    assert added[0].right in entry.key_points and added[0].right.rstrip(".") in grade.feedback
    assert "is not what the model answer says" in grade.feedback
    _, added = added_by_the_reading(grading.MISTAKE_MIN + 1.0)
    assert [(m.sentence, m.wrong) for m in added] == [(second, entry.misconceptions[0].wrong)]
    assert added_by_the_reading(grader.naming.logit - 1.0)[1] == []  # not near any misconception
    opened = grader.naming
    grader.naming = replace(opened, most=0.0)  # it states a key point outright: not read this way
    assert added_by_the_reading(grading.MISTAKE_MIN + 1.0)[1] == []
    grader.naming = replace(opened, credit=0.0)  # the answer earns too much to be read this way
    assert added_by_the_reading(grading.MISTAKE_MIN + 1.0)[1] == []
    grader.naming = replace(opened, p=0.0)  # no claim reads under a probability of 0
    assert added_by_the_reading(grading.MISTAKE_MIN + 1.0)[1] == []


# --- the naming constants chosen for the model (python -m evals.credit --calibrate) -------------------------------
def read_answer(kind: str, claim: float, logit: float = 1.0, credits=(0.2, 0.1), other: bool = False) -> dict:
    """An answer as calibration reads it: its key-point credits and one claim's (highest stated probability,
    highest misconception logit)."""
    return {"kind": kind, "credits": list(credits), "claims": [(claim, logit)], "other": other}


def test_calibration_names_the_most_wrong_answers_within_the_accusation_bound():
    """The setting chosen names the most wrong answers with at most MOST_ACCUSED of the correct ones accused; among
    equals, the one nearest the grader's own constants. Two correct partial answers whose claim reads 0.3 (8% of 25)
    keep `p` at 0.3 or under; 0.25 and 0.3 name the same three wrong answers, and 0.25 is nearer 0.15."""
    from coach.grader import StatesNothing
    from evals.credit import MOST_ACCUSED, choose_naming, naming_figures

    wrong = [read_answer("wrong", claim) for claim in (0.02, 0.08, 0.22, 0.35)]
    wrong += [read_answer("wrong", 0.01, logit=-2.0), read_answer("wrong", 0.9, other=True)]  # never / always named
    correct = [read_answer("partial", 0.3) for _ in range(2)]
    correct += [read_answer("complete", 0.02, credits=(0.9, 0.8)) for _ in range(23)]  # it states the points
    chosen = choose_naming(wrong + correct)
    assert chosen == StatesNothing(p=0.25)
    assert naming_figures(wrong + correct, chosen) == {"named": round(4 / 6, 4), "accused": 0.0}
    assert naming_figures(wrong + correct, StatesNothing(p=0.4))["accused"] == 0.08 > MOST_ACCUSED
    assert naming_figures(wrong + correct, StatesNothing(credit=0.3, most=0.5, p=0.5))["named"] == round(5 / 6, 4)


def test_calibration_replays_what_the_grader_names(grader, monkeypatch):
    """What calibration reads of an answer, replayed with any constants, names exactly what the grader names with
    them (24 of fresh5's wrong and partial answers; the grader's constants and two looser settings, as seed models chose)."""
    from dataclasses import replace

    from coach.grader import validate_answer
    from evals.credit import named_with, read_answers
    from evals.datasets import grading_fresh

    rows = [row for row in grading_fresh("fresh5") if row["kind"] in ("wrong", "partial")][:24]
    read = read_answers(grader, rows)
    own = grader.naming
    for naming in (own, replace(own, p=0.5, most=0.7, logit=-0.5), replace(own, p=0.3, credit=0.5, most=0.8)):
        monkeypatch.setattr(grader, "naming", naming)
        graded = [bool(grader.assess(grader.bank[r["qid"]], validate_answer(r["answer"]))[2]) for r in rows]
        assert [named_with(a, naming) for a in read] == graded, naming
    assert any(a["named"] and not a["other"] for a in read)  # the rule itself was replayed
    assert not any(named_with(a, replace(own, p=0.0)) and not a["other"] for a in read)


def test_the_grader_reads_the_constants_chosen_for_its_two_models(tmp_path, monkeypatch, caplog):
    """coach.credit.read_calibration gives the file's constants only while both model files are those they were
    chosen for; an unreadable or missing file, or other models, leave the grader's own, and the log says what to run.
    After `make setup`, this machine's models have theirs."""
    import hashlib
    import json
    from dataclasses import fields

    from coach import credit
    from coach.grader import StatesNothing

    assert tuple(field.name for field in fields(StatesNothing)) == credit.CONSTANTS
    assert credit.calibration() is not None, "`make setup` writes the calibration (python -m evals.credit --calibrate)"
    monkeypatch.setenv("COACH_MODEL_CACHE", str(tmp_path))
    for name, content in (("credit-model.onnx", b"credit"), ("mistake-model.onnx", b"mistakes")):
        (tmp_path / name).write_bytes(content)
    assert credit.read_calibration() is None and "python -m evals.credit --calibrate" in caplog.text
    chosen = {"p": 0.3, "credit": 0.45, "most": 0.7, "logit": -0.5}
    md5 = {name: hashlib.md5((tmp_path / name).read_bytes()).hexdigest()
           for name in ("credit-model.onnx", "mistake-model.onnx")}
    (tmp_path / "credit-model.json").write_text(json.dumps(
        {"states_nothing": chosen, "model_md5": md5["credit-model.onnx"], "mistake_model_md5": md5["mistake-model.onnx"]}))
    assert credit.read_calibration() == chosen
    (tmp_path / "credit-model.onnx").write_bytes(b"credit trained again")
    caplog.clear()
    assert credit.read_calibration() is None and "chosen for other model files" in caplog.text
    for unreadable in ("{not json", json.dumps({"states_nothing": {**chosen, "p": "low"}, "model_md5": "",
                                                "mistake_model_md5": ""}), json.dumps({"states_nothing": chosen})):
        (tmp_path / "credit-model.json").write_text(unreadable)
        caplog.clear()
        assert credit.read_calibration() is None and "unreadable" in caplog.text, unreadable
