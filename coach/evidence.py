"""Which sentences of the retrieved passages answer the question?

Both the model prompt and the extractive answer are built from these evidence sentences instead of
whole passages: a 250-word passage costs a model seconds of prefill before its first
token, and most of it is context the question did not ask about. Sentences are scored by meaning
(cosine to the question), by how many of the question's own terms they contain, and by position (a
bank answer opens with its definition); section labels such as "**Training.**" or "Practical note:"
are removed so they never reach the user.

`quote` goes the other way, after the answer is written: for an answer sentence, the passage sentence
that supports it, exactly as the passage has it, so a reader can be shown the very words (the side
panel highlights them; `ask --json` lists them as each citation's `evidence`).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from coach.compose import Unit, table_rows_of
from coach.text import content_words, split_sentences, strip_citations

# "**Training.**", "**Why it works**:" and "Practical note:" open a paragraph; "**LoRA** learns ..." does not.
LABEL = re.compile(r"^(?:\*\*[^*]{1,60}[.:]\*\*|\*\*[^*]{1,60}\*\*[.:]|[A-Z][A-Za-z ]{2,30} note:)\s*")
TERM_WEIGHT = 0.15     # share of the question's terms the sentence contains
LEAD_BONUS = 0.15      # first sentence of an answer: usually the definition
RANK_PENALTY = 0.04    # per rank of the passage the sentence comes from
NEAR_DUPLICATE = 0.85  # cosine above which two sentences say the same thing
MIN_INTRO_WORDS = 8    # as coach.compose: a list intro this long is shown as a claim
MIN_OPENING_WORDS = 3  # an intro this long once its label is removed can open a formula unit ('**Why.**' cannot)


@dataclass(frozen=True)
class Sentence:
    passage: int   # 1-based number of the passage it comes from
    position: int  # index of the sentence in its passage
    text: str
    relevance: float


def clean(sentence: str) -> str | None:
    """The sentence without markdown section labels; None for list intros, table rows and fragments."""
    text = LABEL.sub("", sentence.strip()).strip()
    if text != sentence.strip():
        text = text[:1].upper() + text[1:]  # "Practical note: the main ..." -> "The main ..."
    elif text[:1].islower():
        return None  # a fragment, e.g. the "where ..." that follows a formula
    if text.endswith(":") or text.startswith("|") or len(text.split()) < 5 or not re.search(r"[A-Za-z]", text):
        return None  # a list intro, a table row, a fragment
    return text


def passage_sentences(text: str) -> list[tuple[str, str]]:
    """(sentence as split, sentence as shown) pairs. The split form is what gets embedded: the support
    check splits passages the same way, so the two share cached vectors."""
    body = text.split("\n", 1)[-1]  # a chunk's first line repeats the bank question
    return [(raw, shown) for raw in split_sentences(body) if (shown := clean(raw))]


def select(question: str, passages: list[str], embeddings, limit: int) -> list[Sentence]:
    """The `limit` most relevant, non-redundant sentences, in passage order."""
    pairs = [(n, i, raw, shown) for n, text in enumerate(passages, start=1)
             for i, (raw, shown) in enumerate(passage_sentences(text))]
    if not pairs:
        return []
    vectors = np.asarray(embeddings.embed_sentences([raw for _, _, raw, _ in pairs]))
    candidates = [(n, i, shown) for n, i, _, shown in pairs]
    query = np.asarray(embeddings.embed_query(question))
    terms = content_words(question)
    relevance = [float(vectors[k] @ query)
                 + TERM_WEIGHT * (len(terms & content_words(s)) / len(terms) if terms else 0.0)
                 + (LEAD_BONUS if i == 0 else 0.0) - RANK_PENALTY * (n - 1)
                 for k, (n, i, s) in enumerate(candidates)]
    chosen: list[int] = []
    for k in np.argsort(relevance)[::-1]:
        if all(float(vectors[k] @ vectors[j]) < NEAR_DUPLICATE for j in chosen):
            chosen.append(int(k))
        if len(chosen) == limit:
            break
    chosen.sort(key=lambda k: candidates[k][:2])
    return [Sentence(*candidates[k], relevance=relevance[k]) for k in chosen]


def quote(sentence: str, passage: str, embeddings) -> str | None:
    """The passage sentence closest in meaning to `sentence` (an answer sentence, citations removed), as
    an exact substring of `passage`; None when the passage has no sentence. The support check passed the
    sentence because its closest passage sentence is this close, so this is the sentence that supports it.
    A formula the composer showed with its intro is quoted whole: intro, formula and the clause after it;
    a table row shown as '**Label**: A: …; B: …' is quoted as its line of the table."""
    stated = strip_citations(sentence)
    if row := next((line for line, shown in table_rows_of(passage) if _plain(shown) == _plain(stated)), None):
        return row  # a table row the composer showed as '**Label**: A: …; B: …': the row as written
    question, body = passage.split("\n", 1) if "\n" in passage else ("", passage)
    exact = [raw for raw in split_sentences(body) if raw in passage]
    if same := [raw for raw in exact if _plain(raw) == _plain(stated)]:
        return same[0]  # the composer showed this very sentence (a short '**ReLU**, $max(0, x)$.' too)
    if made_whole := [raw for raw in exact[:1] if _plain(Unit(0, "sentence", (raw,), 0).resolved(question).text)
                      == _plain(stated)]:
        return made_whole[0]  # the opening made to stand alone ('All four are …' -> 'LoRA, … are all …')
    if opening := [raw for raw in exact if _opens(raw, stated)]:
        return _continued(max(opening, key=len), stated, passage)  # a formula unit: intro, formula, clause
    raws = [raw for raw in exact if clean(raw) or _long_intro(raw)]
    if not raws:
        return None
    vectors = np.asarray(embeddings.embed_sentences(raws))  # cached: selection embedded the same strings
    claim = np.asarray(embeddings.embed_sentences([stated])[0])
    return raws[int(np.argmax(vectors @ claim))]


def _opens(raw: str, stated: str) -> bool:
    """The answer sentence begins with this passage sentence and goes on (the composer showed a display
    formula as one unit with the sentence introducing it: 'AdamW applies … update: $…$,')."""
    head, whole = _head(raw), _plain(stated)
    # three words at least: a bare label ('**Why it happens.**') or a stub opens too many sentences
    return len(head.split()) >= MIN_OPENING_WORDS and len(whole) > len(head) and whole.startswith(head)


def _head(raw: str) -> str:
    """A passage sentence as the composer shows it when it opens a unit: label removed, spacing plain."""
    return _plain(LABEL.sub("", raw))


def _continued(raw: str, stated: str, passage: str) -> str:
    """The passage from `raw` through as much of the rest of the answer sentence (the formula and the
    clause after it) as follows it there, word by word across line breaks: still an exact substring of
    the passage, and it supports the whole sentence, not only its intro."""
    start = passage.find(raw)
    rest = _unprotected(" ".join(stated.split())[len(_head(raw)):]).lstrip(":").split()
    end = start + len(raw)
    for word in rest:  # the last word may carry the end punctuation the composer added
        found = next(filter(None, (re.compile(r"\s*" + re.escape(form)).match(passage, end)
                                   for form in (word, word.rstrip(".,;:!?")) if form)), None)
        if not found:
            break
        end = found.end()
    return passage[start:end]


def _unprotected(text: str) -> str:
    """The composer's escaped brackets ('\\[0,1\\]', '\\lbrack 0,1\\rbrack ') back as the entry writes them."""
    for escaped, bracket in (("\\lbrack ", "["), ("\\rbrack ", "]"), ("\\[", "["), ("\\]", "]")):
        text = text.replace(escaped, bracket)
    return text


def _long_intro(raw: str) -> bool:
    """'A multilayer perceptron … becomes the next layer's inputs:' introduces a list, and the composer
    shows a sentence this long as a claim of its own ('….'): it is the evidence for that claim."""
    return raw.endswith(":") and len(raw.split()) >= MIN_INTRO_WORDS


def _plain(text: str) -> str:
    """A sentence without list marker, spacing or end punctuation, to recognise the same sentence."""
    text = re.sub(r"^\s*(?:[-*+]|\d+[.)])\s+", "", text)
    return re.sub(r"\s+([.,;:!?])", r"\1", " ".join(text.split())).rstrip(".:;!? ")
