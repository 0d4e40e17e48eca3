"""Real documents, uploaded as a learner would: are they split right, and do they leave the bank alone?

    python -m evals.documents DIR [--truth DIR/truth.json] [--answers]

DIR holds real question collections (markdown, HTML, PDF, text). They are not ours, so they are never
committed: a person keeps them outside the project and writes a hand count, `truth.json`, mapping each
file name to the opening words of every question that has an answer in it. Measured:

- sections: precision and recall of the detected questions against the hand count;
- chunks that are mainly links, tables and code blocks split across chunks, chunks flagged as injections;
- with `--answers` (slow: every question answered): the documents are indexed beside the bank in a copy
  of the index, then the share of bank-answerable questions (the retrieval gold set, and the real-question
  dev set's "full" rows, each half apart) whose first citation is a bank entry in the default scope, and
  the out-of-scope refusal rate, both beside the same figures without the documents. Bank-first also
  counts refusals (a refused question cites nothing), which is calibration, not uploads; so beside it,
  "kept": of the questions that cite a bank entry first without the documents, the share still doing
  so with them, which only an upload taking the first place can lower.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import shutil
import sys
import tempfile
from pathlib import Path

from evals.datasets import GOLD, OUT_OF_SCOPE, load_jsonl, real_questions

LINK = re.compile(r"\[[^\]]*\]\([^)]*\)|https?://\S+")
FORMATS = {".md": "markdown", ".markdown": "markdown", ".html": "html", ".htm": "html", ".pdf": "pdf", ".txt": "text"}


def section_scores(folder: Path, truth: dict[str, list[str]]) -> dict:
    """Precision and recall of detected question titles against the hand count, per file and overall."""
    from ingest.loaders import read_document

    per_file, tp, fp, fn = {}, 0, 0, 0
    for name, expected in sorted(truth.items()):
        _, found = read_document(folder / name, name, 50 * 2**20)
        titles = [s.question.lower() for s in found.sections]
        matched, false = set(), []
        for title in titles:
            hit = next((e for e in expected if e.lower() not in matched and
                        (title.startswith(e.lower()) or e.lower() in title)), None)
            matched.add(hit.lower()) if hit else false.append(title)
        missed = [e for e in expected if e.lower() not in matched]
        per_file[name] = {"format": FORMATS.get(Path(name).suffix.lower(), "?"), "expected": len(expected),
                          "detected": len(titles), "false": false, "missed": missed, "dropped": len(found.dropped)}
        tp, fp, fn = tp + len(matched), fp + len(false), fn + len(missed)
    return {"precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, tp + fn), 4),
            "documents": len(truth), "formats": sorted({f["format"] for f in per_file.values()}),
            "questions": tp + fn, "files": per_file}


def chunk_checks(store, sources: set[str]) -> dict:
    """Over the chunks of `sources`: mainly-link chunks, split code blocks and tables, injection flags."""
    got = store.everything(["documents", "metadatas"])
    chunks = [(text, meta) for text, meta in zip(got["documents"], got["metadatas"], strict=True)
              if meta.get("source") in sources]
    link_heavy = sum(len("".join(LINK.findall(text))) > 0.5 * len(text) for text, _ in chunks)
    split = sum(_splits(text) for text, _ in chunks)
    flagged = [{"source": m["source"], "question": m.get("question"), "reason": m["flagged"]}
               for _, m in chunks if m.get("flagged")]
    return {"chunks": len(chunks), "mainly_links": link_heavy, "split_code_or_tables": split, "flagged": flagged}


def _splits(text: str) -> int:
    """1 when a chunk holds half a code block (an odd number of fences) or starts or ends inside a table."""
    fences = len(re.findall(r"^\s{0,3}(?:```|~~~)", text, re.M))
    lines = [line for line in text.split("\n") if line.strip()]
    table_cut = bool(lines) and (lines[-1].lstrip().startswith("|") and not _table_complete(lines)
                                 or re.match(r"^\s*\|\s*:?-{3,}", lines[1] if len(lines) > 1 else "") is None
                                 and lines[0].lstrip().startswith("|") and len(lines) > 1
                                 and lines[1].lstrip().startswith("|") and not re.search(r"-{3,}", lines[1]))
    return int(fences % 2 == 1 or table_cut)


def _table_complete(lines: list[str]) -> bool:
    """A chunk ending with a table holds its header: a '|---|' row appears among its table lines."""
    start = len(lines)
    while start > 0 and lines[start - 1].lstrip().startswith("|"):
        start -= 1
    return any(re.search(r"\|\s*:?-{3,}", line) for line in lines[start:])


def answers(settings, folder: Path) -> dict:
    """Bank-first and refusal rates in the default scope, without and then with the documents indexed."""
    from coach.answer import Answerer
    from coach.llm import get_backend
    from coach.retrieval import HybridRetriever
    from coach.store import open_store
    from ingest.pipeline import ingest

    bank_questions = {"gold": [r["query"] for r in load_jsonl(GOLD)]}
    for half in ("tuning", "heldout"):
        bank_questions[f"real_{half}"] = [r["question"] for r in real_questions(half) if r.get("coverage") == "full"]
    outside = [r["query"] for r in load_jsonl(OUT_OF_SCOPE)]
    figures, firsts = {}, {}
    for label in ("without_documents", "with_documents"):
        if label == "with_documents":
            report = ingest([folder], progress=False, settings=settings)
            figures["ingest"] = {"added": report.added, "errors": report.errors, "flagged": len(report.flagged)}
        answerer = Answerer(retriever=HybridRetriever(store=open_store(settings)), backend=get_backend(kind="extractive"))
        row = {}
        for name, questions in bank_questions.items():
            cited = [answerer.ask(q).citations for q in questions]
            firsts[label, name] = [bool(c) and c[0]["library"] == "bank" for c in cited]
            row[f"bank_first_{name}"] = round(sum(firsts[label, name]) / max(1, len(questions)), 4)
            row[f"docs_cited_{name}"] = sum(any(x["library"] == "docs" for x in c) for c in cited)
            row[f"n_{name}"] = len(questions)
        refused = [answerer.ask(q) for q in outside]
        row["refusal_rate_out_of_scope"] = round(sum(a.refused for a in refused) / len(outside), 4)
        row["answered_from_docs_out_of_scope"] = [a.question for a in refused if not a.refused and
                                                  any(c["library"] == "docs" for c in a.citations)]
        figures[label] = row
    figures["bank_first_side_by_side"] = {
        name: bank_first_kept(firsts["without_documents", name], firsts["with_documents", name])
        for name in bank_questions}
    return figures


def bank_first_kept(without: list[bool], with_documents: list[bool]) -> dict:
    """Per question, whether its first citation is a bank entry, without and with the documents: the
    bank-first share with them beside the share kept of those that were bank-first without them."""
    was_first = [now for before, now in zip(without, with_documents, strict=True) if before]
    return {"bank_first_with_documents": round(sum(with_documents) / max(1, len(with_documents)), 4),
            "kept_with_documents": round(sum(was_first) / len(was_first), 4) if was_first else None,
            "kept_of": len(was_first), "n": len(with_documents)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.documents", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--truth", type=Path, help="hand count (default: FOLDER/truth.json)")
    parser.add_argument("--answers", action="store_true", help="also bank-first and refusal rates (slow)")
    args = parser.parse_args(argv)
    from coach.config import get_settings, setup_logging
    from coach.store import open_store
    from ingest.pipeline import ingest, source_name

    setup_logging()
    truth = json.loads((args.truth or args.folder / "truth.json").read_text())
    result = {"sections": section_scores(args.folder, truth)}
    with tempfile.TemporaryDirectory(prefix="coach-docs-eval-") as tmp:
        base = get_settings()
        shutil.copytree(base.data_dir, Path(tmp) / "data", ignore=shutil.ignore_patterns("*.lock", "uploads"))
        settings = dataclasses.replace(base, data_dir=Path(tmp) / "data")
        if args.answers:
            result["answers"] = answers(settings, args.folder)
        else:
            ingest([args.folder], progress=False, settings=settings)
        sources = {source_name(p) for p in args.folder.iterdir() if p.name in truth}
        result["chunks"] = chunk_checks(open_store(settings), sources)
    print(json.dumps(result, indent=1, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
