"""Turn a document's text into question sections, and say what was left out.

People's question collections come in many shapes: scraped articles ("21. What is Multimodal Learning?"),
GitHub READMEs with `### Q1: …` or `#### 1) …` headings, bold paragraphs (`**What is SGD? ⭐**`),
bullets (`* **Q: …**` with an indented `- *A:* …`), `<details><summary>` flash cards, "Question 1 – …"
PDFs and text copied out of a browser. Each such document has one *primary* way of marking its questions;
`detect` finds it (the line kind with the most question-like titles) and cuts there, and only there:

- headings at the questions' level start a question even without a "?" ("LSTM vs GRU", "Implement …");
  headings above that level are group titles and end a section, deeper ones stay inside the answer;
- a numbered, bold or plain title starts a question when it reads like one (question word, "?", a
  "Q1:" marker), so "**Answer:**" or "1. **Forward pass**" inside an answer never splits it.

Before that, what is never content is taken out and reported (`Detection.dropped`): tables of contents
and other lines that are only links, images and badges, sponsor and navigation lines, raw HTML; link
syntax is reduced to its text. Code blocks are never touched. After it, a question with no answer in
the document ("*solution*", "!", nothing) and text that is not under a question (intros, cheat sheets)
are dropped and reported too, so the Library preview can show a user exactly what was kept.

Documents with no question titles at all are cut at their markdown headings, or kept whole.
"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field

# A heading or question title is a short line: longer lines are never read as one, and every pattern
# below matches in time linear in the line (an upload of "# a" + 2,500 spaces + "x" once took a minute
# in a backtracking pattern, holding the GIL and so the whole server).
MAX_TITLE_LINE = 300
# An unindented "21. What is …?" line (indented "1. step" lines are list items inside an answer).
NUMBERED = re.compile(r"^(?:#{1,6}[ \t]+)?(\d{1,3})[.)][ \t]+(\S.{2,200})$")
HEADING = re.compile(r"^(#{1,6})[ \t]+(\S.*)$")
QUESTION_START = re.compile(r"^(what|why|how|when|which|who|explain|describe|compare|define|"
                            r"can|does|do|is|are|should|name|list|give)\b", re.I)
# Openings of an interview question that is not phrased as one ("Implement …", "Given two strings …").
TASK_START = re.compile(r"^(what'?s|where|would|could|will|implement|write|design|derive|discuss|contrast|"
                        r"differentiate|distinguish|calculate|compute|prove|outline|elaborate|walk|state|"
                        r"suppose|given|imagine|pick|tell|show|build|identify|summari[sz]e|in what)\b", re.I)
# "Q1:", "Q1.1:", "Q:", "Q 12)", "Question 1 –", "Question 3:" in front of a title.
Q_MARKER = re.compile(r"^(?:q(?:uestion)?[ \t]*(\d{1,3})(?:\.\d{1,3})?[ \t]*[:.)\-–—]?|q[ \t]*[:.)\-–—])[ \t]*", re.I)
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
CONTENTS_TITLE = re.compile(r"^(table of contents|contents|index|toc|navigation|menu|questions)\s*:?$", re.I)
SPONSOR = re.compile(r"\b(sponsor(?:ed|s|ship)?|buy me a coffee|patreon|ko-fi|donate|donation|"
                     r"support (?:this|the|my) (?:project|repo|work)|(?:give|leave) (?:it|us|this repo) a star|"
                     r"star (?:this|the) repo|hiring|affiliate)\b", re.I)
NAVIGATION = re.compile(r"^\W*(back to (?:the )?top|go to top|top of page|↑|⬆|next\s*(?:question|page|chapter)?\s*[:»→>]|"
                        r"previous\s*(?:question|page|chapter)?\s*[:«←<]|home\s*[|/»])", re.I)
GENERIC_LINK_TEXT = re.compile(r"^\s*(learn more|read more|more|source|here|click|click here|link|details|"
                               r"flip|back|top|↑|⬆)\s*[→»]?\s*$", re.I)
LINK_TARGET = r"\((?:[^()\s]|\([^()\s]*\)){0,500}(?:\s+\"[^\"]{0,200}\")?\)"   # (url "title"), bounded
LINK = re.compile(r"\[([^\[\]]{0,300})\]" + LINK_TARGET)
IMAGE = re.compile(r"!\[[^\[\]]{0,300}\]" + LINK_TARGET)
BADGE = re.compile(r"\[!\[[^\[\]]{0,300}\]\([^()\s]{0,500}\)\]\([^()\s]{0,500}\)")
REF_LINK = re.compile(r"\[([^\[\]]{1,300})\]\[[^\[\]]{0,100}\]")
ANCHOR = re.compile(r"<a\b[^<>]{0,500}>(.{0,300}?)</a>", re.I | re.S)
IMG_TAG = re.compile(r"<img\b[^<>]{0,1000}>", re.I)
SUMMARY = re.compile(r"<summary\b[^<>]{0,300}>(.{0,400}?)</summary>", re.I | re.S)
DEFINITION = re.compile(r"<dt\b[^<>]{0,300}>(.{0,400}?)</dt>", re.I | re.S)
TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]{0,500})?/?>")
COMMENT = re.compile(r"<!--.{0,2000}?-->", re.S)
TOGGLE = re.compile(r"^\W*(?:(?:show|see|view|reveal)\s+)?(?:the\s+)?(?:answers?|solutions?|hints?|details|more|"
                    r"explanation|code|click\b.*|expand\b.*|toggle\b.*)\W*$", re.I)
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
THEMATIC_BREAK = re.compile(r"^\s{0,3}([-*_])(?:\s*\1){2,}\s*$")
SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
BOLD_LINE = re.compile(r"^(?:[*+-][ \t]+)?(\*\*|__)(.{2,250}?)\1(.{0,250})$")
# Difficulty marks and emoji after a title ("What is SGD? ⭐️", "… ⭐", "… [M]").
TITLE_TAIL = re.compile(r"(?:\s*(?:\[[EMH]\]|\([EMH]\)|[\u2600-\u27bf\u2b00-\u2bff\U0001f000-\U0001faff\ufe0f\u200d]+))+\s*$")
# Labels and placeholders that say nothing by themselves: an answer made only of these is no answer.
PLACEHOLDER = re.compile(r"(?i)\b(?:answer|solution|ans)\b\s*:?|\ba\s*:|\[?to be (filled|added|written)\]?|"
                         r"\btbd\b|\btodo\b|coming soon|[!_*\[\]().:\-–—>#|`]")
ORPHAN_INTRO = re.compile(r"^\S[^.!?]{0,80}:\s*$")
LIST_ITEM = re.compile(r"^\s*([-*•]|\d{1,2}[.)])\s+|^\s{2,}\S")
MIN_ANSWER_WORDS = 3
# A line without a "?" longer than this is an answer's sentence even when it opens like a question ("When
# your model performs well on training data but…"): the longest question title without a "?" in the
# fixtures and the hand-counted documents of issue 18 has 14 words ("Describe two ways to visualize …").
UNMARKED_TITLE_MAX_WORDS = 14
HEADER_AFTER_BREAK_WORDS = 30   # text after an answer's last '---' this short is the next item's header


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


@dataclass
class Detection:
    """The sections of a document and what was dropped: [{"kind": why, "text": what (shortened)}]."""
    sections: list[Section]
    dropped: list[dict] = field(default_factory=list)

    def drop(self, kind: str, text: str) -> None:
        text = " ".join(text.split())
        if text:
            self.dropped.append({"kind": kind, "text": text[:100]})


@dataclass(frozen=True)
class Candidate:
    line: int
    kind: str            # "h1".."h6", "numbered", "bold", "plain"
    title: str
    number: int | None
    questionlike: bool


def split_sections(text: str, fallback_title: str) -> list[Section]:
    return detect(text, fallback_title).sections


def detect(text: str, fallback_title: str) -> Detection:
    found = Detection(sections=[])
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    lines = [line for line in lines if not FURNITURE.match(line.strip())]
    part = _part(lines[:8])
    lines = clean_markup(lines, found)
    candidates = _candidates(lines)
    kind = _primary(candidates)
    if kind:
        found.sections = _cut_questions(lines, candidates, kind, part, found)
        return found
    found.sections = _cut_headings(lines, fallback_title, part)
    return found


def heading_title(match: re.Match) -> str:
    """The title of a markdown heading, without the closing #s some writers add ("## Title ##")."""
    return match.group(2).rstrip().rstrip("#").rstrip() or match.group(2).strip()


