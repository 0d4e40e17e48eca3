"""Benchmarks, each figure measured in the same run as the naive LangChain baseline (evals/baseline.py).

    python -m evals.bench [--quick] [--out DIR] [--only SECTION ...]

Sections (progress on stderr, results in DIR/bench.json, default benchmarks/latest/):
  ingest   `python -m ingest` of the bank into an empty data folder, first embedding everything
           (COACH_VECTORS=0, a new machine's first ingest), then as usual (vectors of texts embedded
           before read from the embedder's file), then again unchanged, against the baseline's
           indexing (split 1000/200, embed, add) in a subprocess too
  startup  cold `app.py search`, `app.py ask` (extractive, then COACH_LLM=llamacpp) and `app.py bank`,
           each a new process, wall time median of 5 (the time a person waits at the shell); since
           2026-12-08 the embedded model writes no answers, so its `ask` loads no model either
  bank     retrieval latency p50/p95 and hit@5 on the gold queries: our default mode (hybrid + rerank; runs
           before 2026-12-03 08:00 timed hybrid without the rerank stage) vs baseline similarity top-4
  scale    the same at 10k and 100k chunks (the bank plus synthetic distractors with precomputed
           vectors), embedded Chroma and a real `chroma run` server
  answers  end-to-end first-token and total time per backend (extractive, llamacpp, openai against a
           `python -m llama_cpp.server` started here), ours and the baseline's; ours with llamacpp is the
           composed answer (it writes nothing since 2026-12-08), the baseline's still generates with it
  tokens   the embedded model's prefill and generation tokens/s, and the embedder's chunks/s
  app      `python app.py serve`: seconds from start to HTTP 200, its peak RSS after a few answers, and
           after grading a few wrong answers through /grade too (the grader's models loaded); with
           COACH_LLM=llamacpp ours no longer holds the model, the baseline's process does

Every figure is {"value": float, "unit": str}, plus "baseline" and "ratio" (value / baseline) where a
baseline applies, and "target" / "pass" where the project sets one. --quick measures fewer queries and
skips the 100k point, for development; the committed figures come from a full run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from evals.datasets import GOLD, GRADING_BLIND, load_jsonl
from evals.metrics import hit_at_k
from evals.retrieval import evaluate
from evals.servers import ROOT, app_server, chroma_server, llama_server

SECTIONS = ("ingest", "startup", "bank", "scale", "answers", "tokens", "app")
DEFAULT_OUT = ROOT / "benchmarks" / "latest"
# Targets on 2 CPU cores (issue 9).
RETRIEVAL_RATIO_MAX = 1.3
TTFT_MAX_MS = 1000.0
SCALE_P95_MAX_MS = 150.0
INGEST_COLD_MAX_S = 10.0      # issue 21 (was 20)
INGEST_UNCHANGED_MAX_S = 2.0
RSS_MAX_MIB = 700.0           # issue 21 (was 1,229)
APP_READY_MAX_S = 5.0
SCALE_RATIO_MAX = 1.3         # issue 21: our p95 (default mode) / the baseline's at 100k, with a higher hit@5
# Cold commands (issue 21): seconds from `python app.py ...` to its exit, median of STARTUP_RUNS.
STARTUP_RUNS = 5
TIMING_PASSES = 3  # each retrieval query timed 3 times on ours and on the baseline, paired (time_pairs)
STARTUP = {"search": (["search", "what is dropout", "--json"], "extractive", 2.0),
           "ask_extractive": (["ask", "what is dropout", "--json"], "extractive", 3.0),
           "ask_llamacpp": (["ask", "what is dropout", "--json"], "llamacpp", 4.0),
           "bank": (["bank", "--json"], "extractive", None)}
SYNTHETIC_NOISE = 0.07  # per-dimension noise around a bank vector: cosine ~0.6 to it, a plausible neighbour
BASELINE_INDEX = ("import json, sys\nfrom evals.baseline import Baseline\n"
                  "from coach.llm import get_backend\n"
                  "b = Baseline(backend=get_backend(kind='extractive'), persist_dir=sys.argv[1])\n"
                  "print(json.dumps({'chunks': b.chunks}))")
# The baseline reports its own peak RSS: a child's ru_maxrss from wait4 starts from the parent's at the
# fork, so it read as the benchmark's own 2 GB peak after the 100k scale points.
BASELINE_ASK = ("import sys\nfrom evals.baseline import Baseline\n"
                "b = Baseline(persist_dir=sys.argv[1])\nfor q in sys.argv[2:]: b.ask(q)\n"
                "print(next(l for l in open('/proc/self/status') if l.startswith('VmHWM:')))")
_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"[bench {time.monotonic() - _STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def figure(value, unit: str, baseline=None, target: float | None = None, **extra) -> dict:
    """One figure in the contract's shape; `target` is a maximum (every target here is an upper bound).
    Each records the 1-minute load average when it was taken: the 2 cores are often shared."""
    out = {"value": None if value is None else round(float(value), 3), "unit": unit,
           "load_average": round(os.getloadavg()[0], 2)}
    if baseline is not None:
        out["baseline"] = round(float(baseline), 3)
        out["ratio"] = round(float(value) / float(baseline), 3) if value is not None and baseline else None
    if target is not None:
        out["target"] = {"max": target}
        out["pass"] = None if value is None else bool(value <= target)
    return {**out, **extra}


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


# --- ingest ------------------------------------------------------------------------------------
def clean_env(data_dir: Path, **extra) -> dict:
    env = {**os.environ, "COACH_DATA_DIR": str(data_dir), **extra}
    env.pop("COACH_CHROMA_URL", None)
    return env


def timed_run(cmd: list[str], env: dict) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:3])} failed ({done.returncode}): {done.stderr[-2000:]}")
    return elapsed, done.stdout


def bench_ingest(work: Path, figures: dict, details: dict) -> None:
    data, base_dir = work / "bank", work / "baseline"
    ingest = [sys.executable, "-m", "ingest", "--json", "--quiet"]
    say("ingest: first ingest on a machine (COACH_VECTORS=0: every chunk and key embedded)")
    first_s, _ = timed_run(ingest, clean_env(work / "first", COACH_VECTORS="0"))
    say(f"ingest: {first_s:.1f}s; an ingest that fills the embedder's vector file, not timed (as `make setup` "
        "does on a new machine; quick when the file is full already)")
    timed_run(ingest, clean_env(work / "setup"))
    say("ingest: cold `python -m ingest` into an empty data folder (vectors of unchanged texts read from the "
        "embedder's file, as on any set-up machine)")
    cold_s, out = timed_run(ingest, clean_env(data))
    chunks = json.loads(out)["added"]
    say(f"ingest: {chunks} chunks in {cold_s:.1f}s; again, unchanged")
    unchanged_s, out = timed_run(ingest, clean_env(data))
    unchanged = json.loads(out)["unchanged"]
    say("ingest: the baseline's indexing (split 1000/200, embed, add) in a subprocess")
    # COACH_VECTORS=0: the recipe as a user runs it embeds every chunk (the test suite's baseline reads the
    # vectors an earlier build left in the embedder's file, evals.baseline.StoredChunks)
    plain = clean_env(data, COACH_VECTORS="0")
    base_cold_s, out = timed_run([sys.executable, "-c", BASELINE_INDEX, str(base_dir)], plain)
    base_chunks = json.loads(out)["chunks"]
    base_again_s, _ = timed_run([sys.executable, "-c", BASELINE_INDEX, str(base_dir)], plain)
    figures["ingest_cold_s"] = figure(cold_s, "s", base_cold_s, INGEST_COLD_MAX_S)
    figures["ingest_first_s"] = figure(first_s, "s", base_cold_s)
    figures["ingest_cold_throughput"] = figure(chunks / cold_s, "chunks/s", base_chunks / base_cold_s)
    figures["ingest_unchanged_s"] = figure(unchanged_s, "s", base_again_s, INGEST_UNCHANGED_MAX_S)
    figures["ingest_unchanged_throughput"] = figure(unchanged / unchanged_s, "chunks/s",
                                                    base_chunks / base_again_s)
    details["ingest"] = {"chunks": chunks, "unchanged_chunks": unchanged, "baseline_chunks": base_chunks,
                         "note": "wall time of the whole process (interpreter start, imports, model load "
                                 "included); the baseline re-run only reopens its collection, it cannot "
                                 "tell what changed; ingest_first_s embeds everything (no vector file, "
                                 "as the first ingest on a new machine), ingest_cold_s reads the vectors "
                                 "of texts embedded before from coach.embedder's vector file"}


# --- cold commands ---------------------------------------------------------------------------------
def bench_startup(work: Path, figures: dict, details: dict) -> None:
    """Each command as a person runs it: a new process on the bank's index, wall time to exit."""
    details["startup"] = {"runs": STARTUP_RUNS, "commands": {}}
    for name, (args, backend, target) in STARTUP.items():
        env = clean_env((work / "bank").resolve(), COACH_LLM=backend)
        say(f"startup: `app.py {' '.join(args)}` ({backend}), {STARTUP_RUNS} cold runs")
        times = [timed_run([sys.executable, "app.py", *args], env)[0] for _ in range(STARTUP_RUNS)]
        figures[f"cold_{name}_s"] = figure(np.median(times), "s", target=target)
        details["startup"]["commands"][name] = {"args": args, "backend": backend,
                                                "seconds": [round(t, 2) for t in times]}


