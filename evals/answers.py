"""Answer quality per backend: does it answer what the bank covers, refuse what it does not, cite only
what supports it, and give a learner something usable on questions other people wrote?

    python -m evals.answers [--backend llamacpp|openai|extractive] [--in-scope N] [--out FILE.json]
    python -m evals.answers --real [tuning|heldout] [--backend B] [--in-scope N] [--show]
    python -m evals.answers --real --independent FILE.jsonl [--backend B]   # a labelled set kept elsewhere
    python -m evals.answers --followups [--backend B]   # follow-ups made standalone, three ways

`--real` answers the real-question dev set (`../shared/real-questions/dev.jsonl`, read from there and
never copied; labels in evals/sets/real_questions_labels.jsonl) and measures usefulness:
    first citation right   the first citation names the labelled entry (`bank_id` or one of `alt_ids`);
                           a refused covered question counts as a miss
    key-point coverage     share of the answering entry's key points the answer states, by the grader's
                           own key-point matching (`coach.grader.Grader.assess`, credit >= COVERED). The
                           answering entry is the first cited one when it is a labelled answer (`bank_id`
                           or an `alt_ids` entry), else `bank_id`; `key_point_coverage_labelled` always
                           measures against `bank_id` (stricter: an answer built from an `alt_ids` entry
                           states that entry's points, not `bank_id`'s)
    wrong statements       answer sentences the passage they cite does not support (default support
                           rule) or that the cited entry contradicts (`coach.premise.contradiction`)
    defects                dangling openings, table fragments, bare formula stubs, citation gaps
    refused, uncovered     questions labelled `none` that are refused

`--followups` reads evals/sets/followups.jsonl (40 two-turn conversations the bank's authors wrote: a
question, then a follow-up that leans on it, labelled with the entry that answers the follow-up) and
retrieves for each follow-up made standalone three ways: as the app does (`Answerer.standalone`), as the
backend's model rewrites it (prompts/rewrite.md, whether or not the app would ask it to; a rewrite the
app would reject falls back as the app does, to the previous question prepended), and the follow-up
alone. Right entry first (hit@1) and in the top five (hit@5) for each.

The full suite with quality metrics and the baseline is `python -m evals`; this is the quick per-backend
view. In-scope questions are the retrieval gold set (each names the bank entries that answer it);
out-of-scope questions are evals/sets/out_of_scope.jsonl. For the openai backend, point
COACH_OPENAI_BASE_URL at a running server (e.g. `python -m llama_cpp.server --model …`).
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coach.compose import SEE_ALSO_MARK
from coach.text import citations_of, split_sentences, strip_citations
from evals.datasets import (
    FOLLOWUPS,
    GOLD,
    INDEPENDENT,
    OUT_OF_SCOPE,
    independent_questions,
    labelled_real_questions,
    load_jsonl,
    real_questions,
)
from evals.suite import ours_record, sample

# An answer's first sentence that points at something it never showed ("Both normalize…").
DANGLING = re.compile(r"^\W*(?:both|this|these|those|it|they|their|such|each of (?:these|them|those)|"
                      r"all (?:two|three|four|five|of (?:these|them|those))|the (?:former|latter)|if (?:they|it))\b(?!\s+(?:[^\s,.:;]+\s+){1,3}?and\b)", re.I)
# A line that is part of a markdown table: answers render tables as lists, so any is a cut table.
TABLE_FRAGMENT = re.compile(r"^\s*\||\|\s*(?:\[\d+\]\s*)*[.]?\s*$|\|\s*\|")
# A sentence whose formula was left behind: it ends on a word that needs something after it.
STUB_END = re.compile(r"(?:\b(?:is|are|of|by|the|a|an|gives|becomes|equals|computes|where)|[=:+−])\s*$")
# "… no matter how large the image is" and "… less valuable than it is" end a clause; "the output width is" does not.
CLAUSE_END = re.compile(r"\b(?:how|what|whatever|wherever|however|whoever|than)\b[^,;:]*\b(?:is|are)\s*$", re.I)


def evaluate(answerer, in_scope: list[dict], out_of_scope: list[dict]) -> dict:
    """The pipeline's own counters per backend; the suite (`python -m evals`) adds the quality metrics."""
    records = [ours_record(answerer.ask(item["query"]), item, scope)
               for item, scope in [(i, "in") for i in in_scope] + [(o, "out") for o in out_of_scope]]
    inside = [r for r in records if r["scope"] == "in"]
    outside = [r for r in records if r["scope"] == "out"]
    answered = [r for r in inside if not r["refused"]]
    generated = sum(r["generated"] for r in records)
    sentences = [(s, set(r["cited"])) for r in records if not (r["refused"] or r["blocked"])
                 for s in split_sentences(r["answer"])]
    first_tokens = [r["first_token_ms"] for r in answered if r["first_token_ms"] is not None]

    def share(part, whole):
        return round(part / whole, 4) if whole else None

    return {"in_scope": len(inside), "out_of_scope": len(outside),
            "answered_in_scope": share(len(answered), len(inside)),
            "false_refusal": share(len(inside) - len(answered), len(inside)),
            "refused_out_of_scope": share(sum(r["refused"] for r in outside), len(outside)),
            "answered_cites_expected_entry": share(sum(bool({c["qid"] for c in r["cited"].values()} & set(r["expected"]))
                                                       for r in answered), len(answered)),
            "sentences_generated": generated,
            "sentences_dropped_share": share(sum(r["dropped"] for r in records), generated),
            "extractive_fallback_share": share(sum(r["fallback"] is not None for r in answered), len(answered)),
            "citation_validity": share(sum(bool(citations_of(s)) and set(citations_of(s)) <= listed
                                           for s, listed in sentences), len(sentences)),
            "first_token_ms_p50": round(float(np.median(first_tokens)), 1) if first_tokens else None,
            "total_ms_p50": round(float(np.median([r["total_ms"] for r in answered])), 1) if answered else None}


