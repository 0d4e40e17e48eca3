"""Hybrid retrieval on the real bank: quality floors on the gold set, filters, de-duplication, scores."""
from __future__ import annotations

import pytest

from conftest import ROOT
from evals import datasets
from evals.retrieval import evaluate

GOLD = datasets.load_jsonl(datasets.GOLD)
OUT_OF_SCOPE = datasets.load_jsonl(datasets.OUT_OF_SCOPE)


def test_gold_set_is_big_and_varied_and_points_at_real_questions():
    from coach.bank import load_bank

    ids = {e.id for e in load_bank(ROOT / "corpus")}
    titles = {e.id: e.question.lower() for e in load_bank(ROOT / "corpus")}
    assert len(GOLD) >= 60
    assert {item["style"] for item in GOLD} >= {"paraphrase", "terse", "misspelled", "follow-up", "scenario"}
    for item in GOLD:
        assert item["expected"] and set(item["expected"]) <= ids, item
        assert item["query"].lower() != titles[item["expected"][0]]  # users do not type the titles


@pytest.fixture(scope="module")
def scores(retriever):
    return {mode: evaluate(retriever, GOLD, mode) for mode in ("hybrid", "dense", "bm25")}


def test_hybrid_quality_floors(scores):
    hybrid = scores["hybrid"]
    # Floors sit a few points under the measured figures (hit@5 0.981, MRR 0.900, hit@1 0.838 on
    # 160 queries; see evals/README.md), so a real regression fails while a reworded answer does not.
    assert hybrid["hit@5"] >= 0.94
    assert hybrid["mrr"] >= 0.86
    assert hybrid["hit@1"] >= 0.80


def test_hybrid_is_at_least_as_good_as_either_retriever_alone(scores):
    for single in ("dense", "bm25"):
        assert scores["hybrid"]["hit@5"] >= scores[single]["hit@5"] - 0.02
        assert scores["hybrid"]["mrr"] >= scores[single]["mrr"] - 0.03


def test_filters_apply(retriever):
    hits = retriever.search("how does attention work", k=8, part=2, difficulty="hard")
    assert hits and all(h.metadata["part"] == 2 and h.metadata["difficulty"] == "hard" for h in hits)
    hits = retriever.search("how to stop overfitting", k=5, topic="dropout")
    assert hits and all(h.metadata["topic"] == "dropout" for h in hits)
    assert retriever.search("how to stop overfitting", topic="no such topic") == []


def test_one_result_per_question(retriever):
    hits = retriever.search("transformer self attention multi head scaled dot product", k=10)
    keys = [(h.metadata["source"], h.metadata["qid"]) for h in hits]
    assert len(keys) == len(set(keys)) == 10
    assert [h.rank for h in hits] == list(range(1, 11))


def test_calibrated_score_separates_in_scope_from_out_of_scope(retriever):
    """The answer step refuses below the threshold: most in-scope questions clear it, most others do not."""
    threshold = retriever.calibration.threshold
    inside = [retriever.search(item["query"], k=1)[0].score for item in GOLD]
    outside = [(retriever.search(item["query"], k=1) or [None])[0] for item in OUT_OF_SCOPE]
    outside = [hit.score if hit else 0.0 for hit in outside]
    assert all(0.0 <= s <= 1.0 for s in inside + outside)
    assert sum(s >= threshold for s in inside) / len(inside) >= 0.85
    assert sum(s < threshold for s in outside) / len(outside) >= 0.85


def test_near_domain_sets_are_varied_and_point_at_real_entries():
    """Our near-domain sets (issue 16): every topic group well filled, the in-scope side labelled with
    entries that exist, and no question on both sides."""
    from coach.bank import load_bank

    ids = {e.id for e in load_bank(ROOT / "corpus")}
    outside, inside = datasets.load_jsonl(datasets.OUT_OF_SCOPE_NEAR), datasets.load_jsonl(datasets.IN_SCOPE_NEAR)
    assert len(outside) >= 120 and len(inside) >= 40
    topics = [row["topic"] for row in outside]
    assert all(topics.count(topic) >= 15 for topic in set(topics)) and len(set(topics)) == 6
    assert all({row["bank_id"], *row["alt_ids"]} <= ids for row in inside)
    assert not {row["query"] for row in outside} & {row["query"] for row in inside}


