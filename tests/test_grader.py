"""The mock interviewer: grading against key points, sessions in SQLite, Leitner review, the CLI."""
from __future__ import annotations

import functools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from conftest import ROOT, run_cli
from helpers import CITATION_KEYS, GRADE_KEYS


@pytest.fixture(scope="module")
def bank(grader):
    return grader.bank


@pytest.fixture
def engine(grader, tmp_path):
    from coach.interviewer import Interviewer

    clock = FakeClock()
    interviewer = Interviewer(grader, path=tmp_path / "interviews.sqlite3", clock=clock)
    interviewer.fake_clock = clock
    yield interviewer
    interviewer.close()


class FakeClock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


def sentences_of(entry, count: int | None = None) -> str:
    """An answer that states the first `count` key points, each as a sentence of its own."""
    points = entry.key_points[:count] if count else entry.key_points
    return " ".join(f"In short, {p}." for p in points)


# --- grading ---------------------------------------------------------------------------------------
def test_grade_json_keeps_the_contract(grader, bank):
    entry = bank["p1-dropout-ensemble"]
    doc = grader.grade("how does dropout regularize a network?", sentences_of(entry)).as_json()
    assert set(GRADE_KEYS) <= set(doc)
    for key, kind in GRADE_KEYS.items():
        assert isinstance(doc[key], kind), (key, doc[key])
    assert doc["matched_question"] == entry.question and 0 <= doc["score"] <= 10
    assert set(doc["covered"]) | set(doc["missing"]) == set(entry.key_points)
    # The contract's citation fields, each of its type; more are allowed (issue 20 added `evidence`).
    assert doc["citations"]
    for c in doc["citations"]:
        assert set(CITATION_KEYS) <= set(c) and all(isinstance(c[k], t) for k, t in CITATION_KEYS.items()), c
    assert doc["citations"][0]["question"] == entry.question and "[1]" in doc["feedback"]
    assert doc["citations"][0]["library"] == "bank" and doc["key_points_derived"] is False


def test_grading_order_on_crafted_answers(grader, bank):
    """A complete answer and three key points > one key point > an answer to another question > nothing,
    on entries from every part of the bank."""
    entries = [bank[qid] for qid in ("p1-bias-variance", "p2-lstm-gates", "p3-rag-pipeline", "p4-kv-cache",
                                     "p1-batch-norm", "p2-bert-vs-gpt")]
    for n, entry in enumerate(entries):
        other = entries[(n + 1) % len(entries)]
        scores = [grader.grade_entry(entry, answer).score for answer in
                  (entry.answer, sentences_of(entry, 3), sentences_of(entry, 1), other.answer, "")]
        full, three, one, other_answer, empty = scores
        assert min(full, three) > one > other_answer >= empty == 0.0, (entry.id, scores)
        assert max(full, three) >= 6.5 and other_answer <= 2.0, (entry.id, scores)


def test_keyword_stuffing_does_not_earn_a_high_score(grader, bank):
    from coach.text import WORD, stopwords

    entries = list(bank.values())[::16]  # 11 entries across the four parts
    for entry in entries:
        terms = list(dict.fromkeys(w for p in entry.key_points for w in WORD.findall(p.lower())
                                   if w not in stopwords()))
        for stuffed in (" ".join(terms), ", ".join(terms) + ".", ". ".join(terms[:12]) + "."):
            grade = grader.grade_entry(entry, stuffed)
            assert grade.score <= 3.0, (entry.id, stuffed, grade.score)
        assert grader.grade_entry(entry, sentences_of(entry)).score >= 6.0, entry.id


def test_empty_nonsense_and_off_topic_answers_score_near_zero(grader, bank):
    entry = bank["p4-lora"]
    for answer in ("", "   ", "asdf qwerty zxcv", "I don't know.",
                   "The Eiffel Tower is in Paris and was finished in 1889 for the world fair."):
        assert grader.grade_entry(entry, answer).score <= 1.0, answer


def test_a_negated_key_point_is_not_covered(grader, bank):
    entry = bank["p1-perceptron-xor"]
    point = "XOR is not linearly separable, so one perceptron cannot represent it"
    right = grader.grade_entry(entry, "XOR is not linearly separable, so a single perceptron cannot represent it.")
    wrong = grader.grade_entry(entry, "XOR is linearly separable, so a single perceptron can represent it.")
    assert point in right.covered and point in wrong.missing
    assert wrong.score < right.score and wrong.sentence_counts["mistaken"] == 1
    assert [m.right for m in wrong.mistakes] == [point] and not right.mistakes


def test_a_stated_misconception_is_named_with_its_correction(grader, bank):
    """A sentence that states one of the entry's misconceptions in other words earns nothing, lowers the
    score, and the feedback names the mistake and the bank's correction, citing the model answer."""
    entry = bank["p2-beam-search"]
    misconception = next(m for m in entry.misconceptions if "open-ended" in m.wrong)
    good = ("Beam search keeps the k best partial sequences by their total log-probability at each step, "
            "where greedy decoding keeps only one.")
    mistaken = good + " It is the decoder I would always pick for open-ended chat and for writing stories."
    clean, accused = grader.grade_entry(entry, good), grader.grade_entry(entry, mistaken)
    assert not clean.mistakes and accused.mistakes, accused.feedback
    assert accused.mistakes[0].wrong == misconception.wrong and accused.mistakes[0].right == misconception.right
    assert misconception.right.rstrip(".") in accused.feedback and "[1]" in accused.feedback
    assert accused.score < clean.score


