"""The evaluation suite: every set in evals/sets/, measured for our pipeline and the naive baseline.

`run(Options(...))` returns a Run: `metrics` (what metrics.json holds) and `records` (one per answered
question, for the RAGAS export and the plots). `python -m evals` and the app's Evaluate tab call it;
evals/report.py writes the files.

Sets and what they measure (`--sets` takes these names; default: every one whose file exists):
    retrieval      retrieval.jsonl: hit@1/3/5, MRR, nDCG@5 per part and topic; answers to in-scope questions
    out_of_scope   out_of_scope.jsonl: refusals (precision and recall of refusing what the bank lacks)
    support_pairs  support_pairs.jsonl: the sentence support check that faithfulness rests on
    attacks        attacks.jsonl + benign_security.jsonl, through evals.guards (issue 7) when present
    grading        grading.jsonl and grading_holdout.jsonl, through evals.grader and coach.grader.Grader (issue 6) when present
    real_questions the real-question dev set (../shared, when present), tuning and held-out halves apart:
                   first citation right and key-point coverage of covered questions (evals.answers.real)

Answer metrics (RAGAS / DeepEval definitions, judged locally by coach.support and the embedder):
    faithfulness        share of answer sentences supported by the passages the sentence cites (ours) or,
                        for an answer without citations (the baseline), by the retrieved context
    citation P / R      cited bank ids vs the gold ids (the baseline cites nothing: not applicable)
    answer relevance    cosine of the answer's and the question's embeddings
    context precision   RAGAS: mean precision@k over the ranks holding a gold entry
    context recall      share of the gold entry's key points the retrieved context supports
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import random
import shutil
import sys
import time
from dataclasses import dataclass, field

import numpy as np
from tqdm import tqdm

from evals import metrics as m
from evals.datasets import ATTACKS, BENIGN_SECURITY, GOLD, OUT_OF_SCOPE, SETS, load_jsonl
from evals.retrieval import score, summarize

SET_NAMES = ("retrieval", "out_of_scope", "support_pairs", "attacks", "grading", "real_questions")
# Answer metrics averaged over answered in-scope questions, in the order the report shows them.
ANSWER_METRICS = ("faithfulness", "citation_precision", "citation_recall", "answer_relevance",
                  "context_precision", "context_recall")


@dataclass
class Options:
    backend: str | None = None           # llamacpp | openai | extractive; default COACH_LLM
    baseline: bool = True
    sets: list[str] | None = None        # default: every set whose file exists
    limit: int = 0                       # a fixed random sample of N rows per set (0: all)
    judge: bool = False                  # also ask a configured openai model to judge faithfulness


@dataclass
class Run:
    metrics: dict
    records: list[dict] = field(default_factory=list)


def available_sets() -> list[str]:
    from evals.datasets import real_questions

    return [name for name in SET_NAMES if (SETS / f"{name}.jsonl").exists()
            or (name == "real_questions" and real_questions())]


def choose_sets(names: list[str] | None) -> list[str]:
    """The sets to run; an unknown or missing name is an error that lists the ones there are."""
    available = available_sets()
    if not names:
        return available
    wrong = [n for n in names if n not in available]
    if wrong:
        raise ValueError(f"unknown or missing set(s) {', '.join(wrong)}; available: {', '.join(available)}")
    return list(names)


def sample(rows: list[dict], limit: int) -> list[dict]:
    """A fixed random sample (seed 0) in the file's order, so runs with the same --limit compare."""
    if not limit or limit >= len(rows):
        return rows
    keep = set(random.Random(0).sample(range(len(rows)), limit))
    return [row for n, row in enumerate(rows) if n in keep]


