"""Guards against prompt injection, in layers (OWASP LLM01), plus the input limits every entry point shares.

1. Input (`InputGuard`): the question is normalised for inspection (NFKC, invisible characters removed,
   look-alike letters mapped, spaced-out letters joined, base64/hex payloads decoded), then checked by
   rules and by similarity to attack exemplars (`attack_exemplars.txt`). Intent matters: a question
   ABOUT an attack ("how do jailbreaks work?", "what does 'ignore previous instructions' do?") passes;
   an instruction TO the assistant (change role, reveal the prompt, emit dictated text) is blocked.
   Quoted text inside a question is treated as a mention, not as an instruction.
2. Context (`Spotlight`, `quarantine`, `datamark`): passages go to the model between per-request random
   markers; instruction-like sentences are taken out of them, and flagged passages are datamarked.
3. Ingest (`flag_reason`): chunks that read like instructions to an AI are flagged in their metadata.
4. Output (`output_violation`): a per-request canary in the system prompt; an answer that leaks it, leaks
   long spans of the prompt files, or emits a string an attacker dictated is replaced by a refusal.
5. Limits: question length (`validate_question`), a per-session rate limit (`RateLimiter`); upload limits
   live with the uploads (ingest/uploads.py).

Rules and exemplars stop crude and known attacks, not adaptive ones; the support check in
coach/answer.py (every sentence must be backed by a bank passage) is what keeps a hijacked model's
inventions out of the answer.
"""
from __future__ import annotations

import base64
import binascii
import re
import secrets
import threading
import time
import unicodedata
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from coach.config import get_settings
from coach.text import clean_input


class QuestionError(ValueError):
    """The question cannot be taken as asked; the message says why, politely. `guard` names the check."""

    def __init__(self, message: str, guard: str):
        super().__init__(message)
        self.guard = guard


def validate_question(text: str | None) -> str:
    """The question with whitespace collapsed, or QuestionError if it is empty or over the limit."""
    text = clean_input(text if isinstance(text, str) else None).strip()
    if not text:
        raise QuestionError("The question is empty: ask something about deep learning.", "input_empty")
    limit = get_settings().max_query_chars
    if len(text) > limit:
        raise QuestionError(f"The question is {len(text)} characters long and the limit is {limit}; "
                            "please shorten it to the question itself.", "input_length")
    return " ".join(text.split())


# --- normalisation (for inspection only: retrieval still sees the user's own words) ------------------
# Latin look-alikes from Cyrillic and Greek (a subset of Unicode's confusables.txt), applied only inside
# words that mix scripts, so a genuinely Russian or Greek word is left alone.
HOMOGLYPHS = str.maketrans("аеорсухіјѕԁһӏԛԝАВЕКМНОРСТХІЈЅԌɑοαενρτιкмтвнЅ",
                           "aeopcyxijsdhlqwABEKMHOPCTXIJSGaoaevptikmtbhS")
LEET = str.maketrans("0134579@$", "oieastgas")
SPACED = re.compile(r"(?<![^\W\d_])(?:[^\W\d_][ .\-_*·|/]){2,}[^\W\d_](?![^\W\d_])")
BASE64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
HEX = re.compile(r"(?:\\x|0x)?[0-9a-fA-F]{2}(?:[\s:,]?(?:\\x|0x)?[0-9a-fA-F]{2}){7,}")


@dataclass
class Normalized:
    text: str                                         # NFKC, invisible characters removed, homoglyphs mapped
    joined: list[str] = field(default_factory=list)   # spaced-out runs, letters joined ("ignore")
    decoded: list[str] = field(default_factory=list)  # base64 / hex payloads that decode to text

    def variants(self) -> list[str]:
        """Every reading of the input a rule should see."""
        leet = " ".join(_deleet(w) for w in self.text.split())
        return list(dict.fromkeys([self.text, leet, *self.decoded]))


