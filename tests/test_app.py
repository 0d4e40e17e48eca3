"""The served Gradio app keeps the contract's named API endpoints (called with gradio_client)."""
from __future__ import annotations

import os
import subprocess
import sys
import pytest
from conftest import ROOT, free_port, wait_until_up
from test_answer import assert_grounded
from test_cli import check_search_document


@pytest.fixture(scope="module")
def served_app(corpus_index, tmp_path_factory):
    """`python app.py serve` on 127.0.0.1 with the extractive backend; stopped after the tests."""
    port = free_port()
    log = open(tmp_path_factory.mktemp("app") / "serve.log", "w+b")
    proc = subprocess.Popen([sys.executable, "app.py", "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, "COACH_LLM": "extractive"}, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    wait_until_up(proc, url, log, "app.py serve", 180)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


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
