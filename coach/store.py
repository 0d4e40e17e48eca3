"""The index: a Chroma collection of embedded chunks, plus a BM25 index derived from it.

Chroma is the source of truth. The BM25 index is rebuilt from Chroma's contents whenever its
fingerprint (the chunk ids and content hashes it was built from) no longer matches, so a crash between
the two writes heals itself on the next open. The last completed sync publishes the fingerprints in the
collection's metadata and every write through the Store withdraws them first, so a process that opens
an index nobody is writing trusts its saved BM25 indexes without reading every chunk's metadata (0.75 s
of a cold `app.py search` on the bank) and one that opens after a crashed write rebuilds them.

Beside the chunks lives a second, smaller collection of **question keys** (`<collection>_keys`, with
its own BM25 index): each section's heading question and, for bank entries, the `asked_as` phrasings
interviewers use. A key is a retrieval handle that maps to its section, never text to show, so keeping
it in a collection of its own keeps it out of everything that reads passages (section texts, the
Library's counts, the answer's passages) without a filter in each of them. Keys whose section has no
chunks left are pruned whenever the BM25 indexes are synced, so deleting a source's chunks is enough. Embeddings always come from our packaged
sentence-transformers model; Chroma's own default embedding function (an ONNX download) is never used.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from functools import cache, cached_property

from coach.bm25 import Bm25Index
from coach.config import Settings, get_settings
from coach.embedder import LazyEmbeddings

log = logging.getLogger(__name__)
KEYS_SUFFIX = "_keys"  # the question keys' collection and BM25 folder: `coach_keys`, `bm25_keys`
# A library of at most this many chunks keeps them in memory (LibraryChunks), and a search among at most
# this many chunks (a small library, or a filtered part of a large one) is exact, over their vectors in
# memory, not a Chroma query. Measured on the loaded 2-core machine (benchmarks/README.md, fifth pass):
# the exact products take 0.06 ms for 1,000 rows, 0.27 ms for 5,000 and 1.1 ms for 10,000 from a kept
# contiguous copy (1, 12 ms when gathered from the full matrix), where Chroma's query at 100k chunks takes
# 1.3 ms for 30 nearest, 3.2 ms for 120, 7.5 ms for 480 and 52 ms filtered on the bank's `kind`. 5,000
# rows are 7.7 MB of vectors; the bank's 1,039 chunks 1.6 MB, and 1.2 MB of texts and metadata.
SMALL_LIBRARY_MAX = 5000


@dataclass(frozen=True)
class LibraryChunks:
    """A small library's chunks in memory, as the chunk index they were read for lists them: their rows
    in that index (ascending), their vectors as one contiguous (rows, dim) matrix in that order, and
    {chunk id: (text, metadata)} for those Chroma held when they were read."""
    rows: object
    vectors: object
    texts: dict[str, tuple[str, dict]]


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
        self._bm25 = self._key_bm25 = self._keys = None
        # folder -> (the index they match, their matrix), ("library", name) -> (the index, LibraryChunks):
        # see key_vectors, chunk_vectors, library_chunks
        self._vectors = {}
        self._checked_at = 0.0
        # The collection exactly as langchain-chroma creates it (no embedding function: Chroma's default
        # would download a model). Writes and searches use it directly: the LangChain wrapper below
        # imports langchain-core, about half the start-up of a short command, and only the benchmark's
        # baseline search uses it.
        self._collection = self._open(self.settings.collection)

    def _open(self, name: str):
        return self.client.get_or_create_collection(name=name, embedding_function=None, metadata=self._metadata,
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
                      embedding_function=self.embeddings,
                      collection_metadata=self._metadata, collection_configuration=self._configuration)

    @cached_property
    def embeddings(self):
        """The embedding model the stored vectors come from (coach.embedder), with its caches. Searching
        needs only this, not the LangChain wrapper above (whose import costs a short command ~0.3 s)."""
        return LazyEmbeddings(self.settings.embedder)

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
        return dict(zip(got["ids"], got["metadatas"], strict=True))

    def everything(self, include: list[str]) -> dict[str, list]:
        """Every chunk's id and the fields asked for (paged)."""
        return _paged(self.collection, include)

    def chunk_metadata(self, chunk_id: str) -> dict:
        """One chunk's metadata (source, qid, part, topic, ...), or {} for a chunk no longer indexed."""
        got = self.collection.get(ids=[chunk_id], include=["metadatas"])
        return dict(got["metadatas"][0] or {}) if got["metadatas"] else {}

    def section_text(self, source: str, qid: str) -> str | None:
        """A whole bank answer: the question once, then every piece of its answer in order."""
        got = self.collection.get(where={"$and": [{"source": source}, {"qid": qid}]},
                                  include=["documents", "metadatas"])
        if not got["ids"]:
            return None
        pieces = sorted(zip(got["metadatas"], got["documents"], strict=True), key=lambda pair: pair[0].get("piece") or 0)
        question = pieces[0][0].get("question") or ""
        bodies = [text[len(question):].strip() if question and text.startswith(question) else text
                  for _, text in pieces]
        return "\n\n".join([question, *bodies]) if question else "\n\n".join(bodies)

    def upsert(self, ids: list[str], texts: list[str], metadatas: list[dict], vectors=None) -> None:
        """What langchain-chroma's `add_texts` did with ids given, without importing it (~1 s of an
        ingest), and with vectors of unchanged texts read from the embedder's vector file; `vectors`
        (the texts' embeddings, in order) when the caller has them."""
        self._upsert(self.collection, ids, texts, metadatas, vectors)

    # --- question keys ----------------------------------------------------------------------
    @property
    def keys(self):
        """The collection of question keys (headings and `asked_as` phrasings), created on first use."""
        if self._keys is None:
            self._keys = self._open(self.settings.collection + KEYS_SUFFIX)
        return self._keys

    def key_metadatas(self) -> dict[str, dict]:
        """key id -> metadata for every question key."""
        got = _paged(self.keys, ["metadatas"])
        return dict(zip(got["ids"], got["metadatas"], strict=True))

    def upsert_keys(self, ids: list[str], texts: list[str], metadatas: list[dict], vectors=None) -> None:
        """Add or replace question keys; `vectors` (their embeddings, in order) when the caller has them."""
        self._upsert(self.keys, ids, texts, metadatas, vectors)

    def _upsert(self, collection, ids: list[str], texts: list[str], metadatas: list[dict], vectors) -> None:
        """Every write of chunks or keys: embed unless given the vectors, withdraw the published
        fingerprints, then upsert."""
        vectors = self.embeddings.embed_stored(texts) if vectors is None else vectors
        self._withdraw_fingerprint()
        collection.upsert(ids=ids, embeddings=vectors, documents=texts, metadatas=metadatas)

    def delete_keys(self, ids: list[str]) -> None:
        self._withdraw_fingerprint()
        for start in range(0, len(ids), 5000):
            self.keys.delete(ids=ids[start:start + 5000])

    def _prune_orphan_keys(self, chunk_metadatas: dict[str, dict],
                           key_metadatas: dict[str, dict] | None = None) -> dict[str, dict]:
        """Delete the keys whose section is gone; the metadata of those that remain."""
        live = {(m.get("source"), m.get("qid")) for m in chunk_metadatas.values()}
        key_metadatas = self.key_metadatas() if key_metadatas is None else key_metadatas
        orphans = {key_id for key_id, m in key_metadatas.items() if (m.get("source"), m.get("qid")) not in live}
        if orphans:
            self.delete_keys(sorted(orphans))
        return {key_id: m for key_id, m in key_metadatas.items() if key_id not in orphans}

    def delete(self, ids: list[str]) -> None:
        self._withdraw_fingerprint()
        for start in range(0, len(ids), 5000):
            self.collection.delete(ids=ids[start:start + 5000])

    def reset(self) -> None:
        """Drop every chunk and the BM25 index (for --rebuild)."""
        # Absent already is fine (Chroma's error type for that differs across versions).
        for name in (self.settings.collection, self.settings.collection + KEYS_SUFFIX):
            with contextlib.suppress(Exception):
                self.client.delete_collection(name)
        self._collection = self._open(self.settings.collection)
        self.__dict__.pop("vectors", None)  # a LangChain wrapper built before holds the dropped collection
        self._keys = None
        for folder in (self.settings.bm25_dir, self.key_bm25_dir):
            shutil.rmtree(folder, ignore_errors=True)
        self._bm25 = self._key_bm25 = None

    # --- BM25 -------------------------------------------------------------------------------
    def fingerprint(self, metadatas: dict[str, dict] | None = None) -> str:
        metadatas = self.metadatas() if metadatas is None else metadatas
        digest = hashlib.sha1()
        for chunk_id in sorted(metadatas):
            digest.update(f"{chunk_id}:{metadatas[chunk_id].get('content_hash')}\n".encode())
        return digest.hexdigest()

    @property
    def key_bm25_dir(self):
        return self.settings.bm25_dir.with_name(self.settings.bm25_dir.name + KEYS_SUFFIX)

    def bm25(self) -> Bm25Index:
        """The BM25 index matching Chroma's current contents.

        Another process (an ingest job, another replica's upload) may change the collection; its
        metadata carries the fingerprint of the last completed sync, checked at most once a second. While
        a writer has withdrawn it (an ingest under way) an index already loaded is kept until it is back.
        """
        with self._lock:
            now = time.monotonic()
            if self._bm25 is None or self._key_bm25 is None:
                if not self._load_published():
                    self.sync_bm25()
            elif now - self._checked_at > 1.0:
                published = self._published()
                if published.get("fingerprint") not in (None, self._bm25.fingerprint):
                    self.sync_bm25()
            self._checked_at = now
            return self._bm25

    def _load_published(self) -> bool:
        """Load the saved BM25 indexes if they are the ones the last completed sync published and the
        collection still holds as many chunks; False when a full sync is needed."""
        published = self._published()
        if not published.get("fingerprint") or not published.get("key_fingerprint"):
            return False
        chunks, keys = Bm25Index.load(self.settings.bm25_dir), Bm25Index.load(self.key_bm25_dir)
        if (chunks is None or keys is None or chunks.fingerprint != published["fingerprint"]
                or keys.fingerprint != published["key_fingerprint"] or len(chunks.ids) != self.count()):
            return False
        self._bm25, self._key_bm25 = chunks, keys
        return True

    def key_bm25(self) -> Bm25Index:
        """The BM25 index over the question keys, synced together with the chunks' index."""
        self.bm25()
        return self._key_bm25

    def key_vectors(self) -> tuple[Bm25Index, object]:
        """The key index and every question key's stored vector, a (keys, 384) float32 matrix in that
        index's row order (a pair, so a sync in between never misaligns them), kept in memory until the
        keys change. Scoring a candidate entry reads the vectors of all its keys
        (about 8 each, 20 candidates): fetched from Chroma that cost 17 ms a search, by id or by filter
        (benchmarks/README.md). The bank's 2,649 keys take 4 MB. The matrix is also saved beside the key
        index, named by its fingerprint: reading it back from Chroma was 0.2 s of a cold `app.py search`."""
        return self._stored_vectors(self.key_bm25(), self.keys, self.key_bm25_dir)

    def chunk_vectors(self) -> tuple[Bm25Index, object] | None:
        """The chunk index and every chunk's stored vector, a (chunks, 384) float32 matrix in that index's
        row order, or None while Chroma may hold other chunks than that index: a writer withdraws the published
        fingerprint before it writes, and it is read again on every call (one small read), so a caller
        given None reads the chunks from Chroma instead. Scoring a search's 20 candidate entries reads
        all their chunks' vectors: fetched from Chroma with their texts and metadata that was 4-14 ms a
        search at 100k chunks (benchmarks/README.md). Saved beside the chunk index like the keys' and
        mapped from that file, so only the pages read count in the process's memory: 1.6 MB for the
        bank's 1,039 chunks; at 100k, 154 MB of file of which ~100 MB were resident after 80 queries (the
        kernel maps neighbouring pages too; page cache, not heap). The first search after an ingest reads
        them from Chroma once and writes the file."""
        index = self.bm25()
        if self._published().get("fingerprint") != index.fingerprint:
            return None
        return self._stored_vectors(index, self.collection, self.settings.bm25_dir, mapped=True)

    def library_chunks(self, chunk_vectors: tuple[Bm25Index, object], library: str) -> LibraryChunks | None:
        """The library's chunks in memory (LibraryChunks) for `chunk_vectors` (what chunk_vectors() gave
        this search: only while Chroma holds what their index was built from), or None for a library of
        more than SMALL_LIBRARY_MAX chunks. Kept until the index changes. Their texts and metadata are
        saved beside the index (`rows-<library>-<fingerprint>.json`), as the vectors are: reading the
        bank's from Chroma takes 0.1-0.4 s, loading the file 3 ms; a search whose shown hits are all
        of such a library asks Chroma for nothing but the freshness check and, for a large library
        searched beside it, its nearest items."""
        import numpy as np

        index, matrix = chunk_vectors
        if not 0 < index.library_size(library) <= SMALL_LIBRARY_MAX:
            return None
        matched, chunks = self._vectors.get(("library", library), (None, None))
        if matched is not index:
            rows = np.flatnonzero(index.mask("library", library))
            ids = [index.ids[row] for row in rows]
            chunks = LibraryChunks(rows, np.ascontiguousarray(matrix[rows]), self._stored_texts(index, library, ids))
            self._vectors[("library", library)] = (index, chunks)
        return chunks

    def _stored_texts(self, index: Bm25Index, library: str, ids: list[str]) -> dict[str, tuple[str, dict]]:
        """{chunk id: (text, metadata)} of `ids` (a library's, in index order): the file saved under the
        index's fingerprint, else read from Chroma and saved when Chroma held every one of them."""
        saved = self.settings.bm25_dir / f"rows-{library}-{index.fingerprint}.json"
        with contextlib.suppress(OSError, ValueError):
            rows = json.loads(saved.read_text())
            if rows["ids"] == ids:
                return dict(zip(ids, map(tuple, rows["rows"]), strict=True))
        got = self.collection.get(ids=ids, include=["documents", "metadatas"])
        texts = dict(zip(got["ids"], zip(got["documents"], got["metadatas"], strict=True), strict=True))
        if len(texts) == len(ids):
            _replace_file(saved, f"rows-{library}-*.json",
                          lambda file: file.write(json.dumps({"ids": ids, "rows": [texts[i] for i in ids]}).encode()))
        return texts

    def _stored_vectors(self, index: Bm25Index, collection, folder, mapped: bool = False) -> tuple[Bm25Index, object]:
        """`index` and the vectors of `collection` in its row order: the copy in memory while the index is
        the same, else the one saved under the index's fingerprint, else read from Chroma and saved."""
        matched, matrix = self._vectors.get(folder, (None, None))
        if matched is not index:
            saved = folder / f"vectors-{index.fingerprint}.npy"
            matrix = _load_matrix(saved, len(index.ids), mapped)
            if matrix is None:
                matrix = _fetch_vectors(collection, index.ids)
                _save_matrix(saved, matrix)
                if mapped:  # from the file just written, so the copy read from Chroma can go
                    reread = _load_matrix(saved, len(index.ids), mapped)
                    matrix = matrix if reread is None else reread
            self._vectors[folder] = (index, matrix)
        return index, matrix

    def _published(self) -> dict:
        """The collection's metadata as stored now (another process may have changed it)."""
        return self.client.get_collection(self.settings.collection).metadata or {}

    def _publish(self, fingerprints: dict[str, str | None]) -> None:
        """Set (or, with None, withdraw) the published fingerprints, keeping the rest of the metadata."""
        current = self._published()
        if all(current.get(name) == value for name, value in fingerprints.items()):
            return
        meta = {k: v for k, v in current.items() if not k.startswith("hnsw:") and k not in fingerprints}
        self.collection.modify(metadata={**meta, **{k: v for k, v in fingerprints.items() if v is not None}})

    def _withdraw_fingerprint(self) -> None:
        """Before any write: until the next sync, nobody may trust the saved BM25 indexes."""
        self._publish({"fingerprint": None, "key_fingerprint": None})

    def sync_bm25(self, chunk_metadatas: dict[str, dict] | None = None,
                  key_metadatas: dict[str, dict] | None = None) -> Bm25Index:
        """Load the saved BM25 indexes (chunks and keys), rebuilding each that does not match Chroma,
        prune keys whose section is gone, and publish the fingerprint. A caller that has just read
        every chunk's and key's metadata (an ingest that changed nothing) passes them, not read twice."""
        chunk_metadatas = self.metadatas() if chunk_metadatas is None else chunk_metadatas
        key_fingerprint = self.fingerprint(self._prune_orphan_keys(chunk_metadatas, key_metadatas))
        self._key_bm25 = _synced_bm25(self.keys, self.key_bm25_dir, key_fingerprint, "question keys")
        # The published fingerprint covers both, so a change to the keys alone is noticed too.
        fingerprint = hashlib.sha1((self.fingerprint(chunk_metadatas) + key_fingerprint).encode()).hexdigest()
        index = _synced_bm25(self.collection, self.settings.bm25_dir, fingerprint, "chunks")
        self._publish({"fingerprint": fingerprint, "key_fingerprint": key_fingerprint})
        self._bm25 = index
        return index


