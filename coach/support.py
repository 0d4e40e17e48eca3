"""Is a sentence supported by a passage? The support check (text utilities live in coach.text).

A model's sentence counts as supported by a passage when it is close in meaning to one of the passage's
sentences (MiniLM cosine), when most of its content words (stemmed, stopwords removed) occur in the
passage, and when every number it states appears there. A paraphrase keeps the meaning and most of the
words; an invented claim about the same topic brings words, or numbers, the passage does not have.

Known limit, measured by `python -m evals.support` on 180 hand-made pairs: a sentence that keeps the
passage's words but swaps two of them or negates the claim ("lowers variance and raises bias") looks
supported to both signals; most such sentences pass. An entailment model would catch them and can
replace `SupportChecker.check` without changing its callers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coach.text import NUMBER, content_words, split_sentences, strip_citations

# Chosen on evals/sets/support_pairs.jsonl (trade-off table in evals/README.md): keeps 95% of supported
# sentences and drops 65% of unsupported ones; stricter overlap drops a few more fakes but also the
# synonym-heavy paraphrases a capable model writes.
MIN_COSINE = 0.60    # with the passage's closest sentence
MIN_OVERLAP = 0.50   # share of the sentence's content words found in the passage
# For a model known to invent: only near-copies of the passage pass (the embedded 135M model's
# "paraphrases" were mostly garbled recombinations of passage words). The answer step no longer uses it,
# since only capable backends write answers; `python -m evals` still reports it beside the default rule.
STRICT_COSINE = 0.70
STRICT_OVERLAP = 0.65


@dataclass(frozen=True)
class Support:
    passage: int | None     # 1-based number of the best supporting passage, None if unsupported
    cosine: float
    overlap: float

    @property
    def supported(self) -> bool:
        return self.passage is not None


class SupportChecker:
    """Scores sentences against passages with the shared embedding model."""

    def __init__(self, embeddings, strict: bool = False):
        self.embeddings = embeddings  # coach.store embeddings: sentence vectors are cached there
        self.min_cosine, self.min_overlap = (STRICT_COSINE, STRICT_OVERLAP) if strict else (MIN_COSINE, MIN_OVERLAP)

    def _passage(self, text: str) -> tuple[list[str], np.ndarray]:
        sentences = split_sentences(text) or [text]
        return sentences, np.asarray(self.embeddings.embed_sentences(sentences))

    def check(self, sentence: str, passages: list[str], prefer: list[int] = ()) -> Support:
        """The passage (1-based) that best supports the sentence, preferring the ones it cites."""
        claim = strip_citations(sentence)
        words = content_words(claim)
        if not words:
            return Support(None, 0.0, 0.0)
        vector = np.asarray(self.embeddings.embed_sentences([claim])[0])  # cached: evals re-check claims
        numbers = set(NUMBER.findall(claim))
        best = Support(None, 0.0, 0.0)
        for n, passage in enumerate(passages, start=1):
            sentences, vectors = self._passage(passage)
            cosine = float(np.max(vectors @ vector))
            overlap = len(words & content_words(passage)) / len(words)
            numbers_ok = numbers <= set(NUMBER.findall(passage))
            ok = numbers_ok and cosine >= self.min_cosine and overlap >= self.min_overlap
            score = cosine + overlap + (0.5 if n in prefer else 0.0)
            if ok and (best.passage is None or score > best.cosine + best.overlap +
                       (0.5 if best.passage in prefer else 0.0)):
                best = Support(n, cosine, overlap)
            elif best.passage is None and cosine + overlap > best.cosine + best.overlap:
                best = Support(None, cosine, overlap)
        return best
