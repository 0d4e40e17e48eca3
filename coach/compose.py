"""Answers composed at the level of a bank entry, not of loose sentences.

Three sentences picked from three different entries read like a ransom note: an opening "Both
normalize…" whose antecedent was never shown, a table row cut into "| | LSTM | GRU |", a sentence whose
formula was left behind ("the output width is"). So an answer is built from *units* of one entry:

1. The entry's markdown is parsed into units that can be shown on their own: a prose sentence, a whole
   list item, a whole table (rendered as one line per row, so nothing is cut), and a sentence together
   with the display formula it introduces and the lower-case clause that continues it.
2. The answer opens with the entry's own direct answer (its first sentence that does not refer back to
   something unseen), then adds the units that address what was asked: the question's intent (a
   comparison asks for differences, "why" for the reason, "how do you fix" for remedies) adds weight to
   units with the matching cue words, and units that state one of the entry's key points not yet
   stated earn a bonus (the key points are the bank's own list of what a good answer must contain).
   A unit that refers back ("This…", "Both…") is shown only right after the unit it follows.
3. Units keep the entry's order; the other relevant entries close the answer as "See also" lines.
   Every sentence carries a citation, and `renumber` makes citations run 1..n in order of appearance.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from coach.text import CITATION, LIST_MARK, citations_of, content_words, split_sentences

# A sentence that opens this way points at something said before it ("Both normalize…").
REFERS_BACK = re.compile(r"^\W*(?:both(?!\s+(?:[^\s,.:;]+\s+){1,3}?and\b)|this|these|that|those|it|its|they|their|them|such|here|so|also|however|"
                         r"but|and|then|thus|hence|therefore|neither|either|another|instead|otherwise|"
                         r"each of (?:these|them|those|the)|the (?:former|latter|same|two|three|four|other)|"
                         r"all (?:two|three|four|five|of (?:these|them|those))|"
                         r"in (?:this|that|both) cases?|if (?:they|it|so|not))\b", re.I)
# "**Training.**", "**Why it works**:" and "Practical note:" open a paragraph; they are not content.
LABEL = re.compile(r"^(?:\*\*[^*]{1,60}[.:]\*\*|\*\*[^*]{1,60}\*\*[.:]|[A-Z][A-Za-z ]{2,30} (?:note|advice):)\s*")
TABLE_LINE = re.compile(r"^\s*\|")
BOLD_NUMBER = re.compile(r"^(\s*)\*\*(\d+)\.\s+")
LITERAL_MARKER = CITATION   # "[1], [2]" or an interval "[0, 1]" in the text, read as citations unless escaped
HEADING_ITEM = re.compile(r"^\*\*[^*]+\*\*[.:]?$")   # "**Constrain what can be cited**": a label, no claim
TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{2,}")
MATH_LINE = re.compile(r"^\s*\$.*\$[.,;]?\s*$")   # a line that is only a formula
CELL_SPLIT = re.compile(r"(?<!\\)\|(?=(?:[^`]*`[^`]*`)*[^`]*$)")  # pipes outside `code`
MARKUP = re.compile(r"[*`$\\{}_^]")
# "What is the difference between A and B?", "A vs B", "How do A and B differ?": the two things a comparison
# entry is about.
COMPARED = re.compile(r"(?:between|compare|contrast)\s+(?P<a>[^?,.]+?)\s+(?:and|with|to)\s+(?P<b>[^?,.]+?)\s*(?:[?,.]|$)"
                      r"|^(?:\w+\s+){0,3}?(?P<c>[^?,.]+?)\s+(?:vs\.?|versus)\s+(?P<d>[^?,.]+?)\s*(?:[?,.]|$)"
                      r"|^how\s+(?:do|does|did)\s+(?!you\b)(?P<e>(?:[^\s?,.]+\s+){0,3}?[^\s?,.]+)\s+and\s+(?P<f>[^?,.]+?)\s+differ\b",
                      re.I)
BOTH = re.compile(r"^Both\s+(?=[a-z]+(?<!s)\b)")
# "Compare A, B, C and D." / "Explain A, B and C.": the things an "All four …" opening counts.
LISTED = re.compile(r"^(?:compare|contrast|explain|define|what are)\s+(?P<items>[^?.:;]+?)\s*(?:[?.:;]|$)", re.I)
ALL_OF = re.compile(r"^All (?P<count>two|three|four|five) (?P<verb>are )?")
COUNTS = {"two": 2, "three": 3, "four": 4, "five": 5}
THIS_IS = re.compile(r"^This is (?:called |known as )?(?=[^:]{3,80}:)")   # "This is mode collapse: the …"
# The first word of a sentence made to open an answer (_capitalize), past bold or italic markup and an
# opening quote or bracket; it is capitalized only when it is "a" or a lowercase word of two letters or more.
FIRST_WORD = re.compile(r"^[*_\"“‘(\[]*(?P<word>\S+)")
PLAIN_WORD = re.compile(r"a|[a-z][a-z'’-]+")
WORD_END = ".,;:!?*_\"”’)]"
MIN_INTRO_WORDS = 8   # a sentence ending in ':' this long is a claim worth showing alone ('…:' -> '….')

# What each kind of question asks for, and the words of a unit that supply it (matched on stems).
INTENTS = {
    "comparison": (re.compile(r"\b(differen\w*|vs\.?|versus|compar\w*|contrast\w*|distinguish\w*|"
                              r"better than|instead of|rather than|or (?:a |an |the )?\w+\?)", re.I),
                   "whereas while unlike but instead differ difference than compared however rather "
                   "both neither trade-off cheaper faster slower more fewer less"),
    "reason": (re.compile(r"(^|\W)(why|how come|what is the (reason|point|purpose|motivation)|what makes)\b", re.I),
               "because since so therefore thus reason cause causes otherwise without prevents ensures "
               "allows lets means hence keeps avoids"),
    "remedy": (re.compile(r"\b(fix\w*|prevent\w*|avoid\w*|mitigat\w*|reduc\w*|handle|deal with|overcom\w*|"
                          r"address\w*|solv\w*|remed\w*|cure|combat|alleviat\w*|tackl\w*|improv\w*|"
                          r"what (can|would|should) you do|debug\w*)\b", re.I),
               "fix remedy use clip lower raise add try reduce prevent avoid switch check normalize "
               "initialize regularize increase decrease replace tune schedule monitor"),
}
INTENT_BONUS = 0.10        # a unit holding a cue word of the question's intent
TABLE_BONUS = 0.15         # a table answers a comparison better than any single sentence
KEY_POINT_BONUS = 0.20     # per key point a unit states that no chosen unit states yet
KEY_POINT_RECALL = 0.6     # share of a key point's content words a unit must contain to state it
TERM_WEIGHT = 0.15         # share of the question's content words a unit contains
WORD_BUDGET = 150          # words after the opening (bank answers run 120-300)
MAX_UNITS = 6              # units after the opening
SEE_ALSO = 2               # related entries named at the end
SHORT_OPENING = 10         # an opening sentence shorter than this takes the next one along


@dataclass(frozen=True)
class Unit:
    index: int                    # order in the entry
    kind: str                     # "sentence" | "item" | "table" | "formula"
    pieces: tuple[str, ...]       # what is shown, each piece cited separately (a table: one per row)
    block: int                    # the paragraph, list or table it belongs to

    @property
    def text(self) -> str:
        return " ".join(self.pieces)

    @property
    def plain(self) -> str:
        """Without markdown, for embedding and word matching."""
        return MARKUP.sub(" ", self.text)

    @property
    def words(self) -> int:
        return len(self.text.split())

    def resolved(self, question: str) -> Unit:
        """An opening that points at the question, made to stand alone: 'Both normalize …' in the entry
        on batch norm vs layer norm reads 'Batch norm and layer norm both normalize …', and 'This is
        mode collapse: the …' reads 'Mode collapse: the …'. Other units come back unchanged."""
        if self.kind != "sentence":
            return self
        if THIS_IS.match(self.pieces[0]):
            return Unit(self.index, self.kind, (_capitalize(THIS_IS.sub("", self.pieces[0])),), self.block)
        if opening := ALL_OF.match(self.pieces[0]):
            return self._all_of(question, opening)
        compared = COMPARED.search(question or "")
        if not (compared and BOTH.match(self.pieces[0])):
            return self
        a = compared.group("a") or compared.group("c") or compared.group("e")
        b = compared.group("b") or compared.group("d") or compared.group("f")
        text = BOTH.sub(f"{a[:1].upper()}{a[1:]} and {b} both ", self.pieces[0])
        return Unit(self.index, self.kind, (text,), self.block)

    def _all_of(self, question: str, opening: re.Match) -> Unit:
        """'All four are PEFT methods …' in the entry comparing LoRA, adapters, prefix tuning and prompt tuning
        reads 'LoRA, adapters, prefix tuning and prompt tuning are all PEFT methods …', when the question
        lists as many things as the opening counts."""
        listed = LISTED.search(question or "")
        items = re.split(r",\s*(?:and\s+)?|\s+and\s+", listed.group("items")) if listed else []
        if len(items) != COUNTS[opening.group("count")]:
            return self
        named = _capitalize(listed.group("items"))
        rest = self.pieces[0][opening.end():]
        return Unit(self.index, self.kind, (f"{named} are all {rest}" if opening.group("verb") else f"{named} all {rest}",),
                    self.block)

    @property
    def refers_back(self) -> bool:
        return self.kind in ("sentence", "formula") and bool(REFERS_BACK.match(self.pieces[0]))


