"""The Evaluate tab: runs the evaluation suite (this pipeline against the naive LangChain baseline) on a
small sample with a progress bar, then shows the report and its plots.

The suite and the report are `evals`' own (`python -m evals` runs the same); the tab reads the report
back from the folder it was written to, so the page shows exactly what a terminal run would leave.
"""
from __future__ import annotations

import re
from pathlib import Path

import gradio as gr

from evals.__main__ import DEFAULT_OUT
from evals.suite import available_sets
from web import access

NO_REPORT = "_No report yet: run the suite._"


class EvaluateTab:
    def __init__(self, out: Path | None = None):
        self.out = out or DEFAULT_OUT
        gr.Markdown("Measures retrieval, answers, refusals, the support check, guards and grading on the sets "
                    "in `evals/sets/`, for this pipeline and for the naive LangChain baseline. The full suite is "
                    "`python -m evals`; here a small sample keeps a run to a few minutes.")
        with gr.Row():
            self.backend = gr.Dropdown(["extractive", "llamacpp", "openai"], value="extractive", label="Backend",
                                       elem_id="eval-backend")
            self.limit = gr.Number(20, label="Rows per set (0 = all)", precision=0, minimum=0, elem_id="eval-limit")
            self.baseline = gr.Checkbox(True, label="Compare with the baseline", elem_id="eval-baseline")
        self.sets = gr.CheckboxGroup(available_sets(), value=available_sets(), label="Sets", elem_id="eval-sets")
        self.start = gr.Button("Run the evaluation", variant="primary", elem_id="eval-run")
        report, plots = self.last_report()
        self.report = gr.Markdown(report, elem_id="eval-report")
        self.plots = gr.Gallery(plots, label="Plots", columns=2, height="auto", elem_id="eval-plots")
        self.start.click(self.run_suite, [self.backend, self.limit, self.baseline, self.sets],
                         [self.report, self.plots], api_name=False)

    def last_report(self) -> tuple[str, list[str]]:
        """The report's markdown without its image lines (the plots go to the gallery) and the plots."""
        report = self.out / "report.md"
        if not report.exists():
            return NO_REPORT, []
        text = re.sub(r"^!\[.*$", "", report.read_text(encoding="utf-8"), flags=re.M)
        return text, [str(p) for p in sorted(self.out.glob("*.png"))]

    @access.guarded
    def run_suite(self, backend, limit, baseline, sets, progress=gr.Progress(track_tqdm=True),  # noqa: B008
                  request: gr.Request = None) -> dict:
        """Run the suite (admins only: it loads models for minutes and writes report files)."""
        access.require_admin(request)
        from evals import report as report_writer
        from evals.suite import Options, run

        if not sets:
            return {self.report: "Choose at least one set.", self.plots: self.last_report()[1]}
        progress(0, desc="loading models")
        try:
            result = run(Options(backend=backend, baseline=baseline, sets=list(sets), limit=int(limit or 0)))
        except Exception as exc:  # shown in the tab rather than lost in a log
            return {self.report: f"**The run failed:** {exc}", self.plots: self.last_report()[1]}
        report_writer.write(result, self.out)
        text, plots = self.last_report()
        return {self.report: text, self.plots: plots}
