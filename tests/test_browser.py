"""The app in a real headless Chromium (Debian's, driven by Playwright): chat, citations, narrow screens.
Screenshots go to test-artifacts/ for a person to look at."""
from __future__ import annotations

import re
import shutil
import time

import pytest
from conftest import ARTIFACTS

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="make test installs Debian's chromium")


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--headless", "--no-sandbox", "--disable-gpu",
                                          "--disable-background-networking"])
        yield browser
        browser.close()


def open_app(browser, url, **context):
    page = browser.new_context(**context).new_page()
    page.goto(url)
    page.locator("#question textarea").wait_for()
    return page


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
            if re.search(r"\[\d+\]", text) and "▌" not in text and "…" != text.strip():
                return seen
        time.sleep(0.05)
    raise AssertionError(f"no cited answer within 120 s; saw {seen[-3:]}")


def test_chat_streams_a_cited_answer_and_opens_the_source(browser, served_app):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
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
