"""Incremental ingestion against a real embedded Chroma: add, edit, delete, bad files, crash and repair."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SEED, run_cli


def bank_text(part: int, entries: list[tuple[int, str, str, str]]) -> str:
    out = [f"---\npart: {part}\ntitle: Test part\n---\n"]
    for number, qid, question, answer in entries:
        out.append(f"## {number}. {question}\n\n```yaml\nid: {qid}\ntopic: testing\ndifficulty: easy\n"
                   f"key_points:\n  - one\n  - two\n  - three\n```\n\n{answer}\n")
    return "\n".join(out)


ENTRIES = [
    (1, "t-dropout", "What does dropout do?", "Dropout zeroes random activations while training."),
    (2, "t-adam", "How does Adam adapt learning rates?", "Adam keeps running averages of gradients."),
    (3, "t-clip", "Why clip gradients?", "Clipping bounds the update when gradients explode."),
]


@pytest.fixture
def folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "bank.md").write_text(bank_text(1, ENTRIES))
    shutil.copy(SEED, docs / "seed.txt")
    return docs


def state(store) -> dict[str, dict]:
    return store.metadatas()


def run(paths, settings, **kw):
    from ingest.pipeline import ingest

    return ingest([Path(p) for p in paths], progress=False, settings=settings, **kw)


def test_incremental_add_edit_delete(folder, fresh_settings):
    from coach.store import open_store

    first = run([folder], fresh_settings)
    assert (first.added, first.updated, first.deleted, first.errors) == (13, 0, 0, [])
    store = open_store(fresh_settings)
    assert store.count() == 13

    again = run([folder], fresh_settings)
    assert (again.added, again.updated, again.unchanged, again.deleted) == (0, 0, 13, 0)

    edited = [ENTRIES[0], (2, "t-adam", ENTRIES[1][2], "Adam divides by the root of a running mean of "
                           "squared gradients, so each parameter gets its own step size."), ENTRIES[2]]
    (folder / "bank.md").write_text(bank_text(1, edited))
    changed = run([folder], fresh_settings)
    assert (changed.added, changed.updated, changed.unchanged, changed.deleted) == (0, 1, 12, 0)
    texts = store.collection.get(where={"qid": "t-adam"}, include=["documents"])["documents"]
    assert texts == [f"{ENTRIES[1][2]}\n\n{edited[1][3]}"]
    # BM25 follows Chroma: the new wording is searchable by keyword.
    assert store.bm25().search("squared parameter step size", 3)[0][0] == \
        store.collection.get(where={"qid": "t-adam"})["ids"][0]

    (folder / "bank.md").write_text(bank_text(1, edited[:2]))  # one question removed
    (folder / "extra.md").write_text("# Extra\n\n## Label smoothing\n\nSoft targets calm the model.\n")
    shrunk = run([folder], fresh_settings)
    assert (shrunk.added, shrunk.deleted) == (1, 1)
    assert not store.collection.get(where={"qid": "t-clip"})["ids"]

    (folder / "seed.txt").unlink()  # a whole file removed
    gone = run([folder], fresh_settings)
    assert gone.deleted == 10
    assert store.count() == 3
    assert len(store.bm25().ids) == 3


def test_ingesting_a_file_elsewhere_leaves_other_sources_alone(folder, fresh_settings, tmp_path):
    run([folder], fresh_settings)
    other = tmp_path / "other.md"
    other.write_text("# Notes\n\n## Mixup\n\nMixup blends two examples and their labels.\n")
    report = run([other], fresh_settings)
    assert (report.added, report.deleted) == (1, 0)
    from coach.store import open_store

    assert open_store(fresh_settings).count() == 14


def test_bad_files_are_reported_and_the_rest_still_ingests(folder, fresh_settings):
    (folder / "image.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.md").write_bytes(bytes(range(256)) * 4)
    (folder / "broken.pdf").write_bytes(b"%PDF-1.7\ngarbage")
    (folder / "dangling.md").symlink_to(folder / "does-not-exist.md")
    report = run([folder], fresh_settings)
    assert report.added == 13
    reasons = {Path(e["source"]).name: e["error"] for e in report.errors}
    assert set(reasons) == {"image.png", "empty.txt", "binary.md", "broken.pdf", "dangling.md"}
    assert "unsupported" in reasons["image.png"] and "empty" in reasons["empty.txt"]
    assert "binary" in reasons["binary.md"] and "PDF" in reasons["broken.pdf"]


def test_a_file_that_turns_bad_keeps_its_chunks(folder, fresh_settings):
    from coach.store import open_store

    run([folder], fresh_settings)
    (folder / "bank.md").write_text((folder / "bank.md").read_text().replace("difficulty: easy",
                                                                           "difficulty: trivial", 1))
    report = run([folder], fresh_settings)
    assert report.deleted == 0 and any("trivial" in e["error"] for e in report.errors)
    assert open_store(fresh_settings).count() == 13  # nothing lost


def test_cli_json_report_and_exit_codes(folder, tmp_path):
    env = {"COACH_DATA_DIR": str(tmp_path / "cli-data")}
    ok = run_cli("-m", "ingest", str(folder), "--json", env=env)
    assert ok.returncode == 0, ok.stderr
    report = json.loads(ok.stdout)
    assert {"added", "updated", "unchanged", "deleted", "flagged", "errors"} <= set(report)
    assert report["added"] == 13
    seed = next(f for f in report["files"] if f["source"].endswith("seed.txt"))  # the preview of each file
    assert seed["questions"] == 10 == len(seed["titles"]) and seed["kind"] == "article"
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.docx").write_bytes(b"PK")
    (bad / "b.txt").write_bytes(b"")
    nothing = run_cli("-m", "ingest", str(bad), "--json", env=env)
    assert nothing.returncode == 1
    assert len(json.loads(nothing.stdout)["errors"]) == 2
    human = run_cli("-m", "ingest", str(bad), env=env)
    assert "skipped" in human.stderr and "a.docx" in human.stderr


def test_rebuild_starts_over(folder, fresh_settings):
    run([folder], fresh_settings)
    report = run([folder], fresh_settings, rebuild=True)
    assert (report.added, report.unchanged) == (13, 0)


def test_stale_bm25_index_heals_itself(folder, fresh_settings):
    """A crash between the Chroma write and the BM25 write leaves BM25 behind; the next open rebuilds it."""
    from coach.store import Store, open_store

    run([folder], fresh_settings)
    store = open_store(fresh_settings)
    victim = store.collection.get(where={"qid": "t-clip"})["ids"]
    store.collection.delete(ids=victim)  # Chroma changed, BM25 on disk did not
    fresh = Store(fresh_settings)  # as a restarted process would open it
    assert set(fresh.bm25().ids) == set(fresh.metadatas())
    assert not set(victim) & set(fresh.bm25().ids)


def test_an_open_after_a_completed_ingest_trusts_the_saved_indexes(folder, fresh_settings, monkeypatch):
    """A process opening an index nobody is writing loads the saved BM25 indexes and the key and chunk
    vectors without reading every chunk's and key's metadata or vectors from Chroma, and gets the same ones."""
    from coach import store as store_module
    from coach.store import Store

    run([folder], fresh_settings)
    first = Store(fresh_settings)
    expected_ids, expected_keys, expected_vectors = first.bm25().ids, first.key_bm25().ids, first.key_vectors()[1]
    expected_chunk_vectors = first.chunk_vectors()[1].copy()

    def no_full_read(*args, **kwargs):
        raise AssertionError("read every item from Chroma")

    monkeypatch.setattr(store_module, "_paged", no_full_read)
    second = Store(fresh_settings)  # as a restarted process would open it
    assert second.bm25().ids == expected_ids and second.key_bm25().ids == expected_keys
    assert (second.key_vectors()[1] == expected_vectors).all() and expected_vectors.any()
    assert (second.chunk_vectors()[1] == expected_chunk_vectors).all() and expected_chunk_vectors.any()


def test_a_write_interrupted_before_the_sync_is_healed_by_the_next_open(folder, fresh_settings):
    """A chunk rewritten in place (same ids, same count) through the Store, then a crash before the BM25
    sync: the published fingerprint was withdrawn, so the next process rebuilds the index."""
    from coach.store import Store

    run([folder], fresh_settings)
    writer = Store(fresh_settings)
    got = writer.collection.get(where={"qid": "t-clip"}, include=["metadatas"])
    metadata = {**got["metadatas"][0], "content_hash": "rewritten"}
    writer.upsert(got["ids"][:1], ["Quokkas bound the update when gradients explode."], [metadata])
    fresh = Store(fresh_settings)
    assert fresh.bm25().search("quokkas", 1)[0][0] == got["ids"][0]


def _snapshot(data_dir: Path) -> dict[str, str]:
    """chunk id -> content hash, read in a separate process so no client stays open."""
    code = ("import json; from coach.store import Store; s = Store(); "
            "print(json.dumps({i: m['content_hash'] for i, m in s.metadatas().items()}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "COACH_DATA_DIR": str(data_dir)}, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def _ingest_process(folder: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    # COACH_VECTORS=0: every run embeds, as a first ingest does; with vectors read from the embedder's
    # file the writes go by too fast for a kill to land between two of them.
    return subprocess.Popen([sys.executable, "-m", "ingest", str(folder), "--json", *extra],
                            cwd=ROOT, env={**os.environ, "COACH_DATA_DIR": str(data_dir), "COACH_VECTORS": "0"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_mid_write(proc: subprocess.Popen, timeout: float = 240) -> int:
    """SIGKILL the process once its progress bar shows some chunks written but not all."""
    deadline, seen = time.monotonic() + timeout, ""
    while time.monotonic() < deadline:
        char = proc.stderr.read(1)
        if not char:
            break
        seen += char
        done = re.findall(r"embedding:.*?\|\s*(\d+)/(\d+)", seen[-300:])
        if done and 0 < int(done[-1][0]) < int(done[-1][1]):
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            return int(done[-1][0])
    proc.kill()
    raise AssertionError(f"ingest finished or stalled before it could be killed mid-write: {seen[-500:]}")


# The bank's smallest part: 106 chunks, two write batches (ingest.pipeline.EMBED_BATCH), so a kill can land
# between them. Crash repair is a property of the mechanism, not of the bank's size: two parts (450 chunks)
# took 80 s of the suite on CI for the same checks.
CRASH_CORPUS = ["part5-in-practice.md"]


def test_sigkill_mid_ingest_is_repaired_by_the_next_run(tmp_path):
    """Kill real ingest processes with SIGKILL while they write; the next run repairs the store."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name in CRASH_CORPUS:
        shutil.copy(ROOT / "corpus" / name, corpus / name)
    reference_dir, data_dir = tmp_path / "reference", tmp_path / "crashed"
    started = time.monotonic()
    reference = _ingest_process(corpus, reference_dir, "--quiet")
    assert reference.wait(timeout=300) == 0, reference.stderr.read()
    duration = time.monotonic() - started
    expected = _snapshot(reference_dir)

    # 1. killed mid-write on a cold store: part of the chunks are in, the rest are not
    _kill_mid_write(_ingest_process(corpus, data_dir, "--progress"))
    partial = _snapshot(data_dir)
    assert 0 < len(partial) < len(expected)
    # 2. killed mid-write during a rebuild, 3. killed at an arbitrary moment
    _kill_mid_write(_ingest_process(corpus, data_dir, "--progress", "--rebuild"))
    proc = _ingest_process(corpus, data_dir, "--quiet")
    time.sleep(duration * 0.6)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)

    repair = _ingest_process(corpus, data_dir, "--quiet")
    out, err = repair.communicate(timeout=300)
    assert repair.returncode == 0, err
    assert _snapshot(data_dir) == expected  # nothing missing, nothing extra, same content
    again = _ingest_process(corpus, data_dir, "--quiet")
    out, _ = again.communicate(timeout=300)
    report = json.loads(out)
    assert (report["added"], report["updated"], report["deleted"]) == (0, 0, 0)
    assert report["unchanged"] == len(expected)


