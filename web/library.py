"""The Library tab: add files to the index, see every indexed source, delete one, re-index everything;
and the passages flagged at ingest as instructions to an AI.

The work is done by `ingest.uploads` (checks, storage under COACH_DATA_DIR/uploads, indexing); this
module only shows it. Every handler ends by refreshing the sources table and the delete dropdown, since
each of them can change what is indexed.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from coach.render import preview_html
from ingest import uploads
from ingest.loaders import SUPPORTED


class LibraryTab:
    def __init__(self, store):
        self.store = store
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                self._build_upload()
            with gr.Column(scale=3, min_width=280):
                self._build_sources()
        refreshed = [self.table, self.choice]
        self.preview_button.click(self.preview, self.files, self.preview_panel, api_name=False)
        self.inspect.click(self.inspect_source, self.choice, self.preview_panel, api_name=False)
        self.add.click(self.add_files, self.files, [self.results, self.preview_panel, *refreshed], api_name=False)
        self.remove.click(self.delete, self.choice, [self.status, *refreshed], api_name=False)
        self.rebuild.click(self.reindex, None, [self.status, *refreshed], api_name=False)

    def _build_upload(self) -> None:
        self.files = gr.File(label=f"Add files ({', '.join(sorted(SUPPORTED))}; several at once)",
                             file_count="multiple", file_types=sorted(SUPPORTED), elem_id="upload")
        with gr.Row():
            self.preview_button = gr.Button("Preview questions", elem_id="preview-files")
            self.add = gr.Button("Add to the index", variant="primary", elem_id="add-files")
        self.results = gr.Dataframe(headers=["file", "result", "detail"], label="Upload results",
                                    interactive=False, elem_id="upload-results", wrap=True)

    def _build_sources(self) -> None:
        rows = self.source_rows()
        self.table = gr.Dataframe(rows, headers=["source", "kind", "questions", "chunks"],
                                  label="Indexed sources", interactive=False, elem_id="sources-table")
        with gr.Row():
            self.choice = gr.Dropdown([r[0] for r in rows], label="Source", elem_id="delete-choice")
            self.inspect = gr.Button("Show its questions", elem_id="inspect-source")
            self.remove = gr.Button("Delete source", variant="stop", elem_id="delete-source")
        self.rebuild = gr.Button("Re-index everything", elem_id="reindex")
        self.status = gr.Markdown(elem_id="library-status")
        gr.Markdown("#### Questions detected\nBefore indexing (Preview questions) or after (choose a source, "
                    "Show its questions): the questions each file was split into, and what was left out "
                    "(tables of contents, links, images, sponsor lines, questions without an answer).")
        self.preview_panel = gr.HTML(preview_html([]), elem_id="preview")

    def source_rows(self) -> list[list]:
        return [[r["source"], r["kind"], r["questions"], r["chunks"]] for r in uploads.sources(self.store)]

    def refreshed(self) -> dict:
        """The sources table and the delete dropdown as the index now is."""
        rows = self.source_rows()
        return {self.table: rows, self.choice: gr.update(choices=[r[0] for r in rows], value=None)}

    # --- handlers ------------------------------------------------------------------------------
    def add_files(self, files, progress=gr.Progress()) -> dict:  # noqa: B008 (Gradio injects the tracker this way)
        if not files:
            return {self.results: [["", "error", "choose one or more files first"]], **self.refreshed()}
        results, previews = [], []
        for n, file in enumerate(files):
            path = getattr(file, "name", file)
            progress((n, len(files)), desc=f"indexing {Path(path).name}")
            result = uploads.add(path, Path(path).name)
            results.append([result["file"], result["status"], result["detail"]])
            previews.append({"file": result["file"], "error": result["detail"]} if result["status"] == "error"
                            else {k: result.get(k) for k in ("file", "questions", "dropped")})
        return {self.results: results, self.preview_panel: preview_html(previews), **self.refreshed()}

    def preview(self, files) -> str:
        """What indexing the chosen files would keep, without indexing them."""
        if not files:
            return preview_html([])
        return preview_html([uploads.preview(getattr(f, "name", f), Path(getattr(f, "name", f)).name) for f in files])

    def inspect_source(self, source) -> str:
        """The questions an indexed source holds, and what its file had dropped."""
        if not source:
            return "<p><em>Choose a source first.</em></p>"
        return preview_html([uploads.indexed_preview(self.store, source)])

    def delete(self, source) -> dict:
        if not source:
            return {self.status: "Choose a source to delete.", **self.refreshed()}
        removed = uploads.delete(source)
        return {self.status: f"Removed `{source}` ({removed} chunks).", **self.refreshed()}

    def reindex(self, progress=gr.Progress()) -> dict:  # noqa: B008
        progress(0, desc="re-indexing the bank and uploads")
        report = uploads.reindex()
        errors = "".join(f"\n- `{e['source']}`: {e['error']}" for e in report.errors)
        status = (f"Re-indexed: {report.added} added, {report.updated} updated, {report.unchanged} unchanged, "
                  f"{report.deleted} removed chunks.{errors}")
        return {self.status: status, **self.refreshed()}


class FlaggedPassages:
    """Passages flagged at ingest as instructions to an AI (they reach the model only datamarked),
    refreshed by a button and whenever the Library tab is opened."""

    def __init__(self, store, tab: gr.Tab):
        self.store = store
        gr.Markdown("#### Flagged passages\nText that reads like instructions to an AI (an injection hidden in "
                    "a document). It stays searchable, but its instruction sentences never reach the model and "
                    "the rest is sent as marked data.")
        self.table = gr.Dataframe(self.rows(), headers=["source", "question", "reason"], label="Flagged passages",
                                  interactive=False, wrap=True, elem_id="flagged-table")
        self.refresh = gr.Button("Refresh flagged passages", size="sm", elem_id="flagged-refresh")
        self.refresh.click(self.rows, None, self.table, api_name=False)
        tab.select(self.rows, None, self.table, api_name=False)

    def rows(self) -> list[list]:
        return [[r["source"], r["question"], r["reason"]] for r in uploads.flagged(self.store)]
