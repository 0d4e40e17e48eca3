"""Grading an interview answer against the bank entry's key points and its common misconceptions.

1. The user's question is matched to a bank entry with the shared HybridRetriever (an interviewer session
   already knows its entry and skips this step).
2. The answer is cut into sentences, and compound sentences into clauses. A piece earns credit only from
   what it says beyond the question's own words: one that adds fewer than MIN_NEW_WORDS content words to
   the question ("beam search searches with a beam") earns nothing, so restating the question scores 0.
3. Each key point gets three signals from the pieces: meaning (MiniLM cosine with the key point, with
   each of its `also` phrasings and with the model-answer sentence that states it), terms (the share of
   the point's own words, less the question's, that a piece uses), and meaning that is specific (the
   cosine of pieces for which this key point is the nearest of the entry's and no other entry's key point
   is clearly nearer). A logistic model of the three, fitted on the tuning half of the blind grading set
   (`python -m evals.grader --fit`), turns them into the point's credit in [0, 1].
4. Mistakes: a sentence nearer to one of the entry's misconceptions than to anything the bank says is
   right (key points, their phrasings, the corrections, the model answer) states that misconception; a
   sentence that restates a key point with a negation or antonym contradicts it (a negation only when it
   denies one of the other side's words: "a human sees no difference" negates nothing a point about a
   changed prediction says; twenty-fifth pass, evals/README.md; these word rules live in coach.contradictions).
   Such a sentence earns nothing, lowers the score, and the feedback names the mistake and the correct
   statement, citing [1].
   MiniLM cannot read roles ("the target model drafts" sits at 0.97 from "the draft model drafts"), so
   an answer of two or more sentences that states few of the key points is also accused when its sentences
   lean, on average, towards the misconceptions. Either way a sentence is only accused of a misconception whose own words it
   uses, among them one its correction lacks: sitting near it is not saying it; and a sentence about as near
   the misconception's correction as the misconception is not accused on its own.
   "A rather than B", with B a key point's words and A none of the bank's, denies that point. A sentence
   leans as far as its most leaning clause. A clause that reuses a correct statement's words with one word
   of opposite sense ("raise the learning rate" against "lowering the learning rate is the first remedy")
   says it reversed: the feedback quotes both words and the statement.
   In an answer that states no key point outright, the credit model then reads each on-topic claim alone: the
   claim that states no key point and that the mistake model reads as near a misconception is named, as that
   misconception or as "not what the model answer says" (StatesNothing; twenty-sixth pass). How low a claim
   reads differs between training runs of the credit model, so these constants are chosen for each model file when
   it is made (thirty-seventh pass; evals.credit --calibrate).
5. Keyword stuffing earns little (fragments are capped; a note in the writer's own words is no fragment),
   off-topic sentences cost points.
6. With a capable backend (`coach.llm.may_judge`), an LLM judge is asked which key points the answer
   states, and must quote the words of the answer that state each one; a point is only credited when the
   quote is really in the answer. The embedded 135M model is never asked to judge.

The 0-10 mapping of the credits is calibrated on the tuning half of evals/sets/grading_blind.jsonl
(split by question in evals/datasets.py) and made concave on fresh5 to fresh9 (SCORE_GAMMA: a linear map scored
partial answers well under their authors; thirty-ninth pass). The note, clause and accusation constants (fourth pass, 2026-12-04)
were chosen on both halves and evals/sets/grading_fresh.jsonl to grading_fresh3.jsonl, cross-validated by
question and by set, then adopted on grading_fresh4.jsonl, read once; refitting the credit model and mapping
on six sets (fifth pass) lost on grading_fresh5.jsonl, the set never fitted on (evals/README.md).
"""
from __future__ import annotations

import hashlib
import re
import threading
import time
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from coach.config import get_settings, prompt
from coach.contradictions import (
    contradicts,
    correct_statements,
    denied_point,
    is_negated,
    reversed_statement,
    role_swaps,
    surface_word,
)
from coach.credit import calibration, stated, stated_by_each
from coach.guards import validate_question
from coach.llm import may_judge
from coach.mistakes import mistake_model
from coach.text import FUNCTION_WORDS, WORD, clauses, clean_input, content_words, recall, split_sentences, stopwords