def run(options: Options, progress: bool = True) -> Run:
    from coach.answer import Answerer
    from coach.bank import load_bank
    from coach.config import get_settings
    from coach.llm import get_backend
    from coach.support import SupportChecker

    started = time.time()
    sets = choose_sets(options.sets)
    backend = get_backend(kind=options.backend)
    answerer = Answerer(backend=backend)
    bank = {entry.id: entry for entry in load_bank(get_settings().corpus_dir)}
    baseline = _baseline(backend) if options.baseline else None
    # The judge of faithfulness and context recall: the default support rule for every system, so ours
    # and the baseline are held to the same standard.
    scorer = Scorer(SupportChecker(answerer.embeddings), answerer.embeddings, bank)
    answerer.ask("what is dropout?")  # load every model before timing anything
    if baseline:
        baseline.ask("what is dropout?")

    metrics: dict = {"meta": {"backend": backend.describe(), "baseline": bool(baseline), "sets": sets,
                              "limit": options.limit, "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                              "chunks": answerer.retriever.store.count(),
                              "threshold": answerer.retriever.calibration.threshold}}
    records: list[dict] = []
    gold = sample(load_jsonl(GOLD), options.limit) if "retrieval" in sets else []
    outside = sample(load_jsonl(OUT_OF_SCOPE), options.limit) if "out_of_scope" in sets else []
    if gold:
        metrics["retrieval"] = retrieval(answerer.retriever, baseline, gold, bank, progress)
        from evals.retrieval import real_summary  # the real-question dev set, when ../shared has it

        metrics["real_questions"] = real_summary(answerer.retriever, lambda rows: sample(rows, options.limit))
    if gold or outside:
        records = answers(answerer, baseline, gold, outside, scorer, progress)
        metrics["answers"] = {system: summarize_answers([r for r in records if r["system"] == system])
                              for system in ("ours", "baseline") if any(r["system"] == system for r in records)}
        metrics["refusal_curve"] = refusal_curve(answerer.retriever, gold, outside)
    if "support_pairs" in sets:
        metrics["support"] = support(answerer.embeddings, bank, options.limit)
    if "attacks" in sets:
        metrics["guards"] = guards(answerer, options.limit, progress)
    if "grading" in sets:
        metrics["grading"] = grading(answerer, backend, options.limit, progress)
    if "real_questions" in sets:
        from evals.answers import real

        result = real(answerer, limit=options.limit, progress=progress)
        real_figures = metrics.setdefault("real_questions", {})  # beside the retrieval figures, per half
        for half, figures in result.items():
            real_figures.setdefault(half, {}).update({k: v for k, v in figures.items() if k != "answers"})
    if options.judge:
        metrics["judge"] = judge(records, progress)
    metrics["meta"]["seconds"] = round(time.time() - started, 1)
    return Run(metrics, records)


def _baseline(backend):
    from evals.baseline import Baseline

    return Baseline(backend=backend)


# --- retrieval -------------------------------------------------------------------------------------
def retrieval(retriever, baseline, gold: list[dict], bank: dict, progress: bool) -> dict:
    """Ours (hybrid, one result per question) and the baseline (top-k chunks mapped back to the bank
    questions they overlap), each asked for 5 results, on the same queries."""
    topics = {qid: entry.topic for qid, entry in bank.items()}
    systems = {"ours": lambda q: [hit.metadata.get("qid") for hit in retriever.search(q, k=5)]}
    if baseline:
        systems["baseline"] = lambda q: baseline.ranked_ids(q, k=5)
    out = {}
    for system, ranked_ids in systems.items():
        retriever.embeddings.clear_cache()  # time real query embedding, not cache hits
        rows, latencies = [], []
        for item in _bar(gold, progress, f"retrieval ({system})"):
            t0 = time.perf_counter()
            ranked = ranked_ids(item["query"])
            latencies.append((time.perf_counter() - t0) * 1000)
            rows.append(score(item, ranked, topics))
        out[system] = summarize(rows, latencies)
    return out


