"""Answers composed at the level of one entry (coach/compose.py), on our own bank entries, and the
structural checks of every answer to the held-out real questions (skipped without ../shared)."""
from __future__ import annotations

import random

import pytest

from coach.text import citations_of, split_sentences
from evals.answers import defects
from evals.datasets import labelled_real_questions, real_questions
from helpers import assert_grounded


def composed(entry, question, embeddings) -> str:
    from coach.compose import choose, render, units_of

    return render(choose(question, units_of(entry.answer), embeddings, entry.key_points,
                         entry_question=entry.question), 1)


def test_a_display_formula_stays_inside_its_sentence(bank):
    from coach.compose import units_of

    first = units_of(bank["p2-conv-output-size"].answer)[0]
    assert first.kind == "formula"
    assert first.text.startswith("For input width") and "$$W_{out}" in first.text
    assert first.text.endswith("applies separately to the height.")


def test_a_table_is_one_unit_with_every_row_and_no_pipes(bank):
    from coach.compose import units_of

    tables = [u for u in units_of(bank["p2-gru-vs-lstm"].answer) if u.kind == "table"]
    assert len(tables) == 1 and len(tables[0].pieces) == 3
    assert all("|" not in row and "LSTM" in row and "GRU" in row for row in tables[0].pieces)


def test_code_blocks_and_bare_list_intros_are_not_units(bank):
    from coach.compose import units_of

    texts = [u.text for u in units_of(bank["p1-dropout-numpy"].answer)]
    assert not any("def dropout_forward" in t for t in texts)
    assert not any(t.endswith(":") for t in texts)


def test_a_sentence_that_loses_its_label_keeps_its_symbols_and_formulas(bank):
    """'**Conventions.** p is the drop probability …' loses its label and opens a unit: only a plain lowercase
    word is capitalized, so symbols, identifiers and formulas read as the bank writes them (before: 'P is …',
    'MAP averages …', 'Torch.compile …', and `$\\Mathrm{KL}` and `$\\Text{IS}`, which KaTeX cannot render)."""
    from coach.compose import units_of

    marks = "*:,.\"“”"  # bold, a label's colon, punctuation and quotes around a word

    def openings(qid: str) -> list[str]:
        return [u.text for u in units_of(bank[qid].answer)]

    assert any(t.startswith("p is the drop probability") for t in openings("p1-dropout-numpy"))
    assert any(t.startswith("mAP averages AP over classes") for t in openings("p5-iou-and-map"))
    assert any(t.startswith("torch.compile speeds up") for t in openings("p5-model-export"))
    assert any(t.startswith("$\\mathrm{KL}(p\\|q) =") for t in openings("p1-forward-vs-reverse-kl"))
    assert any(t.startswith("A coarse random search") for t in openings("p5-hyperparameter-search"))  # a plain word
    for entry in bank.values():  # every unit's first word is the bank's own, or a plain word capitalized
        words = {word.strip(marks) for word in entry.answer.split()}
        for unit in units_of(entry.answer):
            first = unit.text.split()[0].strip(marks)
            assert first in words or first[:1].lower() + first[1:] in words and first[1:] == first[1:].lower(), \
                (entry.id, first)


def test_an_opening_that_points_back_is_made_to_stand_alone(bank):
    from coach.compose import REFERS_BACK, opening, units_of

    entry = bank["p1-batch-vs-layer-norm"]
    assert REFERS_BACK.match(units_of(entry.answer)[0].text), "the entry opens with 'Both …'"
    lead = opening(units_of(entry.answer), entry.question)[0]
    assert lead.text.lower().startswith("batch normalization and layer normalization both normalize")
    bert = bank["p2-bert-vs-gpt"]  # asked "How do BERT and GPT differ?"; the next standalone sentence is about T5
    assert opening(units_of(bert.answer), bert.question)[0].text.startswith("BERT and GPT both are transformers")
    gan = bank["p2-gan-mode-collapse"]
    assert opening(units_of(gan.answer), gan.question)[0].text.startswith("**Mode collapse**")