def normalize(text: str) -> Normalized:
    text = unicodedata.normalize("NFKC", text or "")
    # Format characters (zero-width space and joiner, soft hyphen, bidi overrides) hide words from rules.
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cf")
    text = " ".join(_unconfuse(word) for word in text.split())
    joined = []

    def join(match: re.Match) -> str:
        letters = re.sub(r"[ .\-_*·|/]", "", match.group(0))
        joined.append(letters)
        return letters

    text = SPACED.sub(join, text)
    decoded = [d for d in (_decode(m) for m in [*BASE64.findall(text), *HEX.findall(text)]) if d]
    return Normalized(text=text, joined=joined, decoded=[normalize(d).text for d in decoded])


def _unconfuse(word: str) -> str:
    has_latin = any("a" <= ch.lower() <= "z" for ch in word)
    foreign = any(ord(ch) > 0x36F and ch.isalpha() for ch in word)
    return word.translate(HOMOGLYPHS) if has_latin and foreign else word


def _deleet(word: str) -> str:
    """'1gn0re' -> 'ignore'; '2017', 'fp16' and 'ResNet-50' are left alone (digits that touch letters
    on two sides or twice are leet, digits at the end of a name are not)."""
    touching = len(re.findall(r"(?i)(?=[a-z][0-9@$]|[0-9@$][a-z])", word))
    return word.translate(LEET) if touching >= 2 else word


def _decode(blob: str) -> str | None:
    """A base64 or hex blob decoded to readable text, else None (most long tokens are just words)."""
    raw = None
    cleaned = re.sub(r"\\x|0x|[\s:,]", "", blob)
    if re.fullmatch(r"(?:[0-9a-fA-F]{2})+", cleaned) and len(cleaned) >= 16:
        raw = bytes.fromhex(cleaned)
    elif not blob.isalpha() or any(ch.isupper() for ch in blob[1:]):
        try:
            raw = base64.b64decode(blob.replace("-", "+").replace("_", "/") + "=" * (-len(blob) % 4))
        except (binascii.Error, ValueError):
            return None
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    printable = sum(ch.isprintable() or ch.isspace() for ch in text) / len(text)
    return text if printable > 0.95 and sum(ch.isalpha() for ch in text) >= 0.6 * len(text.replace(" ", "")) else None


# --- rules ------------------------------------------------------------------------------------------
# An imperative addressed to the assistant starts a clause: at the start, after sentence punctuation,
# or after "please", "now", "and then", "you must", "I want you to" ... ("dropout acts as a regularizer"
# has a subject before the verb and is not an instruction).
CLAUSE_START = (r"(?:^|[.!?;:\n,\"“”(\[\]>]\s*|\b(?:please|now|and|then|just|kindly|first|instead|"
          r"you (?:must|should|will|shall|need to|have to|are to|can|may)|i (?:want|need|order|command) you to)\s+)"
          r"(?:please\s+|now\s+|just\s+|only\s+|simply\s+|immediately\s+)*")
QUOTE = r"(?<![\w])[\"“”'‘’«»„「」](?=\S)"  # an opening quote, not an apostrophe
OVERRIDE_NOUNS = (r"(?:instructions?|prompts?|rules?|directions?|directives?|guidelines?|constraints?|context|"
                  r"orders?|programming|restrictions?|guardrails?|polic(?:y|ies)|messages?|commands?|"
                  r"told|said|given)")
