"""The BM25 index (bm25s, English stop words, Snowball stemming), derived from Chroma's chunks.

It is saved beside the Chroma store and rebuilt whenever its fingerprint no longer matches Chroma's
contents (coach.store decides when). It keeps each chunk's filter and grouping fields in memory, so
filtered searches and per-question de-duplication need no round trip to Chroma.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np

from coach.text import stemmer, stopwords

# Misspelt query words (evals/README.md, "typo-tolerant BM25": three tries, each ruled before measuring).
# A word is respelt only when wordfreq's English list lacks it: the second try's Zipf < 2.0 still respelt
# "posteriori" (1.97) and lost a tuning-half question; misspellings the gold set holds are not listed.
TYPO_MIN_LETTERS = 5                 # stemmed terms shorter than this are never respelt
TYPO_EDITS = ((8, 1), (10**6, 2))    # stemmed term under 8 letters: 1 edit; from 8 letters: 2 edits
SPELLINGS_KEPT = 4096                # respellings remembered per index (unknown words arrive without end)
# Compounds written apart, together or hyphenated (evals/README.md, "compounds as the index spells them"): on
# set F "hyper parameters" found nothing where "hyperparameters" found its entry, "Feedforward" nothing where
# "feed-forward" did; MiniLM and BM25 both read the spelling literally.
HYPHENATED = re.compile(r"\b([A-Za-z]{2,})-([A-Za-z]{2,})\b")
CLOSED_MIN_LETTERS = 6               # a closed word this long may be a hyphenated compound written together
APART = re.compile(r"\b([A-Za-z]{3,}) (?=([A-Za-z]{3,})\b)")  # two words that may be one written apart


class Bm25Index:
    """bm25s over chunk texts, with each chunk's filter fields (part, topic, source, ...)."""
    FIELDS = ("part", "topic", "difficulty", "source", "qid")
    FORMAT = 3  # bump when what is saved changes; an index of another format is rebuilt (2: library, 3: compounds)

    def __init__(self, model, ids: list[str], fields: dict[str, list], fingerprint: str,
                 compounds: dict[str, str] | None = None):
        self.model, self.ids, self.fingerprint = model, ids, fingerprint  # model: a bm25s.BM25
        self.compounds = compounds or {}  # "feedforward" -> "feed-forward", as the indexed texts hyphenate it
        self.fields = {name: np.array(values, dtype=object) for name, values in fields.items()}
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}
        self._library_sizes = self._sections = None  # built on first use (library_size, section_ids)
        self._masks = {}  # (field, value) -> which items have it, built on first use (mask)
        self._sorted = None  # are the saved postings in ascending order (_postings_sorted)
        self._section_fields = None  # (sources, qids) as lists, built on first use (section)
        self._spellings, self._terms = {}, None  # misspelt term -> indexed term (spelled); every term

    def field(self, chunk_id: str, name: str):
        """A chunk's metadata field, or None for a chunk this index has not seen."""
        i = self.position.get(chunk_id)
        return None if i is None else self.fields[name][i]

    def section(self, item_id: str) -> tuple:
        """The (source, qid) section an item belongs to, as section_ids keys them (an item without a qid,
        or one this index has not seen, is a section of its own): one position lookup, where the fusion
        asked `field` twice for each of ~700 ranked items per search."""
        i = self.position.get(item_id)
        if i is None:
            return None, item_id
        if self._section_fields is None:  # Python lists: indexing one is ~4x faster than an object array
            self._section_fields = self.fields["source"].tolist(), self.fields["qid"].tolist()
        sources, qids = self._section_fields
        return sources[i], qids[i] or item_id

    def library_size(self, library: str | None) -> int:
        """How many items the library ("bank" or "docs") holds; every item for None."""
        if self._library_sizes is None:
            names, counts = np.unique(self.fields["library"].astype(str), return_counts=True)
            self._library_sizes = dict(zip(names.tolist(), counts.tolist(), strict=True))
        return len(self.ids) if library is None else self._library_sizes.get(library, 0)

    def section_ids(self, sections: list[tuple]) -> list[str]:
        """The ids of every item of the given (source, qid) sections (an item without a qid is a section
        of its own, keyed by its id), so their rows are fetched from Chroma by id, not by a metadata filter."""
        if self._sections is None:  # built whole, then published: a search on another thread may read it
            by_section = {}
            for item_id, source, qid in zip(self.ids, self.fields["source"], self.fields["qid"], strict=True):
                by_section.setdefault((source, qid or item_id), []).append(item_id)
            self._sections = by_section
        return [item_id for section in sections for item_id in self._sections.get(section, [])]

    @staticmethod
    def tokenize(texts: list[str]) -> list[list[str]]:
        return _bm25s().tokenize(texts, stemmer=stemmer(), return_ids=False, show_progress=False)

    @classmethod
    def build(cls, ids: list[str], texts: list[str], metadatas: list[dict], fingerprint: str) -> Bm25Index:
        model = _bm25s().BM25()
        if texts:
            model.index(cls.tokenize(texts), show_progress=False)
        fields = {name: [m.get(name) for m in metadatas] for name in cls.FIELDS}
        fields["library"] = [library_of(m) for m in metadatas]  # "bank" or "docs", for scoped search
        return cls(model, list(ids), fields, fingerprint, hyphenated_compounds(texts))

    def save(self, folder: Path) -> None:
        """Write to a sibling temp folder and swap it in, so a kill never leaves half an index."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=folder.parent))
        if self.ids:
            self.model.save(str(tmp))
        meta = {"format": self.FORMAT, "fingerprint": self.fingerprint, "ids": self.ids,
                "fields": {name: values.tolist() for name, values in self.fields.items()}, "compounds": self.compounds}
        (tmp / "coach.json").write_text(json.dumps(meta))
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> Bm25Index | None:
        bm25s = _bm25s()
        try:
            meta = json.loads((folder / "coach.json").read_text())
            if meta.get("format") != cls.FORMAT:
                return None
            model = bm25s.BM25.load(str(folder)) if meta["ids"] else bm25s.BM25()
            return cls(model, meta["ids"], meta["fields"], meta["fingerprint"], meta["compounds"])
        except (OSError, ValueError, KeyError):
            return None

    def scores(self, query: str, ids: list[str]) -> list[float]:
        """The BM25 score of each of `ids` for the query (0 for an id this index has not seen): exact
        evidence for candidates that the top-k search did not reach.

        bm25s's get_scores sums, in float32 and query-term order, each term's saved score of every item
        containing it, for every item of the index (100k at scale, four times a search); here the same
        sums in the same order for the items asked about only, each found in a term's postings (sorted
        positions) by binary search: the same float32 values."""
        tokens = self.terms(query) if self.ids else ()
        if not tokens:
            return [0.0] * len(ids)
        if self.model.nonoccurrence_array is not None or not self._postings_sorted():  # not the sums above
            every = self.model.get_scores(list(tokens))
            return [float(every[self.position[i]]) if i in self.position else 0.0 for i in ids]
        matrix, vocab = self.model.scores, self.model.vocab_dict
        positions = np.array([self.position.get(i, -1) for i in ids], dtype=np.int64)
        totals = np.zeros(len(ids), dtype=matrix["data"].dtype)
        for term in (vocab[t] for t in tokens):
            start, end = matrix["indptr"][term], matrix["indptr"][term + 1]
            if start == end:
                continue
            posting = matrix["indices"][start:end]
            found = np.minimum(np.searchsorted(posting, positions), end - start - 1)
            has = posting[found] == positions
            totals[has] += matrix["data"][start:end][found[has]]
        return totals.tolist()

    def _postings_sorted(self) -> bool:
        """Does every term list the items containing it in ascending position (as bm25s saves them)?"""
        if self._sorted is None:
            indices, indptr = self.model.scores["indices"], self.model.scores["indptr"]
            ascending = np.diff(indices) > 0
            ascending[indptr[1:-1][(indptr[1:-1] > 0) & (indptr[1:-1] < len(indices))] - 1] = True  # a term's first
            self._sorted = bool(ascending.all())
        return self._sorted

    def postings(self, term: str) -> list[int]:
        """Positions of the items that contain a (tokenized) term; [] for a term no item has."""
        start, end = self._row(term)
        return self.model.scores["indices"][start:end].tolist() if end > start else []

    def _row(self, term: str) -> tuple[int, int]:
        """Where a term's postings lie in the saved matrix: (0, 0) for a term no item has."""
        i = self.model.vocab_dict.get(term) if self.ids else None
        indptr = self.model.scores["indptr"] if i is not None else ()
        if i is None or i + 1 >= len(indptr):  # bm25s's empty-string token has no row
            return 0, 0
        return int(indptr[i]), int(indptr[i + 1])

    def search(self, query: str, k: int, where: dict | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, score) with score > 0, among chunks whose fields equal `where`.

        Scored from bm25s's saved matrix (per term, the score of each chunk containing it) with one
        np.bincount over the chunks that share a term with the query. bm25s's own retrieve costs a
        thread pool per call, np.add.at per term, and a weight mask and a partition over every chunk:
        most of a hybrid search at 100k chunks (benchmarks/README.md). The scores are the same sums;
        ties are ordered by position in the index, so results do not depend on sort stability. The
        sums go to one slot per item and the filters are masks kept per (field, value): sorting the
        matched chunks (np.unique) and comparing their fields as Python objects took 2-3 ms of each
        search at 100k chunks, against 0.2-0.3 ms now, with the same results."""
        if not self.ids:
            return []
        vocab = self.model.vocab_dict
        terms = np.array([vocab[t] for t in self.terms(query)], dtype=np.int64)
        if not len(terms):
            return []
        matrix = self.model.scores
        starts, ends = matrix["indptr"][terms], matrix["indptr"][terms + 1]
        chunks = np.concatenate([matrix["indices"][a:b] for a, b in zip(starts, ends, strict=True)])
        weights = np.concatenate([matrix["data"][a:b] for a, b in zip(starts, ends, strict=True)])
        totals = np.bincount(chunks, weights=weights, minlength=len(self.ids))  # (items,), summed in order
        keep = totals > 0
        for name, value in (where or {}).items():
            keep &= self.mask(name, value)
        touched = np.flatnonzero(keep)
        totals = totals[touched]
        if len(touched) > k:
            best = np.argpartition(-totals, k - 1)[:k]
            touched, totals = touched[best], totals[best]
        order = np.lexsort((touched, -totals))
        return [(self.ids[i], float(totals[j])) for j, i in zip(order, touched[order], strict=True)]

    def terms(self, query: str) -> list[str]:
        """The query's BM25 terms this index holds, a misspelt word read as the indexed term it was
        meant to be (`spelled`): "paramter" finds the chunks about parameters."""
        vocab = self.model.vocab_dict
        found = (t if t in vocab else self.spelled(t, word) for t, word in query_words(query))
        return [t for t in found if t is not None]

    def compounds_respelt(self, query: str) -> str:
        """The query with its compounds spelt as the indexed texts spell them, so the embedder and BM25 both
        meet the library's form: a closed word the index never holds, which the texts hyphenate, is
        hyphenated ("Feedforward" -> "feed-forward"); two words written apart are joined when the joined
        word is indexed and one of the two is not ("hyper parameters" -> "hyperparameters"; "fine tuning"
        stays, both of its words are indexed)."""
        def split(match: re.Match) -> str:
            word = match.group()
            hyphenated = self.compounds.get(word.lower())
            return hyphenated if hyphenated and not self._holds(word) else word

        def join(match: re.Match) -> str:
            first, second = match.group(1), match.group(2)
            if first.lower() in stopwords() or second.lower() in stopwords():
                return match.group()
            joined = self._holds(first + second) and not (self._holds(first) and self._holds(second))
            return first if joined else match.group()

        query = re.sub(rf"\b[A-Za-z]{{{CLOSED_MIN_LETTERS},}}\b", split, query) if self.compounds else query
        return APART.sub(join, query) if self.ids else query

    def _holds(self, word: str) -> bool:
        """Does some item hold the word (stemmed as the index stems it)? Its postings are not read."""
        start, end = self._row(stemmer().stemWord(word.lower()))
        return end > start

    def spelled(self, term: str, word: str) -> str | None:
        """The indexed term nearest in spelling to a term no item holds, when the typed word looks like a
        misspelling: long enough to judge (TYPO_MIN_LETTERS), not an English word (wordfreq: a real word
        the bank lacks, such as "posteriori", stays itself), and one or two edits from a term (TYPO_EDITS);
        the term more items hold on a tie. None when there is no such term."""
        if len(term) < TYPO_MIN_LETTERS:
            return None
        if term not in self._spellings:
            if len(self._spellings) >= SPELLINGS_KEPT:
                self._spellings = {}
            self._spellings[term] = self._nearest_term(term) if _misspelt(word) else None
        return self._spellings[term]

    def _nearest_term(self, term: str) -> str | None:
        from rapidfuzz import process
        from rapidfuzz.distance import Levenshtein

        vocab, indptr = self.model.vocab_dict, self.model.scores["indptr"]
        if self._terms is None:
            self._terms = [t for t, i in vocab.items() if t and i + 1 < len(indptr)]
        edits = next(n for letters, n in TYPO_EDITS if len(term) < letters)
        near = process.extract(term, self._terms, scorer=Levenshtein.distance, score_cutoff=edits, limit=None)
        if not near:
            return None
        holding = {near_term: int(indptr[vocab[near_term] + 1] - indptr[vocab[near_term]])  # items holding it
                   for near_term, _, _ in near}
        return min(near, key=lambda match: (match[1], -holding[match[0]], match[0]))[0]

    def mask(self, name: str, value) -> np.ndarray:
        """Which items' field `name` equals `value`, a boolean array in index order."""
        if (name, value) not in self._masks:
            self._masks[(name, value)] = np.asarray(self.fields[name] == value, dtype=bool)
        return self._masks[(name, value)]


