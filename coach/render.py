"""Every text the coach shows a person, rendered in one place: terminal text, markdown and HTML.

The CLI, the Gradio app and the interview export all show the same few things (search results, a graded
answer, a scorecard, a chat answer with its sources). Rendering each of them here, once per output
format, keeps the three in step: a change to what a grade shows is made in one function.

Everything here is pure: functions of the JSON dicts of the contract (a grade, a scorecard, a search
result) or of an `Answer`, returning a string. No Gradio, no files; the one exception to "no I/O" is
`sources_html`, which asks the store for a cited chunk's metadata and section through its public methods.
"""
from __future__ import annotations

import re
import time
from functools import lru_cache
from html import escape
from urllib.parse import quote

NO_SCORE = "–"
# Evidence is marked in a passage's markdown with two private-use characters, which survive rendering;
# the span between them then becomes <mark> elements (split around tags, so the HTML stays well nested).
MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"
SEARCH_PREVIEW = 600   # characters of a passage a search result shows, cut at a paragraph's end
LIBRARY_NAMES = {"bank": "Bank", "docs": "My documents"}


# --- search ------------------------------------------------------------------------------------
def search_text(results: list[dict]) -> str:
    """Search results as the terminal shows them: one line per hit with its calibrated relevance."""
    if not results:
        return "no results"
    lines = []
    for hit in results:
        where = f"part {hit['part']}, {hit['topic']}" if hit["part"] else hit["topic"] or ""
        lines.append(f"{hit['rank']}. [{hit['score']:.2f}] {hit['question']}  ({where}; {hit['source']}; "
                     f"{LIBRARY_NAMES.get(hit.get('library'), 'Bank')})")
    return "\n".join(lines)


def inert(text: str) -> str:
    """Untrusted text (passages, questions) made safe to put in markdown that a page renders: markup
    characters become entities, so "<img onerror=...>" shows as text and never becomes a tag."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def preview(text: str, limit: int = SEARCH_PREVIEW) -> str:
    """The first paragraphs of a passage, up to about `limit` characters, cut between blocks so that a
    table, a code block or a formula is shown whole or not at all (the first block is always shown)."""
    blocks, kept, fence = re.split(r"\n\s*\n", text), [], False
    for block in blocks:
        if kept and not fence and len("\n\n".join([*kept, block])) > limit:
            return "\n\n".join(kept) + "\n\n…"
        kept.append(block)
        fence ^= block.count("```") % 2 == 1  # a code block with blank lines inside spans several blocks
    return "\n\n".join(kept)


def search_html(results: list[dict]) -> str:
    """Search results as the Search tab shows them: each passage rendered (tables as tables, code as
    code) with raw HTML escaped, under its question, library and relevance."""
    if not results:
        return "<p><em>No results.</em></p>"
    items = []
    for r in results:
        library = r.get("library") or "bank"
        where = f"part {r['part']} · " if r.get("part") else ""
        items.append(f"<div class='result' data-library='{escape(library)}'><p><b>{r['rank']}. {escape(r['question'] or '')}"
                     f"</b> <span class='library library-{escape(library)}'>{LIBRARY_NAMES.get(library, 'Bank')}</span> · "
                     f"{where}{escape(str(r['topic'] or ''))} · relevance {r['score']:.2f} · "
                     f"<code>{escape(r['source'] or '')}</code></p>{markdown_html(_passage(r))}</div>")
    return "".join(items)


def _passage(result: dict) -> str:
    """The passage under its question, cut between whole blocks (`preview`)."""
    text, question = result["text"], result["question"]
    return preview(text[len(question):].strip() if question and text.startswith(question) else text)


# --- the Library preview ------------------------------------------------------------------------
def preview_html(previews: list[dict], shown: int = 50) -> str:
    """Per file: how many questions were detected and their titles, and what was dropped (grouped by why,
    with examples), so a user can check the split before and after indexing."""
    parts = []
    for p in previews:
        name = escape(p.get("file") or "")
        if p.get("error"):
            parts.append(f"<div class='preview' data-file='{name}'><p><b>{name}</b>: cannot be read: "
                         f"{escape(p['error'])}</p></div>")
            continue
        titles = p.get("questions") or []
        items = "".join(f"<li>{escape(t)}</li>" for t in titles[:shown])
        more = f"<li>… and {len(titles) - shown} more</li>" if len(titles) > shown else ""
        groups: dict[str, list[str]] = {}
        for d in p.get("dropped") or []:
            groups.setdefault(d["kind"], []).append(d["text"])
        dropped = "".join(f"<li>{escape(kind)} ({len(texts)}): " + "; ".join(f"<q>{escape(t[:60])}</q>" for t in texts[:3])
                          + ("; …" if len(texts) > 3 else "") + "</li>" for kind, texts in groups.items())
        parts.append(f"<div class='preview' data-file='{name}'><p><b>{name}</b>: <span class='count'>{len(titles)}</span> "
                     f"question{'s' if len(titles) != 1 else ''} detected</p><ol class='titles'>{items}{more}</ol>"
                     f"<p>Dropped: {sum(len(t) for t in groups.values()) or 'nothing'}</p>"
                     f"<ul class='dropped'>{dropped}</ul></div>")
    return "".join(parts) or "<p><em>Choose files to preview.</em></p>"


# --- answers -----------------------------------------------------------------------------------
def answer_text(answer) -> str:
    """A grounded answer as the terminal shows it: the text, then one line per citation."""
    lines = [answer.answer]
    lines += [f"  [{c['n']}] {c['question']}  ({c['source']}, {LIBRARY_NAMES.get(c.get('library'), 'Bank')}, "
              f"relevance {c['score']:.2f})" for c in answer.citations]
    return "\n".join(lines)


def chat_markdown(answer) -> str:
    """The answer as shown in the chat: [n] become links to the side panel; refusals and blocked
    questions are marked so they never look like an answer."""
    if answer.blocked:
        return f"⛔ **Blocked** ({answer.guard}): {inert(answer.answer)}"
    if answer.refused:
        text = "🚫 **Not in the bank.** The question bank does not cover this, so there is no grounded answer."
        if answer.suggestions:
            text += "\n\nNearby questions it does cover:\n" + "\n".join(f"- {inert(s)}" for s in answer.suggestions)
        return text
    hover = {c["n"]: " … ".join(c.get("evidence") or []) for c in answer.citations}
    text = re.sub(r"\[(\d+)\]", lambda m: citation_link(int(m.group(1)), hover.get(int(m.group(1)), "")),
                  inert(answer.answer))
    if answer.fallback:
        text += f"\n\n_Composed from the bank's own sentences: {answer.fallback}._"
    return text


def citation_link(n: int, supporting: str) -> str:
    """[n] as a markdown link to the side panel's passage; hovering it shows the supporting sentence."""
    if not supporting:
        return f"[[{n}]](#source-{n})"
    title = inert(" ".join(supporting.split())).replace('"', "”")  # a straight quote would end the title
    return f'[[{n}]](#source-{n} "{title}")'