# --- markup that is never content ------------------------------------------------------------------
def clean_markup(lines: list[str], found: Detection) -> list[str]:
    """Lines with furniture removed (reported in `found`), link syntax reduced to its text, embedded HTML
    flash cards turned into bold question lines and setext headings into '#' ones. Code stays as is."""
    out, in_code = [], None
    for line in lines:
        fence = FENCE.match(line)
        if in_code:
            out.append(line)
            if fence and fence.group(1)[0] == in_code[0] and len(fence.group(1)) >= len(in_code):
                in_code = None
            continue
        if fence:
            in_code = fence.group(1)
            out.append(line)
            continue
        if SETEXT.match(line) and out and out[-1].strip() and not _structural(out[-1]):
            out[-1] = ("# " if line.strip()[0] == "=" else "## ") + out[-1].strip()
            continue
        out.extend(_clean_line(line, found))
    return out


def _structural(line: str) -> bool:
    return bool(HEADING.match(line) or LIST_ITEM.match(line) or line.lstrip().startswith(("|", ">", "<")))


def _clean_line(line: str, found: Detection) -> list[str]:
    """A line without its furniture: [] when nothing of it is content, else the cleaned line(s)."""
    original = line
    line = COMMENT.sub("", line)
    line = SUMMARY.sub(lambda m: entry_title(m.group(1)), line)
    line = DEFINITION.sub(lambda m: entry_title(m.group(1)), line)
    if "\n" in line:
        return [x for part in line.split("\n") for x in _clean_line(part, found)] or [""]
    for pattern in (BADGE, IMAGE, IMG_TAG):
        for match in pattern.finditer(line):
            found.drop("image or badge", match.group(0))
        line = pattern.sub("", line)
    stripped = line.strip()
    if not _inline_text(stripped).strip() and not LINK.search(stripped):
        return [""]  # markup with nothing visible (<details>, <br/>, an <a id> anchor)
    if _only_links(stripped):
        found.drop("links only (table of contents, navigation)", original)
        return []
    if SPONSOR.search(stripped) and len(stripped.split()) < 40:
        found.drop("sponsor or promotion", original)
        return []
    if NAVIGATION.match(stripped):
        found.drop("navigation", original)
        return []
    text = _inline_text(line)
    return [text] if text.strip() else []