@lru_cache(maxsize=256)
def query_words(query: str) -> tuple[tuple[str, str], ...]:
    """Each BM25 term of the query with the word it was stemmed from (the word decides whether it is a
    misspelling, the term is what the index holds): Bm25Index.tokenize's split and stop words, then the
    same stemmer, so the terms are the ones the index was built with. Computed once per query: one search
    scores its query on both indexes and both libraries, top-k and per candidate, which tokenized it 8
    times (bm25s builds progress bars even when told not to show them: ~1.5 ms a search at 100k)."""
    words = _bm25s().tokenize([query], stemmer=None, return_ids=False, show_progress=False)[0]
    return tuple(zip(stemmer().stemWords(words), words, strict=True))


def hyphenated_compounds(texts: list[str]) -> dict[str, str]:
    """Every hyphenated word pair of the texts by its closed form: {"feedforward": "feed-forward"}."""
    found = {}
    for text in texts:
        for first, second in HYPHENATED.findall(text):
            found.setdefault((first + second).lower(), f"{first}-{second}".lower())
    return {closed: hyphenated for closed, hyphenated in found.items() if len(closed) >= CLOSED_MIN_LETTERS}


@lru_cache(maxsize=4096)
def _misspelt(word: str) -> bool:
    """Does wordfreq's English list lack the word (Zipf 0: the list holds every word seen about once per
    100 million words of its sources)? The list (~40 MB, 0.35 s) is read on the first such question only."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "en") == 0


def library_of(metadata: dict) -> str:
    """Which library a chunk belongs to: the curated bank, or the user's own documents."""
    return "bank" if metadata.get("kind") == "bank" else "docs"


@lru_cache(maxsize=1)
def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    return bm25s
