"""The Gradio app assembled: a header, the five tabs in order, the contract's named API endpoints, and
how it is launched.

The endpoints (/search, /ask, /grade; see ../shared/CONTRACT.md) are hidden components whose events carry
an `api_name`; every other event is `api_name=False`, so `gradio_client` sees exactly these three, and
each returns the same JSON as the matching `app.py ... --json` command.
"""
from __future__ import annotations

import gradio as gr

from coach.bank import load_bank
from coach.config import get_settings
from web.chat import ChatTab
from web.evaluate import EvaluateTab
from web.interview import InterviewTab
from web.library import FlaggedPassages, LibraryTab
from web.search import SearchTab

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


def build_app(answerer, judge=None) -> gr.Blocks:
    """The whole app around one warm `answerer`; `judge` is the backend that may act as an LLM judge
    when grading interview answers, or None."""
    store = answerer.retriever.store
    bank = load_bank(get_settings().corpus_dir)
    with gr.Blocks(title="Interview coach") as demo:
        gr.Markdown("# Interview coach\nDeep-learning interview questions, answered only from the bank, "
                    "with citations.")
        with gr.Tab("Chat"):
            ChatTab(answerer, parts=sorted({e.part for e in bank}), topics=sorted({e.topic for e in bank}))
        with gr.Tab("Interview"):
            interview = InterviewTab(answerer, bank, judge=judge)
        with gr.Tab("Library") as library:
            LibraryTab(store)
            FlaggedPassages(store, tab=library)
        with gr.Tab("Evaluate"):
            EvaluateTab()
        with gr.Tab("Search"):
            search = SearchTab(answerer.retriever)
        _api_endpoints(search.search, lambda q: answerer.ask(q).as_json(),
                       lambda q, a: interview.grader.grade(q, a).as_json())
    return demo


def _api_endpoints(search, ask, grade) -> None:
    """/search, /ask (the final, checked answer) and /grade, on hidden components."""
    api_query, api_results = gr.Textbox(visible=False), gr.JSON(visible=False)
    api_query.submit(search, api_query, api_results, api_name="search")
    api_question, api_answer = gr.Textbox(visible=False), gr.JSON(visible=False)
    api_question.submit(ask, api_question, api_answer, api_name="ask")
    grade_question, grade_answer, api_grade = gr.Textbox(visible=False), gr.Textbox(visible=False), gr.JSON(visible=False)
    grade_answer.submit(grade, [grade_question, grade_answer], api_grade, api_name="grade")


def launch(demo: gr.Blocks, host: str, port: int) -> None:
    """Serve until stopped: four requests at a time, the citation script in the page's head."""
    demo.queue(default_concurrency_limit=4).launch(server_name=host, server_port=port, show_error=True,
                                                   head=CITATION_JS, max_file_size=get_settings().max_file_bytes)
