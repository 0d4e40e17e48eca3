"""Sentences that contradict what the bank says is right, read from their words.

MiniLM puts "adapters add latency" next to "adapters add no latency", and it cannot read roles ("the target model
drafts" sits at 0.97 from "the draft model drafts"). So the grader (coach.grader, on a learner's answer) and the
premise check (coach.premise, on a question's presupposition) read these by rule, against the entry's correct
statements (its key points, their phrasings and the corrections of its misconceptions):

- negated: a clause restates a key point's clause but negates what it says, or puts an antonym in place of one of
  its words ("raises variance" for "lowers variance"): `contradicts`;
- put aside: "A rather than B", with B a key point's words and A none of the bank's: `denied_point`;
- roles exchanged: a clause matches the correct statements better, in word order, once two roles the question
  contrasts are swapped ("precision is TP/(TP+FN)"): `role_swaps`;
- reversed: a clause reuses a correct statement's words with one word of opposite sense ("raise the learning rate"
  against "lowering the learning rate is the first remedy"): `reversed_statement`.

Without an entailment model these catch plain cases only. Each constant says which data chose it; the grader's
passes that chose them are in evals/README.md.
"""
from __future__ import annotations

import re

import numpy as np

from coach.text import FUNCTION_WORDS, WORD, clauses, content_words, recall, split_sentences, stemmer, stopwords

NEGATION = {"not", "no", "never", "cannot", "can't", "doesn't", "don't", "isn't", "aren't", "won't",
            "without", "neither", "nor", "wouldn't", "shouldn't", "couldn't", "didn't", "wasn't", "weren't"}
# Read past after a negation to the word it denies: "without any fine-tuning" denies fine-tuning (negated_words)
QUANTIFIERS = {"any"}
# Antonym pairs: "lowers variance" against a key point that says "raises variance" contradicts it.
ANTONYMS = [("increase", "decrease"), ("increases", "decreases"), ("raise", "lower"), ("raises", "lowers"),
            ("more", "less"), ("more", "fewer"), ("larger", "smaller"), ("higher", "lower"),
            ("faster", "slower"), ("before", "after"), ("maximize", "minimize"), ("maximizes", "minimizes"),
            ("overfitting", "underfitting"), ("shrinks", "grows"), ("always", "never"), ("upper", "lower"),
            ("minimum", "maximum"), ("first", "last"), ("positive", "negative"), ("forward", "backward"),
            ("adds", "removes"), ("low", "high"), ("reduces", "increases"), ("sparse", "dense"),
            ("small", "large"), ("slow", "fast"), ("encoder", "decoder"), ("input", "output"),
            ("separately", "jointly"), ("separately", "together"), ("independently", "jointly")]
ANTONYM_OF: dict[str, set[str]] = {}
for _a, _b in ANTONYMS:
    ANTONYM_OF.setdefault(_a, set()).add(_b)
    ANTONYM_OF.setdefault(_b, set()).add(_a)
CONTRADICTION_RECALL = 0.75  # share of a key point's words a sentence must reuse to be read as negating it


def correct_statements(entry) -> list[str]:
    """What the bank says is right about the entry: key points, their phrasings, the misconceptions' corrections."""
    return [*entry.key_points, *(a for alts in entry.key_point_alternatives for a in alts),
            *(m.right for m in entry.misconceptions)]


def is_negated(text: str) -> bool:
    """Does the text hold a negation ("not", "never", "without", ...)?"""
    return bool(set(re.findall(r"[a-z']+", text.lower().replace("’", "'"))) & NEGATION)


def contradicts(point: str, sentence: str) -> bool:
    """A clause of the sentence restates a clause of the key point (most of its words) but negates it, or
    puts an antonym in place of one of its words ("raises variance" for "lowers variance"). Clause by
    clause, so "no train/test mismatch" after a colon does not negate the claim before it. Without an
    entailment model this catches only plain cases; swapped roles ("BERT generates, GPT fills in") pass."""
    return any(_negates(p, s) for p in clauses(point) for s in clauses(sentence))