# Pieces that add fewer content words than this to the question's own are restating it.
MIN_NEW_WORDS = 2
ANCHOR_WEIGHT = 0.85        # a model-answer sentence that states the point counts a little less than it
SPECIFIC_MARGIN = 0.1       # how much nearer another entry's key point must be to withhold specific credit
# Credit of a key point = sigmoid(CREDIT_BIAS + CREDIT_WEIGHTS . (cosine, terms, specific cosine)); the
# 0-10 score = 10 * clip((mean credit - SCORE_LOW) / (SCORE_HIGH - SCORE_LOW)) ** SCORE_GAMMA, where a credit under
# SCORE_FLOOR counts as 0 (the small credit every on-topic answer leaks to every point adds up otherwise).
# Fitted by `python -m evals.grader --fit` on the tuning half of evals/sets/grading_blind.jsonl: the
# weights on the human "covered" labels; the mapping as the one, among those that keep the bands
# per kind of answer, with the most questions ordered complete > partial > wrong, then the smallest mean
# absolute error against the human scores. Refitted 2026-12-03 for the richer bank (two `also` phrasings
# on every key point, 4-5 misconceptions per entry in parts 1-4). The mapping was refitted 2026-12-05 (eighteenth
# pass) for the credit model's second opinion, which lowers most credits: the same way, with the bands
# narrowed by a margin, out of fold on the six fitting blind sets, keeping answers to a neighbouring question
# (credit_neighbours.jsonl) and the bank's own wording where the rules alone had them (was 0.04, 0.84, 0.5).
# See evals/README.md.
CREDIT_BIAS, CREDIT_WEIGHTS = -6.26, (1.64, 9.06, 3.83)
SCORE_LOW, SCORE_HIGH, SCORE_FLOOR = 0.02, 0.76, 0.45
# The map is concave (thirty-ninth pass, 2026-12-07): linear, it scored partial answers well under the humans (never
# fitted: 2.11 against 3.77). SCORE_GAMMA is the power with the smallest mean absolute error against the human scores
# of fresh5 to fresh9 (NAMING_TUNED) among 0.40-1.00 that keep issue 17's bands there; on fresh10-22 (never fitted)
# the error fell 0.799 -> 0.718, Spearman 0.914 -> 0.914, ordering 91.2% -> 90.4% (evals/README.md).
SCORE_GAMMA = 0.85
# A sentence states a misconception when its cosine with it (plus TERMS_WEIGHT times the share of the
# misconception's own words it uses, less the share of the correction's) exceeds its cosine with every
# correct statement of the entry by SENTENCE_MARGIN; an answer whose sentences lean that way by
# ANSWER_MARGIN on average is accused of its nearest misconception.
TERMS_WEIGHT = 0.2
# Accusing correct answers less (2026-12-03):
# - a sentence is accused on its own only when it is nearer the misconception than the misconception's own
#   correction by SENTENCE_OVER_CORRECTION;
# - the answer-level rule (sentences leaning towards the misconceptions on average, the weaker evidence)
#   only names a mistake in an answer whose key points earn less than ANSWER_RULE_MAX_COVERAGE of the full
#   mean credit before any sentence is set aside: an answer that states most key points does not lean
#   towards the misconceptions, it shares their vocabulary;
# - and only in an answer of at least ANSWER_RULE_MIN_SENTENCES sentences that say something: the mean over
#   one sentence is that sentence's own leaning, judged with a lower bar than the sentence rule's.
# Clauses (third pass, fourth pass 2026-12-04): a wrong clause after a right one (", which approximates
# attention with a low-rank projection") is diluted by the rest of its sentence, so each clause of at least
# CLAUSE_MIN_WORDS content words is read on its own too, with its own margin CLAUSE_MARGIN (and nearer its
# misconception than that misconception's correction). The third pass read every sentence by its most leaning
# unit with one margin (0.25) for both: that named 6 more wrong answers on the five blind sets and accused 10
# more correct ones, mostly through short clauses ("Fix: class-weighted loss, ...") and the higher sentence
# margin's trade. Apart, the whole sentences keep main's margins and the clauses get a higher one.
# `python -m evals.grader --fit-rules` chose all of these and NOTE_MIN_OWN below on the blind sets, each in
# turn: the most wrong answers named less correct answers accused, then the larger Spearman, then the least
# change; the fourth pass on all five sets (812 answers: both halves of grading_blind.jsonl and
# grading_fresh.jsonl, grading_fresh2.jsonl, grading_fresh3.jsonl), cross-validated by question and by set
# (evals/README.md, "fourth pass").
# Fourth pass on all 812 answers: sentence margin 0.12 (third pass 0.25 read by clause, main 0.08), over the
# correction 0.15, answer-rule coverage gate 0.7 (as main), answer margin -0.1; clauses of 6 content words or
# more, margin 0.25 (shorter clauses accused correct notes: "Fix: class-weighted loss, over/undersampling").
SENTENCE_MARGIN, ANSWER_MARGIN = 0.12, -0.1
SENTENCE_OVER_CORRECTION = 0.15
ANSWER_RULE_MAX_COVERAGE = 0.7
ANSWER_RULE_FLOOR = 0.5     # the credit floor that coverage was read with when these were chosen (SCORE_FLOOR then)
ANSWER_RULE_MIN_SENTENCES = 2
CLAUSE_MARGIN, CLAUSE_MIN_WORDS = 0.25, 6
# A misconception is only named in a sentence that uses this many of its own words beyond the question's.
MIN_MISCONCEPTION_WORDS = 1
# Swapped roles: a clause that names one side of a contrast (two of the question's terms, or an antonym
# pair) and matches the bank's correct statements better, in word order, once the two are exchanged
# ("precision is TP/(TP+FN)" -> "recall is TP/(TP+FN)") states the roles the wrong way round. SWAP_MARGIN is
# the gain in that match (2 x longest common subsequence of stemmed content words / their lengths) from
# which the clause is accused; chosen with the margins above on the tuning half (evals/grader_fit.py).
SWAP_MARGIN = 0.175
# A second reading (eighth pass, 2026-12-04): a misconception accusation stands only when the mistake model
# (coach.mistakes: MiniLM fine-tuned on other authors' answers to tell a sentence that states a misconception from
# one in its words that does not) gives its (misconception, sentence) pair a logit over MISTAKE_MIN. Chosen by
# `python -m evals.mistakes --crossvalidate` leaving each fitting blind set out: the threshold with the most wrong
# answers named less correct answers accused. -inf: the rules alone.
MISTAKE_MIN = 0.5
# The answer-level rule is the weakest evidence of the three (the answer leans towards a misconception on average; its
# most leaning sentence is named): a sentence only it accuses stands when the mistake model is surer. Twenty-eighth
# pass (2026-12-06), with STATES_NOTHING_P and _MAX below, chosen on fresh5 to fresh9 (NAMING_TUNED) for issue 17's
# target: the fewest correct answers accused among settings naming at least as many wrong answers as before there
# (evals/README.md, "twenty-eighth pass").
ANSWER_RULE_MISTAKE_MIN = 1.5
# In an answer whose coverage (below) is at least STATES_MOST, a swap stands over STATES_MOST_SWAP_MARGIN and
# contradictions and reversals are not read (thirty-third pass, 2026-12-06): on fresh5 to fresh9 these accused 16 of
# 240 complete answers; on complete answers written to hold exactly one false sentence (sets/grading_mixed1.jsonl,
# tuning) the rules named that sentence in 5 of 40 before, 4 with this. Chosen on those two sets, decided on fresh10-22
# and grading_mixed2.jsonl (never fitted on): accused 7.02% -> 3.27%, one false sentence fewer named in 40
# (evals/README.md, "thirty-third pass").
STATES_MOST, STATES_MOST_SWAP_MARGIN = 0.5, 0.35
# The credit model's probability p enters a key point's credit c as min((c + p) / 2, c + MODEL_RAISE) (fifteenth pass,
# 2026-12-05): with the plain mean, the model credited answers in the right area that answer a neighbouring question
# (an answer to the next entry's question over 2.0 for a third of the entries). Chosen out of fold on the fitting
# blind sets and credit_neighbours.jsonl among 19 ways of letting p in (evals/README.md, "fifteenth to eighteenth
# passes").
MODEL_RAISE = 0.1
# A wrong statement in the topic's words is often none of the entry's listed misconceptions in its words: the rules
# above leave it unnamed (30-70% of wrong answers named on the never-fitted sets). In an answer that earns under
# STATES_NOTHING_CREDIT of the entry on average and under STATES_NOTHING_MAX on every key point (it states none
# outright; a partial answer states one or two), an on-topic claim that the credit model, reading it alone, finds
# stating no key point (each under STATES_NOTHING_P) and the mistake model reads as near a misconception (a logit over
# STATES_NOTHING_LOGIT) is named: as that misconception when its logit is over MISTAKE_MIN, else as "not what the
# model answer says" beside the key point it is about. It names; it does not change the score. CREDIT and LOGIT were
# chosen on fresh5 to fresh9 (NAMING_TUNED) in the twenty-second pass (the most wrong answers named there with at most
# one point more of correct answers accused); P (0.5 then) and MAX (0.5 from the twenty-sixth) in the twenty-eighth,
# with ANSWER_RULE_MISTAKE_MIN above: with the models as every machine trains them, a short partial answer's one
# correct sentence often reads 0.1-0.3 against its point, and was named as a mistake (evals/README.md).
STATES_NOTHING_P, STATES_NOTHING_CREDIT, STATES_NOTHING_LOGIT = 0.15, 0.4, 0.0
STATES_NOTHING_MAX = 0.6
# How low "stating no key point" reads is a property of one training run of the credit model: with the constants above
# (chosen with the landed model) other runs of the same recipe named 56-69% of never-fitted wrong answers where the
# landed run names 84%. So training chooses them again for the model it has made, on fresh5 to fresh9 only, and
# writes them beside it (evals.credit.calibrate, coach.credit.calibration; thirty-seventh pass, evals/README.md).
# The values above are what that choice gives the landed model, and what a grader without the file reads.
COVERED = 0.5               # credit from which a key point is listed as covered
FRAGMENT_CAP = 0.2          # most a non-sentence (bag of terms, fragment) can earn for one key point
STUFFED_CAP = 2.5           # score cap when the answer holds no real sentence at all
OFF_TOPIC_COSINE = 0.25     # a sentence this far from the question, key points and model answer is off-topic
OFF_TOPIC_WEIGHT, WRONG_WEIGHT = 0.6, 1.0  # share of the score lost per off-topic / mistaken sentence
# A sentence nearer another entry's key point than any of this entry's by more than ELSEWHERE_MARGIN answers a
# neighbouring question; each costs ELSEWHERE_WEIGHT of the score per sentence, like an off-topic one (eighteenth
# pass, 2026-12-05: chosen with the mapping above, evals/README.md).
ELSEWHERE_MARGIN, ELSEWHERE_WEIGHT = 0.15, 0.6
# The feedback names it from this share of the sentences on: a complete answer has one or two such sentences (the
# bank's own answers, graded against their entry, have 1-4 of 13-14).
ELSEWHERE_FEEDBACK_SHARE = 1 / 3
MIN_FUNCTION_SHARE = 0.15   # share of function words real prose has at least
# A run of this many words without one glue word (the function words a keyword list drops: articles, "is",
# "of", "and", ...) is a bag of terms: 2 of the bank's 4,864 answer sentences are that long without one.
BAG_MIN_WORDS = 15
# A note ("Frozen W; learn low-rank B A; merge later; no extra latency.") has few glue words but is no bag
# of terms: at least NOTE_MIN_WORDS content words, of which at least NOTE_MIN_OWN are the writer's own (in
# none of the entry's key points, their phrasings or the question). A keyword list copies the key points'
# words, so it stays a fragment. Chosen on all three blind sets (the largest Spearman among 0.1-0.3 and
# none; cross-validated by question), evals/README.md.
NOTE_MIN_WORDS, NOTE_MIN_OWN = 3, 0.1
JUDGE_MIN_QUOTE = 12        # characters a judge's quote must have to count as evidence


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
    features: tuple = field(default=(), repr=False)  # (cosine, terms, specific): what the credit came from

    @property
    def covered(self) -> bool:
        return bool(self.credit >= COVERED)