# --- retrieval on the bank -------------------------------------------------------------------------
def time_searches(search, queries: list[dict], to_ids, clear) -> dict:
    """hit@4/hit@5 of search(query, 5)'s ids over the queries (query cache cleared first)."""
    clear()
    hits4, hits5 = [], []
    for item in queries:
        ids = to_ids(search(item["query"], 5))
        hits4.append(hit_at_k(ids, item["expected"], 4))
        hits5.append(hit_at_k(ids, item["expected"], 5))
    return {"hit@4": float(np.mean(hits4)), "hit@5": float(np.mean(hits5)), "n": len(queries)}


def time_pairs(ours, baseline, queries: list[dict], clear, passes: int = TIMING_PASSES) -> dict[str, dict]:
    """Latency p50/p95 (ms) of ours(query) and baseline(query), each query timed on both back to back
    (which goes first alternates), every query `passes` times, the query cache cleared before each
    call so both embed it. Timed one after the other, a load that came and went between the two
    passes moved the ratio: at 100k the same code measured 1.2x to 1.9x the baseline's p95 within
    an hour on this 2-core machine (benchmarks/README.md); paired, both meet the same load."""
    latencies = {"ours": [], "baseline": []}
    for round_ in range(passes):
        for n, item in enumerate(queries):
            pair = [("ours", ours), ("baseline", baseline)]
            for name, search in pair if (n + round_) % 2 == 0 else pair[::-1]:
                clear()
                started = time.perf_counter()
                search(item["query"])
                latencies[name].append((time.perf_counter() - started) * 1000)
    return {name: {"p50": percentile(values, 50), "p95": percentile(values, 95), "timed": len(values)}
            for name, values in latencies.items()}