def _keys_of(store, qid: str) -> list[str]:
    return sorted(m_text for m_text in store.keys.get(where={"qid": qid}, include=["documents"])["documents"])


def test_question_keys_follow_their_sections(folder, fresh_settings):
    """A section's keys (heading, asked_as) are added with it, follow an edit of its asked_as list, and
    go when its chunks go, whoever deleted them (an ingest, or an upload removed from the Library)."""
    from coach.store import open_store

    text = bank_text(1, ENTRIES).replace("key_points:", "asked_as:\n  - why randomly silence units?\n"
                                         "  - dropout in one line\nkey_points:", 1)
    (folder / "bank.md").write_text(text)
    run([folder], fresh_settings)
    store = open_store(fresh_settings)
    assert _keys_of(store, "t-dropout") == sorted([ENTRIES[0][2], "why randomly silence units?", "dropout in one line"])
    assert _keys_of(store, "t-adam") == [ENTRIES[1][2]]
    assert set(store.key_bm25().ids) == set(store.key_metadatas())

    (folder / "bank.md").write_text(text.replace("  - dropout in one line\n", ""))
    run([folder], fresh_settings)
    assert _keys_of(store, "t-dropout") == sorted([ENTRIES[0][2], "why randomly silence units?"])
    assert store.key_bm25().search("silence units", 5)[0][0] in store.key_metadatas()

    (folder / "bank.md").write_text(bank_text(1, ENTRIES[1:]))
    run([folder], fresh_settings)
    assert _keys_of(store, "t-dropout") == []
    store.delete(store.collection.get(where={"qid": "t-adam"})["ids"])
    store.sync_bm25()
    assert _keys_of(store, "t-adam") == [] and set(store.key_bm25().ids) == set(store.key_metadatas())


