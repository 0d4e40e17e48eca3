"""Answer quality per backend: does it answer what the bank covers, refuse what it does not, and cite
only what supports it?

    python -m evals.answers [--backend llamacpp|openai|extractive] [--in-scope N] [--out FILE.json]

The full suite with quality metrics and the baseline is `python -m evals`; this is the quick per-backend
view. In-scope questions are the retrieval gold set (each names the bank entries that answer it);
out-of-scope questions are evals/sets/out_of_scope.jsonl. For the openai backend, point
COACH_OPENAI_BASE_URL at a running server (e.g. `python -m llama_cpp.server --model …`).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from coach.text import citations_of, split_sentences
from evals.datasets import GOLD, OUT_OF_SCOPE, load_jsonl
from evals.suite import ours_record


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.answers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backend", choices=["llamacpp", "openai", "extractive"], help="default: COACH_LLM")
    parser.add_argument("--in-scope", type=int, default=0, metavar="N",
                        help="a random sample of N in-scope questions (default: all)")
    parser.add_argument("--out", type=Path, help="also write the metrics as JSON here")
    args = parser.parse_args(argv)

    from coach.answer import Answerer
    from coach.config import setup_logging
    from coach.llm import get_backend

    setup_logging()
    answerer = Answerer(backend=get_backend(kind=args.backend))
    in_scope = load_jsonl(GOLD)
    if args.in_scope:
        in_scope = random.Random(0).sample(in_scope, args.in_scope)
    answerer.ask(in_scope[0]["query"])  # load every model before timing anything
    out_of_scope = load_jsonl(OUT_OF_SCOPE)
    result = evaluate(_Progress(answerer, len(in_scope) + len(out_of_scope)), in_scope, out_of_scope)
    result["backend"] = answerer.backend.describe()
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
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