def sources_html(citations: list[dict]) -> str:
    """One collapsible panel per cited passage (question, part, topic, source file, the whole passage)
    with the sentences that support the answer highlighted. Each citation carries its `passage` text
    and may carry `part` and `topic` (the chat adds them from the store)."""
    if not citations:
        return ""
    panels = []
    for c in citations:
        text = c.get("passage") or ""
        body = markdown_html(highlight(text.split("\n\n", 1)[1] if "\n\n" in text else text, c.get("evidence", [])))
        library = c.get("library") or "bank"
        where = f"Part {escape(str(c.get('part') or '?'))} · " if library == "bank" else ""
        panels.append(
            f"<details id='source-{c['n']}' class='source' data-library='{escape(library)}'><summary><b>[{c['n']}]</b> "
            f"{escape(c['question'] or '')} <span class='library library-{escape(library)}'>"
            f"{LIBRARY_NAMES.get(library, 'Bank')}</span></summary><p class='meta'>{where}"
            f"{escape(str(c.get('topic') or ''))} · <code>{escape(c['source'] or '')}</code> · relevance {c['score']:.2f}"
            f"</p><div class='passage' tabindex='0' role='region' aria-label='passage [{c['n']}]'>{body}</div></details>")
    return "<h4>Sources</h4>" + "".join(panels)


def highlight(markdown: str, quotes: list[str]) -> str:
    """The markdown with each quoted sentence wrapped in the evidence markers (table rows are left
    unmarked: a marker would break the row)."""
    for sentence in quotes:
        if sentence and not sentence.lstrip().startswith("|"):
            markdown = markdown.replace(sentence, f"{MARK_OPEN}{sentence}{MARK_CLOSE}", 1)
    return markdown


