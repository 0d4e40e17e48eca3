"""Write a suite run: metrics.json, report.md, PNG plots and the RAGAS-layout export; compare two runs.

The headline table is every main figure as (ours, baseline). A run written into a folder that already
holds a metrics.json is compared with it, and figures that got worse beyond a tolerance are flagged.
"""
from __future__ import annotations

import json
from pathlib import Path

# name -> (label, where in metrics.json, higher is better)
HEADLINE = {
    "hit@1": ("retrieval hit@1", ("retrieval", "hit@1"), True),
    "hit@3": ("retrieval hit@3", ("retrieval", "hit@3"), True),
    "hit@5": ("retrieval hit@5", ("retrieval", "hit@5"), True),
    "mrr": ("retrieval MRR", ("retrieval", "mrr"), True),
    "ndcg@5": ("retrieval nDCG@5", ("retrieval", "ndcg@5"), True),
    "faithfulness": ("faithfulness", ("answers", "faithfulness"), True),
    "citation_precision": ("citation precision", ("answers", "citation_precision"), True),
    "citation_recall": ("citation recall", ("answers", "citation_recall"), True),
    "answer_relevance": ("answer relevance", ("answers", "answer_relevance"), True),
    "context_precision": ("context precision", ("answers", "context_precision"), True),
    "context_recall": ("context recall", ("answers", "context_recall"), True),
    "answered_rate": ("answered, in scope", ("answers", "answered_rate"), True),
    "refusal_precision": ("refusal precision", ("answers", "refusal_precision"), True),
    "refusal_recall": ("refusal recall (out of scope refused)", ("answers", "refusal_recall"), True),
    "latency_p50": ("answer latency p50 (ms)", ("answers", "latency_ms", "total", "p50"), False),
    "latency_p95": ("answer latency p95 (ms)", ("answers", "latency_ms", "total", "p95"), False),
}
# Sections measured for our pipeline only.
SINGLE = {
    "support_kept": ("support check: supported kept", ("support", "default", "supported_kept"), True),
    "support_dropped": ("support check: unsupported dropped", ("support", "default", "unsupported_dropped"), True),
    "attack_success_rate": ("guards: attack success rate", ("guards", "attack_success_rate"), False),
    "false_positive_rate": ("guards: false-positive rate", ("guards", "false_positive_rate"), False),
    "grader_spearman": ("grader: Spearman vs bands", ("grading", "spearman"), True),
    "grader_spearman_holdout": ("grader: Spearman vs bands, held-out set", ("grading", "holdout", "spearman"), True),
    "real_hit1_heldout": ("real questions, held-out half: hit@1", ("real_questions", "heldout", "hit@1"), True),
    "real_hit5_heldout": ("real questions, held-out half: hit@5", ("real_questions", "heldout", "hit@5"), True),
    "real_right_entry_heldout": ("real questions, held-out half: right entry at rank 1",
                                 ("real_questions", "heldout", "right_entry_at_1"), True),
    "real_first_right_tuning": ("real questions, tuning: first citation right",
                                ("real_questions", "tuning", "first_citation_right"), True),
    "real_key_points_tuning": ("real questions, tuning: key-point coverage",
                               ("real_questions", "tuning", "key_point_coverage"), True),
    "real_first_right_heldout": ("real questions, held-out: first citation right",
                                 ("real_questions", "heldout", "first_citation_right"), True),
    "real_key_points_heldout": ("real questions, held-out: key-point coverage",
                                ("real_questions", "heldout", "key_point_coverage"), True),
    "grader_blind_spearman": ("grader: Spearman vs human scores, blind held-out half",
                              ("grading", "blind_heldout", "spearman"), True),
    "grader_blind_ordering": ("grader: complete > partial > wrong, blind held-out half",
                              ("grading", "blind_heldout", "ordering"), True),
    "grader_blind_named": ("grader: wrong answers whose misconception is named, blind held-out half",
                           ("grading", "blind_heldout", "misconception_named"), True),
    "grader_blind_accused": ("grader: correct answers wrongly accused, blind held-out half",
                             ("grading", "blind_heldout", "correct_accused"), False),
    "grader_never_fitted_ordering": ("grader: complete > partial > wrong, never-fitted sets pooled",
                                     ("grading", "blind_never_fitted_pooled", "ordering"), True),
    "grader_never_fitted_named": ("grader: misconception named, never-fitted sets pooled",
                                  ("grading", "blind_never_fitted_pooled", "misconception_named"), True),
    "grader_never_fitted_accused": ("grader: correct answers wrongly accused, never-fitted sets pooled",
                                    ("grading", "blind_never_fitted_pooled", "correct_accused"), False),
    "grader_never_fitted_error": ("grader: mean absolute error vs human scores (0-10), never-fitted sets pooled",
                                  ("grading", "blind_never_fitted_pooled", "mean_abs_error"), False),
}
TOLERANCE = 0.02          # a share that drops more than this is a regression
LATENCY_TOLERANCE = 0.25  # a latency that grows more than 25% is one


