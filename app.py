"""Interview coach: the command line and the Gradio app.

    python app.py serve [--host H] [--port P]
    python app.py search QUERY [--k N] [--part P] [--topic T] [--difficulty D] [--json] [--batch FILE]
    python app.py ask QUESTION [--json] [--batch FILE]
    python app.py bank [--json]
    python app.py grade --question TEXT --answer TEXT [--json] [--batch FILE]
    python app.py interview [--part P] [--topic T] [--difficulty D] [--n N] [--review] [--resume ID]

With --json each command prints exactly one JSON document on stdout (JSON Lines with --batch);
logs and progress go to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from pathlib import Path

from coach.config import get_settings, setup_logging

log = logging.getLogger("coach")


# --- commands --------------------------------------------------------------------------------
def cmd_search(args) -> int:
    from coach.retrieval import HybridRetriever

    retriever = HybridRetriever()
    filters = {"part": args.part, "topic": args.topic, "difficulty": args.difficulty}

    def run(query: str) -> dict:
        hits = retriever.search(query, k=args.k, **filters)
        return {"query": query, "results": [hit.as_json() for hit in hits]}

    if args.batch:
        return _batch(args.batch, ["question"], lambda row: run(row["question"]), args.json)
    result = run(_require_query(args.query))
    if args.json:
        _print_json(result)
    else:
        for hit in result["results"]:
            where = f"part {hit['part']}, {hit['topic']}" if hit["part"] else hit["topic"] or ""
            print(f"{hit['rank']}. [{hit['score']:.2f}] {hit['question']}  ({where}; {hit['source']})")
        if not result["results"]:
            print("no results")
    return 0


def cmd_ask(args) -> int:
    from coach.answer import Answerer

    answerer = Answerer()
    if args.batch:
        return _batch(args.batch, ["question"], lambda row: answerer.ask(row["question"]).as_json(), args.json)
    answer = answerer.ask(args.question)
    if args.json:
        _print_json(answer.as_json())
        return 0
    print(answer.answer)
    for c in answer.citations:
        print(f"  [{c['n']}] {c['question']}  ({c['source']}, relevance {c['score']:.2f})")
    if answer.fallback:
        print(f"note: {answer.fallback}", file=sys.stderr)
    return 2 if answer.blocked else 0


def cmd_bank(args) -> int:
    from coach.bank import load_bank

    entries = load_bank(get_settings().corpus_dir)
    if args.json:
        _print_json({"questions": [e.as_json() for e in entries]})
    else:
        for e in entries:
            print(f"{e.id:40} part {e.part} #{e.number:<3} {e.difficulty:6} {e.topic:32} {e.question}")
        print(f"{len(entries)} questions", file=sys.stderr)
    return 0


def cmd_grade(args) -> int:
    from coach.guards import QuestionError
    from coach.grader import AnswerError, Grader
    from coach.llm import get_backend

    grader = Grader(backend=_judge_backend(get_backend))

    def run(question: str, answer: str) -> dict:
        try:
            return grader.grade(question, answer).as_json()
        except (QuestionError, AnswerError) as exc:
            raise SystemExit(f"error: {exc}") from None

    if args.batch:
        return _batch(args.batch, ["question"], lambda row: run(row["question"], row.get("answer") or ""), args.json)
    grade = run(args.question, args.answer or "")
    if args.json:
        _print_json(grade)
        return 0
    if not grade["matched_question"]:
        print(grade["feedback"])
        return 1
    print(f"Matched: {grade['matched_question']}")
    print(_grade_text(grade))
    if grade.get("followup"):
        print(f"Follow-up: {grade['followup']}")
    return 0


def _judge_backend(get_backend):
    """The configured backend, but only a capable one: the embedded 135M model never judges, so it is
    not even loaded for grading."""
    if get_settings().llm != "openai":
        return None
    try:
        return get_backend()
    except Exception as exc:  # noqa: BLE001 (a misconfigured server must not stop key-point grading)
        log.warning("no LLM judge: %s", exc)
        return None


def _grade_text(grade: dict) -> str:
    """A grade as the terminal shows it: score, covered and missing points, feedback, follow-up."""
    lines = [f"Score: {grade['score']:.1f} / 10"]
    lines += [f"  ✓ {p}" for p in grade["covered"]]
    lines += [f"  ✗ {p}" for p in grade["missing"]]
    lines.append(grade["feedback"])
    for c in grade["citations"]:
        lines.append(f"  [{c['n']}] {c['question']}  ({c['source']})")
    return "\n".join(lines)


def cmd_interview(args) -> int:
    """An interactive mock interview in the terminal; works with piped stdin (one answer per paragraph)."""
    from coach.grader import AnswerError, Grader
    from coach.llm import get_backend
    from coach.interviewer import Interviewer, SessionError

    engine = Interviewer(Grader(backend=_judge_backend(get_backend)))
    try:
        if args.history:
            for s in engine.history():
                when = time.strftime("%Y-%m-%d %H:%M", time.localtime(s["created"]))
                mean = "–" if s["mean_score"] is None else f"{s['mean_score']:.1f}"
                print(f"{s['id']}  {when}  {s['mode']:8} {s['status']:8} {s['answered']}/{s['questions']} answered, "
                      f"mean {mean}")
            return 0
        if args.export:
            text = engine.export_markdown(args.export)
            if args.out:
                Path(args.out).write_text(text, encoding="utf-8")
                print(f"wrote {args.out}", file=sys.stderr)
            else:
                sys.stdout.write(text)
            return 0
        session_id = args.resume or engine.start(part=args.part, topic=args.topic, difficulty=args.difficulty,
                                                 n=args.n, review=args.review)
    except SessionError as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"Session {session_id}. Answer in a few sentences and finish with an empty line; "
          "type :skip to skip a question, :end to stop (resume later with --resume).\n")
    while (entry := engine.current(session_id)) is not None:
        number, total = engine.progress(session_id)
        print(f"Question {number} / {total}  ({entry.topic}, {entry.difficulty})\n{entry.question}")
        answer = _read_paragraph("> ")
        if answer is None or answer.strip() == ":end":
            print(f"\nSaved. Resume with: python app.py interview --resume {session_id}")
            return 0
        if answer.strip() == ":skip":
            engine.skip(session_id)
            print("Skipped.\n")
            continue
        try:
            turn = engine.answer(session_id, answer)
        except AnswerError as exc:
            print(f"error: {exc} Try again.\n")
            continue
        print(_grade_text(turn.grade))
        if turn.grade.get("followup"):
            print(f"\nFollow-up: {turn.grade['followup']}  (answer, or press Enter to go on)")
            followup = _read_paragraph("> ")
            if followup and followup.strip() not in (":skip", ":end"):
                try:
                    turn = engine.answer_followup(session_id, followup)
                    print(turn.followup_grade["feedback"])
                except AnswerError as exc:
                    print(f"error: {exc}")
        print()
    card = engine.end(session_id)
    print(_scorecard_text(card))
    print(f"\nExport: python app.py interview --export {session_id} --out interview.md")
    return 0


def _read_paragraph(prompt: str) -> str | None:
    """Lines up to an empty line (or a command such as :skip); None at end of input."""
    lines = []
    while True:
        try:
            line = input(prompt if not lines else "  ")
        except EOFError:
            return "\n".join(lines) if lines else None
        if not line.strip():
            return "\n".join(lines)
        if not lines and line.strip().startswith(":"):
            return line.strip()
        lines.append(line)


def _scorecard_text(card: dict) -> str:
    mean = "–" if card["mean_score"] is None else f"{card['mean_score']:.1f} / 10"
    lines = [f"Scorecard: {card['answered']} of {card['questions']} questions, {card['skipped']} skipped, "
             f"mean score {mean}"]
    for topic, score in card["per_topic"].items():
        lines.append(f"  {topic:34} {'█' * round(score)}{'·' * (10 - round(score))} {score:.1f}")
    if card["weakest"]:
        lines.append("Review these (python app.py interview --review): " + "; ".join(card["weakest"]))
    return "\n".join(lines)


def cmd_serve(args) -> int:
    from coach.answer import Answerer
    from coach.embedder import limit_heap_fragmentation

    started = time.perf_counter()
    limit_heap_fragmentation()  # before the models allocate: a server lives long, its peak memory counts
    answerer = Answerer()  # loads the configured backend once; it stays warm
    retriever = answerer.retriever
    retriever.search("warm up the models")  # load the embedder and BM25 index before the first user
    threading.Thread(target=answerer.warm_up, name="warm-up", daemon=True).start()  # sentence vectors, meanwhile
    demo = build_app(answerer)
    log.info("ready in %.1fs: models loaded, %d chunks indexed; serving on http://%s:%d",
                time.perf_counter() - started, retriever.store.count(), args.host, args.port)
    demo.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port,
                                                   show_error=True, head=CITATION_JS,
                                                   max_file_size=get_settings().max_file_bytes)
    return 0


# The bank writes formulas as $...$ (inline) and $$...$$ (display); Gradio renders only $$ by default.
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
EXAMPLES = ["What is catastrophic forgetting?", "How does Adam correct the bias of its moment estimates?",
            "Why do transformers need positional encodings?", "How does LoRA work?",
            "What is the difference between a bi-encoder and a cross-encoder?"]
ALL = "All"

# [n] in an answer is a link to #source-n; this opens that passage in the side panel instead of navigating.
CITATION_JS = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='#source-']");
  if (!link) return;
  event.preventDefault(); event.stopPropagation();
  const panel = document.getElementById(link.getAttribute("href").slice(1));
  if (panel) { panel.open = true; panel.scrollIntoView({behavior: "smooth", block: "nearest"}); }
}, true);
</script>"""