def markdown_html(text: str) -> str:
    """Bank answers are markdown (lists, bold, tables, code, $formulas$ rendered as MathML). Raw HTML stays
    escaped: uploaded documents are untrusted, and a passage must never inject markup or script into the
    page. Evidence markers (see `highlight`) become <mark> elements."""
    html = re.sub(f"{MARK_OPEN}(.*?){MARK_CLOSE}", _marked, _markdown().render(text), flags=re.S)
    return html.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")  # a stray marker of an untrusted text


def _marked(match: re.Match) -> str:
    """A highlighted span as <mark> elements that close before and reopen after every tag (a formula is
    kept whole), so that the marks never cross an element's boundary."""
    inner = re.sub(r"(<math\b.*?</math>|<[^>]+>)", r"</mark>\1<mark>", match.group(1), flags=re.S)
    return f"<mark>{inner}</mark>".replace("<mark></mark>", "")


@lru_cache(maxsize=1)
def _markdown():
    """A markdown-it parser (CommonMark, tables, $ formulas); imported here, not at the top: the terminal
    commands import this module and print text, and importing markdown-it cost them ~50 ms."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin

    return MarkdownIt("commonmark", {"html": False}).enable("table").use(dollarmath_plugin, renderer=_mathml)


def _mathml(latex: str, options: dict) -> str:
    """A formula as MathML (Chromium, Firefox and Safari draw it natively); the source when it does not parse."""
    from latex2mathml.converter import convert

    display = "block" if options.get("display_mode") else "inline"
    try:
        return convert(latex, display=display)
    except Exception:  # a malformed formula is shown as its source, never an error
        return f"<code>{escape(latex)}</code>"


# --- a saved conversation ----------------------------------------------------------------------
def conversation_markdown(conversation: dict) -> str:
    """A saved conversation (`Conversations.get`) as a markdown document: each question and answer, then
    each cited passage quoted in full, with the sentences that support the answer listed above it."""
    lines = [f"# {conversation['title']}", "",
             f"_Saved conversation · started {session_started(conversation)} · {len(conversation['turns'])} "
             "questions_", ""]
    for turn in conversation["turns"]:
        answer = turn["answer"]
        lines += [f"## {turn['question']}", "", _answer_words(answer), ""]
        for c in answer.get("citations", []):
            lines += [f"**[{c['n']}] {c['question']}** (`{c['source']}`)", ""]
            lines += [f"Supports the answer: “{quote_}”" for quote_ in c.get("evidence", [])]
            lines += ["", _quote(c.get("passage") or "(passage not saved)"), ""]
    return "\n".join(lines) + "\n"


def _answer_words(answer: dict) -> str:
    """An answer's text as saved, marked when it was a refusal or blocked."""
    if answer.get("blocked"):
        return f"**Blocked** ({answer.get('guard')}): {answer['answer']}"
    if answer.get("refused"):
        return f"**Not in the bank.** {answer['answer']}"
    return answer["answer"]


# --- a graded answer ---------------------------------------------------------------------------
def grade_text(grade: dict) -> str:
    """A grade as the terminal shows it: score, covered and missing points, feedback, citations."""
    lines = [f"Score: {grade['score']:.1f} / 10"]
    lines += [f"  ✓ {p}" for p in grade["covered"]]
    lines += [f"  ✗ {p}" for p in grade["missing"]]
    lines += [f"  ! you said: {m['sentence']}\n    correct: {m['right']} [1]" for m in grade.get("mistakes", [])]
    lines.append(grade["feedback"])
    for c in grade["citations"]:
        lines.append(f"  [{c['n']}] {c['question']}  ({c['source']})")
    return "\n".join(lines)


def feedback_markdown(grade: dict, question: str | None = None, open_answer: bool = False) -> str:
    """A graded answer in the Interview tab: score, covered and missing key points, feedback, follow-up,
    the cited model answer (folded, or shown open when `open_answer`: "I don't know / reveal" asked for
    it). With the `question`, each missing point links to the chat's answer on it."""
    lines = [f"## {grade['score']:.1f} / 10", "", *_key_points(grade, question), *_mistakes(grade),
             grade.get("feedback", "")]
    if grade.get("key_points_derived"):
        lines += ["", f"_{DERIVED_NOTE}_"]
    if grade.get("followup"):
        lines += ["", f"**Follow-up:** {grade['followup']}"]
    for c in grade.get("citations", []):
        lines += ["", f"[{c['n']}] **{c['question']}** · `{c['source']}`"]
    if grade.get("model_answer"):
        lines += ["", f"<details{' open' if open_answer else ''}><summary>Model answer [1]</summary>", "",
                  grade["model_answer"], "", "</details>"]
    return "\n".join(lines)


