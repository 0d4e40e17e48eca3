"""The Chat tab: a question streams into the conversation, then the checked answer replaces the tokens,
the passages it cites open in the side panel with the supporting sentences highlighted, and the
conversation is saved for the signed-in user.

A capable backend's raw tokens are shown while they arrive (a model is slow to finish) and are
then replaced by the answer `coach.answer` kept after its checks, so what stays on screen is always the
grounded answer; Stop ends the stream and discards the unchecked tokens for the same reason. Stop does
not use Gradio's `cancels`: on a loaded server the cancelled stream's last update could reach the page after
the Stop note (and once never let the note show at all), so Stop only records the press and the stream,
the one writer of the conversation, replaces its own tokens with the note and ends. Each user
(or client address, when nobody signs in) may ask `questions_per_minute` questions a minute, counted
together with the /ask endpoint (`web.access`). Conversations are kept per user in `coach.conversations`
(the user is `web.access.user_of(request)`, "local" on an unauthenticated loopback server); nobody sees
another user's.
"""
from __future__ import annotations

import tempfile
from contextlib import closing
from dataclasses import fields
from pathlib import Path

import gradio as gr

from coach.answer import Answer
from coach.conversations import ConversationError, Conversations
from coach.render import chat_markdown, sources_html
from web import ALL, LATEX, access, scope_of, scope_selector, unless_all

EXAMPLES = ["What is catastrophic forgetting?", "How does Adam correct the bias of its moment estimates?",
            "Why do transformers need positional encodings?", "How does LoRA work?",
            "What is the difference between a bi-encoder and a cross-encoder?"]
SOURCES_HINT = ("<p class='hint'>The passages an answer cites appear here, the sentences that support it "
                "highlighted; click a [n] in the answer to open one.</p>")
STOPPED = "_Stopped. The unchecked partial answer was discarded; ask again to get a checked one._"
ANSWER_FIELDS = {f.name for f in fields(Answer)}