def build_app(answerer):
    """The Gradio app: Chat and Search tabs, plus the contract's named API endpoints."""
    import gradio as gr

    from coach.bank import load_bank

    retriever = answerer.retriever
    bank = load_bank(get_settings().corpus_dir)
    parts = sorted({e.part for e in bank})
    topics = sorted({e.topic for e in bank})

    def search(query: str) -> dict:
        hits = retriever.search(_require_query(query))
        return {"query": query, "results": [hit.as_json() for hit in hits]}

    def render(query: str) -> str:
        results = search(query)["results"]
        if not results:
            return "_No results._"
        return "\n\n".join(f"**{r['rank']}. {r['question']}** · part {r['part']} · {r['topic']} · "
                           f"relevance {r['score']:.2f}\n\n{r['text'][len(r['question']):].strip()[:600]}"
                           for r in results)

    def respond(question: str, history: list, part: str, topic: str, request: gr.Request = None):
        """Stream the model's tokens into the chat, then replace them with the checked answer."""
        from coach.answer import Answer

        past = [{"role": m["role"], "content": _text_of(m["content"])} for m in history]
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
        if limited := rate_limited(answerer, question, request):
            history[-1] = {"role": "assistant", "content": chat_markdown(limited)}
            yield "", history, gr.update()
            return
        yield "", history, gr.update()
        streamed = ""
        filters = {"part": None if part == ALL else int(part), "topic": None if topic == ALL else topic}
        for event in answerer.stream(question, past, **filters):
            if isinstance(event, Answer):
                history[-1] = {"role": "assistant", "content": chat_markdown(event)}
                yield "", history, sources_html(event, retriever.store)
            else:
                streamed += event
                history[-1] = {"role": "assistant", "content": streamed + " ▌"}
                yield "", history, gr.update()

    # Gradio injects the session's Request by type hint; `gr` is imported here, not at module level,
    # so the postponed annotation could not be resolved without this.
    respond.__annotations__["request"] = gr.Request

    with gr.Blocks(title="Interview coach") as demo:
        gr.Markdown("# Interview coach\nDeep-learning interview questions, answered only from the bank, "
                    "with citations.")
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3, min_width=320):
                    chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chat", latex_delimiters=LATEX)
                    with gr.Row():
                        box = gr.Textbox(show_label=False, placeholder="Ask a deep-learning interview question",
                                         scale=5, elem_id="question", max_lines=4)
                        ask = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ask")
                    gr.Examples(EXAMPLES, inputs=box, label="Try one")
                    clear = gr.Button("Clear conversation", size="sm", elem_id="clear")
                with gr.Column(scale=2, min_width=260):
                    with gr.Row():
                        part = gr.Dropdown([ALL, *map(str, parts)], value=ALL, label="Part", elem_id="part")
                        topic = gr.Dropdown([ALL, *topics], value=ALL, label="Topic", elem_id="topic")
                    gr.Markdown(f"Answering with **{answerer.backend.describe()}**; every sentence is "
                                "checked against the bank.", elem_id="backend")
                    sources = gr.HTML("<p class='hint'>The passages an answer cites appear here; click a "
                                      "[n] in the answer to open one.</p>", elem_id="sources")
            inputs, outputs = [box, chatbot, part, topic], [box, chatbot, sources]
            ask.click(respond, inputs, outputs, api_name=False)
            box.submit(respond, inputs, outputs, api_name=False)
            clear.click(lambda: ([], "", ""), None, [chatbot, box, sources], api_name=False)
        with gr.Tab("Interview"):
            interview_tab(gr, answerer, bank)
        with gr.Tab("Library") as library:
            library_tab(gr, retriever.store)
            flagged_passages(gr, retriever.store, library)
        with gr.Tab("Evaluate"):
            evaluate_tab(gr)
        with gr.Tab("Search"):
            query = gr.Textbox(label="Question or keywords", placeholder="what is catastrophic forgetting?")
            button = gr.Button("Search", variant="primary")
            output = gr.Markdown()
            button.click(render, query, output, api_name=False)
            query.submit(render, query, output, api_name=False)
        # Named API endpoint (contract): /search returns the same JSON as `app.py search --json`.
        api_query, api_out = gr.Textbox(visible=False), gr.JSON(visible=False)
        api_query.submit(search, api_query, api_out, api_name="search")
        # /ask returns the same JSON as `app.py ask --json` (the final, checked answer).
        api_question, api_answer = gr.Textbox(visible=False), gr.JSON(visible=False)
        api_question.submit(lambda q: answerer.ask(q).as_json(), api_question, api_answer, api_name="ask")
    return demo


