"""Text utilities every stage shares: sentences, clauses, citation markers, content words.

Retrieval (BM25), evidence selection, the support check and the grader must agree on what a sentence
and a word are, or a sentence kept by one stage is read differently by the next; so the splitting,
the stop words and the Snowball stemmer live here, once.
"""
from __future__ import annotations

import re
from functools import lru_cache

CITATION = re.compile(r"\s*\[(\d+(?:\s*,\s*\d+)*)\]")
ABBREVIATIONS = re.compile(r"\b(e\.g|i\.e|etc|vs|cf|al|approx|Fig|Eq|No)\.", re.I)
NUMBER = re.compile(r"\d+(?:\.\d+)?")
WORD = re.compile(r"[a-z][a-z0-9'-]+")
LIST_MARK = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
# Where a sentence splits into separately checkable claims: "…, which …", "…; …", "… because …".
CLAUSE_BREAK = re.compile(r"[;:]\s+|,\s+(?=(?:which|so|while|whereas|and|but|because|where|since|then)\b)"
                          r"|\s+(?=(?:so that|because|whereas|while)\b)")
# The glue words of prose (articles, "is", "of", "because", ...), which a bag of terms lacks (coach.grader.is_claim).
FUNCTION_WORDS = frozenset([
    "a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into", "onto", "over",
    "under", "as", "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "do", "does",
    "did", "can", "could", "may", "might", "must", "should", "would", "will", "shall", "it", "its", "this",
    "that", "these", "those", "which", "who", "whom", "whose", "what", "when", "where", "while", "because",
    "so", "than", "then", "there", "their", "they", "them", "he", "she", "we", "you", "i", "not", "no",
    "but", "or", "and", "if", "also", "each", "every", "all", "any", "some", "more", "most", "less", "such",
    "only", "just", "very", "how", "why", "once", "until", "about", "during", "after", "before", "between",
    "through", "per", "within", "across", "via", "among", "against", "without", "out", "up", "off", "down"
])
# A sentence ends at . ! or ?, keeping any citation markers that follow it ("… loss. [2] Next …").
SENTENCE_END = re.compile(r"(?<=[.!?])((?:\s*\[\d+(?:\s*,\s*\d+)*\])*)\s+(?=[A-Z0-9\"'(*$`])")


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def clean_input(text: str | None) -> str:
    """Text typed or sent by a user, safe for every later stage: lone surrogates (from undecodable bytes)
    become U+FFFD and control characters other than tab and newline are removed."""
    text = (text or "").encode("utf-8", "replace").decode("utf-8") if text else ""
    return CONTROL.sub("", text)


def split_sentences(text: str) -> list[str]:
    """Sentences of a model answer or a passage; list items and lines count as sentences too."""
    sentences = []
    for line in text.split("\n"):
        line = LIST_MARK.sub("", line).strip()
        if not line or line.startswith("#"):
            continue
        protected = ABBREVIATIONS.sub(lambda m: m.group(0).replace(".", "\x00"), line)
        for part in SENTENCE_END.split(protected):
            if part is None:
                continue
            if CITATION.fullmatch(part) and sentences:
                sentences[-1] += part
            elif part.strip():
                sentences.append(part.replace("\x00", ".").strip())
    return sentences


def citations_of(sentence: str) -> list[int]:
    return [int(n) for group in CITATION.findall(sentence) for n in re.split(r"\s*,\s*", group)]


def strip_citations(sentence: str) -> str:
    return CITATION.sub("", sentence).strip()


def content_words(text: str) -> set[str]:
    """Stemmed words of `text` without stop words: what two texts must share to say the same thing."""
    words = [w for w in WORD.findall(text.lower()) if w not in stopwords()]
    return set(stemmer().stemWords(words))


@lru_cache(maxsize=1)
def stopwords() -> frozenset[str]:
    from bm25s.stopwords import STOPWORDS_EN

    return frozenset(STOPWORDS_EN) | {"also", "can", "use", "used", "uses", "using", "one", "two", "like"}


@lru_cache(maxsize=1)
def stemmer():
    """English Snowball stemmer (PyStemmer), shared by BM25 and content words."""
    import Stemmer

    return Stemmer.Stemmer("english")


def clauses(sentence: str) -> list[str]:
    """The separately checkable claims of a sentence ("..., so ...", "...; ..."), or the sentence itself."""
    parts = [c for c in CLAUSE_BREAK.split(sentence) if c and len(content_words(c)) >= 2]
    return parts if len(parts) > 1 else [sentence]


def recall(point: str, sentence: str, ignore: set[str] = frozenset()) -> float:
    """Share of the point's content words (less `ignore`, unless that leaves none) found in the sentence."""
    words = content_words(point)
    words = (words - ignore) or words
    return len(words & content_words(sentence)) / len(words) if words else 0.0
