"""Incremental ingestion: load files, diff their sections against the store, write only what changed.

The diff is always taken against what Chroma actually holds, section by section, so a run killed at
any point (even by SIGKILL) leaves a store that the next run completes: a section whose chunks are
missing, partial or stale is simply written again under the same ids (upsert: never duplicates).
"""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from coach.config import ROOT, Settings, get_settings
from coach.embedder import embedder
from coach.store import Store, open_store
from ingest.chunking import Chunk, chunk_section, question_keys, section_hash, section_key
from ingest.loaders import SUPPORTED, LoadError, read_document
from ingest.sections import Section

EMBED_BATCH = 64
# Chroma writes: one upsert of 1,039 chunks took 1.1 s where 17 of 64 took 2.4 s (the bank, 2 cores), so
# embedded items are written once WRITE_BATCH are waiting, or WRITE_EVERY_S after the last write: a first
# ingest, which embeds ~40 chunks/s, still writes every batch as it goes (progress and kill-safety as
# before), while one whose vectors come from the embedder's file writes in a few large upserts.
WRITE_BATCH = 1024
WRITE_EVERY_S = 0.5


@dataclass
class Report:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    flagged: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    files: int = 0
    # per file read: {"source", "kind", "questions": n, "titles": [...], "dropped": [{"kind", "text"}]}
    details: list = field(default_factory=list)

    def as_json(self) -> dict:
        return {"added": self.added, "updated": self.updated, "unchanged": self.unchanged,
                "deleted": self.deleted, "flagged": self.flagged, "errors": self.errors, "files": self.details}


# Files in the data folder (uploads) are named relative to it when it lies outside the repository, so
# citations never show a server's absolute paths.
DATA_PREFIX = "COACH_DATA_DIR/"


def source_name(path: Path) -> str:
    """How a file is named in the index: relative to the repository when inside it, else relative to
    the data folder when inside that, else its absolute path (a file a user ingested from the shell).

    The name is normalised but links are not followed: a link is named as the user sees it."""
    path = Path(os.path.abspath(path))
    if path.is_relative_to(ROOT):
        return str(path.relative_to(ROOT))
    data_dir = Path(os.path.abspath(get_settings().data_dir))
    if path.is_relative_to(data_dir):
        return DATA_PREFIX + str(path.relative_to(data_dir))
    return str(path)


def source_path(source: str) -> Path:
    if source.startswith(DATA_PREFIX):
        return get_settings().data_dir / source[len(DATA_PREFIX):]
    return Path(source) if Path(source).is_absolute() else ROOT / source


def ingest(paths: list[Path | str] | None = None, rebuild: bool = False, progress: bool = True,
           settings: Settings | None = None, store: Store | None = None,
           loaded: dict[Path, tuple[str, list[Section]]] | None = None) -> Report:
    """Index the files and folders in `paths` (default: the bank). `loaded` holds files already read
    (an upload is read once to check it, and not again here)."""
    settings = settings or get_settings()
    loaded = {Path(p).resolve(): value for p, value in (loaded or {}).items()}
    paths = [Path(p) for p in (paths or [settings.corpus_dir])]
    report = Report()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with ingest_lock(settings):
        store = store or open_store(settings)
        if rebuild or store.built_with not in (None, settings.embedder):
            store.reset()
        files, folders, missing = _expand(paths, report)
        chunk_metadatas = store.metadatas()
        existing = _existing_sections(chunk_metadatas)
        wanted: dict[tuple[str, str], tuple[str, Section]] = {}
        failed_sources = set()
        for path in _progress(files, progress and len(files) > 3, "reading", "file"):
            source = source_name(path)
            try:
                kind, sections, dropped = _read(path, source, settings, loaded)
            except Exception as exc:  # one unreadable file is that file's error; the run goes on
                message = str(exc) if isinstance(exc, LoadError) else f"cannot read it ({type(exc).__name__}: {exc})"
                report.errors.append({"source": source, "error": message})
                failed_sources.add(source)  # its chunks already in the index are kept, not lost
                continue
            report.files += 1
            report.details.append({"source": source, "kind": kind, "questions": len(sections),
                                   "titles": [s.question for s in sections], "dropped": dropped})
            for section in sections:
                key = (source, section_key(section))
                if key in wanted:
                    report.errors.append({"source": source, "error": f"duplicate section '{section.question}'"
                                          " (same number and title twice); the later one was skipped"})
                    continue
                wanted[key] = (kind, section)
        todo, redundant = _plan(settings, existing, wanted, report)
        stale = redundant + _removed(existing, wanted, failed_sources, files, folders, missing, report)
        _write(store, todo, progress)
        if stale:
            store.delete(stale)
            report.deleted += len(stale)
        key_metadatas = _write_keys(store, wanted)
        if todo or stale or key_metadatas is None:
            store.sync_bm25()  # also prunes the keys of sections that are gone
        else:  # nothing written: what this run read is what Chroma holds (other writers wait for the lock)
            store.sync_bm25(chunk_metadatas, key_metadatas)
    return report