@dataclass
class Mistake:
    """Something the answer got wrong: what it said, the statement it matches, and the correct one."""
    sentence: str            # the answer's sentence
    wrong: str               # the misconception it states (or the key point it negates, restated)
    right: str               # the correct statement, from the bank entry cited as [1]
    kind: str = "misconception"  # or "contradiction" (a negated key point), "swap" (two roles exchanged),
    # or "reversal" (a correct statement with one word of opposite sense: "low" for "high"), or "unsupported" (an
    # on-topic claim that states no key point, in an answer that states little: `right` is the point it is about)
    swapped: tuple = ()      # for a swap: the two terms the sentence exchanges

    def as_json(self) -> dict:
        return {"sentence": self.sentence, "wrong": self.wrong, "right": self.right, "kind": self.kind}


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
    mistakes: list[Mistake] = field(default_factory=list)
    # sentences in the answer, and how many were fragments, off-topic, restating or mistaken
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
                "mistakes": [m.as_json() for m in self.mistakes],
                "penalties": self.sentence_counts, "judge": self.judge, "timings": self.timings,
                "key_points_derived": self.derived}


def is_note(sentence: str, known: set[str]) -> bool:
    """Does this fragment read as a note in the writer's own words rather than a list of the entry's terms?
    `known`: the content words of the entry's key points, their phrasings and the question."""
    words = content_words(_as_words(sentence))
    return len(words) >= NOTE_MIN_WORDS and len(words - known) / len(words) >= NOTE_MIN_OWN


def entry_words(entry) -> set[str]:
    """The content words of the entry's key points, their phrasings and its question."""
    texts = [entry.question, *entry.key_points, *(a for alts in entry.key_point_alternatives for a in alts)]
    return set().union(*(content_words(t) for t in texts))


