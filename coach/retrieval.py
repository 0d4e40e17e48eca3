"""One retriever for chat, interviewer and evals: dense (Chroma) + BM25, fused per question, reranked.

Stage 1 ranks two kinds of items with two retrievers each: the answer chunks, and the question keys
(every section's heading question and, for bank entries, the `asked_as` phrasings interviewers use;
see coach.store). Real questions are phrased far from our answers' wording, and a question is most
like another question: a key is a retrieval handle for its entry and is never shown. The four rankings
(dense and BM25, chunks and keys) are cut to one row per question section and fused by reciprocal rank.

Stage 2 (mode `rerank`, the default) re-scores the best fused candidates with a linear model over
entry-level evidence: the best question-to-question cosine (query vs the entry's keys), the best chunk
cosine, both BM25 scores and the fused score. Its few weights are fitted on the tuning half of the
real-question dev set (`python -m evals.rerank`, written to `coach/rerank.json` with what chose them).

Queries are normalised with NFKC first, so 𝐛𝐨𝐥𝐝 or ｆｕｌｌｗｉｄｔｈ letters read as the text they show.
Each result carries a calibrated relevance score in [0, 1] (a logistic model over the best chunk cosine,
the best key cosine and the BM25 score, fitted by `python -m evals.calibrate`); the answer step refuses
when the best score is under the calibrated threshold. A query that defines a concept ("conditional
random fields (CRFs)") which its library never names scores 0 on every hit (coach.concepts).

A small library (at most SMALL_LIBRARY_MAX chunks: the bank) is searched and shown from memory, exactly,
while Chroma holds what its index was built from (coach.store); a large one's nearest chunks come from
Chroma's approximate index, on a thread while the rest of the search runs, and only its shown hits are read.

Scopes: "bank", "docs" (uploads) or "all". Both stages run within one library at a time (chunks and keys
alike; `asked_as` keys are the bank's); "all" puts the bank's passing hits first, and an uploaded passage
passes only when its question title is also close to the query (`passes`, DOC_TITLE_MIN).
"""
from __future__ import annotations

import json
import math
import time
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coach.bm25 import library_of
from coach.concepts import absent_concept
from coach.config import get_settings
from coach.store import SMALL_LIBRARY_MAX, open_store

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
RERANK_FILE = Path(__file__).with_name("rerank.json")
MODES = ("rerank", "hybrid", "dense", "bm25")   # rerank = hybrid, then the second stage
DEFAULT_MODE = "rerank"
SCOPES = ("all", "bank", "docs")
# An uploaded passage answers a question only when its own question title is about the same thing: a
# user's notes share words with almost any query, and the calibration was fitted on the bank alone. The
# cosine of query and title from which a document hit may answer, chosen on the bank (never on uploaded
# documents, never on the dev set's held-out half) by Youden's J between the 160 gold queries' cosines to
# their entry's title and the 40 out-of-scope queries' cosines to the nearest title
# (`python -m evals.calibrate --titles`; evals/README.md). On the 332-entry bank: at 0.42, 58.1% of gold
# queries clear it and 97.5% of out-of-scope ones do not (the old 0.39, chosen on 166 entries, now lets
# 15% of out-of-scope queries through); adding the dev set's tuning half to the choice also gives 0.42.
DOC_TITLE_MIN = 0.42
# A library's nearest items are looked for among the 4x, then 16x fetch_k nearest of the whole collection
# before Chroma is asked to filter. At 100k chunks (the bench's bank + synthetic uploads, 160 gold queries)
# the bank's 30 nearest lie within the first 148 (median), 447 (p95) of all; the uploads' within 43, 84.
DENSE_OVERFETCH = (4, 16)
# Scope "all" first asks Chroma for only the whole collection's DENSE_PROBE nearest items: the uploads' nearest
# among them bounds their scores (HybridRetriever._bank_takes_every_place), and a query the uploads compete
# for is one they crowd the nearest items of, so the probe mostly holds their fetch_k nearest as well. Set to
# fetch_k + 10 before timing it; at 100k chunks (160 gold queries) 159 needed no second query, and a query
# for 40 costs less than one for 120 (2.24 against 2.54 ms p50 from a Chroma server); 16, 30 and 90 timed
# afterwards were not better (benchmarks/README.md, seventh pass).
DENSE_PROBE = 40
# The parts of a search that mostly wait on Chroma run here beside the rest (HybridRetriever._begin,
# _search_both); Chroma, onnxruntime and numpy's inner loops release the GIL.
_BESIDE = ThreadPoolExecutor(max_workers=4, thread_name_prefix="search")