def test_a_contrast_that_puts_a_key_point_aside_denies_it(grader, bank):
    """"A rather than B", where B is what a key point says and A is nothing the bank says, denies the
    point; the contrast the right way round denies nothing."""
    from coach.contradictions import denied_point

    entry = bank["p2-multi-head-attention"]
    point = next(p for p in entry.key_points if "concatenated" in p)
    wrong = "The heads are summed with equal weights rather than concatenated."
    right = "The heads are concatenated rather than summed, then mixed by an output projection."
    assert denied_point(entry, wrong) == point and denied_point(entry, right) is None
    accused, clean = grader.grade_entry(entry, wrong), grader.grade_entry(entry, right)
    assert [(m.kind, m.right) for m in accused.mistakes] == [("contradiction", point)] and not clean.mistakes
    assert accused.score < clean.score


def test_a_misconception_is_named_only_in_a_sentence_using_its_words(bank):
    """Nearness in MiniLM's space is not a claim: a sentence that uses none of its nearest misconception's
    own words (beyond the question's) is not accused of it."""
    from types import SimpleNamespace

    from coach.grader import speaks_of_misconception

    entry = bank["p1-ensembling-variance"]
    m = next(n for n, x in enumerate(entry.misconceptions) if "both" in x.wrong)
    sentences = ["Averaging is for variance; bias needs another tool.", "Averaging many models removes both errors."]
    signals = SimpleNamespace(sentences=sentences, nearest_misconception=[m, m])
    assert list(speaks_of_misconception(entry, signals)) == [False, True]


def test_short_clauses_and_notes():
    """A two-word clause ("so it adds no latency") has lost its subject and is never read as contradicted;
    a longer one still is. A note's label and symbols read as prose, a keyword list does not."""
    from coach.contradictions import contradicts
    from coach.grader import is_claim

    point = "LoRA merges into the weights, so it adds no latency"
    assert not contradicts(point, "Adapters sit in sequence, so they add inference latency.")
    assert contradicts("adapters insert bottleneck MLPs and add inference latency",
                       "Adapters insert bottleneck MLPs and add no inference latency.")
    assert is_claim("- Skip-gram: input = centre word, targets = each surrounding word.")
    assert not is_claim("Adam: momentum, bias correction, moment estimates, epsilon, warm-up")


def test_a_negation_contradicts_only_what_it_denies():
    """Twenty-fifth pass: a sentence that restates a key point and adds a negation of something else ("without
    touching the weights") does not contradict it; a negation of the point's own words still does, on either side.
    Main before the pass read the first sentence as a contradiction. Sentences made up for the test."""
    from coach.contradictions import contradicts, negated_words

    point = "a dropout layer zeroes random activations during training and is switched off at evaluation"
    assert not contradicts(point, "A dropout layer zeroes random activations during training without touching "
                                  "the weights and is switched off at evaluation.")
    assert contradicts(point, "A dropout layer never zeroes random activations during training and is switched "
                              "off at evaluation.")
    assert contradicts("pruned weights are not updated by the optimizer after masking",
                       "Pruned weights are updated by the optimizer after masking.")
    assert negated_words("It trains without any labels, and nobody checks") == {"label"}


def test_a_note_in_own_words_is_read_as_a_claim_and_a_keyword_list_is_not(grader, bank):
    """Terse notes have few glue words but say something: a fragment whose content words are partly the
    writer's own (not the entry's key points, phrasings or question) earns credit like a sentence; a list
    of the key points' own terms stays a fragment."""
    from coach.grader import entry_words, is_claim, is_note

    entry = bank["p4-lora"]
    note = "Frozen W; learn low-rank B A; merge later; no extra latency."
    stuffed = "low-rank update frozen pretrained weights merge inference latency rank adapters"
    known = entry_words(entry)
    assert not is_claim(note) and is_note(note, known)
    assert not is_claim(stuffed) and not is_note(stuffed, known)
    graded = grader.grade_entry(entry, note)
    assert graded.covered and not graded.sentence_counts["fragments"], graded.feedback
    assert grader.grade_entry(entry, stuffed).score <= 1.0


def test_a_misconception_is_named_only_with_a_word_its_correction_lacks(bank):
    """A sentence that shares with its nearest misconception only words its correction also uses says
    neither: it is not accused of the misconception."""
    from types import SimpleNamespace

    from coach.grader import speaks_of_misconception

    entry = bank["p1-ensembling-variance"]
    m = next(n for n, x in enumerate(entry.misconceptions) if "removes both" in x.wrong)
    sentences = ["Averaging removes variance.", "Averaging many models removes both errors."]
    signals = SimpleNamespace(sentences=sentences, nearest_misconception=[m, m])
    assert list(speaks_of_misconception(entry, signals)) == [False, True]


def test_separately_and_jointly_are_roles(grader, bank):
    """Antonyms of how two inputs are read: giving one encoder the other's way of reading is a swap."""
    entry = bank["p4-bi-vs-cross-encoder"]
    for right, wrong in (("A bi-encoder embeds the query and the document separately into vectors.",
                          "A cross-encoder embeds the query and the document separately into vectors."),
                         ("A cross-encoder reads the query and the document jointly and outputs a relevance score.",
                          "A bi-encoder reads the query and the document jointly and outputs a relevance score.")):
        assert not grader.grade_entry(entry, right).mistakes, right
        assert grader.grade_entry(entry, wrong).mistakes, wrong


def test_coordinated_terms_of_a_question():
    """The swap test's roles: what a question sets side by side, without the words both sides share."""
    from coach.contradictions import coordinated

    def words(question):
        return {(x[1], y[1]) for x, y in coordinated(question)}

    assert ("bi-encoders", "cross-encoders") in words("Compare bi-encoders and cross-encoders.")
    assert ("precision", "recall") in words("Explain precision, recall and F1.")
    assert ("variance", "bias") in words("Why does it reduce variance but not bias?")
    assert not words("What is a diffusion model?")