def test_calibration_on_the_near_domain_sets(retriever):
    """Not fitted on these sets (the refit was not adopted, evals/README.md): a floor under what the
    committed calibration does on them, 87.8% of the near-domain questions refused, all in-scope answered."""
    threshold = retriever.calibration.threshold
    outside = [(retriever.search(row["query"], k=1) or [None])[0]
               for row in datasets.load_jsonl(datasets.OUT_OF_SCOPE_NEAR)]
    inside = [retriever.search(row["query"], k=1)[0] for row in datasets.in_scope_near()]
    assert sum(hit is None or hit.score < threshold for hit in outside) / len(outside) >= 0.85
    assert sum(hit.score >= threshold for hit in inside) / len(inside) >= 0.95


def test_deep_learning_topics_the_bank_lacks_are_refused(retriever):
    """Our 33 questions on deep-learning topics no entry covers (sets/out_of_scope_indomain.jsonl: capsule
    networks, NeRF, CTC, PointNet, TensorRT, ...), the kind of gap a second independent set showed the gate
    answering from a neighbour (evals/README.md). Not fitted on: 28 of 33 refused when written; a floor."""
    threshold = retriever.calibration.threshold
    rows = datasets.load_jsonl(datasets.OUT_OF_SCOPE_INDOMAIN)
    answered = [row["query"] for row in rows if (hits := retriever.search(row["query"], k=1)) and hits[0].score >= threshold]
    assert len(rows) == 33 and len(answered) <= 6, answered


def test_every_core_concept_answers_its_own_what_is_question(retriever):
    """Real collections ask the plain "what is X?" a lot, and a terse question matches the key of a narrower
    entry ("what are paged optimizers?") better than the general one. Our 49 probes, one per core concept
    (sets/concept_probes.jsonl): the owning entry first and answered for 48 (evals/README.md, "Every core
    concept answers its own"); written and fixed together, so this guards against a regression, no more."""
    threshold = retriever.calibration.threshold
    probes = datasets.load_jsonl(datasets.CONCEPT_PROBES)
    missed = [row["query"] for row in probes
              if not (hits := retriever.search(row["query"], k=1)) or hits[0].score < threshold
              or hits[0].metadata.get("qid") not in {row["bank_id"], *row["alt_ids"]}]
    assert len(probes) == 49 and len(missed) <= 2, missed


def test_langchain_retriever_interface(retriever):
    docs = retriever.as_langchain().invoke("what is the reparameterization trick")
    assert len(docs) == retriever.k
    assert docs[0].metadata["qid"] == "p2-reparameterization-trick"
    assert {"chunk_id", "score", "source", "question"} <= set(docs[0].metadata)


def test_chroma_never_uses_its_default_embedding_function(corpus_index):
    assert corpus_index.collection._embedding_function is None
    assert corpus_index.collection.configuration.get("embedding_function") is None


# --- the real-question dev set (read from ../shared; never copied here) ---------------------------
REAL_HELDOUT = datasets.real_gold("heldout")
needs_dev_set = pytest.mark.skipif(not REAL_HELDOUT, reason="the real-question dev set (../shared) is absent")


@needs_dev_set
def test_real_questions_held_out_floors(retriever):
    """Issue 16's targets on the half nothing was tuned on: the default mode (hybrid + rerank) finds an
    entry that answers the question first in 85% of covered questions and among five in 97%."""
    result = evaluate(retriever, REAL_HELDOUT, retriever.mode)
    assert result["n"] == len(REAL_HELDOUT) >= 60
    assert result["hit@1"] >= 0.85, result
    assert result["hit@5"] >= 0.97, result


def test_default_mode_keeps_the_gold_set_where_the_smaller_bank_had_it(retriever):
    """The bank doubled (more near neighbours) yet the authors' gold set must not get worse than with
    166 entries: hybrid hit@1 0.838, hit@5 0.981 then (evals/README.md). Met since misspelt words are
    respelt: 134 of 160 (hit@5 158), so one query lost fails here."""
    result = evaluate(retriever, GOLD, retriever.mode)
    assert result["hit@1"] >= 134 / 160, result  # 0.838 rounded
    assert result["hit@5"] >= 0.981, result