RULES: list[tuple[str, re.Pattern, str]] = [
    ("input_override", re.compile(
        CLAUSE_START + r"(?:ignore|disregard|forget|override|bypass|skip|abandon|discard|drop|cancel|overwrite)\b"
        r"[^.!?\n]{0,30}?\b(?:previous|prior|above|earlier|preceding|former|original|initial|all|any|your|"
        r"system|every|everything)\b[^.!?\n]{0,25}?\b" + OVERRIDE_NOUNS + r"\b", re.I),
     "an instruction to ignore the assistant's rules"),
    ("input_override", re.compile(
        r"\b(?:ignore[rz]?|oublie[rz]?)\s+(?:toutes?\s+)?(?:les|tes|vos)\s+(?:instructions|consignes|règles)|"
        r"\b(?:ignora|olvida|ignore|esqueça|esqueca)\s+(?:todas\s+)?(?:las|tus|as|le|tutte\s+le)\s+"
        r"(?:instrucciones|instruções|instrucoes|istruzioni|reglas|regras|regole)|"
        r"\b(?:ignorier(?:e|en)?|vergiss|vergessen)\s+(?:sie\s+)?(?:alle\s+)?(?:vorherigen\s+|bisherigen\s+|obigen\s+)?"
        r"(?:anweisungen|instruktionen|regeln)|\bnegeer\s+(?:alle\s+)?(?:vorige\s+|eerdere\s+)?(?:instructies|regels)|"
        r"(?:игнорируй|игнорируйте|проигнорируй|забудь|забудьте)\s+(?:все\s+)?(?:предыдущие\s+|прежние\s+)?"
        r"(?:инструкции|указания|правила)|(?:忽略|无视|忽视|忘记|忘掉)[^。？！]{0,6}(?:指令|指示|说明|规则|提示)|"
        r"(?:指示|命令)を(?:無視|忘れ)", re.I),
     "an instruction to ignore the assistant's rules"),
    ("input_role", re.compile(
        CLAUSE_START + r"(?:(?:you are|you're|u r)\s+(?:now|no longer|from now on)\b|"
        r"from now on,?\s+(?:you|your)\b|(?:act|behave|speak|talk)\s+(?:as|like)\s+(?:if you were|though you were|my|"
        r"(?:an?|the)\s+(?:\w+\s+){0,2}(?:ai|assistant|chatbot|bot|model|character|persona|pirate|hacker|person|"
        r"human|admin|administrator|developer|grandmother|grandma|villain|criminal))\b|pretend\b[^.!?\n]{0,15}\b(?:to be|you are|"
        r"you're|that you)|role-?play\s+as|imagine you are\s+(?:an?\s+)?(?:unrestricted|uncensored|evil|"
        r"unfiltered|jailbroken|rogue)|(?:enable|enter|activate|switch (?:to|into)|turn on|go into|unlock)\s+"
        r"(?:the\s+)?(?:developer|dan|god|jailbreak|debug|admin|sudo|unrestricted|unfiltered|evil|root)\s+mode|"
        r"stay in character)|\byou are dan\b|\bdo anything now\b|\byour new (?:role|task|instructions?|persona|job|"
        r"name|rules?) (?:is|are)\b|\b(?:new|updated|override|real) (?:system )?(?:instructions?|rules?|persona|"
        r"role|prompt)\s*:", re.I),
     "an instruction to change the assistant's role"),
    ("input_prompt_leak", re.compile(
        r"\b(?:reveal|show|print|display|output|repeat|recite|dump|leak|expose|share|give|tell|write|spell|paste|"
        r"copy|translate|summari[sz]e|list|quote|what(?:'s| is| are| were| was))\b[^.?!\n]{0,25}\byour\b[^.?!\n]{0,25}"
        r"\b(?:system prompt|prompt|instructions|directives|canary|system message|initial message|hidden (?:rules|"
        r"instructions))|"
        + CLAUSE_START + r"(?:repeat|print|output|show|reveal|display|recite|copy|echo|dump)\b[^.?!\n]{0,30}\b(?:everything|"
        r"all|the text|the words|text|words|what)\b[^.?!\n]{0,20}\b(?:above|before|preceding|prior|so far|earlier)|"
        + CLAUSE_START + r"(?:reveal|show|print|display|output|repeat|dump|leak|give me|tell me|write out|paste|expose)\b"
        r"[^.?!\n]{0,30}\b(?:system|initial|hidden|original|developer|secret|internal)\s+(?:prompt|message|"
        r"instructions|rules|configuration)|"
        r"(?:affiche|montre|révèle|revele|répète)[^.?!\n]{0,15}(?:prompt|invite|instructions) (?:système|systeme)|"
        r"(?:muestra|revela|imprime)[^.?!\n]{0,15}(?:prompt|mensaje|instrucciones) del sistema|"
        r"(?:zeige|gib|verrate|nenne)[^.?!\n]{0,20}(?:system-?prompt|systemanweisungen)|"
        r"(?:покажи|выведи|раскрой|напиши)[^.?!\n]{0,20}(?:системн\w+ (?:промпт|промт|инструкци\w+)|свои инструкции)|"
        r"(?:显示|输出|告诉我|打印|泄露)[^。？！]{0,6}(?:系统提示|提示词|系统指令)", re.I),
     "a request to reveal the assistant's prompt"),
    ("input_dictated", re.compile(
        CLAUSE_START + r"(?:say|print|output|write|type|respond|reply|answer|return|echo|repeat|emit|begin|start|end|"
        r"finish|conclude|sign off)\b[^.?!\n\"“”«»]{0,40}?:?\s*" + QUOTE + r"|"
        + CLAUSE_START + r"(?:repeat after me|say after me)\b|"
        r"\byour (?:answer|response|reply|output|first line|last line)s? (?:must|should|will|has to|shall)\s+"
        r"(?:be|start|begin|end|contain|include|read|say)\b|"
        r"\b(?:start|begin|end|finish|prefix|suffix)\s+(?:your|the|each|every)\s+(?:answer|response|reply|output)s?\s+"
        r"with\b|" + CLAUSE_START + r"(?:only|just)\s+(?:say|reply|respond|answer|output|print|write)\b|"
        r"(?:^|[.!?]\s*)(?:dis|réponds|répondez|écris|écrivez|di|responde|escribe|imprime|sag|sage|antworte|schreibe|"
        r"скажи|напиши|ответь|выведи)\b[^.?!\n\"“”«»„]{0,25}" + QUOTE + r"|(?:说|输出|回答|回复|写)[：:]\s*" + QUOTE, re.I),
     "an instruction to write text the user dictates"),
    ("input_dictated", re.compile(CLAUSE_START + r"(?:say|print|output|write|type|reply|respond|answer|return|echo)"
                                  r"(?:\s+(?:only|just|exactly|with|the word|the words|the phrase))*:?\s+"
                                  r"(?-i:[A-Z0-9][A-Z0-9_!-]{3,}(?:\s+[A-Z0-9_!-]{2,})*)\b", re.I),
     "an instruction to write text the user dictates"),
    ("input_encoded", re.compile(
        r"\b(?:decode|decipher|unscramble|base64|hex|rot13)\b[^.?!\n]{0,60}?\b(?:and|then)\b[^.?!\n]{0,20}?"
        r"\b(?:follow|execute|obey|carry out|comply|act on|do what)\b", re.I),
     "an instruction to decode a payload and obey it"),
    ("input_delimiter", re.compile(
        r"<\|[a-z_]{2,20}\|>|\[/?inst\]|<</?sys>>|</?(?:system|passages?|context|instructions?|user|assistant|"
        r"data-[0-9a-f]+)>|(?:^|\n|[.!?\]>]\s)\s*(?:system|assistant|developer)\s*:|#{2,}\s*(?:system (?:prompt|"
        r"message)|new instructions?)\b|```\s*system|\b(?:end|close) of (?:the )?(?:passages?|context|system prompt|"
        r"instructions|documents?)\b|={3,}\s*(?:end|system|new)", re.I),
     "text that imitates the prompt's own markers"),
]
# Spaced-out or squeezed attacks lose their word boundaries: matched on letters only.
SQUEEZED = [("input_override", "ignore(all|your|the)?(previous|prior|above)?instructions"),
            ("input_override", "disregard(all|your|the)?(previous|prior|above)?instructions"),
            ("input_override", "forget(all|your|the)?(previous|prior)instructions"),
            ("input_prompt_leak", "(reveal|show|print|repeat)(me)?(your|the)(system)?prompt"),
            ("input_role", "(developer|dan|jailbreak)mode|youarenow|doanythingnow")]
