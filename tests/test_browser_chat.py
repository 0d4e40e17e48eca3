"""The chat's evidence and conventions in a real headless Chromium (Debian's, driven by Playwright):
highlighted sources, the hover text of [n], saved conversations (save, resume, rename, export, delete),
"Quiz me on this", missed key points back to the chat, Enter / Shift+Enter, the stop button, a phone
screen and an axe-core accessibility audit. Screenshots go to test-artifacts/ for a person to look at.

axe-core is vendored unmodified under tests/vendor/axe-core/ (MPL-2.0, see its README there)."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from urllib.request import urlopen

import pytest

from conftest import ARTIFACTS
from helpers import CHROMIUM, open_app, wait_for_text

pytestmark = pytest.mark.skipif(not shutil.which(CHROMIUM), reason="make test installs Debian's chromium")
AXE = Path(__file__).with_name("vendor") / "axe-core" / "axe.min.js"
BLOCKING_IMPACTS = ("serious", "critical")
CITED = "#chat a[href^='#source-']"


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def ask_and_wait(page, question: str, seconds: float = 180) -> None:
    """Send with Enter and wait for the checked answer (its [n] links and the "Quiz me" button); a blocked
    or refused answer fails at once, with what the chat shows."""
    box = page.locator("#question textarea")
    box.fill(question)
    box.press("Enter")
    quiz = page.locator("#quiz-me")
    quiz.or_(page.locator("#chat").get_by_text(re.compile("Blocked|Not in the bank"))).first.wait_for(
        state="visible", timeout=seconds * 1000)
    assert quiz.is_visible(), page.locator("#chat").inner_text()
    page.locator(CITED).first.wait_for(timeout=10000)


def audit(page) -> list[str]:
    """The serious and critical axe-core violations on the page as it now is."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("axe.run(document, {resultTypes: ['violations']}).then(r => r.violations.map("
                          "v => ({id: v.id, impact: v.impact, nodes: v.nodes.map(n => n.target.join(' '))})))")
    return [f"{v['id']} ({v['impact']}): {v['nodes'][:3]}" for v in found if v["impact"] in BLOCKING_IMPACTS]


def test_sources_highlight_the_supporting_sentences_and_hover_shows_them(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
    ask_and_wait(page, "How does Adam correct the bias of its moment estimates?")
    link = page.locator(CITED).first
    number = link.get_attribute("href").split("-")[-1]
    hover = link.get_attribute("title")
    assert hover and len(hover.split()) >= 5, "hovering [n] shows the supporting sentence"
    link.hover()
    shot(page, "chat-hover")
    link.click()
    page.wait_for_function(f"document.getElementById('source-{number}').open === true", timeout=5000)
    marks = page.locator(f"#source-{number} mark")
    assert marks.count() >= 1
    highlighted = " ".join(marks.all_inner_texts())
    first_quote = hover.split(" … ")[0]
    words = [w for w in re.findall(r"[a-z]{4,}", first_quote.lower()) if "\\" not in w][:6]
    assert words and all(w in highlighted.lower() for w in words), (first_quote, highlighted)
    # The panel scrolled to the first highlighted sentence: it is inside the viewport.
    page.wait_for_function(f"(() => {{ const r = document.querySelector('#source-{number} mark')"
                           ".getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; })()",
                           timeout=5000)
    # Only part of the passage is highlighted, and the passage is rendered markdown, not raw.
    passage = page.locator(f"#source-{number} .passage").inner_text()
    assert len(highlighted) < len(passage) and "**" not in passage
    shot(page, "chat-highlighted-source")


def test_save_resume_rename_export_and_delete_a_conversation(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
    ask_and_wait(page, "What is catastrophic forgetting?")
    answer = page.locator("#chat .message.bot, #chat [data-testid='bot']").last.inner_text()
    page.reload()
    page.locator("#question textarea").wait_for()
    assert page.locator(CITED).count() == 0, "a reload starts an empty chat"
    page.locator("#saved-choice input").click()
    page.get_by_role("option", name=re.compile("What is catastrophic forgetting")).first.click()
    page.locator("#saved-open").click()
    wait_for_text(page, "#saved-status", "Continuing", 30)
    wait_for_text(page, "#chat", "What is catastrophic forgetting?", 30)
    assert page.locator(CITED).count() >= 1 and page.locator("#sources mark").count() >= 1
    first_words = answer.split("[")[0].strip()[:40]
    assert first_words in page.locator("#chat").inner_text()
    shot(page, "chat-resumed")

    page.locator("#saved-title textarea, #saved-title input").first.fill("Forgetting notes")
    page.locator("#saved-rename").click()
    wait_for_text(page, "#saved-status", "Renamed", 30)
    page.locator("#saved-export").click()
    link = page.locator("#saved-file a").first
    link.wait_for(timeout=30000)
    exported = urlopen(link.get_attribute("href"), timeout=30).read().decode()
    assert exported.startswith("# Forgetting notes") and "## What is catastrophic forgetting?" in exported
    assert "Supports the answer: “" in exported and "\n> " in exported, "cited passages are quoted"
    shot(page, "chat-export")

    page.locator("#saved-delete").click()
    wait_for_text(page, "#saved-status", "Deleted", 30)
    page.locator("#saved-choice input").click()
    assert page.get_by_role("option", name=re.compile("Forgetting notes")).count() == 0


def test_quiz_me_starts_an_interview_on_the_cited_entries(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
    ask_and_wait(page, "Why do transformers need positional encodings?")
    page.locator(CITED).first.click()
    cited = page.locator("#sources summary").all_inner_texts()
    page.locator("#quiz-me").click()
    wait_for_text(page, "#iv-question", "Question 1 /", 60)
    total = int(re.search(r"Question 1 / (\d+)", page.locator("#iv-question").inner_text()).group(1))
    asked = page.locator("#iv-question h3").inner_text().strip()
    assert 1 <= total <= len(cited) and any(asked in summary for summary in cited), (asked, cited)
    shot(page, "quiz-me")

    # A weak answer: each missed key point links back to the chat with a question about it.
    page.locator("#iv-answer textarea").fill("I think it has something to do with the order of words.")
    page.locator("#iv-submit").click()
    wait_for_text(page, "#iv-feedback", "Missing", 120)
    point = page.locator("#iv-feedback a[href^='#ask=']").first
    point_text = point.inner_text()
    point.click()
    page.wait_for_function("document.querySelector('#question textarea').value.length > 0", timeout=10000)
    asked_in_chat = page.locator("#question textarea").input_value()
    assert point_text.rstrip(".") in asked_in_chat and asked in asked_in_chat
    assert page.locator("#question textarea").is_visible(), "the Chat tab is shown"
    shot(page, "missed-point-to-chat")


def test_enter_sends_shift_enter_adds_a_line_and_stop_ends_the_stream(browser, streaming_app):
    page = open_app(browser, streaming_app, viewport={"width": 1280, "height": 900})
    box = page.locator("#question textarea")
    box.click()
    box.type("What is dropout?")
    box.press("Shift+Enter")
    box.type("Answer briefly.")
    assert box.input_value() == "What is dropout?\nAnswer briefly.", "Shift+Enter adds a line, not a question"
    assert page.locator("#chat .message, #chat [data-testid='user']").count() == 0
    box.press("Enter")
    page.locator("#stop").wait_for(state="visible", timeout=60000)
    bot = page.locator("#chat .message.bot, #chat [data-testid='bot']").last
    page.wait_for_function("document.querySelector('#chat').innerText.includes('▌')", timeout=180000)
    page.locator("#stop").click()
    wait_for_text(page, "#chat", "Stopped", 90)  # the Stop handler waits its turn on a loaded machine
    assert "▌" not in bot.inner_text() and not page.locator("#stop").is_visible()
    assert page.locator("#ask").is_visible()
    text = bot.inner_text()
    time.sleep(3)  # nothing more arrives after Stop
    assert bot.inner_text() == text
    shot(page, "chat-stopped")


def test_phone_width_layout_and_accessibility_audit(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    ask_and_wait(page, "How does LoRA work?")
    page.locator(CITED).first.click()
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 392, f"the page scrolls sideways on a phone ({width}px wide)"
    for selector in ("#ask", "#quiz-me", "#sources"):
        box = page.locator(selector).bounding_box()
        assert box and box["x"] >= 0 and box["x"] + box["width"] <= 392, (selector, box)
    shot(page, "chat-phone")
    problems = audit(page)
    assert not problems, problems


@pytest.mark.parametrize("tab", ["Chat", "Interview", "Library", "Evaluate", "Search"])
def test_every_tab_passes_the_accessibility_audit(browser, served_app, tab):
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
    page.get_by_role("tab", name=tab).click()
    time.sleep(1)
    if tab == "Chat":
        ask_and_wait(page, "What is catastrophic forgetting?")
        page.locator(CITED).first.click()
    problems = audit(page)
    shot(page, f"a11y-{tab.lower()}")
    assert not problems, problems


def test_search_results_and_sources_render_formulas_and_tables(browser, served_app):
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 900})
    page.get_by_role("tab", name="Search").click()
    page.get_by_label("Question or keywords").fill("Adam bias correction of the moment estimates")
    page.get_by_label("Question or keywords").press("Enter")
    page.locator("#search-results math").first.wait_for(timeout=60000)  # rendered as MathML (coach.render)
    assert "$" not in page.locator("#search-results").inner_text(), "formulas are typeset, not raw"
    shot(page, "search-rendered")
    page.get_by_role("tab", name="Chat").click()
    ask_and_wait(page, "Compare a GRU with an LSTM.")
    page.locator(CITED).first.click()
    assert page.locator("#sources table td").count() >= 6, "the passage's markdown table is a table"
    assert page.locator("#sources math").count() + page.locator("#sources code").count() >= 1
    shot(page, "chat-source-table")
