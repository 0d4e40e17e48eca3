"""The served Gradio app keeps the contract's named API endpoints (called with gradio_client)."""
from __future__ import annotations

import pytest

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