@dataclass
class Composed:
    text: str                               # the answer, citing [n] for sources[n - 1]
    sources: list = field(default_factory=list)   # the cited hits, in citation order
    lead: Unit | None = None
    units: list[Unit] = field(default_factory=list)   # the primary entry's units shown, opening first


# --- parsing an entry into units --------------------------------------------------------------------
def units_of(markdown: str) -> list[Unit]:
    """The entry's answer as units that can be shown alone (see the module docstring)."""
    blocks = _blocks(markdown)
    units: list[Unit] = []
    for b, (kind, lines) in enumerate(blocks):
        if kind == "list":
            units += [Unit(len(units), "item", tuple(split_sentences(item)) or (item,), b) for item in lines]
        elif kind == "table":
            rows = _table_rows(lines)
            if rows:
                units.append(Unit(len(units), "table", tuple(rows), b))
        elif kind == "math":
            _attach_formula(units, " ".join(lines), blocks, b)
        else:
            for sentence in split_sentences(" ".join(lines)):
                if units and units[-1].kind == "formula" and units[-1].pieces[-1].endswith("$$") \
                        and sentence[:1].islower():
                    units[-1] = Unit(units[-1].index, "formula", (f"{units[-1].pieces[0]} {sentence}",), b)
                    continue
                units.append(Unit(len(units), "sentence", (_unlabel(sentence),), b))
    kept = [_as_claim(u) for u in units if _showable(u)]
    return [Unit(k, u.kind, u.pieces, u.block) for k, u in enumerate(kept)]