def followups(answerer, rows: list[dict], progress: bool = True) -> dict:
    """hit@1 / hit@5 of the follow-ups in `rows` made standalone three ways (the module docstring)."""
    ways = {"app": lambda q, h: answerer.standalone(q, h),
            "model_rewrite": lambda q, h: answerer.rewrite(q, h, answerer.backend) or f"{h[0]['content']} {q}",
            "followup_alone": lambda q, h: q}
    if not answerer.backend.prompted:
        del ways["model_rewrite"]  # no model to rewrite with
    hits = {way: [] for way in ways}
    for row in tqdm(rows, desc="follow-ups", unit="q", file=sys.stderr, disable=not progress, leave=False):
        history = [{"role": "user", "content": row["previous"]}, {"role": "assistant", "content": "(the answer)"}]
        for way, standalone in ways.items():
            ranked = [hit.metadata.get("qid") for hit in answerer.retriever.search(standalone(row["question"], history), k=5)]
            hits[way].append((ranked[:1] == [row["qid"]], row["qid"] in ranked))
    return {way: {"hit@1": round(float(np.mean([a for a, _ in h])), 4), "hit@5": round(float(np.mean([b for _, b in h])), 4)}
            for way, h in hits.items()} | {"followups": len(rows), "backend": answerer.backend.describe()}


# --- answers on real questions ----------------------------------------------------------------------
def defects(text: str) -> dict[str, list[str]]:
    """What makes an answer unusable as a whole: the offending pieces per kind (empty lists: none)."""
    sentences = split_sentences(text)
    numbers = [n for s in sentences for n in citations_of(s)]
    used = sorted(set(numbers))
    return {"dangling_opening": [sentences[0]] if sentences and DANGLING.match(sentences[0]) else [],
            "table_fragment": [line for line in text.split("\n") if TABLE_FRAGMENT.search(strip_citations(line))],
            "formula_stub": [s for s in sentences if not strip_citations(s).endswith("?")
                             and STUB_END.search(claim := strip_citations(s).rstrip(".! "))
                             and not CLAUSE_END.search(claim)],
            "citation_gap": [] if used == list(range(1, len(used) + 1)) else [str(used)]}