def _synced_bm25(collection, folder, fingerprint: str, what: str) -> Bm25Index:
    """The saved BM25 index of a collection, rebuilt from the collection when its fingerprint differs."""
    index = Bm25Index.load(folder)
    if index is None or index.fingerprint != fingerprint:
        log.info("building the BM25 index of %s from %d items", what, collection.count())
        got = _paged(collection, ["documents", "metadatas"])
        index = Bm25Index.build(got["ids"], got["documents"], got["metadatas"], fingerprint)
        index.save(folder)
    return index


def _fetch_vectors(collection, ids: list[str]):
    """The stored vectors of `ids` read from Chroma, a (len(ids), dim) float32 matrix (zeros for an id it
    no longer holds)."""
    import numpy as np

    got = _paged(collection, ["embeddings"])
    rows = dict(zip(got["ids"], got["embeddings"], strict=True))
    width = len(next(iter(rows.values()))) if rows else 0
    matrix = np.zeros((len(ids), width), dtype=np.float32)  # (items, dim)
    for n, item_id in enumerate(ids):
        if item_id in rows:
            matrix[n] = rows[item_id]
    return matrix


def _load_matrix(path, rows: int, mapped: bool = False):
    """A matrix saved by _save_matrix, or None when absent, unreadable or of another row count. Mapped,
    its pages are read from the file as rows are used (a writer replaces the file, never rewrites it)."""
    import numpy as np

    try:
        matrix = np.load(path, mmap_mode="r" if mapped else None)
    except (OSError, ValueError):
        return None
    if matrix.ndim != 2 or len(matrix) != rows:
        return None
    return np.asarray(matrix)  # a mapped file as a plain array: np.memmap's wrapping costs each row read