def _negates(point: str, sentence: str) -> bool:
    # a clause of two content words ("so it adds no latency") has lost its subject: "adapters add latency"
    # reuses all of it while speaking of something else
    if len(stem_sequence(point)) < SWAP_MIN_WORDS or recall(point, sentence) < CONTRADICTION_RECALL:
        return False
    p_words, s_words = set(re.findall(r"[a-z']+", point.lower())), set(re.findall(r"[a-z']+", sentence.lower()))
    if bool(p_words & NEGATION) != bool(s_words & NEGATION):
        negated, other = (point, sentence) if p_words & NEGATION else (sentence, point)
        return bool(negated_words(negated) & set(polar_stems(other)))
    return any(o in s_words and o not in p_words and w not in s_words
               for w in p_words for o in ANTONYM_OF.get(w, ()))


def negated_words(text: str) -> set[str]:
    """The stems of the words the text's negations deny: the first content word after each ("sees no difference"
    denies difference, "without any fine-tuning" fine-tuning). A negation denies a key point only when what it
    denies is the point's own (or the point denies the sentence's): "the GPUs aren't sitting idle" does not deny
    "micro-batches reduce idle bubbles", nor "a human sees no difference" "a perturbation changes the prediction"."""
    words = re.findall(r"[a-z][a-z0-9']*", text.lower().replace("’", "'"))
    denied = (next((w for w in words[i + 1:] if w not in stopwords() and w not in NEGATION | QUANTIFIERS), None)
              for i, word in enumerate(words) if word in NEGATION)
    return set(stemmer().stemWords([w for w in denied if w]))


# --- put aside by contrast ------------------------------------------------------------------------------------
# "A rather than B", "A instead of B": B is put aside, A asserted; only the next CONTRAST_WORDS words
# after the marker are what is put aside ("rather than concatenated, and ..." puts aside one word).
CONTRAST = re.compile(r"\b(?:rather than|instead of)\s+", re.I)
CONTRAST_WORDS = 3


def denied_point(entry, sentence: str) -> str | None:
    """The key point a sentence denies by contrast: "the heads are averaged rather than concatenated" puts
    aside ("rather than", "instead of") what a key point asserts (all of the words put aside are among the
    point's own, beyond the question's) and asserts in its place words no correct statement of the entry
    uses. When the words in its place are the bank's ("each head works in a subspace rather than at full
    width") the contrast is the correct one and nothing is denied."""
    asked = content_words(entry.question)
    statements = correct_statements(entry)
    known = set().union(*(content_words(t) for t in statements)) if statements else set()
    for clause in clauses(sentence):
        found = CONTRAST.search(clause)
        if not found:
            continue
        put_aside = content_words(" ".join(WORD.findall(clause[found.end():])[:CONTRAST_WORDS])) - asked
        instead = content_words(clause[:found.start()]) - asked - put_aside
        if not put_aside or not instead or instead & known:
            continue
        return next((p for p in entry.key_points if put_aside <= content_words(p)), None)
    return None


# --- roles exchanged -----------------------------------------------------------------------------------------
def stem_sequence(text: str) -> list[str]:
    """The stemmed content words of `text`, in their order, compounds split ("memory-bound" -> memory, bound):
    what the swap test compares."""
    words = [w for w in re.findall(r"[a-z][a-z0-9']*", text.lower())
             if len(w) > 1 and w not in stopwords() and w not in FUNCTION_WORDS]
    return list(stemmer().stemWords(words))


