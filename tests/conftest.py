"""Shared fixtures: every test runs offline against its own data folder, never ./data."""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ROOT.parent / "shared" / "seeds" / "deep-learning-interview-questions-part-3.txt"
ARTIFACTS = ROOT / "test-artifacts"

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["COACH_DATA_DIR"] = tempfile.mkdtemp(prefix="coach-test-data-")
atexit.register(shutil.rmtree, os.environ["COACH_DATA_DIR"], ignore_errors=True)
os.environ.pop("COACH_CHROMA_URL", None)
sys.path.insert(0, str(ROOT))

import pytest  # noqa: E402


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


@pytest.fixture
def fresh_settings(tmp_path, monkeypatch):
    """Settings pointing at an empty data folder of the test's own."""
    from coach.config import get_settings

    monkeypatch.setenv("COACH_DATA_DIR", str(tmp_path / "data"))
    return get_settings()


def run_cli(*args, env=None, timeout=300, input=None):
    """Run `python app.py …` or `python -m …` in a subprocess with the test environment."""
    import subprocess

    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, input=input)