def test_question_keys_are_retrieval_handles_never_passages(retriever, corpus_index):
    """Every entry's heading and asked_as phrasings are keys in their own collection: they rank their
    entry (a query equal to a key has cosine 1 with it) but are never a result's text, a chunk, part of
    a section's text or of the Library's counts."""
    from coach.bank import load_bank
    from ingest.uploads import sources

    bank = load_bank(ROOT / "corpus")
    keys = corpus_index.key_metadatas()
    per_entry = {}
    for meta in keys.values():
        per_entry[meta["qid"]] = per_entry.get(meta["qid"], 0) + 1
    for entry in bank:
        assert per_entry.get(entry.id) == len({text.lower() for text in (entry.question, *entry.asked_as)})
    chunks = corpus_index.metadatas()
    assert not set(keys) & set(chunks) and not any(meta.get("role") for meta in chunks.values())
    assert sum(row["chunks"] for row in sources(corpus_index)) == corpus_index.count() == len(chunks)
    for entry in bank[::20]:
        phrasing = entry.asked_as[0]
        hits = retriever.search(phrasing, k=5)
        mine = [hit for hit in hits if hit.metadata["qid"] == entry.id]
        assert mine and mine[0].key_dense > 0.99, (entry.id, [h.metadata["qid"] for h in hits])
        section = corpus_index.section_text(mine[0].metadata["source"], entry.id)
        for hit in hits:
            assert hit.chunk_id in chunks and hit.text not in {phrasing, *entry.asked_as}
        assert not [text for text in entry.asked_as if text in section and text not in entry.answer]


def test_styled_unicode_queries_read_as_text(retriever):
    """NFKC before embedding and BM25: mathematical bold, fullwidth letters and zero-width spaces."""
    from coach.retrieval import normalise_query

    plain = "why does batch normalization help training"
    bold = "".join(chr(0x1D41A + ord(c) - ord("a")) if "a" <= c <= "z" else c for c in plain)
    fullwidth = "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" else c for c in plain)
    assert bold != plain and normalise_query(bold) == plain == normalise_query(fullwidth)
    assert normalise_query("drop\u200bout  rate") == "dropout rate"
    expected = [hit.metadata["qid"] for hit in retriever.search(plain)]
    for styled in (bold, fullwidth):
        assert [hit.metadata["qid"] for hit in retriever.search(styled)] == expected


def test_every_mode_returns_one_result_per_question(retriever):
    from coach.retrieval import MODES

    for mode in MODES:
        hits = retriever.search("how do transformers use attention", k=8, mode=mode)
        keys = [(h.metadata["source"], h.metadata["qid"]) for h in hits]
        assert len(keys) == len(set(keys)) == 8 and [h.rank for h in hits] == list(range(1, 9)), mode


def test_a_question_defining_a_concept_the_bank_never_names_scores_zero(retriever):
    """coach.concepts: a full name with its abbreviation that no passage or key names is not covered,
    however close the nearest entry's wording; a defined concept the bank does name is unaffected."""
    hits = retriever.search("Where are conditional random fields (CRFs) used in sequence labelling?", k=3)
    assert hits and all(h.score == 0.0 and h.absent_concept == "conditional random fields (CRFs)" for h in hits)
    hits = retriever.search("How does a variational autoencoder (VAE) learn its latent space?", k=3)
    assert hits[0].absent_concept is None and retriever.passes(hits[0])


