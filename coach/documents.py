"""A learner's own question collections as interview questions.

An uploaded collection has questions and answers but no key points, and the grader grades against key
points. So each uploaded question becomes an `Entry` whose key points are *derived* from its answer: its
first informative sentences (or list items, when the answer is a list), shortened. They are only as
good as the answer they come from, which is why every screen that shows them says they were derived
(`is_document_entry`), and why a bank entry is never replaced by one.

Entries are read from the index (the chunks of every source that is not the bank), so they always match
what is indexed: a deleted upload's questions disappear from new interviews at once.
"""
from __future__ import annotations

import re

from coach.bank import Entry
from coach.text import split_sentences

PREFIX = "doc:"          # ids of document entries: "doc:<source>#<section key>"
MAX_KEY_POINTS = 4
MIN_POINT_WORDS = 4
MAX_POINT_WORDS = 25
UNRATED = "unrated"      # the difficulty of a question nobody rated
LABEL = re.compile(r"^\W*(?:answer|solution|a|ans|detailed|simple|example|note)\s*:\W*", re.I)


def entry_id(source: str, qid: str) -> str:
    return f"{PREFIX}{source}#{qid}"


def is_document_entry(entry) -> bool:
    return str(getattr(entry, "id", "")).startswith(PREFIX)


def document_entries(store) -> dict[str, Entry]:
    """Every indexed question from the user's documents, with derived key points, by entry id."""
    sections = {}
    for meta in store.metadatas().values():
        if meta.get("kind") != "bank" and meta.get("qid"):
            sections.setdefault((meta["source"], meta["qid"]), meta)
    entries = (_entry(store, source, qid, meta) for (source, qid), meta in sorted(sections.items()))
    return {entry.id: entry for entry in entries if entry is not None}


def document_entry(store, eid: str) -> Entry | None:
    """One document entry by its id, or None when its source is no longer indexed."""
    if not eid.startswith(PREFIX) or "#" not in eid:
        return None
    source, qid = eid[len(PREFIX):].rsplit("#", 1)
    got = store.collection.get(where={"$and": [{"source": source}, {"qid": qid}]}, include=["metadatas"], limit=1)
    return _entry(store, source, qid, got["metadatas"][0]) if got["ids"] else None


def _entry(store, source: str, qid: str, meta: dict) -> Entry | None:
    text = store.section_text(source, qid) or ""
    answer = text.split("\n\n", 1)[1] if "\n\n" in text else ""
    points = derive_key_points(answer)
    if not points:
        return None
    return Entry(id=entry_id(source, qid), part=0, number=int(meta.get("number") or 0),
                 topic=meta.get("topic") or "my documents", difficulty=UNRATED,
                 question=meta.get("question") or qid, key_points=tuple(points), answer=answer,
                 source=source, line=0)


def derive_key_points(answer: str) -> list[str]:
    """Up to MAX_KEY_POINTS statements from the answer: its sentences (or list items) in order, skipping
    code, tables, labels and fragments, each cut to MAX_POINT_WORDS words."""
    points = []
    for statement in _statements(answer):
        words = statement.split()
        if len(words) < MIN_POINT_WORDS:
            continue
        point = " ".join(words[:MAX_POINT_WORDS]).rstrip(",;:") + ("…" if len(words) > MAX_POINT_WORDS else "")
        if point.lower() not in {p.lower() for p in points}:
            points.append(point)
        if len(points) == MAX_KEY_POINTS:
            break
    return points


def _statements(answer: str) -> list[str]:
    prose, in_code = [], False
    for line in answer.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_code = not in_code
            continue
        if in_code or line.lstrip().startswith(("|", "$$")):
            continue
        line = re.sub(r"^\s*(?:[-*+>•]|\d{1,2}[.)])\s+", "", line)
        prose.append(LABEL.sub("", line.replace("**", "").replace("__", "")).strip())
    out = []
    for paragraph in "\n".join(prose).split("\n"):
        out.extend(s.strip() for s in split_sentences(paragraph) if s.strip())
    return out