# Text addressed to an AI reader is the signature of an indirect injection inside a document.
ADDRESSED = re.compile(
    r"\b(?:note|message|instructions?|attention|reminder)\s+(?:to|for)\s+(?:any\s+|the\s+|all\s+)?(?:ai|llm|ai assistant|"
    r"chatbot)s?\b|\bif you are an?\s+(?:ai|llm|assistant|chatbot|language model|bot)\b|"
    r"\b(?:dear|hey|attention)\s+(?:ai|llm|assistant|chatbot|gpt|claude|language model)\b|"
    r"\b(?:ai|llm|assistant|chatbot|language model|bot)s?\s+(?:reading|summari[sz]ing|processing|parsing|"
    r"answering from|that reads?|that summari[sz]es?)\s+(?:this|these)\b", re.I)
# In a document nobody is asking a question: the override phrase is suspect wherever it stands.
OVERRIDE_ANYWHERE = re.compile(r"\b(?:ignore|disregard|forget)\s+(?:all\s+)?(?:of\s+)?(?:your\s+|the\s+)?"
                               r"(?:previous|prior|above|earlier|preceding)\s+" + OVERRIDE_NOUNS + r"\b", re.I)
QUESTION_FRAME = re.compile(r"\?|^\s*(?:what|why|how|when|which|who|whom|where|explain|describe|compare|define|"
                            r"is|are|can|could|does|do|did|should|would|give|list|name|tell me about|"
                            r"in what|is it)\b", re.I)