def test_a_library_is_found_without_chroma_filters_as_with_them(fresh_settings, monkeypatch):
    """`_dense` takes a library's nearest items from unfiltered Chroma searches that fetch more (its
    filters cost 20-300 ms at 100k chunks). Its answer is the filtered search's: only that library's
    items, as many as asked for, nearly the same ids (Chroma's index is approximate), also when the
    library is so rare among the nearest items that it must fall back to the filter."""
    import numpy as np

    from coach import retrieval
    from coach.retrieval import _dense, _kind, _nearest
    from coach.store import Store

    filters_asked = []
    monkeypatch.setattr(retrieval, "_nearest", lambda collection, vector, n, where:
                        filters_asked.append(where) or _nearest(collection, vector, n, where))

    rng = np.random.default_rng(0)
    store = Store(fresh_settings)
    centres = rng.normal(size=(20, 16))
    vectors = centres[rng.integers(20, size=1200)] + rng.normal(0, 0.3, size=(1200, 16))
    vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
    bank = rng.random(1200) < 0.03  # 3% of the items are the bank's, the rest uploads
    metadatas = [{"kind": "bank" if is_bank else "upload", "source": f"s{n}", "qid": f"q{n}", "part": n % 2}
                 for n, is_bank in enumerate(bank)]
    ids = [f"c{n}" for n in range(1200)]
    store.collection.add(ids=ids, embeddings=vectors, documents=[f"note {n}" for n in ids], metadatas=metadatas)
    index = store.sync_bm25()
    for query in vectors[:40] + rng.normal(0, 0.1, size=(40, 16)):
        for library, where in (("bank", {}), ("docs", {}), ("docs", {"part": 1})):
            got = _dense(store.collection, index, list(query), where, library, 10, {})
            want = _nearest(store.collection, list(query), 10, where | {"kind": _kind(library)})
            assert len(got) == len(want) == 10
            assert {index.field(item_id, "library") for item_id in got} == {library}
            assert len(set(got) & set(want)) >= 9, (library, where)
    libraries_filtered = [where["kind"] for where in filters_asked if "kind" in where and "part" not in where]
    assert 0 < libraries_filtered.count("bank") < 80  # the rare library fell back to the filter, not always


def test_evidence_from_vectors_in_memory_equals_evidence_read_from_chroma(retriever, monkeypatch):
    """The candidates' chunk vectors come from memory (Store.chunk_vectors), not from Chroma with their
    texts; every hit, every evidence figure to the last bit, is what reading them from Chroma gives. The
    dense chunk ranking comes from Chroma both times here (no library counts as small), so only the
    evidence's source differs; the exact search of a small library has tests of its own below."""
    from coach import retrieval
    from coach import store as store_module

    monkeypatch.setattr(retrieval, "SMALL_LIBRARY_MAX", 0)
    monkeypatch.setattr(store_module, "SMALL_LIBRARY_MAX", 0)
    store = retriever.store
    assert store.chunk_vectors() is not None  # nobody is writing: the vectors in memory are used
    queries = [item["query"] for item in GOLD[::8]]
    from_memory = [[hit.__dict__.copy() for hit in retriever.search(query, k=8)] for query in queries]
    monkeypatch.setattr(store, "chunk_vectors", lambda: None)  # as while a writer has withdrawn the fingerprint
    from_chroma = [[hit.__dict__.copy() for hit in retriever.search(query, k=8)] for query in queries]
    assert from_memory == from_chroma and all(len(hits) == 8 for hits in from_memory)


def test_a_small_library_is_shown_from_memory_as_chroma_holds_it(retriever, monkeypatch):
    """The bank (a small library) is searched, scored and shown from memory: a search in it asks Chroma
    for no chunk, and every hit's text, metadata and evidence are what Chroma's own rows give."""
    import numpy as np

    from coach.retrieval import _read_evidence

    store = retriever.store
    queries = [item["query"] for item in GOLD[::8]]
    retriever.search(queries[0])  # the first search of a process reads the bank's rows into memory once
    asked = []
    collection = store.collection
    for method in ("get", "query"):
        real = getattr(collection, method)
        monkeypatch.setattr(collection, method, lambda *a, _real=real, _m=method, **kw: asked.append(_m) or _real(*a, **kw))
    results = {query: retriever.search(query, k=8) for query in queries}
    assert asked == []
    monkeypatch.undo()
    for query, hits in results.items():
        assert len(hits) == 8
        vector = np.asarray(store.embeddings.embed_query(retriever.searched_query(query)), dtype=np.float32)
        for hit in hits:
            got = collection.get(ids=[hit.chunk_id], include=["documents", "metadatas"])
            assert (hit.text, hit.metadata) == (got["documents"][0], got["metadatas"][0])
            section = (hit.metadata["source"], hit.metadata["qid"])
            evidence, _ = _read_evidence(collection, store.bm25(), [section], retriever.searched_query(query), vector)
            _, cosines, bm25 = evidence[section]
            assert (hit.dense, hit.bm25) == (max(cosines), max(bm25))