class ChatTab:
    """The conversation with its question box and saved conversations; filters and sources beside it.
    `bank_ids` are the entries "Quiz me on this" can start an interview on (wired in `web.assembly`)."""

    def __init__(self, answerer, parts: list[int], topics: list[str], bank_ids: set[str]):
        self.answerer, self.bank_ids = answerer, bank_ids
        self.saved = Conversations()
        self.conversation = gr.State(None)   # the id of the conversation being continued, or None
        self.cited = gr.State([])            # bank ids the last answer cites: what "Quiz me" asks
        # Stop presses per browser session: `respond` ends, showing the Stop note, as soon as this moves.
        self.stop_presses: dict[str, int] = {}
        with gr.Row(elem_id="chat-layout"):
            with gr.Column(scale=3, min_width=300):
                self._build_conversation()
                self._build_saved_list()
            with gr.Column(scale=2, min_width=260):
                self._build_side_panel(parts, topics)
        self._wire()

    def _build_conversation(self) -> None:
        # No share button (nowhere to share to offline; Gradio leaves it without an accessible name) and
        # no like/dislike (nothing records them).
        self.chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chat", latex_delimiters=LATEX,
                                  buttons=["copy", "copy_all"], feedback_options=None)
        with gr.Row(elem_id="ask-row"):
            # One line that grows to four: Enter sends, Shift+Enter adds a line (Gradio's single-line rule).
            self.box = gr.Textbox(label="Your question", show_label=False, scale=5, elem_id="question",
                                  lines=1, max_lines=4,
                                  placeholder="Ask a deep-learning interview question (Shift+Enter: new line)")
            self.ask = gr.Button("Ask", variant="primary", scale=1, min_width=70, elem_id="ask")
            self.stop = gr.Button("Stop", variant="stop", scale=1, min_width=70, visible=False, elem_id="stop")
        self.quiz = gr.Button("Quiz me on this", visible=False, size="sm", elem_id="quiz-me")
        gr.Examples(EXAMPLES, inputs=self.box, label="Try one")
        self.clear_button = gr.Button("New conversation", size="sm", elem_id="clear")

    def _build_saved_list(self) -> None:
        with gr.Accordion("Saved conversations", open=True, elem_id="saved-box"):
            self.choice = gr.Dropdown([], label="Conversation", elem_id="saved-choice")
            with gr.Row():
                self.open_button = gr.Button("Open", size="sm", elem_id="saved-open")
                self.export_button = gr.Button("Export", size="sm", elem_id="saved-export")
                self.delete_button = gr.Button("Delete", size="sm", variant="stop", elem_id="saved-delete")
            with gr.Row():
                self.new_title = gr.Textbox(label="New name", scale=3, elem_id="saved-title")
                self.rename_button = gr.Button("Rename", size="sm", scale=1, elem_id="saved-rename")
            self.saved_status = gr.Markdown(elem_id="saved-status")
            self.export_file = gr.File(label="Markdown export", visible=False, elem_id="saved-file")

    def _build_side_panel(self, parts: list[int], topics: list[str]) -> None:
        with gr.Row():
            self.part = gr.Dropdown([ALL, *map(str, parts)], value=ALL, label="Part", elem_id="part")
            self.topic = gr.Dropdown([ALL, *topics], value=ALL, label="Topic", elem_id="topic")
        self.scope = scope_selector("scope")
        gr.Markdown(backend_note(self.answerer), elem_id="backend")
        self.sources = gr.HTML(SOURCES_HINT, elem_id="sources")

    def _wire(self) -> None:
        inputs = [self.box, self.chatbot, self.part, self.topic, self.conversation, self.scope]
        outputs = [self.box, self.chatbot, self.sources, self.stop, self.ask, self.quiz, self.cited,
                   self.conversation, self.choice]
        self.ask.click(self.respond, inputs, outputs, api_name=False)
        self.box.submit(self.respond, inputs, outputs, api_name=False)
        self.stop.click(self.stopped, None, self.stop, api_name=False)
        self.clear_button.click(self.clear, None, [self.chatbot, self.box, self.sources, self.conversation,
                                                   self.quiz, self.cited], api_name=False)
        shown = [self.chatbot, self.sources, self.conversation, self.quiz, self.cited, self.saved_status]
        self.open_button.click(self.resume, self.choice, shown, api_name=False)
        listed = [self.choice, self.saved_status]
        self.rename_button.click(self.rename, [self.choice, self.new_title], [*listed, self.new_title], api_name=False)
        self.delete_button.click(self.delete, [self.choice, self.conversation],
                                 [*listed, self.conversation], api_name=False)
        self.export_button.click(self.export, self.choice, [self.export_file, self.saved_status], api_name=False)

    # --- asking --------------------------------------------------------------------------------
    @access.guarded
    def respond(self, question: str, history: list, part: str, topic: str, conversation: str | None = None,
                scope: str = "All", request: gr.Request = None):
        """Stream the model's tokens into the chat, then replace them with the checked answer and save
        the turn. `scope` is the library selector's choice. Gradio passes the browser session's `request`
        because of its type hint."""
        past = [{"role": m["role"], "content": _text_of(m["content"])} for m in history]
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
        if limited := rate_limited(self.answerer, question, request):
            history[-1] = {"role": "assistant", "content": chat_markdown(limited)}
            yield {self.box: "", self.chatbot: history}
            return
        session = _session_of(request)
        presses = self.stop_presses.get(session, 0)  # read before Stop is shown
        yield {self.box: "", self.chatbot: history, self.stop: gr.update(visible=True),
               self.ask: gr.update(visible=False), self.quiz: gr.update(visible=False)}
        streamed = ""
        filters = {"part": unless_all(part, int), "topic": unless_all(topic), "scope": scope_of(scope)}
        with closing(self.answerer.stream(question, past, **filters)) as events:  # closing frees the model
            for event in events:
                if self.stop_presses.get(session, 0) != presses:
                    yield self.stop_shown(history)  # nothing of this answer is shown or saved
                    return
                if isinstance(event, Answer):
                    yield self.finish(question, event, history, conversation, request)
                else:
                    streamed += event
                    history[-1] = {"role": "assistant", "content": streamed + " ▌"}
                    yield {self.chatbot: history}  # not the buttons: a Stop press has hidden Stop

    def finish(self, question: str, answer: Answer, history: list, conversation: str | None, request) -> dict:
        """The checked answer in place of the tokens, its sources, the turn saved, "Quiz me" offered."""
        doc = answer.as_json()
        doc["citations"] = with_passages(doc["citations"], self.answerer.retriever.store)
        history[-1] = {"role": "assistant", "content": chat_markdown(answer_of(doc))}
        user = access.user_of(request).name
        try:
            conversation = self.saved.save_turn(user, conversation, question, doc)
        except ConversationError:  # deleted in another window meanwhile: the turn starts a new one
            conversation = self.saved.save_turn(user, None, question, doc)
        cited = bank_cited(doc["citations"], self.bank_ids)
        return {self.box: "", self.chatbot: history, self.sources: sources_html(doc["citations"]),
                self.stop: gr.update(visible=False), self.ask: gr.update(visible=True),
                self.quiz: gr.update(visible=bool(cited)), self.cited: cited, self.conversation: conversation,
                self.choice: self.choices(user, conversation)}

    @access.guarded
    def stopped(self, request: gr.Request = None) -> dict:
        """Stop pressed: counted for this browser session; the stream sees the count move at its next
        token and replaces its unchecked tokens with the note (`stop_shown`)."""
        session = _session_of(request)
        self.stop_presses[session] = self.stop_presses.get(session, 0) + 1
        return {self.stop: gr.update(visible=False)}

    def stop_shown(self, history: list) -> dict:
        """The conversation with the Stop note in place of the streamed tokens; Ask back."""
        history[-1] = {"role": "assistant", "content": STOPPED}
        return {self.chatbot: history, self.stop: gr.update(visible=False), self.ask: gr.update(visible=True)}

    @access.guarded
    def clear(self, request: gr.Request = None) -> dict:
        return {self.chatbot: [], self.box: "", self.sources: SOURCES_HINT, self.conversation: None,
                self.quiz: gr.update(visible=False), self.cited: []}

    # --- saved conversations -------------------------------------------------------------------
    def choices(self, user: str, value: str | None = None):
        """The user's saved conversations as (name, id) choices of the dropdown."""
        listed = [(f"{c['title']} ({c['turns']})", c["id"]) for c in self.saved.list(user)]
        return gr.update(choices=listed, value=value)

    @access.guarded
    def refresh(self, request: gr.Request = None) -> dict:
        """On page load: the signed-in user's conversations (nobody else's)."""
        return {self.choice: self.choices(access.user_of(request).name)}

    @access.guarded
    def resume(self, conversation_id: str | None, request: gr.Request = None) -> dict:
        """Reopen a saved conversation: its turns in the chat, the last answer's sources beside it."""
        try:
            saved = self.saved.get(access.user_of(request).name, conversation_id)
        except ConversationError as exc:
            return {self.saved_status: f"⚠️ {exc}"}
        history = []
        for turn in saved["turns"]:
            history += [{"role": "user", "content": turn["question"]},
                        {"role": "assistant", "content": chat_markdown(answer_of(turn["answer"]))}]
        last = saved["turns"][-1]["answer"]["citations"] if saved["turns"] else []
        cited = bank_cited(last, self.bank_ids)
        return {self.chatbot: history, self.sources: sources_html(last) or SOURCES_HINT,
                self.conversation: conversation_id, self.quiz: gr.update(visible=bool(cited)), self.cited: cited,
                self.saved_status: f"Continuing **{saved['title']}**."}

    @access.guarded
    def rename(self, conversation_id: str | None, title: str, request: gr.Request = None) -> dict:
        user = access.user_of(request).name
        try:
            self.saved.rename(user, conversation_id, title)
        except ConversationError as exc:
            return {self.saved_status: f"⚠️ {exc}"}
        return {self.choice: self.choices(user, conversation_id), self.saved_status: "Renamed.", self.new_title: ""}

    @access.guarded
    def delete(self, conversation_id: str | None, current: str | None, request: gr.Request = None) -> dict:
        user = access.user_of(request).name
        try:
            self.saved.delete(user, conversation_id)
        except ConversationError as exc:
            return {self.saved_status: f"⚠️ {exc}"}
        return {self.choice: self.choices(user), self.saved_status: "Deleted.",
                self.conversation: None if current == conversation_id else current}

    @access.guarded
    def export(self, conversation_id: str | None, request: gr.Request = None) -> dict:
        """The conversation as a markdown file, each cited passage quoted under its answer."""
        try:
            text = self.saved.export_markdown(access.user_of(request).name, conversation_id)
        except ConversationError as exc:
            return {self.export_file: gr.update(visible=False), self.saved_status: f"⚠️ {exc}"}
        path = Path(tempfile.mkdtemp(prefix="conversation-")) / f"conversation-{conversation_id}.md"
        path.write_text(text, encoding="utf-8")
        return {self.export_file: gr.update(value=str(path), visible=True), self.saved_status: "Exported."}