QUOTED = re.compile(r"\"[^\"]{1,300}\"|“[^”]{1,300}”|«[^»]{1,300}»|„[^“”]{1,300}[“”]|`[^`]{1,300}`|"
                    r"(?<![\w])'[^']{1,300}'(?![\w])|(?<![\w])‘[^’]{1,300}’(?![\w])")


@dataclass(frozen=True)
class Finding:
    guard: str
    reason: str
    evidence: str   # the text that matched (for logs and the Library's flagged table)
    encoded: bool = False


def strip_mentions(text: str) -> str:
    """A question about an attack quotes it: quoted text is a mention, not an instruction, when the
    rest of the input is a question. An input that is nothing but a quote is still an instruction."""
    outside = QUOTED.sub(" ", text).strip()
    if len(outside.split()) >= 2 and QUESTION_FRAME.search(outside):
        return QUOTED.sub(lambda m: m.group(0)[0] + "…" + m.group(0)[-1], text)
    return text


def _context(text: str, match: re.Match) -> str:
    """The matched instruction up to the end of its sentence, for messages and the flagged table."""
    start = match.start() + len(match.group(0)) - len(match.group(0).lstrip(" .,;:!?\n\"“”([]>"))
    end = re.search(r"[.!?\n]|$", text[match.end():]).start() + match.end() + 1
    return text[start:min(end, start + 120)].strip()


# In a document, "write a function that returns …", "print the result" and `return "A"` are exercises for
# the reader, and "<|end|> token" names a special token: neither is an instruction to an AI. Dictation and
# marker rules therefore read a document's prose without its code, and a dictation whose verb is a
# programming one counts only when the sentence addresses an AI or its answer.
PROSE_ONLY = {"input_dictated", "input_delimiter"}
CODE_BLOCK = re.compile(r"^[ \t]{0,3}(`{3,}|~{3,})[^\n]*\n.*?^[ \t]{0,3}\1[ \t]*$|`[^`\n]{1,300}`", re.M | re.S)
EXERCISE = re.compile(r"^\W*(?:(?:please|now|and|then|just|first|also|finally)\s+)*"
                      r"(?:write|print|prints|return|returns|output|outputs|type|echo|implement|code)\b", re.I)
