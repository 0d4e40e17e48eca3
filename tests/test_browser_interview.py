"""The Interview tab in a real headless Chromium: set-up, question card, graded feedback, skip, scorecard
with chart, history and export; plus the /grade endpoint. Screenshots go to test-artifacts/."""
from __future__ import annotations

import re

import pytest

from conftest import ARTIFACTS, ROOT
from helpers import CHROMIUM, GRADE_KEYS, open_app, wait_for_text

pytestmark = pytest.mark.skipif(not __import__("shutil").which(CHROMIUM), reason="make test installs chromium")


def test_interview_tab_runs_a_session_to_the_scorecard(browser, served_app):
    from gradio_client import Client

    from coach.bank import load_bank

    bank = {e.question: e for e in load_bank(ROOT / "corpus")}
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 1000})
    page.get_by_role("tab", name="Interview").click()
    page.locator("#iv-n input[type=number]").fill("2")
    page.locator("#iv-n input[type=number]").press("Enter")
    page.locator("#iv-start").click()
    wait_for_text(page, "#iv-question", "Question 1 / 2", 60)
    question = page.locator("#iv-question h3").inner_text().strip()
    entry = bank[question]

    page.locator("#iv-answer textarea").fill(entry.answer)
    page.locator("#iv-submit").click()
    wait_for_text(page, "#iv-feedback", "/ 10", 120)
    feedback = page.locator("#iv-feedback").inner_text()
    score = float(re.search(r"(\d+(?:\.\d)?) / 10", feedback).group(1))
    assert score >= 6.5, feedback
    assert "Covered" in feedback and "[1]" in feedback and entry.question in feedback
    page.screenshot(path=str(ARTIFACTS / "interview-feedback.png"), full_page=True)

    page.locator("#iv-next").click()
    wait_for_text(page, "#iv-question", "Question 2 / 2", 60)
    assert page.locator("#iv-feedback").inner_text().strip() == ""
    page.locator("#iv-skip").click()
    wait_for_text(page, "#iv-scorecard", "Scorecard", 60)
    card = page.locator("#iv-scorecard").inner_text()
    assert "2 of 2 questions" in card and "1 skipped" in card
    page.locator("#iv-chart img, #iv-chart svg, #iv-chart canvas").first.wait_for(timeout=30000)
    page.locator("#iv-export").click()
    page.locator("#iv-export-file a").first.wait_for(timeout=30000)
    assert ".md" in page.locator("#iv-export-file").inner_text()
    page.locator("#iv-history-box").get_by_text("Past sessions").click()
    wait_for_text(page, "#iv-history", "finished", 30)
    page.screenshot(path=str(ARTIFACTS / "interview-scorecard.png"), full_page=True)

    doc = Client(served_app, verbose=False).predict(question, "I have no idea.", api_name="/grade")
    assert set(GRADE_KEYS) <= set(doc) and doc["matched_question"] == question and doc["score"] <= 1.0
