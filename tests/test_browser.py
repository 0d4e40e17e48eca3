"""The app in a real headless Chromium (Debian's, driven by Playwright): chat, citations, narrow screens.
Screenshots go to test-artifacts/ for a person to look at."""
from __future__ import annotations

import re
import shutil
import time

import pytest

from conftest import ARTIFACTS
from helpers import CHROMIUM, open_app, wait_for_text

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="make test installs Debian's chromium")


def ask(page, question: str) -> list[str]:
    """Type a question, send it, and return the successive texts of the answer bubble while it streams."""
    page.locator("#question textarea").fill(question)
    page.locator("#ask").click()
    seen, deadline = [], time.monotonic() + 120
    bot = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
    while time.monotonic() < deadline:
        if bot.count():
            text = bot.inner_text()
            if not seen or text != seen[-1]:
                seen.append(text)
            if re.search(r"\[\d+\]", text) and "▌" not in text and text.strip() != "…":
                return seen
        time.sleep(0.05)
    raise AssertionError(f"no cited answer within 120 s; saw {seen[-3:]}")


def test_chat_streams_a_cited_answer_and_opens_the_source(browser, streaming_app):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_app(browser, streaming_app, viewport={"width": 1280, "height": 900})
    seen = ask(page, "What is catastrophic forgetting?")
    assert len(seen) >= 3, f"the answer should arrive progressively, saw {seen}"
    assert "forget" in seen[-1].lower()
    page.screenshot(path=str(ARTIFACTS / "chat-answer.png"), full_page=True)

    link = page.locator("#chat a[href^='#source-']").first
    number = link.get_attribute("href").split("-")[-1]
    panel = page.locator(f"#source-{number}")
    assert panel.get_attribute("open") is None
    link.click()
    page.wait_for_function(f"document.getElementById('source-{number}').open === true", timeout=5000)
    assert "Part" in panel.inner_text() and "corpus/" in panel.inner_text()
    # The bank answer's markdown is rendered (its lists become list items), not shown as raw asterisks.
    assert panel.locator("li").count() >= 2 and "**" not in panel.inner_text()
    page.screenshot(path=str(ARTIFACTS / "chat-source-open.png"), full_page=True)


def test_off_topic_question_is_shown_as_not_in_the_bank(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
    page.locator("#question textarea").fill("What is the capital of Australia?")
    page.locator("#ask").click()
    page.get_by_text("Not in the bank").wait_for(timeout=60000)
    assert page.locator("#sources details").count() == 0
    page.screenshot(path=str(ARTIFACTS / "chat-refused.png"), full_page=True)


def test_narrow_mobile_viewport_is_usable(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 2, f"the page scrolls sideways on a phone ({width}px wide)"
    box = page.locator("#ask").bounding_box()
    assert box and box["x"] + box["width"] <= 392
    seen = ask(page, "How does LoRA work?")
    assert re.search(r"\[\d+\]", seen[-1])
    page.screenshot(path=str(ARTIFACTS / "chat-mobile.png"), full_page=True)


UPLOAD = """# Quokka normalization notes

## 1. What is quokka normalization?

Quokka normalization is a made-up layer used only by this test: it rescales every activation by the
running median of its channel, so that the uploaded file can be found by a word no bank entry uses.
"""


def test_upload_files_see_them_listed_and_searchable_then_delete(browser, served_app, tmp_path):
    from gradio_client import Client

    from ingest.uploads import safe_name

    good, fake = tmp_path / "quokka notes.md", tmp_path / "slides.pdf"
    # the space is cleaned away, so the stored name carries a short hash of the original (issue 15: a
    # different upload really called "quokka-notes.md" must not overwrite it); still readable
    stored = safe_name(good.name)
    assert re.fullmatch(r"quokka-notes-[0-9a-f]{6}\.md", stored), stored
    good.write_text(UPLOAD)
    fake.write_text("this is not a PDF at all")
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
    page.get_by_role("tab", name="Library").click()
    page.locator("#upload input[type=file]").set_input_files([str(good), str(fake)])
    page.locator("#add-files").click()
    wait_for_text(page, "#upload-results", "not a PDF", 120)
    text = page.locator("#upload-results").inner_text()
    assert stored in text and "added" in text and "error" in text, text
    wait_for_text(page, "#sources-table", f"uploads/{stored}", 30)
    assert "slides.pdf" not in page.locator("#sources-table").inner_text()
    page.screenshot(path=str(ARTIFACTS / "library-upload.png"), full_page=True)

    hits = Client(served_app, verbose=False).predict("quokka normalization running median", api_name="/search")
    assert hits["results"][0]["source"].endswith(f"uploads/{stored}")

    page.locator("#delete-choice input").fill("quokka")
    page.get_by_role("option", name=re.compile(re.escape(stored))).click()
    page.locator("#delete-source").click()
    wait_for_text(page, "#library-status", "cannot be undone", 30)  # the first press only asks
    page.locator("#delete-confirm").click()
    wait_for_text(page, "#library-status", "Removed", 60)
    assert "quokka" not in page.locator("#sources-table").inner_text()
    hits = Client(served_app, verbose=False).predict("quokka normalization running median", api_name="/search")
    assert not any("quokka" in r["source"] for r in hits["results"])
