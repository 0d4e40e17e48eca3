"""One retriever for chat, interviewer and evals: dense (Chroma) + BM25, fused by reciprocal rank.

Each result carries a calibrated relevance score in [0, 1] (a logistic model over the dense cosine
similarity and the BM25 score, fitted by `python -m evals.calibrate` on in-scope and out-of-scope
questions). The answer step refuses when the best score is under the calibrated threshold.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from coach.bm25 import library_of
from coach.config import get_settings
from coach.store import open_store

CALIBRATION_FILE = Path(__file__).with_name("calibration.json")
MODES = ("hybrid", "dense", "bm25")
SCOPES = ("all", "bank", "docs")
# An uploaded passage answers a question only when its own question title is about the same thing: a
# user's notes share words with almost any query, and the calibration was fitted on the bank alone. The
# cosine of query and title from which a document hit may answer, chosen on the bank (never on uploaded
# documents) by Youden's J between the 160 gold queries' cosines to their entry's title and the 40
# out-of-scope queries' cosines to the nearest title (`python -m evals.calibrate --titles`; evals/README.md):
# at 0.39, 63.7% of gold queries clear it and 95.0% of out-of-scope ones do not (166-entry bank).
DOC_TITLE_MIN = 0.39


@dataclass
class Hit:
    chunk_id: str
    text: str
    metadata: dict
    dense: float = 0.0       # cosine similarity of query and chunk
    bm25: float = 0.0        # raw BM25 score (0 when no query term matches)
    fused: float = 0.0       # reciprocal-rank-fusion score
    score: float = 0.0       # calibrated relevance, 0..1
    rank: int = 0
    title_cosine: float = 0.0  # cosine of query and the hit's question title (uploaded documents only)

    def as_json(self) -> dict:
        m = self.metadata
        return {"rank": self.rank, "score": round(self.score, 4), "chunk_id": self.chunk_id,
                "source": m.get("source"), "question": m.get("question"), "part": m.get("part"),
                "topic": m.get("topic"), "text": self.text, "library": self.library}

    @property
    def library(self) -> str:
        return library_of(self.metadata)

    def document(self) -> Document:
        meta = {**self.metadata, "chunk_id": self.chunk_id, "score": self.score, "rank": self.rank,
                "dense": self.dense, "bm25": self.bm25}
        return Document(id=self.chunk_id, page_content=self.text, metadata=meta)


@dataclass(frozen=True)
class Calibration:
    """P(relevant) = sigmoid(bias + w_dense * cosine + w_bm25 * log1p(bm25))."""
    bias: float = -6.0
    w_dense: float = 12.0
    w_bm25: float = 0.0
    threshold: float = 0.5
    info: dict = field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> Calibration:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return cls()  # uncalibrated fallback: a cosine of 0.5 maps to 0.5
        return cls(bias=data["bias"], w_dense=data["w_dense"], w_bm25=data["w_bm25"],
                   threshold=data["threshold"], info=data.get("info", {}))

    @staticmethod
    def features(dense: float, bm25: float) -> tuple[float, float]:
        return dense, math.log1p(max(bm25, 0.0))

    def __call__(self, dense: float, bm25: float) -> float:
        x_dense, x_bm25 = self.features(dense, bm25)
        z = self.bias + self.w_dense * x_dense + self.w_bm25 * x_bm25
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))


class HybridRetriever(BaseRetriever):
    """A LangChain retriever; `search()` is the richer call the CLI, answerer and evals use."""

    model_config = ConfigDict(arbitrary_types_allowed=True)
    store: Any = None
    calibration: Any = None
    k: int = 5
    mode: str = "hybrid"
    filters: dict = {}
    last_timing_ms: float = 0.0

    def model_post_init(self, __context) -> None:
        self.store = self.store or open_store(get_settings())
        self.calibration = self.calibration or Calibration.load()

    @property
    def embeddings(self):
        """The embedding model of the index (coach.embedder): the answer step and grader embed with it."""
        return self.store.embeddings

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return [hit.document() for hit in self.search(query, **self.filters)]

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
        bank, docs = self._search(query, library="bank", **filters), self._search(query, library="docs", **filters)
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
        return bool((self.store.bm25().fields["library"] == "docs").any())

    def passes(self, hit: Hit) -> bool:
        """Does the hit answer its query? The calibrated score clears the refusal threshold, and for an
        uploaded passage its question title is close to the query as well (see DOC_TITLE_MIN)."""
        if hit.score < self.calibration.threshold:
            return False
        return hit.library == "bank" or hit.title_cosine >= DOC_TITLE_MIN

    def _search(self, query: str, k: int | None = None, part: int | None = None, topic: str | None = None,
                difficulty: str | None = None, mode: str | None = None, library: str | None = None) -> list[Hit]:
        started = time.perf_counter()
        settings = self.store.settings
        k, mode = k or self.k, mode or self.mode
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        query = " ".join(query.split())
        if not query:
            raise ValueError("the query is empty")
        where = {name: value for name, value in
                 (("part", part), ("topic", topic and topic.lower()), ("difficulty", difficulty)) if value}
        bm25 = self.store.bm25()
        vector = list(self.store.embeddings.embed_query(query))
        chroma_where = where | ({"kind": "bank" if library == "bank" else {"$ne": "bank"}} if library else {})
        dense = self._dense(vector, chroma_where, settings.fetch_k) if mode != "bm25" else {}
        lexical = dict(bm25.search(query, settings.fetch_k, where | ({"library": library} if library else {}))) \
            if mode != "dense" else {}

        # Fuse per question, not per chunk: the pieces of one long answer must not crowd out other
        # questions in either ranking, and one question is one result.
        fused, chosen, best_dense, best_bm25 = {}, {}, {}, {}
        for ranking, scores, best in ((sorted(dense, key=dense.get, reverse=True), dense, best_dense),
                                      (list(lexical), lexical, best_bm25)):
            rank = 0
            for chunk_id in ranking:
                key = (bm25.field(chunk_id, "source"), bm25.field(chunk_id, "qid") or chunk_id)
                if key in best:
                    continue
                rank += 1
                best[key] = scores[chunk_id]
                fused[key] = fused.get(key, 0.0) + 1.0 / (settings.rrf_k + rank)
                chosen.setdefault(key, (rank, chunk_id))
                if rank < chosen[key][0]:
                    chosen[key] = (rank, chunk_id)  # show the piece that ranked best in either list
        top = sorted(fused, key=fused.get, reverse=True)[:k]
        found = self._hydrate([chosen[key][1] for key in top], vector, dense)
        hits = []
        for key in top:
            hit = found.get(chosen[key][1])
            if hit is None:
                continue  # deleted by a concurrent ingest since the BM25 index was loaded
            hits.append(hit)
            hit.rank, hit.fused = len(hits), fused[key]
            hit.dense = max(hit.dense, best_dense.get(key, hit.dense))
            hit.bm25 = best_bm25.get(key, 0.0)
            hit.score = self.calibration(hit.dense, hit.bm25)
            if hit.library == "docs":
                hit.title_cosine = self._title_cosine(vector, hit.metadata.get("question") or "")
        self.last_timing_ms = (time.perf_counter() - started) * 1000
        return hits

    def _title_cosine(self, vector: list[float], title: str) -> float:
        import numpy as np

        return float(np.dot(np.asarray(self.store.embeddings.embed_sentences([title])[0]), np.asarray(vector)))

    def _dense(self, vector: list[float], where: dict, fetch_k: int) -> dict[str, float]:
        result = self.store.collection.query(query_embeddings=[vector], n_results=fetch_k,
                                             where=_chroma_where(where), include=["distances"])
        # Cosine space: Chroma's distance is 1 - cosine similarity.
        return {chunk_id: 1.0 - dist for chunk_id, dist in zip(result["ids"][0], result["distances"][0], strict=True)}

    def _hydrate(self, ids: list[str], vector: list[float], dense: dict[str, float]) -> dict[str, Hit]:
        """Texts and metadata of the chosen chunks; exact cosine for those dense search did not return."""
        if not ids:
            return {}
        import numpy as np

        include = ["documents", "metadatas"] + (["embeddings"] if set(ids) - set(dense) else [])
        got = self.store.collection.get(ids=ids, include=include)
        by_id = {}
        for n, chunk_id in enumerate(got["ids"]):
            cosine = dense.get(chunk_id)
            if cosine is None:
                cosine = float(np.dot(np.asarray(got["embeddings"][n]), np.asarray(vector)))
            by_id[chunk_id] = Hit(chunk_id=chunk_id, text=got["documents"][n], metadata=got["metadatas"][n],
                                  dense=float(cosine))
        return by_id


def _chroma_where(where: dict) -> dict | None:
    if not where:
        return None
    clauses = [{name: value} for name, value in where.items()]
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}
