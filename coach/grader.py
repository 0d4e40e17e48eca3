"""Grading an interview answer against the bank entry's key points.

1. The user's question is matched to a bank entry with the shared HybridRetriever (an interviewer session
   already knows its entry and skips this step).
2. Every key point is compared with every sentence of the answer, and with each clause of a compound
   sentence: MiniLM cosine (meaning) blended with the share of the key point's own words the piece uses
   (lexical evidence), or by meaning alone for the key point the piece is closest to (answers in other
   words). A key point's credit is the best piece's, in [0, 1]; covered from COVERED on.
3. Keyword stuffing earns little: a "sentence" without the function words of real prose (a bag of key
   terms, a comma list, a 2-word fragment) can contribute at most FRAGMENT_CAP of a point, and an answer
   made only of fragments is capped at STUFFED_CAP.
4. Penalties: sentences about something else (off-topic), and sentences that restate a key point with a
   negation or an antonym it does not have (confidently wrong). Measured limit: a wrong answer that uses
   the right words in the wrong roles looks like a paraphrase to MiniLM; only an entailment model, or the
   optional LLM judge, can tell them apart.
5. With a capable backend (`backend.capable`), an LLM judge may confirm key points; it is blended with the
   code's credit and can never award a point the answer shows no evidence of. The embedded 135M model is
   never asked to judge.

The feedback is short, cites the bank's model answer as [1], and ends with a follow-up question built from
a template (prompts/followup.md) around the most important missing key point.
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from coach.config import get_settings, prompt
from coach.guards import validate_question
from coach.llm import may_judge
from coach.text import WORD, clean_input, content_words, split_sentences, stopwords

# Credit of a key point from one piece of the answer (a sentence or one of its clauses): the cosine with
# the key point, or with the model-answer sentence that states it (a paraphrase of the explanation is
# often closer to that than to the terse key point), blended with lexical evidence: the share of the key
# point's own words (those not already in the question: "BERT" and "GPT" say nothing about which fact
# about them was stated) found in the piece. The blend maps linearly from CREDIT_FLOOR (none) to
# CREDIT_FULL (full credit). An answer in other words shares few of those words, so a piece also earns
# credit from meaning alone, from SEMANTIC_FLOOR to SEMANTIC_FULL, but only for the one key point it is
# closest to: the key points of one question are all about the same thing, and one on-topic sentence sits
# at cosine 0.35-0.45 from every one of them. Chosen by a grid search on evals/sets/grading.jsonl and
# checked once on evals/sets/grading_holdout.jsonl, written blind by another author (evals/README.md).
LEXICAL_WEIGHT = 0.45
ANCHOR_WEIGHT = 0.85
CREDIT_FLOOR, CREDIT_FULL = 0.30, 0.60
SEMANTIC_FLOOR, SEMANTIC_FULL = 0.35, 0.50
SPECIFIC_MARGIN = 0.1     # how much nearer another entry's key point must be to withhold that credit
COVERED = 0.5               # credit from which a key point is listed as covered
FRAGMENT_CAP = 0.2          # most a non-sentence (bag of terms, fragment) can earn for one key point
STUFFED_CAP = 2.5           # score cap when the answer holds no real sentence at all
OFF_TOPIC_COSINE = 0.25     # a sentence this far from the question, key points and model answer is off-topic
OFF_TOPIC_WEIGHT, WRONG_WEIGHT = 0.6, 0.8  # share of the score lost per off-topic / contradicting sentence
CONTRADICTION_RECALL = 0.75  # share of a key point's words a sentence must reuse to be read as negating it
MIN_FUNCTION_SHARE = 0.15   # share of function words real prose has at least
FUNCTION_WORDS = frozenset(["a", "an", "the", "of", "to", "in", "on", "at", "by", "for", "with", "from", "into", "onto", "over", "under", "as", "is", "are", "was", "were", "be", "been", "being", "has", "have", "had", "do", "does", "did", "can", "could", "may", "might", "must", "should", "would", "will", "shall", "it", "its", "this", "that", "these", "those", "which", "who", "whom", "whose", "what", "when", "where", "while", "because", "so", "than", "then", "there", "their", "they", "them", "he", "she", "we", "you", "i", "not", "no", "but", "or", "and", "if", "also", "each", "every", "all", "any", "some", "more", "most", "less", "such", "only", "just", "very", "how", "why", "once", "until", "about", "during", "after", "before", "between", "through", "per", "within", "across", "via", "among", "against", "without", "out", "up", "off", "down"])
# Where a sentence splits into separately checkable claims: "…, which …", "…; …", "… because …".
CLAUSE_BREAK = re.compile(r"[;:]\s+|,\s+(?=(?:which|so|while|whereas|and|but|because|where|since|then)\b)"
                    r"|\s+(?=(?:so that|because|whereas|while)\b)")
NEGATION = {"not", "no", "never", "cannot", "can't", "doesn't", "don't", "isn't", "aren't", "won't",
            "without", "neither", "nor"}
# Antonym pairs: "lowers variance" against a key point that says "raises variance" contradicts it.
ANTONYMS = [("increase", "decrease"), ("increases", "decreases"), ("raise", "lower"), ("raises", "lowers"),
            ("more", "less"), ("more", "fewer"), ("larger", "smaller"), ("higher", "lower"),
            ("faster", "slower"), ("before", "after"), ("maximize", "minimize"), ("maximizes", "minimizes"),
            ("overfitting", "underfitting"), ("shrinks", "grows"), ("always", "never"), ("upper", "lower"),
            ("minimum", "maximum"), ("first", "last"), ("positive", "negative"), ("forward", "backward"),
            ("adds", "removes"), ("low", "high"), ("reduces", "increases"), ("sparse", "dense"),
            ("small", "large"), ("slow", "fast"), ("encoder", "decoder"), ("input", "output")]
ANTONYM_OF = {a: b for a, b in ANTONYMS} | {b: a for a, b in ANTONYMS}


class NoMatch(ValueError):
    """The question is not one the bank covers, so there are no key points to grade against."""


class AnswerError(ValueError):
    """An answer that cannot be graded as given (too long); the message says why."""


def validate_answer(text: str | None) -> str:
    text = clean_input(text if isinstance(text, str) else None).strip()
    limit = get_settings().max_answer_chars
    if len(text) > limit:
        raise AnswerError(f"The answer is {len(text)} characters long and the limit is {limit}; "
                          "answer as you would aloud, in a few sentences.")
    return text


@dataclass
class PointResult:
    point: str
    credit: float            # 0..1
    evidence: str | None     # the answer sentence that earned the credit
    judged: bool | None = None   # the LLM judge's verdict, when one was asked

    @property
    def covered(self) -> bool:
        return self.credit >= COVERED


@dataclass
class Grade:
    question: str
    matched_question: str
    score: float
    covered: list[str]
    missing: list[str]
    feedback: str
    citations: list[dict]
    qid: str | None = None
    topic: str | None = None
    followup: str | None = None
    model_answer: str = ""
    points: list[PointResult] = field(default_factory=list)
    # sentences in the answer, and how many were fragments, off-topic or contradicting a key point
    sentence_counts: dict = field(default_factory=dict)
    judge: str = "key points"
    timings: dict = field(default_factory=dict)
    derived: bool = False    # the key points were derived from an uploaded answer (coach.documents)

    def as_json(self) -> dict:
        return {"question": self.question, "matched_question": self.matched_question, "score": self.score,
                "covered": self.covered, "missing": self.missing, "feedback": self.feedback,
                "citations": self.citations, "qid": self.qid, "topic": self.topic, "followup": self.followup,
                "model_answer": self.model_answer,
                "points": [{"point": p.point, "credit": round(p.credit, 3), "covered": p.covered,
                            "evidence": p.evidence, "judged": p.judged} for p in self.points],
                "penalties": self.sentence_counts, "judge": self.judge, "timings": self.timings,
                "key_points_derived": self.derived}


def is_claim(sentence: str) -> bool:
    """Does this read as a statement rather than a bag of terms? Prose carries function words ("is",
    "of", "the", "because"); a keyword list or a two-word fragment does not."""
    words = WORD.findall(sentence.lower())
    if len(words) < 4:
        return False
    function = sum(w in FUNCTION_WORDS for w in words) / len(words)
    if function < MIN_FUNCTION_SHARE:
        return False
    items = [item for item in re.split(r"[,;/|]|\.\s", sentence) if item.strip()]
    # "momentum, bias correction, moment estimates, epsilon, warm-up": a list, even with an "is" in front
    return not (len(items) >= 4 and np.mean([len(i.split()) for i in items]) <= 3 and function < 0.3)


def clauses(sentence: str) -> list[str]:
    """The separately checkable claims of a sentence ("..., so ...", "...; ..."), or the sentence itself."""
    parts = [c for c in CLAUSE_BREAK.split(sentence) if c and len(content_words(c)) >= 2]
    return parts if len(parts) > 1 else [sentence]


def contradicts(point: str, sentence: str) -> bool:
    """A clause of the sentence restates a clause of the key point (most of its words) but negates it, or
    puts an antonym in place of one of its words ("raises variance" for "lowers variance"). Clause by
    clause, so "no train/test mismatch" after a colon does not negate the claim before it. Without an
    entailment model this catches only plain cases; swapped roles ("BERT generates, GPT fills in") pass."""
    return any(_negates(p, s) for p in clauses(point) for s in clauses(sentence))


def _negates(point: str, sentence: str) -> bool:
    if _recall(point, sentence) < CONTRADICTION_RECALL:
        return False
    p_words, s_words = set(re.findall(r"[a-z']+", point.lower())), set(re.findall(r"[a-z']+", sentence.lower()))
    if bool(p_words & NEGATION) != bool(s_words & NEGATION):
        return True
    return any(ANTONYM_OF[w] in s_words and ANTONYM_OF[w] not in p_words and w not in s_words
               for w in p_words if w in ANTONYM_OF)


class Grader:
    """Grades answers to bank questions. `backend` is only used as a judge when it is capable."""

    def __init__(self, retriever=None, backend=None, bank=None):
        from coach.bank import load_bank
        from coach.retrieval import HybridRetriever

        self.retriever = retriever or HybridRetriever()
        self.backend = backend
        self.embeddings = self.retriever.embeddings
        entries = bank if bank is not None else load_bank(get_settings().corpus_dir)
        self.bank = {entry.id: entry for entry in entries}
        self._points, self._lock = None, threading.Lock()
        self.templates = [line.strip()[2:] for line in prompt("followup").splitlines()
                          if line.strip().startswith("- ")]

    def key_point_vectors(self, exclude: str | None = None) -> np.ndarray:
        """Vectors of the bank's key points (of every entry but `exclude`), embedded on first use: a few
        seconds for the whole bank, which `Interviewer.start` spends in a background thread. They go
        through the sentence cache, so grading an entry finds its own key points there."""
        with self._lock:
            if self._points is None:
                owners = np.array([e.id for e in self.bank.values() for _ in e.key_points])
                texts = [p for e in self.bank.values() for p in e.key_points]
                self._points = owners, np.asarray(self.embeddings.embed_sentences(texts))
        owners, vectors = self._points
        return vectors[owners != exclude]

    # --- matching -------------------------------------------------------------------------------
    def match(self, question: str):
        """(bank entry, hit) for the question, or NoMatch when the bank does not cover it."""
        question = validate_question(question)
        hits = self.retriever.search(question, k=5)
        threshold = self.retriever.calibration.threshold
        for hit in hits:
            entry = self.bank.get(hit.metadata.get("qid"))
            if entry is not None and hit.score >= threshold:
                return entry, hit
        nearest = [h.metadata.get("question") for h in hits[:3] if h.metadata.get("question")]
        raise NoMatch("The question bank has no question like this, so there are no key points to grade "
                      "against." + (" Nearest bank questions: " + "; ".join(f'"{q}"' for q in nearest)
                                    if nearest else ""))

    def hit_for(self, entry):
        """The retrieval hit of an entry the caller already knows (for its citation)."""
        from coach.documents import entry_id, is_document_entry

        document = is_document_entry(entry)
        for hit in self.retriever.search(entry.question, k=5, scope="docs" if document else "bank"):
            meta = hit.metadata
            if (entry_id(meta.get("source"), meta.get("qid")) if document else meta.get("qid")) == entry.id:
                return hit
        return None

    # --- grading --------------------------------------------------------------------------------
    def grade(self, question: str, answer: str) -> Grade:
        """Grade an answer to a question typed by the user (matched to the bank first)."""
        started = time.perf_counter()
        answer = validate_answer(answer)  # before the search: a refused answer costs nothing
        try:
            entry, hit = self.match(question)
        except NoMatch as exc:
            return Grade(question=question, matched_question="", score=0.0, covered=[], missing=[],
                         feedback=str(exc), citations=[], timings=_ms(started))
        return self.grade_entry(entry, answer, question=question, hit=hit, started=started)

    def grade_entry(self, entry, answer: str, question: str | None = None, hit=None,
                    started: float | None = None) -> Grade:
        """Grade an answer to a known bank entry (the interviewer's own question)."""
        from coach.answer import citation

        started = started or time.perf_counter()
        answer = validate_answer(answer)
        hit = hit or self.hit_for(entry)
        cites = [citation(1, hit)] if hit is not None else []
        points, counts = self.assess(entry, answer or "")
        score = self.score(points, counts)
        judge = "key points"
        if may_judge(self.backend) and (answer or "").strip() and self.judge(entry, answer, points):
            judge = f"key points + {self.backend.describe()}"
            score = self.score(points, counts)
        covered = [p.point for p in points if p.covered]
        missing = [p.point for p in points if not p.covered]
        followup = self.followup(entry, missing, answer) if missing else None
        return Grade(question=question or entry.question, matched_question=entry.question, score=score,
                     covered=covered, missing=missing, feedback=self.feedback(score, points, counts, cites),
                     citations=cites, qid=entry.id, topic=entry.topic, followup=followup,
                     model_answer=entry.answer, points=points, sentence_counts=counts, judge=judge,
                     timings=_ms(started), derived=entry.id.startswith("doc:"))

    def assess(self, entry, answer: str) -> tuple[list[PointResult], dict]:
        """Per key point credit, and the counts of fragments, off-topic and contradicting sentences."""
        sentences = [s for s in split_sentences(answer) if content_words(s)]
        counts = {"sentences": len(sentences), "fragments": 0, "off_topic": 0, "contradicting": 0}
        if not sentences:
            return [PointResult(p, 0.0, None) for p in entry.key_points], counts
        claims = [is_claim(s) for s in sentences]
        units, owner = [], []   # each sentence, plus its clauses when it has several
        for j, sentence in enumerate(sentences):
            parts = clauses(sentence)
            for unit in [sentence, *(parts if len(parts) > 1 else [])]:
                units.append(unit)
                owner.append(j)
        owner = np.array(owner)
        points = list(entry.key_points)
        model = split_sentences(entry.answer)
        said = np.asarray(self.embeddings.embed_sentences(units))  # cached: the app re-grades the same text
        keys = np.asarray(self.embeddings.embed_sentences(points))
        model_vectors = np.asarray(self.embeddings.embed_sentences(model))
        anchors = [int(np.argmax(model_vectors @ keys[i] + np.array([_recall(p, m) for m in model])))
                   for i, p in enumerate(points)]
        direct = keys @ said.T
        cosine = np.maximum(direct, ANCHOR_WEIGHT * (model_vectors[anchors] @ said.T))
        asked = content_words(entry.question)
        lexical = np.array([[_recall(p, u, ignore=asked) for u in units] for p in points])
        blended = ((1 - LEXICAL_WEIGHT) * cosine + LEXICAL_WEIGHT * lexical - CREDIT_FLOOR) / (CREDIT_FULL - CREDIT_FLOOR)
        semantic = (cosine - SEMANTIC_FLOOR) / (SEMANTIC_FULL - SEMANTIC_FLOOR)
        semantic[cosine < cosine.max(axis=0)] = 0.0  # a piece earns it only for the key point it is closest to
        # ... and only when no other bank entry has a key point clearly nearer to the piece: a sentence from
        # another answer ("GPT predicts the next token") sits at 0.4 from key points about batch norm too
        elsewhere = (self.key_point_vectors(exclude=entry.id) @ said.T).max(axis=0)
        semantic[:, direct.max(axis=0) < elsewhere - SPECIFIC_MARGIN] = 0.0
        credit = np.clip(np.maximum(blended, semantic), 0.0, 1.0)
        contradicting = set()
        for i, point in enumerate(points):
            for j, sentence in enumerate(sentences):
                mine = owner == j
                if credit[i, mine].max() > 0.2 and contradicts(point, sentence):
                    credit[i, mine] = 0.0  # its clauses too: "XOR is linearly separable, so ..."
                    contradicting.add(j)
                elif not claims[j]:
                    credit[i, mine] = np.minimum(credit[i, mine], FRAGMENT_CAP)
        results = []
        for i, point in enumerate(points):
            k = int(np.argmax(credit[i]))
            results.append(PointResult(point, float(credit[i, k]),
                                       sentences[owner[k]] if credit[i, k] > 0 else None))
        reference = np.asarray(self.embeddings.embed_sentences([entry.question, *points, *model]))
        relevance = (reference @ said.T).max(axis=0)
        off_topic = {j for j in range(len(sentences)) if relevance[owner == j].max() < OFF_TOPIC_COSINE}
        counts.update(fragments=claims.count(False), off_topic=len(off_topic), contradicting=len(contradicting))
        return results, counts

    @staticmethod
    def score(points: list[PointResult], counts: dict) -> float:
        n = counts["sentences"]
        if not n:
            return 0.0
        coverage = float(np.mean([p.credit for p in points]))
        penalty = (OFF_TOPIC_WEIGHT * counts["off_topic"] + WRONG_WEIGHT * counts["contradicting"]) / n
        score = 10.0 * coverage * max(0.0, 1.0 - penalty)
        if counts["fragments"] == n:
            score = min(score, STUFFED_CAP)
        return round(score, 1)

    def judge(self, entry, answer: str, points: list[PointResult]) -> bool:
        """Ask a capable model which key points the answer states; blend its verdict into the credit.
        The model can never award a point without evidence found by the code (credit > 0)."""
        from coach.llm import BackendUnavailable

        numbered = "\n".join(f"{n}. {p.point}" for n, p in enumerate(points, start=1))
        message = prompt("grade_judge").format(question=entry.question, key_points=numbered, answer=answer)
        try:
            reply = self.backend.generate([{"role": "user", "content": message}], max_tokens=40)
        except BackendUnavailable:
            return False
        found = re.search(r"covered\s*:\s*(none|[\d,\s]+)", reply, re.I)
        if not found:
            return False
        said = {int(n) for n in re.findall(r"\d+", found.group(1))}
        for n, p in enumerate(points, start=1):
            p.judged = n in said
            if p.credit > 0:
                p.credit = 0.5 * p.credit + 0.5 * float(p.judged)
        return True

    # --- feedback -------------------------------------------------------------------------------
    @staticmethod
    def feedback(score: float, points: list[PointResult], counts: dict, cites: list[dict]) -> str:
        covered = sum(p.covered for p in points)
        if not counts["sentences"]:
            return "No answer to grade: say in a few sentences what you know."
        parts = [f"{score:.1f}/10: you covered {covered} of {len(points)} key points."]
        if counts["fragments"] == counts["sentences"]:
            parts.append("Answer in full sentences: bare terms and fragments do not show you understand them.")
        if counts["contradicting"]:
            parts.append("Some of what you said contradicts the model answer.")
        if counts["off_topic"]:
            parts.append("Part of the answer is about something else.")
        missing = [p.point for p in points if not p.covered]
        if missing:
            parts.append(f"Missing: {missing[0]}" + (f" (and {len(missing) - 1} more)." if len(missing) > 1 else "."))
        if cites:
            parts.append("Compare with the model answer [1].")
        return " ".join(parts)

    def followup(self, entry, missing: list[str], answer: str) -> str:
        """A question about the first missing key point, naming its terms the answer never used."""
        point = missing[0]
        used = content_words(answer or "")
        words = [w for w in WORD.findall(point.lower()) if w not in stopwords()]
        fresh = [w for w in dict.fromkeys(words) if not (content_words(w) & used)]
        terms = " ".join((fresh or words)[:4])
        template = self.templates[int(hashlib.sha1(point.encode()).hexdigest(), 16) % len(self.templates)]
        return template.format(terms=terms, topic=entry.topic, point=point)


def _recall(point: str, sentence: str, ignore: set[str] = frozenset()) -> float:
    """Share of the point's content words (less `ignore`, unless that leaves none) found in the sentence."""
    words = content_words(point)
    words = (words - ignore) or words
    return len(words & content_words(sentence)) / len(words) if words else 0.0


def _ms(started: float) -> dict:
    return {"total_ms": round((time.perf_counter() - started) * 1000, 1)}