def test_embedded_items_are_written_in_large_batches_unless_embedding_is_slow(monkeypatch):
    """Vectors read from the embedder's file come fast, and go to Chroma in few large upserts; a first
    ingest embeds slowly, and writes what it has every WRITE_EVERY_S (progress shows what is stored)."""
    from types import SimpleNamespace

    import numpy as np

    from ingest import pipeline

    items = [SimpleNamespace(id=f"c{n}", text=f"text {n}", metadata={"n": n}) for n in range(130)]
    fake_vectors = SimpleNamespace(embed_stored=lambda texts: [[float(t.split()[1]), 1.0] for t in texts])
    store = SimpleNamespace(embeddings=fake_vectors)

    def writes(every_s: float) -> list[tuple[list, np.ndarray]]:
        calls = []
        monkeypatch.setattr(pipeline, "WRITE_BATCH", 100)
        monkeypatch.setattr(pipeline, "WRITE_EVERY_S", every_s)
        pipeline._embed_and_write(store, items, 64, lambda ids, texts, metas, vectors: calls.append((ids, vectors)))
        return calls

    fast = writes(every_s=3600)
    assert [len(ids) for ids, _ in fast] == [128, 2]
    slow = writes(every_s=0)
    assert [len(ids) for ids, _ in slow] == [64, 64, 2]
    for calls in (fast, slow):
        ids = [i for batch, _ in calls for i in batch]
        vectors = np.concatenate([v for _, v in calls])  # (items, 2)
        assert ids == [item.id for item in items] and vectors[:, 0].tolist() == list(range(130))
