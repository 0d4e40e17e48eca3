"""Named concepts a question defines, and whether a library ever mentions them.

Interview questions often name their subject in full with its abbreviation: "conditional random
fields (CRFs)", "Low-Rank Adaptation (LoRA)". When neither the abbreviation nor the full name (all of
its words in one passage or question key) occurs anywhere in a library, that library does not cover the
question, however close its nearest entry looks: on the dev set's tuning half, a question on a classical
sequence model the bank never names met the n-gram entry, which shares two of the model's three words,
at a relevance well above the refusal threshold. The calibrated score cannot see this (it reads
similarities, not whether the question's subject is named), so the retriever sets the relevance of
every hit of such a query to 0 (coach.retrieval).

The definition is found as in Schwartz & Hearst (2003), "A simple algorithm for identifying abbreviation
definitions in biomedical text", simplified: the words just before the parenthesis whose initials spell
the abbreviation, small words ("of", "the") optional. Only a definition is used, never a bare
abbreviation, so a typo'd or unfamiliar abbreviation alone never causes a refusal.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# "words (ABBR)": an abbreviation in parentheses with at least two capitals (CRFs, LoRA, CoT, GRU).
_DEFINITION = re.compile(r"((?:[A-Za-z][\w'’]*[\s-]+){1,12})\(\s*([A-Z][A-Za-z0-9]*[A-Z][A-Za-z0-9]*)\s*\)")
_WORD_SPLIT = re.compile(r"[\s-]+")
SMALL_WORDS = frozenset({"a", "an", "and", "for", "from", "in", "of", "on", "the", "to", "with"})
EXTRA_WORDS = 2  # small words a full name may hold beyond one word per letter ("Chain of Thought": CoT)


@dataclass(frozen=True)
class Definition:
    abbreviation: str
    words: tuple[str, ...]

    def __str__(self) -> str:
        return f"{' '.join(self.words)} ({self.abbreviation})"

    @property
    def singular(self) -> str:
        """CRFs -> CRF: a plural "s" after a capital is not a letter of the name."""
        return self.abbreviation[:-1] if re.search(r"[A-Z]s$", self.abbreviation) else self.abbreviation


def definitions(question: str) -> list[Definition]:
    """Every "full name (ABBR)" in the question whose words' initials spell the abbreviation."""
    found = []
    for match in _DEFINITION.finditer(question):
        words = [w for w in _WORD_SPLIT.split(match.group(1).strip()) if w]
        found.extend(_spelled(words, match.group(2)))
    return found


def _spelled(words: list[str], abbreviation: str) -> list[Definition]:
    """The shortest run of words ending before the parenthesis whose initials are the abbreviation's
    capitals (LoRA: Low-Rank Adaptation; CoT: Chain-of-Thought)."""
    letters = [c.lower() for c in Definition(abbreviation, ()).singular if c.isupper()]
    for size in range(len(letters), min(len(words), len(letters) + EXTRA_WORDS) + 1):
        run = words[-size:]
        if run[0].lower() in SMALL_WORDS:
            continue
        for kept in (run, [w for w in run if w.lower() not in SMALL_WORDS]):
            if [w[0].lower() for w in kept] == letters:
                return [Definition(abbreviation, tuple(run))]
    return []


def absent_concept(question: str, indexes, library: str | None = None) -> Definition | None:
    """The first concept the question defines that the library never names, or None.

    `indexes` are the library's BM25 indexes (chunks and question keys, coach.bm25): a concept is named
    when its abbreviation is a term of some item, or when one item holds every word of its full name."""
    for definition in definitions(question):
        if not any(_named(definition, index, library) for index in indexes):
            return definition
    return None


def _named(definition: Definition, index, library: str | None) -> bool:
    for abbreviation in {definition.abbreviation, definition.singular}:
        if _items_with_all(index, index.tokenize([abbreviation])[0], library):
            return True
    return bool(_items_with_all(index, index.tokenize([" ".join(definition.words)])[0], library))


def _items_with_all(index, terms: list[str], library: str | None) -> set[int]:
    """Positions of the items (of the library, when given) that contain every term."""
    if not terms:
        return set()
    common = None
    for term in terms:
        items = set(index.postings(term))
        common = items if common is None else common & items
        if not common:
            return set()
    if library is not None:
        common = {i for i in common if index.fields["library"][i] == library}
    return common