@dataclass
class Hit:
    chunk_id: str
    text: str
    metadata: dict
    dense: float = 0.0       # best cosine similarity of query and one of the question's chunks
    bm25: float = 0.0        # best raw BM25 score of its chunks (0 when no query term matches)
    fused: float = 0.0       # reciprocal-rank-fusion score
    score: float = 0.0       # calibrated relevance, 0..1
    rank: int = 0
    key_dense: float = 0.0   # best cosine of query and one of the question's keys (heading, asked_as)
    key_bm25: float = 0.0    # best BM25 score of its keys
    rerank: float = 0.0      # the second stage's score (mode rerank), else 0
    title_cosine: float = 0.0  # cosine of query and the hit's question title (uploaded documents only)
    absent_concept: str | None = None  # a concept the query defines that its library never names (score 0)
    # Until its text and metadata are read (HybridRetriever._read_shown): the chunks it may show
    pending: tuple[str, ...] = field(default=(), repr=False)
    searched_library: str = field(default="", repr=False)  # the library whose search found it

    def as_json(self) -> dict:
        m = self.metadata
        return {"rank": self.rank, "score": round(self.score, 4), "chunk_id": self.chunk_id,
                "source": m.get("source"), "question": m.get("question"), "part": m.get("part"),
                "topic": m.get("topic"), "text": self.text, "library": self.library}

    @property
    def library(self) -> str:
        """"bank" or "docs": its metadata's, or while that is not read, the library it was found in."""
        return library_of(self.metadata) if self.metadata else self.searched_library or "docs"

    def document(self):
        """A LangChain Document of the hit."""
        from langchain_core.documents import Document

        meta = {**self.metadata, "chunk_id": self.chunk_id, "score": self.score, "rank": self.rank,
                "dense": self.dense, "bm25": self.bm25}
        return Document(id=self.chunk_id, page_content=self.text, metadata=meta)


def _read_json(path: Path) -> dict | None:
    """A fitted parameter file, or None when it is missing or unreadable (the caller's defaults apply)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


@dataclass(frozen=True)
class Calibration:
    """P(relevant) = sigmoid(bias + w_dense * cosine + w_bm25 * log1p(bm25) + w_key * key cosine)."""
    bias: float = -6.0
    w_dense: float = 12.0
    w_bm25: float = 0.0
    threshold: float = 0.5
    w_key: float = 0.0
    info: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        data = _read_json(path)
        if data is None:
            return cls()  # uncalibrated fallback: a cosine of 0.5 maps to 0.5
        return cls(bias=data["bias"], w_dense=data["w_dense"], w_bm25=data["w_bm25"],
                   threshold=data["threshold"], w_key=data.get("w_key", 0.0), info=data.get("info", {}))

    @staticmethod
    def features(dense: float, bm25: float, key_dense: float = 0.0) -> tuple[float, float, float]:
        return dense, math.log1p(max(bm25, 0.0)), key_dense

    def __call__(self, dense: float, bm25: float, key_dense: float = 0.0) -> float:
        x_dense, x_bm25, x_key = self.features(dense, bm25, key_dense)
        return _sigmoid(self.bias + self.w_dense * x_dense + self.w_bm25 * x_bm25 + self.w_key * x_key)


@dataclass(frozen=True)
class Reranker:
    """The second stage: a linear score over one candidate question's evidence (see FEATURES).

    The weights live in `coach/rerank.json` beside a note saying what chose them; without the file
    every weight but the fused score's is 0, which keeps the first stage's order."""
    FEATURES = ("key_dense", "dense", "log_bm25", "log_key_bm25", "fused")
    weights: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 1.0)
    candidates: int = 20     # how many fused candidates are re-scored
    info: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: Path = RERANK_FILE) -> Reranker:
        data = _read_json(path)
        if data is None:
            return cls()
        return cls(weights=tuple(data["weights"][name] for name in cls.FEATURES),
                   candidates=data.get("candidates", 20), info=data)

    @staticmethod
    def features(hit: Hit, top_fused: float) -> tuple[float, ...]:
        """Per candidate; the fused score is divided by the query's best, so it reads the same for
        every query (RRF scores depend on how many rankings found anything)."""
        return (hit.key_dense, hit.dense, math.log1p(max(hit.bm25, 0.0)), math.log1p(max(hit.key_bm25, 0.0)),
                hit.fused / top_fused if top_fused > 0 else 0.0)

    def __call__(self, hit: Hit, top_fused: float) -> float:
        return sum(w * x for w, x in zip(self.weights, self.features(hit, top_fused), strict=True))


def normalise_query(query: str) -> str:
    """NFKC (mathematical bold and italic letters, fullwidth forms and ligatures become the plain letters
    they show), invisible format characters (zero-width spaces, joiners) removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", query)
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    return " ".join(text.split())