def entry_title(html_text: str) -> str:
    """An FAQ entry's <summary> or <dt> as a question line ("Q:" marks it as one even when it is a term,
    as in a glossary); a summary that only says "Answer" or "Show solution" is a toggle, not a title."""
    title = _inline_text(html_text).strip()
    return "\n" if not title or TOGGLE.match(title) else f"\n**Q: {title}**\n"


def _inline_text(text: str) -> str:
    """Links as their text (generic ones like "learn more" dropped), raw HTML tags and entities removed."""
    text = ANCHOR.sub(lambda m: "" if GENERIC_LINK_TEXT.match(TAG.sub("", m.group(1))) else m.group(1), text)
    text = LINK.sub(lambda m: "" if GENERIC_LINK_TEXT.match(m.group(1)) else m.group(1), text)
    text = REF_LINK.sub(r"\1", text)
    text = TAG.sub("", html.unescape(TAG.sub("", text)).replace("\xa0", " "))
    return text.rstrip()


def _only_links(line: str) -> bool:
    """True for a line that is nothing but links (a table of contents entry, "[click](…)", a row of deck
    links): what is left once links, list marks, numbers, table pipes and symbols are taken out has
    fewer than three letters."""
    if not (LINK.search(line) or ANCHOR.search(line) or REF_LINK.search(line)):
        return False
    rest = REF_LINK.sub("", LINK.sub("", ANCHOR.sub("", line)))
    rest = TAG.sub("", rest)
    return len(re.findall(r"[^\W\d_]", rest)) < 3


# --- question titles -------------------------------------------------------------------------------
def _candidates(lines: list[str]) -> list[Candidate]:
    """Every line that could title a question, with its kind; code blocks are skipped."""
    found, in_code = [], None
    for i, line in enumerate(lines):
        fence = FENCE.match(line)
        if in_code or fence:
            if in_code and fence and fence.group(1)[0] == in_code[0]:
                in_code = None
            elif not in_code and fence:
                in_code = fence.group(1)
            continue
        before, after = (lines[i - 1] if i else ""), (lines[i + 1] if i + 1 < len(lines) else "")
        if len(line) <= MAX_TITLE_LINE and (candidate := _candidate(i, line, before, after)):
            found.append(candidate)
    return found