def is_claim(sentence: str) -> bool:
    """Does this read as a statement rather than a bag of terms? Prose carries function words ("is",
    "of", "the", "because"); a keyword list or a two-word fragment does not. A note's symbols are read
    as the words they stand for and its label is not counted: "Skip-gram: input = centre word" says
    "the input is the centre word"."""
    sentence = _as_words(sentence)
    words = WORD.findall(sentence.lower())
    if len(words) < 4:
        return False
    function = sum(w in FUNCTION_WORDS for w in words) / len(words)
    if function < MIN_FUNCTION_SHARE or _glueless(words):
        return False
    items = [item for item in re.split(r"[,;/|]|\.\s", sentence) if item.strip()]
    # "momentum, bias correction, moment estimates, epsilon, warm-up": a list, even with an "is" in front
    return not (len(items) >= 4 and np.mean([len(i.split()) for i in items]) <= 3 and function < 0.3)


# Symbols that stand for glue words in notes, and a note's leading label ("Trade-off: ...", "- CBOW: ...").
SYMBOL_WORDS = ((re.compile(r"\s+=\s+"), " is "), (re.compile(r"\s*(?:->|→|=>)\s*"), " to "))
NOTE_LABEL = re.compile(r"^\s*(?:[-*•]\s*)?[\w'/ -]{1,30}:\s+(?=\S)")


def _as_words(sentence: str) -> str:
    sentence = NOTE_LABEL.sub("", sentence, count=1)
    for symbol, word in SYMBOL_WORDS:
        sentence = symbol.sub(word, sentence)
    return sentence


def _glueless(words: list[str]) -> bool:
    """Many words and none of prose's glue: "adam rescales every coordinate step running gradient ..."."""
    return len(words) >= BAG_MIN_WORDS and not any(w in FUNCTION_WORDS and w in stopwords() for w in words)


@dataclass
class Signals:
    """What the grader measures in an answer before it decides anything (`evals.grader --fit` fits the
    credit model and the score mapping on these)."""
    sentences: list[str]
    claims: list[bool]           # per sentence: reads as a statement, not a bag of terms
    units: list[str]             # every sentence, plus its clauses when it has several
    owner: np.ndarray            # the sentence of each unit
    new: np.ndarray              # per unit: says something beyond the question's own words
    cosine: np.ndarray           # [key point, unit]: meaning, with the point, its phrasings, its anchor
    terms: np.ndarray            # [key point, unit]: share of the point's own words the unit uses
    specific: np.ndarray         # [key point, unit]: cosine where the point is the unit's nearest, else 0
    leaning: np.ndarray          # per sentence: nearer a misconception than any correct statement by this
    nearest_misconception: np.ndarray  # per sentence: the index of that misconception
    over_correction: np.ndarray  # per sentence: how much nearer that misconception than its own correction
    relevance: np.ndarray        # per sentence: best cosine with the question, key points and model answer
    swap_gain: np.ndarray = None  # per sentence: how much better it matches the bank with two roles exchanged
    swaps: list = None           # per sentence: (term, other term, the correct statement it then matches)
    unit_leaning: tuple = None   # (leaning, nearest_misconception, over_correction) of every unit: the
    #                              clause rule reads a sentence's clauses (the units after its first)
    unit_words: np.ndarray = None  # per unit: its content words beyond the question's
    elsewhere: np.ndarray = None  # per sentence: cosine with the nearest key point of another entry less the
    #                               cosine with the nearest of this entry's (> ELSEWHERE_MARGIN: about that entry)