class HybridRetriever:
    """`search()` is the call the CLI, answerer and evals use; `as_langchain()` gives a LangChain retriever
    (not a base class: langchain-core's retriever module is a quarter of a cold `app.py search`)."""

    def __init__(self, store=None, calibration: Calibration | None = None, reranker: Reranker | None = None,
                 k: int = 5, mode: str = DEFAULT_MODE, filters: dict | None = None):
        self.store = store or open_store(get_settings())
        self.calibration = calibration or Calibration.load()
        self.reranker = reranker or Reranker.load()
        self.k, self.mode, self.filters = k, mode, dict(filters or {})
        self.last_timing_ms = 0.0

    @property
    def embeddings(self):
        """The embedding model of the index (coach.embedder): the answer step and grader embed with it."""
        return self.store.embeddings

    def as_langchain(self):
        """This retriever as a LangChain `BaseRetriever` (`.invoke(query)` -> Documents, `self.filters` applied)."""
        from langchain_core.retrievers import BaseRetriever

        hybrid = self

        class LangChainRetriever(BaseRetriever):
            k: int = hybrid.k

            def _get_relevant_documents(self, query: str, *, run_manager) -> list:
                return [hit.document() for hit in hybrid.search(query, **hybrid.filters)]

        return LangChainRetriever()

    def search(self, query: str, k: int | None = None, part: int | None = None, topic: str | None = None,
               difficulty: str | None = None, mode: str | None = None, scope: str = "all") -> list[Hit]:
        """The best k hits in a scope: "bank", "docs" (the user's uploads) or "all". In "all" the two
        libraries are searched apart; the bank's hits that answer the question (`passes`) come first, and
        the best answering upload may take the last of the k places: uploads can add to an answer, never
        push the bank's best out of it."""
        started = time.perf_counter()
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}")
        if (mode or self.mode) not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        query = self.searched_query(query)
        if not query:
            raise ValueError("the query is empty")
        filters = {"k": k, "part": part, "topic": topic, "difficulty": difficulty, "mode": mode}
        both = scope == "all" and self.has_documents()
        libraries = ("bank", "docs") if both else ("bank" if scope == "all" else scope,)  # nothing uploaded: the bank
        shared = self._begin(query, mode or self.mode, _where(part, topic, difficulty), libraries)
        if both:
            hits = self._search_both(query, k or self.k, filters, shared)
        else:
            hits = self._read_shown(self._search(query, library=libraries[0], shared=shared, **filters))
        for n, hit in enumerate(hits, start=1):
            hit.rank = n
        self.last_timing_ms = (time.perf_counter() - started) * 1000
        return hits

    def searched_query(self, query: str) -> str:
        """The query as it is embedded and matched: normalised (normalise_query), its compounds spelt as the
        indexed texts spell them (Bm25Index.compounds_respelt)."""
        return self.store.bm25().compounds_respelt(normalise_query(query))

    def _begin(self, query: str, mode: str, where: dict, libraries: tuple[str, ...]) -> dict:
        """What the searches of one query share (see _search), made on a thread while the query is embedded
        here once for all of them (the embedder caches it; 6 ms of a 11 ms search at 100k on an idle
        machine): the chunk vectors, whose freshness check reads the collection's metadata (0.2 ms
        embedded, 1-6 ms from a Chroma server), and each library's BM25 rankings, which need no vector
        (~1 ms a search at 100k, the query's tokenizing included)."""
        def beside() -> dict:
            shared = {"chunk vectors": self.store.chunk_vectors()}
            if mode != "dense":
                shared["bm25"] = {library: self._bm25_rankings(query, where, library) for library in libraries}
            return shared

        work = _BESIDE.submit(beside)
        self.store.embeddings.embed_query(query)
        return work.result()

    def _search_both(self, query: str, k: int, filters: dict, shared: dict) -> list[Hit]:
        """Scope "all" with uploads: each library's best k, then the k that `search` describes. What the
        uploads' search takes from Chroma is fetched on a thread while the bank is searched here
        (_docs_dense): a large library's mostly waits on Chroma's query for its nearest chunks, which a
        small one's (from memory) does not need; each asks for its own (`nearest` is not shared, as both
        may run at once). The uploads' search is finished only when one of its hits could take a place
        (_bank_takes_every_place). Only waiting is put beside Python work: two threads running Python
        take turns at the GIL, and one may wait the interpreter's whole switch interval (5 ms) for the
        other. Only the hits shown are read (_read_shown), mostly none (a small library's come from
        memory); a hit whose chunks are gone by then is left out and the k are chosen again without it."""
        vector = list(self.store.embeddings.embed_query(query))
        where, mode = _where(filters["part"], filters["topic"], filters["difficulty"]), filters["mode"] or self.mode
        docs_dense = _BESIDE.submit(self._docs_dense, vector, where, mode, shared["chunk vectors"])
        bank = self._search(query, library="bank", shared=shared, **filters)
        rankings, nearest = docs_dense.result()
        docs = None  # the uploads' hits, searched only when one of them may take a place (_bank_takes_every_place)
        while True:
            if docs is None and not (mode in ("rerank", "hybrid") and self._bank_takes_every_place(
                    bank, k, self._docs_best(rankings, nearest, vector, where, shared))):
                if rankings is None:  # mostly taken from the probe's items (_dense)
                    rankings = self._dense_rankings(vector, where, mode, "docs", nearest, shared["chunk vectors"])
                docs = self._search(query, library="docs", shared={**shared, "dense": {"docs": rankings}}, **filters)
            ranked = self._both_ranked(bank, docs or [], k)
            unread = [hit for hit in ranked if hit.pending]
            self._read_shown(unread)
            gone = [hit for hit in unread if hit.pending]  # its chunks deleted since the search began
            if not gone:
                return ranked
            bank = [hit for hit in bank if all(hit is not g for g in gone)]
            docs = None if docs is None else [hit for hit in docs if all(hit is not g for g in gone)]

    def _docs_dense(self, vector: list[float], where: dict, mode: str, chunk_vectors) -> tuple[list | None, dict]:
        """What the uploads' search takes from Chroma, made beside the bank's search: (their dense rankings
        as _dense_rankings makes them, {}), or for a large library searched whole (None, `nearest` as
        _dense keeps it): only the whole collection's DENSE_PROBE nearest items. Those bound the uploads'
        scores (_docs_best), which mostly skips the rest, and when it does not they mostly hold the
        uploads' fetch_k nearest as well (_dense takes them from there)."""
        if mode in ("rerank", "hybrid") and not where and self.store.bm25().library_size("docs") > SMALL_LIBRARY_MAX:
            collection = self.store.collection
            return None, {collection.name: _nearest(collection, vector, DENSE_PROBE, {})}
        return self._dense_rankings(vector, where, mode, "docs", {}, chunk_vectors), {}

    def _docs_best(self, rankings: list | None, nearest: dict, vector: list[float], where: dict,
                   shared: dict) -> dict[str, float]:
        """The uploads' best chunk cosine, BM25 score and title cosine ("chunk_dense", "chunk_bm25",
        "key_dense"): each ranking's first item, the BM25 ones made while the query was embedded; from
        the probe (_docs_dense) the nearest upload among its items, or when none is among them the last
        item's cosine, which no upload exceeds."""
        best = {kind: max(scores.values(), default=0.0) for kind, scores, _ in shared["bm25"]["docs"]}
        if rankings is not None:
            return best | {kind: max(scores.values(), default=0.0) for kind, scores, _ in rankings}
        found = next(iter(nearest.values()))  # nearest first
        uploads = _of_library(found, self.store.bm25(), "docs")
        best["chunk_dense"] = next(iter(uploads.values())) if uploads else min(found.values(), default=1.0)
        key_index, key_matrix = self.store.key_vectors()
        best["key_dense"] = max(_key_nearest(key_index, key_matrix, vector, where, "docs", 1).values(), default=0.0)
        return best

    def _bank_takes_every_place(self, bank: list[Hit], k: int, docs_best: dict[str, float]) -> bool:
        """Would the bank's hits take all k places of scope "all" whatever the uploads' second stage
        found? Yes when the bank has k hits, no upload can pass (its title would have to be within
        DOC_TITLE_MIN of the query, and the uploads' nearest title is not) and every bank hit scores
        above the best calibrated score an upload could reach: the calibration of the uploads' best
        chunk cosine, BM25 score and title cosine (_docs_best). An upload hit's evidence is a maximum
        over its chunks and keys, so that bounds it: exactly for BM25 and the titles (searched whole),
        for the chunk cosine as far as Chroma's approximate search finds the nearest chunk (which the
        uploads' dense ranking relies on as well). The uploads' fusion, evidence and second stage (~1 ms
        of CPU a search at 100k chunks) are then skipped; what is shown is the same: at 100k chunks the
        bank's hits took every place for 146 of the 160 gold queries at k = 5 (benchmarks/README.md,
        seventh pass). Only for a calibration monotone in all three (weights >= 0)."""
        calibration = self.calibration
        if len(bank) < k or min(calibration.w_dense, calibration.w_bm25, calibration.w_key) < 0:
            return False
        if docs_best["key_dense"] >= DOC_TITLE_MIN:
            return False
        # A little slack: the rankings' BM25 sums and cosines may differ from the evidence's in the last bits
        ceiling = calibration(docs_best["chunk_dense"] + 1e-6, docs_best["chunk_bm25"] * (1 + 1e-5),
                              docs_best["key_dense"] + 1e-6)
        return min(hit.score for hit in bank) > ceiling

    def _both_ranked(self, bank: list[Hit], docs: list[Hit], k: int) -> list[Hit]:
        """The k of scope "all" (see `search`) from each library's hits, read or not."""
        bank_ok, docs_ok = [h for h in bank if self.passes(h)], [h for h in docs if self.passes(h)]
        # The bank's answering hits lead; the best answering upload may take the last place, so it can add
        # to an answer, but never the first, so it never displaces the bank's best.
        head = bank_ok[:max(1, k - 1)] + docs_ok[:1]
        ranked = head + [h for h in bank_ok + docs_ok if h not in head] + \
            sorted([h for h in bank + docs if not self.passes(h)], key=lambda h: -h.score)
        return ranked[:k]

    def has_documents(self) -> bool:
        """Is anything but the bank indexed?"""
        return self.store.bm25().library_size("docs") > 0

    def passes(self, hit: Hit) -> bool:
        """Does the hit answer its query? The calibrated score clears the refusal threshold, and for an
        uploaded passage its question title is close to the query as well (see DOC_TITLE_MIN)."""
        if hit.score < self.calibration.threshold:
            return False
        return hit.library == "bank" or hit.title_cosine >= DOC_TITLE_MIN

    def _search(self, query: str, k: int | None = None, part: int | None = None, topic: str | None = None,
                difficulty: str | None = None, mode: str | None = None, library: str | None = None,
                shared: dict | None = None) -> list[Hit]:
        """The best k hits of one library, their shown chunks' text and metadata not yet read unless the
        library's chunks are in memory (Store.library_chunks; else the caller reads them for the hits it
        keeps: _read_shown). `shared` holds what the searches of one query take from the same reads:
        Chroma's unfiltered nearest items ("nearest", see _dense) and the chunk vectors ("chunk vectors",
        Store.chunk_vectors: whether Chroma still holds what they were read from is asked once, when a
        query begins, so what it takes from memory is Chroma's content as of then)."""
        shared = {} if shared is None else shared
        k, mode = k or self.k, mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        query = normalise_query(query)
        if not query:
            raise ValueError("the query is empty")
        where = _where(part, topic, difficulty)
        vector = list(self.store.embeddings.embed_query(query))
        if "chunk vectors" not in shared:
            shared["chunk vectors"] = self.store.chunk_vectors()
        chunk_vectors = shared["chunk vectors"]
        rankings = shared.get("dense", {}).get(library)  # made beside the search (_search_both), or now
        if rankings is None:
            rankings = self._dense_rankings(vector, where, mode, library, shared.setdefault("nearest", {}), chunk_vectors)
        bm25 = shared.get("bm25", {}).get(library) if mode != "dense" else []  # made beside (_begin), or now
        rankings = rankings + (self._bm25_rankings(query, where, library) if bm25 is None else bm25)
        fused, chosen = self._fuse(rankings)
        depth = max(k, self.reranker.candidates) if mode == "rerank" else k
        top = sorted(fused, key=fused.get, reverse=True)[:depth]
        evidence = self._evidence(top, chosen, query, vector, chunk_vectors, library)
        index = self.store.bm25()
        absent = absent_concept(query, (index, self.store.key_bm25()), library) if evidence else None
        for key, hit in evidence.items():
            hit.fused = fused[key]
            hit.score = 0.0 if absent else self.calibration(hit.dense, hit.bm25, hit.key_dense)
            hit.absent_concept = str(absent) if absent else None
            hit.searched_library = library or index.field(hit.chunk_id, "library")
            if hit.searched_library == "docs":
                hit.title_cosine = hit.key_dense  # an upload's only key is its question title
        hits = list(evidence.values())
        if mode == "rerank" and hits:
            top_fused = max(hit.fused for hit in hits)
            for hit in hits:
                hit.rerank = self.reranker(hit, top_fused)
            hits.sort(key=lambda hit: hit.rerank, reverse=True)
        return hits[:k]

    def _dense_rankings(self, vector: list[float], where: dict, mode: str, library: str | None, nearest: dict,
                        chunk_vectors: tuple | None) -> list[tuple[str, dict, Any]]:
        """(kind, {item id: score} best first, its index for grouping) for the chunks' and the keys'
        dense rankings unless the mode is bm25, within one library when given (chunks and keys alike:
        `asked_as` keys are the bank's). The chunks' is exact over their vectors in memory when at most
        SMALL_LIBRARY_MAX chunks qualify (_exact_chunks), else Chroma's (_dense)."""
        if mode == "bm25":
            return []
        fetch_k = self.store.settings.fetch_k
        chunk_dense = self._exact_chunks(chunk_vectors, vector, where, library, fetch_k)
        if chunk_dense is None:
            chunk_dense = _dense(self.store.collection, self.store.bm25(), vector, where, library, fetch_k, nearest)
        key_index, key_matrix = self.store.key_vectors()
        return [("chunk_dense", chunk_dense, self.store.bm25()),
                ("key_dense", _key_nearest(key_index, key_matrix, vector, where, library, self.store.settings.key_fetch_k),
                 key_index)]

    def _bm25_rankings(self, query: str, where: dict, library: str | None) -> list[tuple[str, dict, Any]]:
        """The chunks' and the keys' BM25 rankings, as _dense_rankings gives the dense ones."""
        chunks_bm25, keys_bm25 = self.store.bm25(), self.store.key_bm25()
        bm25_where = where | ({"library": library} if library else {})
        settings = self.store.settings
        return [("chunk_bm25", dict(chunks_bm25.search(query, settings.fetch_k, bm25_where)), chunks_bm25),
                ("key_bm25", dict(keys_bm25.search(query, settings.key_fetch_k, bm25_where)), keys_bm25)]

    def _exact_chunks(self, chunk_vectors: tuple | None, vector: list[float], where: dict, library: str | None,
                      n: int) -> dict[str, float] | None:
        """{chunk id: cosine} of the n chunks nearest the query among the library's whose fields equal
        `where`, nearest first (ties in index order), from their vectors in memory: a small library's
        kept copy (Store.library_chunks), else the rows gathered from the whole matrix. None when there
        are no vectors in memory (a writer may have changed the chunks) or more than SMALL_LIBRARY_MAX
        chunks qualify: Chroma's search then. Exact, where Chroma's HNSW search is approximate."""
        import numpy as np

        if chunk_vectors is None or n <= 0:
            return None
        index, matrix = chunk_vectors
        if not where and index.library_size(library) > SMALL_LIBRARY_MAX:
            return None  # a large library: no mask over all of it needed to know
        chunks = self.store.library_chunks(chunk_vectors, library) if library else None
        if chunks is not None:
            rows, vectors = chunks.rows, chunks.vectors
            if where:
                keep = _mask(index, where, None)[rows]
                rows, vectors = rows[keep], vectors[keep]
        else:
            rows = np.flatnonzero(_mask(index, where, library))
            if len(rows) > SMALL_LIBRARY_MAX:
                return None
            vectors = matrix[rows]
        cosines = np.einsum("ij,j->i", vectors, np.asarray(vector, dtype=np.float32))  # (rows,)
        return {index.ids[rows[i]]: float(cosines[i]) for i in _nearest_first(rows, cosines, n)}

    def _fuse(self, rankings) -> tuple[dict, dict]:
        """Reciprocal rank fusion per question section, not per item: the pieces of one long answer, or
        the eight phrasings of one entry, must not crowd out other questions, and one question is one
        result. Also the chunk to show per section: the one ranked best in either chunk ranking."""
        settings = self.store.settings
        fused, chosen = {}, {}
        for kind, scores, index in rankings:
            seen = set()
            for item_id in sorted(scores, key=scores.get, reverse=True):
                key = index.section(item_id)
                if key in seen:
                    continue
                seen.add(key)
                fused[key] = fused.get(key, 0.0) + 1.0 / (settings.rrf_k + len(seen))
                if kind.startswith("chunk") and len(seen) < chosen.get(key, (math.inf, None))[0]:
                    chosen[key] = (len(seen), item_id)
        return fused, {key: item_id for key, (_, item_id) in chosen.items()}

    def _evidence(self, top: list[tuple], chosen: dict, query: str, vector: list[float],
                  chunk_vectors: tuple | None, library: str | None = None) -> dict[tuple, Hit]:
        """section -> its Hit with exact evidence whatever the mode: the best cosine over all its chunks
        and over all its keys (from their stored vectors), and the best BM25 score of each. The vectors
        come from memory (`chunk_vectors`: Store.chunk_vectors; Store.key_vectors), so nothing is read
        from Chroma here; each Hit shows its chunk's text from memory for a small library
        (Store.library_chunks), else only names the chunks it may show (`pending`, read by _read_shown).
        Without them (a writer may have changed the chunks since their index was built) the candidates'
        chunks are read from Chroma, vectors, texts and all. Sections deleted by a concurrent ingest since
        the rankings were made are skipped."""
        if not top:
            return {}
        import numpy as np

        query_vector = np.asarray(vector, dtype=np.float32)  # (dim,)
        if chunk_vectors is None:
            chunk_evidence, rows = _read_evidence(self.store.collection, self.store.bm25(), top, query, query_vector)
        else:
            chunks = self.store.library_chunks(chunk_vectors, library) if library else None
            chunk_evidence = _vector_evidence(*chunk_vectors, top, query, query_vector)
            rows = chunks.texts if chunks is not None else {}
        key_evidence = _vector_evidence(*self.store.key_vectors(), top, query, query_vector)
        hits = {}
        for key in top:
            if key not in chunk_evidence:
                continue
            ids, cosines, bm25 = chunk_evidence[key]
            _, key_cosines, key_bm25 = key_evidence.get(key, ((), [0.0], [0.0]))
            shown = _shown_candidates(ids, cosines, chosen.get(key))
            hits[key] = _show(Hit(chunk_id=shown[0], text="", metadata={}, dense=max(cosines), bm25=max(bm25),
                                  key_dense=max(key_cosines), key_bm25=max(key_bm25), pending=tuple(shown)), rows)
        return hits

    def _read_shown(self, hits: list[Hit]) -> list[Hit]:
        """The hits with the text and metadata of the chunk each shows, read from Chroma in one request for
        those not read yet; a hit whose chunks are all gone (deleted since the search began) is left out
        and keeps its `pending` ids."""
        ids = [item_id for hit in hits for item_id in hit.pending]
        rows = _rows(self.store.collection, ids) if ids else {}
        return [hit for hit in hits if not hit.pending or not _show(hit, rows).pending]