def _key_points(grade: dict, question: str | None = None) -> list[str]:
    """Covered and missing key points as two bulleted lists, each followed by an empty line; with the
    `question`, each missing point is a link that asks the chat about it.
    Words rather than emoji marks: headless and minimal systems often lack an emoji font."""
    lines = []
    if grade.get("covered"):
        lines += ["**Covered**", "", *(f"- {p}" for p in grade["covered"]), ""]
    if grade.get("missing"):
        shown = [ask_link(p, question) if question else p for p in grade["missing"]]
        lines += ["**Missing**", "", *(f"- {p}" for p in shown), ""]
    return lines


def _mistakes(grade: dict) -> list[str]:
    """What the answer got wrong: the sentence, the misconception it states and the bank's correction."""
    if not grade.get("mistakes"):
        return []
    lines = ["**Mistakes**", ""]
    for m in grade["mistakes"]:
        named = "this contradicts the model answer" if m["wrong"] == m["sentence"] else \
            f"that is the misconception \"{m['wrong']}\""
        if m.get("kind") == "unsupported":  # an on-topic claim that states no key point (coach.grader)
            named = "that is not what the model answer says"
        lines.append(f"- You said: _{m['sentence']}_ — {named}. Correct: {m['right']} [1]")
    return lines + [""]


def chat_question_about(point: str, question: str) -> str:
    """What the chat is asked when a reader follows a missed key point: the interview question names the
    entry (so retrieval finds it) and the point says what to explain."""
    return f"{question.rstrip()} Explain this key point: {point.rstrip('.')}."


def ask_link(point: str, question: str) -> str:
    """A missed key point as a link (#ask=...) that the page's script turns into a chat question."""
    text = point.replace("[", "(").replace("]", ")")
    return f"[{text}](#ask={quote(chat_question_about(point, question), safe='')} \"Ask the chat about this point\")"


def missed_points_markdown(turns: list) -> str:
    """After an interview: every key point missed, each linking to the chat answer that explains it."""
    lines = [f"- {ask_link(point, turn.question)} ({turn.topic})"
             for turn in turns for point in turn.grade.get("missing", [])]
    if not lines:
        return ""
    return "### Missed key points\n\nEach link asks the chat to explain the point from the bank.\n\n" + "\n".join(lines)


# --- an interview ------------------------------------------------------------------------------
DERIVED_NOTE = ("From your documents: its key points were derived from the answer's own sentences, not "
                "written by the bank's authors, so the grade is only as good as that answer.")


def question_text(entry, number: int, total: int) -> str:
    """The current interview question in the terminal."""
    text = f"Question {number} / {total}  ({entry.topic}, {entry.difficulty})\n{entry.question}"
    return text + (f"\n({DERIVED_NOTE})" if entry.id.startswith("doc:") else "")


def question_markdown(entry, number: int, total: int) -> str:
    """The current interview question on the Interview tab's card."""
    text = f"**Question {number} / {total}** · {entry.topic} · {entry.difficulty}\n\n### {entry.question}"
    if entry.id.startswith("doc:"):
        text += f"\n\n_{DERIVED_NOTE} Source: `{entry.source}`._"
    return text


def session_started(session: dict) -> str:
    """When a session started, to the minute, in local time."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(session["created"]))


def session_line(session: dict) -> str:
    """One past session (a row of `Interviewer.history`) as a line of `app.py interview --history`."""
    mean = NO_SCORE if session["mean_score"] is None else f"{session['mean_score']:.1f}"
    return (f"{session['id']}  {session_started(session)}  {session['mode']:8} {session['status']:8} "
            f"{session['answered']}/{session['questions']} answered, mean {mean}")


def session_row(session: dict) -> list:
    """One past session as a row of the Interview tab's table (the mean stays a number for sorting)."""
    mean = NO_SCORE if session["mean_score"] is None else session["mean_score"]
    return [session["id"], session_started(session), session["mode"], session["status"],
            f"{session['answered']} / {session['questions']}", mean]


def scorecard_text(card: dict) -> str:
    """The end-of-interview scorecard in the terminal, with a bar per topic."""
    lines = [f"Scorecard: {card['answered']} of {card['questions']} questions, {card['skipped']} skipped, "
             f"mean score {_mean_of_ten(card)}"]
    for topic, score in card["per_topic"].items():
        lines.append(f"  {topic:34} {'█' * round(score)}{'·' * (10 - round(score))} {score:.1f}")
    if card["weakest"]:
        lines.append("Review these (python app.py interview --review): " + "; ".join(card["weakest"]))
    return "\n".join(lines)