def refusal_curve(retriever, gold: list[dict], outside: list[dict]) -> list[dict] | None:
    """Answered-in-scope vs refused-out-of-scope for every threshold on the calibrated best score."""
    from evals.calibrate import tradeoff

    if not gold or not outside:
        return None
    best = [max((h.score for h in retriever.search(item["query"], k=1)), default=0.0) for item in gold + outside]
    return tradeoff(np.array(best), np.array([True] * len(gold) + [False] * len(outside)))


# --- answers ---------------------------------------------------------------------------------------
def answers(answerer, baseline, gold, outside, scorer, progress: bool) -> list[dict]:
    items = [(item, "in") for item in gold] + [(item, "out") for item in outside]
    records = []
    for item, scope in _bar(items, progress, "answering (ours)"):
        records.append(scorer.score(ours_record(answerer.ask(item["query"]), item, scope)))
    if baseline:
        for item, scope in _bar(items, progress, "answering (baseline)"):
            records.append(scorer.score(baseline_record(baseline.ask(item["query"]), item, scope)))
    return records


def ours_record(answer, item: dict, scope: str) -> dict:
    """One answer from coach.answer.Answerer, in the shape every answer metric reads."""
    by_chunk = {c["chunk_id"]: c for c in answer.contexts}
    cited = {c["n"]: by_chunk.get(c["chunk_id"], {"qid": None, "text": ""}) for c in answer.citations}
    return {"system": "ours", "scope": scope, "question": item["query"], "expected": item.get("expected", []),
            "answer": answer.answer, "refused": answer.refused, "blocked": answer.blocked,
            "contexts": [{"text": c["text"], "qids": [c["qid"]]} for c in answer.contexts],
            "cited": {n: {"qid": c["qid"], "text": c["text"]} for n, c in cited.items()},
            # "See also" pointers name related entries; citation precision counts what supports a claim
            "see_also": [c["n"] for c in answer.citations if c.get("see_also")],
            "fallback": answer.fallback, "generated": answer.generated_sentences,
            "dropped": answer.dropped_sentences, "error": None, **_times(answer.timings)}


def baseline_record(result: dict, item: dict, scope: str) -> dict:
    return {"system": "baseline", "scope": scope, "question": item["query"], "expected": item.get("expected", []),
            "answer": result["answer"], "refused": result["refused"], "blocked": False,
            "contexts": [{"text": c["text"], "qids": c["qids"]} for c in result["contexts"]], "cited": None,
            "fallback": None, "generated": 0, "dropped": 0, "error": result.get("error"),
            **_times(result["timings"])}


def _times(timings: dict) -> dict:
    return {"first_token_ms": timings.get("first_token_ms"), "total_ms": timings.get("total_ms")}


class Scorer:
    """Adds the per-answer metrics to a record."""

    def __init__(self, checker, embeddings, bank: dict):
        self.checker, self.embeddings, self.bank = checker, embeddings, bank

    def score(self, record: dict) -> dict:
        from coach.text import citations_of, content_words, split_sentences, strip_citations

        expected = record["expected"]
        answered = not (record["refused"] or record["blocked"]) and bool(record["answer"].strip())
        record["answered"] = answered
        if record["scope"] != "in" or not answered:
            return record
        # Only sentences that state something are claims (not a "```yaml" line of a shown chunk).
        sentences = [s for s in split_sentences(record["answer"]) if content_words(strip_citations(s))]
        key_points = self.bank[expected[0]].key_points if expected and expected[0] in self.bank else ()
        texts = [c["text"] for c in record["contexts"]]
        # One batch for every sentence the checks below embed (they hit the cache afterwards): much
        # faster than embedding them one by one.
        self.embeddings.embed_sentences([strip_citations(s) for s in sentences] + list(key_points)
                                        + [p for text in texts for p in (split_sentences(text) or [text])])
        supported = []
        for sentence in sentences:
            if record["cited"] is None:  # no citations: judged against everything it was given
                passages = [c["text"] for c in record["contexts"]]
            else:
                passages = [record["cited"][n]["text"] for n in citations_of(sentence) if n in record["cited"]]
            supported.append(bool(passages) and self.checker.check(sentence, passages).supported)
        record["faithfulness"] = m.share(supported)
        if record["cited"] is not None:
            cited_ids = {c["qid"] for n, c in record["cited"].items() if n not in record.get("see_also", ())}
            record["citation_precision"] = m.set_precision(cited_ids, expected)
            record["citation_recall"] = m.set_recall(cited_ids, expected)
        claim = " ".join(strip_citations(s) for s in sentences)
        record["answer_relevance"] = m.cosine(self.embeddings.embed_query(record["question"]),
                                              self.embeddings.embed_sentences([claim])[0])
        record["context_precision"] = m.context_precision([bool(set(c["qids"]) & set(expected))
                                                           for c in record["contexts"]])
        record["context_recall"] = m.share(bool(texts) and self.checker.check(point, texts).supported
                                           for point in key_points)
        return record


