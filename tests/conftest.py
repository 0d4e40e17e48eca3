"""Shared fixtures: every test runs offline against its own data folder, never ./data."""
from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seeds" / "deep-learning-interview-questions-part-3.txt"
ARTIFACTS = ROOT / "test-artifacts"
# The served app's question limit: the whole suite is one visitor to it (see `served_app`).
QUESTIONS_PER_MINUTE_SERVED = 600

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["COACH_DATA_DIR"] = tempfile.mkdtemp(prefix="coach-test-data-")
atexit.register(shutil.rmtree, os.environ["COACH_DATA_DIR"], ignore_errors=True)
os.environ.pop("COACH_CHROMA_URL", None)
sys.path.insert(0, str(ROOT))

import pytest  # imported after the environment above is set, as every project import must be

from coach.embedder import CachedEmbeddings

# The test process embeds ~20,000 different sentences in a session (the bank's units and key points, the
# grading and evaluation sets' answers). Under the app's bound of 8,192, sized for a server's memory, later
# modules found them evicted and embedded them again: 17,100 of the 43,200 texts embedded in a session were
# repeats, 11,800 of 37,800 with this bound (those after the evaluation code's clear_cache, which times
# real query embedding). Eviction itself is tested in test_embedder.py.
CachedEmbeddings.SENTENCES = 1 << 15  # ~50 MB of float32 vectors at most


@pytest.fixture(scope="session")
def corpus_index():
    """The real bank, ingested once into the session's data folder."""
    from coach.config import get_settings
    from coach.store import open_store
    from ingest.pipeline import ingest

    settings = get_settings()
    report = ingest(progress=False, settings=settings)
    assert not report.errors, report.errors
    return open_store(settings)


@pytest.fixture(scope="session")
def retriever(corpus_index):
    from coach.retrieval import HybridRetriever

    return HybridRetriever(store=corpus_index)


@pytest.fixture(scope="session")
def extractive(retriever):
    """The answer pipeline without a model (ExtractiveBackend) over the session's index, warmed up as a
    served app warms up (`Answerer.warm_up`): the bank's ~6,000 answer units and sentences are embedded
    once, in batches, and kept in the embedder's vector file. The answers of the session find them in
    memory, and every app server and command the tests start reads them from the file; each app server
    otherwise embedded them again itself (~45 s of both cores when the vector file is new, as on CI)."""
    from coach.answer import Answerer
    from coach.llm import ExtractiveBackend

    answerer = Answerer(retriever=retriever, backend=ExtractiveBackend())
    answerer.warm_up()
    return answerer


@pytest.fixture(scope="session")
def gold_answers(extractive):
    """(row, Answer) for every in-scope gold query (evals/sets/retrieval.jsonl), answered once a session:
    the refusal test and the evidence test check the same 160 answers (each run of them took ~30 s)."""
    from evals import datasets

    return [(row, extractive.ask(row["query"])) for row in datasets.load_jsonl(datasets.GOLD)]


@pytest.fixture(scope="session")
def grader(retriever):
    """The interview grader without a backend (key points only, as with the embedded model); its vectors
    of the bank's ~1,900 key points are computed once a session."""
    from coach.grader import Grader

    return Grader(retriever=retriever)


@pytest.fixture(scope="session")
def bank():
    """The bank's entries by id, as loaded from corpus/."""
    from coach.bank import load_bank
    from coach.config import get_settings

    return {entry.id: entry for entry in load_bank(get_settings().corpus_dir)}


@pytest.fixture(scope="session")
def embeddings():
    """The shared MiniLM embedder (cached vectors), without building an index."""
    from coach.embedder import embedder

    return embedder()


@pytest.fixture
def fresh_settings(tmp_path, monkeypatch):
    """Settings pointing at an empty data folder of the test's own."""
    from coach.config import get_settings

    monkeypatch.setenv("COACH_DATA_DIR", str(tmp_path / "data"))
    return get_settings()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """`python -m llama_cpp.server` on 127.0.0.1 serving the same GGUF file; stopped after the tests."""
    from coach.llm import smollm2_path

    port = free_port()
    # llama.cpp logs a lot: to a file, since a full pipe would block the server.
    log = open(tmp_path_factory.mktemp("llama-server") / "server.log", "w+b")  # noqa: SIM115 (open while the server lives)
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
                             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                             "--n_ctx", "4096", "--n_threads", "2"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    wait_until_up(proc, f"{url}/models", log, "llama_cpp.server", 120)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


@pytest.fixture(scope="session")
def served_app(corpus_index, extractive, tmp_path_factory):
    """`python app.py serve` on 127.0.0.1 with the default (llamacpp) backend; stopped after the tests.

    The server gets a copy of the session's index, not the folder itself: its uploads and deletes would
    otherwise change the Chroma files under the session's own client, whose vector segment then no
    longer knows those ids ("Error finding id" in every later test that reads embeddings). It reads the
    sentence vectors of its warm-up from the embedder's file, where `extractive` put them.

    Every browser and API test reaches it from one address, which the anonymous rate limit counts as one
    visitor: at 12 questions a minute, the later tests were refused ("too many requests") whenever the
    earlier ones ran within the same minute (as `pytest tests/test_app.py … tests/test_browser_chat.py`
    does). The limit itself is tested in-process (test_security, test_guards)."""
    with serve_app(tmp_path_factory, COACH_LLM="llamacpp") as url:
        yield url


@pytest.fixture(scope="session")
def streaming_app(corpus_index, extractive, llama_server, tmp_path_factory):
    """The app with a model that writes its answers (COACH_LLM=openai against `llama_server`): the
    embedded default writes nothing, so only this one streams tokens a Stop can end."""
    with serve_app(tmp_path_factory, COACH_LLM="openai", COACH_OPENAI_BASE_URL=llama_server,
                   COACH_OPENAI_MODEL="smollm2") as url:
        yield url


@contextmanager
def serve_app(tmp_path_factory, **env):
    """`python app.py serve` on a free port over a copy of the session's index, with `env` added."""
    port = free_port()
    folder = tmp_path_factory.mktemp("app")
    shutil.copytree(os.environ["COACH_DATA_DIR"], folder / "data")
    log = open(folder / "serve.log", "w+b")  # noqa: SIM115 (open while the server lives)
    proc = subprocess.Popen([sys.executable, "app.py", "serve", "--port", str(port)], cwd=ROOT,
                            env={**os.environ, **env, "COACH_DATA_DIR": str(folder / "data"),
                                 "COACH_QUESTIONS_PER_MINUTE": str(QUESTIONS_PER_MINUTE_SERVED)},
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_until_up(proc, url, log, "app.py serve", 180)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


def wait_until_up(proc, url: str, log, name: str, seconds: float) -> None:
    """Poll url until the server answers; fail with the tail of its log if it exits or never answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"{name} exited: {log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"{name} did not start within {seconds:.0f} s")


def run_cli(*args, env=None, timeout=300, input=None):
    """Run `python app.py …` or `python -m …` in a subprocess with the test environment."""
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, input=input)


@pytest.fixture(scope="module")
def browser():
    """Debian's headless Chromium driven by Playwright (no browser download)."""
    from playwright.sync_api import sync_playwright

    from helpers import CHROMIUM

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking"])
        yield browser
        browser.close()