def test_the_chunks_a_small_library_ranks_are_the_exact_nearest(corpus_index):
    """A small library's dense chunk ranking (and a filtered part of the whole collection that is small)
    is an exact search over the vectors in memory: its n chunks are those of the library and filters with
    the n highest cosines, checked against every chunk's vector and metadata as Chroma stores them."""
    import numpy as np

    from coach.bm25 import library_of
    from coach.retrieval import HybridRetriever

    retriever = HybridRetriever(store=corpus_index)
    chunk_vectors = corpus_index.chunk_vectors()
    got_all = corpus_index.everything(["embeddings", "metadatas"])
    stored = {item_id: (np.asarray(vector, dtype=np.float64), meta)
              for item_id, vector, meta in zip(got_all["ids"], got_all["embeddings"], got_all["metadatas"], strict=True)}
    for query in [item["query"] for item in GOLD[::20]]:
        vector = np.asarray(corpus_index.embeddings.embed_query(query), dtype=np.float32)
        for where, library in (({}, "bank"), ({"part": 2}, "bank"), ({"difficulty": "hard"}, None)):
            got = retriever._exact_chunks(chunk_vectors, list(vector), where, library, 30)
            allowed = {item_id: float(np.dot(vector, stored_vector)) for item_id, (stored_vector, meta) in stored.items()
                       if all(meta.get(name) == value for name, value in where.items())
                       and library in (None, library_of(meta))}
            want = sorted(allowed, key=allowed.get, reverse=True)[:30]
            assert len(got) == 30 and set(got) <= set(allowed), (query, where)
            assert np.allclose(list(got.values()), [allowed[item_id] for item_id in want], atol=1e-6), (query, where)
            assert [i for i in got if allowed[i] > allowed[want[-1]] + 1e-6] == \
                [i for i in want if allowed[i] > allowed[want[-1]] + 1e-6]  # same order but for near-ties


def test_a_small_library_in_memory_never_shows_what_another_writer_deleted(fresh_settings, monkeypatch):
    """The fingerprint rule for the chunks kept in memory (vectors, texts, metadata): once another process
    has deleted an entry, a search in a process that read the chunks before never returns it, although
    its memory still holds them. That memory is used only while Chroma publishes the fingerprint of the
    index it was read for; the last part shows what it would return without that check."""
    from coach.store import Store

    entries = {"q-adam": ("How does Adam adapt learning rates?", "Adam keeps running averages of gradients and squares."),
               "q-clip": ("Why clip gradients?", "Clipping bounds the update when gradients explode."),
               "q-drop": ("What does dropout do?", "Dropout zeroes random activations while training.")}
    writer = Store(fresh_settings)
    writer.upsert([f"{qid}-0" for qid in entries], [f"{question}\n\n{answer}" for question, answer in entries.values()],
                  [{"source": "bank.md", "kind": "bank", "qid": qid, "question": question, "piece": 0,
                    "content_hash": qid} for qid, (question, _) in entries.items()])
    reader, retriever = _synced_reader(writer, fresh_settings, entries)
    query = "how does adam keep running averages of gradients"

    def qids():
        return [hit.metadata.get("qid") for hit in retriever.search(query, k=3)]

    assert qids()[0] == "q-adam" and reader.library_chunks(reader.chunk_vectors(), "bank") is not None
    stale = reader.bm25().fingerprint
    writer.delete(["q-adam-0"])
    assert "q-adam" not in qids() and len(qids()) == 2
    monkeypatch.setattr(reader, "_published", lambda: {"fingerprint": stale})  # as if the check were skipped
    assert qids()[0] == "q-adam"


def _synced_reader(writer, settings, entries: dict[str, tuple]):
    """Each entry's question (first of its pair) written as its key, the indexes synced, and a second
    process's view: its own store and a retriever over it."""
    from coach.retrieval import HybridRetriever
    from coach.store import Store

    writer.upsert_keys([f"key-{qid}" for qid in entries], [question for question, _ in entries.values()],
                       [{"source": "bank.md", "kind": "bank", "qid": qid, "role": "question"} for qid in entries])
    writer.sync_bm25()
    reader = Store(settings)
    return reader, HybridRetriever(store=reader)