def scorecard_markdown(card: dict) -> str:
    """The scorecard on the Interview tab (the chart of the topics is drawn beside it)."""
    text = (f"## Scorecard\n\n**Mean score {_mean_of_ten(card)}** · {card['answered']} of {card['questions']} "
            f"questions · {card['skipped']} skipped")
    if card["weakest"]:
        text += "\n\nReview next (they come back first in review mode):\n" + "\n".join(f"- {q}" for q in card["weakest"])
    return text


def _mean_of_ten(card: dict) -> str:
    return NO_SCORE if card["mean_score"] is None else f"{card['mean_score']:.1f} / 10"


def interview_markdown(session: dict, card: dict, turns: list) -> str:
    """A whole session as a markdown document (the export): each question with the answer, score, key
    points, feedback, follow-up and the cited model answer; the scorecard as a table at the end.
    `session` is `Interviewer.session`, `card` its scorecard and `turns` its `Turn`s in order."""
    filters = {k: session["filters"].get(k) for k in ("part", "topic", "difficulty")}
    lines = [f"# Mock interview {session['id']}", "",
             f"{session_started(session)} · {session['mode']} · {describe_filters(**filters)}"
             f" · {card['answered']} / {card['questions']} answered", ""]
    for turn in turns:
        lines += _turn_markdown(turn)
    mean = card["mean_score"] if card["mean_score"] is not None else NO_SCORE
    lines += ["## Scorecard", "", f"Mean score: {mean} / 10 · skipped {card['skipped']}", "",
              "| topic | mean score |", "|---|---|"]
    lines += [f"| {topic} | {score:.1f} |" for topic, score in card["per_topic"].items()]
    return "\n".join(lines) + "\n"


def _turn_markdown(turn) -> list[str]:
    grade = turn.grade
    lines = [f"## {turn.position + 1}. {turn.question}", "", f"*Topic: {turn.topic} · score {turn.score:.1f} / 10*", ""]
    unanswered = "_(revealed: I don't know)_" if getattr(turn, "revealed", False) else "_(skipped)_"
    lines += ["**Your answer**", "", unanswered if turn.skipped or getattr(turn, "revealed", False)
              else _quote(turn.answer), ""]
    practice = [f"time taken {seconds_text(turn.seconds)}" if getattr(turn, "seconds", None) is not None else "",
                f"{turn.hints} hint(s), {grade.get('hint_cost', 0):.1f} points off" if getattr(turn, "hints", 0) else ""]
    if any(practice):
        lines += ["*" + " · ".join(p for p in practice if p) + "*", ""]
    lines += _key_points(grade)
    lines += _mistakes(grade)
    lines += [f"**Feedback.** {grade.get('feedback', '')}", ""]
    followups = getattr(turn, "followups", None) or (
        [{"question": grade.get("followup"), "answer": turn.followup_answer, "grade": turn.followup_grade}]
        if turn.followup_answer else [])
    for f in followups:
        lines += [f"**Follow-up.** {f['question']}", "", _quote(f["answer"]), "", f"_{f['grade']['feedback']}_", ""]
    if grade.get("followup") and not followups:
        lines += [f"**Follow-up.** {grade['followup']}", ""]
    for c in grade.get("citations", []):
        lines += [f"[{c['n']}] {c['question']} (`{c['source']}`)", ""]
    lines += ["<details><summary>Model answer</summary>", "", grade.get("model_answer", ""), "", "</details>", ""]
    return lines


def describe_filters(part=None, topic=None, difficulty=None) -> str:
    """What a session draws its questions from, in words: "part 1, topic 'dropout'" or "the whole bank"."""
    bits = [f"part {part}" if part else "", f"topic '{topic}'" if topic else "", difficulty or ""]
    return ", ".join(b for b in bits if b) or "the whole bank"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" for line in (text or "").splitlines()) or "> "


# --- practice: hints, time, progress -------------------------------------------------------------
def hints_markdown(hints: list[str], cost: float) -> str:
    """The hints taken so far on the question card, each with what it cost."""
    if not hints:
        return ""
    return "\n".join([f"**Hints** (each costs {cost:.1f} points)", "",
                      *(f"{n}. {hint}" for n, hint in enumerate(hints, start=1))])