class Grader:
    """Grades answers to bank questions. `backend` is only used as a judge when it is capable."""

    def __init__(self, retriever=None, backend=None, bank=None, naming: StatesNothing | None = None):
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
        self.naming = naming or states_nothing()  # stating_nothing's constants (for the credit model present)

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
                    started: float | None = None, points: list[int] | None = None) -> Grade:
        """Grade an answer to a known bank entry (the interviewer's own question). `points` limits the
        grade to those key points (by index): a follow-up turn is graded on the points it probes."""
        from coach.answer import citation

        started = started or time.perf_counter()
        answer = validate_answer(answer)
        hit = hit or self.hit_for(entry)
        cites = [citation(1, hit)] if hit is not None else []
        results, counts, mistakes = self.assess(entry, answer or "")
        judge = "key points"
        if may_judge(self.backend) and (answer or "").strip() and self.judge(entry, answer, results):
            judge = f"key points + {self.backend.describe()}"
        if points is not None:
            results = [results[i] for i in points]
        score = self.score(results, counts)
        covered = [p.point for p in results if p.covered]
        missing = [p.point for p in results if not p.covered]
        followup = self.followup(entry, missing, answer) if missing else None
        return Grade(question=question or entry.question, matched_question=entry.question, score=score,
                     covered=covered, missing=missing,
                     feedback=self.feedback(score, results, counts, mistakes, cites),
                     citations=cites, qid=entry.id, topic=entry.topic, followup=followup,
                     model_answer=entry.answer, points=results, mistakes=mistakes, sentence_counts=counts,
                     judge=judge, timings=_ms(started), derived=entry.id.startswith("doc:"))

    def assess(self, entry, answer: str) -> tuple[list[PointResult], dict, list[Mistake]]:
        """Per key point credit, the counts of kinds of sentences, and the mistakes the answer makes."""
        signals = self.signals(entry, answer)
        counts = {"sentences": 0, "fragments": 0, "off_topic": 0, "restating": 0, "mistaken": 0, "elsewhere": 0}
        if signals is None:
            return [PointResult(p, 0.0, None) for p in entry.key_points], counts, []
        mistakes, mistaken = self.mistakes(entry, signals)
        usable = signals.new & ~np.isin(signals.owner, sorted(mistaken))
        claim_units = np.array([signals.claims[j] for j in signals.owner])
        results = []
        for i, point in enumerate(entry.key_points):
            credit = point_credit(point_features(signals, i, usable & claim_units))
            fragment = min(FRAGMENT_CAP, point_credit(point_features(signals, i, usable & ~claim_units)))
            strength = np.where(usable, signals.cosine[i] + signals.terms[i], -np.inf)
            best = int(np.argmax(strength))
            evidence = signals.sentences[signals.owner[best]] if max(credit, fragment) > 0 else None
            results.append(PointResult(point, max(credit, fragment), evidence,
                                       features=point_features(signals, i, usable & claim_units)))
        self.second_opinion(entry, signals, mistaken, results)
        mistakes += self.name_stating_nothing(entry, signals, mistaken, results)
        restating = {j for j in range(len(signals.sentences)) if not signals.new[signals.owner == j].any()}
        off_topic = {j for j, r in enumerate(signals.relevance) if r < OFF_TOPIC_COSINE} - restating
        counts.update(sentences=len(signals.sentences), fragments=signals.claims.count(False),
                      off_topic=len(off_topic), restating=len(restating), mistaken=len(mistaken),
                      elsewhere=len(about_other_entries(signals)))
        return results, counts, mistakes

    def name_stating_nothing(self, entry, signals: Signals, accused: set[int],
                             results: list[PointResult]) -> list[Mistake]:
        """stating_nothing with this grader's constants (evals.credit.calibrate reads what it is given here)."""
        return stating_nothing(entry, signals, accused, results, self.naming)

    @staticmethod
    def second_opinion(entry, signals: Signals, mistaken: set[int], results: list[PointResult]) -> None:
        """Each key point's credit becomes the mean of the rules' credit and the credit model's probability
        that the answer's usable sentences (claims with words beyond the question's, no mistake) state it
        (coach.credit), but never more than MODEL_RAISE over the rules' own: the model lowers what the rules
        over-credit and may not credit what the rules did not find. Unchanged without the model."""
        usable = [j for j, sentence in enumerate(signals.sentences)
                  if j not in mistaken and signals.claims[j] and signals.new[signals.owner == j].any()]
        probabilities = stated(entry.key_points, [signals.sentences[j] for j in usable])
        if probabilities is None:
            return
        units = np.isin(signals.owner, usable)
        for i, (result, probability) in enumerate(zip(results, probabilities, strict=True)):
            result.credit = min(0.5 * result.credit + 0.5 * float(probability), result.credit + MODEL_RAISE)
            if result.evidence is None and result.covered:  # the usable sentence nearest the point
                result.evidence = signals.sentences[signals.owner[np.argmax(np.where(units, signals.cosine[i], -np.inf))]]

    def signals(self, entry, answer: str) -> Signals | None:
        """Measure the answer against the entry; None when it holds no sentence with content."""
        sentences = [s for s in split_sentences(answer) if content_words(s)]
        if not sentences:
            return None
        units, owner = [], []
        for j, sentence in enumerate(sentences):
            parts = clauses(sentence)
            for unit in [sentence, *(parts if len(parts) > 1 else [])]:
                units.append(unit)
                owner.append(j)
        owner = np.array(owner)
        asked = content_words(entry.question)
        new = np.array([len(content_words(u) - asked) >= MIN_NEW_WORDS for u in units])
        said = self._embed(units)
        cosine, terms = self._point_signals(entry, units, said, asked)
        specific = np.where(cosine >= cosine.max(axis=0), cosine, 0.0)  # only for the unit's nearest point
        elsewhere = (self.key_point_vectors(exclude=entry.id) @ said.T).max(axis=0)  # (units,)
        specific[:, cosine.max(axis=0) < elsewhere - SPECIFIC_MARGIN] = 0.0
        whole = said[[units.index(s) for s in sentences]]
        # how each unit leans towards the misconceptions; a sentence's own values are those of its first unit
        unit_leaning = self._leaning(entry, units, said, asked)
        first = [units.index(s) for s in sentences]
        leaning, nearest, over_correction = (values[first] for values in unit_leaning)
        reference = self._embed([entry.question, *entry.key_points, *split_sentences(entry.answer)])
        gain, swaps = role_swaps(entry, units, owner, len(sentences))
        known = entry_words(entry)
        claims = [is_claim(s) or is_note(s, known) for s in sentences]
        return Signals(sentences=sentences, claims=claims, units=units, owner=owner,
                       new=new, cosine=cosine, terms=terms, specific=specific, leaning=leaning,
                       nearest_misconception=nearest, over_correction=over_correction,
                       relevance=(reference @ whole.T).max(axis=0),
                       swap_gain=gain, swaps=swaps, unit_leaning=unit_leaning,
                       unit_words=np.array([len(content_words(u) - asked) for u in units]),
                       elsewhere=(elsewhere - cosine.max(axis=0))[first])

    def _embed(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.embeddings.embed_sentences(texts))  # cached: the app re-grades the same text

    def _point_signals(self, entry, units: list[str], said: np.ndarray, asked: set[str]):
        """Cosine and terms of every key point with every unit, the point's `also` phrasings included."""
        model = split_sentences(entry.answer)
        model_vectors = self._embed(model)
        cosine = np.zeros((len(entry.key_points), len(units)))
        terms = np.zeros_like(cosine)
        for i, point in enumerate(entry.key_points):
            phrasings = [point, *(entry.key_point_alternatives[i] if entry.key_point_alternatives else ())]
            vectors = self._embed(phrasings)
            anchor = int(np.argmax(model_vectors @ vectors[0] + np.array([recall(point, m) for m in model])))
            cosine[i] = np.maximum((vectors @ said.T).max(axis=0), ANCHOR_WEIGHT * (model_vectors[anchor] @ said.T))
            terms[i] = [max(recall(p, u, ignore=asked) for p in phrasings) for u in units]
        return cosine, terms

    def _leaning(self, entry, sentences: list[str], whole: np.ndarray, asked: set[str]):
        """Per sentence: how much nearer it is to a misconception than to any correct statement of the
        entry, and which misconception. Terms count a little: the words the wrong statement has and its
        correction lacks ("generates the caption") and the reverse."""
        if not entry.misconceptions:
            return np.full(len(sentences), -1.0), np.zeros(len(sentences), dtype=int), np.full(len(sentences), -1.0)
        correct = [*correct_statements(entry), *split_sentences(entry.answer)]
        nearest_correct = (self._embed(correct) @ whole.T).max(axis=0)
        wrong = self._embed([m.wrong for m in entry.misconceptions]) @ whole.T
        for m, misconception in enumerate(entry.misconceptions):
            wrong_words = content_words(misconception.wrong) - content_words(misconception.right) - asked
            right_words = content_words(misconception.right) - content_words(misconception.wrong) - asked
            for j, sentence in enumerate(sentences):
                said = content_words(sentence)
                wrong[m, j] += TERMS_WEIGHT * (_share(wrong_words, said) - _share(right_words, said))
        nearest = wrong.argmax(axis=0)
        corrections = self._embed([m.right for m in entry.misconceptions]) @ whole.T
        columns = np.arange(len(sentences))
        return wrong.max(axis=0) - nearest_correct, nearest, wrong[nearest, columns] - corrections[nearest, columns]

    def mistakes(self, entry, signals: Signals) -> tuple[list[Mistake], set[int]]:
        """The misconceptions and contradicted key points the answer states, and the sentences stating them."""
        said_something = [signals.new[signals.owner == j].any() and signals.claims[j]
                          for j in range(len(signals.sentences))]
        leaning = np.where(said_something, signals.leaning, -np.inf)
        # a sentence that negates what its nearest misconception asserts (or the reverse) denies it
        if entry.misconceptions:
            denies = [is_negated(s) != is_negated(entry.misconceptions[m].wrong)
                      for s, m in zip(signals.sentences, signals.nearest_misconception, strict=True)]
            leaning = np.where(denies, -np.inf, leaning)
            # ... and one that uses none of its nearest misconception's own words (beyond the question's)
            # does not assert it, however near it sits: "averaging is for variance; bias needs boosting"
            # sits near "averaging removes both bias and variance" without saying any of it
            leaning = np.where(speaks_of_misconception(entry, signals), leaning, -np.inf)
        accused = {int(j) for j in np.flatnonzero((leaning > SENTENCE_MARGIN)
                                                  & (signals.over_correction > SENTENCE_OVER_CORRECTION))}
        by_clause = leaning_clauses(entry, signals)
        # the answer-level rule names its most leaning sentence, unless that sentence is nearer the
        # misconception's correction than the misconception ("I would not use it for open-ended chat"), the
        # answer states most of the key points, or it has one sentence (its mean is that sentence's leaning)
        by_answer_alone, stated = set(), coverage(entry, signals)
        if sum(said_something) >= ANSWER_RULE_MIN_SENTENCES \
                and float(np.mean(signals.leaning[said_something])) > ANSWER_MARGIN \
                and np.isfinite(leaning.max()) and signals.over_correction[int(np.argmax(leaning))] > 0 \
                and stated < ANSWER_RULE_MAX_COVERAGE:
            by_answer_alone = {int(np.argmax(leaning))} - accused - set(by_clause)
            accused.add(int(np.argmax(leaning)))
        named = {j: int(signals.nearest_misconception[j]) for j in accused}
        for j, m in by_clause.items():
            if said_something[j] and j not in named:
                named[j] = m
                accused.add(j)
        found = [Mistake(signals.sentences[j], entry.misconceptions[m].wrong, entry.misconceptions[m].right)
                 for j, m in sorted(named.items())]
        # in an answer that states most of the entry the word-order rules accused correct sentences far more often
        # than they found a mistake (STATES_MOST): there a swap needs a larger gain, negations and reversals are not read
        states_most = stated >= STATES_MOST
        swap_margin = STATES_MOST_SWAP_MARGIN if states_most else SWAP_MARGIN
        for j in np.flatnonzero((signals.swap_gain > swap_margin) & np.array(said_something, dtype=bool)):
            if int(j) not in accused:
                term, other, right = signals.swaps[j]
                found.append(Mistake(signals.sentences[j], signals.sentences[j], right, kind="swap",
                                     swapped=(term, other)))
                accused.add(int(j))
        for j, sentence in enumerate(signals.sentences if not states_most else []):
            point = next((p for p in entry.key_points if j not in accused and contradicts(p, sentence)), None)
            point = point or (denied_point(entry, sentence) if j not in accused and said_something[j] else None)
            if point is not None:
                found.append(Mistake(sentence, sentence, point, kind="contradiction"))
                accused.add(j)
            elif j not in accused and said_something[j]:
                reversal = reversed_statement(entry, sentence)
                if reversal is not None:
                    said, meant, right = reversal
                    found.append(Mistake(sentence, sentence, right, kind="reversal",
                                         swapped=(surface_word(sentence, said), surface_word(right, meant))))
                    accused.add(j)
        return second_reading(found, accused, signals, by_answer_alone)

    @staticmethod
    def score(points: list[PointResult], counts: dict) -> float:
        n = counts["sentences"]
        if not n or not points:
            return 0.0
        coverage = floored_mean([p.credit for p in points])
        scaled = float(np.clip((coverage - SCORE_LOW) / (SCORE_HIGH - SCORE_LOW), 0.0, 1.0))
        penalty = (OFF_TOPIC_WEIGHT * counts["off_topic"] + WRONG_WEIGHT * counts["mistaken"]
                   + ELSEWHERE_WEIGHT * counts["elsewhere"]) / n
        score = 10.0 * scaled ** SCORE_GAMMA * max(0.0, 1.0 - penalty)
        if counts["fragments"] == n:
            score = min(score, STUFFED_CAP)
        return round(score, 1)

    def judge(self, entry, answer: str, points: list[PointResult]) -> bool:
        """Ask a capable model which key points the answer states, each with the words of the answer that
        state it. A point counts as judged covered only when that quote really is in the answer; the
        verdict is blended with the code's credit."""
        from coach.llm import BackendUnavailable

        numbered = "\n".join(f"{n}. {p.point}" for n, p in enumerate(points, start=1))
        message = prompt("grade_judge").format(question=entry.question, key_points=numbered, answer=answer)
        try:
            reply = self.backend.generate([{"role": "user", "content": message}], max_tokens=200)
        except BackendUnavailable:
            return False
        quotes = judge_quotes(reply, answer)
        if quotes is None:
            return False
        for n, p in enumerate(points, start=1):
            p.judged = n in quotes
            p.credit = 0.5 * p.credit + 0.5 * float(p.judged)
            if p.judged:
                p.evidence = quotes[n]
        return True

    # --- feedback -------------------------------------------------------------------------------
    @staticmethod
    def feedback(score: float, points: list[PointResult], counts: dict, mistakes: list[Mistake],
                 cites: list[dict]) -> str:
        covered = sum(p.covered for p in points)
        if not counts["sentences"]:
            return "No answer to grade: say in a few sentences what you know."
        parts = [f"{score:.1f}/10: you covered {covered} of {len(points)} key points."]
        if counts["restating"] == counts["sentences"]:
            parts.append("The answer only restates the question: say what you know about it.")
        elif counts["fragments"] == counts["sentences"]:
            parts.append("Answer in full sentences: bare terms and fragments do not show you understand them.")
        source = " [1]" if cites else ""
        for mistake in mistakes:
            named = f'is the misconception "{mistake.wrong.rstrip(".")}"'
            if mistake.kind == "contradiction":
                named = "contradicts the model answer"
            elif mistake.kind == "swap":
                named = 'says of "{}" what holds for "{}"'.format(*mistake.swapped)
            elif mistake.kind == "reversal":
                named = 'says "{}" where the model answer says "{}"'.format(*mistake.swapped)
            elif mistake.kind == "unsupported":
                named = "is not what the model answer says"
            parts.append(f'Mistake: "{_short(mistake.sentence)}" {named}. Correct: {mistake.right.rstrip(".")}{source}.')
        if counts["off_topic"]:
            parts.append("Part of the answer is about something else.")
        if counts["elsewhere"] >= ELSEWHERE_FEEDBACK_SHARE * counts["sentences"]:
            parts.append("Much of the answer answers a neighbouring question rather than this one.")
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