def _dense(collection, index, vector: list[float], where: dict, library: str | None, fetch_k: int,
           nearest: dict) -> dict[str, float]:
    """{item id: cosine} of the library's fetch_k items nearest the query, nearest first, among those whose
    fields equal `where`. `index` is the collection's BM25 index, which mirrors its ids and fields.

    Chroma's metadata filters cost far more than its search at scale (100k chunks: `kind != bank` 320 ms,
    `kind = bank` 22 ms, `part = 1` 37 ms, unfiltered 1.2 ms; benchmarks/README.md), so a library is taken
    from an unfiltered search that fetches more, its items told apart by the index; Chroma filters only
    for part/topic/difficulty, or when the library is too rare among the nearest items. `nearest` keeps a
    search's unfiltered results ({collection name: {id: cosine}, nearest first}) for its other library, or
    what a probe fetched (HybridRetriever._docs_dense): they are used when they hold enough of the library."""
    size, total = index.library_size(library), len(index.ids)
    if fetch_k <= 0 or size == 0:
        return {}
    if where or size == total:
        return _nearest(collection, vector, min(fetch_k, size), where | ({"kind": _kind(library)} if size < total else {}))
    wanted = min(fetch_k, size)
    mine = _of_library(nearest.get(collection.name, {}), index, library)  # fetched before (a probe, the other library)
    if len(mine) >= wanted:
        return dict(list(mine.items())[:fetch_k])
    for multiple in DENSE_OVERFETCH:
        n = min(fetch_k * multiple, total)
        if len(nearest.get(collection.name, ())) < n:
            nearest[collection.name] = _nearest(collection, vector, n, {})
        mine = _of_library(dict(list(nearest[collection.name].items())[:n]), index, library)
        if len(mine) >= wanted or n >= total:
            return dict(list(mine.items())[:fetch_k])
    return _nearest(collection, vector, wanted, {"kind": _kind(library)})