def _as_claim(unit: Unit) -> Unit:
    """A long sentence or item that introduced a list ('A transformer block has two sublayers:') ends
    with '.' (its list is shown as units of its own)."""
    if unit.kind in ("sentence", "item") and unit.text.endswith(":"):
        return Unit(unit.index, unit.kind, (unit.text[:-1].rstrip() + ".",), unit.block)
    return unit


def _blocks(markdown: str) -> list[tuple[str, list[str]]]:
    """(kind, lines) for each paragraph, list (one entry per item), table and display formula."""
    blocks: list[tuple[str, list[str]]] = []
    in_code = False
    for raw in markdown.split("\n"):
        line = BOLD_NUMBER.sub(r"\1\2. **", raw.rstrip())  # "**1. Check retrieval.** …" is a list item
        line = _protect_brackets(line)
        if line.lstrip().startswith("```"):
            in_code = not in_code  # code is shown in the cited passage, never cut into an answer
            blocks.append(("gap", []))
            continue
        if in_code or not line.strip() or line.lstrip().startswith("#"):
            blocks.append(("gap", []))
            continue
        kind = ("table" if TABLE_LINE.match(line) else "math" if MATH_LINE.match(line)
                else "list" if LIST_MARK.match(line) else "para")
        last = blocks[-1] if blocks else ("gap", [])
        if kind == "list":
            if last[0] == "list":
                last[1].append(LIST_MARK.sub("", line).strip())
            else:
                blocks.append(("list", [LIST_MARK.sub("", line).strip()]))
        elif last[0] == "list" and (raw[:1].isspace() or kind == "math" or line[:1].islower()):
            last[1][-1] += " " + line.strip()  # an item's continuation: indented, its formula, "and …"
        elif kind == last[0] and kind != "gap":
            last[1].append(line.strip())
        else:
            blocks.append((kind, [line.strip()]))
    return [(kind, lines) for kind, lines in blocks if kind != "gap"]


