"""The shipped question bank: complete, well-formed, in our own words."""
from __future__ import annotations

import re
from collections import Counter

import pytest

from coach.bank import MAX_WORDS, MIN_WORDS, BankError, load_bank, parse_bank_file, style_warnings
from conftest import ROOT, SEED

PART3_TOPICS = {"multimodal learning", "diffusion models", "long-context transformers", "interpretability",
                "model evaluation", "evaluating generative models", "catastrophic forgetting",
                "retrieval-augmented generation", "prompt injection", "responsible ai"}


@pytest.fixture(scope="module")
def bank():
    return load_bank(ROOT / "corpus")


def test_bank_size_and_parts(bank):
    assert len(bank) >= 150
    per_part = Counter(e.part for e in bank)
    assert {1, 2, 3, 4} <= set(per_part)
    assert min(per_part[p] for p in (1, 2, 3, 4)) >= 35


def test_every_entry_is_interview_quality(bank):
    assert style_warnings(bank) == []
    for e in bank:
        assert MIN_WORDS <= e.words <= MAX_WORDS
        assert 3 <= len(e.key_points) <= 6
        assert e.difficulty in ("easy", "medium", "hard")
    assert len({e.id for e in bank}) == len(bank)
    assert Counter(e.difficulty for e in bank).most_common()[-1][1] >= 0.15 * len(bank)  # a real mix


def test_part3_covers_each_seed_topic_from_several_angles(bank):
    topics = Counter(e.topic for e in bank if e.part == 3)
    assert set(topics) >= PART3_TOPICS
    assert all(topics[t] >= 3 for t in PART3_TOPICS)


def test_numbers_are_consecutive_within_each_part(bank):
    for part in {e.part for e in bank}:
        numbers = [e.number for e in bank if e.part == part]
        assert numbers == list(range(1, len(numbers) + 1))


