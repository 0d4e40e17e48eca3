"""Interview coach: the command line and the Gradio app.

    python app.py serve [--host H] [--port P]
    python app.py search QUERY [--k N] [--part P] [--topic T] [--difficulty D] [--json] [--batch FILE]
    python app.py ask QUESTION [--json] [--batch FILE]
    python app.py bank [--json]

With --json each command prints exactly one JSON document on stdout (JSON Lines with --batch);
logs and progress go to stderr.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
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


def cmd_serve(args) -> int:
    from coach.answer import Answerer

    started = time.perf_counter()
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

    def respond(question: str, history: list, part: str, topic: str):
        """Stream the model's tokens into the chat, then replace them with the checked answer."""
        from coach.answer import Answer

        past = [{"role": m["role"], "content": _text_of(m["content"])} for m in history]
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
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

    with gr.Blocks(title="Interview coach") as demo:
        gr.Markdown("# Interview coach\nDeep-learning interview questions, answered only from the bank, "
                    "with citations.")
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3, min_width=320):
                    chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chat")
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
        with gr.Tab("Library"):
            library_tab(gr, retriever.store)
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
        body = "".join(f"<p>{escape(p)}</p>" for p in text.split("\n\n")[1:] if p.strip())
        panels.append(
            f"<details id='source-{c['n']}' class='source'><summary><b>[{c['n']}]</b> {escape(c['question'])}"
            f"</summary><p class='meta'>Part {meta.get('part', '?')} · {escape(str(meta.get('topic') or ''))} · "
            f"<code>{escape(c['source'] or '')}</code> · relevance {c['score']:.2f}</p>{body}</details>")
    return "<h4>Sources</h4>" + "".join(panels)


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
    search.add_argument("--part", type=int, help="only this part of the bank (1-4)")
    search.add_argument("--topic", help="only this topic, e.g. 'dropout'")
    search.add_argument("--difficulty", choices=["easy", "medium", "hard"])
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
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