def _read(path: Path, source: str, settings: Settings, loaded: dict) -> tuple[str, list[Section], list[dict]]:
    """(kind, sections, dropped) of a file: from `loaded` when the caller already read it."""
    if (done := loaded.get(path.resolve())) is not None:
        return done[0], done[1], list(done[2]) if len(done) > 2 else []
    kind, found = read_document(path, source, settings.max_file_bytes)
    return kind, found.sections, found.dropped


def _expand(paths: list[Path], report: Report) -> tuple[list[Path], list[Path], list[Path]]:
    files, folders, missing = [], [], []
    for path in paths:
        if path.is_dir():
            folders.append(path.resolve())
            for child in sorted(path.rglob("*")):
                if any(part.startswith(".") for part in child.relative_to(path).parts):
                    continue  # hidden files and folders (.git, editor swap files)
                if child.is_symlink() and not child.exists():
                    report.errors.append({"source": source_name(child), "error": "broken link: its target "
                                          "does not exist; skipped"})
                elif not child.is_file():
                    continue
                elif child.suffix.lower() in SUPPORTED:
                    files.append(child)
                else:
                    report.errors.append({"source": source_name(child), "error":
                                          f"unsupported file type '{child.suffix or child.name}' "
                                          f"(supported: {', '.join(sorted(SUPPORTED))}); skipped"})
        elif path.exists():
            files.append(path)
        else:
            missing.append(path)
    return files, folders, missing


def _existing_sections(chunk_metadatas: dict[str, dict]) -> dict[tuple[str, str], dict]:
    """(source, qid) -> {'ids': {piece: id}, 'hashes': set, 'pieces': set} as the store holds them."""
    sections: dict[tuple[str, str], dict] = {}
    for chunk_id, meta in chunk_metadatas.items():
        entry = sections.setdefault((meta.get("source"), meta.get("qid")),
                                    {"ids": {}, "hashes": set(), "pieces": set(), "flagged": {}})
        entry["ids"][chunk_id] = meta.get("piece")
        if meta.get("flagged"):
            entry["flagged"][chunk_id] = meta["flagged"]
        entry["hashes"].add(meta.get("section_hash"))
        entry["pieces"].add(meta.get("pieces"))
    return sections


def _is_complete(entry: dict | None, wanted_hash: str) -> bool:
    if not entry or entry["hashes"] != {wanted_hash} or len(entry["pieces"]) != 1:
        return False
    (count,) = entry["pieces"]
    return sorted(entry["ids"].values()) == list(range(count))


def _plan(settings, existing, wanted, report) -> tuple[list[Chunk], list[str]]:
    """Chunks to write (sections new, changed, or left incomplete by a crash), and the ids of old
    pieces that a shorter edit made redundant."""
    todo, redundant, tokenizer = [], [], None
    for key, (kind, section) in wanted.items():
        source, _ = key
        entry = existing.get(key)
        if _is_complete(entry, section_hash(source, kind, section, settings.chunk_tokens)):
            report.unchanged += len(entry["ids"])
            report.flagged.extend({"source": source, "chunk_id": cid, "reason": reason}
                                  for cid, reason in entry["flagged"].items())
            continue
        tokenizer = tokenizer or embedder(settings.embedder).tokenizer
        chunks = chunk_section(source, kind, section, tokenizer, settings.chunk_tokens)
        old_ids = set(entry["ids"]) if entry else set()
        for chunk in chunks:
            if chunk.metadata.get("flagged"):
                report.flagged.append({"source": source, "chunk_id": chunk.id, "reason": chunk.metadata["flagged"]})
            if chunk.id in old_ids:
                report.updated += 1
            else:
                report.added += 1
        redundant.extend(old_ids - {c.id for c in chunks})
        todo.extend(chunks)
    return todo, redundant


