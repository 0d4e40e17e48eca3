"""The Library tab: add files to the index, see every indexed source, delete one, re-index everything;
and the passages flagged at ingest as instructions to an AI.

The work is done by `ingest.uploads` (checks, storage under COACH_DATA_DIR/uploads, indexing); this
module only shows it. Every handler ends by refreshing the sources table and the delete dropdown, since
each of them can change what is indexed.

Changing the library is for admins (`web.access`), and the bank itself is read-only here: only uploaded
sources can be chosen for deletion, nothing is chosen by default, and deletion asks for confirmation.
"""
from __future__ import annotations

from pathlib import Path

import gradio as gr

from coach.render import preview_html
from ingest import uploads
from ingest.loaders import SUPPORTED
from web import access


class LibraryTab:
    def __init__(self, store):
        self.store = store
        with gr.Row():
            with gr.Column(scale=2, min_width=280):
                self._build_upload()
            with gr.Column(scale=3, min_width=280):
                self._build_sources()
        refreshed = [self.table, self.choice, self.confirm_row]
        self.preview_button.click(self.preview, self.files, self.preview_panel, api_name=False)
        self.inspect.click(self.inspect_source, self.choice, self.preview_panel, api_name=False)
        self.add.click(self.add_files, self.files, [self.results, self.preview_panel, *refreshed], api_name=False)
        self.remove.click(self.ask_to_confirm, self.choice, [self.status, self.confirm_row], api_name=False)
        self.confirm.click(self.delete, self.choice, [self.status, *refreshed], api_name=False)
        self.cancel.click(self.cancel_delete, None, [self.status, self.confirm_row], api_name=False)
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
        sources = uploads.sources(self.store)
        self.table = gr.Dataframe(self.source_rows(sources), headers=["source", "kind", "questions", "chunks"],
                                  label="Indexed sources", interactive=False, elem_id="sources-table")
        with gr.Row():
            self.choice = gr.Dropdown(self.deletable(sources), value=None, label="Uploaded source",
                                      elem_id="delete-choice")
            self.inspect = gr.Button("Show its questions", elem_id="inspect-source")
            self.remove = gr.Button("Delete source", variant="stop", elem_id="delete-source")
        with gr.Row(visible=False, elem_id="delete-confirm-row") as self.confirm_row:
            self.confirm = gr.Button("Yes, delete it", variant="stop", elem_id="delete-confirm")
            self.cancel = gr.Button("Cancel", elem_id="delete-cancel")
        self.rebuild = gr.Button("Re-index everything", elem_id="reindex")
        self.status = gr.Markdown(elem_id="library-status")
        gr.Markdown("#### Questions detected\nBefore indexing (Preview questions) or after (choose a source, "
                    "Show its questions): the questions each file was split into, and what was left out "
                    "(tables of contents, links, images, sponsor lines, questions without an answer).")
        self.preview_panel = gr.HTML(preview_html([]), elem_id="preview")

    def admin_controls(self) -> list:
        return [self.add, self.preview_button, self.remove, self.rebuild, self.status]

    @access.guarded
    def show_rights(self, request: gr.Request = None) -> dict:
        """On page load: a learner sees the library but not the buttons that change it."""
        admin = access.user_of(request).is_admin
        note = "" if admin else "_The library is read-only for learners: an admin adds and removes sources._"
        return {self.add: gr.update(visible=admin), self.preview_button: gr.update(visible=admin),
                self.remove: gr.update(visible=admin),
                self.rebuild: gr.update(visible=admin), self.status: note}

    def source_rows(self, sources: list[dict] | None = None) -> list[list]:
        sources = uploads.sources(self.store) if sources is None else sources
        return [[r["source"], r["kind"], r["questions"], r["chunks"]] for r in sources]

    def deletable(self, sources: list[dict] | None = None) -> list[str]:
        """Uploaded sources only: the bank cannot be deleted from the app."""
        sources = uploads.sources(self.store) if sources is None else sources
        return [r["source"] for r in sources if uploads.is_upload(r["source"])]

    def refreshed(self) -> dict:
        """The sources table and the delete dropdown as the index now is (nothing chosen); the index's
        metadata is read once for both."""
        sources = uploads.sources(self.store)
        return {self.table: self.source_rows(sources),
                self.choice: gr.update(choices=self.deletable(sources), value=None),
                self.confirm_row: gr.update(visible=False)}

    # --- handlers ------------------------------------------------------------------------------
    @access.guarded
    def add_files(self, files, progress=gr.Progress(), request: gr.Request = None) -> dict:  # noqa: B008 (Gradio injects the tracker this way)
        access.require_admin(request)
        access.rate_check(request, "library")
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

    @access.guarded
    def preview(self, files, request: gr.Request = None) -> str:
        """What indexing the chosen files would keep, without indexing them."""
        access.require_admin(request)
        access.rate_check(request, "library")
        if not files:
            return preview_html([])
        return preview_html([uploads.preview(getattr(f, "name", f), Path(getattr(f, "name", f)).name) for f in files])

    @access.guarded
    def inspect_source(self, source, request: gr.Request = None) -> str:
        """The questions an indexed source holds, and what its file had dropped."""
        if source not in self.deletable():
            return "<p><em>Choose an uploaded source first.</em></p>"
        return preview_html([uploads.indexed_preview(self.store, source)])

    @access.guarded
    def ask_to_confirm(self, source, request: gr.Request = None) -> dict:
        """The first press of Delete only asks: the source is named and a confirm button appears."""
        access.require_admin(request)
        if not source:
            return {self.status: "Choose an uploaded source to delete.", self.confirm_row: gr.update(visible=False)}
        return {self.status: f"Delete `{source}` and its indexed chunks? This cannot be undone.",
                self.confirm_row: gr.update(visible=True)}

    def cancel_delete(self) -> dict:
        return {self.status: "Nothing was deleted.", self.confirm_row: gr.update(visible=False)}

    @access.guarded
    def delete(self, source, request: gr.Request = None) -> dict:
        access.require_admin(request)
        access.rate_check(request, "library")
        if not source:
            return {self.status: "Choose an uploaded source to delete.", **self.refreshed()}
        removed = uploads.delete(source)  # refuses anything but an upload
        return {self.status: f"Removed `{source}` ({removed} chunks).", **self.refreshed()}

    @access.guarded
    def reindex(self, progress=gr.Progress(), request: gr.Request = None) -> dict:  # noqa: B008
        access.require_admin(request)
        access.rate_check(request, "library")
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