def _candidate(i: int, line: str, before: str = "", after: str = "") -> Candidate | None:
    if m := HEADING.match(line):
        title, number = _title(heading_title(m))
        return Candidate(i, f"h{len(m.group(1))}", title, number, _questionlike(heading_title(m)))
    if line[:1].isspace():
        return None
    if m := BOLD_LINE.match(line):
        inner = (m.group(2) + m.group(3)).replace("**", "").strip()
        if re.fullmatch(r"\d{1,3}[.)]?", m.group(2).strip()):
            title, number = _title(m.group(3).replace("**", "").strip(" ,"))
            return Candidate(i, "numbered", title, number or int(re.sub(r"\D", "", m.group(2))),
                             _questionlike(title))
        if len(m.group(3).split()) > 3 and not Q_MARKER.match(m.group(2).strip()):
            return None  # "**Supervised learning** uses labeled data": a sentence, not a title
        title, number = _title(inner)
        return Candidate(i, "bold", title, number, _questionlike(inner))
    if m := NUMBERED.match(line):
        title, _ = _title(m.group(2))
        return Candidate(i, "numbered", title, int(m.group(1)), _questionlike(m.group(2)))
    return _plain_candidate(i, line.strip(), before.strip(), after.strip())


def _plain_candidate(i: int, line: str, before: str, after: str) -> Candidate | None:
    """A question on a line of its own in text without markup (a PDF, text copied from a page): it has a
    "Q1:" marker, or ends with "?", or opens like a question and stands alone before a blank line. The
    second line of a title a PDF wrapped ("mitigate these issues?") is not a new one."""
    if line[:1].islower() and before and before[-1:] not in ".?!:":
        return None
    words = len(line.split())
    if Q_MARKER.match(line) or (line.rstrip(")").endswith("?") and words <= 40) or \
            (not after and words <= 25 and (QUESTION_START.match(line) or TASK_START.match(line))):
        title, number = _title(line)
        return Candidate(i, "plain", title, number, True)
    return None


def _title(raw: str) -> tuple[str, int | None]:
    """A title without markup, numbering, "Q1:" markers and trailing difficulty marks; and its number."""
    text = raw.replace("**", "").replace("__", "").strip()
    text = re.sub(r"^[*+-][ \t]+", "", text)
    number = None
    if m := re.match(r"^(\d{1,3})(?:\.\d{1,3})*[.)][ \t]+", text):
        number, text = int(m.group(1)), text[m.end():]
    if m := Q_MARKER.match(text):
        number = number if m.group(1) is None else int(m.group(1))
        text = text[m.end():]
    text = TITLE_TAIL.sub("", text).strip(" *_:–—-")
    return text.strip(), number


def _questionlike(raw: str) -> bool:
    text = raw.replace("**", "").strip(" *_#")
    if Q_MARKER.match(text):
        return True
    title, _ = _title(text)
    return title.endswith("?") or bool(QUESTION_START.match(title) or TASK_START.match(title))


def _primary(candidates: list[Candidate]) -> str | None:
    """The kind of line that marks this document's questions: the one with the most question-like
    titles (headings first on a tie: they are the most deliberate mark), or None when there is none. One
    question-like heading or numbered title is enough (a note with one question); bold and plain lines
    need two, since a single one is as likely emphasis or a rhetorical question in prose."""
    counts: dict[str, int] = {}
    for c in candidates:
        if c.questionlike and not CONTENTS_TITLE.match(c.title):
            counts[c.kind] = counts.get(c.kind, 0) + 1
    counts = {kind: n for kind, n in counts.items() if n >= (2 if kind in ("bold", "plain") else 1)}
    if not counts:
        return None
    order = ["h1", "h2", "h3", "h4", "h5", "h6", "numbered", "bold", "plain"]
    return max(counts, key=lambda kind: (counts[kind], -order.index(kind)))


def _starts(candidates: list[Candidate], kind: str) -> tuple[list[Candidate], set[int]]:
    """Lines that start a question, and lines that only end one (group headings)."""
    starts, ends, previous = [], set(), None
    heading_level = int(kind[1]) if kind.startswith("h") else 7
    for c in candidates:
        level = int(c.kind[1]) if c.kind.startswith("h") else None
        if c.kind == kind and not CONTENTS_TITLE.match(c.title) and (
                c.questionlike or kind.startswith("h") or
                (kind == "numbered" and previous is not None and c.number == previous + 1)):
            starts.append(c)
            previous = c.number
        elif level is not None and level <= heading_level:
            ends.add(c.line)
    return starts, ends


