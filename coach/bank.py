"""The question bank: our own interview questions, one markdown file per part.

A bank file looks like this (it renders nicely on GitHub and diffs cleanly):

    ---
    part: 1
    title: Foundations
    ---
    ## 7. Why does a deep network need a nonlinear activation?

    ```yaml
    id: p1-why-nonlinearity
    topic: activation functions
    difficulty: easy
    key_points:
      - a stack of linear layers collapses to one linear map
      - ...
    ```

    The model answer, in markdown, until the next `## N.` heading.

Everything is validated; a malformed entry raises BankError naming file and line.
"""
from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

DIFFICULTIES = ("easy", "medium", "hard")
ENTRY_KEYS = {"id", "topic", "difficulty", "key_points"}
# Optional fields (second round): how interviewers phrase the question, what learners get wrong, where
# the facts were checked. Real questions are phrased far from our headings; `asked_as` gives retrieval
# keys in our own words, `misconceptions` let the grader name a mistake instead of merely missing a point.
OPTIONAL_KEYS = {"asked_as", "misconceptions", "references"}
MAX_ASKED_AS = 12
MIN_KEY_POINTS, MAX_KEY_POINTS = 3, 6
# Interview-quality answers: long enough to hold the facts, short enough to say aloud.
MIN_WORDS, MAX_WORDS = 120, 300

HEADING = re.compile(r"^## +(\d+)\. +(\S.*?)\s*$")
ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


# libyaml's safe loader when PyYAML was built with it: same documents, about ten times faster, which
# matters because every ingest (even an unchanged one) parses the whole bank.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _load_yaml(text: str):
    return yaml.load(text, Loader=_Loader)  # _Loader is a safe loader


class BankError(ValueError):
    """A malformed bank file; the message lists every problem as file:line: what."""


@dataclass(frozen=True)
class Misconception:
    """A wrong statement learners make about an entry, and the correct statement the answer supports."""
    wrong: str
    right: str


@dataclass(frozen=True)
class Entry:
    id: str
    part: int
    number: int
    topic: str
    difficulty: str
    question: str
    key_points: tuple[str, ...]
    answer: str
    source: str
    line: int = field(compare=False)
    # key_point_alternatives[i]: other ways a correct answer may state key_points[i]
    key_point_alternatives: tuple[tuple[str, ...], ...] = field(default=(), compare=False)
    asked_as: tuple[str, ...] = field(default=(), compare=False)
    misconceptions: tuple[Misconception, ...] = field(default=(), compare=False)
    references: tuple[str, ...] = field(default=(), compare=False)

    def as_json(self) -> dict:
        return {"id": self.id, "part": self.part, "number": self.number, "topic": self.topic,
                "difficulty": self.difficulty, "question": self.question,
                "key_points": list(self.key_points),
                "key_point_alternatives": [list(alts) for alts in self.key_point_alternatives],
                "asked_as": list(self.asked_as),
                "misconceptions": [m.wrong for m in self.misconceptions],
                "misconception_corrections": [m.right for m in self.misconceptions],
                "references": list(self.references)}

    @property
    def words(self) -> int:
        return len(self.answer.split())


def is_bank_file(text: str) -> bool:
    """Bank files open with YAML front matter that names their part."""
    meta, _ = _front_matter(text)
    return isinstance(meta, dict) and "part" in meta


def parse_bank_file(text: str, source: str) -> list[Entry]:
    """Parse one bank file; raise BankError listing every malformed entry."""
    errors: list[str] = []
    meta, body_start = _front_matter(text)
    part = meta.get("part") if isinstance(meta, dict) else None
    if not isinstance(part, int) or isinstance(part, bool) or part < 1:
        raise BankError(f"{source}:1: front matter needs `part: <positive integer>`")
    lines = text.splitlines()
    starts = [i for i in range(body_start, len(lines)) if HEADING.match(lines[i])]
    if not starts:
        raise BankError(f"{source}:1: no questions found (headings look like `## 1. What is ...?`)")
    entries, numbers = [], {}
    for n, start in enumerate(starts):
        end = starts[n + 1] if n + 1 < len(starts) else len(lines)
        try:
            entry = _parse_entry(lines, start, end, part, source)
        except BankError as exc:
            errors.append(str(exc))
            continue
        if entry.number in numbers:
            errors.append(f"{source}:{start + 1}: question number {entry.number} already used "
                          f"on line {numbers[entry.number]}")
        numbers.setdefault(entry.number, start + 1)
        entries.append(entry)
    if errors:
        raise BankError("\n".join(errors))
    return entries