def bench_bank(work: Path, queries: list[dict], figures: dict, details: dict) -> None:
    from coach.llm import get_backend
    from coach.retrieval import HybridRetriever
    from coach.store import open_store
    from evals.baseline import Baseline, qids_of

    store = open_store(bank_settings(work))
    retriever = HybridRetriever(store=store)
    baseline = Baseline(backend=get_backend(kind="extractive"), persist_dir=work / "baseline")
    retriever.search(queries[0]["query"])
    baseline.search(queries[0]["query"])
    say(f"bank: {retriever.mode} search (the default mode), {len(queries)} gold queries, {store.count()} chunks")
    ours = evaluate(retriever, queries, retriever.mode)
    say(f"bank: the baseline's similarity search, {baseline.chunks} chunks")
    # The recipe's top 4; k=5 only so hit@5 compares like with like (latency is the same). A chunk's bank ids
    # were stored when the baseline indexed it (evals.baseline.qids_of), the same mapping the eval suite uses.
    base = time_searches(lambda q, k: baseline.search(q, k=k), queries,
                         lambda docs: list(dict.fromkeys(qid for doc in docs for qid in qids_of(doc))),
                         store.embeddings.clear_cache)
    say(f"bank: latency, ours and the baseline's paired per query, {TIMING_PASSES} passes")
    timed = time_pairs(retriever.search, lambda q: baseline.search(q, k=5), queries,
                       store.embeddings.clear_cache)
    ours["latency_ms"], base = _rounded(timed["ours"]), {**base, **timed["baseline"]}
    better = ours["hit@5"] > base["hit@5"]
    ratio = ours["latency_ms"]["p50"] / base["p50"]
    figures["bank_retrieval_p50_ms"] = figure(ours["latency_ms"]["p50"], "ms", base["p50"], more_accurate=better)
    figures["bank_retrieval_p50_ms"]["target"] = {"max_ratio": RETRIEVAL_RATIO_MAX, "more_accurate": True}
    figures["bank_retrieval_p50_ms"]["pass"] = bool(ratio <= RETRIEVAL_RATIO_MAX and better)
    figures["bank_retrieval_p95_ms"] = figure(ours["latency_ms"]["p95"], "ms", base["p95"])
    figures["bank_hit@5"] = figure(ours["hit@5"], "share", base["hit@5"])
    figures["bank_mrr"] = figure(ours["mrr"], "score")
    details["bank"] = {"queries": len(queries), "chunks": store.count(), "baseline_chunks": baseline.chunks,
                       "ours": {k: ours[k] for k in ("hit@1", "hit@3", "hit@5", "mrr", "latency_ms")},
                       "baseline": base,
                       "note": "latency includes embedding the query (cache cleared before each call), ours and the "
                               f"baseline timed paired per query, {TIMING_PASSES} passes (time_pairs); "
                               f"ours is the default mode ({retriever.mode}: dense and BM25 over chunks and question "
                               "keys, fused, re-scored, calibrated), the baseline plain "
                               "vector similarity over its 1000-character chunks"}