def second_reading(found: list[Mistake], accused: set[int], signals: Signals,
                   by_answer_alone: set[int] = frozenset()) -> tuple[list[Mistake], set[int]]:
    """The mistakes and accused sentences left once the mistake model has read each misconception accusation:
    those whose (misconception, sentence) logit is not over MISTAKE_MIN (ANSWER_RULE_MISTAKE_MIN for a sentence
    that only the answer-level rule accused) are dropped (coach.mistakes). Without the model, or with MISTAKE_MIN
    at -inf, everything stands."""
    said = [m for m in found if m.kind == "misconception"]
    model = mistake_model() if said and np.isfinite(MISTAKE_MIN) else None
    if model is None:
        return found, accused
    logits = model.logits([(m.wrong, m.sentence) for m in said])
    least = [ANSWER_RULE_MISTAKE_MIN if signals.sentences.index(m.sentence) in by_answer_alone else MISTAKE_MIN
             for m in said]
    rejected = {id(m): m for m, logit, bar in zip(said, logits, least, strict=True) if logit <= bar}
    for mistake in rejected.values():
        accused.discard(signals.sentences.index(mistake.sentence))
    return [m for m in found if id(m) not in rejected], accused


@dataclass(frozen=True)
class StatesNothing:
    """stating_nothing's four constants: the most the answer may earn on average (`credit`) and on any key point
    (`most`), the probability under which a claim states no key point (`p`), and the logit over which the mistake
    model reads it as near a misconception (`logit`). The credit model's calibration file may carry its own."""
    p: float = STATES_NOTHING_P
    credit: float = STATES_NOTHING_CREDIT
    most: float = STATES_NOTHING_MAX
    logit: float = STATES_NOTHING_LOGIT

    def reads(self, credits: list[float]) -> bool:
        """Does an answer earning these key-point credits state little enough to be read claim by claim?"""
        return bool(credits) and np.mean(credits) < self.credit and max(credits) < self.most

    def first_claim(self, highest: np.ndarray, logit_of) -> int | None:
        """Among claims whose highest probability of stating a key point is `highest` (candidates,), the first,
        least likely to state one first, under `p` whose highest misconception logit (`logit_of(k)`) is over `logit`."""
        for k in np.argsort(highest, kind="stable"):
            if highest[k] >= self.p:
                return None
            if logit_of(int(k)) > self.logit:
                return int(k)
        return None


