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

ALL = "All"  # the dropdown choice that means "no filter"
# The bank writes formulas as $...$ (inline) and $$...$$ (display); Gradio renders only $$ by default.
LATEX = [{"left": "$$", "right": "$$", "display": True}, {"left": "$", "right": "$", "display": False}]


def unless_all(choice, convert=str):
    """A dropdown's choice as a filter value: None for ALL, else the choice converted (e.g. int)."""
    return None if choice == ALL else convert(choice)