def summarize_answers(records: list[dict]) -> dict:
    inside = [r for r in records if r["scope"] == "in"]
    answered = [r for r in inside if r["answered"]]
    out = {"in_scope": len(inside), "out_of_scope": len(records) - len(inside),
           "answered_rate": m.share(r["answered"] for r in inside)}
    out.update({name: m.mean(r.get(name) for r in answered) for name in ANSWER_METRICS})
    refusal = m.refusal_scores([r["refused"] for r in records], [r["scope"] == "out" for r in records])
    out["refusal_precision"], out["refusal_recall"] = refusal["precision"], refusal["recall"]
    generated = sum(r["generated"] for r in records)
    out["model_sentences_dropped"] = round(sum(r["dropped"] for r in records) / generated, 4) if generated else None
    out["extractive_fallback"] = m.share(r["fallback"] is not None for r in answered) if answered else None
    out["errors"] = sum(r["error"] is not None for r in records)
    out["latency_ms"] = {"total": m.latency_summary(r["total_ms"] for r in records if r["answered"]),
                         "first_token": m.latency_summary(r["first_token_ms"] for r in records if r["answered"])}
    return out


# --- the other sets --------------------------------------------------------------------------------
def support(embeddings, bank: dict, limit: int) -> dict:
    """The support check behind faithfulness, on the hand-made pairs, with both rules."""
    from coach.support import SupportChecker
    from evals.support import PAIRS, evaluate

    pairs = sample(load_jsonl(PAIRS), limit)
    out = {}
    for rule, strict in (("default", False), ("strict", True)):
        result = evaluate(pairs, SupportChecker(embeddings, strict=strict), bank)
        out[rule] = {"pairs": result["pairs"], "supported_kept": round(result["supported_kept"] or 0, 4),
                     "unsupported_dropped": round(result["unsupported_dropped"] or 0, 4)}
    return out


def guards(answerer, limit: int, progress: bool) -> dict:
    module = _optional("evals.guards")
    benign_file = BENIGN_SECURITY
    if module is None or not hasattr(module, "evaluate"):
        return {"skipped": "evals/guards.py is not there yet (issue 7)"}
    if not benign_file.exists():
        return {"skipped": "evals/sets/benign_security.jsonl is missing"}
    attacks, benign = sample(load_jsonl(ATTACKS), limit), sample(load_jsonl(benign_file), limit)
    # Indirect attacks ingest their document for a moment: do that in a copy of the index, never in the one a
    # running app serves (it would show the attack to users, and a crash half way would leave it there).
    from coach.answer import Answerer
    from coach.retrieval import HybridRetriever
    from coach.store import open_store

    previous = os.environ.get("COACH_DATA_DIR")
    scratch = module.scratch_index()
    try:
        isolated = Answerer(retriever=HybridRetriever(store=open_store()), backend=answerer.backend)
        return _summary(module.evaluate(isolated, attacks, benign, progress=progress))
    finally:
        if previous is None:
            os.environ.pop("COACH_DATA_DIR", None)
        else:
            os.environ["COACH_DATA_DIR"] = previous
        shutil.rmtree(scratch, ignore_errors=True)