def _rounded(latency: dict) -> dict:
    return {"p50": round(latency["p50"], 2), "p95": round(latency["p95"], 2), "timed": latency["timed"]}


def bank_settings(work: Path):
    from coach.config import get_settings

    return dataclasses.replace(get_settings(), data_dir=(work / "bank").resolve(), chroma_url=None)


# --- retrieval at scale --------------------------------------------------------------------------
def synthetic(bank: dict, total: int, seed: int = 0):
    """Yield batches of (ids, vectors, texts, metadatas) for `total` distractor chunks: each vector a
    noisy copy of a bank vector (normalised), each text random words of the bank's vocabulary, so both
    dense and BM25 search meet plausible competitors."""
    rng = np.random.default_rng(seed)
    centres = np.asarray(bank["embeddings"], dtype=np.float32)
    vocab = np.array(sorted({w for text in bank["documents"] for w in re.findall(r"[a-z]{3,}", text.lower())}))
    for start in range(0, total, 5000):
        n = min(5000, total - start)
        vectors = centres[rng.integers(len(centres), size=n)] + rng.normal(0, SYNTHETIC_NOISE, (n, centres.shape[1]))
        vectors = (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)
        words = vocab[rng.integers(len(vocab), size=(n, 60))]
        ids = [f"syn-{start + i}" for i in range(n)]
        texts = [f"Synthetic note {start + i}\n\n" + " ".join(row) for i, row in enumerate(words)]
        metas = [{"source": f"synthetic/{(start + i) // 50}.md", "kind": "synthetic", "qid": ids[i],
                  "question": f"Synthetic note {start + i}", "part": 9, "topic": "synthetic", "piece": 0,
                  "pieces": 1, "content_hash": ids[i]} for i in range(n)]
        yield ids, vectors, texts, metas


