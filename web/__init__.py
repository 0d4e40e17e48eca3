"""The Gradio app, imported only by `python app.py serve` (and the tests that drive it).

    assembly.py   the Blocks: the tabs in order, the named API endpoints (/search, /ask, /grade), launch
    chat.py       Chat: streamed, checked answers with cited passages; the per-session rate limit
    interview.py  Interview: a mock interview from set-up to scorecard, past sessions, export
    library.py    Library: upload, list, delete and re-index sources; flagged passages
    search.py     Search: the hybrid search behind the answers
    evaluate.py   Evaluate: the evaluation suite on a small sample, its report and plots

Each tab is a small class: its components are attributes, created inside the Blocks context, and each
event handler is a named method returning `{component: update}`, so a handler says what it changes and
leaves the rest alone. What the tabs show in text comes from `coach/render.py`, shared with the CLI.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

ALL = "All"  # the dropdown choice that means "no filter"
# The bank writes formulas as $...$ (inline) and $$...$$ (display); Gradio renders only $$ by default.
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]
# The library selector of Chat, Search and Interview: its labels and the scope each means.
SCOPES = {"All": "all", "Bank": "bank", "My documents": "docs"}


def scope_selector(elem_id: str):
    """The library selector: All (the default: bank first), Bank only, or My documents only."""
    import gradio as gr

    return gr.Radio(list(SCOPES), value="All", label="Library", elem_id=elem_id,
                    info="All answers from the bank first; your uploads can add to it")


def scope_of(choice) -> str:
    return SCOPES.get(choice, "all")


def unless_all(choice, convert=str):
    """A dropdown's choice as a filter value: None for ALL, else the choice converted (e.g. int)."""
    return None if choice == ALL else convert(choice)


def _no_stub_files(*args, **kwargs) -> None:
    """Stands in for gradio.component_meta.create_or_modify_pyi (see _SkipStubWriting)."""


class _SkipStubWriting(importlib.abc.MetaPathFinder):
    """Gradio 6 rewrites the type-stub (.pyi) file of every component class as the class is defined: it
    reads and parses each component's source and its stub at every `import gradio`. That was 1.9 of the
    3.5 s of importing it (2 cores, gradio 6.31), over a third of `app.py serve`'s start, for files only an
    editor reads. When `gradio.component_meta` is loaded, this finder swaps that function for one that does
    nothing; everything else of Gradio is untouched. It removes itself after that one module, and does
    nothing if Gradio was imported first or no longer has the function."""

    def find_spec(self, name, path, target=None):
        if name != "gradio.component_meta":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            if hasattr(module, "create_or_modify_pyi"):
                module.create_or_modify_pyi = _no_stub_files

        spec.loader.exec_module = exec_module
        return spec


if "gradio" not in sys.modules and not any(isinstance(f, _SkipStubWriting) for f in sys.meta_path):
    sys.meta_path.insert(0, _SkipStubWriting())
