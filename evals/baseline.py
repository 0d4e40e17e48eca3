"""The naive LangChain recipe a user would write instead of this project, measured beside it.

    RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200) over the same corpus files,
    a langchain-chroma store with the same embedding model (all-MiniLM-L6-v2, through plain
    HuggingFaceEmbeddings), similarity_search top-4, the same LLM backend, and a plain "answer from the
    context" prompt (prompts/baseline.md). No hybrid search, no calibrated refusal, no support check,
    no citations: whatever the model writes is the answer.

Its Chroma collection lives in COACH_DATA_DIR/baseline (never in our index) and is rebuilt when the
corpus files change. With the `extractive` backend (no model) the answer is the top chunk itself, the
retrieval-only version of the recipe. Each chunk records which bank questions it overlaps (`qids`):
evaluation uses that to score its retrieval; the recipe itself never reads it.
"""
from __future__ import annotations

import hashlib
import re
import time
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings

from coach.answer import MAX_TOKENS  # the same generation budget as our answers
from coach.config import get_settings, prompt
from coach.llm import BackendUnavailable, get_backend

CHUNK_SIZE, CHUNK_OVERLAP, TOP_K = 1000, 200, 4
COLLECTION = "baseline"
# "No refusal logic beyond what the model says": this only recognises the model saying it cannot answer.
SAYS_NO = re.compile(r"\b(?:don't|do not|doesn't|does not) (?:know|contain|mention|provide|cover)|"
                     r"\bnot (?:in|mentioned in|covered by) the context|\bno information\b|\bcannot answer|"
                     r"\bcan't answer", re.I)


class StoredChunks(Embeddings):
    """The recipe's embedding function: every query through the plain model, uncached, as a user's recipe runs
    it; the chunks it indexes read from the embedder's vector file where an earlier build on this machine left
    them (the same ONNX vectors, coach.embedder.VectorFile). Building the index embedded its ~2,500 chunks
    again in every test run and benchmark: about 60 s of both cores."""

    def __init__(self, cached):
        self.cached = cached

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.cached.embed_stored(list(texts))

    def embed_query(self, text: str) -> list[float]:
        return self.cached.inner.embed_query(text)


class Baseline:
    def __init__(self, backend=None, persist_dir: Path | str | None = None, corpus_dir: Path | str | None = None):
        from langchain_chroma import Chroma

        from coach.embedder import embedder

        settings = get_settings()
        self.backend = backend or get_backend()
        self.corpus_dir = Path(corpus_dir or settings.corpus_dir)
        self.persist_dir = Path(persist_dir or settings.data_dir / "baseline")
        # The same model as ours; queries go through it uncached, as in a user's recipe, and the chunks it indexes
        # are read from the vector file where an earlier build left them (StoredChunks).
        self.embeddings = StoredChunks(embedder(settings.embedder))
        self.vectors = Chroma(collection_name=COLLECTION, embedding_function=self.embeddings,
                              persist_directory=str(self.persist_dir))
        self.template = prompt("baseline")
        self.ensure_index()

    @property
    def chunks(self) -> int:
        return self.vectors._collection.count()

    # --- the recipe ------------------------------------------------------------------------------
    def search(self, query: str, k: int = TOP_K) -> list[Document]:
        return self.vectors.similarity_search(query, k=k)

    def ask(self, question: str) -> dict:
        """The recipe's answer, in the ask JSON's shape where it applies (no citations, no guards)."""
        started = time.perf_counter()
        docs = self.search(question)
        retrieve_ms = (time.perf_counter() - started) * 1000
        context = "\n\n".join(doc.page_content for doc in docs)
        messages = [{"role": "user", "content": self.template.format(context=context, question=question)}]
        tokens, first_token_ms, error = [], None, None
        try:
            for token in self.backend.stream(messages, max_tokens=MAX_TOKENS):
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - started) * 1000
                tokens.append(token)
        except BackendUnavailable as exc:
            error = str(exc)
        answer = "".join(tokens).strip()
        refused = bool(SAYS_NO.search(answer))
        if self.backend.name == "extractive" and docs:
            answer = docs[0].page_content  # no model: show the best chunk, as a search box would
        return {"question": question, "answer": answer, "refused": refused,
                "blocked": False, "guard": None, "citations": [], "error": error,
                "contexts": [{"text": doc.page_content, "qids": qids_of(doc), "source": doc.metadata.get("source")}
                             for doc in docs],
                "backend": f"baseline: {self.backend.describe()}",
                "timings": {"retrieve_ms": round(retrieve_ms, 1),
                            "first_token_ms": None if first_token_ms is None else round(first_token_ms, 1),
                            "total_ms": round((time.perf_counter() - started) * 1000, 1)}}

    def ranked_ids(self, query: str, k: int = 5) -> list[str]:
        """Bank ids in the order the top-k chunks bring them (a chunk spanning two questions gives both)."""
        return list(dict.fromkeys(qid for doc in self.search(query, k=k) for qid in qids_of(doc)))

    # --- the index ---------------------------------------------------------------------------------
    def files(self) -> list[Path]:
        return sorted(self.corpus_dir.rglob("*.md"))

    def ensure_index(self) -> None:
        """Index the corpus files unless the collection already holds exactly these files."""
        stamp = self.persist_dir / "corpus.sha1"
        fingerprint = hashlib.sha1(b"".join(p.name.encode() + p.read_bytes() for p in self.files())).hexdigest()
        if stamp.exists() and stamp.read_text() == fingerprint and self.vectors._collection.count():
            return
        self.vectors.reset_collection()
        stamp.unlink(missing_ok=True)  # written last: a run killed half way rebuilds next time
        docs = self.split()
        for start in range(0, len(docs), 256):
            self.vectors.add_documents(docs[start:start + 256])
        stamp.write_text(fingerprint)

    def split(self) -> list[Document]:
        from langchain_text_splitters import RecursiveCharacterTextSplitter

        splitter = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP,
                                                  add_start_index=True)
        docs = []
        for path in self.files():
            text = path.read_text(encoding="utf-8")
            for doc in splitter.split_documents([Document(page_content=text, metadata={"source": path.name})]):
                start = doc.metadata["start_index"]
                doc.metadata["qids"] = ",".join(questions_overlapping(path, text, start, start + len(doc.page_content)))
                docs.append(doc)
        return docs


def qids_of(doc: Document) -> list[str]:
    return [qid for qid in (doc.metadata.get("qids") or "").split(",") if qid]


def question_spans(path: Path, text: str) -> list[tuple[int, int, str]]:
    """(start, end, bank id) of every question's section in a bank file: from its `## N.` heading to the
    next heading (character offsets into `text`)."""
    from coach.bank import BankError, load_bank

    try:
        entries = load_bank(path)
    except BankError:
        return []
    line_starts = [0]
    for line in text.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    starts = [(line_starts[entry.line - 1], entry.id) for entry in entries]
    return [(start, starts[n + 1][0] if n + 1 < len(starts) else len(text), qid)
            for n, (start, qid) in enumerate(starts)]


_SPANS: dict[tuple[Path, str], list] = {}


def questions_overlapping(path: Path, text: str, start: int, end: int) -> list[str]:
    key = (path, hashlib.sha1(text.encode()).hexdigest())
    if key not in _SPANS:  # parsed once per file (setdefault's argument parsed the file for every chunk)
        _SPANS[key] = question_spans(path, text)
    spans = _SPANS[key]
    return [qid for s, e, qid in spans if s < end and start < e]