def _cut_questions(lines: list[str], candidates: list[Candidate], kind: str, part: int | None,
                   found: Detection) -> list[Section]:
    starts, ends = _starts(candidates, kind)
    bounds = sorted({c.line for c in starts} | ends)
    first = bounds[0] if bounds else len(lines)
    found.drop("text before the first question", _clean("\n".join(lines[:first]))[:100])
    sections, by_line = [], {c.line: c for c in starts}
    for n, start in enumerate(bounds):
        end = bounds[n + 1] if n + 1 < len(bounds) else len(lines)
        body = lines[start + 1:end]
        if start not in by_line:  # a group heading: what follows it before a question is not one
            if _clean("\n".join(body)):
                found.drop("not under a question", lines[start].strip(" #") + ": " + _clean("\n".join(body)))
            continue
        c = by_line[start]
        title, body = _join_wrapped_title(c.title, body)
        text = _answer(body, found)
        if TRAILER.match(title):
            continue
        if not _has_answer(text):
            found.drop("question without an answer", title)
            continue
        sections.append(Section(question=title, text=text, number=c.number, part=part, topic=topic_of(title)))
    return sections


def _join_wrapped_title(title: str, body: list[str]) -> tuple[str, list[str]]:
    """A title cut by a PDF's line wrap ("…would you employ to mitigate" / "these issues?") joined again."""
    if title.endswith("?") or not body or not body[0].strip().endswith("?") or len(body[0].split()) > 12 \
            or _structural(body[0]):
        return title, body
    return f"{title} {body[0].strip()}", body[1:]


def _answer(body: list[str], found: Detection) -> str:
    """The answer under a title: up to a trailer heading, without the next item's header after a last
    thematic break ('---' then "**2)** Topic: …, Level: …"), cleaned."""
    trailer = next((j for j, line in enumerate(body) if TRAILER.match(line.strip())), None)
    if trailer is not None:
        body = body[:trailer]
    breaks = [j for j, line in enumerate(body) if THEMATIC_BREAK.match(line)]
    if breaks:
        after = "\n".join(body[breaks[-1] + 1:])
        if len(after.split()) < HEADER_AFTER_BREAK_WORDS:
            if after.strip():
                found.drop("not under a question", after)
            body = body[:breaks[-1]]
    return _clean("\n".join(body))


def _has_answer(text: str) -> bool:
    """An answer says something: not only labels and placeholders, and not only more question titles
    (a list of questions without answers puts the next titles under each one)."""
    words = PLACEHOLDER.sub(" ", text).split()
    if len(words) < MIN_ANSWER_WORDS:
        return False
    prose = [line for line in text.split("\n") if line.strip() and not _title_line(line.strip(" -*>"))]
    return bool(prose)


def _title_line(line: str) -> bool:
    """Does this line of an answer read as another question's title (not as a sentence of the answer)?"""
    return _questionlike(line) and (_title(line)[0].endswith("?") or len(line.split()) <= UNMARKED_TITLE_MAX_WORDS)


def _cut_headings(lines: list[str], fallback_title: str, part: int | None) -> list[Section]:
    """A document without question titles: one section per markdown heading, or one for the whole."""
    headings = [(i, heading_title(m)) for i, line in enumerate(lines)
                if len(line) <= MAX_TITLE_LINE and (m := HEADING.match(line))]
    if headings:
        sections = []
        for n, (start, title) in enumerate(headings):
            end = headings[n + 1][0] if n + 1 < len(headings) else len(lines)
            text = _clean("\n".join(lines[start + 1:end]))
            if text and not TRAILER.match(title):
                sections.append(Section(question=_title(title)[0] or title, text=text, part=part,
                                        topic=topic_of(title)))
        preamble = _clean("\n".join(lines[:headings[0][0]]))
        if len(preamble.split()) >= 40:
            sections.insert(0, Section(question=fallback_title, text=preamble, part=part))
        return sections
    body = _clean("\n".join(lines))
    return [Section(question=fallback_title, text=body, part=part)] if body else []


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
        if ORPHAN_INTRO.match(line) and not line.lstrip().startswith(("*", "_", "#", "|")):
            following = next((nxt for nxt in lines[i + 1:] if nxt.strip()), "")
            if not LIST_ITEM.match(following) and not following.lstrip().startswith(("|", "`", "~", "$")):
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
