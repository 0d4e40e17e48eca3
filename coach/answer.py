"""Grounded answers from the bank, enforced by code around the model.

1. A follow-up ("and how do you fix it?") becomes a standalone question using the chat history.
2. Retrieve with the shared retriever; below the calibrated threshold, refuse and suggest bank topics.
3. Prompt the backend with numbered passages and stream its tokens.
4. Keep only the sentences the passages support (coach.support), each cited with the passage that
   supports it; citations to passages that were not given disappear. If too little survives, the
   answer is composed extractively from the passages instead.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from coach.config import prompt
from coach.guards import validate_question
from coach.llm import Backend, BackendUnavailable, get_backend
from coach.retrieval import Hit, HybridRetriever
from coach.support import SupportChecker, citations_of, split_sentences, strip_citations

PASSAGES = 3
MIN_SUPPORTED_WORDS = 12     # less than this left after the support check: answer extractively
EXTRACTIVE_SENTENCES = 3
FOLLOW_UP = re.compile(r"^(and|so|but|then|what about|how about|why)\b|\b(it|its|that|this|they|them|those|these)\b",
                       re.I)


@dataclass
class Answer:
    question: str
    answer: str
    refused: bool = False
    blocked: bool = False
    guard: str | None = None
    citations: list[dict] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    standalone_question: str | None = None
    dropped_sentences: int = 0
    fallback: str | None = None
    suggestions: list[str] = field(default_factory=list)
    backend: str = ""

    def as_json(self) -> dict:
        return {"question": self.question, "answer": self.answer, "refused": self.refused,
                "blocked": self.blocked, "guard": self.guard, "citations": self.citations,
                "timings": self.timings, "standalone_question": self.standalone_question,
                "dropped_sentences": self.dropped_sentences, "fallback": self.fallback,
                "suggestions": self.suggestions, "backend": self.backend}


class Answerer:
    def __init__(self, retriever: HybridRetriever | None = None, backend: Backend | None = None):
        self.retriever = retriever or HybridRetriever()
        self.backend = backend or get_backend()
        self.embeddings = self.retriever.store.vectors.embeddings
        self.checker = SupportChecker(self.embeddings)

    def ask(self, question: str, history: Sequence[dict] = ()) -> Answer:
        for event in self.stream(question, history):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the answer stream ended without an answer")

    def stream(self, question: str, history: Sequence[dict] = ()) -> Iterator[str | Answer]:
        """Yield the model's raw tokens as they come, then the final, checked Answer."""
        started = time.perf_counter()
        question = validate_question(question)
        standalone = self.standalone(question, history)
        hits = self.retriever.search(standalone, k=PASSAGES + 2)
        retrieve_ms = (time.perf_counter() - started) * 1000
        answer = Answer(question=question, answer="", standalone_question=standalone,
                        backend=self.backend.describe())
        if not hits or hits[0].score < self.retriever.calibration.threshold:
            answer.refused = True
            answer.suggestions = [hit.metadata.get("question") for hit in hits[:3]]
            answer.answer = refusal_message(answer.suggestions)
            answer.timings = _timings(started, retrieve_ms, None)
            yield answer
            return
        passages = hits[:PASSAGES]
        raw, first_token_ms = [], None
        try:
            for token in self.backend.stream(self.messages(standalone, passages), max_tokens=220):
                if first_token_ms is None:
                    first_token_ms = (time.perf_counter() - started) * 1000
                raw.append(token)
                yield token
        except BackendUnavailable as exc:
            answer.fallback = f"{exc}; answered extractively from the bank instead"
        text, cited, dropped = self.keep_supported("".join(raw), passages)
        answer.dropped_sentences = dropped
        if len(strip_citations(text).split()) < MIN_SUPPORTED_WORDS:
            if raw and answer.fallback is None:
                answer.fallback = "too little of the model's answer was supported by the bank; answered extractively"
            elif answer.fallback is None and self.backend.name != "extractive":
                answer.fallback = "the model returned nothing; answered extractively"
            text, cited = self.extractive(standalone, passages)
        answer.answer = text
        answer.citations = [{"n": n, "chunk_id": passages[n - 1].chunk_id,
                             "source": passages[n - 1].metadata.get("source"),
                             "question": passages[n - 1].metadata.get("question"),
                             "score": round(passages[n - 1].score, 4)} for n in sorted(cited)]
        if first_token_ms is None:
            first_token_ms = (time.perf_counter() - started) * 1000
        answer.timings = _timings(started, retrieve_ms, first_token_ms)
        yield answer

    # --- steps ---------------------------------------------------------------------------------
    def standalone(self, question: str, history: Sequence[dict]) -> str:
        """Rewrite a follow-up into a standalone question. A capable model rewrites it; with the tiny
        embedded model, the previous question is prepended, which is what retrieval needs."""
        previous = [turn["content"] for turn in history if turn.get("role") == "user"]
        if not previous or not FOLLOW_UP.search(question):
            return question
        if self.backend.capable:
            try:
                rewritten = self.backend.generate([{"role": "user", "content": prompt("rewrite").format(
                    history="\n".join(f"{t['role']}: {t['content']}" for t in history[-6:]),
                    question=question)}], max_tokens=60).strip().strip('"')
                if 3 <= len(rewritten.split()) <= 60:
                    return rewritten
            except BackendUnavailable:
                pass
        return f"{previous[-1]} {question}"

    def messages(self, question: str, passages: list[Hit]) -> list[dict]:
        numbered = "\n\n".join(f"[{n}] {hit.text}" for n, hit in enumerate(passages, start=1))
        return [{"role": "system", "content": prompt("answer_system")},
                {"role": "user", "content": prompt("answer_user").format(passages=numbered, question=question)}]

    def keep_supported(self, raw: str, passages: list[Hit]) -> tuple[str, set[int], int]:
        """Sentences the passages support, each cited with its supporting passage; and how many went."""
        texts = [hit.text for hit in passages]
        kept, cited, dropped = [], set(), 0
        for sentence in split_sentences(raw):
            valid = [n for n in citations_of(sentence) if 1 <= n <= len(passages)]
            support = self.checker.check(sentence, texts, prefer=valid)
            if not support.supported:
                dropped += 1
                continue
            kept.append(with_citation(strip_citations(sentence), [support.passage]))
            cited.add(support.passage)
        return " ".join(kept), cited, dropped

    def extractive(self, question: str, passages: list[Hit]) -> tuple[str, set[int]]:
        """The passage sentences closest to the question, most relevant first, each with its citation."""
        candidates = []
        for n, hit in enumerate(passages, start=1):
            body = hit.text.split("\n", 1)[-1]  # the first line repeats the bank question
            candidates += [(n, s) for s in split_sentences(body) if len(s.split()) >= 5]
        if not candidates:
            return "", set()
        vectors = np.asarray(self.embeddings.embed_documents([s for _, s in candidates]))
        query = np.asarray(self.embeddings.embed_query(question))
        relevance = vectors @ query - 0.03 * np.array([n for n, _ in candidates])  # prefer better passages
        chosen: list[int] = []
        for i in np.argsort(-relevance):
            if all(float(vectors[i] @ vectors[j]) < 0.85 for j in chosen):  # no near-duplicates
                chosen.append(int(i))
            if len(chosen) == EXTRACTIVE_SENTENCES:
                break
        chosen.sort(key=lambda i: (candidates[i][0], i))
        text = " ".join(with_citation(candidates[i][1], [candidates[i][0]]) for i in chosen)
        return text, {candidates[i][0] for i in chosen}


def with_citation(sentence: str, numbers: list[int]) -> str:
    """'Claim.' -> 'Claim [2].' (the marker goes before the closing punctuation)."""
    marker = "".join(f"[{n}]" for n in numbers)
    sentence = sentence.strip()
    if sentence[-1:] in ".!?":
        return f"{sentence[:-1].rstrip()} {marker}{sentence[-1]}"
    return f"{sentence} {marker}."


def refusal_message(suggestions: list[str]) -> str:
    text = "The question bank does not cover this, so I can't answer it from the bank."
    if suggestions:
        text += " Nearby questions it does cover: " + "; ".join(f"\"{s}\"" for s in suggestions) + "."
    return text


def _timings(started: float, retrieve_ms: float, first_token_ms: float | None) -> dict:
    return {"retrieve_ms": round(retrieve_ms, 1),
            "first_token_ms": None if first_token_ms is None else round(first_token_ms, 1),
            "total_ms": round((time.perf_counter() - started) * 1000, 1)}