TO_AN_AI = re.compile(r"\b(?:ai|llm|assistants?|chat ?bots?|language models?|gpt|bots?|you (?:must|should|will|shall)|"
                      r"your (?:answers?|responses?|replies|reply|outputs?)|reply|respond)\b", re.I)
TOKEN_MENTION = re.compile(r"<\|[a-z_]{2,20}\|>\s*(?:special\s+)?(?:tokens?|tags?|markers?|delimiters?|symbols?)\b|"
                           r"\b(?:special|the|an?|its|predicts?|emits?|generates?)\s+<\|[a-z_]{2,20}\|>", re.I)


def _prose(text: str) -> str:
    """The text with code blocks and inline code blanked out (positions kept)."""
    return CODE_BLOCK.sub(lambda m: " " * len(m.group(0)), text)


def _to_an_ai(guard: str, match: re.Match) -> bool:
    """Does this match in a document read as an instruction to an AI (not an exercise, not a mention)?"""
    if guard == "input_dictated":
        context = _context(match.string, match)
        return not EXERCISE.match(context) or bool(TO_AN_AI.search(context))
    if guard == "input_delimiter":
        around = match.string[max(0, match.start() - 20):match.end() + 20]
        return not TOKEN_MENTION.search(around)
    return True


def rule_findings(text: str, mentions: bool = True) -> list[Finding]:
    """Every rule the text breaks. `mentions`: treat quoted text in a question as a mention (user
    input); passages are checked with mentions=False, since a document has no one asking."""
    norm = normalize(text)
    found = []
    variants = norm.variants()
    for n, variant in enumerate(variants):
        checked = strip_mentions(variant) if mentions else variant
        encoded = variant in norm.decoded and n > 0
        for guard, pattern, reason in RULES:
            if mentions:
                match = pattern.search(checked)
            else:  # a document: the first match that is an instruction to an AI, not an exercise
                match = next((m for m in pattern.finditer(_prose(checked) if guard in PROSE_ONLY else checked)
                              if _to_an_ai(guard, m)), None)
            if match:
                found.append(Finding(guard, reason, _context(match.string, match), encoded))
        if not mentions and (match := ADDRESSED.search(checked) or OVERRIDE_ANYWHERE.search(checked)):
            found.append(Finding("addressed_to_ai", "text addressed to an AI reader", _context(checked, match),
                                 encoded))
    for run in norm.joined + [re.sub(r"[^a-z]", "", d.lower()) for d in norm.decoded]:
        for guard, squeezed in SQUEEZED:
            if re.search(squeezed, run.lower()):
                found.append(Finding(guard, "an obfuscated instruction to the assistant", run[:120], True))
    return found


# --- similarity to attack exemplars --------------------------------------------------------------------
EXEMPLARS = Path(__file__).with_name("attack_exemplars.txt")
# Chosen on questions that must pass, not on the red-team set: the bank's 166 questions and the 160
# retrieval gold queries come at most 0.58 close to an attack line (evals/README.md), and a question
# about attacks is closer to an "about" line than to any attack line.
MIN_SIMILARITY = 0.62
MIN_MARGIN = 0.05


@lru_cache(maxsize=1)
def exemplars() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = None
    for line in EXEMPLARS.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = groups.setdefault(line[1:-1], [])
        elif current is not None:
            current.append(line)
    return groups