def role_swaps(entry, units: list[str], owner: np.ndarray, n_sentences: int) -> tuple[np.ndarray, list]:
    """Per sentence: the most one of its clauses gains in word-order match with the entry's correct
    statements when two roles are exchanged (two terms the entry contrasts, or an antonym pair), and that
    swap. A clause is only tested on a pair when it names one side of it ("skip-gram predicts the centre
    word"), so a clause comparing both ("precision and recall trade off") is never read as swapped; the
    swapped clause is compared with the statements about the other side only, the clause itself with every
    statement that does not name the other side."""
    references, pairs = _swap_references(entry)
    gain, swaps = np.zeros(n_sentences), [None] * n_sentences
    # the clauses of a sentence that has several, else the sentence (each sentence's first unit is itself)
    finest = [n for n in range(len(units)) if not (_first(owner, n) and (owner == owner[n]).sum() > 1)]
    for n in finest:
        words, j = stem_sequence(units[n]), owner[n]
        if len(words) < SWAP_MIN_WORDS:
            continue
        present = set(words)
        for (a, b), surface in pairs.items():
            if (a in present) == (b in present):
                continue
            removed, brought = (a, b) if a in present else (b, a)
            swapped = [brought if w == removed else w for w in words]
            base = _order_match(words, [r for r in references if brought not in r[0]])[0]
            match, reference = _order_match(swapped, [r for r in references if brought in r[0] and removed not in r[0]])
            if match - base > gain[j]:
                gain[j], swaps[j] = match - base, (*(surface if a in present else surface[::-1]), reference)
    return gain, swaps


def _first(owner: np.ndarray, n: int) -> bool:
    return n == 0 or owner[n - 1] != owner[n]


# Clauses and statements shorter than this (in content words) are not compared in the swap test: a two-word
# heading ("Prefill vs decode") or clause ("lower is better") matches anything with the same two words.
SWAP_MIN_WORDS = 3
LEADING_WORDS = 2           # a role is what a key point is about: one of its first two content words
_SWAP_CACHE: dict = {}


def _swap_references(entry) -> tuple[list[tuple[list[str], str]], dict]:
    """The entry's correct statements (key points, their phrasings, the corrections of its misconceptions,
    the model answer's sentences, each whole and clause by clause) as stem sequences, and the role pairs to
    try: two things the question sets side by side, when key points are about each (among their first
    words) and tell them apart (each in a statement without the other: "precision", "recall"), and the
    antonym pairs."""
    if entry.id not in _SWAP_CACHE:
        statements = correct_statements(entry)
        units = {u for s in [*statements, *split_sentences(entry.answer)] for u in [s, *clauses(s)]}
        references = [(stem_sequence(u), u) for u in sorted(units) if len(stem_sequence(u)) > SWAP_MIN_WORDS]
        points = [set(stem_sequence(s)) for s in statements]
        leading = {w for s in statements for w in stem_sequence(s)[:LEADING_WORDS]}
        pairs = {(min(a, b), max(a, b)): (sa, sb) if a < b else (sb, sa)
                 for (a, sa), (b, sb) in coordinated(entry.question)
                 if {a, b} <= leading and any(a in p and b not in p for p in points)
                 and any(b in p and a not in p for p in points)}
        for a, b in ANTONYMS:
            sa, sb = stemmer().stemWord(a), stemmer().stemWord(b)
            if sa != sb:
                pairs.setdefault((min(sa, sb), max(sa, sb)), (a, b) if sa < sb else (b, a))
        _SWAP_CACHE[entry.id] = references, pairs
    return _SWAP_CACHE[entry.id]


# What joins the things a question sets side by side: "precision, recall and F1", "skip-gram and CBOW",
# "feature extraction from fine-tuning", "variance but not bias", "bi-encoders vs cross-encoders".
COORDINATOR = re.compile(r",\s*(?:and\s+|or\s+)?|\s+(?:and|or|vs\.?|versus|from|but not|rather than|instead of)\s+")


def coordinated(question: str) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """Pairs of (stem, word) that the question coordinates: a stem of the (up to) two words before a
    coordinator with a stem of the two words after it, less what both share ("bi-encoders and
    cross-encoders" gives bi and cross, not encoder)."""
    pairs = []
    for found in COORDINATOR.finditer(question.lower()):
        before = re.findall(r"[a-z][a-z0-9'-]*", question.lower()[:found.start()])[-2:]
        after = re.findall(r"[a-z][a-z0-9'-]*", question.lower()[found.end():])[:2]
        left = {(stem, word) for word in before for stem in stem_sequence(word)}
        right = {(stem, word) for word in after for stem in stem_sequence(word)}
        shared = {stem for stem, _ in left} & {stem for stem, _ in right}
        pairs += [(x, y) for x in left for y in right if x[0] not in shared and y[0] not in shared]
    return pairs