def usefulness(answerer, rows: list[dict], grader, checker, progress: bool = True) -> dict:
    """The measures of the module docstring over `rows`; `answers` keeps one record per question."""
    from coach.grader import COVERED
    from coach.premise import contradiction

    records = []
    for row in tqdm(rows, desc="real questions", unit="q", file=sys.stderr, disable=not progress, leave=False):
        answer = answerer.ask(row["question"])
        by_chunk = {c["chunk_id"]: c for c in answer.contexts}
        cited = [by_chunk.get(c["chunk_id"], {}) for c in answer.citations]
        record = {"key": row["key"], "coverage": row["coverage"], "refused": answer.refused or answer.blocked,
                  "first_qid": cited[0].get("qid") if cited else None, "fallback": answer.fallback,
                  "defects": defects(answer.answer) if not (answer.refused or answer.blocked) else {},
                  "answer": answer.answer, "corrected_premise": answer.corrected_premise}
        record["first_right"] = record["first_qid"] in {row["bank_id"], *row["alt_ids"]} - {None}
        if row["bank_id"] and not record["refused"]:
            answering = record["first_qid"] if record["first_right"] else row["bank_id"]
            record["key_points"] = _stated(grader, answering, answer.answer, COVERED)
            record["key_points_labelled"] = _stated(grader, row["bank_id"], answer.answer, COVERED)
        if not record["refused"]:
            answerer.embeddings.embed_sentences([strip_citations(s) for s in split_sentences(answer.answer)])
            record["wrong"] = sum(_wrong(s, cited, answerer, checker, contradiction) for s in split_sentences(answer.answer))
            record["sentences"] = len(split_sentences(answer.answer))
        records.append(record)
    return {**summarize_usefulness(records), "answers": records}


def _stated(grader, qid: str, answer: str, covered: float) -> float | None:
    """The share of entry `qid`'s key points that `answer` states (None for an entry the bank lacks)."""
    entry = grader.bank.get(qid)
    if entry is None:
        return None
    points, _, _ = grader.assess(entry, strip_citations(answer))
    return sum(p.credit >= covered for p in points) / len(points)


def _wrong(sentence: str, cited: list[dict], answerer, checker, contradiction) -> bool:
    if sentence.startswith(SEE_ALSO_MARK):
        return False  # a pointer to a related entry states nothing
    texts = [cited[n - 1].get("text", "") for n in citations_of(sentence) if 1 <= n <= len(cited)]
    if not texts or not checker.check(sentence, texts).supported:
        return True
    claim = strip_citations(sentence)
    return any(contradiction(claim, cited[n - 1].get("text", ""), answerer.entries.get(cited[n - 1].get("qid")),
                             answerer.embeddings) for n in citations_of(sentence) if 1 <= n <= len(cited))


def summarize_usefulness(records: list[dict]) -> dict:
    covered = [r for r in records if r["coverage"] in ("full", "partial")]
    full = [r for r in covered if r["coverage"] == "full"]
    uncovered = [r for r in records if r["coverage"] == "none"]
    answered = [r for r in records if not r["refused"]]

    def mean(values):
        values = [v for v in values if v is not None]
        return round(float(np.mean(values)), 4) if values else None

    return {"questions": len(records), "covered": len(covered), "full": len(full), "uncovered": len(uncovered),
            "first_citation_right": mean([r["first_right"] for r in covered]),
            "first_citation_right_full": mean([r["first_right"] for r in full]),
            # a refused covered question states none of its key points
            "key_point_coverage": mean([r.get("key_points", 0.0) for r in covered]),
            "key_point_coverage_full": mean([r.get("key_points", 0.0) for r in full]),
            "key_point_coverage_labelled": mean([r.get("key_points_labelled", 0.0) for r in covered]),
            "refused_covered": mean([r["refused"] for r in covered]),
            "refused_uncovered": mean([r["refused"] for r in uncovered]),
            "wrong_statements": sum(r.get("wrong", 0) for r in answered),
            "sentences": sum(r.get("sentences", 0) for r in answered),
            "wrong_statement_share": mean([r["wrong"] / r["sentences"] for r in answered if r.get("sentences")]),
            "premises_corrected": sum(r["corrected_premise"] is not None for r in answered),
            "extractive_fallback": mean([r["fallback"] is not None for r in answered]),
            "defects": {kind: sum(bool(r["defects"].get(kind)) for r in answered)
                        for kind in ("dangling_opening", "table_fragment", "formula_stub", "citation_gap")}}