def _get(metrics: dict, path: tuple) -> float | None:
    node = metrics
    for key in path:
        if not isinstance(node, dict) or key not in node:
            return None
        node = node[key]
    return node if isinstance(node, (int, float)) else None


def headline(metrics: dict) -> dict[str, dict]:
    """name -> {"ours": value, "baseline": value} (None where not measured)."""
    out = {}
    for name, (_, path, _) in HEADLINE.items():
        out[name] = {system: _get(metrics, (path[0], system, *path[1:])) for system in ("ours", "baseline")}
    for name, (_, path, _) in SINGLE.items():
        out[name] = {"ours": _get(metrics, path), "baseline": None}
    return {name: v for name, v in out.items() if v["ours"] is not None or v["baseline"] is not None}


def regressions(current: dict, previous: dict | None) -> dict[str, dict]:
    """Our figures that got worse than in the previous run, beyond the tolerance."""
    if not previous:
        return {}
    now, before = headline(current), headline(previous)
    worse = {}
    for name, values in now.items():
        a, b = (before.get(name) or {}).get("ours"), values["ours"]
        if a is None or b is None:
            continue
        higher_is_better = {**HEADLINE, **SINGLE}[name][2]
        if name.startswith("latency"):
            bad = b > a * (1 + LATENCY_TOLERANCE)
        else:
            bad = (a - b > TOLERANCE) if higher_is_better else (b - a > TOLERANCE)
        if bad:
            worse[name] = {"previous": a, "now": b}
    return worse


