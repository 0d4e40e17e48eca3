"""The evaluation suite in one command: our pipeline against the naive LangChain baseline.

    python -m evals [--backend B] [--baseline | --no-baseline] [--sets a,b] [--limit N] [--out DIR] [--judge]
    python -m evals --compare RUN_A RUN_B

Runs every set in evals/sets/ (retrieval, answers, refusals, the support check, guards and grading when
their modules exist) and writes report.md, metrics.json, PNG plots and a RAGAS-layout export into
--out (default evals/reports/latest/). A run into a folder holding an earlier run flags regressions
against it. --compare prints a table of two runs (folders or metrics.json files) and exits.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).parent / "reports" / "latest"


def parser() -> argparse.ArgumentParser:
    from evals.suite import SET_NAMES

    p = argparse.ArgumentParser(prog="python -m evals", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=["llamacpp", "openai", "extractive"], help="answer backend (default: COACH_LLM)")
    p.add_argument("--baseline", action=argparse.BooleanOptionalAction, default=True,
                   help="also measure the naive LangChain baseline (default: yes)")
    p.add_argument("--sets", type=lambda text: [s.strip() for s in text.split(",") if s.strip()],
                   help=f"comma-separated sets to run, from: {', '.join(SET_NAMES)} (default: all present)")
    p.add_argument("--limit", type=int, default=0, metavar="N",
                   help="a fixed random sample of at most N rows per set (default: all rows)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default: {DEFAULT_OUT})")
    p.add_argument("--judge", action="store_true",
                   help="also have the configured openai model judge faithfulness (reported apart)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("RUN_A", "RUN_B"),
                   help="print a comparison of two runs (folders or metrics.json files) and exit")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from evals import report

    if args.compare:
        try:
            runs = [report.load(path) for path in args.compare]
        except ValueError as exc:
            raise SystemExit(f"error: {exc}") from None
        print(report.compare(*runs, *map(str, args.compare)))
        return 0
    if args.limit < 0:
        raise SystemExit("error: --limit must be 0 (all) or a positive number")

    from coach.config import setup_logging
    from coach.llm import BackendUnavailable
    from evals.suite import Options, choose_sets, run

    setup_logging()
    try:
        choose_sets(args.sets)
        result = run(Options(backend=args.backend, baseline=args.baseline, sets=args.sets, limit=args.limit,
                             judge=args.judge), progress=not args.no_progress)
    except (ValueError, BackendUnavailable) as exc:
        raise SystemExit(f"error: {exc}") from None
    metrics = report.write(result, args.out)
    print(report.headline_table(metrics))
    if metrics["regressions"]:
        print(f"\nregressions against the previous run: {', '.join(metrics['regressions'])}", file=sys.stderr)
    print(f"\nwrote {args.out / 'report.md'}, metrics.json and plots", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
