"""What several test modules check the same way: the contract's JSON shapes, grounded answers, and the
browser helpers. Tests import these from here, never from each other."""
from __future__ import annotations

from coach.text import citations_of, split_sentences

CHROMIUM = "/usr/bin/chromium"

# The contract's fields (../shared/CONTRACT.md); documents may carry more, never fewer.
ASK_KEYS = {"question", "answer", "refused", "blocked", "guard", "citations", "timings"}
CITATION_KEYS = {"n": int, "chunk_id": str, "source": str, "question": str, "score": float}
RESULT_KEYS = {"rank": int, "score": float, "chunk_id": str, "source": str, "question": str,
               "part": (int, type(None)), "topic": (str, type(None)), "text": str}
GRADE_KEYS = {"question": str, "matched_question": str, "score": float, "covered": list, "missing": list,
              "feedback": str, "citations": list}


def assert_grounded(doc: dict) -> None:
    """Every sentence of an answer cites a passage that the citations list describes, and nothing else."""
    assert not doc["refused"] and not doc["blocked"] and doc["answer"].strip(), doc
    listed = {c["n"] for c in doc["citations"]}
    used = set()
    for sentence in split_sentences(doc["answer"]):
        numbers = citations_of(sentence)
        assert numbers, f"sentence without a citation: {sentence!r}"
        used.update(numbers)
    assert used == listed, (used, listed)
    for c in doc["citations"]:
        assert set(CITATION_KEYS) <= set(c) and all(isinstance(c[k], t) for k, t in CITATION_KEYS.items())


def check_search_document(doc: dict, query: str) -> None:
    assert set(doc) == {"query", "results"} and doc["query"] == query
    assert doc["results"], "an in-scope query returns results"
    for n, result in enumerate(doc["results"], start=1):
        assert set(RESULT_KEYS) <= set(result)
        for key, kind in RESULT_KEYS.items():
            assert isinstance(result[key], kind), (key, result[key])
        assert result["rank"] == n and 0.0 <= result["score"] <= 1.0


def open_app(browser, url, **context):
    page = browser.new_context(**context).new_page()
    page.goto(url)
    page.locator("#question textarea").wait_for()
    return page


def wait_for_text(page, selector: str, text: str, seconds: float) -> None:
    """Wait until the element shows `text`; on a timeout, fail with what it and any error toast showed instead (an
    Interview tab's Start once showed nothing for 60 s in a full run, and the bare timeout said nothing more)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function("([sel, text]) => (document.querySelector(sel)?.innerText || '').includes(text)",
                               arg=[selector, text], timeout=seconds * 1000)
    except PlaywrightTimeout:
        shown = page.evaluate("(sel) => document.querySelector(sel)?.innerText ?? '(no such element)'", selector)
        toasts = page.evaluate("() => [...document.querySelectorAll('.toast-body')].map(t => t.innerText)")
        raise AssertionError(f"{selector} did not show {text!r} within {seconds} s; it showed {shown[-500:]!r}; "
                             f"error toasts: {toasts}") from None