def states_nothing() -> StatesNothing:
    """The constants chosen for the credit model present (coach.credit.calibration), else the module's."""
    chosen = calibration()
    return StatesNothing(**chosen) if chosen else StatesNothing()


def nothing_candidates(signals: Signals, accused: set[int]) -> list[int]:
    """The sentences stating_nothing may name: on-topic claims with new words, not accused already and not about
    another entry."""
    elsewhere = about_other_entries(signals)
    return [j for j in range(len(signals.sentences))
            if j not in accused and j not in elsewhere and signals.claims[j]
            and signals.new[signals.owner == j].any() and signals.relevance[j] >= OFF_TOPIC_COSINE]


def nothing_readings(entry, signals: Signals, accused: set[int]):
    """What stating_nothing reads, whatever its constants: the candidate sentences (nothing_candidates), each one's
    highest probability of stating a key point (candidates,), and a function giving candidate k's misconception
    logits (misconceptions,), each read once, on demand. None without the two models or the entry's misconceptions."""
    model = mistake_model()
    if not entry.misconceptions or model is None:
        return None
    candidates = nothing_candidates(signals, accused)
    probabilities = stated_by_each(entry.key_points, [signals.sentences[j] for j in candidates])  # (points, candidates)
    if probabilities is None:
        return None

    @cache
    def logits(k: int) -> np.ndarray:  # (misconceptions,)
        return model.logits([(m.wrong, signals.sentences[candidates[k]]) for m in entry.misconceptions])

    return candidates, probabilities.max(axis=0), logits


def stating_nothing(entry, signals: Signals, accused: set[int], results: list[PointResult],
                    bars: StatesNothing) -> list[Mistake]:
    """The claim of an answer that `bars` reads (it earns little) that the credit model reads as stating no key
    point and the mistake model as near a misconception, named as a mistake: the claim least likely to state a
    point among nothing_candidates. Nothing without the two models or the entry's misconceptions."""
    read = nothing_readings(entry, signals, accused) if bars.reads([r.credit for r in results]) else None
    if read is None:
        return []
    candidates, highest, logits = read
    k = bars.first_claim(highest, lambda k: logits(k).max())
    return [] if k is None else [named_or_unsupported(entry, signals, candidates[k], logits(k))]


