"""MiniLM on onnxruntime gives sentence-transformers' vectors, sizes chunks by the same word pieces, and
falls back to torch (saying so) when the ONNX export is missing."""
from __future__ import annotations

import logging
import random

import numpy as np
import pytest

from coach.embedder import embedder, onnx_path

needs_export = pytest.mark.skipif(not onnx_path().is_file(),
                                  reason="no ONNX export of MiniLM: `make setup` or `python -m coach.onnx_export`")
QUERIES = ["what is dropout", "How does the KV cache speed up decoding?", "", "x" * 3000]


# Chunks compared with torch: the longest (well past tokenizer.json's 128 word pieces, where an embedder
# that truncated there would differ), the shortest and a fixed random sample of the rest.
# Torch over all ~450 chunks took 50 s of the suite on CI for the same check.
LONGEST, SHORTEST, SAMPLED = 24, 8, 32


def sampled_chunks(n: int, lengths: list[int]) -> list[int]:
    by_length = sorted(range(n), key=lambda i: lengths[i])
    ends = set(by_length[:SHORTEST]) | set(by_length[-LONGEST:])
    rest = [i for i in range(n) if i not in ends]
    return sorted(ends | set(random.Random(6).sample(rest, min(SAMPLED, len(rest)))))


@pytest.fixture(scope="module")
def torch_reference():
    """sentence-transformers' MiniLM, loaded once for the tests that compare with it."""
    from coach.embedder import torch_minilm

    return torch_minilm().inner


@needs_export
def test_onnx_vectors_match_torch_on_the_banks_longest_shortest_and_sampled_chunks(corpus_index, torch_reference):
    """The vectors ingest stored (ONNX) against sentence-transformers' on the same chunk texts; every
    stored vector is checked for unit length."""
    from coach.embedder import OnnxMiniLM

    assert isinstance(embedder().inner, OnnxMiniLM)
    got = corpus_index.everything(["documents", "embeddings"])
    assert len(got["ids"]) > 300
    stored = np.asarray(got["embeddings"], dtype=np.float32)  # written by the ONNX embedder at ingest
    assert np.allclose(np.linalg.norm(stored, axis=1), 1.0, atol=1e-5)
    chosen = sampled_chunks(len(got["ids"]), [len(d) for d in got["documents"]])
    stored = stored[chosen]
    reference = np.asarray(torch_reference.embed_documents([got["documents"][i] for i in chosen]), dtype=np.float32)
    cosine = (stored * reference).sum(axis=1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.min() >= 0.9999, (got["ids"][chosen[int(cosine.argmin())]], float(cosine.min()))


@needs_export
def test_queries_match_torch_including_empty_and_truncated_ones(torch_reference):
    from coach.embedder import OnnxMiniLM

    onnx = OnnxMiniLM(onnx_path())
    reference = torch_reference
    for query in QUERIES:
        a, b = np.asarray(onnx.embed_query(query)), np.asarray(reference.embed_query(query))
        assert float(a @ b) >= 0.9999, query[:40]
    # One text embedded alone or among others of other lengths (padding) gets the same vector.
    batch = onnx.embed_documents(QUERIES)
    assert float(np.asarray(batch[1]) @ np.asarray(onnx.embed_query(QUERIES[1]))) >= 0.99999


def test_word_pieces_are_the_transformers_tokenizers(corpus_index):
    from transformers import AutoTokenizer

    from coach.embedder import WordPieceCounter, model_dir

    texts = corpus_index.everything(["documents"])["documents"] + ["Ünïcode — and  odd   spacing\n\n", ""]
    reference = AutoTokenizer.from_pretrained(str(model_dir()))
    ours = WordPieceCounter()
    assert [ours.tokenize(t) for t in texts] == [reference.tokenize(t) for t in texts]


def test_without_the_export_it_falls_back_to_torch_and_says_so(tmp_path, monkeypatch, caplog):
    from coach.embedder import TorchMiniLM

    monkeypatch.setenv("COACH_MODEL_CACHE", str(tmp_path))  # an empty cache folder: no export
    embedder.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger="coach.embedder"):
            model = embedder()
        assert isinstance(model.inner, TorchMiniLM)
        assert any("no ONNX export" in r.getMessage() and str(tmp_path) in r.getMessage() for r in caplog.records)
        vector = np.asarray(model.embed_query("what is dropout"))
        assert vector.shape == (384,) and abs(np.linalg.norm(vector) - 1.0) < 1e-3
    finally:
        embedder.cache_clear()  # the next caller gets the configured model again


class Counting:
    """A stand-in model: each text's vector is (its length, 1, 2); the texts it embedded go to `computed`."""

    def __init__(self, computed: list[str]):
        self.computed = computed

    def embed_documents(self, texts):
        self.computed.extend(texts)
        return [[float(len(t)), 1.0, 2.0] for t in texts]


def fake_export(folder):
    """A file standing in for the ONNX export (the vector file is keyed to it), and an empty `computed`."""
    from coach import embedder as module

    model = folder / module.ONNX_FILE
    model.write_bytes(b"stands in for the export")
    return model, []


