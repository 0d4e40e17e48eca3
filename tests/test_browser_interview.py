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
    # Gradio may still show its "processing | 0.1s" status over the feedback a moment after the question
    # changed (seen once): the feedback is read once that is gone, and must then be empty.
    page.wait_for_function("!(document.querySelector('#iv-feedback')?.innerText || '').includes('processing')",
                           timeout=10000)
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


def _start(page, n: int, time_limit: int = 0) -> None:
    page.get_by_role("tab", name="Interview").click()
    page.locator("#iv-n input[type=number]").fill(str(n))
    page.locator("#iv-n input[type=number]").press("Enter")
    page.locator("#iv-time-limit input").fill(str(time_limit))
    page.locator("#iv-time-limit input").press("Tab")
    page.locator("#iv-start").click()
    wait_for_text(page, "#iv-question", f"Question 1 / {n}", 60)


def _recoverable_point(entry) -> str:
    """A key point the first answer ("In short, <first point>.") leaves missing and that the grader credits
    when the follow-up states it. The session's entry is random, and for some entries the grader already
    credits the second point to the first answer, or does not credit a point stated in a follow-up
    (issue 17; about 6% of the bank): this test is about the follow-up's wiring, not that weakness."""
    from coach.grader import Grader
    from coach.llm import get_backend

    grader = Grader(backend=get_backend(kind="extractive"))
    first = grader.grade_entry(entry, f"In short, {entry.key_points[0]}.")
    missing = [n for n, point in enumerate(entry.key_points) if point not in first.covered]
    for n in missing:
        if grader.grade_entry(entry, f"Also, {entry.key_points[n]}.", points=missing).covered:
            return entry.key_points[n]
    pytest.skip(f"the grader credits no missing point of {entry.id} stated alone in a follow-up")


def _plain_words(markdown_line: str) -> list[str]:
    """The first words of a markdown line as the browser shows them: inline code, emphasis and maths are
    rendered, so their markers never reach innerText (12 of 332 answers open with such markup)."""
    prose = re.sub(r"\$[^$]*\$", " ", markdown_line)
    return re.findall(r"[A-Za-z]{4,}", prose)[:8]


def test_hints_timer_follow_ups_reveal_and_progress_in_the_browser(browser, served_app):
    """One timed session: two hints (each costs a point), a partial answer with its time taken, two
    follow-up turns, then "I don't know" reveals the model answer; the scorecard lists time and hints,
    and the progress view draws mastery, the review queue and the activity calendar."""
    from coach.bank import load_bank
    from coach.interviewer import hint_ladder

    bank = {e.question: e for e in load_bank(ROOT / "corpus")}
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_app(browser, served_app, viewport={"width": 1280, "height": 1200})
    _start(page, 2, time_limit=600)
    wait_for_text(page, "#iv-timer", "left", 30)  # the countdown ticks
    entry = bank[page.locator("#iv-question h3").inner_text().strip()]

    # the hints are a numbered (markdown) list: innerText drops the "1." markers, so count the items
    ladder = hint_ladder(entry, range(len(entry.key_points)))
    for taken in (1, 2):
        page.locator("#iv-hint").click()
        page.locator(f"#iv-hints li:nth-of-type({taken})").wait_for(timeout=30000)
    hints = [li.strip() for li in page.locator("#iv-hints li").all_inner_texts()]
    assert hints == ladder[:2], (hints, page.locator("#iv-status, #iv-hints").all_inner_texts())
    assert "costs 1.0 points" in page.locator("#iv-hints").inner_text()

    page.locator("#iv-answer textarea").fill(f"In short, {entry.key_points[0]}.")
    page.locator("#iv-submit").click()
    wait_for_text(page, "#iv-feedback", "/ 10", 120)
    assert "Time taken" in page.locator("#iv-timer").inner_text()
    page.locator("#iv-followup-box").wait_for(state="visible", timeout=30000)
    page.locator("#iv-followup-answer textarea").fill(f"Also, {_recoverable_point(entry)}.")
    page.locator("#iv-followup-submit").click()
    wait_for_text(page, "#iv-followup-feedback", "Follow-up 1", 120)
    assert "recovered" in page.locator("#iv-followup-feedback").inner_text()
    page.locator("#iv-followup-answer textarea").fill("I am not sure.")
    page.locator("#iv-followup-submit").click()
    wait_for_text(page, "#iv-followup-feedback", "Follow-up 2", 120)
    page.screenshot(path=str(ARTIFACTS / "interview-followups.png"), full_page=True)

    page.locator("#iv-next").click()
    wait_for_text(page, "#iv-question", "Question 2 / 2", 60)
    revealed = bank[page.locator("#iv-question h3").inner_text().strip()]
    page.locator("#iv-reveal").click()
    wait_for_text(page, "#iv-feedback", "Revealed", 60)
    shown = page.locator("#iv-feedback").inner_text()
    assert all(word in shown for word in _plain_words(revealed.answer.split("\n")[0])), shown
    page.locator("#iv-next").click()
    wait_for_text(page, "#iv-scorecard", "Scorecard", 60)
    card = page.locator("#iv-scorecard").inner_text()
    assert "revealed" in card and " s" in card and "hints" in card
    cells = [c.strip() for c in next(line for line in card.splitlines() if entry.question in line and "\t" in line).split("\t")]
    assert re.fullmatch(r"(\d+ min )?\d+ s", cells[3]) and cells[4] == "2" and cells[5] == "2", cells

    page.locator("#iv-progress-box").get_by_text("Progress across sessions").click()
    page.locator("#iv-progress-refresh").click()
    wait_for_text(page, "#iv-queue", "Box 1", 60)
    assert revealed.question in page.locator("#iv-queue").inner_text()
    wait_for_text(page, "#iv-calendar", "answers since", 30)
    page.locator("#iv-mastery img, #iv-mastery svg, #iv-mastery canvas").first.wait_for(timeout=30000)
    page.screenshot(path=str(ARTIFACTS / "interview-progress.png"), full_page=True)
