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
OUT_OF_SCOPE_NEAR = SETS / "out_of_scope_near.jsonl"  # near-domain questions it must refuse (issue 16)
OUT_OF_SCOPE_INDOMAIN = SETS / "out_of_scope_indomain.jsonl"  # deep-learning topics the bank lacks (NeRF, CTC, ...)
FOLLOWUPS = SETS / "followups.jsonl"            # bank authors' follow-ups ("and how do you fix it?") after a question
IN_SCOPE_NEAR = SETS / "in_scope_near.jsonl"    # the same styles, answered by the bank_id entry
CONCEPT_PROBES = SETS / "concept_probes.jsonl"  # "what is X?" for each core concept, with the entries that own it
SUPPORT_PAIRS = SETS / "support_pairs.jsonl"     # (passage, sentence, supported?) for the support check
ATTACKS = SETS / "attacks.jsonl"                 # red-team prompts
BENIGN_SECURITY = SETS / "benign_security.jsonl" # honest questions about attacks
GRADING = SETS / "grading.jsonl"                 # graded answers the grader was tuned on
GRADING_HOLDOUT = SETS / "grading_holdout.jsonl" # graded answers written blind, never tuned on
GRADING_BLIND = SETS / "grading_blind.jsonl"     # 308 answers to 44 questions, human-scored, written blind
NEIGHBOURS = SETS / "grading_neighbours.jsonl"   # answers to a neighbouring question, human-judged (fresh10-11)


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


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Rows as load_jsonl reads them: one JSON object a line, UTF-8 as written."""
    Path(path).write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


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


# The fresh blind sets, sets/grading_NAME.jsonl: 168 answers each (per question two complete, two partial, one
# wrong, one restating, one off-topic, human-scored) to 24 questions no earlier grading set asks, written by two
# authors who saw only each question and its numbered key points (never the repository, the grader, the bank's
# phrasings and misconceptions, or another set). From fresh2 on the questions were drawn at random with the seed
# given (5 of each part 1-4 and 4 of part 5 up to fresh8; 6 of each part 1-4 for fresh9, part 5 being used up).
# What each set has been since, in order: a set is "never fitted on" until a constant is chosen on it. The nineteenth
# to twenty-second passes (not landed) chose their naming constants on fresh5 to fresh9: evals.grader.NAMING_TUNED since.
FRESH_SETS = {
    "fresh": "2026-12-03, for questions of all five parts the first blind set does not ask. Never fitted on until "
             "that day's second pass; tuning data since, with both halves of the first set.",
    "fresh2": "2026-12-03, seed 20261203. Read once per grader of that day's second pass; its failures were studied "
              "for the third (not adopted): tuning data since 22:20.",
    "fresh3": "2026-12-03, seed 20261204, while fresh2 became tuning data. Read with main and the third pass; the "
              "fourth pass was fitted on it: tuning data since 23:30.",
    "fresh4": "2026-12-03, seed 20261205, before the fourth pass was chosen. Read with main and the fourth pass "
              "(adopted on it); the fifth pass was fitted on it: tuning data since 2026-12-04 04:40.",
    "fresh5": "2026-12-04, seed 20261206, while the fifth pass (not adopted) was fitted on the six sets before it. "
              "Never fitted on; read for the fifth to eighteenth passes' decisions (reported, not deciding, from "
              "the sixth).",
    "fresh6": "2026-12-04, seed 20261207. Never fitted on: read with main when added, then once per pass that asks "
              "to be adopted (the seventh to fifteenth; reported for the sixteenth to eighteenth).",
    "fresh7": "2026-12-04, seed 20261208, before the seventh pass was read: read with main and that pass (not "
              "adopted) in one run; fresh6 and fresh7 pooled decided it, and with the sets after it the eighth to "
              "fifteenth passes (reported for the sixteenth to eighteenth). Never fitted on.",
    "fresh8": "2026-12-04, seed 20261209, before the eighth pass was read: read with main and that pass in one "
              "run; fresh6 to fresh8 pooled decided it (adopted); in the ninth to fifteenth passes' pools (reported "
              "for the sixteenth to eighteenth). Never fitted on.",
    "fresh9": "2026-12-05, seed 20261210, before the ninth pass was read: read with main and that pass in one run; "
              "fresh6 to fresh9 pooled decided it, the tenth (neither adopted), the eleventh (adopted by its rule, "
              "kept on a branch) and the twelfth to fifteenth (not landed); reported for the sixteenth to "
              "eighteenth; its failures not studied. Never fitted on.",
    "fresh10": "2026-12-05, seed 20261211, 20 questions, written after the eleventh pass was decided and while its "
               "model trained: read once with main and the eleventh pass (branch), as a confirmation; reported "
               "for the twelfth to eighteenth passes. Never fitted on.",
    "fresh11": "2026-12-05, seed 20261212, 20 questions (1, 5, 7 and 7 of parts 1-4: 20 of the 25 entries no set "
               "asked), written while the twelfth and thirteenth passes were decided (neither landed): read once "
               "after them, with main and the twelfth pass's fold models; the fourteenth did not read it; reported "
               "for the fifteenth to eighteenth. Never fitted on.",
    "fresh12": "2026-12-05, seed 20261213, 20 questions: the 5 entries no set had asked and 15 only never-fitted "
               "sets ask (so it shares questions with fresh5 to fresh11, never with a fitting set), two new "
               "authors; written while the fifteenth pass was decided: read once to decide the seventeenth (not "
               "landed), reported for the eighteenth. Never fitted on.",
    "fresh13": "2026-12-05, seed 20261214, 20 questions only never-fitted sets ask (not fresh12's), two new "
               "authors, written after the seventeenth pass was read and before the eighteenth was chosen: read "
               "once, to decide the eighteenth (landed). Never fitted on.",
    "fresh14": "2026-12-05, seed 20261215, 20 questions that fresh10 to fresh13 ask and fresh5 to fresh9 do not, two "
               "new authors, written before the nineteenth pass's features were read: read once to decide the "
               "nineteenth (not adopted), again for the twentieth and twenty-first (reported). Never fitted on.",
    "fresh15": "2026-12-05, seed 20261216, 20 further such questions (none of fresh14's), two new authors, written "
               "after the nineteenth pass was decided: read first to decide the twentieth (not adopted), again for "
               "the twenty-first (reported). Never fitted on.",
    "fresh16": "2026-12-05, seed 20261217, 20 questions that fresh10 to fresh13 ask and fresh5 to fresh9 do not (16 of "
               "them asked by fresh14 or fresh15 too), two new authors, written after the twentieth pass was "
               "decided: read first, once, to decide the twenty-first (adopted by its rule, not landed). Never "
               "fitted on.",
    "fresh17": "2026-12-05, seed 20261218, 20 more such questions, two new authors, written after the twenty-first "
               "pass was adopted: read once, with main, the twenty-first and the twenty-second (its constants chosen "
               "by issue 17's targets), pooled with fresh10-16 to decide the twenty-second (adopted by its rule, not "
               "landed). Never fitted on.",
    "fresh18": "2026-12-06, seed 20261219, 20 more such questions, two new authors, written after the twenty-fourth "
               "pass's rule and before any figure of the twenty-fifth: read first, pooled with fresh10-17, to decide "
               "the twenty-fifth (landed). Never fitted on.",
    "fresh19": "2026-12-06, seed 20261220, 20 more such questions, two new authors, written after the twenty-sixth "
               "pass's rule and before any figure of it on a never-fitted set: read first, pooled with fresh10-18, to "
               "decide it (landed). Never fitted on.",
    "fresh20": "2026-12-06, seed 20261221, 20 more such questions, two new authors, written before the twenty-eighth "
               "pass's rule and read after it, first, pooled with fresh10-19, to decide it (landed). Never fitted on.",
    "fresh21": "2026-12-06, seed 20261222, 20 more such questions, two new authors, written to decide the twenty-ninth "
               "or thirtieth pass; neither was tried (their grids on fresh5-9 fell short of their rules' bar), so read "
               "once as a never-fitted set of the twenty-eighth. Never fitted on.",
    "fresh22": "2026-12-06, seed 20261223, 20 more such questions, two new authors, written to decide the thirty-first "
               "pass, which was not tried (its grid on fresh5-9 fell short of its rule's bar): read once as a "
               "never-fitted set of the twenty-eighth. Never fitted on.",
}


# Good answers but for one mistake, sets/grading_NAME.jsonl: per question, from each of two authors who saw only the
# question and its numbered key points, one "mixed" answer (complete, plus exactly one false sentence a learner might
# believe: `wrong_sentence`, with `misconception` saying what it gets wrong; human score 5-8) and one "clean" complete
# answer written differently (8-10). What the fresh sets cannot show: whether the grader finds the one wrong sentence
# in a good answer, and what a rule that spares good answers costs.
MIXED_SETS = {
    "mixed1": "2026-12-06, seed 20261225, 20 of the naming-tuned sets' (fresh5-9) questions, two new authors: the "
              "thirty-third pass was chosen on it (tuning).",
    "mixed2": "2026-12-06, seed 20261226, 20 questions of the never-fitted sets' pool (fresh10-13's), two new authors: "
              "read once with the twenty-eighth pass and once with the thirty-third, to decide it. Never fitted on.",
}


def grading_mixed(name: str) -> list[dict]:
    """One set of good answers with one mistake and clean ones, by name (MIXED_SETS)."""
    if name not in MIXED_SETS:
        raise ValueError(f"no set of mixed answers {name!r}: one of {', '.join(MIXED_SETS)}")
    return load_jsonl(SETS / f"grading_{name}.jsonl")


def grading_fresh(name: str = "fresh") -> list[dict]:
    """One fresh blind set by name (FRESH_SETS), each row's `half` being that name."""
    if name not in FRESH_SETS:
        raise ValueError(f"no fresh blind set {name!r}: one of {', '.join(FRESH_SETS)}")
    return [{**row, "half": name} for row in load_jsonl(SETS / f"grading_{name}.jsonl")]