def load_store(settings, bank: dict, size: int, keys: dict | None = None):
    """A Store holding the bank plus size - len(bank) synthetic chunks, and the bank's question keys
    (headings and `asked_as`, as an ingest writes them), BM25 indexes built."""
    from coach.store import Store

    store = Store(settings)
    if keys and keys["ids"]:
        store.keys.add(ids=keys["ids"], embeddings=np.asarray(keys["embeddings"], dtype=np.float32),
                       documents=keys["documents"], metadatas=keys["metadatas"])
    store.collection.add(ids=bank["ids"], embeddings=np.asarray(bank["embeddings"], dtype=np.float32),
                         documents=bank["documents"], metadatas=bank["metadatas"])
    for ids, vectors, texts, metas in synthetic(bank, max(0, size - len(bank["ids"]))):
        store.collection.add(ids=ids, embeddings=vectors, documents=texts, metadatas=metas)
    store.sync_bm25()
    return store


def bench_scale(work: Path, queries: list[dict], sizes: list[int], figures: dict, details: dict) -> None:
    from coach.retrieval import HybridRetriever
    from coach.store import open_store

    bank_store = open_store(bank_settings(work))
    bank = bank_store.collection.get(include=["embeddings", "documents", "metadatas"])
    keys = bank_store.keys.get(include=["embeddings", "documents", "metadatas"])
    details["scale"] = {"queries": len(queries), "points": [],
                        "note": f"the bank's {len(bank['ids'])} chunks plus synthetic distractors: vectors "
                                f"are bank vectors plus N(0, {SYNTHETIC_NOISE}) noise, normalised; texts are "
                                "60 random words of the bank's vocabulary; the bank's question keys are "
                                "indexed as an ingest writes them. Baseline = langchain-chroma "
                                "similarity_search top-4 on the same collection. Latency: ours and the "
                                f"baseline paired per query, {TIMING_PASSES} passes (time_pairs)."}
    with tempfile.TemporaryDirectory(prefix="chroma-server-", dir=work) as server_dir, \
            chroma_server(Path(server_dir)) as url:
        say(f"scale: chroma server at {url}")
        for size in sizes:
            for kind in ("embedded", "server"):
                name = f"bench_{size}_{kind}"
                settings = dataclasses.replace(bank_settings(work), data_dir=(work / name).resolve(),
                                               collection=name, chroma_url=url if kind == "server" else None)
                say(f"scale: loading {size} chunks into {kind} Chroma")
                started = time.perf_counter()
                store = load_store(settings, bank, size, keys)
                load_s = time.perf_counter() - started
                retriever = HybridRetriever(store=store)
                retriever.search(queries[0]["query"])
                say(f"scale: {size} {kind}: loaded in {load_s:.0f}s; timing {len(queries)} queries")
                ours = evaluate(retriever, queries, retriever.mode)  # what users get: the default mode
                base = time_searches(lambda q, k, s=store: s.vectors.similarity_search(q, k=k), queries,
                                     lambda docs: [d.metadata.get("qid") for d in docs],
                                     store.embeddings.clear_cache)
                timed = time_pairs(retriever.search, lambda q, s=store: s.vectors.similarity_search(q, k=5),
                                   queries, store.embeddings.clear_cache)
                ours["latency_ms"], base = _rounded(timed["ours"]), {**base, **timed["baseline"]}
                label = "bank" if size <= len(bank["ids"]) else f"{size // 1000}k"
                target = SCALE_P95_MAX_MS if size >= 100_000 else None
                figures[f"retrieval_{label}_{kind}_p50_ms"] = figure(ours["latency_ms"]["p50"], "ms", base["p50"])
                figures[f"retrieval_{label}_{kind}_p95_ms"] = figure(ours["latency_ms"]["p95"], "ms", base["p95"],
                                                                     target)
                if size >= 100_000:  # issue 21: within 1.3x of the baseline, and more accurate
                    p95 = figures[f"retrieval_{label}_{kind}_p95_ms"]
                    p95["target"] = {"max": target, "max_ratio": SCALE_RATIO_MAX, "more_accurate": True}
                    p95["pass"] = bool(p95["pass"] and p95["ratio"] <= SCALE_RATIO_MAX and ours["hit@5"] > base["hit@5"])
                figures[f"retrieval_{label}_{kind}_hit@5"] = figure(ours["hit@5"], "share", base["hit@5"])
                details["scale"]["points"].append({"chunks": store.count(), "chroma": kind, "load_s": round(load_s, 1),
                                                   "ours": {k: ours[k] for k in ("hit@5", "mrr", "latency_ms")},
                                                   "baseline": base})
                store.client.delete_collection(name)
                shutil.rmtree(settings.data_dir, ignore_errors=True)


