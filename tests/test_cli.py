"""The command line keeps the contract: exact JSON shapes on stdout, logs on stderr, batch mode."""
from __future__ import annotations

import json

from conftest import run_cli
from helpers import check_search_document


def test_search_json(corpus_index):
    query = "why do we warm up the learning rate"
    out = run_cli("app.py", "search", query, "--k", "3", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)  # the whole of stdout is one JSON document
    check_search_document(doc, query)
    assert len(doc["results"]) == 3
    assert any("warm" in r["text"].lower() for r in doc["results"])


def test_search_batch_prints_one_line_per_input_in_order(corpus_index, tmp_path):
    queries = ["dropout at test time", "kv cache memory for long prompts", "catastrophic forgeting"]
    batch = tmp_path / "queries.jsonl"
    batch.write_text("\n".join(json.dumps({"question": q}) for q in queries) + "\n")
    out = run_cli("app.py", "search", "--batch", str(batch), "--json", "--part", "1")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().split("\n")
    assert len(lines) == 3
    for line, query in zip(lines, queries, strict=True):
        doc = json.loads(line)
        check_search_document(doc, query)
        assert {r["part"] for r in doc["results"]} == {1}  # the filter applies to every line


def test_bank_json_matches_the_loaded_bank(corpus_index):
    from coach.bank import load_bank
    from conftest import ROOT

    out = run_cli("app.py", "bank", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert set(doc) == {"questions"}
    bank = load_bank(ROOT / "corpus")
    assert [q["id"] for q in doc["questions"]] == [e.id for e in bank]
    for q in doc["questions"]:
        # the contract's fields, plus the second round's additions
        assert {"id", "part", "number", "topic", "difficulty", "question", "key_points"} <= set(q)
        assert all(isinstance(q[name], list) for name in ("asked_as", "misconceptions", "references"))
        assert len(q["key_point_alternatives"]) == len(q["key_points"])
        assert isinstance(q["part"], int) and isinstance(q["number"], int)
        assert q["difficulty"] in ("easy", "medium", "hard") and 3 <= len(q["key_points"]) <= 6


def test_overlong_and_empty_queries_are_refused_politely(corpus_index):
    long_query = "why " * 400
    out = run_cli("app.py", "search", long_query, "--json")
    assert out.returncode != 0 and "limit is 1000" in out.stderr and out.stdout == ""
    empty = run_cli("app.py", "search", "   ")
    assert empty.returncode != 0 and "empty" in empty.stderr


def test_help_is_helpful():
    out = run_cli("app.py", "--help")
    assert out.returncode == 0
    for command in ("serve", "search", "bank"):
        assert command in out.stdout
    same = run_cli("cli.py", "--help")  # the CLI module run directly is the same command line, not silence
    assert same.returncode == 0 and same.stdout == out.stdout
    ingest_help = run_cli("-m", "ingest", "--help")
    assert "--rebuild" in ingest_help.stdout and "Examples" in ingest_help.stdout
