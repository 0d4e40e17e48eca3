"""Every evaluation set, loaded in one place.

Our own sets live in `evals/sets/` (written by the project's authors). The real-question dev set is not
ours: it quotes interview questions from public collections, so it stays outside the project, in
`../shared/real-questions/dev.jsonl`, and is read from there when present (tests skip without it).

The dev set is split once, before anything is tuned on it, into a **tuning** half and a **held-out**
half. The split is stratified by (kind, coverage), so both halves hold the same mix of covered,
partly covered and uncovered questions, and within a stratum questions alternate by the SHA-256 of
their text: it does not depend on file order, and a question keeps its half when rows are added.
Figures are reported for both halves; thresholds and weights are only ever chosen on the tuning half.
"""
from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from pathlib import Path

SETS = Path(__file__).with_name("sets")
GOLD = SETS / "retrieval.jsonl"                  # bank authors' queries -> expected entries
OUT_OF_SCOPE = SETS / "out_of_scope.jsonl"       # questions the bank must refuse
SUPPORT_PAIRS = SETS / "support_pairs.jsonl"     # (passage, sentence, supported?) for the support check
ATTACKS = SETS / "attacks.jsonl"                 # red-team prompts
BENIGN_SECURITY = SETS / "benign_security.jsonl" # honest questions about attacks
GRADING = SETS / "grading.jsonl"                 # graded answers the grader was tuned on
GRADING_HOLDOUT = SETS / "grading_holdout.jsonl" # graded answers written blind, never tuned on
GRADING_BLIND = SETS / "grading_blind.jsonl"     # 308 answers to 44 questions, human-scored, written blind

REAL_QUESTIONS = Path(__file__).resolve().parents[2] / "shared" / "real-questions" / "dev.jsonl"
HALVES = ("tuning", "heldout")


def load_jsonl(path: Path) -> list[dict]:
    rows = []
    for line_no, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON: {exc}") from None
    return rows


def question_key(question: str) -> str:
    """A stable key for a real question that does not carry its text (for labels kept in the project)."""
    return hashlib.sha256(" ".join(question.split()).encode("utf-8")).hexdigest()[:16]


def real_questions(half: str | None = None, path: Path = REAL_QUESTIONS) -> list[dict]:
    """The real-question dev set (each row gains `half` and `key`), or one half of it; [] when absent."""
    if half is not None and half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}")
    if not Path(path).exists():
        return []
    rows = load_jsonl(path)
    strata: dict[tuple, list[dict]] = defaultdict(list)
    for row in rows:
        row["key"] = question_key(row["question"])
        strata[(row.get("kind"), row.get("coverage"))].append(row)
    for members in strata.values():
        for n, row in enumerate(sorted(members, key=lambda r: r["key"])):
            row["half"] = HALVES[n % 2]
    return [row for row in rows if half is None or row["half"] == half]


def question_half(qid: str) -> str:
    """The half a bank question's graded answers belong to: by the SHA-256 of its id, so the split does
    not depend on file order or on any score, and a question keeps its half when rows are added."""
    return HALVES[int(hashlib.sha256(qid.encode("utf-8")).hexdigest(), 16) % 2]


def grading_blind(half: str | None = None, path: Path = GRADING_BLIND) -> list[dict]:
    """The blind grading set (each row gains `half`), or one half of it, split BY QUESTION: every answer
    to a question lands in the same half, so the held-out half's questions were never tuned on."""
    if half is not None and half not in HALVES:
        raise ValueError(f"half must be one of {HALVES}")
    rows = load_jsonl(path)
    for row in rows:
        row["half"] = question_half(row["qid"])
    return [row for row in rows if half is None or row["half"] == half]