REAL_QUESTION_LABELS = SETS / "real_questions_labels.jsonl"  # our relabelling against the grown bank
LABEL_FIELDS = ("bank_id", "coverage", "alt_ids")


def labelled_real_questions(half: str | None = None, path: Path = REAL_QUESTIONS,
                            labels: Path = REAL_QUESTION_LABELS) -> list[dict]:
    """The dev set with our labels against the current bank, joined by `question_key`.

    The dev file's own `bank_id`/`coverage`/`alt_ids` label the old 166-entry bank; they are kept as
    `old_bank_id`/`old_coverage`/`old_alt_ids` (issue 19's before/after figure) and replaced by the
    labels in `real_questions_labels.jsonl`. The halves stay those of `real_questions`, which were drawn
    from the old labels before anything was tuned. A row without a label is an error, not a silent skip.
    """
    by_key = {row["key"]: row for row in load_jsonl(labels)}
    rows = real_questions(half, path)
    for row in rows:
        label = by_key.get(row["key"])
        if label is None:
            raise ValueError(f"{labels}: no label for dev question {row['key']}; relabel the dev set")
        for name in LABEL_FIELDS:
            row[f"old_{name}"] = row.get(name)
            row[name] = label.get(name)
        row["alt_ids"] = list(row["alt_ids"] or [])
    return rows


