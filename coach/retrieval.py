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

Scopes: "bank", "docs" (uploads) or "all". Both stages run within one library at a time (chunks and keys
alike; `asked_as` keys are the bank's); "all" puts the bank's passing hits first, and an uploaded passage
passes only when its question title is also close to the query (`passes`, DOC_TITLE_MIN).
"""
from __future__ import annotations

import json
import math
import time
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coach.bm25 import library_of
from coach.concepts import absent_concept
from coach.config import get_settings
from coach.store import open_store

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

    def as_json(self) -> dict:
        m = self.metadata
        return {"rank": self.rank, "score": round(self.score, 4), "chunk_id": self.chunk_id,
                "source": m.get("source"), "question": m.get("question"), "part": m.get("part"),
                "topic": m.get("topic"), "text": self.text, "library": self.library}

    @property
    def library(self) -> str:
        return library_of(self.metadata)

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
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}")
        filters = {"k": k, "part": part, "topic": topic, "difficulty": difficulty, "mode": mode}
        if scope != "all":
            return self._search(query, library=scope, **filters)
        if not self.has_documents():
            return self._search(query, library="bank", **filters)  # nothing uploaded: one search, as before
        started = time.perf_counter()
        k = k or self.k
        nearest = {}  # both libraries are taken from the same unfiltered dense searches (see _dense)
        bank = self._search(query, library="bank", nearest=nearest, **filters)
        docs = self._search(query, library="docs", nearest=nearest, **filters)
        bank_ok, docs_ok = [h for h in bank if self.passes(h)], [h for h in docs if self.passes(h)]
        # The bank's answering hits lead; the best answering upload may take the last place, so it can add
        # to an answer, but never the first, so it never displaces the bank's best.
        head = bank_ok[:max(1, k - 1)] + docs_ok[:1]
        ranked = head + [h for h in bank_ok + docs_ok if h not in head] + \
            sorted([h for h in bank + docs if not self.passes(h)], key=lambda h: -h.score)
        hits = ranked[:k]
        for n, hit in enumerate(hits, start=1):
            hit.rank = n
        self.last_timing_ms = (time.perf_counter() - started) * 1000
        return hits

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
                nearest: dict | None = None) -> list[Hit]:
        started = time.perf_counter()
        k, mode = k or self.k, mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        query = normalise_query(query)
        if not query:
            raise ValueError("the query is empty")
        where = {name: value for name, value in
                 (("part", part), ("topic", topic and topic.lower()), ("difficulty", difficulty)) if value}
        vector = list(self.store.embeddings.embed_query(query))
        fused, chosen = self._fuse(self._rankings(query, vector, where, mode, library, {} if nearest is None else nearest))
        depth = max(k, self.reranker.candidates) if mode == "rerank" else k
        top = sorted(fused, key=fused.get, reverse=True)[:depth]
        hits = self._evidence(top, chosen, query, vector, mode)
        absent = absent_concept(query, (self.store.bm25(), self.store.key_bm25()), library) if hits else None
        for hit in hits:
            hit.fused = fused[(hit.metadata.get("source"), hit.metadata.get("qid"))]
            hit.score = 0.0 if absent else self.calibration(hit.dense, hit.bm25, hit.key_dense)
            hit.absent_concept = str(absent) if absent else None
            if hit.library == "docs":
                hit.title_cosine = hit.key_dense  # an upload's only key is its question title
        if mode == "rerank" and hits:
            top_fused = max(hit.fused for hit in hits)
            for hit in hits:
                hit.rerank = self.reranker(hit, top_fused)
            hits.sort(key=lambda hit: hit.rerank, reverse=True)
        hits = hits[:k]
        for n, hit in enumerate(hits, start=1):
            hit.rank = n
        self.last_timing_ms = (time.perf_counter() - started) * 1000
        return hits

    def _rankings(self, query: str, vector: list[float], where: dict, mode: str, library: str | None,
                  nearest: dict) -> list[tuple[str, dict, Any]]:
        """(kind, {item id: score} best first, its BM25 index for grouping) for each ranking the mode uses,
        within one library when given (chunks and keys alike: `asked_as` keys are the bank's)."""
        fetch_k, key_fetch_k = self.store.settings.fetch_k, self.store.settings.key_fetch_k
        chunks_bm25, keys_bm25 = self.store.bm25(), self.store.key_bm25()
        bm25_where = where | ({"library": library} if library else {})
        rankings = []
        if mode != "bm25":
            rankings.append(("chunk_dense", _dense(self.store.collection, chunks_bm25, vector, where, library, fetch_k, nearest),
                             chunks_bm25))
            rankings.append(("key_dense", _dense(self.store.keys, keys_bm25, vector, where, library, key_fetch_k, nearest),
                             keys_bm25))
        if mode != "dense":
            rankings.append(("chunk_bm25", dict(chunks_bm25.search(query, fetch_k, bm25_where)), chunks_bm25))
            rankings.append(("key_bm25", dict(keys_bm25.search(query, key_fetch_k, bm25_where)), keys_bm25))
        return rankings

    def _fuse(self, rankings) -> tuple[dict, dict]:
        """Reciprocal rank fusion per question section, not per item: the pieces of one long answer, or
        the eight phrasings of one entry, must not crowd out other questions, and one question is one
        result. Also the chunk to show per section: the one ranked best in either chunk ranking."""
        settings = self.store.settings
        fused, chosen = {}, {}
        for kind, scores, index in rankings:
            seen = set()
            for item_id in sorted(scores, key=scores.get, reverse=True):
                key = (index.field(item_id, "source"), index.field(item_id, "qid") or item_id)
                if key in seen:
                    continue
                seen.add(key)
                fused[key] = fused.get(key, 0.0) + 1.0 / (settings.rrf_k + len(seen))
                if kind.startswith("chunk") and len(seen) < chosen.get(key, (math.inf, None))[0]:
                    chosen[key] = (len(seen), item_id)
        return fused, {key: item_id for key, (_, item_id) in chosen.items()}

    def _evidence(self, top: list[tuple], chosen: dict, query: str, vector: list[float], mode: str) -> list[Hit]:
        """One Hit per section with exact evidence whatever the mode: the best cosine over all its
        chunks and over all its keys (from their stored vectors), and the best BM25 score of each.
        Sections deleted by a concurrent ingest since the rankings were made are skipped."""
        if not top:
            return []
        import numpy as np

        query_vector = np.asarray(vector, dtype=np.float32)  # (dim,)
        chunks = _sections_items(self.store.collection, self.store.bm25(), top, ["embeddings", "metadatas", "documents"])
        chunk_evidence = _evidence_of(chunks, self.store.bm25(), query, query_vector)
        key_evidence = _key_evidence(self.store.key_bm25(), self.store.key_vectors(), top, query, query_vector)
        hits = []
        for key in top:
            if key not in chunk_evidence:
                continue
            pieces, (cosines, bm25) = chunks[key], chunk_evidence[key]
            shown = next((p for p in pieces if p["id"] == chosen.get(key)), pieces[int(np.argmax(cosines))])
            key_cosines, key_bm25 = key_evidence.get(key, ([0.0], [0.0]))
            hits.append(Hit(chunk_id=shown["id"], text=shown["document"], metadata=shown["metadata"],
                            dense=max(cosines), bm25=max(bm25), key_dense=max(key_cosines), key_bm25=max(key_bm25)))
        return hits


def _dense(collection, index, vector: list[float], where: dict, library: str | None, fetch_k: int,
           nearest: dict) -> dict[str, float]:
    """{item id: cosine} of the library's fetch_k items nearest the query, nearest first, among those whose
    fields equal `where`. `index` is the collection's BM25 index, which mirrors its ids and fields.

    Chroma's metadata filters cost far more than its search at scale (100k chunks: `kind != bank` 320 ms,
    `kind = bank` 22 ms, `part = 1` 37 ms, unfiltered 1.2 ms; benchmarks/README.md), so a library is taken
    from an unfiltered search that fetches more, its items told apart by the index; Chroma filters only
    for part/topic/difficulty, or when the library is too rare among the nearest items. `nearest` keeps a
    search's unfiltered results ({collection name: {id: cosine}, nearest first}) for its other library."""
    size, total = index.library_size(library), len(index.ids)
    if fetch_k <= 0 or size == 0:
        return {}
    if where or size == total:
        return _nearest(collection, vector, min(fetch_k, size), where | ({"kind": _kind(library)} if size < total else {}))
    wanted = min(fetch_k, size)
    for multiple in DENSE_OVERFETCH:
        n = min(fetch_k * multiple, total)
        if len(nearest.get(collection.name, ())) < n:
            nearest[collection.name] = _nearest(collection, vector, n, {})
        found = list(nearest[collection.name].items())[:n]
        mine = {item_id: cosine for item_id, cosine in found if index.field(item_id, "library") == library}
        if len(mine) >= wanted or n >= total:
            return dict(list(mine.items())[:fetch_k])
    return _nearest(collection, vector, wanted, {"kind": _kind(library)})


def _kind(library: str) -> Any:
    """Chroma's filter on `kind` that selects a library (coach.bm25.library_of)."""
    return "bank" if library == "bank" else {"$ne": "bank"}


def _nearest(collection, vector: list[float], n: int, where: dict) -> dict[str, float]:
    result = collection.query(query_embeddings=[vector], n_results=n, where=_chroma_where(where),
                              include=["distances"])
    # Cosine space: Chroma's distance is 1 - cosine similarity.
    return {item_id: 1.0 - dist for item_id, dist in zip(result["ids"][0], result["distances"][0], strict=True)}


def _sections_items(collection, index, sections: list[tuple], include: list[str]) -> dict[tuple, list[dict]]:
    """Every item (chunk or key) of the given (source, qid) sections, grouped by section; their ids come
    from the collection's BM25 index (a get by id, where a filter on qid costs 10 ms at 100k chunks)."""
    ids = index.section_ids(sections)
    got = collection.get(ids=ids, include=include) if ids else {"ids": []}
    wanted, out = set(sections), {}
    singular = {"embeddings": "embedding", "metadatas": "metadata", "documents": "document"}
    for n, item_id in enumerate(got["ids"]):
        meta = got["metadatas"][n]
        key = (meta.get("source"), meta.get("qid"))
        if key in wanted:
            out.setdefault(key, []).append({"id": item_id, **{singular[name]: got[name][n] for name in include}})
    for items in out.values():
        items.sort(key=lambda item: item["metadata"].get("piece") or 0)
    return out


def _evidence_of(items: dict[tuple, list[dict]], index, query: str, vector) -> dict[tuple, tuple[list, list]]:
    """section -> (cosine of each item with the query, BM25 score of each item), items in order."""
    import numpy as np

    ids = [item["id"] for section in items.values() for item in section]
    bm25 = dict(zip(ids, index.scores(query, ids), strict=True))
    return {key: ([float(np.dot(vector, np.asarray(item["embedding"], dtype=np.float32))) for item in section],
                  [bm25[item["id"]] for item in section]) for key, section in items.items()}


def _key_evidence(index, matrix, sections: list[tuple], query: str, vector) -> dict[tuple, tuple[list, list]]:
    """section -> (cosine of each of its question keys with the query, BM25 score of each), from the keys'
    vectors kept in memory (Store.key_vectors; `matrix` rows in `index` order). One dot product per key,
    as _evidence_of computes a chunk's, so a key's cosine is the same to the last bit either way."""
    import numpy as np

    ids = {section: index.section_ids([section]) for section in sections}
    every = [key_id for section_ids in ids.values() for key_id in section_ids]
    bm25 = dict(zip(every, index.scores(query, every), strict=True))
    return {section: ([float(np.dot(vector, matrix[index.position[key_id]])) for key_id in section_ids],
                      [bm25[key_id] for key_id in section_ids])
            for section, section_ids in ids.items() if section_ids}


def _chroma_where(where: dict) -> dict | None:
    if not where:
        return None
    clauses = [{name: value} for name, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
