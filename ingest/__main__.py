"""python -m ingest [PATH ...] [--rebuild] [--json]"""
from __future__ import annotations

import argparse
import json
import sys
import time

from coach.config import get_settings, setup_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Index question banks, scraped articles, markdown, text, HTML and PDF files into the "
                    "search index (Chroma + BM25). Incremental: unchanged questions are skipped, edited "
                    "ones replaced, removed ones deleted.",
        epilog="Examples:\n  python -m ingest                 # the bank in corpus/\n"
               "  python -m ingest notes/ paper.pdf\n  python -m ingest --rebuild --json",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", help="files or folders (default: corpus/)")
    parser.add_argument("--rebuild", action="store_true", help="drop the whole index and build it again")
    parser.add_argument("--json", action="store_true", help="print one JSON report on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--progress", action="store_true",
                        help="progress bars even when stderr is not a terminal (for logs and wrappers)")
    args = parser.parse_args(argv)
    setup_logging()

    from ingest.pipeline import ingest

    settings = get_settings()
    started = time.perf_counter()
    report = ingest(args.paths or None, rebuild=args.rebuild, progress=args.progress or (not args.quiet and sys.stderr.isatty()),
                    settings=settings)
    elapsed = time.perf_counter() - started
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(f"{report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
              f"{report.deleted} deleted chunks from {report.files} file(s) in {elapsed:.1f}s "
              f"-> {settings.data_dir}")
        for item in report.flagged:
            print(f"flagged  {item['source']} [{item['chunk_id']}]: {item['reason']}")
        for item in report.errors:
            print(f"skipped  {item['source']}: {item['error']}", file=sys.stderr)
    # Exit 0 unless nothing at all could be read (contract).
    nothing_read = report.files == 0 and report.errors and not report.deleted
    return 1 if nothing_read else 0


if __name__ == "__main__":
    sys.exit(main())