def _protect_brackets(line: str) -> str:
    """'[0, 1]' in the entry's text is not one of our citations: escaped in prose (markdown shows '[0, 1]'),
    written with \\lbrack and \\rbrack inside $…$ (LaTeX shows the same)."""
    segments = line.split("$")
    for k, segment in enumerate(segments):
        opening, closing = (r"\lbrack ", r"\rbrack ") if k % 2 else ("\\[", "\\]")
        segments[k] = LITERAL_MARKER.sub(
            lambda m, o=opening, c=closing: m.group(0).replace("[", o).replace("]", c), segment)
    return "$".join(segments)


def _table_rows(lines: list[str]) -> list[str]:
    """A markdown table as one line per data row: '**Gates**: LSTM: forget, input, output; GRU: …'."""
    return [shown for _, shown in table_rows(lines)]


def table_rows(lines: list[str]) -> list[tuple[str, str]]:
    """(the row's line as the entry writes it, the row as an answer shows it) for each data row."""
    written = [line.strip() for line in lines if not TABLE_RULE.match(line)]
    cells = [[c.strip() for c in CELL_SPLIT.split(line.strip("|"))] for line in written]
    if len(cells) < 2:
        return []
    header = cells[0]
    out = []
    for line, row in zip(written[1:], cells[1:], strict=True):
        label = row[0].strip("*") if row else ""  # bold already: the row is shown with its label bold
        values = [f"{h}: {v}" if h else v for h, v in zip(header[1:], row[1:], strict=False) if v]
        out.append((line, (f"**{label}**: " if label else "") + "; ".join(values)))
    return out


def table_rows_of(markdown: str) -> list[tuple[str, str]]:
    """Every data row of every table in an entry's answer, as `table_rows` gives them."""
    return [pair for kind, lines in _blocks(markdown) if kind == "table" for pair in table_rows(lines)]


def _attach_formula(units: list[Unit], formula: str, blocks, b: int) -> None:
    """A display formula belongs to the sentence that introduces it ('the output width is')."""
    if units and units[-1].kind in ("sentence", "formula") and units[-1].block == b - 1:
        last = units[-1]
        units[-1] = Unit(last.index, "formula", (f"{last.text} {formula}",), b)
    else:
        units.append(Unit(len(units), "formula", (formula,), b))


def _unlabel(sentence: str) -> str:
    text = LABEL.sub("", sentence.strip()).strip()
    return _capitalize(text) if text != sentence.strip() else text


def _capitalize(text: str) -> str:
    """'**mode collapse**: …' -> '**Mode collapse**: …': the first letter, past any markup, of a plain
    lowercase word. A symbol, an identifier or a name is left as its author wrote it: after a label the
    bank's sentences open on `p is the drop probability`, `mAP averages`, `torch.compile speeds` and
    `$\\mathrm{KL}(p\\|q) = …$`, which read 'P', 'MAP', 'Torch.compile' and a formula KaTeX cannot render."""
    first = FIRST_WORD.match(text)
    if not first or not PLAIN_WORD.fullmatch(first.group("word").rstrip(WORD_END)):
        return text
    at = first.start("word")
    return text[:at] + text[at].upper() + text[at + 1:]


def _showable(unit: Unit) -> bool:
    """Not a bare list intro ('Trade-offs:'), a label, or a lone formula without words."""
    text = unit.text.strip()
    if HEADING_ITEM.match(text):
        return False
    if unit.kind in ("sentence", "item") and (len(text.split()) < (MIN_INTRO_WORDS if text.endswith(":") else 4)):
        return False
    return bool(re.search(r"[A-Za-z]{3}", MARKUP.sub("", text)))


def entry_body(text: str) -> str:
    """A passage's answer without its first line, the question (whole answers and chunks repeat it)."""
    return text.split("\n", 1)[-1]