def test_a_comparison_shows_the_table_and_a_remedy_question_the_remedies(bank, embeddings):
    table = composed(bank["p2-gru-vs-lstm"], "what is the difference between an LSTM and a GRU?", embeddings)
    assert "**Gates**" in table and "**Weight blocks**" in table
    fixes = composed(bank["p1-nan-loss-gradient-clipping"], "how do you fix a loss that goes NaN?", embeddings)
    assert "clip" in fixes.lower()


def test_every_entry_answering_its_own_question_has_no_defect(bank, embeddings):
    """A sample of 80 entries: opening first, whole units, every sentence cited [1], nothing cut."""
    from coach.compose import opening, units_of

    for entry in random.Random(16).sample(sorted(bank.values(), key=lambda e: e.id), 80):
        text = composed(entry, entry.question, embeddings)
        assert not any(defects(text).values()), (entry.id, defects(text))
        assert all(citations_of(s) == [1] for s in split_sentences(text)), entry.id
        lead = opening(units_of(entry.answer), entry.question)[0]
        assert text.startswith(lead.text.rstrip(".")[:40]), entry.id


def test_the_defect_checks_on_hand_made_sentences():
    """An 'All four …' opening points back; a sentence ending on 'is' is a stub unless a clause ends there."""
    assert defects("All four freeze the pretrained weights [1].")["dangling_opening"]
    assert defects("For input width W the output width is [2].")["formula_stub"]
    assert not defects("Shorter runs stopped early, so data looked less valuable than it is [1].")["formula_stub"]
    assert not defects("The same kernel is used no matter how large the image is [1].")["formula_stub"]


def test_every_entry_opens_on_a_sentence_that_stands_alone(bank):
    """An answer's first sentence is its direct answer: one that points back ("All four are ...", "They fix
    ...") would be skipped, and the answer would lead with whatever stands alone next."""
    from coach.compose import opening, units_of

    pointing_back = [entry.id for entry in bank.values()
                     if units_of(entry.answer)[0].resolved(entry.question).refers_back]
    assert not pointing_back
    assert not [entry.id for entry in bank.values() if opening(units_of(entry.answer), entry.question)[0].refers_back]


def test_renumber_closes_gaps_in_order_of_appearance():
    from coach.compose import renumber

    text, sources = renumber("A [3]. B [1]. C [3]. D [2, 3].", ["one", "two", "three"])
    assert text == "A [1]. B [2]. C [1]. D [3][1]."
    assert sources == ["three", "one", "two"]


def test_the_answer_ends_with_see_also_lines_numbered_without_gaps(retriever):
    from coach.answer import Answerer
    from coach.llm import ExtractiveBackend

    answer = Answerer(retriever=retriever, backend=ExtractiveBackend()).ask(
        "How do you compute the output size of a convolution layer?")
    assert_grounded(answer.as_json())
    assert [c["n"] for c in answer.citations] == list(range(1, len(answer.citations) + 1))
    lines = answer.answer.split("\n")
    assert lines[-1].startswith("See also: ") and not any(d for d in defects(answer.answer).values())
    assert "$$W_{out}" in answer.answer, "the formula is shown whole, inside its sentence"


@pytest.mark.skipif(not real_questions(), reason="the real-question dev set (../shared) is absent")
def test_no_answer_to_a_held_out_real_question_is_broken(retriever):
    """Every answer of an evaluation run on the held-out half: no dangling opening, no table fragment,
    no bare formula stub, no citation gap; and every answer is grounded."""
    from coach.answer import Answerer
    from coach.llm import ExtractiveBackend

    answerer = Answerer(retriever=retriever, backend=ExtractiveBackend())
    answerer.warm_up()
    broken, answered = {}, 0
    for row in labelled_real_questions("heldout"):
        answer = answerer.ask(row["question"])
        if answer.refused or answer.blocked:
            continue
        answered += 1
        assert_grounded(answer.as_json())
        found = {kind: pieces for kind, pieces in defects(answer.answer).items() if pieces}
        if found:
            broken[row["key"]] = found
    assert answered >= 40
    assert not broken, broken