def _front_matter(text: str) -> tuple[dict | None, int]:
    lines = text.splitlines()
    if not lines or lines[0].strip() != "---":
        return None, 0
    for i in range(1, len(lines)):
        if lines[i].strip() == "---":
            try:
                return _load_yaml("\n".join(lines[1:i])) or {}, i + 1
            except yaml.YAMLError:
                return None, 0
    return None, 0


def _parse_entry(lines: list[str], start: int, end: int, part: int, source: str) -> Entry:
    where = f"{source}:{start + 1}"
    number_text, question = HEADING.match(lines[start]).groups()
    i = start + 1
    while i < end and not lines[i].strip():
        i += 1
    if i >= end or lines[i].strip() != "```yaml":
        raise BankError(f"{where}: question '{question}' must be followed by a ```yaml metadata block")
    close = next((j for j in range(i + 1, end) if lines[j].strip() == "```"), None)
    if close is None:
        raise BankError(f"{source}:{i + 1}: the ```yaml block is never closed")
    block_line = i + 1
    try:
        meta = _load_yaml("\n".join(lines[i + 1:close]))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = block_line + 1 + (mark.line if mark else 0)
        raise BankError(f"{source}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(meta, dict):
        raise BankError(f"{source}:{block_line}: the yaml block must be a mapping of id/topic/difficulty/key_points")
    block = lines[i + 1:close]

    def line_of(key: str | None) -> int:  # the line a key sits on, for messages a maintainer can follow
        found = next((n for n, text in enumerate(block) if key and text.startswith(f"{key}:")), None)
        return block_line + 1 + found if found is not None else block_line

    problems: list[tuple[str | None, str]] = []
    unknown = set(meta) - ENTRY_KEYS - OPTIONAL_KEYS
    for key in sorted(unknown):
        problems.append((key, f"unknown key '{key}' (allowed: {', '.join(sorted(ENTRY_KEYS | OPTIONAL_KEYS))})"))
    missing = ENTRY_KEYS - set(meta)
    if missing:
        problems.append((None, f"missing key(s) {', '.join(sorted(missing))}"))
    entry_id = meta.get("id")
    if "id" in meta and not (isinstance(entry_id, str) and ID_PATTERN.match(entry_id)):
        problems.append(("id", f"id {entry_id!r} must be lowercase letters, digits and dashes"))
    topic = meta.get("topic")
    if "topic" in meta and not (isinstance(topic, str) and topic.strip()):
        problems.append(("topic", "topic must be a non-empty string"))
    difficulty = meta.get("difficulty")
    if "difficulty" in meta and difficulty not in DIFFICULTIES:
        problems.append(("difficulty", f"difficulty {difficulty!r} must be one of {', '.join(DIFFICULTIES)}"))
    points = meta.get("key_points")
    if "key_points" in meta:
        if not (isinstance(points, list) and all(_key_point(p) for p in points)):
            problems.append(("key_points", "key_points must be a list of non-empty strings, or of "
                                           "{point: str, also: [str]} mappings (quote an item that contains ': ')"))
        elif not MIN_KEY_POINTS <= len(points) <= MAX_KEY_POINTS:
            problems.append(("key_points", f"key_points has {len(points)} items; "
                                           f"give {MIN_KEY_POINTS} to {MAX_KEY_POINTS}"))
    problems += _optional_field_problems(meta)
    if problems:
        raise BankError("\n".join(f"{source}:{line_of(key)}: {message}" for key, message in problems))
    answer = "\n".join(lines[close + 1:end]).strip()
    if not answer:
        raise BankError(f"{where}: question '{question}' has no answer text")
    parsed_points = [_key_point(p) for p in points]
    return Entry(id=entry_id, part=part, number=int(number_text), topic=topic.strip().lower(),
                 difficulty=difficulty, question=question, key_points=tuple(p for p, _ in parsed_points),
                 answer=answer, source=source, line=start + 1,
                 key_point_alternatives=tuple(alts for _, alts in parsed_points),
                 asked_as=tuple(a.strip() for a in meta.get("asked_as") or ()),
                 misconceptions=tuple(Misconception(m["wrong"].strip(), m["right"].strip())
                                      for m in meta.get("misconceptions") or ()),
                 references=tuple(r.strip() for r in meta.get("references") or ()))


def _strings(value) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) and v.strip() for v in value)


