"""The Search tab: the hybrid search behind the answers, with each hit's calibrated relevance.

`search` is also the /search API endpoint (wired in `web.assembly`), so the tab and the endpoint return
the same results as `app.py search --json`.
"""
from __future__ import annotations

import gradio as gr

from coach.guards import validate_question
from coach.render import search_html
from web import access, scope_of, scope_selector


class SearchTab:
    def __init__(self, retriever):
        self.retriever = retriever
        self.query = gr.Textbox(label="Question or keywords", placeholder="what is catastrophic forgetting?",
                                elem_id="search-query")
        self.scope = scope_selector("search-scope")
        self.button = gr.Button("Search", variant="primary", elem_id="search-button")
        # Passages rendered as HTML: tables as tables, code as code, formulas as MathML (coach.render).
        self.results = gr.HTML(elem_id="search-results")
        self.button.click(self.show, [self.query, self.scope], self.results, api_name=False)
        self.query.submit(self.show, [self.query, self.scope], self.results, api_name=False)

    def search(self, query: str, request: gr.Request = None, scope: str = "all") -> dict:
        """The contract's search document: the query and its ranked results (each with its library). An
        empty or over-long query raises QuestionError (a ValueError); the callers turn it into a message."""
        access.rate_check(request, "search")
        valid = validate_question(query)
        return {"query": query, "results": [hit.as_json() for hit in self.retriever.search(valid, scope=scope)]}

    @access.guarded
    def show(self, query: str, scope: str = "All", request: gr.Request = None) -> dict:
        return {self.results: search_html(self.search(query, request, scope_of(scope))["results"])}
