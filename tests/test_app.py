"""The served Gradio app keeps the contract's named API endpoints (called with gradio_client)."""
from __future__ import annotations

import pytest

from coach.llm import Backend
from helpers import assert_grounded, check_search_document


@pytest.fixture(scope="module")
def client(served_app):
    from gradio_client import Client

    return Client(served_app, verbose=False)


def test_search_endpoint(client):
    doc = client.predict("dropout at test time", api_name="/search")
    check_search_document(doc, "dropout at test time")


def test_ask_endpoint_answers_with_citations_and_refuses_off_topic(client):
    doc = client.predict("What is catastrophic forgetting?", api_name="/ask")
    assert_grounded(doc)
    off_topic = client.predict("What is the capital of Australia?", api_name="/ask")
    assert off_topic["refused"] and not off_topic["citations"]
    blocked = client.predict("x" * 2000, api_name="/ask")
    assert blocked["blocked"] and blocked["guard"] == "input_length"


def test_passages_render_markdown_but_never_raw_html():
    from coach.render import markdown_html

    html = markdown_html("**Why.**\n\n- first\n- second <script>alert(1)</script> <img src=x onerror=alert(1)>")
    assert "<strong>Why.</strong>" in html and html.count("<li>") == 2
    assert "<script>" not in html and "<img" not in html


class EndlessTokens(Backend):
    """A backend that streams until it is closed, and records that it was (the model's lock is then free)."""
    name, capable = "tokens", True

    def __init__(self):
        self.closed = False

    def stream(self, messages, max_tokens=256):
        try:
            while True:
                yield "Dropout zeroes units at random. "
        finally:
            self.closed = True


def test_stop_ends_the_stream_with_its_note_frees_the_model_and_saves_nothing(retriever):
    """Stop (the press is counted per browser session) ends that session's stream at its next token: the
    stream's own last update is the Stop note, so no late token can paint over it."""
    from types import SimpleNamespace

    import gradio as gr

    from coach.answer import Answerer
    from web.assembly import build_app
    from web.chat import STOPPED

    backend = EndlessTokens()
    demo = build_app(Answerer(retriever=retriever, backend=backend))
    chat = next(fn.fn.__self__ for fn in demo.fns.values()
                if type(getattr(fn.fn, "__self__", None)).__name__ == "ChatTab")
    mine, other = (gr.Request(session_hash=s, client=SimpleNamespace(host="127.0.0.1")) for s in ("me", "you"))
    saved_before = chat.saved.list("local")
    stream = chat.respond("What is dropout?", [], "All", "All", request=mine)
    next(stream)  # the question shown, Stop offered
    assert "▌" in next(stream)[chat.chatbot][-1]["content"]
    chat.stopped(request=other)  # another browser's Stop
    assert "▌" in next(stream)[chat.chatbot][-1]["content"], "another session's Stop does not end this stream"
    chat.stopped(request=mine)
    rest = list(stream)
    assert len(rest) == 1 and rest[0][chat.chatbot][-1]["content"] == STOPPED
    assert rest[0][chat.ask]["visible"] and not rest[0][chat.stop]["visible"]
    assert backend.closed, "the model's stream is closed, so its lock is free for the next question"
    assert chat.saved.list("local") == saved_before, "nothing of a stopped answer is saved"


def test_the_chat_says_who_writes_the_answers():
    from types import SimpleNamespace

    from coach.llm import ExtractiveBackend, LlamaCppBackend, OpenAIBackend
    from web.chat import backend_note

    def note(backend):
        return backend_note(SimpleNamespace(backend=backend, writes=backend.capable))

    assert note(OpenAIBackend("http://127.0.0.1:9/v1", "smollm2", None)).startswith("Answering with **openai (smollm2)**")
    embedded = note(LlamaCppBackend())
    assert embedded.startswith("Answers are composed from the bank") and "llamacpp (SmolLM2" in embedded
    assert note(ExtractiveBackend()) == "Answers are composed from the bank's own entries."