def _save_matrix(path, matrix) -> None:
    """Write beside the others, dropping those of older fingerprints (_replace_file)."""
    import numpy as np

    _replace_file(path, "vectors-*.npy", lambda file: np.save(file, matrix))


def _replace_file(path, stale: str, write) -> None:
    """A cache file written by write(binary file), as a temp file swapped in, after removing the files of
    its folder matching `stale` (those of older fingerprints). A folder that cannot be written only
    costs the next process a read from Chroma."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for old in path.parent.glob(stale):
            old.unlink(missing_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as tmp:
            write(tmp)
        os.replace(tmp.name, path)
    except OSError as error:
        log.info("could not save %s: %s", path, error)


def _paged(collection, include: list[str]) -> dict[str, list]:
    """Every item's id and the fields asked for, paged: asked for 100k items at once, Chroma fails
    ("too many SQL variables")."""
    out, offset, page = {"ids": [], **{name: [] for name in include}}, 0, 5000
    while True:
        got = collection.get(include=include, limit=page, offset=offset)
        for name in out:
            out[name].extend(got[name])
        if len(got["ids"]) < page:
            return out
        offset += page


@cache
def open_store(settings: Settings | None = None) -> Store:
    """The process's one Store per configuration, so ingest and search share a fresh BM25 index."""
    return Store(settings or get_settings())