def library_tab(gr, store) -> None:
    """Upload files into the bank's index, see every source with its size, delete one, re-index."""
    from ingest import uploads
    from ingest.loaders import SUPPORTED

    def source_rows():
        return [[r["source"], r["kind"], r["questions"], r["chunks"]] for r in uploads.sources(store)]

    def refreshed():
        rows = source_rows()
        return rows, gr.update(choices=[r[0] for r in rows], value=None)

    def add_files(files, progress=gr.Progress()):  # noqa: B008 (Gradio injects the tracker this way)
        if not files:
            return [["", "error", "choose one or more files first"]], *refreshed()
        results = []
        for n, file in enumerate(files):
            path = getattr(file, "name", file)
            progress((n, len(files)), desc=f"indexing {Path(path).name}")
            result = uploads.add(path, Path(path).name)
            results.append([result["file"], result["status"], result["detail"]])
        return results, *refreshed()

    def delete(source):
        if not source:
            return "Choose a source to delete.", *refreshed()
        removed = uploads.delete(source)
        return f"Removed `{source}` ({removed} chunks).", *refreshed()

    def reindex(progress=gr.Progress()):  # noqa: B008
        progress(0, desc="re-indexing the bank and uploads")
        report = uploads.reindex()
        errors = "".join(f"\n- `{e['source']}`: {e['error']}" for e in report.errors)
        return (f"Re-indexed: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
                f"{report.deleted} removed chunks.{errors}"), *refreshed()

    with gr.Row():
        with gr.Column(scale=2, min_width=280):
            files = gr.File(label=f"Add files ({', '.join(sorted(SUPPORTED))}; several at once)",
                            file_count="multiple", file_types=sorted(SUPPORTED), elem_id="upload")
            add = gr.Button("Add to the index", variant="primary", elem_id="add-files")
            results = gr.Dataframe(headers=["file", "result", "detail"], label="Upload results",
                                   interactive=False, elem_id="upload-results", wrap=True)
        with gr.Column(scale=3, min_width=280):
            table = gr.Dataframe(source_rows(), headers=["source", "kind", "questions", "chunks"],
                                 label="Indexed sources", interactive=False, elem_id="sources-table")
            with gr.Row():
                choice = gr.Dropdown([r[0] for r in source_rows()], label="Source", elem_id="delete-choice")
                remove = gr.Button("Delete source", variant="stop", elem_id="delete-source")
            rebuild = gr.Button("Re-index everything", elem_id="reindex")
            status = gr.Markdown(elem_id="library-status")
    add.click(add_files, files, [results, table, choice], api_name=False)
    remove.click(delete, choice, [status, table, choice], api_name=False)
    rebuild.click(reindex, None, [status, table, choice], api_name=False)