# --- choosing what to show --------------------------------------------------------------------------
def intents(question: str) -> list[str]:
    return [name for name, (pattern, _) in INTENTS.items() if pattern.search(question)]


def opening(units: list[Unit], entry_question: str = "") -> list[Unit]:
    """The entry's direct answer: its first unit that stands alone (a "Both …" opening made to stand
    alone with the two things the entry compares), and the next when it is very short."""
    units = [units[0].resolved(entry_question), *units[1:]] if units else units
    for k, unit in enumerate(units):
        if unit.kind in ("sentence", "formula") and not unit.refers_back:
            following = units[k + 1] if k + 1 < len(units) else None
            if unit.words < SHORT_OPENING and following and following.kind == "sentence" \
                    and following.block == unit.block:
                return [unit, following]
            return [unit]
    return units[:1]


def choose(question: str, units: list[Unit], embeddings, key_points=(), budget: int = WORD_BUDGET,
           limit: int = MAX_UNITS, shown: set[str] = frozenset(), entry_question: str = "") -> list[Unit]:
    """The opening, then the units that best answer the question, in the entry's order."""
    if not units:
        return []
    units = [units[0].resolved(entry_question), *units[1:]]
    lead = [u for u in opening(units) if u.text not in shown]
    vectors = np.asarray(embeddings.embed_sentences([u.plain for u in units]))
    query = np.asarray(embeddings.embed_query(question))
    terms = content_words(question)
    cues = set().union(*(content_words(INTENTS[name][1]) for name in intents(question))) if intents(question) else set()
    words = [content_words(u.plain) for u in units]
    base = vectors @ query + np.array([TERM_WEIGHT * len(terms & w) / len(terms) if terms else 0.0 for w in words])
    base += np.array([INTENT_BONUS * bool(cues & w) for w in words])
    if "comparison" in intents(question):
        base += np.array([TABLE_BONUS * (u.kind == "table") for u in units])
    points = _point_words(key_points)
    stated = [_states(words[u.index], points) for u in units]
    covered = set().union(*(stated[u.index] for u in lead)) if lead else set()
    chosen, skipped, used = {u.index for u in lead}, set(), 0
    while len(chosen) - len(lead) < limit:
        candidates = [(base[k] + KEY_POINT_BONUS * len(stated[k] - covered), k) for k in range(len(units))
                      if k not in chosen | skipped and units[k].text not in shown
                      and used + units[k].words <= budget]
        if not candidates:
            break
        _, k = max(candidates)
        if units[k].refers_back and k - 1 not in chosen:
            before = units[k - 1] if k else None
            if before is None or before.block != units[k].block or used + units[k].words + before.words > budget:
                skipped.add(k)  # what it refers to cannot be shown with it
                continue
            chosen.add(k - 1)  # show what it refers to first
            used += before.words
            covered |= stated[k - 1]
        chosen.add(k)
        used += units[k].words
        covered |= stated[k]
    first = lead[0].index if lead else None
    return sorted((u for u in units if u.index in chosen), key=lambda u: (u.index != first, u.index))


def _states(words: set[str], points: list[set[str]]) -> set[int]:
    return {i for i, p in enumerate(points) if len(p & words) / len(p) >= KEY_POINT_RECALL}


def _point_words(key_points) -> list[set[str]]:
    """The content words of each key point that has any."""
    return [words for words in map(content_words, key_points) if words]


# --- rendering ----------------------------------------------------------------------------------------
def cite(text: str, n: int) -> str:
    """Every sentence of `text` gets the marker [n] (before its closing punctuation)."""
    return " ".join(with_citation(s, [n]) for s in split_sentences(text) or [text])


def with_citation(sentence: str, numbers: list[int]) -> str:
    """'Claim.' -> 'Claim [2].' (the marker goes before the closing punctuation)."""
    marker = "".join(f"[{n}]" for n in numbers)
    sentence = sentence.strip()
    if sentence[-1:] in ".!?":
        return f"{sentence[:-1].rstrip()} {marker}{sentence[-1]}"
    return f"{sentence} {marker}."