# --- answers end to end ------------------------------------------------------------------------------
def bench_answers(work: Path, questions: list[dict], backends: list[str], figures: dict, details: dict) -> None:
    from coach.answer import Answerer
    from coach.llm import get_backend
    from coach.retrieval import HybridRetriever
    from coach.store import open_store
    from evals.baseline import Baseline

    settings = bank_settings(work)
    retriever = HybridRetriever(store=open_store(settings))
    details["answers"] = {"questions": len(questions),
                          "note": "medians over in-scope gold questions on a warm process (models loaded, "
                                  "sentence vectors warmed as the served app does, query cache empty); first token = "
                                  "the first model token streamed (for extractive and, since 2026-12-08, "
                                  "llamacpp, which stream nothing, the whole answer). The baseline stuffs its 4 chunks (~1,000 tokens) "
                                  "into the prompt; ours gives the model 5 evidence sentences."}
    say("answers: warming the sentence vectors, as `app.py serve` does once it is ready")
    Answerer(retriever=retriever, backend=get_backend(settings, kind="extractive")).warm_up()
    for kind in backends:
        if kind == "openai":
            with llama_server() as url:
                say(f"answers: openai backend against llama_cpp.server at {url}")
                backend = get_backend(dataclasses.replace(settings, openai_base_url=url, openai_model="smollm2"),
                                      kind="openai")
                answer_pass(kind, Answerer(retriever=retriever, backend=backend),
                            Baseline(backend=backend, persist_dir=work / "baseline"), questions, figures, details)
        else:
            say(f"answers: {kind} backend")
            backend = get_backend(settings, kind=kind)
            answer_pass(kind, Answerer(retriever=retriever, backend=backend),
                        Baseline(backend=backend, persist_dir=work / "baseline") if kind != "extractive" else None,
                        questions, figures, details)


def clear_queries() -> None:
    """Forget cached query vectors (each pass embeds its questions), keep the warmed sentence vectors."""
    from coach.config import get_settings
    from coach.embedder import embedder

    embedder(get_settings().embedder).embed_query.cache_clear()


def answer_pass(kind: str, answerer, baseline, questions: list[dict], figures: dict, details: dict) -> None:
    answerer.ask(questions[0]["query"])  # load the models (a writing backend's too) before timing
    clear_queries()
    ours = [answerer.ask(q["query"]).as_json() for q in questions]
    first = [a["timings"]["first_token_ms"] or a["timings"]["total_ms"] for a in ours if not a["refused"]]
    total = [a["timings"]["total_ms"] for a in ours if not a["refused"]]
    base_first = base_total = None
    if baseline is not None:
        baseline.ask(questions[0]["query"])
        clear_queries()
        theirs = [baseline.ask(q["query"]) for q in questions]
        base_first = percentile([a["timings"]["first_token_ms"] for a in theirs
                                 if a["timings"]["first_token_ms"] is not None], 50)
        base_total = percentile([a["timings"]["total_ms"] for a in theirs], 50)
    figures[f"answer_{kind}_first_token_ms"] = figure(percentile(first, 50), "ms", base_first,
                                                      TTFT_MAX_MS if kind == "llamacpp" else None)
    figures[f"answer_{kind}_total_ms"] = figure(percentile(total, 50), "ms", base_total)
    details["answers"][kind] = {"answered": len(total), "refused": sum(a["refused"] for a in ours),
                                "fallback": sum(bool(a["fallback"]) for a in ours),
                                "first_token_ms_p95": percentile(first, 95), "total_ms_p95": percentile(total, 95)}