def evaluate_tab(gr, out: Path | None = None) -> None:
    """Run the evaluation suite (ours vs the naive baseline) with progress; show its report and plots."""
    import re

    from evals.__main__ import DEFAULT_OUT
    from evals.suite import available_sets

    out = out or DEFAULT_OUT

    def shown():
        report = out / "report.md"
        if not report.exists():
            return "_No report yet: run the suite._", []
        text = re.sub(r"^!\[.*$", "", report.read_text(encoding="utf-8"), flags=re.M)  # plots go to the gallery
        return text, [str(p) for p in sorted(out.glob("*.png"))]

    def run_suite(backend, limit, baseline, sets, progress=gr.Progress(track_tqdm=True)):  # noqa: B008
        from evals import report
        from evals.suite import Options, run

        if not sets:
            return "Choose at least one set.", shown()[1]
        progress(0, desc="loading models")
        try:
            result = run(Options(backend=backend, baseline=baseline, sets=list(sets), limit=int(limit or 0)))
        except Exception as exc:  # shown in the tab rather than lost in a log
            return f"**The run failed:** {exc}", shown()[1]
        report.write(result, out)
        return shown()

    gr.Markdown("Measures retrieval, answers, refusals, the support check, guards and grading on the sets in "
                "`evals/sets/`, for this pipeline and for the naive LangChain baseline. The full suite is "
                "`python -m evals`; here a small sample keeps a run to a few minutes.")
    with gr.Row():
        backend = gr.Dropdown(["extractive", "llamacpp", "openai"], value="extractive", label="Backend",
                              elem_id="eval-backend")
        limit = gr.Number(20, label="Rows per set (0 = all)", precision=0, minimum=0, elem_id="eval-limit")
        baseline = gr.Checkbox(True, label="Compare with the baseline", elem_id="eval-baseline")
    sets = gr.CheckboxGroup(available_sets(), value=available_sets(), label="Sets", elem_id="eval-sets")
    start = gr.Button("Run the evaluation", variant="primary", elem_id="eval-run")
    report_md, plots = gr.Markdown(shown()[0], elem_id="eval-report"), gr.Gallery(
        shown()[1], label="Plots", columns=2, height="auto", elem_id="eval-plots")
    start.click(run_suite, [backend, limit, baseline, sets], [report_md, plots], api_name=False)