def test_swapped_roles_are_named_and_the_right_order_is_not(grader, bank):
    """An answer that says of one side of the question's contrast what the bank says of the other is
    named as a swap (the entry lists no misconception about it); the same sentence the right way round is
    not accused."""
    entry = bank["p4-prefill-decode-batching"]
    right = "Prefill processes the whole prompt in parallel and is compute-bound."
    swapped = "Decode processes the whole prompt in parallel and is compute-bound."
    clean, accused = grader.grade_entry(entry, right), grader.grade_entry(entry, swapped)
    assert not clean.mistakes, clean.feedback
    assert [m.kind for m in accused.mistakes] == ["swap"] and set(accused.mistakes[0].swapped) == {"prefill", "decode"}
    assert '"decode"' in accused.feedback and accused.score < clean.score


def test_a_reversed_statement_is_named_with_both_words(grader, bank):
    """A clause that says a correct statement with one word of opposite sense ("high" for "low", "shorter"
    for "longer") earns nothing for it, and the feedback quotes both words and the statement, citing [1];
    the same sentence the right way round is not accused. Sentences made up for the test."""
    from coach.contradictions import reversed_statement

    entry = bank["p1-overfitting-vs-underfitting"]
    said, meant, statement = reversed_statement(entry, "Overfitting shows as high training error but a much lower "
                                                       "validation error.")
    assert (said, meant) == ("high", "low") and statement in entry.key_points and "overfitting" in statement
    assert reversed_statement(entry, "Overfitting shows as low training error but a much higher validation error.") is None
    wrong = "The fix for underfitting is shorter training, a bigger model or better features."
    right = "The fix for underfitting is longer training, a bigger model or better features."
    accused, clean = grader.grade_entry(entry, wrong), grader.grade_entry(entry, right)
    assert [m.kind for m in accused.mistakes] == ["reversal"] and not clean.mistakes, clean.feedback
    assert 'says "shorter" where the model answer says "longer"' in accused.feedback, accused.feedback
    point = next(p for p in entry.key_points if "longer training" in p)
    assert accused.mistakes[0].right == point and f"Correct: {point} [1]" in accused.feedback
    assert accused.score < clean.score


def test_an_answer_that_states_most_of_the_entry_is_not_read_for_reversals(grader, bank):
    """The thirty-third pass's trade: in an answer whose coverage is at least STATES_MOST (here the model answer with a
    reversed sentence added) reversals and contradictions are not read and a swap needs STATES_MOST_SWAP_MARGIN; the
    same sentence beside a short answer is still named (sets/grading_mixed*.jsonl measure what this costs)."""
    import coach.grader as grading

    entry = bank["p1-overfitting-vs-underfitting"]
    wrong = "The fix for underfitting is shorter training, a bigger model or better features."
    alone = grader.grade_entry(entry, "Underfitting means the model is too simple for the data. " + wrong)
    assert "reversal" in [m.kind for m in alone.mistakes], alone.feedback
    full = grader.grade_entry(entry, entry.answer + "\n\n" + wrong)
    assert not [m for m in full.mistakes if m.kind == "reversal"], full.feedback
    signals = grader.signals(entry, entry.answer + "\n\n" + wrong)
    assert grading.coverage(entry, signals) >= grading.STATES_MOST


def test_a_reversal_needs_the_same_words_around_it_and_no_contrast(bank):
    """Not a reversal: a sentence that uses both words of the pair (a contrast), a clause negated where the
    statement is not, and an opposite word that sits beside other words than the statement's."""
    from coach.contradictions import reversed_statement

    entry = bank["p1-overfitting-vs-underfitting"]
    assert reversed_statement(entry, "Overfitting means a low training error and a high validation error.") is None
    reversed_claim = "Overfitting is a high training error with a much lower validation error."
    assert reversed_statement(entry, reversed_claim) is not None
    assert reversed_statement(entry, reversed_claim.replace(" is a ", " is not a ")) is None
    assert reversed_statement(entry, "With a high learning rate, overfitting shows in validation error soon.") is None


def test_a_misconception_in_a_clause_is_named(grader, bank, monkeypatch):
    """A wrong clause after a right one is read on its own (CLAUSE_MARGIN): the rest of the sentence no
    longer dilutes it. The right clause in its place is not accused. Sentences made up for the test."""
    import coach.grader as grading

    entry = bank["p1-overfitting-vs-underfitting"]
    wrong = ("Training error tells you little alone, and when a model underfits the fix is to add more "
             "regularization and a longer schedule.")
    right = ("Training error tells you little alone, and when a model underfits the fix is a bigger model "
             "and a longer schedule.")
    accused = grader.grade_entry(entry, wrong)
    assert [m.wrong for m in accused.mistakes] == ["adding regularization is the fix for underfitting"], accused.feedback
    assert not grader.grade_entry(entry, right).mistakes
    monkeypatch.setattr(grading, "CLAUSE_MARGIN", float("inf"))
    assert not grader.grade_entry(entry, wrong).mistakes  # the whole sentence does not lean far enough