def _of_library(found: dict[str, float], index, library: str | None) -> dict[str, float]:
    """The items of `found` ({id: cosine}) that are the library's, in the same order."""
    return {item_id: cosine for item_id, cosine in found.items() if index.field(item_id, "library") == library}


def _key_nearest(index, matrix, vector: list[float], where: dict, library: str | None, n: int) -> dict[str, float]:
    """{key id: cosine} of the n question keys nearest the query among the library's whose fields equal
    `where`, nearest first (ties in index order): an exact search over the keys' vectors in memory
    (Store.key_vectors, rows in `index` order). Chroma's search over them was a second query per search
    (0.7 ms on an idle machine, 2-4 ms on a loaded one) and approximate: for 177 of the 251 gold and
    tuning-half queries its 100 nearest were not the exact 100, and they differed between two processes
    opening the same index. The products go through np.einsum: OpenBLAS's two-thread matrix-vector
    product took 8 ms (median) for the bank's keys on the loaded 2-core machine, einsum 0.24 ms."""
    import numpy as np

    if n <= 0 or not len(index.ids):
        return {}
    rows = np.flatnonzero(_mask(index, where, library))
    if not len(rows):  # e.g. uploads without question titles
        return {}
    cosines = np.einsum("ij,j->i", matrix, np.asarray(vector, dtype=np.float32))  # (keys,)
    best = rows[_nearest_first(rows, cosines[rows], n)]
    return {index.ids[row]: float(cosines[row]) for row in best}


