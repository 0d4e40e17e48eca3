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
from coach.guards import validate_question
from web import access
from web.chat import ChatTab
from web.evaluate import EvaluateTab
from web.interview import InterviewTab
from web.library import FlaggedPassages, LibraryTab
from web.search import SearchTab

# [n] in an answer is a link to #source-n: open that passage in the side panel and scroll to its first
# highlighted (supporting) sentence instead of navigating. A missed key point in the Interview tab is a
# link to #ask=QUESTION: go to the Chat tab and put the question in the box, ready to send.
PAGE_JS = """<script>
document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href^='#source-'], a[href^='#ask=']");
  if (!link) return;
  event.preventDefault(); event.stopPropagation();
  const href = link.getAttribute("href");
  if (href.startsWith("#ask=")) {
    const chatTab = [...document.querySelectorAll("[role=tab]")].find((t) => t.innerText.trim() === "Chat");
    if (chatTab) chatTab.click();
    setTimeout(() => {
      const box = document.querySelector("#question textarea");
      box.value = decodeURIComponent(href.slice(5));
      box.dispatchEvent(new Event("input", {bubbles: true}));
      box.focus();
    }, 100);
    return;
  }
  const panel = document.getElementById(href.slice(1));
  if (!panel) return;
  panel.open = true;
  const target = panel.querySelector("mark") || panel;
  target.scrollIntoView({behavior: "smooth", block: "center"});
}, true);
// Two Gradio widgets fail an accessibility audit as shipped: the upload area's aria-label differs from
// the words it shows, and an empty plot or file box is a plain div with an aria-label. Fixed as they appear.
new MutationObserver(() => {
  for (const area of document.querySelectorAll(".upload-container[aria-label]")) {
    const words = area.innerText.replace(/\s+/g, " ").trim();
    if (words && area.getAttribute("aria-label") !== words) area.setAttribute("aria-label", words);
  }
  for (const box of document.querySelectorAll("div.empty[aria-label]:not([role])")) box.setAttribute("role", "img");
}).observe(document.documentElement, {childList: true, subtree: true});
</script>"""
# Highlighted evidence, passages that scroll inside the side panel, a layout that fits a phone, and
# colours that pass WCAG AA contrast (the default theme's white on orange-500 is 2.8:1, footer grey 1.9:1,
# a selector's info line, e.g. the Library scope's, too light on grey).
PAGE_CSS = """
.gradio-container { --button-primary-background-fill: #c2410c; --button-primary-background-fill-hover: #9a3412;
  --button-cancel-background-fill: #b91c1c; --button-cancel-background-fill-hover: #991b1b;
  --color-accent: #c2410c; --body-text-color-subdued: #595966; --block-info-text-color: #595966; }
footer a, footer button { color: #4b5563 !important; }
#sources mark { background: #fff1a8; color: #1f2937; padding: 0 1px; border-radius: 2px; }
#sources .passage { max-height: 60vh; overflow-y: auto; border-top: 1px solid #d1d5db; padding-top: 4px; }
#sources table { border-collapse: collapse; } #sources td, #sources th { border: 1px solid #ccc; padding: 2px 6px; }
#sources pre { overflow-x: auto; white-space: pre; }
@media (max-width: 480px) { #chat-layout { flex-direction: column; } #chat-layout > div { min-width: 0 !important; } }
"""


def build_app(answerer, judge=None) -> gr.Blocks:
    """The whole app around one warm `answerer`; `judge` is the backend that may act as an LLM judge
    when grading interview answers, or None."""
    store = answerer.retriever.store
    # The answerer parsed the bank already (a third of a second of the start for 332 entries).
    bank = list(answerer.entries.values()) or load_bank(get_settings().corpus_dir)
    # delete_cache: files Gradio copied for download (interview exports) are removed after an hour
    with gr.Blocks(title="Interview coach", delete_cache=(3600, 3600)) as demo:
        gr.Markdown("# Interview coach\nDeep-learning interview questions, answered only from the bank, "
                    "with citations.")
        with gr.Tabs() as tabs:
            with gr.Tab("Chat", id="chat"):
                chat = ChatTab(answerer, parts=sorted({e.part for e in bank}), topics=sorted({e.topic for e in bank}),
                               bank_ids={e.id for e in bank})
            with gr.Tab("Interview", id="interview"):
                interview = InterviewTab(answerer, bank, judge=judge)
            with gr.Tab("Library", id="library") as library:
                library_tab = LibraryTab(store)
                FlaggedPassages(store, tab=library)
            with gr.Tab("Evaluate", id="evaluate"):
                EvaluateTab()
            with gr.Tab("Search", id="search"):
                search = SearchTab(answerer.retriever)
        Endpoints(search, answerer, interview.grader)
        demo.load(chat.refresh, None, chat.choice, api_name=False)
        demo.load(interview.show_lists, None, [interview.history, interview.resume_choice], api_name=False)
        demo.load(library_tab.show_rights, None, library_tab.admin_controls(), api_name=False)
        # "Quiz me on this": an interview on the entries the last answer cites, in the Interview tab.
        chat.quiz.click(lambda: gr.Tabs(selected="interview"), None, tabs, api_name=False).then(
            interview.quiz, chat.cited, interview.screen, api_name=False)
    return demo


class Endpoints:
    """/search, /ask (the final, checked answer) and /grade, on hidden components. Each obeys the same
    rate limits as the UI and answers bad input with {"error": message}, never an exception."""

    def __init__(self, search_tab, answerer, grader):
        self.search_tab, self.answerer, self.grader = search_tab, answerer, grader
        api_query, api_results = gr.Textbox(visible=False), gr.JSON(visible=False)
        api_query.submit(self.search, api_query, api_results, api_name="search")
        api_question, api_answer = gr.Textbox(visible=False), gr.JSON(visible=False)
        api_question.submit(self.ask, api_question, api_answer, api_name="ask")
        grade_question, grade_answer = gr.Textbox(visible=False), gr.Textbox(visible=False)
        api_grade = gr.JSON(visible=False)
        grade_answer.submit(self.grade, [grade_question, grade_answer], api_grade, api_name="grade")

    @access.guarded_api
    def search(self, query: str, request: gr.Request = None) -> dict:
        access.user_of(request)
        return self.search_tab.search(query, request)

    @access.guarded_api
    def ask(self, question: str, request: gr.Request = None) -> dict:
        access.user_of(request)
        access.rate_check(request, "ask")
        return self.answerer.ask(question).as_json()

    @access.guarded_api
    def grade(self, question: str, answer: str, request: gr.Request = None) -> dict:
        access.user_of(request)
        access.rate_check(request, "grade")
        return self.grader.grade(validate_question(question), answer).as_json()


def launch(demo: gr.Blocks, host: str, port: int, users=None, auth_header: str | None = None,
           on_ready=None) -> None:
    """Serve until stopped: four requests at a time, the page's script and style. With `users` (a
    coach.users.Users holding accounts) people sign in with Gradio's login form, checked against the
    bcrypt hashes; with `auth_header` a reverse proxy names them. `on_ready()` runs once the server
    answers (background work started there does not slow the start on 2 cores)."""
    access.configure(users=users, header=auth_header)
    auth = (lambda name, password: users.authenticate(name, password) is not None) if users else None
    demo.queue(default_concurrency_limit=4).launch(
        server_name=host, server_port=port, show_error=True, head=PAGE_JS, css=PAGE_CSS,
        max_file_size=get_settings().max_file_bytes, auth=auth,
        auth_message="Sign in with the name and password your admin gave you." if auth else None,
        prevent_thread_lock=True)
    if on_ready:
        on_ready()
    demo.block_thread()