def test_a_short_clause_is_not_read_apart(grader, bank, monkeypatch):
    """Fourth pass: only clauses of CLAUSE_MIN_WORDS content words (beyond the question's) or more are read
    on their own, and a sentence's own unit is not a clause; short clauses ("Fix: class-weighted loss")
    accused correct notes. The clause above has 8 such words. Made-up sentence."""
    import coach.grader as grading
    from coach.grader import leaning_clauses

    entry = bank["p1-overfitting-vs-underfitting"]
    wrong = ("Training error tells you little alone, and when a model underfits the fix is to add more "
             "regularization and a longer schedule.")
    signals = grader.signals(entry, wrong)
    assert list(signals.unit_words) == [12, 4, 8] and leaning_clauses(entry, signals) == {0: 2}
    monkeypatch.setattr(grading, "CLAUSE_MIN_WORDS", 9)
    assert leaning_clauses(entry, signals) == {} and not grader.grade_entry(entry, wrong).mistakes


def test_restating_the_question_earns_nothing(grader, bank):
    """Credit comes only from what an answer adds to the question's own words."""
    for qid, restated in (("p2-beam-search", "Beam search works by searching with a beam. You would not use "
                                             "beam search when a beam search is not what you would use."),
                          ("p4-lora", "LoRA works the way LoRA works: it is low-rank adaptation, which adapts "
                                      "with low rank.")):
        grade = grader.grade_entry(bank[qid], restated)
        assert grade.score <= 1.0 and not grade.covered, (qid, grade.score, grade.covered)


def test_a_follow_up_is_graded_on_the_points_it_probes(grader, bank):
    entry = bank["p1-dropout-ensemble"]
    probed = [2, 3]
    answer = " ".join(f"In short, {entry.key_points[i]}." for i in probed)
    grade = grader.grade_entry(entry, answer, points=probed)
    assert set(grade.covered) | set(grade.missing) == {entry.key_points[i] for i in probed}
    assert grade.covered and grade.score > grader.grade_entry(entry, answer).score


def test_judge_quotes_must_be_in_the_answer():
    from coach.grader import judge_quotes

    answer = "LoRA freezes the pretrained weights and learns a low-rank update of each matrix."
    reply = '1: "freezes the pretrained weights"\n2: "merges the update at inference time"\n3: "low"'
    assert judge_quotes(reply, answer) == {1: "freezes the pretrained weights"}
    assert judge_quotes("covered: none", answer) == {}
    assert judge_quotes("I think points 1 and 2.", answer) is None


def test_llm_judge_only_for_a_capable_backend_and_never_without_a_quote(retriever, bank, llama_server):
    from coach.grader import Grader
    from coach.llm import ExtractiveBackend, OpenAIBackend

    entry = bank["p4-lora"]
    answer = "LoRA freezes the pretrained weights and learns a low-rank update. The weather is nice today."
    plain = Grader(retriever=retriever, backend=ExtractiveBackend()).grade_entry(entry, answer)
    assert plain.judge == "key points" and all(p.judged is None for p in plain.points)
    judged = Grader(retriever=retriever, backend=OpenAIBackend(llama_server, "smollm2", None)).grade_entry(
        entry, answer)
    if judged.judge != "key points":  # the small served model may not answer in the asked format
        assert "openai" in judged.judge and all(p.judged is not None for p in judged.points)
    flat = " ".join(answer.lower().split())
    for p in judged.points:  # a point the judge credits carries the answer's own words as its evidence
        if p.judged:
            assert " ".join(p.evidence.lower().split()) in flat, p


def test_question_outside_the_bank_is_not_graded(grader):
    grade = grader.grade("What is the capital of Australia?", "Canberra, not Sydney.")
    assert grade.matched_question == "" and grade.score == 0.0 and not grade.citations
    assert "no question like this" in grade.feedback


def test_follow_up_asks_about_a_missing_point_without_giving_it_away(grader, bank):
    entry = bank["p1-dropout-ensemble"]
    grade = grader.grade_entry(entry, sentences_of(entry, 2))
    assert grade.missing and grade.followup and grade.followup.endswith("?")
    assert grade.missing[0] not in grade.followup
    assert grade.followup != grader.grade_entry(bank["p4-lora"], "LoRA is a fine-tuning method.").followup


def test_overlong_answer_is_refused_with_a_reason(grader, bank):
    from coach.grader import AnswerError

    with pytest.raises(AnswerError, match="limit"):
        grader.grade_entry(bank["p4-lora"], "word " * 3000)


def test_older_grading_sets_floors(grader):
    """The two older hand-written sets (not what the grader is fitted on any more): floors a little under
    the figures in evals/README.md, so a regression shows."""
    from evals.datasets import load_jsonl
    from evals.grader import GRADING, HOLDOUT, evaluate

    assert not {r["qid"] for r in load_jsonl(HOLDOUT)} & {r["qid"] for r in load_jsonl(GRADING)}, "sets share questions"
    tuned, held = evaluate(grader, load_jsonl(GRADING)), evaluate(grader, load_jsonl(HOLDOUT))
    assert tuned["spearman"] >= 0.70 and held["spearman"] >= 0.50, (tuned, held)
    # good > partial > poor triples: 34.9% / 41.8% with issue 17's grader (its partials often score 0, tied
    # with the poor answers); 18.6% on the tuning set when final lost issue 17's credit floor.
    assert tuned["ordering"] >= 0.30 and held["ordering"] >= 0.35, (tuned, held)
    for kinds in (tuned["per_kind"], held["per_kind"]):
        assert kinds["full"] >= 8.0 and max(kinds["off-topic"], kinds["empty"], kinds["stuffed"]) <= 1.0, kinds
        assert kinds["partial"] < kinds["paraphrase"] < kinds["full"], kinds