def _nearest_first(rows, cosines, n: int):
    """Positions in `cosines` of the n highest, highest first, ties in `rows` order: what
    np.lexsort((rows, -cosines))[:n] gives, sorting only those at least as high as the n-th (a partition
    finds it) instead of every row (0.14 ms for the bank's 2,649 keys)."""
    import numpy as np

    candidates = np.arange(len(cosines))
    if 0 < n < len(cosines):
        nth = np.partition(cosines, len(cosines) - n)[len(cosines) - n]
        candidates = np.flatnonzero(cosines >= nth)
    return candidates[np.lexsort((rows[candidates], -cosines[candidates]))[:n]]


def _where(part: int | None, topic: str | None, difficulty: str | None) -> dict:
    """The fields a search is filtered on, as the indexes store them (topics lower case)."""
    return {name: value for name, value in
            (("part", part), ("topic", topic and topic.lower()), ("difficulty", difficulty)) if value}


def _mask(index, where: dict, library: str | None):
    """Which of the index's items are of the library (any, for None) and have the fields `where` gives."""
    import numpy as np

    keep = np.ones(len(index.ids), dtype=bool)
    for name, value in (where | ({"library": library} if library else {})).items():
        keep &= index.mask(name, value)
    return keep


def _kind(library: str) -> Any:
    """Chroma's filter on `kind` that selects a library (coach.bm25.library_of)."""
    return "bank" if library == "bank" else {"$ne": "bank"}


