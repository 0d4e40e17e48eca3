"""The naive LangChain recipe the project is measured against (the "before" of every comparison).

Split every corpus file with RecursiveCharacterTextSplitter (1000 characters, 200 overlap), embed the
chunks with the same packaged MiniLM into a langchain-chroma collection, search by plain vector
similarity (top 4), stuff the chunks into one plain prompt (prompts/baseline.md) and send it to the
same backend. No hybrid search, no calibration, no refusal, no support check, no citations.

    Baseline(backend=None, persist_dir=None).search(query, k=4) -> list[Document]
    Baseline(...).ask(question) -> {"question", "answer", "refused", "blocked", "guard", "citations", "timings"}
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from langchain_core.documents import Document

from coach.config import get_settings, prompt
from coach.llm import get_backend
from coach.store import _LazyEmbeddings

CHUNK_SIZE, CHUNK_OVERLAP, TOP_K = 1000, 200, 4


class Baseline:
    def __init__(self, backend=None, persist_dir: str | Path | None = None):
        import chromadb
        from chromadb.config import Settings as ChromaSettings
        from langchain_chroma import Chroma

        settings = get_settings()
        self.backend = backend or get_backend()
        self.persist_dir = Path(persist_dir or tempfile.mkdtemp(prefix="coach-baseline-"))
        client = chromadb.PersistentClient(path=str(self.persist_dir),
                                           settings=ChromaSettings(anonymized_telemetry=False))
        # Our packaged embedder, never Chroma's default (an ONNX model it would download).
        self.vectors = Chroma(collection_name="baseline", client=client,
                              embedding_function=_LazyEmbeddings(settings.embedder))
        self.chunks = self.vectors._collection.count() or self.index(settings.corpus_dir)

    def index(self, corpus_dir: Path) -> int:
        """Split and embed every markdown file of the corpus; returns the number of chunks."""
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        files = sorted(Path(corpus_dir).glob("*.md"))
        documents = [Document(page_content=f.read_text(encoding="utf-8"), metadata={"source": str(f)})
                     for f in files]
        splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP,
                                                  add_start_index=True)
        chunks = splitter.split_documents(documents)
        self.vectors.add_documents(chunks, ids=[f"chunk-{n}" for n in range(len(chunks))])
        return len(chunks)

    def search(self, query: str, k: int = TOP_K) -> list[Document]:
        return self.vectors.similarity_search(query, k=k)

    def ask(self, question: str) -> dict:
        started = time.perf_counter()
        docs = self.search(question)
        retrieve_ms = (time.perf_counter() - started) * 1000
        context = "\n\n".join(doc.page_content for doc in docs)
        messages = [{"role": "user", "content": prompt("baseline").format(context=context, question=question)}]
        pieces, first_token_ms = [], None
        for piece in self.backend.stream(messages):
            if first_token_ms is None:
                first_token_ms = (time.perf_counter() - started) * 1000
            pieces.append(piece)
        return {"question": question, "answer": "".join(pieces).strip(), "refused": False, "blocked": False,
                "guard": None, "citations": [],
                "timings": {"retrieve_ms": round(retrieve_ms, 1),
                            "first_token_ms": None if first_token_ms is None else round(first_token_ms, 1),
                            "total_ms": round((time.perf_counter() - started) * 1000, 1)}}