def test_a_chunk_another_writer_deletes_or_rewrites_is_never_evidence(fresh_settings):
    """Another process deletes one piece of an answer, then rewrites the other, then syncs: each search
    counts only the chunks Chroma holds at that moment, the vectors in memory being trusted only while
    Chroma holds what their index was built from (the published fingerprint)."""
    import numpy as np

    from coach.retrieval import HybridRetriever, _cosines
    from coach.store import Store

    answers = {"q-dropout": ("What does dropout do?", ["Dropout zeroes random activations while training a network.",
                                                       "At test time every unit is kept and activations are rescaled."]),
               "q-adam": ("How does Adam adapt learning rates?", ["Adam keeps running averages of gradients.",
                                                                 "Their ratio sets each weight's step size."]),
               "q-clip": ("Why clip gradients?", ["Clipping bounds the update when gradients explode.",
                                                   "The norm of the whole gradient is capped."])}
    writer = Store(fresh_settings)
    chunks = [(f"{qid}-{n}", f"{question}\n\n{piece}", {"source": "bank.md", "kind": "bank", "qid": qid,
                                                        "question": question, "piece": n, "content_hash": f"{qid}{n}"})
              for qid, (question, pieces) in answers.items() for n, piece in enumerate(pieces)]
    writer.upsert(*map(list, zip(*chunks, strict=True)))
    reader, retriever = _synced_reader(writer, fresh_settings, answers)
    query = "why is dropout zeroing random activations in training"
    vector = np.asarray(reader.embeddings.embed_query(query), dtype=np.float32)

    def best_cosine_in_chroma(qid):
        got = writer.collection.get(where={"qid": qid}, include=["embeddings", "documents"])
        cosines = _cosines(np.asarray(got["embeddings"], dtype=np.float32), vector)  # as the search computes them
        return max(cosines), dict(zip(got["ids"], got["documents"], strict=True))

    def dropout_hit():
        return next(hit for hit in retriever.search(query, k=3) if hit.metadata["qid"] == "q-dropout")

    hit = dropout_hit()
    assert reader.chunk_vectors() is not None and hit.chunk_id == "q-dropout-0"
    assert hit.dense == best_cosine_in_chroma("q-dropout")[0]
    writer.delete(["q-dropout-0"])  # the piece nearest the query; the reader's index still lists it
    hit = dropout_hit()
    assert hit.chunk_id == "q-dropout-1" and hit.dense == best_cosine_in_chroma("q-dropout")[0]
    rewritten = "Dropout zeroes random activations while training, so units cannot co-adapt."
    writer.upsert(["q-dropout-1"], [f"What does dropout do?\n\n{rewritten}"],
                  [{**chunks[1][2], "content_hash": "rewritten"}])
    hit = dropout_hit()
    assert hit.dense == best_cosine_in_chroma("q-dropout")[0] and rewritten in hit.text
    writer.sync_bm25()
    after_sync = HybridRetriever(store=Store(fresh_settings))  # as a process opened after the sync
    hit = next(hit for hit in after_sync.search(query, k=3) if hit.metadata["qid"] == "q-dropout")
    assert after_sync.store.chunk_vectors() is not None and rewritten in hit.text
    assert hit.dense == best_cosine_in_chroma("q-dropout")[0]


def test_the_question_keys_ranked_are_the_exact_nearest_within_the_filters(corpus_index):
    """The key ranking is an exact search over the keys' vectors in memory (Chroma's is approximate): its
    n keys are those of the library and filters with the n highest cosines, checked against every key's
    metadata as Chroma stores it."""
    import numpy as np

    from coach.bm25 import library_of
    from coach.retrieval import _key_nearest

    index, matrix = corpus_index.key_vectors()
    metadatas = corpus_index.key_metadatas()
    for query in [item["query"] for item in GOLD[::40]]:
        vector = np.asarray(corpus_index.embeddings.embed_query(query), dtype=np.float32)
        for where, library in (({}, "bank"), ({"part": 2}, "bank"), ({"difficulty": "hard"}, None)):
            got = _key_nearest(index, matrix, list(vector), where, library, 30)
            allowed = {key_id: float(np.dot(vector, matrix[index.position[key_id]]))
                       for key_id, meta in metadatas.items()
                       if all(meta.get(name) == value for name, value in where.items())
                       and library in (None, library_of(meta))}
            want = sorted(allowed, key=allowed.get, reverse=True)[:30]
            assert len(got) == 30 and set(got) <= set(allowed), (query, where)
            assert np.allclose(list(got.values()), [allowed[key_id] for key_id in want], atol=1e-6), (query, where)