# --- model throughput ---------------------------------------------------------------------------------
def bench_tokens(work: Path, figures: dict, details: dict) -> None:
    from coach.embedder import embedder
    from coach.llm import get_backend
    from coach.store import open_store

    llm = get_backend(bank_settings(work), kind="llamacpp").llm
    store = open_store(bank_settings(work))
    texts = store.collection.get(limit=256, include=["documents"])["documents"]
    prompt = "Explain, step by step, how a transformer layer works.\n\n" + "\n\n".join(texts[:4])
    prefill, generation = [], []
    for _ in range(3):
        llm.reset()  # no reuse of a cached prefix between runs
        started, stamps = time.perf_counter(), []
        for _chunk in llm.create_completion(prompt, max_tokens=96, temperature=0.0, stream=True):
            stamps.append(time.perf_counter())
        n_prompt = len(llm.tokenize(prompt.encode()))
        prefill.append(n_prompt / (stamps[0] - started))
        if len(stamps) > 1:
            generation.append((len(stamps) - 1) / (stamps[-1] - stamps[0]))
    say(f"tokens: llamacpp prefill {np.median(prefill):.0f} tok/s, generation {np.median(generation):.0f} tok/s")
    figures["llm_generation_tokens_per_s"] = figure(np.median(generation), "tokens/s")
    figures["llm_prefill_tokens_per_s"] = figure(np.median(prefill), "tokens/s")
    model = embedder(store.settings.embedder)
    model.embed_documents(texts[:8])
    started = time.perf_counter()
    model.embed_documents(texts)
    figures["embedder_chunks_per_s"] = figure(len(texts) / (time.perf_counter() - started), "chunks/s")
    details["tokens"] = {"prompt_tokens": n_prompt, "runs": 3, "embedder_batch": len(texts)}


# --- the served app ------------------------------------------------------------------------------------
def bench_app(work: Path, questions: list[dict], figures: dict, details: dict) -> None:
    from gradio_client import Client

    data = (work / "bank").resolve()
    say("app: starting `python app.py serve` (llamacpp) and waiting for HTTP 200")
    with app_server(clean_env(data, COACH_LLM="llamacpp")) as (url, proc, ready_s):
        say(f"app: ready in {ready_s:.1f}s; asking {len(questions)} questions through /ask")
        client = Client(url, verbose=False)
        for q in questions:
            client.predict(q["query"], api_name="/ask")
        rss = peak_rss_mib(proc.pid)
        wrong = [row for row in load_jsonl(GRADING_BLIND) if row["kind"] == "wrong"][:len(questions)]
        say(f"app: grading {len(wrong)} wrong answers through /grade (the grader and its mistake model load)")
        for row in wrong:
            client.predict(row["question"], row["answer"], api_name="/grade")
        graded_rss = peak_rss_mib(proc.pid)
    say("app: the baseline answering the same questions in its own process")
    done = subprocess.run([sys.executable, "-c", BASELINE_ASK, str(work / "baseline"),
                           *[q["query"] for q in questions]], cwd=ROOT, env=clean_env(data, COACH_LLM="llamacpp"),
                          capture_output=True, text=True)
    hwm = re.search(r"VmHWM:\s*(\d+) kB", done.stdout) if done.returncode == 0 else None
    base_rss = int(hwm.group(1)) / 1024 if hwm else None
    figures["app_ready_s"] = figure(ready_s, "s", target=APP_READY_MAX_S)
    figures["app_peak_rss_mib"] = figure(rss, "MiB", base_rss, RSS_MAX_MIB)
    figures["app_peak_rss_graded_mib"] = figure(graded_rss, "MiB")
    details["app"] = {"questions": len(questions), "backend": "llamacpp",
                      "note": "peak RSS (VmHWM) of the serving process after answering; the baseline's is "
                              "the peak RSS of a process that builds nothing and answers the same questions; "
                              "app_peak_rss_graded_mib: the same process after grading as many answers too "
                              "(no baseline grades)"}


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


# --- main ----------------------------------------------------------------------------------------------
def machine() -> dict:
    return {"cores": os.cpu_count(), "load_average_start": [round(x, 2) for x in os.getloadavg()],
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "python": platform.python_version(),
            "platform": platform.platform()}


def targets(figures: dict) -> list[dict]:
    return [{"figure": name, "value": f["value"], "target": f["target"], "pass": f["pass"]}
            for name, f in figures.items() if "target" in f]


