"""Uploaded documents in a real headless Chromium: the library selector in Chat, Search and Interview,
the Library preview before and after indexing, and search results whose tables render as tables."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import ARTIFACTS
from helpers import CHROMIUM, open_app, wait_for_text

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="make test installs Debian's chromium")
DOCUMENT = Path(__file__).with_name("fixtures") / "documents" / "q-headings.md"
SCOPES = ["All", "Bank", "My documents"]


@pytest.fixture
def page(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 1000})
    yield page
    # The upload lives in the served app's copy of the index: delete it there, as a user would, so the
    # later browser tests of the session see the bank alone.
    page.get_by_role("tab", name="Library").click()
    page.locator("#delete-choice input").fill("q-headings")
    page.get_by_role("option", name=re.compile("q-headings")).click()
    page.locator("#delete-source").click()
    wait_for_text(page, "#library-status", "cannot be undone", 30)
    page.locator("#delete-confirm").click()
    wait_for_text(page, "#library-status", "Removed", 60)


def test_preview_upload_scope_selector_and_rendered_tables(page):
    ARTIFACTS.mkdir(exist_ok=True)
    for selector in ("#scope",):
        assert [page.locator(f"{selector} label").nth(i).inner_text().strip() for i in range(3)] == SCOPES

    page.get_by_role("tab", name="Library").click()
    page.locator("#upload input[type=file]").set_input_files(str(DOCUMENT))
    page.locator("#preview-files").click()
    wait_for_text(page, "#preview", "questions detected", 60)
    preview = page.locator("#preview")
    assert preview.locator(".count").inner_text() == "4"
    assert "LSTM vs GRU" in preview.inner_text() and "links only" in preview.inner_text()
    page.screenshot(path=str(ARTIFACTS / "library-preview.png"), full_page=True)
    page.locator("#add-files").click()
    wait_for_text(page, "#upload-results", "added", 180)

    page.get_by_role("tab", name="Search").click()
    page.locator("#search-scope").get_by_text("My documents").click()
    page.locator("#search-query textarea").fill("LSTM vs GRU: which gates and how many parameters")
    page.locator("#search-button").click()
    page.locator("#search-results table").first.wait_for(timeout=60000)
    results = page.locator("#search-results")
    assert results.locator("table td").count() >= 6 and "|---|" not in results.inner_text()
    assert {r.get_attribute("data-library") for r in results.locator(".result").all()} == {"docs"}
    page.screenshot(path=str(ARTIFACTS / "search-documents-table.png"), full_page=True)

    page.get_by_role("tab", name="Interview").click()
    assert [page.locator("#iv-scope label").nth(i).inner_text().strip() for i in range(3)] == SCOPES
    page.locator("#iv-scope").get_by_text("My documents").click()
    page.locator("#iv-start").click()
    wait_for_text(page, "#iv-question", "derived", 60)