def _nearest(collection, vector: list[float], n: int, where: dict) -> dict[str, float]:
    result = collection.query(query_embeddings=[vector], n_results=n, where=_chroma_where(where),
                              include=["distances"])
    # Cosine space: Chroma's distance is 1 - cosine similarity.
    return {item_id: 1.0 - dist for item_id, dist in zip(result["ids"][0], result["distances"][0], strict=True)}


def _cosines(vectors, vector) -> list[float]:
    """The query vector's cosine with each row of `vectors` (unit vectors), by one np.einsum: a row's value
    does not depend on the other rows given, so an item's cosine is the same to the last bit whether its
    vector comes from memory or from Chroma, alone or among others (np.dot, one call per item, cost
    0.2 ms per 200 items, ~1 ms a search; its sums differ from einsum's in the last bit)."""
    import numpy as np

    return np.einsum("ij,j->i", vectors, vector).tolist() if len(vectors) else []


def _vector_evidence(index, matrix, sections: list[tuple], query: str, vector) -> dict[tuple, tuple[list, list, list]]:
    """section -> (the ids of its items, cosine of each with the query, BM25 score of each), items (chunks
    or question keys) in the index's order, from their vectors kept in memory (`matrix` rows in `index`
    order), computed as _read_evidence computes them from the vectors Chroma returns (_cosines)."""
    ids = {section: index.section_ids([section]) for section in sections}
    every = [item_id for section_ids in ids.values() for item_id in section_ids]
    bm25 = dict(zip(every, index.scores(query, every), strict=True))
    cosines = dict(zip(every, _cosines(matrix[[index.position[item_id] for item_id in every]], vector), strict=True))
    return {section: (section_ids, [cosines[item_id] for item_id in section_ids], [bm25[item_id] for item_id in section_ids])
            for section, section_ids in ids.items() if section_ids}


