"""Grounded answers from the bank, enforced by code around the model.

1. A follow-up ("and how do you fix it?") becomes a standalone question using the chat history.
2. Retrieve with the shared retriever; below the calibrated threshold, refuse and suggest bank questions.
3. Compose the answer at the level of the best entry (coach.compose): its opening, the units that
   address what was asked, "See also" for the other relevant entries. A question whose premise the entry
   contradicts is answered by correcting it first (coach.premise).
4. A capable backend gets the passage sentences that answer the question (coach.evidence) as numbered
   passages and streams its tokens. Only the sentences the passages support (coach.support) and the
   cited entry does not contradict are kept, each cited with the passage that supports it. If too
   little survives, the composed answer is given instead, and the answer says why. A backend that is
   not capable (the embedded 135M model) writes nothing: its sentences stated fewer of the entry's key
   points than the composed answer in every answer of the dev set's tuning half where any survived the
   support check (evals/README.md, "Rule 55"), so free generation is kept for capable backends.
5. Citations are renumbered 1..n in order of appearance.

Injection guards (coach.guards) wrap these steps: the input guard runs first; passages are screened
(instruction-like sentences taken out, flagged passages datamarked) and sent between per-request random
markers; the model's output is checked for the per-request canary, dictated strings and prompt leaks,
while it streams and once it is final.
"""
from __future__ import annotations

import re
import time
from collections.abc import Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field

from coach import compose, evidence, premise
from coach.bank import BankError, load_bank
from coach.compose import with_citation
from coach.config import get_settings, prompt
from coach.guards import (
    OUTPUT_BLOCKED,
    InputGuard,
    OutputGuard,
    QuestionError,
    Spotlight,
    datamark,
    dictated_strings,
    flag_reason,
    quarantine,
    undatamark,
)
from coach.llm import Backend, BackendLoader, BackendUnavailable
from coach.retrieval import Hit, HybridRetriever
from coach.support import SupportChecker
from coach.text import citations_of, split_sentences, strip_citations

PASSAGES = 3               # retrieved passages the evidence is drawn from
EVIDENCE_SENTENCES = 5     # sentences shown to the model
MIN_SUPPORTED_WORDS = 12   # less than this left after the support check: answer extractively
MAX_TOKENS = 200
MODEL_REFUSAL = re.compile(r"bank does not cover", re.I)
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
    generated_sentences: int = 0   # sentences the model wrote
    dropped_sentences: int = 0     # of those, how many the support check removed
    fallback: str | None = None    # why the answer is extractive although a model was configured
    suggestions: list[str] = field(default_factory=list)
    backend: str = ""
    # The passages retrieved for the answer (chunk_id, qid, question, text), for evaluation.
    contexts: list[dict] = field(default_factory=list)
    # The request's canary: never shown to users (not in the JSON); evaluations check answers for it.
    canary: str = field(default="", repr=False)
    corrected_premise: str | None = None   # the presupposed claim the answer opens by correcting

    def as_json(self) -> dict:
        return {"question": self.question, "answer": self.answer, "refused": self.refused,
                "blocked": self.blocked, "guard": self.guard, "citations": self.citations,
                "timings": self.timings, "standalone_question": self.standalone_question,
                "generated_sentences": self.generated_sentences, "dropped_sentences": self.dropped_sentences,
                "fallback": self.fallback, "suggestions": self.suggestions, "backend": self.backend,
                "corrected_premise": self.corrected_premise}


@dataclass
class Request:
    """One question on its way through the stages: what each stage found, for the next one."""
    answer: Answer
    started: float                      # perf_counter() when the question arrived
    hits: list[Hit]                     # retrieved, best first
    relevant: list[Hit]                 # those above the refusal threshold (empty: refuse)
    retrieve_ms: float
    spotlight: Spotlight = field(default_factory=Spotlight.new)
    texts: list[str] = field(default_factory=list)      # the relevant whole answers, instructions taken out
    dictated: list[str] = field(default_factory=list)   # strings an instruction dictates: never repeated
    passages: list[tuple[Hit, str]] = field(default_factory=list)   # numbered 1..n as the model sees them
    chosen: list[evidence.Sentence] = field(default_factory=list)   # evidence sentences, in that numbering
    flagged: set[int] = field(default_factory=set)      # passage numbers sent datamarked
    correction: premise.Correction | None = None        # the question's premise, corrected (numbered as relevant)
    composed: compose.Composed | None = None            # the answer composed from the entries
    guard: OutputGuard | None = None                    # the output check, prepared once for the answer
    raw: str = ""                                       # what the model wrote, markers removed
    first_token_ms: float | None = None

    def timings(self) -> dict:
        return _timings(self.started, self.retrieve_ms, self.first_token_ms)