def with_passages(citations: list[dict], store) -> list[dict]:
    """The citations with what the side panel and the export show: the whole passage, part, topic and
    bank id (kept with the saved turn, so a resumed conversation shows what was cited then)."""
    found = []
    for c in citations:
        meta = store.chunk_metadata(c["chunk_id"])
        passage = store.section_text(meta.get("source"), meta.get("qid")) or ""
        found.append({**c, "passage": passage, "part": meta.get("part"), "topic": meta.get("topic"),
                      "qid": meta.get("qid")})
    return found


def bank_cited(citations: list[dict], bank_ids: set[str]) -> list[str]:
    """The bank entries among the citations (what "Quiz me" asks); an upload's section key is not one."""
    return [c["qid"] for c in citations if c.get("library", "bank") == "bank" and c.get("qid") in bank_ids]


def answer_of(doc: dict) -> Answer:
    """An Answer from its JSON (a saved turn), ignoring fields this version does not know."""
    return Answer(**{k: v for k, v in doc.items() if k in ANSWER_FIELDS})


def _text_of(content) -> str:
    """Chat message content as text (Gradio may hand back a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


def backend_note(answerer) -> str:
    """Who writes the answers, in one line under the filters."""
    name = answerer.backend.describe()
    if answerer.writes:
        return f"Answering with **{name}**; every sentence is checked against the bank."
    if answerer.backend.prompted:  # a model that is not capable: configured, but it does not write
        return (f"Answers are composed from the bank's own entries: **{name}** is too small to write them "
                "well (README, \"Which backend\").")
    return "Answers are composed from the bank's own entries."


# --- the rate limit --------------------------------------------------------------------------------
def rate_limited(answerer, question: str, request) -> Answer | None:
    """A blocked Answer when this user (or client address) asked too many questions in the last minute,
    else None. The limit is shared with the /ask endpoint (`web.access`)."""
    try:
        access.rate_check(request, "ask")
    except access.Refused as exc:
        return Answer(question=question, answer=f"{exc}.", blocked=True, guard="rate_limit",
                      backend=answerer.backend.describe())
    return None


def _session_of(request: gr.Request | None) -> str:
    """The browser session a request comes from ("" outside a browser, e.g. in-process calls)."""
    return getattr(request, "session_hash", None) or ""