def save(result: dict, out: Path) -> None:
    result["machine"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    result["machine"]["bench_peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["machine"]["seconds"] = round(time.monotonic() - _STARTED, 1)
    result["targets"] = targets(result["figures"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(result, indent=2) + "\n")


def markdown(result: dict) -> str:
    """The figures as a markdown table (for benchmarks/README.md)."""
    def show(x):
        return "" if x is None else f"{x:,.3g}" if abs(x) < 100 else f"{x:,.0f}"

    lines = ["| figure | ours | baseline | ratio | target | pass | load |", "|---|---|---|---|---|---|---|"]
    for name, f in result["figures"].items():
        target = f.get("target") or {}
        target = ", ".join(([f"≤ {show(target['max'])}"] if "max" in target else []) +
                           ([f"≤ {target['max_ratio']}× baseline, more accurate"] if "max_ratio" in target else []))
        verdict = {True: "yes", False: "**no**", None: "n/a"}[f["pass"]] if "pass" in f else ""
        lines.append(f"| {name} ({f['unit']}) | {show(f['value'])} | {show(f.get('baseline'))} | "
                     f"{show(f.get('ratio'))} | {target} | {verdict} | {show(f.get('load_average'))} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="40 queries, 5 answers per backend, scale points 10k only (for development)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)}); ingest always runs first")
    parser.add_argument("--queries", type=int, metavar="N",
                        help="retrieval queries per measurement (default: all 160 gold queries; 40 with --quick)")
    parser.add_argument("--answers", type=int, metavar="N",
                        help="questions answered per backend (default 20; 5 with --quick)")
    parser.add_argument("--sizes", nargs="+", type=int, metavar="N",
                        help="chunk counts of the scale points (default: the bank, 10000, 100000; 10000 with --quick)")
    parser.add_argument("--backends", nargs="+", default=["extractive", "llamacpp", "openai"],
                        choices=["extractive", "llamacpp", "openai"])
    parser.add_argument("--table", type=Path, metavar="BENCH.json",
                        help="only print the figures of an existing bench.json as a markdown table")
    args = parser.parse_args(argv)
    if args.table:
        print(markdown(json.loads(args.table.read_text())))
        return 0

    from coach.config import setup_logging

    setup_logging()
    sections = set(args.only or SECTIONS) | {"ingest"}
    gold = load_jsonl(GOLD)
    n_queries = min(len(gold), args.queries or (40 if args.quick else len(gold)))
    queries = random.Random(0).sample(gold, n_queries) if n_queries < len(gold) else gold
    questions = random.Random(1).sample(gold, args.answers or (5 if args.quick else 20))
    sizes = args.sizes or ([10_000] if args.quick else [0, 10_000, 100_000])
    result = {"machine": machine(), "quick": args.quick, "complete": False, "figures": {}, "details": {},
              "command": " ".join(["python -m evals.bench", *(argv if argv is not None else sys.argv[1:])])}
    figures, details = result["figures"], result["details"]
    work = Path(tempfile.mkdtemp(prefix="coach-bench-"))
    runs = [("startup", lambda: bench_startup(work, figures, details)),
            ("bank", lambda: bench_bank(work, queries, figures, details)),
            ("scale", lambda: bench_scale(work, queries, sizes, figures, details)),
            ("answers", lambda: bench_answers(work, questions, args.backends, figures, details)),
            ("tokens", lambda: bench_tokens(work, figures, details)),
            ("app", lambda: bench_app(work, questions[:3], figures, details))]
    try:
        bench_ingest(work, figures, details)
        for name, run in runs:
            if name in sections:
                try:
                    run()
                except Exception as exc:  # one broken section must not lose the others' figures
                    details.setdefault("errors", {})[name] = f"{type(exc).__name__}: {exc}"
                    say(f"{name}: FAILED: {exc}")
                save(result, args.out)  # after every section: an interrupted run keeps what it measured
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["complete"] = not details.get("errors")
    save(result, args.out)
    say(f"wrote {args.out / 'bench.json'}")
    for t in result["targets"]:
        verdict = {True: "pass", False: "MISS", None: "n/a"}[t["pass"]]
        print(f"{verdict:4}  {t['figure']}: {t['value']} (target {t['target']})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
