"""The three backends behind one interface, against real models and a real OpenAI-compatible server."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from coach.llm import BackendUnavailable, ExtractiveBackend, LlamaCppBackend, OpenAIBackend, smollm2_path

MESSAGES = [{"role": "user", "content": "Name three colours, separated by commas."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llama_server(tmp_path_factory):
    """`python -m llama_cpp.server` on 127.0.0.1 serving the same GGUF file; stopped after the tests."""
    port = free_port()
    # llama.cpp logs a lot: to a file, since a full pipe would block the server.
    log = open(tmp_path_factory.mktemp("llama-server") / "server.log", "w+b")
    proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_path()),
                             "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
                             "--n_ctx", "4096", "--n_threads", "2"],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2)
            break
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"llama_cpp.server exited: {log.read().decode(errors='replace')[-2000:]}")
            time.sleep(0.3)
    else:
        proc.kill()
        pytest.fail("llama_cpp.server did not start within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    log.close()


def assert_streams_progressively(backend):
    started, arrivals, pieces = time.perf_counter(), [], []
    for piece in backend.stream(MESSAGES, max_tokens=40):
        arrivals.append(time.perf_counter() - started)
        pieces.append(piece)
    assert len(pieces) >= 3, pieces  # token by token, not one block at the end
    assert arrivals[0] < arrivals[-1]
    assert "".join(pieces).strip()


def test_llamacpp_streams_tokens():
    assert_streams_progressively(LlamaCppBackend())


def test_openai_backend_against_a_real_server(llama_server):
    backend = OpenAIBackend(llama_server, "smollm2", None, timeout=60)
    assert_streams_progressively(backend)
    assert backend.generate(MESSAGES, max_tokens=20).strip()


def test_openai_backend_with_the_server_down_says_so_clearly():
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "smollm2", None, timeout=5, retries=0)
    with pytest.raises(BackendUnavailable, match=r"not reachable.*is it running"):
        backend.generate(MESSAGES)


def test_openai_backend_needs_an_address():
    with pytest.raises(BackendUnavailable, match="COACH_OPENAI_BASE_URL"):
        OpenAIBackend(None, None, None)


def test_extractive_backend_generates_nothing():
    assert ExtractiveBackend().generate(MESSAGES) == ""
