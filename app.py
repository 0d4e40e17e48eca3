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
import time

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
    demo = build_app(answerer)
    log.info("ready in %.1fs: models loaded, %d chunks indexed; serving on http://%s:%d",
                time.perf_counter() - started, retriever.store.count(), args.host, args.port)
    demo.queue(default_concurrency_limit=4).launch(server_name=args.host, server_port=args.port,
                                                   show_error=True)
    return 0


def build_app(answerer):
    """The Gradio app (a search page for now; chat, library, interview and evaluate tabs follow)."""
    import gradio as gr

    retriever = answerer.retriever

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

    with gr.Blocks(title="Interview coach") as demo:
        gr.Markdown("# Interview coach\nSearch the deep-learning interview bank.")
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