def in_scope_near(path: Path = IN_SCOPE_NEAR) -> list[dict]:
    """Our near-domain in-scope questions in the gold set's shape (expected: bank_id, then alt_ids)."""
    return [{"query": row["query"], "expected": [row["bank_id"], *row.get("alt_ids", [])], "style": row["kind"]}
            for row in load_jsonl(path)]


INDEPENDENT = "independent"  # the name figures carry for a set given by its path (`independent_questions`)


def independent_questions(path: Path) -> list[dict]:
    """A set of real questions kept outside the project, in the dev set's shape but labelled against the
    current bank in its own `bank_id`/`coverage`/`alt_ids`: a check nothing here was fitted to (for example
    questions from collections the dev set left out). Each row gains `key` and `half` ("independent")."""
    rows = load_jsonl(path)
    for line_no, row in enumerate(rows, start=1):
        missing = [name for name in ("question", *LABEL_FIELDS) if name not in row]
        if missing:
            raise ValueError(f"{path}: row {line_no} lacks {', '.join(missing)}; every row needs the question "
                             f"and its labels against the current bank")
        row.update(key=question_key(row["question"]), half=INDEPENDENT, alt_ids=list(row["alt_ids"] or []))
    return rows


def real_gold(half: str, rows: list[dict] | None = None) -> list[dict]:
    """The covered dev questions of one half (coverage full or partial) in the gold set's shape; `rows`
    instead of the dev set's half when given (an independent set).

    Counted as right: the labelled `bank_id` or any of its `alt_ids`. The dev set's README defines
    alt_ids as other entries that also answer the question or a part of it, so each is an answer a
    learner can use; a question no entry answers (coverage none) has no right entry and is left out."""
    rows = labelled_real_questions(half) if rows is None else rows
    return [{"query": row["question"], "expected": [row["bank_id"], *row["alt_ids"]], "style": row["coverage"],
             "key": row["key"]}
            for row in rows if row["coverage"] in ("full", "partial") and row["bank_id"]]


def real_uncovered(half: str, rows: list[dict] | None = None) -> list[dict]:
    """The dev questions of one half (or `rows`) that no bank entry answers (coverage none), as
    out-of-scope rows."""
    rows = labelled_real_questions(half) if rows is None else rows
    return [{"query": row["question"], "key": row["key"]} for row in rows if row["coverage"] == "none"]


def coverage_shares(rows: list[dict], kind: str = "dl") -> dict:
    """Share of `kind` questions labelled full / partial / none, before (old labels) and after (ours)."""
    chosen = [row for row in rows if row.get("kind") == kind]
    shares = {}
    for when, field in (("before", "old_coverage"), ("after", "coverage")):
        counts = {level: sum(row.get(field) == level for row in chosen) for level in ("full", "partial", "none")}
        shares[when] = {**counts, "total": len(chosen),
                        "full_share": round(counts["full"] / len(chosen), 4) if chosen else None}
    return shares


def main() -> int:
    """`python -m evals.datasets`: issue 19's coverage figure on the dev set, before and after."""
    rows = labelled_real_questions()
    if not rows:
        print(f"the dev set is absent ({REAL_QUESTIONS}); nothing to report")
        return 0
    for when, figures in coverage_shares(rows).items():
        print(f"dl questions, {when}: full {figures['full']}, partial {figures['partial']}, none "
              f"{figures['none']} of {figures['total']} (full share {figures['full_share']:.2f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