def test_bm25_scores_of_candidates_are_bm25s_scores(corpus_index):
    """Bm25Index.scores sums only the asked items' term scores; each is bm25s's own get_scores value,
    float32 for float32, for every chunk and key (an id the index has not seen scores 0)."""
    for index in (corpus_index.bm25(), corpus_index.key_bm25()):
        assert index._postings_sorted()
        for query in [item["query"] for item in GOLD[::10]] + ["dropout dropout", "the of a", "paramter"]:
            tokens = index.terms(query)
            every = index.model.get_scores(tokens) if tokens else [0.0] * len(index.ids)
            assert index.scores(query, [*index.ids, "unknown"]) == [float(score) for score in every] + [0.0]


def test_a_misspelt_word_is_read_as_the_indexed_term_and_a_real_word_is_left_alone():
    """BM25 reads "paramter" and "chinchila" as the terms the texts hold (one edit each), while a word
    English uses ("posteriori", one edit from "posterior"), a short one ("lable") and one with no near
    term ("kubernetes") keep their own spelling and match nothing the index lacks."""
    from coach.bm25 import Bm25Index

    texts = ["the parameter count of a model", "Chinchilla scaling laws for compute",
             "the posterior combines prior and likelihood", "label smoothing softens the targets"]
    index = Bm25Index.build([f"c{i}" for i in range(4)], texts, [{"kind": "bank"}] * 4, "test")
    assert [chunk for chunk, _ in index.search("paramter", k=2)] == ["c0"]
    assert [chunk for chunk, _ in index.search("chinchila laws", k=2)] == ["c1"]
    assert index.terms("chinchila laws") == index.terms("chinchilla laws")
    for word in ("posteriori", "lable", "kubernetes"):
        assert index.search(word, k=2) == [], word


def test_compounds_are_spelt_as_the_indexed_texts_spell_them(tmp_path):
    """A closed word the texts hyphenate is hyphenated, two words the texts write as one are joined when
    one of them is not indexed, words both indexed stay apart, and the spelling survives a save and load."""
    from coach.bm25 import Bm25Index

    texts = ["a feed-forward block follows attention", "tune the hyperparameters on a validation set",
             "fine-tuning starts from a pretrained model", "the data set is split", "pick an output format"]
    index = Bm25Index.build([f"c{i}" for i in range(5)], texts, [{"kind": "bank"}] * 5, "test")
    assert index.compounds_respelt("what does the Feedforward layer do") == "what does the feed-forward layer do"
    assert index.compounds_respelt("how to choose hyper parameters?") == "how to choose hyperparameters?"
    assert index.compounds_respelt("when is fine tuning worth it") == "when is fine tuning worth it"
    assert index.compounds_respelt("for mat the data set") == "for mat the data set"  # "for" is a stop word
    index.save(tmp_path / "bm25")
    loaded = Bm25Index.load(tmp_path / "bm25")
    assert loaded.compounds == index.compounds and loaded.compounds["feedforward"] == "feed-forward"


def test_a_compound_written_apart_or_together_finds_its_entry(retriever):
    """The bank writes "hyperparameters" and "feed-forward"; asked the other way, the same entries answer."""
    threshold = retriever.calibration.threshold
    apart = retriever.search("what do you mean by hyper parameters in training a net?", k=1)[0]
    assert apart.metadata["qid"] == "p5-hyperparameter-search" and apart.score >= threshold
    together = retriever.search("what is the Feedforward sublayer inside a transformer block?", k=1)[0]
    joined = retriever.search("what is the feed-forward sublayer inside a transformer block?", k=1)[0]
    assert together.metadata["qid"] == joined.metadata["qid"] == "p2-transformer-block"