def grading(answerer, backend, limit: int, progress: bool) -> dict:
    module, interview = _optional("evals.grader"), _optional("coach.grader")
    if module is None or interview is None or not hasattr(interview, "Grader"):
        return {"skipped": "evals/grader.py or coach.grader.Grader is not there yet (issue 6)"}
    grader = interview.Grader(retriever=answerer.retriever, backend=backend)
    tuned = _summary(module.evaluate(grader, sample(load_jsonl(module.GRADING), limit), progress=progress))
    # the honest figure: answers to other questions, written blind, that the parameters were not chosen on
    result = {**tuned, "holdout": _summary(module.evaluate(grader, sample(load_jsonl(module.HOLDOUT), limit),
                                                           progress=progress))}
    if hasattr(module, "evaluate_blind"):  # the blind sets (issue 17): those never fitted on are the headline
        graded = {half: module.evaluate_blind(grader, sample(rows, limit), progress=progress)
                  for half, rows in module.blind_sets().items()}
        result.update({f"blind_{half}": _summary(figures) for half, figures in graded.items()})
        if hasattr(module, "pooled_blind"):  # issue 17's targets: the never-fitted sets as one
            result["blind_never_fitted_pooled"] = _summary(module.pooled_blind(graded))
        if hasattr(module, "models_line"):  # which models and naming constants these figures are of
            result["models"] = module.models_line()
    if hasattr(module, "evaluate_neighbours"):  # answers to a neighbouring question: credit that is not earned
        rows = sample(load_jsonl(module.NEIGHBOURS), limit)
        result["neighbours"] = _summary(module.evaluate_neighbours(grader, rows, progress=progress))
    return result


def _optional(name: str):
    """A module another issue adds; None while it is absent (its own import errors still surface)."""
    try:
        if importlib.util.find_spec(name) is None:
            return None
    except ModuleNotFoundError:
        return None
    return importlib.import_module(name)


def _summary(result: dict) -> dict:
    """Numbers and small dicts only: metrics.json stays small whatever a section returns."""
    return {k: v for k, v in result.items() if isinstance(v, (int, float, str, dict)) or v is None}


# --- optional LLM judge ----------------------------------------------------------------------------
def judge(records: list[dict], progress: bool) -> dict:
    """Faithfulness as judged by a configured OpenAI-compatible model: yes/no per answer, whether every
    statement is supported by the context it was given. Reported apart from the local metrics."""
    from coach.config import get_settings, prompt
    from coach.llm import BackendUnavailable, get_backend
    from coach.text import strip_citations

    settings = get_settings()
    if not (settings.openai_base_url or settings.openai_api_key):
        return {"skipped": "no openai backend configured (COACH_OPENAI_BASE_URL or OPENAI_API_KEY)"}
    model = get_backend(kind="openai")
    verdicts: dict[str, list[bool]] = {}
    try:
        for r in _bar([r for r in records if r.get("faithfulness") is not None], progress, "LLM judge"):
            context = "\n\n".join(c["text"] for c in r["contexts"])
            reply = model.generate([{"role": "user", "content": prompt("judge").format(
                context=context, answer=strip_citations(r["answer"]))}], max_tokens=3)
            verdicts.setdefault(r["system"], []).append(reply.strip().lower().startswith("yes"))
    except BackendUnavailable as exc:
        return {"skipped": str(exc)}
    return {"model": model.describe(), **{system: {"faithful": m.share(v), "n": len(v)}
                                          for system, v in verdicts.items()}}


def _bar(items, enabled: bool, desc: str):
    return tqdm(items, desc=desc, unit="q", file=sys.stderr, disable=not enabled, leave=False)