def _removed(existing, wanted, failed_sources, files, folders, missing, report) -> list[str]:
    """Ids of sections that are gone from the files and folders this run looked at."""
    looked_at = {source_name(f) for f in files}
    gone = {source_name(m) for m in missing}
    known = {source for source, _ in existing}
    for path in missing:
        if source_name(path) not in known:
            report.errors.append({"source": str(path), "error": "no such file or folder"})
    stale = []
    for (source, qid), entry in existing.items():
        if source in failed_sources:
            continue
        in_scope = (source in looked_at or source in gone or
                    (any(_under(source, folder) for folder in folders) and not source_path(source).is_file()))
        if in_scope and (source, qid) not in wanted:
            stale.extend(entry["ids"])
    return stale


def _under(source: str, folder: Path) -> bool:
    try:
        source_path(source).resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _write(store: Store, chunks: list[Chunk], progress: bool) -> None:
    if not chunks:
        return
    bar = _progress(None, progress, "embedding", "chunk", total=len(chunks))
    # Shortest first: each forward pass pads its texts to the longest one, and a batch of similar
    # lengths wastes almost nothing (the bank in file order padded 104k word pieces for 81k real
    # ones). Order does not matter for safety: a section half written by a killed run is redone.
    chunks = sorted(chunks, key=lambda c: len(c.text))
    _embed_and_write(store, chunks, EMBED_BATCH, store.upsert, bar)
    if bar is not None:
        bar.close()


def _embed_and_write(store: Store, items: list, embed_batch: int, write, bar=None) -> None:
    """Embed `items` (chunks or keys: id, text, metadata) `embed_batch` at a time and hand them to
    `write(ids, texts, metadatas, vectors)` in WRITE_BATCH-sized groups (see WRITE_BATCH); the progress
    bar counts items written, so what it shows is in Chroma."""
    import numpy as np

    pending, vectors, written_at = [], [], time.monotonic()
    for start in range(0, len(items), embed_batch):
        batch = items[start:start + embed_batch]
        pending.extend(batch)
        vectors.append(np.asarray(store.embeddings.embed_stored([item.text for item in batch]), dtype=np.float32))
        if start + embed_batch >= len(items) or len(pending) >= WRITE_BATCH or \
                time.monotonic() - written_at >= WRITE_EVERY_S:
            write([i.id for i in pending], [i.text for i in pending], [i.metadata for i in pending],
                  vectors=np.concatenate(vectors))  # (items, 384)
            if bar is not None:
                bar.update(len(pending))
            pending, vectors, written_at = [], [], time.monotonic()


def _write_keys(store: Store, wanted: dict) -> dict[str, dict] | None:
    """Bring the question keys of the sections read in this run up to date (after their chunks, so a
    key never points at a section that is not indexed yet): new or changed keys are embedded, keys a
    section no longer has are deleted. Keys of sections that are gone are pruned by `sync_bm25`.
    Returns every key's metadata when nothing had to change, else None."""
    keys = [key for (source, _), (kind, section) in wanted.items() for key in question_keys(source, kind, section)]
    existing = store.key_metadatas()
    todo = [key for key in keys if existing.get(key.id, {}).get("content_hash") != key.metadata["content_hash"]]
    wanted_ids = {key.id for key in keys}
    extra = [key_id for key_id, m in existing.items()
             if (m.get("source"), m.get("qid")) in wanted and key_id not in wanted_ids]
    _embed_and_write(store, todo, EMBED_BATCH * 4, store.upsert_keys)
    if extra:
        store.delete_keys(extra)
    return None if todo or extra else existing


def _progress(items, enabled: bool, desc: str, unit: str, total: int | None = None):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, total=total, desc=desc, unit=unit, leave=False, dynamic_ncols=True)


def ingest_lock(settings: Settings | None = None):
    """One change to the index at a time per data folder (ingest, upload, deletion; app or CLI)."""
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return _exclusive(settings.data_dir / "ingest.lock")


@contextmanager
def _exclusive(lock_path: Path):
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