def test_blind_held_out_half(grader):
    """The blind set's held-out half (questions never tuned on; evals/datasets.py splits by question):
    floors a little under the figures in evals/README.md."""
    from evals.datasets import grading_blind
    from evals.grader import evaluate_blind

    tuning, heldout = grading_blind("tuning"), grading_blind("heldout")
    assert not {r["qid"] for r in tuning} & {r["qid"] for r in heldout} and len(tuning) + len(heldout) == 308
    result = evaluate_blind(grader, heldout)
    kinds = result["per_kind"]
    assert result["spearman"] >= 0.82 and result["ordering"] >= 0.8, result
    assert kinds["complete"] >= 7.5 and 2.0 <= kinds["partial"] <= 6.0 and kinds["wrong"] <= 2.0, kinds
    assert kinds["restating"] <= 1.0 and kinds["off_topic"] <= 0.5, kinds
    # 11.5% accused with the richer bank (2026-12-03; 7.3% before), 4.2% since the accusation rules' constants
    # were chosen on all three blind sets (same day), 5.2% after the third pass (ordering 87.5% -> 83.3%, wrong
    # 1.15 -> 1.48: still within these floors), see evals/README.md; fourth pass (clauses apart, fitted on all
    # five sets): Spearman 0.919, ordering 95.8%, named 83.3%, accused 5.2%: the named floor raised
    assert result["misconception_named"] >= 0.75 and result["correct_accused"] <= 0.07, result


def test_fresh_sets_are_whole_and_ask_what_no_fitting_set_asks():
    """Every fresh set: 7 answers to each of 20-24 questions no other fitting set asks; the never-fitted and
    naming-tuned sets are apart from the fitting sets (they may share questions with one another: fresh12 and
    fresh13 ask again, with new authors, questions only never-fitted sets asked)."""
    from evals.datasets import FRESH_SETS
    from evals.grader import NEVER_FITTED, UNFITTED, blind_sets, fitting_sets

    sets, fitting = blind_sets(), fitting_sets()
    assert set(NEVER_FITTED) <= set(UNFITTED) <= set(FRESH_SETS) <= set(sets) and not set(UNFITTED) & set(fitting)
    for name in FRESH_SETS:
        rows = sets[name]
        fitted = {r["qid"] for other, other_rows in fitting.items() if other != name for r in other_rows}
        questions = {r["qid"] for r in rows}
        assert len(rows) == 7 * len(questions) and len(questions) >= 20 and not questions & fitted, name


@functools.cache
def graded_set(grader, name: str) -> dict:
    """One never-fitted set graded once per run: its own floors and the pooled ones read the same grades."""
    from evals.datasets import grading_fresh
    from evals.grader import evaluate_blind

    return evaluate_blind(grader, grading_fresh(name))


# Which never-fitted sets the tests grade: every third in NEVER_FITTED's order (chosen by position, not by figures;
# 2026-12-06, thirty-fifth pass). All thirteen took 7.7 of the suite's 24 minutes (each about 35 s); the other eight
# are graded by `python -m evals.grader --blind` and the suite, where issue 17's figures are read, pooled over all
# thirteen. These five, with the floors below, fail the credit model CI trained after the thirty-third pass (pooled
# here: named 51%, ordering 84%), as the thirteen did.
TESTED = ("fresh10", "fresh13", "fresh16", "fresh19", "fresh22")  # evals.grader.NEVER_FITTED[::3]
# Floors for each (RULE27, written 2026-12-06 before the figures they come from): under the lowest of three
# readings, the grader's two models trained on this project's AVX-512 machine (as landed in 5625655), the same recipe
# pinned to AVX2 kernels (evals.mistakes.SAME_KERNELS, as `make setup` trains them now) and CI's (identical to the
# AVX2 figures wherever CI printed them): Spearman - 0.04, ordering - 0.11 (two questions), complete - 0.5,
# named - 0.10, accused + 0.075 (six of 80 answers), so that the models trained on another machine pass and a change
# that makes answers by authors the grader never saw worse fails. The pooled floors below are the tighter guard.
# Issue 17's targets are not these floors: pooled over fresh10-22, named 84.2% (target 80%) and accused 3.27%
# (target 5%) with the thirty-third pass (evals/README.md, "thirty-third pass"). The twenty-eighth and thirty-third
# passes' readings are within them (thirty-third: named 70-90%, accused 0-3.75%).
FRESH_FLOORS = {
    # AVX-512-trained: Spearman 0.936, ordering 100%, complete 8.93, named 65%, accused 5.0%;
    # AVX2: 0.927, 95%, 8.89, 75%, 7.5%
    "fresh10": {"spearman": 0.88, "ordering": 0.84, "complete": 8.3, "named": 0.55, "accused": 0.15},
    # AVX-512: 0.932, 90%, 8.91, 55%, 5.0%; AVX2 and CI: 0.923, 85%, 8.90, 65%, 10.0%
    "fresh13": {"spearman": 0.88, "ordering": 0.74, "complete": 8.4, "named": 0.45, "accused": 0.18},
    # AVX-512: 0.928, 90%, 9.50, 70%, 5.0%; AVX2: 0.912, 90%, 9.51, 80%, 6.2%
    "fresh16": {"spearman": 0.87, "ordering": 0.79, "complete": 9.0, "named": 0.6, "accused": 0.14},
    # AVX-512: 0.915, 100%, 9.32, 55%, 6.2%; AVX2: 0.901, 95%, 9.26, 70%, 6.2%
    "fresh19": {"spearman": 0.86, "ordering": 0.84, "complete": 8.7, "named": 0.45, "accused": 0.14},
    # fresh22 came after (twenty-eighth pass, one training: AVX2, as every machine now trains), floors by the same
    # margins: 0.911, 85%, 9.60, 85%, 6.2%
    "fresh22": {"spearman": 0.87, "ordering": 0.74, "complete": 9.1, "named": 0.75, "accused": 0.14},
}
# Pooled over TESTED with the thirty-third pass's models (as every machine trains them): Spearman 0.910, ordering
# 90%, named 80%, accused 2.5%, partial 2.16; floors under them by 0.02 Spearman (rounded down), 3 points of ordering
# and 5 of named, over by 3 of accused, the margins the floors over all thirteen had. With the thirty-ninth pass's
# concave score map: ordering 88%, partial 2.65, the rest as before (floors unchanged).
POOLED_FLOORS = {"spearman": 0.88, "ordering": 0.87, "named": 0.75, "accused": 0.055}
# Mean absolute error against the human scores on the tested sets pooled: 0.749 with the concave score map
# (thirty-ninth pass), 0.824 with the linear map before it; the floor fails a return to the linear map.
POOLED_ERROR_MAX = 0.79
# sets/grading_mixed2.jsonl with the thirty-third pass: the false sentence named in 4 of 40 mixed answers, 0 of 40
# clean answers accused (twenty-eighth: 5 and 6); floors two answers under and three over.
MIXED_FLOORS = {"found": 0.05, "clean_accused": 0.075}


