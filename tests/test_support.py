"""The sentence support check on hand-made passage/answer pairs: invented claims dropped, paraphrases kept."""
from __future__ import annotations

import pytest

from coach.support import SupportChecker
from coach.text import citations_of, split_sentences, strip_citations

DROPOUT = ("What does dropout do?\n\nDropout zeroes each unit with probability p at every training step. "
           "At test time dropout is switched off and all units are used. Units cannot co-adapt because any "
           "partner may disappear.")
BATCHNORM = ("What is batch norm?\n\nBatch normalization normalizes each feature using the mean and variance "
             "of the current mini-batch. It allows higher learning rates.")

PAIRS = [
    # paraphrases of what the passages say: kept, attributed to the right passage
    ("During training, dropout randomly sets each unit to zero with probability p [1].", 1),
    ("At test time, dropout is turned off so that every unit is used [1].", 1),
    ("Batch norm uses the statistics of the current mini-batch to normalize features [2].", 2),
    ("Batch normalization allows training with higher learning rates [1].", 2),  # miscited, re-attributed
    # invented claims about the same topics: dropped
    ("Dropout was invented by Geoffrey Hinton in 2012 at Google [1].", None),
    ("Dropout removes whole features from the dataset before training [1].", None),
    ("Dropout guarantees that the network never overfits [1].", None),
    ("Dropout zeroes 80 percent of units [1].", None),  # a number the passage does not state
    ("The capital of France is Paris [2].", None),
]


@pytest.fixture(scope="module")
def checker():
    from coach.embedder import embedder

    return SupportChecker(embedder())


@pytest.mark.parametrize("sentence, expected", PAIRS)
def test_support_check(checker, sentence, expected):
    result = checker.check(sentence, [DROPOUT, BATCHNORM], prefer=citations_of(sentence))
    assert result.passage == expected, result


def test_sentence_splitting_keeps_citations_and_abbreviations():
    text = ("Dropout zeroes units, e.g. half of them [1]. At test time all units are used [1][2]. "
            "It has a rate of 0.5 by default!\n- A list item\n- Another item [2]")
    assert split_sentences(text) == ["Dropout zeroes units, e.g. half of them [1].",
                                     "At test time all units are used [1][2].",
                                     "It has a rate of 0.5 by default!", "A list item", "Another item [2]"]
    assert citations_of("Both [1, 3] and [2].") == [1, 3, 2]
    assert strip_citations("Claim [1][2].") == "Claim."


def test_strict_check_for_models_that_invent_keeps_copies_and_drops_more(checker):
    """The rule once used for the embedded 135M model (kept for comparison): near-copies pass (measured 95%), 79% of unsupported
    sentences are dropped, against 65% for the default rule."""
    from coach.bank import load_bank
    from coach.support import SupportChecker
    from conftest import ROOT
    from evals.datasets import load_jsonl
    from evals.support import PAIRS, evaluate

    bank = {entry.id: entry for entry in load_bank(ROOT / "corpus")}
    pairs = load_jsonl(PAIRS)
    strict = evaluate(pairs, SupportChecker(checker.embeddings, strict=True), bank)
    default = evaluate(pairs, checker, bank)
    assert strict["per_kind"]["copy"] >= 0.9
    assert strict["unsupported_dropped"] >= 0.75 and strict["unsupported_dropped"] > default["unsupported_dropped"]
    for kind in ("invented", "vague", "offtopic"):
        assert strict["per_kind"][kind] >= 0.95, (kind, strict["per_kind"])


def test_support_check_on_the_crafted_pair_set(checker):
    """180 hand-made sentences about 30 bank entries (evals/sets/support_pairs.jsonl). Floors sit a little
    under the measured figures (95% kept, 65% dropped; invented, vague and off-topic 95-100% dropped)."""
    from coach.bank import load_bank
    from conftest import ROOT
    from evals.datasets import load_jsonl
    from evals.support import PAIRS, evaluate

    bank = {entry.id: entry for entry in load_bank(ROOT / "corpus")}
    result = evaluate(load_jsonl(PAIRS), checker, bank)
    assert result["pairs"] >= 150
    assert result["supported_kept"] >= 0.9, result["per_kind"]
    assert result["unsupported_dropped"] >= 0.6, result["per_kind"]
    for kind in ("invented", "vague", "offtopic"):
        assert result["per_kind"][kind] >= 0.9, (kind, result["per_kind"])