def _order_match(words: list[str], references: list[tuple[list[str], str]]) -> tuple[float, str]:
    """The best Dice coefficient of the longest common subsequence with a reference, and that reference."""
    scored = [(2 * _lcs(words, r) / (len(words) + len(r)), text) for r, text in references]
    return max(scored, default=(0.0, ""))


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, start=1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


# --- reversed statements (2026-12-03, third pass) ---------------------------------------------------------
# A wrong answer in the topic's words often says a correct statement the wrong way round: "raise the learning
# rate" for "lowering the learning rate is the first remedy", "fine-tuning is the best way to add new facts" for
# "a poor way", "BF16 keeps more mantissa" for "fewer mantissa bits". MiniLM puts such a clause next to the
# statement it reverses, and terms credit it. A clause that reuses enough of a correct statement's words and
# puts a word of opposite sense (POLAR_PAIRS) where the statement has the other, next to the same words, says
# that statement reversed; it earns nothing and the feedback quotes both words and the statement.
# The antonym pairs that name roles rather than senses ("forward" and "backward" passes both exist, inputs and
# outputs, first and last) are the swap test's business: as senses they accused correct answers.
ROLE_PAIRS = {("forward", "backward"), ("encoder", "decoder"), ("input", "output"), ("adds", "removes"),
              ("first", "last"), ("separately", "jointly"), ("separately", "together"), ("independently", "jointly")}
POLAR_PAIRS = [*(pair for pair in ANTONYMS if pair not in ROLE_PAIRS),
               ("above", "below"), ("exact", "approximate"), ("exactly", "approximately"), ("best", "worst"),
               ("good", "poor"), ("best", "poor"), ("strong", "weak"), ("stronger", "weaker"), ("short", "long"),
               ("shorter", "longer"), ("early", "late"), ("earlier", "later"), ("many", "few"), ("most", "least"),
               ("highest", "lowest"), ("largest", "smallest"), ("bigger", "smaller"),
               ("overestimates", "underestimates"), ("easy", "hard"), ("easier", "harder"), ("cheap", "expensive"),
               ("cheaper", "costlier"), ("wide", "narrow"), ("wider", "narrower"), ("deep", "shallow"),
               ("deeper", "shallower"), ("local", "global"), ("parallel", "sequential"),
               ("deterministic", "stochastic"), ("linear", "exponential"), ("linearly", "exponentially"),
               ("quadratic", "linear"), ("quadratically", "linearly"), ("helps", "hurts"), ("improves", "hurts"),
               ("improves", "degrades"), ("vanishing", "exploding"), ("rare", "frequent"), ("inside", "outside"),
               ("online", "offline")]
POLAR_OF: dict[str, set[str]] = {}
# A clause says a statement reversed when it reuses at least REVERSAL_MIN_SHARED of the statement's content words
# beyond the question's and the reversed word, at least REVERSAL_RECALL of them, and one of the REVERSAL_WINDOW
# words either side of the reversed word ("larger epsilon" / "smaller epsilon"). REVERSAL_RECALL is chosen by
# `python -m evals.grader --fit-rules` on the blind sets (wrong answers named less correct answers
# accused, ties to the larger Spearman, then the strictest), cross-validated by question: evals/README.md.
REVERSAL_RECALL, REVERSAL_MIN_SHARED, REVERSAL_WINDOW = 0.3, 2, 2  # fourth pass, five sets: 0.4 -> 0.3
_POLAR_CACHE: dict = {}


def polar_stems(text: str) -> list[str]:
    """The stemmed words of `text` in order, compounds split ("fixed-size" -> fix, size), stop words out."""
    words = [w for w in re.findall(r"[a-z][a-z0-9']*", text.lower().replace("’", "'")) if w not in stopwords()]
    return list(stemmer().stemWords(words))