def measured(figures: dict) -> str:
    """A floor's failure message: first whether the grader's models are those the floors were measured with."""
    from evals.grader import models_line

    return f"{models_line()}: {figures}"


def test_models_line_names_the_cpu_whose_pair_is_here(tmp_path, monkeypatch):
    """A floor's message says which measured pair of models is here (one per CPU maker: MKL trains other bits on
    AMD), and for models of neither pair each file's MD5 beside the measured ones; then whether naming constants
    were chosen for these two files (coach.credit.calibration)."""
    import hashlib
    import json

    import evals.grader as grading

    monkeypatch.setenv("COACH_MODEL_CACHE", str(tmp_path))
    (tmp_path / "mistake-model.onnx").write_bytes(b"mistakes")
    assert "NOT" in grading.models_line() and "credit-model.onnx missing" in grading.models_line()
    (tmp_path / "credit-model.onnx").write_bytes(b"credit")
    digest = {name: hashlib.md5((tmp_path / name).read_bytes()).hexdigest()[:8]
              for name in ("mistake-model.onnx", "credit-model.onnx")}
    monkeypatch.setitem(grading.MEASURED_MODELS, "AMD", digest)
    assert grading.models_line().endswith("(as trained on an AMD CPU); no naming constants chosen for them "
                                          "(`python -m evals.credit --calibrate`): the grader's own")
    monkeypatch.setitem(grading.MEASURED_MODELS, "AMD", {**digest, "credit-model.onnx": "00000000"})
    assert f"mistake-model.onnx {digest['mistake-model.onnx']} (measured: b9a3dfbb or" in grading.models_line()
    md5 = {name: hashlib.md5((tmp_path / name).read_bytes()).hexdigest() for name in digest}
    chosen = {"p": 0.3, "credit": 0.45, "most": 0.7, "logit": -0.5}
    calibration = {"states_nothing": chosen, "model_md5": md5["credit-model.onnx"],
                   "mistake_model_md5": md5["mistake-model.onnx"]}
    (tmp_path / "credit-model.json").write_text(json.dumps(calibration))
    assert grading.models_line().endswith(f"naming constants chosen for them: {chosen}")
    (tmp_path / "mistake-model.onnx").write_bytes(b"mistakes trained again")  # the calibration is for the old one
    assert grading.models_line().endswith("the grader's own")


@pytest.mark.parametrize("name", FRESH_FLOORS)
def test_never_fitted_blind_sets(grader, name):
    """Each set never fitted on (7 answers to each of 20 questions by authors the grader never saw), graded above
    its floors: wide enough for the grader's two models trained on another machine (see above)."""
    floors = FRESH_FLOORS[name]
    result = graded_set(grader, name)
    kinds = result["per_kind"]
    assert result["spearman"] >= floors["spearman"] and result["ordering"] >= floors["ordering"], measured(result)
    assert kinds["complete"] >= floors["complete"] and kinds["partial"] >= 1.5, measured(kinds)
    assert kinds["wrong"] <= 2.0 and kinds["restating"] <= 1.0 and kinds["off_topic"] <= 0.5, measured(kinds)
    assert result["misconception_named"] >= floors["named"], measured(result)
    assert result["correct_accused"] <= floors["accused"], measured(result)


def test_never_fitted_blind_sets_pooled(grader):
    """The tested never-fitted sets as one (five: 100 questions, 400 correct answers, 100 wrong), where one question
    no longer moves a figure by five points; floors above. Issue 17's targets are read over all thirteen (the suite)."""
    from evals.grader import NEVER_FITTED, pooled_blind

    assert NEVER_FITTED[::3] == TESTED and set(TESTED) == set(FRESH_FLOORS)
    result = pooled_blind({name: graded_set(grader, name) for name in TESTED}, TESTED)
    kinds = result["per_kind"]
    assert result["questions"] == 20 * len(TESTED) and result["n"] == 140 * len(TESTED), measured(result)
    assert result["spearman"] >= POOLED_FLOORS["spearman"], measured(result)
    assert result["ordering"] >= POOLED_FLOORS["ordering"], measured(result)
    assert kinds["complete"] >= 7.5 and 2.0 <= kinds["partial"] <= 6.0 and kinds["wrong"] <= 2.0, measured(kinds)
    assert kinds["restating"] <= 1.0 and kinds["off_topic"] <= 0.5, measured(kinds)
    assert result["misconception_named"] >= POOLED_FLOORS["named"], measured(result)
    assert result["correct_accused"] <= POOLED_FLOORS["accused"], measured(result)
    assert result["mean_abs_error"] <= POOLED_ERROR_MAX, measured(result)