def _read_evidence(collection, index, sections: list[tuple], query: str, vector) -> tuple[dict, dict]:
    """_vector_evidence's answer for chunks read from Chroma now (those it still holds, in piece order),
    and {chunk id: (text, metadata)} of every one: while a writer may have changed the collection since
    the index was built. The ids come from the index, a get by id (a filter on qid costs 10 ms at 100k)."""
    import numpy as np

    ids = index.section_ids(sections)
    got = collection.get(ids=ids, include=["embeddings", "metadatas", "documents"]) if ids else \
        {"ids": [], "embeddings": [], "metadatas": [], "documents": []}
    wanted, items = set(sections), {}
    for item_id, embedding, metadata in zip(got["ids"], got["embeddings"], got["metadatas"], strict=True):
        key = (metadata.get("source"), metadata.get("qid") or item_id)  # the index's section (section_ids)
        if key in wanted:
            items.setdefault(key, []).append((metadata.get("piece") or 0, item_id, embedding))
    bm25 = dict(zip(got["ids"], index.scores(query, got["ids"]), strict=True))
    cosines = dict(zip(got["ids"], _cosines(np.asarray(got["embeddings"], dtype=np.float32), vector), strict=True))
    evidence = {}
    for key, pieces in items.items():
        pieces.sort(key=lambda piece: piece[0])
        evidence[key] = ([item_id for _, item_id, _ in pieces], [cosines[item_id] for _, item_id, _ in pieces],
                         [bm25[item_id] for _, item_id, _ in pieces])
    return evidence, _texts_and_metadata(got)


def _shown_candidates(ids: list[str], cosines: list[float], chosen: str | None) -> list[str]:
    """The chunk a section's hit shows: the one ranked best in a chunk ranking, else the one nearest the
    query (the first piece of those equally near: _show)."""
    if chosen in ids:
        return [chosen]
    best = max(cosines)
    return [item_id for item_id, cosine in zip(ids, cosines, strict=True) if cosine == best]


def _show(hit: Hit, rows: dict[str, tuple[str, dict]]) -> Hit:
    """Give the hit the text and metadata of the first piece (lowest piece number, the earliest listed of
    equals) of its pending chunks that `rows` ({chunk id: (text, metadata)}) holds, if any."""
    present = [item_id for item_id in hit.pending if item_id in rows]
    if present:
        hit.chunk_id = min(present, key=lambda item_id: rows[item_id][1].get("piece") or 0)
        hit.text, metadata = rows[hit.chunk_id]
        hit.metadata, hit.pending = dict(metadata), ()  # a copy: `rows` may be the ones kept in memory
    return hit


def _rows(collection, ids: list[str]) -> dict[str, tuple[str, dict]]:
    """{chunk id: (text, metadata)} of those of `ids` Chroma holds."""
    got = collection.get(ids=ids, include=["documents", "metadatas"]) if ids else {"ids": []}
    return _texts_and_metadata(got)


def _texts_and_metadata(got: dict) -> dict[str, tuple[str, dict]]:
    """{id: (text, metadata)} of a Chroma get's result."""
    return {item_id: (text, metadata) for item_id, text, metadata in
            zip(got["ids"], got.get("documents", []), got.get("metadatas", []), strict=True)}


def _chroma_where(where: dict) -> dict | None:
    if not where:
        return None
    clauses = [{name: value} for name, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