def _key_point(item) -> tuple[str, tuple[str, ...]] | None:
    """A key point as (statement, alternative phrasings), or None when malformed."""
    if isinstance(item, str) and item.strip():
        return item.strip(), ()
    if isinstance(item, dict) and set(item) <= {"point", "also"} and isinstance(item.get("point"), str) \
            and item["point"].strip() and _strings(item.get("also", [])):
        return item["point"].strip(), tuple(a.strip() for a in item.get("also", []))
    return None


def _optional_field_problems(meta: dict) -> list[tuple[str, str]]:
    problems = []
    asked_as = meta.get("asked_as")
    if "asked_as" in meta and not (_strings(asked_as) and len(asked_as) <= MAX_ASKED_AS):
        problems.append(("asked_as", f"asked_as must be a list of up to {MAX_ASKED_AS} non-empty strings"))
    wrongs = meta.get("misconceptions")
    if "misconceptions" in meta and not (isinstance(wrongs, list) and all(
            isinstance(m, dict) and set(m) == {"wrong", "right"} and _strings([m["wrong"], m["right"]])
            for m in wrongs)):
        problems.append(("misconceptions", "misconceptions must be a list of {wrong: str, right: str} mappings"))
    if "references" in meta and not _strings(meta.get("references")):
        problems.append(("references", "references must be a list of non-empty strings"))
    return problems


def load_bank(folder: Path | str) -> list[Entry]:
    """Every bank file under `folder` (or that one file), validated together: ids are unique across parts."""
    folder = Path(folder)
    entries, errors, seen = [], [], {}
    for path in [folder] if folder.is_file() else sorted(folder.rglob("*.md")):
        text = path.read_text(encoding="utf-8")
        if not is_bank_file(text):
            continue
        try:
            parsed = parse_bank_file(text, _display(path))
        except BankError as exc:
            errors.append(str(exc))
            continue
        for entry in parsed:
            if entry.id in seen:
                errors.append(f"{entry.source}:{entry.line}: id '{entry.id}' already used at {seen[entry.id]}")
            seen.setdefault(entry.id, f"{entry.source}:{entry.line}")
            entries.append(entry)
    if errors:
        raise BankError("\n".join(errors))
    return sorted(entries, key=lambda e: (e.part, e.number))


MIN_ASKED_AS = 5
# A misconception's correction must be stated by the entry's own answer, since the grader's feedback
# cites that answer as [1] for it: at least this share of the correction's content words appear there
# (the word-overlap floor of the support check's default rule, coach/support.py).
MIN_CORRECTION_SUPPORT = 0.5


def style_warnings(entries: list[Entry]) -> list[str]:
    """Checks of quality rather than form; the shipped bank must pass them."""
    warnings = [f"{e.source}:{e.line}: answer to '{e.question}' has {e.words} words "
                f"(aim for {MIN_WORDS}-{MAX_WORDS})"
                for e in entries if not MIN_WORDS <= e.words <= MAX_WORDS]
    warnings += [f"{e.source}:{e.line}: '{e.id}' has {len(e.asked_as)} asked_as phrasings "
                 f"(give {MIN_ASKED_AS}-{MAX_ASKED_AS})" for e in entries if e.asked_as and len(e.asked_as) < MIN_ASKED_AS]
    warnings += [f"{e.source}:{e.line}: '{e.id}': the correction '{m.right}' is not stated by the answer "
                 f"(only {share:.0%} of its words are there; use the answer's own terms)"
                 for e in entries for m, share in _correction_support(e) if share < MIN_CORRECTION_SUPPORT]
    return warnings


def _correction_support(entry: Entry) -> list[tuple[Misconception, float]]:
    """Each misconception of the entry with the share of its correction's content words the answer uses."""
    from coach.text import content_words

    said = content_words(entry.answer)
    return [(m, len(content_words(m.right) & said) / max(1, len(content_words(m.right))))
            for m in entry.misconceptions]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


if __name__ == "__main__":  # python -m coach.bank [FOLDER|FILE]: validate a bank and summarise it
    target = sys.argv[1] if len(sys.argv) > 1 else "corpus"
    try:
        bank = load_bank(target)
    except BankError as exc:
        sys.exit(f"bank is malformed:\n{exc}")
    for warning in style_warnings(bank):
        print("warning:", warning)
    parts = sorted({e.part for e in bank})
    print(f"{len(bank)} questions: " + ", ".join(
        f"part {p}: {sum(e.part == p for e in bank)}" for p in parts))