def flagged_passages(gr, store, tab) -> None:
    """Passages flagged at ingest as instructions to an AI (they reach the model only datamarked)."""
    from ingest import uploads

    def rows():
        return [[r["source"], r["question"], r["reason"]] for r in uploads.flagged(store)]

    gr.Markdown("#### Flagged passages\nText that reads like instructions to an AI (an injection hidden in a "
                "document). It stays searchable, but its instruction sentences never reach the model and the "
                "rest is sent as marked data.")
    table = gr.Dataframe(rows(), headers=["source", "question", "reason"], label="Flagged passages",
                         interactive=False, wrap=True, elem_id="flagged-table")
    refresh = gr.Button("Refresh flagged passages", size="sm", elem_id="flagged-refresh")
    refresh.click(rows, None, table, api_name=False)
    tab.select(rows, None, table, api_name=False)


_limiters: dict = {}


def rate_limited(answerer, question: str, request):
    """A blocked Answer when this browser session asked too many questions in the last minute, else None."""
    from coach.answer import Answer
    from coach.guards import RateLimiter

    per_minute = get_settings().questions_per_minute
    limiter = _limiters.setdefault(per_minute, RateLimiter(per_minute))
    wait = limiter.allow(getattr(request, "session_hash", None) or "anonymous")
    if not wait:
        return None
    return Answer(question=question, answer=f"You have asked {per_minute} questions in the last minute; please "
                  f"wait {wait:.0f} s and ask again.", blocked=True, guard="rate_limit",
                  backend=answerer.backend.describe())

