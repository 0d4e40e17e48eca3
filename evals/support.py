"""How well does the sentence support check tell supported from unsupported sentences?

    python -m evals.support [--pairs evals/sets/support_pairs.jsonl] [--json]

Each pair is a bank entry id, one sentence an LLM might write about it, whether the entry's answer
supports it, and the kind of sentence (copy, paraphrase, merge; swap, negation, number, invented,
vague, offtopic). The checker sees the entry's question and answer as its only passage.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from evals.datasets import SUPPORT_PAIRS, load_jsonl

PAIRS = SUPPORT_PAIRS


def evaluate(pairs: list[dict], checker, bank: dict) -> dict:
    """Share of pairs judged correctly, overall and per kind, and which ones were misjudged."""
    per_kind, wrong = defaultdict(lambda: [0, 0]), []
    for pair in pairs:
        entry = bank[pair["id"]]
        supported = checker.check(pair["sentence"], [f"{entry.question}\n\n{entry.answer}"]).supported
        correct = supported == pair["supported"]
        per_kind[pair["kind"]][0] += correct
        per_kind[pair["kind"]][1] += 1
        if not correct:
            wrong.append(pair)

    def share(rows):
        right = [r for r in pairs if rows(r)]
        return sum(r not in wrong for r in right) / len(right) if right else None

    return {"pairs": len(pairs),
            "supported_kept": share(lambda r: r["supported"]),
            "unsupported_dropped": share(lambda r: not r["supported"]),
            "per_kind": {kind: round(right / total, 3) for kind, (right, total) in sorted(per_kind.items())},
            "misjudged": wrong}


def main(argv: list[str] | None = None) -> int:
    from coach.bank import load_bank
    from coach.config import get_settings, setup_logging
    from coach.embedder import embedder
    from coach.support import SupportChecker

    p = argparse.ArgumentParser(prog="python -m evals.support", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", default=str(PAIRS))
    p.add_argument("--strict", action="store_true", help="the stricter rule for models that invent (kept for comparison; the answer step no longer uses it)")
    p.add_argument("--json", action="store_true", help="print the metrics as JSON")
    args = p.parse_args(argv)
    setup_logging()
    bank = {entry.id: entry for entry in load_bank(get_settings().corpus_dir)}
    result = evaluate(load_jsonl(Path(args.pairs)), SupportChecker(embedder(), strict=args.strict), bank)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['pairs']} pairs: supported kept {result['supported_kept']:.1%}, "
          f"unsupported dropped {result['unsupported_dropped']:.1%}")
    for kind, share in result["per_kind"].items():
        print(f"  {kind:11} {share:.0%} judged right")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
