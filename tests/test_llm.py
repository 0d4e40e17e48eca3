"""The three backends behind one interface, against real models and a real OpenAI-compatible server."""
from __future__ import annotations

import time

import pytest

from coach.llm import BackendUnavailable, ExtractiveBackend, LlamaCppBackend, OpenAIBackend
from conftest import free_port

MESSAGES = [{"role": "user", "content": "Name three colours, separated by commas."}]


def assert_streams_progressively(backend):
    started, arrivals, pieces = time.perf_counter(), [], []
    for piece in backend.stream(MESSAGES, max_tokens=40):
        arrivals.append(time.perf_counter() - started)
        pieces.append(piece)
    assert len(pieces) >= 3, pieces  # token by token, not one block at the end
    assert arrivals[0] < arrivals[-1]
    assert "".join(pieces).strip()


def test_llama_cpp_is_built_without_the_amx_kernels_that_crash():
    """On CPUs with AMX, llama.cpp's AMX matrix kernels crash the process at the first token (SIGSEGV in
    ggml_backend_amx_mul_mat, ggml-org/llama.cpp#20824); the Makefile compiles llama-cpp-python without
    them. A wheel built before that fix (pip keeps built wheels) fails here instead of killing the run."""
    import llama_cpp

    assert b"AMX_INT8 = 1" not in llama_cpp.llama_print_system_info(), "run `make setup` to rebuild llama-cpp-python"


def test_llamacpp_streams_tokens():
    assert_streams_progressively(LlamaCppBackend())


def test_llamacpp_prompt_longer_than_its_context_is_reported_as_unavailable():
    """The answer step falls back to an extractive answer on BackendUnavailable; a raw ValueError from
    llama.cpp would lose the question instead."""
    from coach.llm import get_backend

    backend = get_backend(kind="llamacpp")
    too_long = [{"role": "user", "content": "gradient descent " * backend.llm.n_ctx()}]
    with pytest.raises(BackendUnavailable, match="context"):
        list(backend.stream(too_long, max_tokens=8))
    assert "".join(backend.stream(MESSAGES, max_tokens=8)).strip()  # the lock was released, it still answers


def test_openai_backend_against_a_real_server(llama_server):
    backend = OpenAIBackend(llama_server, "smollm2", None, timeout=60)
    assert_streams_progressively(backend)
    assert backend.generate(MESSAGES, max_tokens=20).strip()


def test_openai_backend_respects_max_tokens(llama_server):
    """The server must receive max_tokens under the name it understands, or it generates until the
    context is full."""
    backend = OpenAIBackend(llama_server, "smollm2", None, timeout=60)
    text = backend.generate([{"role": "user", "content": "Count from 1 to 300, separated by spaces."}], max_tokens=8)
    assert text.strip() and len(text.split()) <= 10, text


def test_openai_backend_with_the_server_down_says_so_clearly():
    backend = OpenAIBackend(f"http://127.0.0.1:{free_port()}/v1", "smollm2", None, timeout=5, retries=0)
    with pytest.raises(BackendUnavailable, match=r"not reachable.*is it running"):
        backend.generate(MESSAGES)


def test_openai_backend_needs_an_address():
    with pytest.raises(BackendUnavailable, match="COACH_OPENAI_BASE_URL"):
        OpenAIBackend(None, None, None)


def test_extractive_backend_generates_nothing():
    assert ExtractiveBackend().generate(MESSAGES) == ""


def test_llamacpp_loads_its_model_at_first_use_and_reports_a_missing_file(tmp_path):
    backend = LlamaCppBackend(model_path=tmp_path / "missing.gguf")
    assert backend.describe() == "llamacpp (missing)" and "llm" not in vars(backend), "created without loading"
    with pytest.raises(BackendUnavailable, match="cannot load the model file"):
        list(backend.stream(MESSAGES, max_tokens=8))