def _grams(text: str, n: int = 8) -> set[str]:
    words = re.findall(r"[a-z0-9']+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def test_bank_is_written_in_our_own_words():
    seed = _grams(SEED.read_text(encoding="utf-8"))
    for path in (ROOT / "corpus").rglob("*.md"):
        shared = _grams(path.read_text(encoding="utf-8")) & seed
        assert len(shared) <= 3, f"{path.name} shares {len(shared)} eight-word runs with the scraped article"


def test_bank_contains_no_live_injection_string(bank):
    """The bank teaches about prompt injection without carrying an attack addressed to a model."""
    live = re.compile(r"ignore (all )?(the )?previous instructions", re.I)
    assert not [e.id for e in bank if live.search(e.answer)]


@pytest.mark.parametrize("snippet, expected", [
    ("## 1. Q?\n\nno metadata block\n", r"part9.md:6: .*must be followed by a ```yaml"),
    ("## 1. Q?\n\n```yaml\nid: p9-a\ntopic: t\ndifficulty: easy\nkey_points: [a, b, c]\n", r":8: .*never closed"),
    ("## 1. Q?\n\n```yaml\nid: p9-a\ntopic: t\ndificulty: easy\nkey_points: [a, b, c]\n```\n\nA.\n",
     r":11: unknown key 'dificulty'"),
    ("## 1. Q?\n\n```yaml\nid: p9-a\ntopic: [t\n```\n\nA.\n", r"part9.md:\d+: invalid YAML"),
    ("## 1. Q?\n\n```yaml\nid: p9-a\ntopic: t\ndifficulty: easy\nkey_points: [a, b]\n```\n\nA.\n",
     r":12: key_points has 2 items"),
    ("## 1. Q?\n\n```yaml\nid: p9-a\ntopic: t\ndifficulty: easy\nkey_points: [a, b, c]\n```\n",
     r":6: question 'Q\?' has no answer"),
    ("## 1. Q?\n\n```yaml\nid: p9-a\ntopic: t\ndifficulty: easy\nkey_points: [a, b, c]\n```\n\nA.\n\n"
     "## 1. R?\n\n```yaml\nid: p9-b\ntopic: t\ndifficulty: easy\nkey_points: [a, b, c]\n```\n\nB.\n",
     r":17: question number 1 already used on line 6"),
])
def test_malformed_entries_name_file_and_line(snippet, expected):
    text = "---\npart: 9\ntitle: Broken\n---\n\n" + snippet
    with pytest.raises(BankError, match=expected):
        parse_bank_file(text, "corpus/part9.md")


def test_duplicate_ids_across_files(tmp_path):
    entry = "## 1. Q?\n\n```yaml\nid: p9-same\ntopic: t\ndifficulty: easy\nkey_points: [a, b, c]\n```\n\nA.\n"
    for name in ("a.md", "b.md"):
        (tmp_path / name).write_text(f"---\npart: 9\n---\n\n{entry}")
    with pytest.raises(BankError, match=r"b.md:5: id 'p9-same' already used at .*a.md:5"):
        load_bank(tmp_path)


def test_no_dev_question_shares_a_six_word_run_with_the_bank():
    """Held-out integrity: the real-question dev set stays outside the project. No run of six words of
    any dev question (either half) appears in corpus/, so neither the answers nor the `asked_as`
    phrasings written for retrieval carry a dev question's wording (stock openers included)."""
    from evals.datasets import real_questions

    rows = real_questions()
    if not rows:
        pytest.skip("the real-question dev set (../shared/real-questions) is absent")
    corpus = set()
    for path in (ROOT / "corpus").rglob("*"):
        if path.is_file():
            corpus |= _grams(path.read_text(encoding="utf-8"), 6)
    leaked = [row["key"] for row in rows if _grams(row["question"], 6) & corpus]
    assert not leaked, f"dev questions (by key) sharing six-word runs with corpus/: {leaked}"


@pytest.mark.parametrize("snippet, expected", [
    ("misconceptions: [{wrong: x}]", "misconceptions must be a list of {wrong: str, right: str}"),
    ("misconceptions: [{wrong: x, right: ''}]", "misconceptions must be a list"),
    ("key_points: [a, b, {point: c, also: [1]}]", "key_points must be a list of non-empty strings"),
    ("key_points: [a, b, {point: c, alse: [d]}]", "key_points must be a list of non-empty strings"),
])
def test_malformed_alternatives_and_misconceptions_are_named(snippet, expected):
    base = {"key_points": "key_points: [a, b, c]"}
    key = snippet.split(":")[0]
    fields = {**base, key: snippet}
    text = ("---\npart: 9\n---\n\n## 1. Q?\n\n```yaml\nid: p9-a\ntopic: t\ndifficulty: easy\n"
            + "\n".join(fields.values()) + "\n```\n\nA.\n")
    with pytest.raises(BankError, match=re.escape(expected)):
        parse_bank_file(text, "corpus/part9.md")


def test_a_correction_the_answer_does_not_state_is_a_style_warning():
    """The grader cites the answer as [1] for a misconception's correction, so the answer must say it."""
    answer = ("Dropout zeroes each unit with probability p during training and rescales the survivors, "
              "so no unit can rely on another. ") * 10
    entry = ("## 1. What does dropout do?\n\n```yaml\nid: p9-dropout\ntopic: dropout\ndifficulty: easy\n"
             "key_points: [zeroes units, rescales survivors, no co-adaptation]\nmisconceptions:\n"
             "  - wrong: dropout is used at test time\n    right: {right}\n```\n\n" + answer + "\n")
    supported = parse_bank_file("---\npart: 9\n---\n\n" + entry.replace("{right}", "dropout zeroes units only "
                                "during training and rescales the survivors"), "part9.md")
    unsupported = parse_bank_file("---\npart: 9\n---\n\n" + entry.replace("{right}", "inference uses the full "
                                  "network with weights multiplied by the keep probability"), "part9.md")
    assert style_warnings(supported) == []
    assert any("is not stated by the answer" in w for w in style_warnings(unsupported))