class ExemplarSimilarity:
    """Cosine of an input to the closest attack exemplar and to the closest question-about-attacks."""

    def __init__(self, embeddings):
        import numpy as np

        self.embeddings = embeddings
        groups = exemplars()
        # The exemplars are the same every run: read from the embedder's vector file where it keeps them
        # (a tenth of a cold `ask` otherwise).
        embed = getattr(embeddings, "embed_stored", embeddings.embed_documents)
        self.attack = np.array(embed(groups["attack"]))
        self.about = np.array(embed(groups["about"]))

    def scores(self, text: str) -> tuple[float, float]:
        import numpy as np

        vector = np.array(self.embeddings.embed_query(text))
        return float((self.attack @ vector).max()), float((self.about @ vector).max())

    def is_attack(self, text: str) -> tuple[bool, float]:
        attack, about = self.scores(text)
        return attack >= MIN_SIMILARITY and attack - about >= MIN_MARGIN, attack


# --- the input guard -----------------------------------------------------------------------------------
BLOCKED_MESSAGE = ("This looks like {reason}{encoded}, so it was not passed to the model. I answer deep-learning "
                   "interview questions from the bank; questions about prompt injection and jailbreaks are welcome.")


class InputGuard:
    """Limits, then rules, then exemplar similarity. `check` returns the question to answer or raises
    QuestionError(message, guard)."""

    def __init__(self, embeddings=None):
        self.embeddings = embeddings
        self._similarity = None

    @property
    def similarity(self) -> ExemplarSimilarity | None:
        if self._similarity is None and self.embeddings is not None:
            self._similarity = ExemplarSimilarity(self.embeddings)
        return self._similarity

    def check(self, question: str | None) -> str:
        question = validate_question(question)
        findings = rule_findings(question)
        if findings:
            first = findings[0]
            raise QuestionError(BLOCKED_MESSAGE.format(
                reason=first.reason, encoded=" (hidden in an encoded or obfuscated payload)" if first.encoded else ""),
                first.guard)
        if self.similarity is not None:
            norm = normalize(question)
            for text in [strip_mentions(norm.text), *norm.decoded]:
                attack, score = self.similarity.is_attack(text)
                if attack:
                    raise QuestionError(BLOCKED_MESSAGE.format(
                        reason=f"an instruction to the assistant (similarity {score:.2f} to known attacks)",
                        encoded=""), "input_similarity")
        return question


# --- context: spotlighting, quarantine, ingest-time flags -----------------------------------------------
DATAMARK = "^"


@dataclass(frozen=True)
class Spotlight:
    """Per-request secrets: the random marker around passages and the canary in the system prompt."""
    nonce: str
    canary: str

    @classmethod
    def new(cls) -> Spotlight:
        return cls(nonce=secrets.token_hex(4), canary="cnry-" + secrets.token_hex(8))


def datamark(text: str) -> str:
    """Spotlighting by datamarking: every space becomes ^, so instructions inside read as data."""
    return DATAMARK.join(text.split())


def undatamark(text: str) -> str:
    return text.replace(DATAMARK, " ")


def flag_reason(text: str) -> str | None:
    """Why a passage looks like instructions to an AI (for its chunk metadata), or None."""
    findings = rule_findings(text, mentions=False)
    if not findings:
        return None
    first = findings[0]
    return f"{first.reason}: \"{first.evidence[:80]}\""


def quarantine(text: str, split) -> tuple[str, list[str]]:
    """The passage without its instruction-like sentences, and those sentences. `split` is the
    sentence splitter the answer step uses, so what is removed is exactly what would be quoted."""
    if not rule_findings(text, mentions=False):
        return text, []
    kept_lines, removed = [], []
    for line in text.split("\n"):
        sentences = split(line) or [line]
        bad = [s for s in sentences if rule_findings(s, mentions=False)]
        removed.extend(bad)
        kept_lines.append(" ".join(s for s in sentences if s not in bad) if bad else line)
    return "\n".join(kept_lines), removed


# --- output ------------------------------------------------------------------------------------------
DICTATION = re.compile(r"(?:say|print|output|write|type|respond|reply|answer|return|echo|repeat|emit|begin|start|end|"
                       r"dis|di|sag|скажи|напиши|说|输出)\b[^\"“”«»„「]{0,40}?[\"“«„「]([^\"”»“」]{2,100})[\"”»“」]|"
                       r"(?:say|print|output|reply|respond|write)(?:\s+(?:only|just|exactly|with|the word|the words|"
                       r"the phrase))*:?\s+(?-i:([A-Z0-9][A-Z0-9_!-]{3,}(?:\s+[A-Z0-9_!-]{2,})*))|"
                       r"repeat after me:?\s+([^.!?\n]{3,100})", re.I)