def named_or_unsupported(entry, signals: Signals, j: int, logits: np.ndarray) -> Mistake:
    """Sentence j as the misconception with the highest logit when that is over MISTAKE_MIN, else as a statement the
    model answer does not make, beside the key point it is nearest."""
    sentence = signals.sentences[j]
    if logits.max() > MISTAKE_MIN:
        misconception = entry.misconceptions[int(np.argmax(logits))]
        return Mistake(sentence, misconception.wrong, misconception.right)
    point = int(np.argmax(signals.cosine[:, signals.owner == j].max(axis=1)))
    return Mistake(sentence, sentence, entry.key_points[point], kind="unsupported")


def speaks_of_misconception(entry, signals: Signals) -> np.ndarray:
    """Per sentence: does it use at least MIN_MISCONCEPTION_WORDS of its nearest misconception's content
    words beyond the question's own, and one of the words that set it apart from its correction (when it
    has such words)? Nearness in MiniLM's space alone is shared vocabulary, not a claim; and a sentence that
    shares only what the wrong statement and its correction both say ("symmetry") asserts neither."""
    asked = content_words(entry.question)
    own = [content_words(m.wrong) - asked for m in entry.misconceptions]
    distinct = [content_words(m.wrong) - content_words(m.right) - asked for m in entry.misconceptions]
    said = [content_words(sentence) for sentence in signals.sentences]
    return np.array([(len(own[m] & words) >= MIN_MISCONCEPTION_WORDS if own[m] else True)
                     and (bool(distinct[m] & words) if distinct[m] else True)
                     for words, m in zip(said, signals.nearest_misconception, strict=True)])


def leaning_clauses(entry, signals: Signals) -> dict[int, int]:
    """{sentence: misconception} for the sentences with a clause of at least CLAUSE_MIN_WORDS content words
    (beyond the question's) that leans towards a misconception by CLAUSE_MARGIN, is nearer it than its
    correction, asserts rather than denies it and uses its words: "..., which approximates attention with a
    low-rank projection" leans towards "FlashAttention saves memory by approximating attention" more than its
    whole sentence, which goes on about the weights."""
    if not entry.misconceptions or signals.unit_leaning is None or not np.isfinite(CLAUSE_MARGIN):
        return {}
    leaning, nearest, over = signals.unit_leaning
    first = {int(np.flatnonzero(signals.owner == j)[0]) for j in range(len(signals.sentences))}
    found: dict[int, int] = {}
    for u in np.argsort(-leaning, kind="stable"):
        u, j, m = int(u), int(signals.owner[u]), int(nearest[u])
        if leaning[u] <= CLAUSE_MARGIN:
            break
        if u in first or j in found or signals.unit_words[u] < CLAUSE_MIN_WORDS or over[u] <= 0:
            continue
        clause = signals.units[u]
        if is_negated(clause) == is_negated(entry.misconceptions[m].wrong) and speaks_of(entry, clause, m):
            found[j] = m
    return found


def speaks_of(entry, text: str, m: int) -> bool:
    """Does `text` use misconception `m`'s own words as speaks_of_misconception asks?"""
    asked = content_words(entry.question)
    wrong, right = content_words(entry.misconceptions[m].wrong), content_words(entry.misconceptions[m].right)
    own, distinct, words = wrong - asked, wrong - right - asked, content_words(text)
    return (len(own & words) >= MIN_MISCONCEPTION_WORDS if own else True) and (bool(distinct & words) if distinct else True)


def coverage(entry, signals: Signals) -> float:
    """The mean key-point credit (under ANSWER_RULE_FLOOR counting 0) the answer's claims earn before any sentence
    is set aside as a mistake: how much of the entry the answer states."""
    usable = signals.new & np.array([signals.claims[j] for j in signals.owner])
    return floored_mean([point_credit(point_features(signals, i, usable)) for i in range(len(entry.key_points))],
                        floor=ANSWER_RULE_FLOOR)


def about_other_entries(signals: Signals) -> set[int]:
    """The sentences nearer another entry's key point than any of this entry's by more than ELSEWHERE_MARGIN (an
    off-topic sentence is counted as such, not twice)."""
    return {j for j, gain in enumerate(signals.elsewhere)
            if gain > ELSEWHERE_MARGIN and signals.relevance[j] >= OFF_TOPIC_COSINE}


def floored_mean(credits: list[float], floor: float | None = None) -> float:
    """The mean key-point credit, a credit under SCORE_FLOOR counting 0 (the small credit every on-topic
    answer leaks to every point adds up otherwise); 0 without key points."""
    floor = SCORE_FLOOR if floor is None else floor
    return float(np.mean([c if c >= floor else 0.0 for c in credits])) if credits else 0.0


def point_features(signals: Signals, i: int, usable: np.ndarray) -> tuple[float, float, float]:
    """(cosine, terms, specific cosine) of key point i: the best of the usable units for each."""
    if not usable.any():
        return 0.0, 0.0, 0.0
    return (float(signals.cosine[i, usable].max()), float(signals.terms[i, usable].max()),
            float(signals.specific[i, usable].max()))


def point_credit(features: tuple[float, float, float]) -> float:
    if not any(features):
        return 0.0
    z = CREDIT_BIAS + float(np.dot(CREDIT_WEIGHTS, features))
    return float(1.0 / (1.0 + np.exp(-z)))


def judge_quotes(reply: str, answer: str) -> dict[int, str] | None:
    """{key point number: quote} from a judge's reply, keeping only quotes found in the answer; None
    when the reply is not in the asked format at all."""
    if re.search(r"covered\s*:\s*none", reply, re.I):
        return {}
    found = re.findall(r'^\s*(\d+)\s*[:.)-]\s*["“]?(.+?)["”]?\s*$', reply, re.M)
    if not found:
        return None
    flat = " ".join(answer.lower().split())
    return {int(n): quote.strip() for n, quote in found
            if len(quote.strip()) >= JUDGE_MIN_QUOTE and " ".join(quote.lower().split()) in flat}


def _share(words: set[str], said: set[str]) -> float:
    return len(words & said) / len(words) if words else 0.0


def _short(sentence: str, limit: int = 120) -> str:
    return sentence if len(sentence) <= limit else sentence[:limit].rsplit(" ", 1)[0] + "…"


def _ms(started: float) -> dict:
    return {"total_ms": round((time.perf_counter() - started) * 1000, 1)}