def interview_tab(gr, answerer, bank) -> None:
    """Mock interview: set-up, question card with progress, graded feedback with citations, next / skip /
    end, a scorecard with a per-topic chart, past sessions and a markdown export. Also the /grade endpoint."""
    from coach.grader import AnswerError, Grader
    from coach.interviewer import Interviewer, SessionError

    backend = answerer.backend if answerer.backend.capable else None  # the tiny model never judges
    grader = Grader(retriever=answerer.retriever, backend=backend, bank=bank)
    engine = Interviewer(grader)
    topics = sorted({e.topic for e in bank})
    hide, show = gr.update(visible=False), gr.update(visible=True)

    def history_rows():
        return [[h["id"], time.strftime("%Y-%m-%d %H:%M", time.localtime(h["created"])), h["mode"], h["status"],
                 f"{h['answered']} / {h['questions']}", "–" if h["mean_score"] is None else h["mean_score"]]
                for h in engine.history()]

    def unfinished() -> list[str]:
        return [h["id"] for h in engine.history() if h["status"] == "active"]

    def resumable():
        return gr.update(choices=unfinished(), value=None)

    def question_view(session_id):
        """Card, progress and cleared answer for the session's current question, or the scorecard."""
        entry = engine.current(session_id)
        if entry is None:
            return finish(session_id)
        number, total = engine.progress(session_id)
        card = (f"**Question {number} / {total}** · {entry.topic} · {entry.difficulty}\n\n### {entry.question}")
        return (session_id, hide, show, card, gr.update(value="", interactive=True), "", show, show, hide,
                hide, "", None, history_rows(), resumable())

    def finish(session_id):
        card = engine.end(session_id)
        return (session_id, hide, hide, "", gr.update(value=""), "", hide, hide, hide, show,
                scorecard_markdown(card), topic_chart(card), history_rows(), resumable())

    def start(part, topic, difficulty, n, review):
        try:
            session_id = engine.start(part=None if part == ALL else int(part), topic=None if topic == ALL else topic,
                                      difficulty=None if difficulty == ALL else difficulty, n=int(n),
                                      review=bool(review))
        except SessionError as exc:
            return (None, show, hide, "", gr.update(), f"⚠️ {exc}", hide, hide, hide, hide, "", None,
                    history_rows(), resumable())
        return question_view(session_id)

    def resume(session_id):
        if not session_id:
            return (None, show, hide, "", gr.update(), "Choose an unfinished session to resume.", hide, hide,
                    hide, hide, "", None, history_rows(), resumable())
        return question_view(session_id)

    def submit(session_id, answer):
        if not session_id:
            return gr.update(), "Start an interview first.", gr.update(), gr.update(), gr.update()
        try:
            turn = engine.answer(session_id, answer)
        except (AnswerError, SessionError) as exc:
            return gr.update(), f"⚠️ {exc}", gr.update(), gr.update(), gr.update()  # the answer box keeps its text
        return gr.update(interactive=False), feedback_markdown(turn.grade), hide, hide, show

    def skip(session_id):
        if session_id and engine.current(session_id) is not None:
            engine.skip(session_id)
        return question_view(session_id) if session_id else start(ALL, ALL, ALL, 5, False)

    def export(session_id):
        if not session_id:
            return gr.update(value=None, visible=False)
        path = Path(tempfile.mkdtemp(prefix="interview-")) / f"interview-{session_id}.md"
        path.write_text(engine.export_markdown(session_id), encoding="utf-8")
        return gr.update(value=str(path), visible=True)

    with gr.Column(visible=True, elem_id="iv-setup") as setup:
        gr.Markdown("Practise answering bank questions aloud-style: each answer is graded against the "
                    "question's key points and saved at once; weak questions come back in review mode.")
        with gr.Row():
            part = gr.Dropdown([ALL, *map(str, sorted({e.part for e in bank}))], value=ALL, label="Part",
                               elem_id="iv-part")
            topic = gr.Dropdown([ALL, *topics], value=ALL, label="Topic", elem_id="iv-topic")
            difficulty = gr.Dropdown([ALL, "easy", "medium", "hard"], value=ALL, label="Difficulty",
                                     elem_id="iv-difficulty")
            n = gr.Slider(1, 20, value=5, step=1, label="Questions", elem_id="iv-n")
        review = gr.Checkbox(label="Review mode: weak and due questions first (spaced repetition)",
                             elem_id="iv-review")
        begin = gr.Button("Start interview", variant="primary", elem_id="iv-start")
        with gr.Row():
            resume_choice = gr.Dropdown(unfinished(), label="Unfinished sessions", elem_id="iv-resume-choice")
            resume_button = gr.Button("Resume", elem_id="iv-resume")
    status = gr.Markdown(elem_id="iv-status")
    with gr.Column(visible=False, elem_id="iv-card") as card_box:
        card = gr.Markdown(elem_id="iv-question")
        answer = gr.Textbox(label="Your answer", lines=6, placeholder="Answer in a few full sentences.",
                            elem_id="iv-answer")
        with gr.Row():
            submit_button = gr.Button("Submit answer", variant="primary", elem_id="iv-submit")
            skip_button = gr.Button("Skip", elem_id="iv-skip")
            next_button = gr.Button("Next question", variant="primary", visible=False, elem_id="iv-next")
            end_button = gr.Button("End interview", variant="stop", elem_id="iv-end")
        feedback = gr.Markdown(elem_id="iv-feedback")
    with gr.Column(visible=False, elem_id="iv-scorecard-box") as score_box:
        scorecard = gr.Markdown(elem_id="iv-scorecard")
        chart = gr.Plot(label="Mean score per topic", elem_id="iv-chart")
        with gr.Row():
            export_button = gr.Button("Export as markdown", elem_id="iv-export")
            again = gr.Button("New interview", variant="primary", elem_id="iv-again")
        export_file = gr.File(label="Session export", visible=False, elem_id="iv-export-file")
    with gr.Accordion("Past sessions", open=False, elem_id="iv-history-box"):
        history = gr.Dataframe(history_rows(), headers=["session", "started", "mode", "status", "answered",
                                                        "mean score"], interactive=False, elem_id="iv-history")
    session = gr.State(None)

    view = [session, setup, card_box, card, answer, status, submit_button, skip_button, next_button, score_box,
            scorecard, chart, history, resume_choice]
    # Every view function returns one value per component of `view`: a question card shows submit and
    # skip, graded feedback shows next, the end shows the scorecard.
    begin.click(start, [part, topic, difficulty, n, review], view, api_name=False)
    resume_button.click(resume, resume_choice, view, api_name=False)
    submit_button.click(submit, [session, answer], [answer, feedback, submit_button, skip_button, next_button],
                        api_name=False)
    next_button.click(lambda s: _with_feedback_cleared(question_view(s)), session, [*view, feedback],
                      api_name=False)
    skip_button.click(lambda s: _with_feedback_cleared(skip(s)), session, [*view, feedback], api_name=False)
    end_button.click(lambda s: _with_feedback_cleared(finish(s)) if s else _with_feedback_cleared(resume(None)),
                     session, [*view, feedback], api_name=False)
    export_button.click(export, session, export_file, api_name=False)
    again.click(lambda: (None, show, hide, hide, hide, gr.update(value=None, visible=False)), None,
                [session, setup, card_box, score_box, next_button, export_file], api_name=False)
    # Named API endpoint (contract): /grade returns the same JSON as `app.py grade --json`.
    api_q, api_a, api_out = gr.Textbox(visible=False), gr.Textbox(visible=False), gr.JSON(visible=False)
    api_a.submit(lambda q, a: grader.grade(q, a).as_json(), [api_q, api_a], api_out, api_name="grade")


