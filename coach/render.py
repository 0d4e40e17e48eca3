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
from html import escape

from markdown_it import MarkdownIt

NO_SCORE = "–"
LIBRARY_NAMES = {"bank": "Bank", "docs": "My documents"}
PASSAGE_CHARS = 600   # a search result shows about this much of its passage, cut between blocks


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


def search_markdown(results: list[dict]) -> str:
    """Search results as markdown: question, library, part, topic, relevance and the passage."""
    if not results:
        return "_No results._"
    return "\n\n".join(f"**{r['rank']}. {inert(r['question'])}** · {LIBRARY_NAMES.get(r.get('library'), 'Bank')} · "
                       f"part {r['part']} · {inert(r['topic'] or '')} · relevance {r['score']:.2f}\n\n{inert(_passage(r))}"
                       for r in results)


def inert(text: str) -> str:
    """Untrusted text (passages, questions) made safe to put in markdown that a page renders: markup
    characters become entities, so "<img onerror=...>" shows as text and never becomes a tag."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


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
    """The passage under its question, cut after whole blocks near PASSAGE_CHARS: a table or a code block
    is shown whole or not at all, never half."""
    text = result["text"]
    body = text[len(result["question"]):].strip() if result["question"] and text.startswith(result["question"]) else text
    blocks, kept, size, fence = body.split("\n\n"), [], 0, False
    for block in blocks:
        if size >= PASSAGE_CHARS and not fence:
            kept.append("…")
            break
        kept.append(block)
        size += len(block)
        fence ^= block.count("```") % 2 == 1  # a code block with blank lines inside spans several
    return "\n\n".join(kept)


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
    text = re.sub(r"\[(\d+)\]", lambda m: f"[[{m.group(1)}]](#source-{m.group(1)})", inert(answer.answer))
    if answer.fallback:
        text += f"\n\n_Composed from the bank's own sentences: {answer.fallback}._"
    return text


def sources_html(answer, store) -> str:
    """One collapsible panel per cited passage: question, part, topic, source file and the passage."""
    if not answer.citations:
        return ""
    panels = []
    for c in answer.citations:
        meta = store.chunk_metadata(c["chunk_id"])
        text = store.section_text(meta.get("source"), meta.get("qid")) or ""
        body = markdown_html(text.split("\n\n", 1)[1] if "\n\n" in text else "")
        library = c.get("library") or "bank"
        where = f"Part {meta.get('part', '?')} · " if library == "bank" else ""
        panels.append(
            f"<details id='source-{c['n']}' class='source' data-library='{escape(library)}'><summary><b>[{c['n']}]</b> "
            f"{escape(c['question'])} <span class='library library-{escape(library)}'>{LIBRARY_NAMES.get(library, 'Bank')}"
            f"</span></summary><p class='meta'>{where}{escape(str(meta.get('topic') or ''))} · "
            f"<code>{escape(c['source'] or '')}</code> · relevance {c['score']:.2f}</p>{body}</details>")
    return "<h4>Sources</h4>" + "".join(panels)


def markdown_html(text: str) -> str:
    """Bank answers are markdown (lists, bold, formulas). Raw HTML stays escaped: uploaded documents are
    untrusted, and a passage must never inject markup or script into the page."""
    return _MARKDOWN.render(text)


# CommonMark plus GFM tables (uploads and answers hold them); raw HTML stays disabled.
_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")


# --- a graded answer ---------------------------------------------------------------------------
def grade_text(grade: dict) -> str:
    """A grade as the terminal shows it: score, covered and missing points, feedback, citations."""
    lines = [f"Score: {grade['score']:.1f} / 10"]
    lines += [f"  ✓ {p}" for p in grade["covered"]]
    lines += [f"  ✗ {p}" for p in grade["missing"]]
    lines.append(grade["feedback"])
    for c in grade["citations"]:
        lines.append(f"  [{c['n']}] {c['question']}  ({c['source']})")
    return "\n".join(lines)


def feedback_markdown(grade: dict) -> str:
    """A graded answer in the Interview tab: score, covered and missing key points, feedback, follow-up,
    the cited model answer."""
    lines = [f"## {grade['score']:.1f} / 10", "", *_key_points(grade), grade.get("feedback", "")]
    if grade.get("key_points_derived"):
        lines += ["", f"_{DERIVED_NOTE}_"]
    if grade.get("followup"):
        lines += ["", f"**Follow-up:** {grade['followup']}"]
    for c in grade.get("citations", []):
        lines += ["", f"[{c['n']}] **{c['question']}** · `{c['source']}`"]
    if grade.get("model_answer"):
        lines += ["", "<details><summary>Model answer [1]</summary>", "", grade["model_answer"], "", "</details>"]
    return "\n".join(lines)


def _key_points(grade: dict) -> list[str]:
    """Covered and missing key points as two bulleted lists, each followed by an empty line.
    Words rather than emoji marks: headless and minimal systems often lack an emoji font."""
    lines = []
    for title, key in (("Covered", "covered"), ("Missing", "missing")):
        if grade.get(key):
            lines += [f"**{title}**", "", *(f"- {p}" for p in grade[key]), ""]
    return lines


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
    lines += ["**Your answer**", "", "_(skipped)_" if turn.skipped else _quote(turn.answer), ""]
    lines += _key_points(grade)
    lines += [f"**Feedback.** {grade.get('feedback', '')}", ""]
    if grade.get("followup"):
        lines += [f"**Follow-up.** {grade['followup']}", ""]
        if turn.followup_answer:
            lines += [_quote(turn.followup_answer), "", f"_{turn.followup_grade['feedback']}_", ""]
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
