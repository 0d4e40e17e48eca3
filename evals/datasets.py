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



def _shared_dev_set() -> Path:
    """`../shared/real-questions/dev.jsonl` beside the checkout; a git worktree one level deeper
    (`wt/NAME/`) finds the same folder further up. The first that exists wins."""
    root = Path(__file__).resolve().parents[1]
    candidates = [parent / "shared" / "real-questions" / "dev.jsonl" for parent in root.parents[:3]]
    return next((path for path in candidates if path.exists()), candidates[0])


REAL_QUESTIONS = _shared_dev_set()
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