def real(answerer, halves=("tuning", "heldout"), limit: int = 0, progress: bool = True,
         sets: dict[str, list[dict]] | None = None) -> dict:
    """Usefulness per half of the dev set, or per named set of labelled rows in `sets` (a fixed sample of
    `limit` rows per half when given); {} when the dev set is absent."""
    from coach.grader import Grader
    from coach.support import SupportChecker

    if sets is None:
        if not real_questions():
            return {}
        sets = {half: labelled_real_questions(half) for half in halves}
    answerer.warm_up()  # every bank unit embedded once, in batches: far faster than one answer at a time
    grader = Grader(retriever=answerer.retriever, bank=list(answerer.entries.values()))
    grader.key_point_vectors()
    checker = SupportChecker(answerer.embeddings)
    return {half: usefulness(answerer, sample(chosen, limit), grader, checker, progress) for half, chosen in sets.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.answers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["llamacpp", "openai", "extractive"], help="default: COACH_LLM")
    parser.add_argument("--in-scope", type=int, default=0, metavar="N",
                        help="a random sample of N in-scope questions (default: all)")
    parser.add_argument("--out", type=Path, help="also write the metrics as JSON here")
    parser.add_argument("--real", nargs="?", const="both", choices=["tuning", "heldout", "both"],
                        help="usefulness on the real-question dev set (default: both halves)")
    parser.add_argument("--independent", type=Path, metavar="FILE",
                        help="this labelled set (the dev set's shape, labels against the current bank) instead "
                             "of the dev set; implies --real")
    parser.add_argument("--show", action="store_true", help="with --real: print every answer and its defects")
    parser.add_argument("--followups", action="store_true",
                        help="follow-ups made standalone three ways, right entry first (evals/sets/followups.jsonl)")
    parser.add_argument("--llama-server", action="store_true",
                        help="start `python -m llama_cpp.server` with the packaged GGUF and use the openai backend")
    args = parser.parse_args(argv)
    args.real = args.real or ("both" if args.independent else None)  # --independent implies --real

    from coach.answer import Answerer
    from coach.config import setup_logging
    from coach.llm import OpenAIBackend, get_backend

    setup_logging()
    if args.llama_server:  # the openai backend against the same GGUF served by llama_cpp.server
        from evals.servers import llama_server

        with llama_server() as url:
            return _run(Answerer(backend=OpenAIBackend(url, "smollm2", None, timeout=600)), args)
    return _run(Answerer(backend=get_backend(kind=args.backend)), args)


def _run(answerer, args) -> int:
    if args.followups:
        return _emit(result := followups(answerer, load_jsonl(FOLLOWUPS)), result, args.out)
    return _real_main(answerer, args) if args.real else _main(answerer, args)


def _main(answerer, args) -> int:
    in_scope = load_jsonl(GOLD)
    if args.in_scope:
        in_scope = random.Random(0).sample(in_scope, args.in_scope)
    answerer.ask(in_scope[0]["query"])  # load every model before timing anything
    out_of_scope = load_jsonl(OUT_OF_SCOPE)
    result = evaluate(_Progress(answerer, len(in_scope) + len(out_of_scope)), in_scope, out_of_scope)
    result["backend"] = answerer.backend.describe()
    return _emit(result, result, args.out)


def _real_main(answerer, args) -> int:
    sets = None
    if args.independent:
        try:
            sets = {INDEPENDENT: independent_questions(args.independent)}
        except (OSError, ValueError) as exc:
            raise SystemExit(f"cannot read the independent set: {exc}") from None
    elif not real_questions():
        raise SystemExit("the real-question dev set is absent (../shared/real-questions/dev.jsonl)")
    halves = ("tuning", "heldout") if args.real == "both" else (args.real,)
    result = real(answerer, halves, limit=args.in_scope, sets=sets)
    if args.show:
        for half, figures in result.items():
            for r in figures["answers"]:
                print(f"--- {half} {r['key']} {r['coverage']} first={r['first_qid']} right={r['first_right']} "
                      f"kp={r.get('key_points')} wrong={r.get('wrong')} defects={ {k: v for k, v in r['defects'].items() if v} }")
                print(r["answer"])
    summary = {half: {k: v for k, v in figures.items() if k != "answers"} for half, figures in result.items()}
    summary["backend"] = answerer.backend.describe()
    return _emit(summary, result, args.out)


def _emit(summary: dict, result: dict, out: Path | None) -> int:
    """Print the summary; write the whole result (every answer, for --real) to `out` when given."""
    print(json.dumps(summary, indent=2))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1))
    return 0


class _Progress:
    """The answerer with a progress bar on stderr."""

    def __init__(self, answerer, total: int):
        self.answerer, self.bar = answerer, tqdm(total=total, desc="answering", unit="q", file=sys.stderr)

    def ask(self, question: str):
        try:
            return self.answerer.ask(question)
        finally:
            self.bar.update()


if __name__ == "__main__":
    sys.exit(main())
