"""One chunk per question; a long answer is split on paragraph boundaries, question prepended to each piece.

Pieces are sized in the embedder's own word-piece tokens: MiniLM reads at most 256 of them, and text
past that limit would be invisible to dense search. A code block or a table is never split: half a table
renders as garbage and half a function reads as a different one, so each is kept whole in one piece
(one that alone exceeds the budget becomes a piece of its own; dense search then sees its start).
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from coach.guards import flag_reason
from ingest.sections import Section

# Bump when chunking changes, so every section is re-chunked on the next ingest.
# 2: chunks that read like instructions to an AI carry a `flagged` reason (coach.guards.flag_reason).
# 3: code blocks and tables are never split; the injection scan reads exercises as exercises.
CHUNKER_VERSION = 3
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")


@dataclass(frozen=True)
class Chunk:
    id: str
    text: str
    metadata: dict


def sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def section_key(section: Section) -> str:
    """Stable key of a section within its source: the bank id, else number and title."""
    if section.qid:
        return section.qid
    slug = re.sub(r"[^a-z0-9]+", "-", section.question.lower()).strip("-")[:60]
    return f"{section.number}-{slug}" if section.number is not None else slug


def section_hash(source: str, kind: str, section: Section, chunk_tokens: int) -> str:
    """Everything that shapes a section's chunks; equal hashes mean its chunks can be left alone."""
    return sha1(json.dumps([CHUNKER_VERSION, chunk_tokens, source, kind, section.question, section.text,
                            section.number, section.part, section.topic, section.difficulty, section.qid]))


def chunk_section(source: str, kind: str, section: Section, tokenizer, chunk_tokens: int) -> list[Chunk]:
    qid = section_key(section)
    shash = section_hash(source, kind, section, chunk_tokens)
    header = section.question.strip()
    budget = max(32, chunk_tokens - len(tokenizer.tokenize(header)) - 2)
    pieces = split_answer(section.text, tokenizer, budget) or [""]
    base = {"source": source, "kind": kind, "qid": qid, "question": header, "part": section.part,
            "number": section.number, "topic": section.topic, "difficulty": section.difficulty,
            "section_hash": shash, "pieces": len(pieces)}
    chunks = []
    for i, piece in enumerate(pieces):
        text = f"{header}\n\n{piece}".strip()
        # Chroma rejects None metadata values: absent fields are simply left out.
        meta = {k: v for k, v in {**base, "piece": i, "flagged": flag_reason(text)}.items() if v is not None}
        meta["content_hash"] = sha1(text + json.dumps(meta, sort_keys=True))
        chunks.append(Chunk(id=sha1(f"{source}\x1f{qid}\x1f{i}")[:20], text=text, metadata=meta))
    return chunks


def question_keys(source: str, kind: str, section: Section) -> list[Chunk]:
    """A section's retrieval keys: its heading question, then each `asked_as` phrasing.

    Keys are matched against the user's question (dense and BM25) and map to their section; they are
    never shown, so they go to the store's keys collection, not among the chunks."""
    qid = section_key(section)
    header = section.question.strip()
    base = {"source": source, "kind": kind, "qid": qid, "question": header, "part": section.part,
            "topic": section.topic, "difficulty": section.difficulty}
    phrasings = [("question", header)] + [("asked_as", " ".join(text.split())) for text in section.asked_as]
    keys, seen = [], set()
    for role, text in phrasings:
        if not text or text.lower() in seen:
            continue
        seen.add(text.lower())
        meta = {k: v for k, v in {**base, "role": role}.items() if v is not None}
        meta["content_hash"] = sha1(text + json.dumps(meta, sort_keys=True))
        keys.append(Chunk(id=sha1(f"{source}\x1f{qid}\x1fkey\x1f{len(keys)}")[:20], text=text, metadata=meta))
    return keys


def blocks(text: str) -> list[tuple[str, bool]]:
    """The answer as (block, atomic) pairs in order: fenced code blocks and tables are atomic, the rest
    are paragraphs."""
    out, current, lines = [], [], text.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if fence := FENCE.match(line):
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip().startswith(fence.group(1))), len(lines) - 1)
            atomic, i = lines[i:end + 1], end + 1
        elif line.lstrip().startswith("|"):
            end = next((j for j in range(i, len(lines)) if not lines[j].lstrip().startswith("|")), len(lines))
            atomic, i = lines[i:end], end
        else:
            if line.strip():
                current.append(line)
            elif current:
                out.append(("\n".join(current), False))
                current = []
            i += 1
            continue
        if current:
            out.append(("\n".join(current), False))
            current = []
        out.append(("\n".join(atomic), True))
    if current:
        out.append(("\n".join(current), False))
    return out


def split_answer(text: str, tokenizer, budget: int) -> list[str]:
    """Pieces of at most `budget` tokens, packed from whole blocks; only prose is ever cut inside. Prose
    alone is split as before code and tables were kept whole, so the bank's calibrated chunks stay put."""
    answer_blocks = blocks(text)
    if not any(atomic for _, atomic in answer_blocks):
        return _splitter(tokenizer, budget).split_text(text)
    pieces, current, used = [], [], 0
    for block, atomic in answer_blocks:
        size = len(tokenizer.tokenize(block))
        parts = [(block, size)] if atomic or size <= budget else \
            [(p, len(tokenizer.tokenize(p))) for p in _splitter(tokenizer, budget).split_text(block)]
        for part, part_size in parts:
            if current and used + part_size > budget:
                pieces.append("\n\n".join(current))
                current, used = [], 0
            current.append(part)
            used += part_size
    if current:
        pieces.append("\n\n".join(current))
    return pieces


@lru_cache(maxsize=16)
def _splitter(tokenizer, budget: int):
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    # Lengths in word pieces, counted as from_huggingface_tokenizer does, without needing transformers.
    return RecursiveCharacterTextSplitter(
        length_function=lambda text: len(tokenizer.tokenize(text)), chunk_size=budget, chunk_overlap=0,
        separators=["\n\n", "\n", ". ", "; ", ", ", " ", ""], keep_separator="end")