class Answerer:
    def __init__(self, retriever: HybridRetriever | None = None, backend: Backend | None = None):
        # First, so that the backend is created while the rest opens and the first question is retrieved.
        self.loader = BackendLoader(backend)
        self.retriever = retriever or HybridRetriever()
        self.embeddings = self.retriever.embeddings
        self.checker = SupportChecker(self.embeddings)
        self.input_guard = InputGuard(self.embeddings)
        self.entries = bank_entries()
        # The prompts' own wording, placeholders removed: an answer quoting long spans of it is a leak.
        self.prompt_texts = [re.sub(r"\{\w+\}", " ", prompt(name)) for name in ("answer_system", "answer_user")]

    @property
    def backend(self) -> Backend:
        """The backend, once loaded (waits for it)."""
        return self.loader.get()

    @property
    def writes(self) -> bool:
        """Whether the backend writes answers: only a capable one does (known before it is loaded)."""
        return self.loader.kind.capable

    def ask(self, question: str, history: Sequence[dict] = (), **filters) -> Answer:
        for event in self.stream(question, history, **filters):
            if isinstance(event, Answer):
                return event
        raise RuntimeError("the answer stream ended without an answer")

    def stream(self, question: str, history: Sequence[dict] = (), part: int | None = None,
               topic: str | None = None, scope: str = "all") -> Iterator[str | Answer]:
        """Yield the model's raw tokens as they come, then the final, checked Answer. `part` and `topic`
        restrict retrieval to that part of the bank; `scope` chooses the library ("bank", "docs", "all")."""
        with closing(self._stages(question, history, part=part, topic=topic, scope=scope)) as events:
            for event in events:  # closed with this stream: a caller that stops early frees the model
                if isinstance(event, Answer):
                    event.backend = self.backend.describe()  # named last: the model may be loading until then
                yield event

    def _stages(self, question: str, history: Sequence[dict], **filters) -> Iterator[str | Answer]:
        started = time.perf_counter()
        try:
            question = self.input_guard.check(question)
        except QuestionError as exc:
            yield Answer(question=question or "", answer=str(exc), blocked=True, guard=exc.guard,
                         timings=_timings(started, 0.0, None))
            return
        request = self.retrieve(question, history, started, **filters)
        if request.answer.blocked:
            yield request.answer
            return
        if not request.relevant:
            yield self._refuse(request)
            return
        self.prepare_evidence(request)
        if self.writes:
            yield from self.generate_under_guard(request)
        yield self.check_and_finish(request)

    # --- the stages of one answer ----------------------------------------------------------------
    def retrieve(self, question: str, history: Sequence[dict], started: float, **filters) -> Request:
        """Make the question standalone and retrieve; keep the hits above the refusal threshold. The
        standalone question is what the model will read, so it passes the input guard too."""
        standalone = self.standalone(question, history)
        if standalone != question:
            try:
                self.input_guard.check(standalone)
            except QuestionError as exc:
                answer = Answer(question=question, answer=str(exc), blocked=True, guard=exc.guard,
                                standalone_question=standalone)
                answer.timings = _timings(started, 0.0, None)
                return Request(answer=answer, started=started, hits=[], relevant=[], retrieve_ms=0.0)
        hits = self.retriever.search(standalone, k=PASSAGES, **filters)
        passes = self.retriever.passes  # calibrated per library: an upload must also match by its title
        relevant = [hit for hit in hits if passes(hit)] if hits and passes(hits[0]) else []
        answer = Answer(question=question, answer="", standalone_question=standalone)
        return Request(answer=answer, started=started, hits=hits, relevant=relevant,
                       retrieve_ms=(time.perf_counter() - started) * 1000)

    def prepare_evidence(self, request: Request) -> None:
        """Screen the relevant answers for instructions, choose the evidence sentences, and number the
        passages that contributed, so the model sees [1], [2] ... without gaps."""
        texts, flagged, request.dictated = self.screen(request.relevant, request.answer.question)
        request.texts = texts
        request.guard = OutputGuard(request.spotlight, request.dictated, texts, self.prompt_texts)
        request.answer.canary = request.spotlight.canary
        request.answer.contexts = [{"chunk_id": hit.chunk_id, "qid": hit.metadata.get("qid"),
                                    "question": hit.metadata.get("question"), "text": text}
                                   for hit, text in zip(request.relevant, texts, strict=True)]
        chosen = (evidence.select(request.answer.standalone_question, texts, self.embeddings, EVIDENCE_SENTENCES)
                  if self.writes else [])
        used = sorted({s.passage for s in chosen}) or [1]
        request.passages = [(request.relevant[n - 1], texts[n - 1]) for n in used]
        request.flagged = {used.index(n) + 1 for n in flagged if n in used}
        request.chosen = [evidence.Sentence(used.index(s.passage) + 1, s.position, s.text, s.relevance)
                          for s in chosen]
        entries = [self.entries.get(hit.metadata.get("qid")) for hit in request.relevant]
        request.correction = premise.correct(request.answer.standalone_question, list(zip(texts, entries, strict=True)),
                                             self.embeddings)
        request.composed = compose.compose(request.answer.standalone_question, request.relevant, texts,
                                           self.embeddings, self.entries, request.correction)

    def generate_under_guard(self, request: Request) -> Iterator[str]:
        """Stream the model's tokens. The first token that leaks (canary, dictated string, prompt text)
        stops the model unshown: a hijacked model's other sentences are suspect too, so the answer is
        then composed from the bank instead."""
        answer, raw = request.answer, []
        messages = self.messages(answer.standalone_question, request.chosen, request.spotlight, request.flagged) \
            if self.backend.prompted else []
        tokens = self.backend.stream(messages, max_tokens=MAX_TOKENS)
        try:
            for token in tokens:
                if request.first_token_ms is None:
                    request.first_token_ms = (time.perf_counter() - request.started) * 1000
                raw.append(token)
                if violation := request.guard.check("".join(raw)):
                    answer.fallback = f"the model's output was stopped because {violation[1]}; answered extractively"
                    raw = []
                    break
                yield token
        except BackendUnavailable as exc:
            answer.fallback = f"{exc}; answered extractively from the bank instead"
        finally:
            getattr(tokens, "close", lambda: None)()  # releases the model's lock when we stop early
        request.raw = undatamark("".join(raw)).strip()

    def check_and_finish(self, request: Request) -> Answer:
        """Keep the supported sentences, re-cited; fall back to the evidence when too little survives;
        run the output guard on what would be shown."""
        answer, raw = request.answer, request.raw
        if self.writes and MODEL_REFUSAL.search(raw) and len(raw.split()) < 15:
            return self._refuse(request)  # a capable model read the passages and found no answer
        text, _, answer.generated_sentences, answer.dropped_sentences = self.keep_supported(raw, request.passages)
        if len(strip_citations(text).split()) < MIN_SUPPORTED_WORDS:
            if answer.fallback is None and raw:
                answer.fallback = "too little of the model's answer was supported by the bank; answered extractively"
            elif answer.fallback is None and self.writes:
                answer.fallback = "the model returned nothing; answered extractively"
            text, sources = request.composed.text, request.composed.sources
        else:
            text, sources = self.frame(request, text)
        if violation := request.guard.check(text):
            return self._withhold(request, violation)
        if not strip_citations(text):
            return self._refuse(request)  # nothing to say from the bank is a refusal, never an empty answer
        answer.answer = text
        passage_of = {hit.chunk_id: text for hit, text in zip(request.relevant, request.texts, strict=True)}
        quotes = self.evidence_of(text, [(hit, passage_of.get(hit.chunk_id, hit.text)) for hit in sources])
        pointers = compose.see_also_numbers(text)
        answer.citations = [{**citation(n, hit, quotes.get(n, [])), "see_also": n in pointers}
                            for n, hit in enumerate(sources, start=1)]
        answer.corrected_premise = request.correction.claim if request.correction else None
        answer.timings = request.timings()
        return answer

    @staticmethod
    def frame(request: Request, text: str) -> tuple[str, list[Hit]]:
        """The model's kept sentences (citing request.passages) framed like a composed answer: the
        premise corrected first, no opening that refers back to something unseen, "See also" last,
        citations renumbered 1..n over the relevant hits."""
        relevant = request.relevant
        number = {n: relevant.index(hit) + 1 for n, (hit, _) in enumerate(request.passages, start=1)}
        sentences = split_sentences(text)
        while sentences and compose.REFERS_BACK.match(sentences[0]):
            sentences.pop(0)
        body = re.sub(r"\[(\d+)\]", lambda m: f"[{number[int(m.group(1))]}]", " ".join(sentences))
        parts = [request.correction.render(request.correction.source)] if request.correction else []
        parts.append(body)
        shown = {int(n) for n in re.findall(r"\[(\d+)\]", "\n".join(parts))}
        related = [k for k in range(1, len(relevant) + 1) if k not in shown][:compose.SEE_ALSO]
        see_also = [compose.see_also_line(relevant[k - 1], k) for k in related if relevant[k - 1].metadata.get("question")]
        text = "\n\n".join(p for p in parts if p.strip())
        return compose.renumber(text + ("\n\n" + "\n".join(see_also) if see_also else ""), relevant)

    def warm_up(self, limit: int = 6000) -> int:
        """Embed what answering embeds before users ask: the units of every bank entry (the composer
        ranks them), the misconceptions (the premise check), and the sentences of other indexed
        answers (evidence for a model, the support check). About half a second per cold question on 2
        cores otherwise; the vectors are cached, and kept in the embedder's vector file for the next start. Returns how many texts were embedded (at most `limit`,
        under the cache's size, so a large index does not evict everything it warmed)."""
        texts: dict[str, None] = {}
        for entry in self.entries.values():
            texts.update(dict.fromkeys(u.plain for u in compose.units_of(entry.answer)))
            texts.update(dict.fromkeys(t for m in entry.misconceptions for t in (m.wrong, m.right)))
        store = self.retriever.store
        for source, qid in sorted({(m.get("source"), m.get("qid")) for m in store.metadatas().values()}):
            if len(texts) >= limit:
                break
            if qid not in self.entries:
                text = store.section_text(source, qid) or ""
                texts.update(dict.fromkeys(split_sentences(text) + [raw for raw, _ in evidence.passage_sentences(text)]))
        batch = list(texts)[:limit]
        for start in range(0, len(batch), 256):
            self.embeddings.warm_sentences(batch[start:start + 256])
        return len(batch)

    # --- helpers of the stages ---------------------------------------------------------------------
    def standalone(self, question: str, history: Sequence[dict]) -> str:
        """Rewrite a follow-up into a standalone question. A capable model rewrites it; otherwise the
        previous question is prepended, which is what retrieval needs (the embedded model's own rewrites
        found the right entry less often: evals/README.md, "The embedded model steps aside")."""
        previous = [turn["content"] for turn in history if turn.get("role") == "user" and self._harmless(turn["content"])]
        if not previous or not FOLLOW_UP.search(question):
            return question
        if self.writes and (rewritten := self.rewrite(question, history, self.backend)):
            return rewritten
        return f"{previous[-1]} {question}"

    @staticmethod
    def rewrite(question: str, history: Sequence[dict], backend: Backend) -> str | None:
        """`backend`'s standalone version of a follow-up (prompts/rewrite.md), or None when it is
        unreachable or writes something that cannot be a question (under 3 or over 60 words)."""
        try:
            rewritten = backend.generate([{"role": "user", "content": prompt("rewrite").format(
                history="\n".join(f"{t['role']}: {t['content']}" for t in history[-6:]),
                question=question)}], max_tokens=60).strip().strip('"')
        except BackendUnavailable:
            return None
        return rewritten if 3 <= len(rewritten.split()) <= 60 else None

    def _harmless(self, text: str) -> bool:
        """A past question the input guard lets through (a blocked one never re-enters a prompt)."""
        try:
            self.input_guard.check(text)
            return True
        except QuestionError:
            return False

    def screen(self, hits: list[Hit], question: str) -> tuple[list[str], set[int], list[str]]:
        """The whole answers of the hits with instruction-like sentences taken out; the numbers of the
        flagged passages (at ingest, or now for an index built before flagging existed); and the strings
        an instruction in the passages or the question dictates, which the answer must not repeat."""
        texts, flagged, dictated = [], set(), dictated_strings(question)
        for n, hit in enumerate(hits, start=1):
            text = self.whole_answer(hit)
            if hit.metadata.get("flagged") or flag_reason(text):
                flagged.add(n)
                text, removed = quarantine(text, split_sentences)
                dictated += [d for sentence in removed for d in dictated_strings(sentence)]
            texts.append(text)
        return texts, flagged, dictated

    def messages(self, question: str, chosen: list[evidence.Sentence], spotlight: Spotlight | None = None,
                 flagged: set[int] = frozenset()) -> list[dict]:
        """The chat messages: passages between the request's random markers, flagged ones datamarked.
        The prompt files are filled with str.format (as LangChain's chat template did, without its
        ~0.6 s import in every cold `ask`)."""
        spotlight = spotlight or Spotlight.new()

        def passage(n: int) -> str:
            text = " ".join(s.text for s in chosen if s.passage == n)
            return f"[{n}] (untrusted) {datamark(text)}" if n in flagged else f"[{n}] {text}"

        values = {"passages": "\n".join(passage(n) for n in sorted({s.passage for s in chosen})),
                  "question": question, "canary": spotlight.canary, "nonce": spotlight.nonce}
        return [{"role": "system", "content": prompt("answer_system").format(**values)},
                {"role": "user", "content": prompt("answer_user").format(**values)}]

    def whole_answer(self, hit: Hit) -> str:
        """The whole bank answer a hit belongs to: a long answer is indexed in pieces, and the piece
        that matched the query best is often not the one that holds the definition. A bank entry is
        taken from the bank itself, with its markdown (lists, tables, formulas) intact."""
        meta, entry = hit.metadata, self.entry_of(hit)
        if entry is not None:
            return f"{entry.question}\n\n{entry.answer}"
        return self.retriever.store.section_text(meta.get("source"), meta.get("qid")) or hit.text

    def entry_of(self, hit: Hit):
        """The bank entry a hit comes from, or None (an uploaded document, or an entry since removed)."""
        entry = self.entries.get(hit.metadata.get("qid"))
        return entry if entry is not None and entry.question == hit.metadata.get("question") else None

    def keep_supported(self, raw: str, passages: list[tuple[Hit, str]]) -> tuple[str, set[int], int, int]:
        """The supported sentences, each cited with its supporting passage; the passages cited; how many
        sentences the model wrote and how many were dropped."""
        texts = [text for _, text in passages]
        kept, seen, cited, sentences = [], set(), set(), split_sentences(raw)
        for sentence in sentences:
            valid = [n for n in citations_of(sentence) if 1 <= n <= len(passages)]
            claim = strip_citations(sentence)
            if claim.lower() in seen:
                continue  # small models repeat themselves
            support = self.checker.check(sentence, texts, prefer=valid)
            if support.supported and not premise.contradiction(claim, texts[support.passage - 1],
                                                               self.entry_of(passages[support.passage - 1][0]),
                                                               self.embeddings):
                seen.add(claim.lower())
                kept.append(with_citation(claim, [support.passage]))
                cited.add(support.passage)
        return " ".join(kept), cited, len(sentences), len(sentences) - len(kept)

    def evidence_of(self, text: str, passages: list[tuple[Hit, str]]) -> dict[int, list[str]]:
        """For each cited passage, the passage sentences (exact substrings) that support the answer
        sentences citing it, in answer order: what the side panel highlights and `evidence` lists."""
        quotes: dict[int, list[str]] = {}
        for sentence in split_sentences(text):
            for n in citations_of(sentence):
                if 1 <= n <= len(passages):
                    found = evidence.quote(sentence, passages[n - 1][1], self.embeddings)
                    if found and found not in quotes.setdefault(n, []):
                        quotes[n].append(found)
        return quotes

    @staticmethod
    def _withhold(request: Request, violation: tuple[str, str]) -> Answer:
        """The output guard fired: the answer is replaced by a refusal that says why."""
        answer = request.answer
        answer.blocked, answer.guard = True, violation[0]
        answer.answer = OUTPUT_BLOCKED.format(reason=violation[1])
        answer.timings = request.timings()
        return answer

    @staticmethod
    def _refuse(request: Request) -> Answer:
        answer = request.answer
        answer.refused = True
        answer.suggestions = [hit.metadata.get("question") for hit in request.hits if hit.metadata.get("question")]
        answer.answer = refusal_message(answer.suggestions)
        answer.timings = request.timings()
        return answer


def citation(n: int, hit: Hit, quotes: Sequence[str] = ()) -> dict:
    """A citation of the contract; `evidence` holds the passage's supporting sentences (exact substrings)."""
    return {"n": n, "chunk_id": hit.chunk_id, "source": hit.metadata.get("source"),
            "question": hit.metadata.get("question"), "score": round(hit.score, 4), "evidence": list(quotes),
            "library": hit.library}


def bank_entries() -> dict:
    """The bank's entries by id; {} when the bank cannot be read (answers then use the indexed text)."""
    try:
        return {entry.id: entry for entry in load_bank(get_settings().corpus_dir)}
    except (BankError, OSError):
        return {}


def refusal_message(suggestions: list[str]) -> str:
    text = "The question bank does not cover this, so I can't answer it from the bank."
    if suggestions:
        text += " Nearby questions it does cover: " + "; ".join(f"\"{s}\"" for s in suggestions) + "."
    return text


def _timings(started: float, retrieve_ms: float, first_token_ms: float | None) -> dict:
    return {"retrieve_ms": round(retrieve_ms, 1),
            "first_token_ms": None if first_token_ms is None else round(first_token_ms, 1),
            "total_ms": round((time.perf_counter() - started) * 1000, 1)}