def test_good_answers_but_for_one_mistake(grader):
    """sets/grading_mixed2.jsonl (never fitted on): 40 complete answers each with one false sentence, 40 clean ones.
    The rules name few of those sentences (12.5% before the thirty-third pass, 10% with it), and the grader scores
    the mixed answers near the clean ones (humans: 6.0 against 9.1): floors a little under what it does, so that
    it does not get worse unseen; see evals/README.md, "thirty-third pass"."""
    from evals.datasets import grading_mixed
    from evals.grader import evaluate_mixed

    result = evaluate_mixed(grader, grading_mixed("mixed2"))
    assert result["n"] == 80 and result["mistake_found"] >= MIXED_FLOORS["found"], result
    assert result["clean_accused"] <= MIXED_FLOORS["clean_accused"], result
    assert result["per_kind"]["clean"] >= 8.0, result


def test_answers_to_a_neighbouring_question(grader):
    """Competent answers to the nearest other entry's question, scored by their authors as answers to the question
    asked (sets/grading_neighbours.jsonl, the 40 questions of fresh10 and fresh11, never fitted on): the grader must
    not credit the right area for the right answer. Read once with main: mean 1.24 (human 1.77), over the human's
    score + 2 for 2.5%, 0.21 key points per answer credited that the human did not (the twelfth pass's credit model:
    2.46, 21%, 1.16); floors a little over main's. The eighteenth pass with the credit model `make setup`
    trains: 1.19, 2.5%, 0.23."""
    from evals.datasets import NEIGHBOURS, load_jsonl
    from evals.grader import evaluate_neighbours

    rows = load_jsonl(NEIGHBOURS)
    assert len(rows) == 80 and {r["kind"] for r in rows} == {"neighbour"} and len({r["qid"] for r in rows}) == 40
    result = evaluate_neighbours(grader, rows)
    assert result["grader"] <= 1.6 and result["over_human_by_2"] <= 0.07, result
    assert result["points_beyond_human"] <= 0.35, result


def test_sentences_about_another_entry_cost_their_share(grader, bank, monkeypatch):
    """Asked about batch normalization, answered with the batch vs layer normalization entry's answer: most of its
    sentences are nearer that entry's key points than this one's; each costs ELSEWHERE_WEIGHT of the score and the
    feedback says so. The entry's own answer has few such sentences. (The rules alone credit here, so the test reads
    the penalty, not the credit model.)"""
    import coach.grader as grading

    monkeypatch.setattr(grading, "stated", lambda points, sentences: None)
    entry, other = bank["p1-batch-norm"], bank["p1-batch-vs-layer-norm"]
    own, neighbour = grader.grade_entry(entry, entry.answer), grader.grade_entry(entry, other.answer)
    assert neighbour.sentence_counts["elsewhere"] >= 3 * max(1, own.sentence_counts["elsewhere"]), neighbour
    assert "neighbouring question" in neighbour.feedback and "neighbouring question" not in own.feedback
    monkeypatch.setattr(grading, "ELSEWHERE_WEIGHT", 0.0)
    assert grader.grade_entry(entry, other.answer).score > neighbour.score


# --- sessions --------------------------------------------------------------------------------------
def test_no_repeats_and_filters_apply(engine, bank):
    part1 = [e for e in bank.values() if e.part == 1]
    session = engine.start(part=1, n=len(part1) + 5, seed=3)
    asked = []
    while (entry := engine.current(session)) is not None:
        asked.append(entry.id)
        engine.skip(session)
    assert len(asked) == len(part1) == len(set(asked)) and all(bank[q].part == 1 for q in asked)
    hard = engine.start(difficulty="hard", topic="attention", n=3)
    assert all(bank[q].difficulty == "hard" and bank[q].topic == "attention"
               for q in engine.session(hard)["plan"])


def test_a_session_on_given_entries_asks_exactly_those(engine, bank):
    """The chat's "Quiz me on this": the cited entries in order, repeats and non-bank ids left out."""
    from coach.interviewer import SessionError

    wanted = [e.id for e in list(bank.values())[:3]]
    session = engine.start(qids=[wanted[1], "uploads/notes.md#3", wanted[0], wanted[1], wanted[2]], n=2)
    assert engine.session(session)["plan"] == [wanted[1], wanted[0]]
    with pytest.raises(SessionError, match="bank question"):
        engine.start(qids=["uploads/notes.md#3"], n=1)


def test_each_answer_is_committed_and_a_new_engine_resumes(engine, grader, bank):
    from coach.interviewer import Interviewer

    session = engine.start(n=4, seed=1)
    first = engine.current(session)
    engine.answer(session, first.answer)
    engine.skip(session)
    third = engine.current(session)
    # Another connection (another process would see the same) already sees both turns.
    with sqlite3.connect(engine.path) as other:
        assert other.execute("SELECT COUNT(*) FROM answers WHERE session_id = ?", (session,)).fetchone()[0] == 2
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    restarted = Interviewer(grader, path=engine.path)
    assert restarted.current(session).id == third.id and restarted.progress(session) == (3, 4)
    assert [t.qid for t in restarted.turns(session)] == engine.session(session)["plan"][:2]
    restarted.close()


