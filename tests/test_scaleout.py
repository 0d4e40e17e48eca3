"""Scale-out: two app replicas sharing one real Chroma server and one OpenAI-compatible model server.

Everything is real and on 127.0.0.1: `chroma run`, `python -m llama_cpp.server`, ingest jobs
(`python -m ingest` with COACH_CHROMA_URL) and two `python app.py serve` processes, each with its own
data folder (its BM25 index is derived from the shared Chroma collection). 50 chats go through the
replicas' /ask endpoints, a bounded number at a time: none may fail, be lost or come back malformed.
Then a document ingested by a second job must become searchable on both replicas.

The Chroma server starts on a copy of the session's index (the folder format of `chroma run --path`
is the embedded client's), and a first job over the bank must find every section already there:
embedding the bank again in the job took a minute and a half on CI and tested nothing the session's
ingest and tests/test_ingest.py do not. Writing through the server is the second job's (a new document).
"""
from __future__ import annotations

import json
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import pytest

from conftest import ROOT, run_cli
from evals import servers
from evals.datasets import load_jsonl
from helpers import ASK_KEYS, assert_grounded

CHATS, IN_SCOPE, IN_FLIGHT = 50, 35, 6
# gradio_client gives up on a request after 20 s by default; on 2 cores shared with other work a
# replica can take longer to accept a request, which is slowness, not a lost chat.
HTTP = {"timeout": 300}
pytestmark = pytest.mark.timeout(2400)


@pytest.fixture(scope="module")
def chroma_url(corpus_index, tmp_path_factory):
    """`chroma run` on a copy of the session's Chroma folder: the bank is in it when the server starts."""
    path = tmp_path_factory.mktemp("chroma-server")
    shutil.copytree(corpus_index.settings.chroma_dir, path, dirs_exist_ok=True)
    with servers.chroma_server(path) as url:
        yield url


def ingest_job(chroma_url: str, data_dir, *paths) -> dict:
    out = run_cli("-m", "ingest", *map(str, paths), "--json", "--quiet", timeout=900,
                  env={"COACH_CHROMA_URL": chroma_url, "COACH_DATA_DIR": str(data_dir)})
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout)


@pytest.fixture(scope="module")
def replicas(chroma_url, llama_server, extractive, tmp_path_factory):
    """A job over the bank finds it whole in the Chroma server, then two app processes serve from it
    (their warm-ups read the sentence vectors `extractive` stored instead of both embedding them)."""
    report = ingest_job(chroma_url, tmp_path_factory.mktemp("ingest-job"))
    assert report["unchanged"] >= 400 and not report["errors"], report
    assert (report["added"], report["updated"], report["deleted"]) == (0, 0, 0), report
    env = {"COACH_CHROMA_URL": chroma_url, "COACH_LLM": "openai", "COACH_OPENAI_BASE_URL": llama_server,
           "COACH_OPENAI_MODEL": "smollm2",
           "COACH_QUESTIONS_PER_MINUTE": "100"}  # fifty people behind one address, not one script
    with ExitStack() as stack:
        urls = [stack.enter_context(servers.app_server(
                    {**env, "COACH_DATA_DIR": str(tmp_path_factory.mktemp(f"replica-{n}"))}))[0]
                for n in range(2)]
        yield urls


def test_fifty_concurrent_chats_across_two_replicas(replicas):
    from gradio_client import Client

    rng = random.Random(9)
    in_scope = [row["query"] for row in rng.sample(load_jsonl(ROOT / "evals/sets/retrieval.jsonl"), IN_SCOPE)]
    off_topic = [row["query"] for row in rng.sample(load_jsonl(ROOT / "evals/sets/out_of_scope.jsonl"),
                                                    CHATS - IN_SCOPE)]
    questions = in_scope + off_topic
    rng.shuffle(questions)
    clients = [Client(url, verbose=False, httpx_kwargs=HTTP) for url in replicas]

    def chat(n: int):
        try:
            return clients[n % 2].predict(questions[n], api_name="/ask")
        except Exception as exc:  # any failure is counted, not raised, so all 50 run
            return exc

    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        answers = list(pool.map(chat, range(CHATS)))

    errors = [(questions[n], repr(a)) for n, a in enumerate(answers) if isinstance(a, Exception)]
    assert not errors, errors
    assert len(answers) == CHATS
    for question, doc in zip(questions, answers, strict=True):
        assert set(doc) >= ASK_KEYS and doc["question"] == question, doc  # nothing lost or swapped
        assert not doc["blocked"] and doc["backend"].startswith("openai"), doc
        if not doc["refused"]:
            assert_grounded(doc)
    answered = [d for q, d in zip(questions, answers, strict=True) if q in in_scope and not d["refused"]]
    refused = [d for q, d in zip(questions, answers, strict=True) if q in off_topic and d["refused"]]
    # Both replicas read the shared index (an empty or unreachable one would refuse everything) ...
    assert len(answered) >= 0.8 * IN_SCOPE and len(refused) >= 0.8 * (CHATS - IN_SCOPE)
    # ... and the model server really wrote answers (not only the extractive fall-back).
    assert sum(d["generated_sentences"] for d in answered) > 0
    unreachable = [d["fallback"] for d in answered if "not reachable" in (d["fallback"] or "")]
    assert len(unreachable) <= 0.2 * len(answered), unreachable


def test_a_document_ingested_by_a_job_reaches_both_replicas(replicas, chroma_url, tmp_path):
    from gradio_client import Client

    notes = tmp_path / "team-notes.md"
    notes.write_text("# Team notes\n\n## 1. What is quokka pruning?\n\nQuokka pruning is our team's name for "
                     "removing the attention heads whose average attention entropy stays highest over a "
                     "validation set, then fine-tuning briefly so the remaining heads take over.\n")
    report = ingest_job(chroma_url, tmp_path / "job", notes)
    assert report["added"] == 1, report
    query = "what is quokka pruning"
    for url in replicas:
        client, deadline = Client(url, verbose=False, httpx_kwargs=HTTP), time.monotonic() + 60
        while True:
            top = client.predict(query, api_name="/search")["results"][0]
            if top["source"].endswith("team-notes.md"):
                break
            assert time.monotonic() < deadline, f"{url} still ranks {top['source']} first"
            time.sleep(1)