def _with_feedback_cleared(view: tuple) -> tuple:
    return (*view, "")


def feedback_markdown(grade: dict) -> str:
    """A graded answer: score, covered and missing key points, feedback, follow-up, the cited model answer."""
    lines = [f"## {grade['score']:.1f} / 10", ""]
    # Words rather than emoji marks: headless and minimal systems often lack an emoji font.
    if grade.get("covered"):
        lines += ["**Covered**", ""] + [f"- {p}" for p in grade["covered"]] + [""]
    if grade.get("missing"):
        lines += ["**Missing**", ""] + [f"- {p}" for p in grade["missing"]]
    lines += ["", grade.get("feedback", "")]
    if grade.get("followup"):
        lines += ["", f"**Follow-up:** {grade['followup']}"]
    for c in grade.get("citations", []):
        lines += ["", f"[{c['n']}] **{c['question']}** · `{c['source']}`"]
    if grade.get("model_answer"):
        lines += ["", "<details><summary>Model answer [1]</summary>", "", grade["model_answer"], "", "</details>"]
    return "\n".join(lines)


def scorecard_markdown(card: dict) -> str:
    mean = "–" if card["mean_score"] is None else f"{card['mean_score']:.1f} / 10"
    text = (f"## Scorecard\n\n**Mean score {mean}** · {card['answered']} of {card['questions']} questions · "
            f"{card['skipped']} skipped")
    if card["weakest"]:
        text += "\n\nReview next (they come back first in review mode):\n" + "\n".join(f"- {q}" for q in card["weakest"])
    return text


def topic_chart(card: dict):
    """Horizontal bars of the mean score per topic (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    topics = list(card["per_topic"]) or ["(no answers)"]
    scores = list(card["per_topic"].values()) or [0]
    figure, axes = plt.subplots(figsize=(6, 0.5 * len(topics) + 1.2))
    axes.barh(topics, scores, color=["#d9534f" if s < 5 else "#f0ad4e" if s < 7 else "#5cb85c" for s in scores])
    axes.set_xlim(0, 10)
    axes.set_xlabel("mean score / 10")
    axes.invert_yaxis()
    figure.tight_layout()
    plt.close(figure)
    return figure


def chat_markdown(answer) -> str:
    """The answer as shown in the chat: [n] become links to the side panel; refusals and blocked
    questions are marked so they never look like an answer."""
    import re

    if answer.blocked:
        return f"⛔ **Blocked** ({answer.guard}): {answer.answer}"
    if answer.refused:
        text = "🚫 **Not in the bank.** The question bank does not cover this, so there is no grounded answer."
        if answer.suggestions:
            text += "\n\nNearby questions it does cover:\n" + "\n".join(f"- {s}" for s in answer.suggestions)
        return text
    text = re.sub(r"\[(\d+)\]", lambda m: f"[[{m.group(1)}]](#source-{m.group(1)})", answer.answer)
    if answer.fallback:
        text += f"\n\n_Composed from the bank's own sentences: {answer.fallback}._"
    return text


def sources_html(answer, store) -> str:
    """One collapsible panel per cited passage: question, part, topic, source file and the passage."""
    from html import escape

    if not answer.citations:
        return ""
    panels = []
    for c in answer.citations:
        got = store.collection.get(ids=[c["chunk_id"]], include=["metadatas"])
        meta = got["metadatas"][0] if got["metadatas"] else {}
        text = store.section_text(meta.get("source"), meta.get("qid")) or ""
        body = _markdown(text.split("\n\n", 1)[1] if "\n\n" in text else "")
        panels.append(
            f"<details id='source-{c['n']}' class='source'><summary><b>[{c['n']}]</b> {escape(c['question'])}"
            f"</summary><p class='meta'>Part {meta.get('part', '?')} · {escape(str(meta.get('topic') or ''))} · "
            f"<code>{escape(c['source'] or '')}</code> · relevance {c['score']:.2f}</p>{body}</details>")
    return "<h4>Sources</h4>" + "".join(panels)


def _markdown(text: str) -> str:
    """Bank answers are markdown (lists, bold, formulas). Raw HTML stays escaped: uploaded documents are
    untrusted, and a passage must never inject markup or script into the page."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False}).render(text)