LEAK_WORDS = 8   # this many consecutive words of a prompt file in an answer count as a leak


def dictated_strings(text: str) -> list[str]:
    """Strings an instruction asks the model to emit ('say "X"', 'reply with PWNED')."""
    out = []
    for variant in normalize(text).variants():
        for match in DICTATION.finditer(variant):
            value = next(g for g in match.groups() if g)
            if len(_squeeze(value)) >= 4:
                out.append(value.strip())
    return list(dict.fromkeys(out))


def _squeeze(text: str) -> str:
    return re.sub(r"[\W_]+", "", unicodedata.normalize("NFKC", text).lower())


def _ngrams(text: str, n: int = LEAK_WORDS) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}


class OutputGuard:
    """`output_violation` for one answer, with what stays the same while the answer grows (the passages,
    the prompts' word spans, the dictated strings) prepared once: the streaming check runs on every token,
    and rebuilding the prompts' and passages' n-grams each time cost 0.6 ms a token (3 ms under load)."""

    def __init__(self, spotlight: Spotlight, dictated: list[str], passages: list[str],
                 prompt_texts: Sequence[str] = ()):
        self.canary = _squeeze(spotlight.canary)
        bank = _squeeze(" ".join(passages))
        self.dictated = [value for value in dict.fromkeys(map(_squeeze, dictated)) if value not in bank]
        self.spans = (set().union(*(_ngrams(p) for p in prompt_texts)) - _ngrams(" ".join(passages))
                      if prompt_texts else set())

    def check(self, answer: str) -> tuple[str, str] | None:
        squeezed = _squeeze(answer)
        if self.canary in squeezed:
            return "output_canary", "it contained the secret marker from my instructions"
        if any(value in squeezed for value in self.dictated):
            return "output_dictated", "it repeated text that an instruction dictated, not the bank"
        if self.spans and _ngrams(answer) & self.spans:
            return "output_leak", "it repeated my own instructions"
        return None


def output_violation(answer: str, spotlight: Spotlight, dictated: list[str], passages: list[str],
                     prompt_texts: Sequence[str] = ()) -> tuple[str, str] | None:
    """(guard, reason) when the answer leaks the canary, a long span of a prompt file, or a dictated
    string that the bank passages do not contain; else None."""
    return OutputGuard(spotlight, dictated, passages, prompt_texts).check(answer)


OUTPUT_BLOCKED = ("I can't give that answer: {reason}. Ask me a deep-learning interview question and I'll "
                  "answer it from the bank.")


# --- limits ------------------------------------------------------------------------------------------
class RateLimiter:
    """At most `limit` events per `window` seconds per key (a user, or a client address), sliding
    window. Keys idle for a whole window are pruned, so a stream of new keys cannot grow it forever."""

    def __init__(self, limit: int, window: float = 60.0):
        self.limit, self.window = limit, window
        self._events: dict[str, deque] = defaultdict(deque)
        self._lock = threading.Lock()
        self._pruned_at = 0.0

    def allow(self, key: str, now: float | None = None) -> float:
        """0 when allowed (and counted), else the seconds until the next event is allowed."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._prune(now)
            events = self._events[key]
            while events and now - events[0] >= self.window:
                events.popleft()
            if len(events) >= self.limit:
                return self.window - (now - events[0])
            events.append(now)
            return 0.0

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < self.window:
            return
        self._pruned_at = now
        for key in [k for k, events in self._events.items() if not events or now - events[-1] >= self.window]:
            del self._events[key]

    def __len__(self) -> int:
        return len(self._events)