def render(units: list[Unit], n: int) -> str:
    """Units as markdown citing [n]: prose sentences of one paragraph together, items and rows as lists."""
    out: list[str] = []
    previous = None
    for unit in units:
        if unit.kind in ("item", "table"):
            rows = unit.pieces if unit.kind == "table" else [unit.text]
            out += [f"- {cite(row, n)}" for row in rows]
            previous = None
            continue
        text = cite(unit.text, n)
        if previous is not None and out and previous.block == unit.block and previous.index == unit.index - 1:
            out[-1] += " " + text
        else:
            out.append(text)
        previous = unit
    return _join(out)


def _join(lines: list[str]) -> str:
    """Paragraphs separated by blank lines, list lines kept together."""
    text = ""
    for line in lines:
        if text:
            text += "\n" if line.startswith("- ") and text.rsplit("\n", 1)[-1].startswith("- ") else "\n\n"
        text += line
    return text


SEE_ALSO_MARK = "See also: "  # how a line pointing at a related entry begins: a pointer, not a claim


def see_also_line(hit, number: int) -> str:
    """'See also: How does X work [3]?'; a question of two sentences is cited in both."""
    return SEE_ALSO_MARK + cite(hit.metadata.get("question") or "", number)


def see_also_numbers(text: str) -> set[int]:
    """The citation numbers used only on "See also" lines: pointers to related entries, not support."""
    lines = text.split("\n")
    pointed = {n for line in lines if line.startswith(SEE_ALSO_MARK) for n in citations_of(line)}
    return pointed - {n for line in lines if not line.startswith(SEE_ALSO_MARK) for n in citations_of(line)}


def renumber(text: str, sources: list) -> tuple[str, list]:
    """Citations renumbered 1..n in order of first appearance; the sources they now point at."""
    order: list[int] = []
    for group in CITATION.findall(text):
        for number in re.split(r"\s*,\s*", group):
            if int(number) not in order and 1 <= int(number) <= len(sources):
                order.append(int(number))
    new = {old: k + 1 for k, old in enumerate(order)}

    def replace(match: re.Match) -> str:
        numbers = [new[int(x)] for x in re.split(r"\s*,\s*", match.group(1)) if int(x) in new]
        return " " + "".join(f"[{x}]" for x in numbers) if numbers else ""

    return CITATION.sub(replace, text), [sources[old - 1] for old in order]


# --- the whole answer -------------------------------------------------------------------------------
def compose(question: str, hits: list, texts: list[str], embeddings, entries: dict,
            correction=None) -> Composed:
    """The answer from the relevant hits (best first) and their whole texts: an optional correction of
    the question's premise, the first entry's opening and the units that answer the question, for a
    comparison the opening of the entry about the other thing compared, then "See also" lines."""
    if not hits:
        return Composed("")
    entry = entries.get(hits[0].metadata.get("qid"))
    units = units_of(entry_body(texts[0]))
    shown = {correction.sentence} if correction else set()
    chosen = choose(question, units, embeddings, entry.key_points if entry else (), shown=shown,
                    entry_question=hits[0].metadata.get("question") or "")
    parts = [correction.render(correction.source)] if correction else []
    parts.append(render(chosen, 1))
    used = {1} | ({correction.source} if correction else set())
    other = _other_side(question, hits) if "comparison" in intents(question) else None
    if other is not None and other + 1 not in used:
        parts.append(render(opening(units_of(entry_body(texts[other])), hits[other].metadata.get("question") or ""),
                            other + 1))
        used.add(other + 1)
    related = [k + 1 for k in range(len(hits)) if k + 1 not in used][:SEE_ALSO]
    lines = [see_also_line(hits[k - 1], k) for k in related if hits[k - 1].metadata.get("question")]
    text = "\n\n".join(p for p in parts + (["\n".join(lines)] if lines else []) if p.strip())
    text, sources = renumber(text, hits)
    return Composed(text, sources, chosen[0] if chosen else None, chosen)


def _other_side(question: str, hits: list) -> int | None:
    """For "X vs Y": the index of a relevant hit about a term of the question the first entry's
    question does not name (the first answers X; this one answers Y)."""
    asked = content_words(question)
    first = content_words(hits[0].metadata.get("question") or "")
    for k, hit in enumerate(hits[1:], start=1):
        if (asked - first) & content_words(hit.metadata.get("question") or ""):
            return k
    return None
