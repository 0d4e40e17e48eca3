"""Files users upload in the app: checked, stored under COACH_DATA_DIR/uploads, indexed, removable.

An upload is stored only after it has been read successfully (type, size and content checked by the
same loader ingest uses), under a sanitised name, so a bad upload changes nothing and a name such as
`../../etc/passwd` can never leave the uploads folder.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import unicodedata
from pathlib import Path

from coach.config import Settings, get_settings
from ingest.loaders import SUPPORTED, LoadError, read_document
from ingest.pipeline import ingest, ingest_lock, source_name, source_path


def uploads_dir(settings: Settings | None = None) -> Path:
    return (settings or get_settings()).data_dir / "uploads"


def safe_name(name: str) -> str:
    """A plain file name: no folders, no leading dots, only letters, digits, '.', '-' and '_'.

    Two different names never map to the same file: when cleaning changes a name ("cutmix notes.md"),
    a short hash of the original is added ("cutmix-notes-3f2a9c.md"), so it cannot overwrite the
    upload that really is called "cutmix-notes.md". The same original always gives the same name, so
    uploading a file again updates it."""
    original = unicodedata.normalize("NFKC", Path(str(name).replace("\\", "/")).name)
    stem, suffix = os.path.splitext(original)
    clean_stem = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip(".-_")[:80] or "upload"
    clean_suffix = re.sub(r"[^A-Za-z0-9.]", "", suffix.lower())[:10]
    if clean_stem + clean_suffix != original:
        clean_stem += "-" + hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:6]
    return clean_stem + clean_suffix


def add(path: str | Path, original_name: str | None = None, settings: Settings | None = None) -> dict:
    """Check, store and index one uploaded file. Returns {"file", "status", "detail"}; status is
    added, updated, unchanged or error (and then nothing was stored or changed)."""
    settings = settings or get_settings()
    name = safe_name(original_name or Path(path).name)
    folder = uploads_dir(settings)
    incoming = folder / ".incoming"  # hidden: never indexed by a re-index of the folder
    incoming.mkdir(parents=True, exist_ok=True)
    staged = incoming / name
    try:
        if Path(name).suffix not in SUPPORTED:
            raise LoadError(f"unsupported file type '{Path(name).suffix or name}' "
                            f"(supported: {', '.join(sorted(SUPPORTED))})")
        size = Path(path).stat().st_size
        if size > settings.max_file_bytes:
            raise LoadError(f"file is {size / 2**20:.1f} MB, over the {settings.max_file_bytes / 2**20:.0f} MB limit")
        shutil.copyfile(path, staged)
        kind, found = read_document(staged, name, settings.max_file_bytes)  # read once, as ingest reads it
        loaded = (kind, found.sections, found.dropped)
    except Exception as exc:  # any failure to read is this file's error, and leaves nothing behind
        staged.unlink(missing_ok=True)
        detail = str(exc) if isinstance(exc, LoadError | OSError) else f"cannot read it ({type(exc).__name__})"
        return {"file": name, "status": "error", "detail": detail}
    target = folder / name
    os.replace(staged, target)
    report = ingest([target], progress=False, settings=settings, loaded={target: loaded})
    if report.errors:
        return {"file": name, "status": "error", "detail": "; ".join(e["error"] for e in report.errors)}
    if report.updated or report.deleted:
        status = "updated"
    elif report.added:
        status = "added"
    else:
        status = "unchanged"
    flagged = (f"; {len(report.flagged)} passage(s) flagged as instructions to an AI (sent to the model only "
               "as marked data)") if report.flagged else ""
    return {"file": name, "status": status,
            "detail": f"{len(found.sections)} questions; {report.added} added, {report.updated} updated, "
                      f"{report.unchanged} unchanged, {report.deleted} removed chunks{flagged}",
            "flagged": report.flagged, "questions": [s.question for s in found.sections], "dropped": found.dropped}


def preview(path: str | Path, original_name: str | None = None, settings: Settings | None = None) -> dict:
    """What indexing a file would keep, without storing or indexing anything: {"file", "kind",
    "questions": [titles], "dropped": [{"kind", "text"}]}, or {"file", "error"}."""
    settings = settings or get_settings()
    name = safe_name(original_name or Path(path).name)
    try:
        if Path(name).suffix not in SUPPORTED:
            raise LoadError(f"unsupported file type '{Path(name).suffix or name}' "
                            f"(supported: {', '.join(sorted(SUPPORTED))})")
        kind, found = read_document(Path(path), name, settings.max_file_bytes)
    except Exception as exc:  # a preview of a bad file is its error, like an upload's
        return {"file": name, "error": str(exc) if isinstance(exc, LoadError | OSError) else type(exc).__name__}
    return {"file": name, "kind": kind, "questions": [s.question for s in found.sections], "dropped": found.dropped}


def indexed_preview(store, source: str, settings: Settings | None = None) -> dict:
    """The same for a source already indexed: its questions as the index holds them, and what was dropped
    when its stored file is read again (uploads and files still on disk)."""
    titles: dict[str, tuple] = {}
    for meta in store.metadatas().values():
        if meta.get("source") == source:
            titles.setdefault(meta.get("qid"), (meta.get("number") or 0, meta.get("question")))
    path = source_path(source)
    dropped = []
    if path.is_file():
        try:
            dropped = read_document(path, source, (settings or get_settings()).max_file_bytes)[1].dropped
        except Exception:  # the file changed since it was indexed: the indexed questions still show
            dropped = []
    questions = [title for _, title in sorted(titles.values(), key=lambda t: (t[0], t[1] or ""))]
    return {"file": source, "questions": questions, "dropped": dropped}


def sources(store) -> list[dict]:
    """Every indexed source with its number of questions and chunks."""
    table: dict[str, dict] = {}
    for meta in store.metadatas().values():
        row = table.setdefault(meta.get("source"), {"source": meta.get("source"), "kind": meta.get("kind"),
                                                     "questions": set(), "chunks": 0})
        row["questions"].add(meta.get("qid"))
        row["chunks"] += 1
    return [{**row, "questions": len(row["questions"])} for _, row in sorted(table.items())]


def flagged(store) -> list[dict]:
    """Every indexed chunk flagged at ingest as instructions to an AI: source, question, reason."""
    rows = [{"source": meta.get("source"), "chunk_id": chunk_id, "question": meta.get("question"),
             "reason": meta["flagged"]} for chunk_id, meta in store.metadatas().items() if meta.get("flagged")]
    return sorted(rows, key=lambda row: (row["source"], row["question"] or ""))


def is_upload(source: str, settings: Settings | None = None) -> bool:
    """Whether an indexed source is a file uploaded in the app (the bank and shell-ingested files are not)."""
    settings = settings or get_settings()
    try:
        source_path(source).resolve().relative_to(uploads_dir(settings).resolve())
        return True
    except (ValueError, OSError):
        return False


def delete(source: str, settings: Settings | None = None) -> int:
    """Remove an uploaded source from the index and its file; returns the chunks removed. Anything that
    is not an upload (the bank above all) is refused with a ValueError."""
    from coach.store import open_store

    settings = settings or get_settings()
    if not is_upload(source, settings):
        raise ValueError(f"{source!r} is not an uploaded file; only uploads can be deleted from the app")
    store = open_store(settings)
    with ingest_lock(settings):  # Chroma and BM25 change together, never beside a running ingest
        ids = [cid for cid, meta in store.metadatas().items() if meta.get("source") == source]
        if ids:
            store.delete(ids)
            store.sync_bm25()
        for path in uploads_dir(settings).glob("*"):
            if path.is_file() and source_name(path) == source:
                path.unlink()
    return len(ids)


def reindex(settings: Settings | None = None):
    """Re-read the bank and every upload; only what changed is re-embedded."""
    settings = settings or get_settings()
    uploads_dir(settings).mkdir(parents=True, exist_ok=True)
    return ingest([settings.corpus_dir, uploads_dir(settings)], progress=False, settings=settings)