def _text_of(content) -> str:
    """Chat message content as text (Gradio may hand back a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


# --- helpers -----------------------------------------------------------------------------------
def _require_query(text: str | None) -> str:
    from coach.guards import QuestionError, validate_question

    try:
        return validate_question(text)
    except QuestionError as exc:
        raise SystemExit(f"error: {exc}") from None


def _batch(path: str, required: list[str], run, as_json: bool) -> int:
    """Run one command per JSON line, models loaded once; results printed in input order."""
    failures = 0
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                missing = [name for name in required if not str(row.get(name) or "").strip()]
                if missing:
                    raise ValueError(f"missing field(s) {missing}")
                result = run(row)
            except (ValueError, SystemExit) as exc:
                failures += 1
                result = {"error": f"{path}:{line_no}: {exc}"}
            if as_json:
                _print_json(result)
            else:
                print(json.dumps(result, ensure_ascii=False, indent=2))
    return 1 if failures else 0


def _print_json(document: dict) -> None:
    sys.stdout.write(json.dumps(document, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _add_filters(command: argparse.ArgumentParser) -> None:
    command.add_argument("--part", type=int, help="only this part of the bank (1-4)")
    command.add_argument("--topic", help="only this topic, e.g. 'dropout'")
    command.add_argument("--difficulty", choices=["easy", "medium", "hard"])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python app.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the Gradio app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.set_defaults(run=cmd_serve)

    search = sub.add_parser("search", help="hybrid search over the bank (dense + BM25, fused)")
    search.add_argument("query", nargs="?", help="the question or keywords")
    search.add_argument("--k", type=int, default=5, help="number of results (default 5)")
    _add_filters(search)
    search.add_argument("--json", action="store_true", help="print the contract's JSON")
    search.add_argument("--batch", metavar="FILE.jsonl", help='one {"question": ...} per line')
    search.set_defaults(run=cmd_search)

    ask = sub.add_parser("ask", help="a grounded answer from the bank, with [n] citations, or a refusal",
                         description="Answer from the question bank only. Sentences the bank does not "
                         "support are removed; the backend is chosen by COACH_LLM (llamacpp, openai, extractive).")
    ask.add_argument("question", nargs="?", help="the question")
    ask.add_argument("--json", action="store_true", help="print the contract's JSON")
    ask.add_argument("--batch", metavar="FILE.jsonl", help='one {"question": ...} per line; models load once')
    ask.set_defaults(run=cmd_ask)

    grade = sub.add_parser("grade", help="grade an answer against the key points of the matching bank question",
                           description="Score 0-10 from the key points the answer covers, with feedback, "
                           "the missing points, a follow-up question and the cited model answer.")
    grade.add_argument("--question", help="the interview question (matched to the bank)")
    grade.add_argument("--answer", help="the candidate's answer")
    grade.add_argument("--json", action="store_true", help="print the contract's JSON")
    grade.add_argument("--batch", metavar="FILE.jsonl", help='one {"question": ..., "answer": ...} per line')
    grade.set_defaults(run=cmd_grade)

    interview = sub.add_parser("interview", help="a mock interview in the terminal (graded, saved, resumable)",
                               description="Bank questions one at a time; each answer is graded and saved at "
                               "once. Finish an answer with an empty line; :skip skips, :end stops.")
    _add_filters(interview)
    interview.add_argument("--n", type=int, default=5, help="number of questions (default 5)")
    interview.add_argument("--review", action="store_true", help="spaced-repetition review: weak questions first")
    interview.add_argument("--resume", metavar="ID", help="continue an unfinished session")
    interview.add_argument("--history", action="store_true", help="list past sessions")
    interview.add_argument("--export", metavar="ID", help="print a session as markdown")
    interview.add_argument("--out", metavar="FILE.md", help="with --export: write to this file")
    interview.set_defaults(run=cmd_interview)

    bank = sub.add_parser("bank", help="list the question bank as loaded")
    bank.add_argument("--json", action="store_true")
    bank.set_defaults(run=cmd_bank)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "search" and args.query is None and not args.batch:
        raise SystemExit("error: give a QUERY or --batch FILE")
    if args.command == "ask" and args.question is None and not args.batch:
        raise SystemExit("error: give a QUESTION or --batch FILE")
    if args.command == "grade" and args.question is None and not args.batch:
        raise SystemExit("error: give --question TEXT --answer TEXT, or --batch FILE")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