def followup_markdown(followups: list[dict], next_question: str | None) -> str:
    """The follow-up turns so far (each with the points it recovered), then the next follow-up, if any."""
    lines = []
    for n, f in enumerate(followups, start=1):
        grade = f["grade"]
        lines += [f"**Follow-up {n}:** {grade['feedback']}", ""]
        lines += [f"- recovered: {p}" for p in grade["recovered"]]
        lines += [f"- mistake: _{m['sentence']}_ — correct: {m['right']} [1]" for m in grade.get("mistakes", [])]
        lines.append("")
    if next_question:
        lines.append(f"**Next follow-up:** {next_question}")
    return "\n".join(lines).strip()


def seconds_text(seconds: float | None) -> str:
    """Time taken as the scorecard shows it: "1 min 05 s", "42 s", or a dash when it was not timed."""
    if seconds is None:
        return NO_SCORE
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def timer_markdown(limit_seconds: float | None, started: float, now: float) -> str:
    """The time limit line of the question card: the limit and what is left (or how far over it is)."""
    if not limit_seconds:
        return ""
    left = limit_seconds - (now - started)
    state = f"{seconds_text(left)} left" if left >= 0 else f"over by {seconds_text(-left)}"
    return f"⏱ Time limit {seconds_text(limit_seconds)} · {state}"


def turns_table_markdown(card: dict) -> str:
    """Each question of a scorecard with its score, time taken, hints used and whether it was revealed."""
    rows = card.get("turns") or []
    if not rows:
        return ""
    lines = ["| # | question | score | time | hints | follow-ups |", "|---|---|---|---|---|---|"]
    for t in rows:
        score = "revealed" if t["revealed"] else "skipped" if t["skipped"] else f"{t['score']:.1f}"
        over = " (over the limit)" if t.get("over_limit") else ""
        lines.append(f"| {t['position'] + 1} | {t['question']} | {score} | {seconds_text(t['seconds'])}{over} "
                     f"| {t['hints']} | {t['followups']} |")
    return "\n".join(lines)


def turns_text(card: dict) -> str:
    """The same per-question lines for the terminal scorecard."""
    lines = []
    for t in card.get("turns") or []:
        score = "revealed" if t["revealed"] else "skipped" if t["skipped"] else f"{t['score']:.1f}"
        lines.append(f"  {t['position'] + 1:2}. {score:>8}  {seconds_text(t['seconds']):>10}  hints {t['hints']}  "
                     f"{t['question'][:60]}")
    return "\n".join(lines)


def schedule_markdown(schedule: list[dict], questions: dict[str, str]) -> str:
    """The review queue grouped by Leitner box (box 1 = weakest), each question with when it is due."""
    if not schedule:
        return "_Nothing to review yet: answered questions are scheduled here._"
    lines = []
    for box in sorted({r["box"] for r in schedule}):
        lines += [f"**Box {box}**", ""]
        lines += [f"- {questions.get(r['qid'], r['qid'])} · {due_text(r['due_in_days'])} · last score "
                  f"{r['last_score']:.1f}" for r in schedule if r["box"] == box]
        lines.append("")
    return "\n".join(lines)


def due_text(days: float) -> str:
    if days <= 0:
        return "due now"
    return f"due in {days * 24:.0f} h" if days < 1 else f"due in {days:.0f} d"


def activity_calendar(days: dict[str, int], today: str, weeks: int = 12) -> str:
    """Answers per day over the last `weeks` weeks as a grid (rows Monday to Sunday, a column per week),
    plain text so the terminal and the tab show the same: · none, ░ 1-2, ▒ 3-5, █ 6 or more."""
    import datetime as dt

    end = dt.date.fromisoformat(today)
    start = end - dt.timedelta(days=end.weekday() + 7 * (weeks - 1))
    rows = []
    for weekday, name in enumerate(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")):
        cells = []
        for week in range(weeks):
            day = start + dt.timedelta(days=7 * week + weekday)
            cells.append(" " if day > end else _shade(days.get(day.isoformat(), 0)))
        rows.append(f"{name} {''.join(cells)}")
    total = sum(n for d, n in days.items() if start.isoformat() <= d <= today)
    return "\n".join([*rows, f"{total} answers since {start.isoformat()} (· none ░ 1-2 ▒ 3-5 █ 6+)"])


def _shade(count: int) -> str:
    return "·" if count == 0 else "░" if count <= 2 else "▒" if count <= 5 else "█"