def polar_opposites(stem: str) -> set[str]:
    """The stems of opposite sense to `stem` (POLAR_PAIRS, stemmed)."""
    if not POLAR_OF:
        for a, b in POLAR_PAIRS:
            sa, sb = stemmer().stemWord(a), stemmer().stemWord(b)
            if sa != sb:
                POLAR_OF.setdefault(sa, set()).add(sb)
                POLAR_OF.setdefault(sb, set()).add(sa)
    return POLAR_OF.get(stem, set())


def reversed_statement(entry, sentence: str) -> tuple[str, str, str] | None:
    """(the word said, the word the bank uses, the correct statement) when a clause of the sentence says a
    correct statement of the entry with one word reversed ("a larger epsilon means stronger privacy" against
    "a smaller epsilon means stronger privacy"). Not reversed: a sentence that uses both words (a contrast:
    "large gradients ..., small ones ..."), a clause negated where the statement is not ("isn't supported" and
    "unsupported" agree; plain negation is `contradicts`' business), and a clause some correct statement
    says with the clause's own word as well as the reversed one says it with the other."""
    asked = set(polar_stems(entry.question))
    statements = _polar_statements(entry)
    whole = set(polar_stems(sentence))
    for clause in clauses(sentence):
        order = polar_stems(clause)
        said, negated = set(order), is_negated(clause)
        for word in (w for w in dict.fromkeys(order) if w not in asked):  # in the clause's order: reproducible
            found = _best_reversed(word, order, said, negated, whole, asked, statements)
            if found is not None and not _said_so(word, found[0], said, asked, statements):
                return word, found[1], found[2]
    return None


def _best_reversed(word, order, said, negated, whole, asked, statements):
    """(recall, the statement's word, the statement) of the correct statement the clause best reverses with
    `word`, or None."""
    opposite = polar_opposites(word) - whole
    if not opposite:
        return None
    best = None
    for text, stems, statement_order, statement_negated in statements:
        turned = stems & opposite
        if word in stems or not turned or statement_negated != negated:
            continue
        core = stems - asked - turned
        shared = core & said
        recall = len(shared) / len(core) if core else 0.0
        beside = _beside(order, {word}) & _beside(statement_order, turned)
        if len(shared) >= REVERSAL_MIN_SHARED and recall >= REVERSAL_RECALL and beside - _polar(said | stems) \
                and (best is None or recall > best[0]):
            best = (recall, min(turned), text)
    return best


def _said_so(word, recall, said, asked, statements) -> bool:
    """Does a correct statement that uses `word` itself match the clause at least as well?"""
    return any(word in stems and len((stems - asked - {word}) & said) >= recall * len(stems - asked - {word})
               for _, stems, _, _ in statements)


def _beside(order: list[str], words: set[str]) -> set[str]:
    """The stems within REVERSAL_WINDOW places of any of `words` in the stem sequence `order`."""
    return {order[k] for n, w in enumerate(order) if w in words
            for k in range(max(0, n - REVERSAL_WINDOW), min(len(order), n + REVERSAL_WINDOW + 1)) if k != n}


def _polar(stems: set[str]) -> set[str]:
    return {s for s in stems if polar_opposites(s)}


def _polar_statements(entry) -> list[tuple[str, set[str], list[str], bool]]:
    """The entry's correct statements with their stems (as a set and in order) and whether each is negated."""
    if entry.id not in _POLAR_CACHE:
        _POLAR_CACHE[entry.id] = [(s, set(polar_stems(s)), polar_stems(s), is_negated(s))
                                  for s in correct_statements(entry)]
    return _POLAR_CACHE[entry.id]


def surface_word(text: str, stem: str) -> str:
    """The word of `text` whose stem is `stem` (as `polar_stems` reads it), for the feedback."""
    return next((w for w in re.findall(r"[a-z][a-z0-9']*", text.lower().replace("’", "'"))
                 if polar_stems(w) == [stem]), stem)