def fmt(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and abs(value) <= 1.0:
        return f"{value:.3f}"
    return f"{value:,.0f}" if isinstance(value, (int, float)) else str(value)


def headline_table(metrics: dict, previous: dict | None = None) -> str:
    rows, worse, before = headline(metrics), regressions(metrics, previous), headline(previous or {})
    lines = ["| metric | ours | baseline |" + (" previous (ours) |" if previous else ""),
             "|---|---|---|" + ("---|" if previous else "")]
    for name, values in rows.items():
        label = {**HEADLINE, **SINGLE}[name][0]
        ours = fmt(values["ours"])
        if name in worse:
            ours = f"**{ours} ⚠ regression**"
        line = f"| {label} | {ours} | {fmt(values['baseline'])} |"
        if previous:
            line += f" {fmt((before.get(name) or {}).get('ours'))} |"
        lines.append(line)
    return "\n".join(lines)


def write(run, out: Path) -> dict:
    """Write every output of a run into `out`; returns the metrics as written."""
    out.mkdir(parents=True, exist_ok=True)
    previous = load(out) if (out / "metrics.json").exists() else None
    metrics = dict(run.metrics)
    metrics["regressions"] = regressions(metrics, previous)
    if previous:
        metrics["previous_run"] = previous.get("meta", {}).get("started")
    plots = write_plots(metrics, run.records, out)
    export = write_ragas(run.records, out)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(markdown(metrics, previous, plots, export), encoding="utf-8")
    return metrics


def load(path: Path) -> dict:
    """A run's metrics, from its folder or its metrics.json; a clear error if it is not one."""
    path = Path(path)
    file = path / "metrics.json" if path.is_dir() else path
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{file}: no such file (give a run folder holding metrics.json)") from None
    except ValueError as exc:
        raise ValueError(f"{file}: not a metrics.json ({exc})") from None


def markdown(metrics: dict, previous: dict | None, plots: list[str], export: list[str]) -> str:
    meta = metrics["meta"]
    limit = f", a fixed sample of at most {meta['limit']} rows per set" if meta.get("limit") else ""
    parts = [f"# Evaluation report\n\n{meta['started']}: backend **{meta['backend']}**, sets "
             f"{', '.join(meta['sets'])}{limit}; {meta['chunks']} chunks indexed; refusal threshold "
             f"{meta['threshold']}; {meta.get('seconds', 0):.0f} s.\n",
             "**ours** is this project's pipeline (hybrid retrieval, calibrated refusal, support-checked "
             "answers with citations); **baseline** is the naive LangChain recipe (`evals/baseline.py`: "
             "1000/200 character chunks, Chroma top-4, same embedder and model, plain prompt).\n",
             "## Headline\n", headline_table(metrics, previous), ""]
    if metrics.get("regressions"):
        parts.append("**Regressions against the previous run in this folder** "
                     f"({metrics.get('previous_run')}): "
                     + ", ".join(f"{k} {fmt(v['previous'])} → {fmt(v['now'])}" for k, v in metrics["regressions"].items())
                     + "\n")
    elif previous:
        parts.append(f"No regression against the previous run in this folder ({metrics.get('previous_run')}).\n")
    parts += _retrieval_section(metrics) + _real_questions_section(metrics) + _answers_section(metrics) + _other_sections(metrics)
    if plots:
        parts.append("## Plots\n\n" + "\n".join(f"![{p}]({p})" for p in plots) + "\n")
    if export:
        parts.append("## RAGAS export\n\n" + ", ".join(f"`{e}`" for e in export) + ": one JSON line per answer "
                     "(`question`, `contexts`, `answer`, `ground_truth`), to run RAGAS with your own judge.\n")
    parts.append(DEFINITIONS)
    return "\n".join(parts)


def _retrieval_section(metrics: dict) -> list[str]:
    r = metrics.get("retrieval")
    if not r:
        return []
    lines = ["## Retrieval per part (hit@5 / MRR)\n", "| part | n | ours | baseline |", "|---|---|---|---|"]
    for part, ours in r["ours"]["by_part"].items():
        base = r.get("baseline", {}).get("by_part", {}).get(part)
        lines.append(f"| {part} | {ours['n']} | {ours['hit@5']:.3f} / {ours['mrr']:.3f} | "
                     + (f"{base['hit@5']:.3f} / {base['mrr']:.3f} |" if base else "— |"))
    lines += ["", "## Retrieval per style (hit@5 / MRR)\n", "| style | n | ours | baseline |", "|---|---|---|---|"]
    for style, ours in r["ours"]["by_style"].items():
        base = r.get("baseline", {}).get("by_style", {}).get(style)
        lines.append(f"| {style} | {ours['n']} | {ours['hit@5']:.3f} / {ours['mrr']:.3f} | "
                     + (f"{base['hit@5']:.3f} / {base['mrr']:.3f} |" if base else "— |"))
    weak = sorted(r["ours"]["by_topic"].items(), key=lambda kv: (kv[1]["hit@5"], kv[1]["mrr"]))[:8]
    lines += ["", "Weakest topics for ours (hit@5, MRR, n): "
              + "; ".join(f"{t} {v['hit@5']:.2f}, {v['mrr']:.2f}, {v['n']}" for t, v in weak)
              + ". Every topic is in `topic_hit5.png` and metrics.json.", "",
              f"Search latency p50: ours {r['ours']['latency_ms']['p50']:.1f} ms"
              + (f", baseline {r['baseline']['latency_ms']['p50']:.1f} ms" if "baseline" in r else "") + ".\n"]
    return lines


def _real_questions_section(metrics: dict) -> list[str]:
    halves = metrics.get("real_questions")
    if not halves:
        return []
    lines = ["## Real interview questions (../shared dev set; ours, default retrieval mode)\n",
             "| half | covered | hit@1 | hit@5 | MRR | right entry at rank 1 | covered answered | uncovered refused |",
             "|---|---|---|---|---|---|---|---|"]
    for half, r in halves.items():
        refused = "—" if r["uncovered_refused"] is None else f"{r['uncovered_refused']:.3f} of {r['uncovered']}"
        lines.append(f"| {half} | {r['covered']} | {r['hit@1']:.3f} | {r['hit@5']:.3f} | {r['mrr']:.3f} | "
                     f"{r['right_entry_at_1']:.3f} | {r['covered_answered']:.3f} | {refused} |")
    return lines + ["", "hit@k counts the labelled bank_id or one of its alt_ids; the right entry at rank 1 is "
                        "the bank_id itself. Only the tuning half was used to fit weights and thresholds.\n"]


def _answers_section(metrics: dict) -> list[str]:
    a = metrics.get("answers")
    if not a:
        return []
    ours = a["ours"]
    lines = ["## Answers\n", f"{ours['in_scope']} in-scope and {ours['out_of_scope']} out-of-scope questions; "
             "answer metrics are averaged over the answered in-scope ones."]
    if ours.get("model_sentences_dropped") is not None:
        lines.append(f"Ours: the support check dropped {ours['model_sentences_dropped']:.1%} of the model's "
                     f"sentences; {ours['extractive_fallback'] or 0:.1%} of answers fell back to extractive.")
    for system, values in a.items():
        for kind in ("total", "first_token"):
            lat = values["latency_ms"][kind]
            if lat:
                lines.append(f"- {system}, {kind.replace('_', ' ')} ms: p50 {lat['p50']:,.0f}, p90 {lat['p90']:,.0f}, "
                             f"p95 {lat['p95']:,.0f}, max {lat['max']:,.0f} (n={lat['n']})")
        if values.get("errors"):
            lines.append(f"- {system}: {values['errors']} answers failed with a backend error")
    return lines + [""]


def _other_sections(metrics: dict) -> list[str]:
    lines = []
    if "support" in metrics:
        lines += ["## Support check (support_pairs.jsonl)\n", "The sentence check behind faithfulness, on "
                  "hand-made supported and unsupported sentences.\n",
                  "| rule | pairs | supported kept | unsupported dropped |", "|---|---|---|---|"]
        lines += [f"| {rule} | {v['pairs']} | {v['supported_kept']:.3f} | {v['unsupported_dropped']:.3f} |"
                  for rule, v in metrics["support"].items()] + [""]
    for half, v in (metrics.get("real_questions") or {}).items():
        if "questions" not in v:
            continue  # retrieval figures only: the real_questions set itself (its answers) was not run
        lines += [f"## Real questions, {half} half (../shared/real-questions/dev.jsonl)\n",
                  f"{v['questions']} questions: {v['covered']} covered (full or partial), {v['uncovered']} not. "
                  f"First citation right {fmt(v['first_citation_right'])} (full only "
                  f"{fmt(v['first_citation_right_full'])}); key-point coverage {fmt(v['key_point_coverage'])} "
                  f"(full only {fmt(v['key_point_coverage_full'])}; against the labelled entry "
                  f"{fmt(v.get('key_point_coverage_labelled'))}); uncovered refused {fmt(v['refused_uncovered'])}; "
                  f"covered refused {fmt(v['refused_covered'])}; wrong statements {v['wrong_statements']} of "
                  f"{v['sentences']} sentences; premises corrected {v['premises_corrected']}; answers with a "
                  "dangling opening / table fragment / formula stub / citation gap: "
                  + " / ".join(str(n) for n in v["defects"].values()) + ".\n"]
    lines += _blind_grading(metrics.get("grading", {}))
    for section, title in (("guards", "Guards (attacks.jsonl)"),
                           ("grading", "Grader (grading.jsonl; holdout: grading_holdout.jsonl)"),
                           ("judge", "LLM judge (reported apart)")):
        if section in metrics:
            lines += [f"## {title}\n", "```json", json.dumps(metrics[section], indent=1), "```", ""]
    return lines


def _blind_grading(grading: dict) -> list[str]:
    """The blind grading sets as a table: the first set's halves, then the fresh sets in order."""
    halves = [(key.removeprefix("blind_"), value) for key, value in grading.items() if key.startswith("blind_")]
    if not halves:
        return []
    kinds = ("complete", "partial", "wrong", "restating", "off_topic")
    lines = ["## Grader on the blind sets (grading_blind.jsonl split by question; grading_fresh.jsonl to grading_fresh4.jsonl; grading_fresh5.jsonl to grading_fresh9.jsonl never fitted on by main, tuning data for naming passes that did not land; from grading_fresh10.jsonl on, never fitted on)\n",
             *([f"Graded with: {grading['models']}.\n"] if grading.get("models") else []),
             "| half | answers | Spearman vs human | mean abs. error vs human | complete > partial > wrong | "
             "misconception named | correct accused | " + " | ".join(kinds) + " |", "|---" * (7 + len(kinds)) + "|"]
    for name, r in halves:
        lines.append(f"| {name} | {r['n']} | {r['spearman']:.3f} | {r.get('mean_abs_error', float('nan')):.2f} "
                     f"| {r['ordering']:.0%} | {r['misconception_named']:.0%} | {r['correct_accused']:.1%} | "
                     + " | ".join(f"{r['per_kind'].get(k, float('nan')):.1f}" for k in kinds) + " |")
    return lines + [""]


DEFINITIONS = """## Definitions

Anchored on RAGAS and DeepEval, computed locally (no hosted judge): sentence-level judgements use
`coach.support.SupportChecker` with its default rule (meaning, shared words, numbers) for both systems.

- **faithfulness**: share of answer sentences supported by the passages the sentence cites (ours; a
  sentence without a citation counts as unsupported) or by the retrieved context (baseline, which cites nothing).
- **citation precision / recall**: cited bank entries that are gold / gold entries that are cited.
- **answer relevance**: cosine similarity of the answer's and the question's MiniLM embeddings
  (RAGAS generates questions from the answer with an LLM first; we embed the answer directly).
- **context precision**: RAGAS's rank-weighted precision of the retrieved contexts (a context is
  relevant when it belongs to a gold entry; a baseline chunk counts when it overlaps one).
- **context recall**: share of the gold entry's key points that the retrieved contexts support.
- **refusal precision / recall**: refusals that were out of scope / out-of-scope questions refused.
  The baseline refuses only when its model says it cannot answer.
- **first citation right** (real questions): the answer's first citation is the labelled entry or one
  of its alternatives; a refused covered question is a miss. **key-point coverage**: share of the
  labelled entry's key points the answer states, by `coach.grader.Grader.assess` (credit ≥ 0.5).
- **retrieval** for the baseline: its top-5 chunks mapped to the bank questions whose sections they
  overlap (a 1000-character chunk may span two), in rank order.
"""


# --- plots -----------------------------------------------------------------------------------------
def write_plots(metrics: dict, records: list[dict], out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    rows = {k: v for k, v in headline(metrics).items() if k in HEADLINE and not k.startswith("latency")
            and v["ours"] is not None}
    if rows:
        fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
        x = range(len(rows))
        ax.bar([i - 0.2 for i in x], [v["ours"] for v in rows.values()], 0.4, label="ours")
        ax.bar([i + 0.2 for i in x], [v["baseline"] or 0 for v in rows.values()], 0.4, label="baseline")
        ax.set_xticks(list(x), [HEADLINE[k][0].replace("retrieval ", "").split(" (")[0] for k in rows],
                      rotation=40, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"Ours vs naive baseline ({metrics['meta']['backend']})")
        ax.legend()
        ax.grid(axis="y", alpha=0.3)
        written.append(_save(fig, out / "metrics_bars.png", plt))
    retrieval = metrics.get("retrieval")
    if retrieval:
        topics = sorted(retrieval["ours"]["by_topic"])
        systems = [s for s in ("ours", "baseline") if s in retrieval]
        grid = [[retrieval[s]["by_topic"][t]["hit@5"] for s in systems] for t in topics]
        fig, ax = plt.subplots(figsize=(4.5, max(3.0, 0.2 * len(topics) + 1)), dpi=110)
        image = ax.imshow(grid, aspect="auto", cmap="RdYlGn", vmin=0, vmax=1)
        ax.set_xticks(range(len(systems)), systems)
        ax.set_yticks(range(len(topics)), [f"{t} ({retrieval['ours']['by_topic'][t]['n']})" for t in topics],
                      fontsize=6)
        ax.set_title("hit@5 per topic", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.05)
        written.append(_save(fig, out / "topic_hit5.png", plt))
    latencies = {s: [r["total_ms"] / 1000 for r in records if r["system"] == s and r["answered"] and r["total_ms"]]
                 for s in ("ours", "baseline")}
    if any(latencies.values()):
        fig, ax = plt.subplots(figsize=(6, 3.6), dpi=110)
        for system, values in latencies.items():
            if values:
                ax.hist(values, bins=30, alpha=0.6, label=f"{system} (n={len(values)})")
        ax.set_xlabel("answer latency, seconds")
        ax.set_ylabel("answers")
        ax.set_title("Answer latency")
        ax.legend()
        written.append(_save(fig, out / "latency.png", plt))
    if metrics.get("refusal_curve"):
        from evals.calibrate import plot

        plot(metrics["refusal_curve"], {"threshold": metrics["meta"]["threshold"]}, out / "threshold_curve.png")
        written.append("threshold_curve.png")
    return written


def _save(fig, path: Path, plt) -> str:
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path.name


# --- the RAGAS export ------------------------------------------------------------------------------
def write_ragas(records: list[dict], out: Path) -> list[str]:
    """question, contexts, answer, ground_truth per answer (the layout ragas.EvaluationDataset reads),
    one file per system; ground truth is the gold bank entry's answer, or the refusal for out of scope."""
    from coach.bank import load_bank
    from coach.config import get_settings

    if not records:
        return []
    bank = {e.id: e for e in load_bank(get_settings().corpus_dir)}
    written = []
    for system in ("ours", "baseline"):
        rows = [r for r in records if r["system"] == system]
        if not rows:
            continue
        lines = []
        for r in rows:
            gold = bank.get(r["expected"][0]) if r["expected"] else None
            lines.append(json.dumps({"question": r["question"], "contexts": [c["text"] for c in r["contexts"]],
                                     "answer": r["answer"],
                                     "ground_truth": gold.answer if gold else "The question bank does not cover this."},
                                    ensure_ascii=False))
        name = f"ragas_{system}.jsonl"
        (out / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(name)
    return written


def compare(a: dict, b: dict, name_a: str = "A", name_b: str = "B") -> str:
    """Markdown table of two runs' figures (ours and baseline of each) with the change in ours."""
    ha, hb = headline(a), headline(b)
    lines = [f"A = {name_a} ({a.get('meta', {}).get('backend')}, {a.get('meta', {}).get('started')})",
             f"B = {name_b} ({b.get('meta', {}).get('backend')}, {b.get('meta', {}).get('started')})", "",
             "| metric | A ours | B ours | Δ ours | A baseline | B baseline |", "|---|---|---|---|---|---|"]
    for name in dict.fromkeys([*ha, *hb]):
        va, vb = ha.get(name, {}), hb.get(name, {})
        oa, ob = va.get("ours"), vb.get("ours")
        delta = f"{ob - oa:+.3f}" if oa is not None and ob is not None and abs(oa) <= 1 and abs(ob) <= 1 else (
            f"{ob - oa:+,.0f}" if oa is not None and ob is not None else "—")
        lines.append(f"| {({**HEADLINE, **SINGLE})[name][0]} | {fmt(oa)} | {fmt(ob)} | {delta} | "
                     f"{fmt(va.get('baseline'))} | {fmt(vb.get('baseline'))} |")
    return "\n".join(lines)
