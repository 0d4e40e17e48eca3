"""Turn a document's text into question sections.

Scraped interview articles look like "21. What is Multimodal Learning?" followed by the answer, wrapped
in site furniture (logo line, intro, "Conclusion", "Related Read", "Exit mobile version"). Each numbered
question becomes one section with its number and title; everything outside the questions is dropped.
Documents without numbered questions are cut at their markdown headings, or kept whole.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

# A heading or question title is a short line: longer lines are never read as one, and every pattern
# below matches in time linear in the line (an upload of "# a" + 2,500 spaces + "x" once took a minute
# in a backtracking pattern, holding the GIL and so the whole server).
MAX_TITLE_LINE = 300
# An unindented "21. What is …?" line (indented "1. step" lines are list items inside an answer).
NUMBERED = re.compile(r"^(?:#{1,6}[ \t]+)?(\d{1,3})[.)][ \t]+(\S.{2,200})$")
HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*)$")
QUESTION_START = re.compile(r"^(what|why|how|when|which|who|explain|describe|compare|define|"
                            r"can|does|do|is|are|should|name|list|give)\b", re.I)
PART = re.compile(r"\bpart\s*[-–:#]?\s*(\d{1,2})\b", re.I)
# Headings after which a scraped page has nothing of ours left.
TRAILER = re.compile(r"^(#{1,6}\s+)?(conclusion|final thoughts|wrapping up|related( read(s|ing)?| posts?)?|"
                     r"resources|further reading|references|you may also like|leave a (reply|comment)|"
                     r"comments?|share this( article| post)?:?|about the author|subscribe.*|next up.*|"
                     r"exit mobile version)\s*:?\s*$", re.I)
# Site furniture that can appear anywhere in scraped text.
FURNITURE = re.compile(r"^(site icon\b.*|exit mobile version|skip to (main )?content|share this:?|"
                       r"click to share on .*|like this:?|loading\.\.\.|(posted|published|updated) (on|in|by) .*|"
                       r"table of contents|advertisement|cookie.*consent.*|\d+ min read)\s*$", re.I)

# "Popular models:" on its own line, introducing a list; scrapers often keep the line and lose the list.
ORPHAN_INTRO = re.compile(r"^\S[^.!?]{0,80}:\s*$")
LIST_ITEM = re.compile(r"^\s*([-*•]|\d{1,2}[.)])\s+|^\s{2,}\S")


@dataclass(frozen=True)
class Section:
    question: str
    text: str
    number: int | None = None
    part: int | None = None
    topic: str | None = None
    difficulty: str | None = None
    qid: str | None = None  # stable key within its source; derived when not given
    asked_as: tuple[str, ...] = ()  # other ways the question is asked (bank entries): retrieval keys only


def split_sections(text: str, fallback_title: str) -> list[Section]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if not FURNITURE.match(line.strip())]
    part = _part(lines[:8])
    numbered = _numbered_questions(lines)
    if numbered:
        return _cut(lines, numbered, part)
    headings = [(i, heading_title(m)) for i, line in enumerate(lines)
                if len(line) <= MAX_TITLE_LINE and (m := HEADING.match(line))]
    if headings:
        sections = _cut(lines, [(i, None, title) for i, title in headings], part)
        preamble = _clean("\n".join(lines[:headings[0][0]]))
        if len(preamble.split()) >= 40:
            sections.insert(0, Section(question=fallback_title, text=preamble, part=part))
        return [s for s in sections if s.text]
    body = _clean("\n".join(lines))
    return [Section(question=fallback_title, text=body, part=part)] if body else []


def heading_title(match: re.Match) -> str:
    """The title of a markdown heading, without the closing #s some writers add ("## Title ##")."""
    return match.group(2).rstrip().rstrip("#").rstrip() or match.group(2).strip()


def _numbered_questions(lines: list[str]) -> list[tuple[int, int, str]]:
    found = []
    for i, line in enumerate(lines):
        if line[:1].isspace() or len(line) > MAX_TITLE_LINE or not (m := NUMBERED.match(line)):
            continue
        title = m.group(2).strip()
        if title.endswith("?") or QUESTION_START.match(title):
            found.append((i, int(m.group(1)), title))
    # Two or more are needed to call a document an article of numbered questions.
    return found if len(found) >= 2 else []


def _cut(lines: list[str], starts: list[tuple], part: int | None) -> list[Section]:
    sections = []
    for n, (start, number, title) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        body = lines[start + 1:end]
        trailer = next((j for j, line in enumerate(body) if TRAILER.match(line.strip())), None)
        if trailer is not None:
            body = body[:trailer]
        if TRAILER.match(title):
            continue
        sections.append(Section(question=title, text=_clean("\n".join(body)), number=number,
                                part=part, topic=topic_of(title)))
    return sections


def _part(head: list[str]) -> int | None:
    for line in head:
        if m := PART.search(line):
            return int(m.group(1))
    return None


def _clean(text: str) -> str:
    """Trim, collapse blank runs, and drop list introductions whose list was lost in scraping."""
    lines = text.split("\n")
    kept = []
    for i, line in enumerate(lines):
        if ORPHAN_INTRO.match(line):
            following = next((nxt for nxt in lines[i + 1:] if nxt.strip()), "")
            if not LIST_ITEM.match(following):
                continue
        kept.append(line)
    return re.sub(r"\n\s*\n(\s*\n)+", "\n\n", "\n".join(kept)).strip()


def topic_of(title: str) -> str:
    """'What is Prompt Injection and How to Defend Against It?' -> 'prompt injection'."""
    topic = re.sub(r"^(what|why|how|when|which)\s+(is|are|do|does|to|can)\s+(an?\s+|the\s+)?", "",
                   title.strip(), flags=re.I)
    topic = re.split(r"\s+(and how|and why|in the context of|in deep learning|in machine learning)\b|[?(:]",
                     topic, maxsplit=1, flags=re.I)[0]
    return topic.strip(" .").lower() or title.lower()
