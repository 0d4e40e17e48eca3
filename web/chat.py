"""The Chat tab: a question streams into the conversation, then the checked answer replaces the tokens,
and the passages it cites open in the side panel.

The model's raw tokens are shown while they arrive (a 135M model on a CPU is slow to finish) and are
then replaced by the answer `coach.answer` kept after its checks, so what stays on screen is always the
grounded answer. Each user (or client address, when nobody signs in) may ask `questions_per_minute`
questions a minute, counted together with the /ask endpoint (`web.access`).
"""
from __future__ import annotations

import gradio as gr

from coach.answer import Answer
from coach.render import chat_markdown, sources_html
from web import ALL, access, scope_of, scope_selector, unless_all

# The bank writes formulas as $...$ (inline) and $$...$$ (display); Gradio renders only $$ by default.
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
EXAMPLES = ["What is catastrophic forgetting?", "How does Adam correct the bias of its moment estimates?",
            "Why do transformers need positional encodings?", "How does LoRA work?",
            "What is the difference between a bi-encoder and a cross-encoder?"]
SOURCES_HINT = ("<p class='hint'>The passages an answer cites appear here; click a [n] in the answer to "
                "open one.</p>")


class ChatTab:
    """The conversation with its question box and examples; filters, backend and sources beside it."""

    def __init__(self, answerer, parts: list[int], topics: list[str]):
        self.answerer = answerer
        with gr.Row():
            with gr.Column(scale=3, min_width=320):
                self._build_conversation()
            with gr.Column(scale=2, min_width=260):
                self._build_side_panel(parts, topics)
        inputs = [self.box, self.chatbot, self.part, self.topic, self.scope]
        outputs = [self.box, self.chatbot, self.sources]
        self.ask.click(self.respond, inputs, outputs, api_name=False)
        self.box.submit(self.respond, inputs, outputs, api_name=False)
        self.clear_button.click(self.clear, None, [self.chatbot, self.box, self.sources], api_name=False)

    def _build_conversation(self) -> None:
        self.chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chat", latex_delimiters=LATEX)
        with gr.Row():
            self.box = gr.Textbox(show_label=False, placeholder="Ask a deep-learning interview question",
                                  scale=5, elem_id="question", max_lines=4)
            self.ask = gr.Button("Ask", variant="primary", scale=1, min_width=80, elem_id="ask")
        gr.Examples(EXAMPLES, inputs=self.box, label="Try one")
        self.clear_button = gr.Button("Clear conversation", size="sm", elem_id="clear")

    def _build_side_panel(self, parts: list[int], topics: list[str]) -> None:
        with gr.Row():
            self.part = gr.Dropdown([ALL, *map(str, parts)], value=ALL, label="Part", elem_id="part")
            self.topic = gr.Dropdown([ALL, *topics], value=ALL, label="Topic", elem_id="topic")
        self.scope = scope_selector("scope")
        gr.Markdown(f"Answering with **{self.answerer.backend.describe()}**; every sentence is "
                    "checked against the bank.", elem_id="backend")
        self.sources = gr.HTML(SOURCES_HINT, elem_id="sources")

    # --- handlers ------------------------------------------------------------------------------
    @access.guarded
    def respond(self, question: str, history: list, part: str, topic: str, scope: str = "All",
                request: gr.Request = None):
        """Stream the model's tokens into the chat, then replace them with the checked answer.
        Gradio passes the browser session's `request` because of its type hint."""
        past = [{"role": m["role"], "content": _text_of(m["content"])} for m in history]
        history = [*history, {"role": "user", "content": question}, {"role": "assistant", "content": "…"}]
        if limited := rate_limited(self.answerer, question, request):
            history[-1] = {"role": "assistant", "content": chat_markdown(limited)}
            yield {self.box: "", self.chatbot: history}
            return
        yield {self.box: "", self.chatbot: history}
        streamed = ""
        filters = {"part": unless_all(part, int), "topic": unless_all(topic), "scope": scope_of(scope)}
        for event in self.answerer.stream(question, past, **filters):
            if isinstance(event, Answer):
                history[-1] = {"role": "assistant", "content": chat_markdown(event)}
                yield {self.box: "", self.chatbot: history,
                       self.sources: sources_html(event, self.answerer.retriever.store)}
            else:
                streamed += event
                history[-1] = {"role": "assistant", "content": streamed + " ▌"}
                yield {self.box: "", self.chatbot: history}

    def clear(self) -> dict:
        return {self.chatbot: [], self.box: "", self.sources: ""}


def _text_of(content) -> str:
    """Chat message content as text (Gradio may hand back a list of typed parts)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(_text_of(part.get("text", "")) if isinstance(part, dict) else str(part) for part in content)
    return str(content or "")


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
