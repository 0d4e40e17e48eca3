"""Each citation's `evidence`: the passage sentences behind the answer sentences that cite it.

The side panel highlights these strings inside the full passage, so each must be an exact substring of
the cited passage, and it must be the sentence that supports what the answer says (checked with the
support checker at its ordinary, non-strict thresholds)."""
from __future__ import annotations

import json

import pytest

from coach.text import citations_of, split_sentences, strip_citations
from conftest import run_cli


def passage_of(store, chunk_id: str) -> str:
    """The full passage a citation points at, as the side panel shows it."""
    meta = store.chunk_metadata(chunk_id)
    return store.section_text(meta.get("source"), meta.get("qid")) or ""


def evidence_problems(doc: dict, store, checker) -> list[str]:
    """What is wrong with one answer's evidence: a citation without evidence, a string that is not in
    its passage, an answer sentence that none of its citation's evidence supports."""
    problems, by_number = [], {c["n"]: c for c in doc["citations"]}
    for c in doc["citations"]:
        passage = passage_of(store, c["chunk_id"])
        if not c["evidence"]:
            problems.append(f"[{c['n']}] has no evidence")
        problems += [f"[{c['n']}] not in its passage: {e!r}" for e in c["evidence"] if e not in passage]
    # "See also" lines point at related entries (their citations are marked see_also); they claim nothing
    claims = "\n".join(line for line in doc["answer"].split("\n") if not line.startswith("See also: "))
    for sentence in split_sentences(claims):
        for n in citations_of(sentence):
            quotes = by_number[n]["evidence"]
            entry_question = store.chunk_metadata(by_number[n]["chunk_id"]).get("question") or ""
            passage = passage_of(store, by_number[n]["chunk_id"])
            if not any(checker.check(sentence, [quote]).supported or shows(quote, sentence, entry_question, passage)
                       for quote in quotes):
                problems.append(f"{sentence!r} is supported by none of {quotes!r}")
    return problems


def shows(quote: str, sentence: str, entry_question: str, passage: str) -> bool:
    """The sentence is the quote as the composer shows it, so the quote supports it though the support
    check may miss words the composer added: an opening made to stand alone from the entry's own question
    ('Both add …' in the entry comparing L1 and L2 reads 'L1 and L2 regularization both add …': the
    check misses the '1' and '2'), or a table row shown with its column heads ('| Architecture |
    encoder-only | decoder-only |' reads '**Architecture**: BERT: encoder-only; GPT: decoder-only')."""
    from coach.compose import Unit, table_rows_of

    def plain(text: str) -> str:
        return " ".join(text.split()).rstrip(".")

    stated = plain(strip_citations(sentence))
    resolved = Unit(0, "sentence", (quote,), 0).resolved(entry_question).text
    rows = [shown for line, shown in table_rows_of(passage) if line == quote]
    return any(plain(shown) == stated for shown in [resolved, *rows] if shown != quote)


@pytest.mark.timeout(1800)  # 160 answers: about 2 minutes on a quiet machine, far more on a shared one
def test_evidence_is_exact_and_supports_over_the_whole_gold_run(extractive, retriever, gold_answers):
    """Every in-scope gold query (evals/sets/retrieval.jsonl), answered extractively: no exceptions."""
    from coach.support import SupportChecker

    checker = SupportChecker(extractive.embeddings)
    answered, problems = 0, []
    for row, answer in gold_answers:
        doc = answer.as_json()
        if doc["refused"] or doc["blocked"]:
            continue
        answered += 1
        problems += [f"{row['query']}: {p}" for p in evidence_problems(doc, retriever.store, checker)]
    assert answered >= 0.9 * len(gold_answers)
    assert not problems, problems[:5]


def test_a_model_answer_gets_the_sentence_that_supports_it(extractive, retriever):
    """For sentences a model wrote in its own words, the evidence is the passage's sentence saying the
    same thing, not merely the first sentence of the passage."""
    hits = retriever.search("How does dropout work at training and at test time?", k=2)
    passages = [(hit, extractive.whole_answer(hit)) for hit in hits]
    raw = ("At test time dropout is switched off and all units are used [1]. "
           "During training each unit is zeroed with probability p [1].")
    text, cited, _, _ = extractive.keep_supported(raw, passages)
    assert cited == {1}, text
    quotes = extractive.evidence_of(text, passages)[1]
    assert len(quotes) == 2 and all(q in passages[0][1] for q in quotes)
    assert any("test" in q.lower() or "inference" in q.lower() for q in quotes), quotes
    assert quotes[0] != quotes[1]


def test_ask_json_citations_carry_evidence(corpus_index):
    out = run_cli("app.py", "ask", "How does Adam correct the bias of its moment estimates?", "--json",
                  env={"COACH_LLM": "extractive"})
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["citations"] and all(c["evidence"] and all(isinstance(e, str) for e in c["evidence"])
                                    for c in doc["citations"])
    for c in doc["citations"]:
        assert all(e in passage_of(corpus_index, c["chunk_id"]) for e in c["evidence"])


def test_a_formula_shown_with_its_intro_is_quoted_with_it(bank, embeddings):
    """The composer shows a display formula as one claim with the sentence that introduces it ('AdamW
    applies weight decay … update: $…$'). Over every such unit of the bank, the evidence is an exact
    substring of the entry that supports the whole claim, formula included, not the intro alone."""
    from coach import compose, evidence
    from coach.support import SupportChecker

    checker, problems, units = SupportChecker(embeddings), [], 0
    for entry in bank.values():
        passage = f"{entry.question}\n\n{entry.answer}"
        for unit in compose.units_of(entry.answer):
            if unit.kind != "formula" or unit.text.startswith("$"):
                continue  # a formula without words introducing it is not a claim the answer shows
            units += 1
            sentence = compose.cite(unit.text, 1)
            quote = evidence.quote(sentence, passage, embeddings)
            if not quote or quote not in passage or not checker.check(sentence, [quote]).supported:
                problems.append((entry.id, unit.text, quote))
    assert units >= 10
    assert not problems, problems[:3]


def test_a_bare_paragraph_label_is_never_the_evidence(embeddings):
    """A label on a line of its own ('**Why it happens.**') opens every following sentence once its
    markup is gone; it must not be quoted as the sentence that supports one (it was, for the 'stability
    versus plasticity' claim of the catastrophic forgetting entry)."""
    from coach import evidence

    passage = ("What makes a cache go stale?\n\nA cache goes stale when the data behind it changes.\n\n"
               "**Why it happens.**\n\n**Copies age.** Every cached copy keeps the value it had when it "
               "was stored, while the source moves on.")
    sentence = "Every cached copy keeps the value it had when it was stored, while the source moves on [1]."
    quote = evidence.quote(sentence, passage, embeddings)
    assert quote and quote in passage and "cached copy" in quote, quote