def test_the_vector_file_returns_what_was_computed_and_misses_after_a_new_export(tmp_path, monkeypatch, caplog):
    """Indexed texts' vectors come back from the file byte for byte, duplicates embedded once; a new
    export (another modification time) misses them all; the oldest go past the row limit; a corrupt
    file is reported and embedding carries on without it."""
    import os

    from coach import embedder as module
    from coach.embedder import CachedEmbeddings, VectorFile

    model, computed = fake_export(tmp_path)

    def stored_embedder():
        return CachedEmbeddings(Counting(computed), VectorFile.beside(model))

    texts = ["what is dropout", "why warm up", "what is dropout"]
    first = stored_embedder().embed_stored(texts)
    assert computed == ["what is dropout", "why warm up"] and first[0] == first[2]
    again = stored_embedder().embed_stored(texts[::-1])
    assert again == first[::-1] and len(computed) == 2  # nothing computed the second time
    os.utime(model, ns=(model.stat().st_atime_ns, model.stat().st_mtime_ns + 10**9))
    stored_embedder().embed_stored(["why warm up"])
    assert computed[-1] == "why warm up" and len(computed) == 3

    monkeypatch.setattr(module, "VECTOR_FILE_ROWS", 4)
    stored_embedder().embed_stored([f"text {i}" for i in range(6)])
    kept = VectorFile.beside(model).get([f"text {i}" for i in range(6)] + ["why warm up"])
    assert len(kept) <= 4 and "text 5" in kept

    model.with_name(module.VECTOR_FILE).write_bytes(b"not a database" * 100)
    with caplog.at_level(logging.WARNING, logger="coach.embedder"):
        vectors = stored_embedder().embed_stored(["why warm up"])
    assert vectors == [[11.0, 1.0, 2.0]] and any("unusable" in r.getMessage() for r in caplog.records)

    monkeypatch.setenv("COACH_VECTORS", "0")
    assert VectorFile.beside(model) is None


@needs_export
def test_indexed_vectors_from_the_file_are_the_models(embeddings):
    """What `embed_stored` gives (from the file or computed) is the model's vector for the text."""
    texts = ["How does the KV cache speed up decoding?", "what is dropout"]
    stored = np.asarray(embeddings.embed_stored(texts))
    direct = np.asarray(embeddings.embed_documents(texts))
    assert np.allclose(stored, direct, atol=1e-5)


def test_a_servers_warm_up_is_read_back_at_the_next_start(tmp_path):
    """Sentences warmed once are in the vector file: the next process's warm-up computes none of them,
    and `embed_sentences` then serves them from memory."""
    from coach.embedder import CachedEmbeddings, VectorFile

    model, computed = fake_export(tmp_path)
    sentences = ["Dropout zeroes units at random.", "It is off at inference.", "Dropout zeroes units at random."]
    CachedEmbeddings(Counting(computed), VectorFile.beside(model)).warm_sentences(sentences)
    assert computed == sentences[:2]
    restarted = CachedEmbeddings(Counting(computed), VectorFile.beside(model))
    restarted.warm_sentences(sentences)
    vectors = restarted.embed_sentences(sentences[:2])
    assert len(computed) == 2 and [v.tolist() for v in vectors] == [[31.0, 1.0, 2.0], [23.0, 1.0, 2.0]]


def test_a_cold_process_reads_warmed_sentences_from_the_file_and_stores_no_others(tmp_path):
    """A terminal `ask` never warms up: the evidence sentences a server once warmed come from the vector
    file; a sentence it never held (a model's, a user's) is computed and not written to it."""
    from coach.embedder import CachedEmbeddings, VectorFile

    model, computed = fake_export(tmp_path)
    warmed = ["Dropout zeroes units at random.", "It is off at inference."]
    CachedEmbeddings(Counting(computed), VectorFile.beside(model)).warm_sentences(warmed)
    cold = CachedEmbeddings(Counting(computed), VectorFile.beside(model))
    vectors = cold.embed_sentences([*warmed, "The model wrote this."])
    assert computed == [*warmed, "The model wrote this."], "only the new sentence was computed again"
    assert [v.tolist() for v in vectors] == [[31.0, 1.0, 2.0], [23.0, 1.0, 2.0], [21.0, 1.0, 2.0]]
    assert VectorFile.beside(model).get(["The model wrote this."]) == {}


@needs_export
def test_a_server_embeds_long_texts_in_smaller_batches_to_the_same_vectors(embeddings, monkeypatch):
    """Without the arena (a server), a forward pass holds at most SERVER_BATCH_WORD_PIECES padded word
    pieces, so long texts go a few at a time; their vectors are those of the usual batches of 32."""
    from coach import embedder as module
    from coach.bank import load_bank
    from conftest import ROOT

    model = embeddings.inner
    texts = [entry.answer for entry in load_bank(ROOT / "corpus")][:48] + ["what is dropout"] * 8
    usual = model.vectors(texts)  # (56, 384)
    monkeypatch.setitem(module._ARENA, "on", False)
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    batches = list(model._batches(texts, order))
    pieces = [len(batch) * max(sum(e.attention_mask) for e in model.tokenizer.encode_batch([texts[i] for i in batch]))
              for batch in batches]
    assert sorted(i for batch in batches for i in batch) == list(range(len(texts)))
    assert max(pieces) <= module.SERVER_BATCH_WORD_PIECES and len(batches) > len(texts) // module.BATCH + 1
    served = model.vectors(texts)
    assert np.min(np.sum(usual * served, axis=1)) >= 0.99999


def test_a_sentence_evicted_by_another_thread_meanwhile_is_still_returned():
    """The sentence cache is shared by the server's threads (the grader's warm-up, answers): a vector found
    cached must be returned even when another caller evicts it while the missing ones are computed
    (CI once saw a KeyError in the grader's warm-up thread)."""
    from coach.embedder import CachedEmbeddings

    class Inner:
        def embed_documents(self, texts):
            if "b" in texts:  # another caller fills the cache while "b" is being computed
                cache.embed_sentences([f"other {n}" for n in range(cache.SENTENCES + 1)])
            return [[float(len(t)), 1.0] for t in texts]

    cache = CachedEmbeddings(Inner())
    cache.SENTENCES = 4
    cache.embed_sentences(["a"])
    vectors = cache.embed_sentences(["a", "b", "a"])
    assert [v.tolist() for v in vectors] == [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