def test_review_brings_weak_items_back_first(engine, bank):
    session = engine.start(part=2, n=3, seed=7)
    plan = engine.session(session)["plan"]
    strong, weak, middle = (bank[q] for q in plan)
    engine.answer(session, strong.answer)             # full answer: promoted, due in a day
    engine.answer(session, "I am not sure about this one.")   # weak: box 1, due now
    engine.answer(session, sentences_of(middle, 2))
    scores = {t.qid: t.score for t in engine.turns(session)}
    assert scores[strong.id] >= 7 > 5 > scores[weak.id]
    review = engine.session(engine.start(review=True, n=3))["plan"]
    assert review[0] == weak.id and review[-1] == strong.id, (review, scores)
    assert strong.id not in [r["qid"] for r in engine.schedule() if r["due_in_days"] <= 0]

    # The weak item, now answered well, moves up a box: behind the item that is still weak.
    again = engine.start(review=True, n=1)
    assert engine.current(again).id == weak.id
    engine.answer(again, weak.answer)
    schedule = {r["qid"]: r for r in engine.schedule()}
    assert schedule[weak.id]["box"] == 2 and schedule[weak.id]["due_in_days"] > 0
    later = engine.session(engine.start(review=True, n=3))["plan"]
    assert later.index(middle.id) < later.index(weak.id)
    engine.fake_clock.now += 1.5 * 86400  # a day and a half later the promoted items are due again
    assert all(r["due_in_days"] < 0 for r in engine.schedule())


def test_scorecard_and_markdown_export(engine, bank):
    session = engine.start(topic="dropout", n=2, seed=2)
    entry = engine.current(session)
    # One key point: a complete answer (the model answer) leaves nothing to follow up on.
    assert engine.answer(session, sentences_of(entry, 1)).grade["followup"]
    engine.answer_followup(session, "It also keeps every unit at test time.")
    engine.skip(session)
    card = engine.scorecard(session)
    assert card["answered"] == 2 and card["skipped"] == 1 and list(card["per_topic"]) == ["dropout"]
    text = engine.export_markdown(session)
    assert text.startswith(f"# Mock interview {session}") and entry.question in text
    assert "(skipped)" in text and "## Scorecard" in text and "| dropout |" in text
    assert engine.history()[0]["id"] == session


def test_review_without_history_says_what_to_do(engine):
    from coach.interviewer import SessionError

    with pytest.raises(SessionError, match="nothing to review"):
        engine.start(review=True)
    with pytest.raises(SessionError, match="no bank question matches"):
        engine.start(topic="astrology")


# --- command line ----------------------------------------------------------------------------------
def test_grade_cli_json_and_batch(corpus_index, tmp_path, bank):
    entry = bank["p4-lora"]
    out = run_cli("app.py", "grade", "--question", "how does LoRA work?", "--answer", entry.answer, "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(GRADE_KEYS) <= set(doc) and doc["matched_question"] == entry.question and doc["score"] >= 7
    batch = tmp_path / "answers.jsonl"
    batch.write_text("\n".join(json.dumps(row) for row in [
        {"question": "how does LoRA work?", "answer": "It freezes the pretrained weight W and learns a low-rank update BA."},
        {"question": "", "answer": "no question"},
        {"question": "what is the KV cache?", "answer": ""}]) + "\n")
    out = run_cli("app.py", "grade", "--batch", str(batch), "--json")
    lines = [json.loads(line) for line in out.stdout.strip().split("\n")]
    assert len(lines) == 3 and out.returncode == 1  # one bad line: reported, the others graded
    assert lines[0]["matched_question"] == entry.question and 0 < lines[0]["score"] < 7
    assert "error" in lines[1] and "answers.jsonl:2" in lines[1]["error"]
    assert lines[2]["score"] == 0.0 and "KV cache" in lines[2]["matched_question"]


def test_terminal_interview_through_stdin_survives_a_kill_and_resumes(corpus_index, bank):
    env = {**os.environ, "COACH_LLM": "extractive"}
    proc = subprocess.Popen([sys.executable, "app.py", "interview", "--topic", "dropout", "--n", "2"], cwd=ROOT,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env=env)
    session = None
    deadline = time.monotonic() + 180
    output = ""
    while time.monotonic() < deadline:  # read until the first question is asked
        line = proc.stdout.readline()
        output += line
        session = session or (re.search(r"Session (\w+)\.", line) or [None, None])[1]
        if line.startswith("Question 1 / 2"):
            break
    question = proc.stdout.readline().strip()
    entry = next(e for e in bank.values() if e.question == question)
    proc.stdin.write(entry.answer.replace("\n\n", "\n") + "\n\n")
    proc.stdin.flush()
    while "Score:" not in (line := proc.stdout.readline()):
        assert line, "the interview ended before grading the answer"
    proc.send_signal(signal.SIGKILL)  # the app dies while the user reads the feedback
    proc.wait(timeout=30)

    from coach.config import get_settings

    with sqlite3.connect(get_settings().interviews_db) as db:
        (answered,) = db.execute("SELECT COUNT(*) FROM answers WHERE session_id = ?", (session,)).fetchone()
    assert answered == 1  # the graded answer survived the kill

    out = run_cli("app.py", "interview", "--resume", session, input=":skip\n", env={"COACH_LLM": "extractive"})
    assert out.returncode == 0, out.stderr
    assert "Question 2 / 2" in out.stdout and "Skipped." in out.stdout
    assert "Scorecard: 2 of 2 questions, 1 skipped" in out.stdout and "dropout" in out.stdout
    exported = run_cli("app.py", "interview", "--export", session, env={"COACH_LLM": "extractive"})
    assert question in exported.stdout and "(skipped)" in exported.stdout
