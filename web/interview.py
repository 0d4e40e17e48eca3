"""The Interview tab: a mock interview from set-up to scorecard, past sessions and a markdown export.

The tab shows one of three panels: the set-up, the question card (answer, submit / skip, then the graded
feedback and "Next question") or the scorecard with a per-topic chart. Each handler returns only what it
changes, keyed by component; the three `_..._view` methods are the whole screens a handler can lead to.
The sessions themselves live in SQLite (`coach.interviewer`), so a page reload or another process can
resume them; the texts come from `coach.render`, shared with the terminal interview.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import gradio as gr

from coach import render
from coach.grader import AnswerError, Grader
from coach.interviewer import Interviewer, SessionError
from web import ALL, access, scope_of, scope_selector, unless_all

CHOOSE_A_SESSION = "Choose an unfinished session to resume."
DEFAULT_INTERVIEW = {"part": ALL, "topic": ALL, "difficulty": ALL, "n": 5, "review": False, "scope": "All"}
HISTORY_HEADERS = ["session", "started", "mode", "status", "answered", "mean score"]
# Exports are written here and removed after EXPORT_LIFETIME seconds (Gradio copies a file into its own
# cache, which `web.assembly` clears, as soon as the handler returns).
EXPORTS = Path(tempfile.gettempdir()) / "coach-exports"
EXPORT_LIFETIME = 600.0


def visible(flag: bool) -> dict:
    return gr.update(visible=flag)


class InterviewTab:
    """`grader` is also the /grade endpoint's (wired in `web.assembly`); `judge` is the backend that may
    act as an LLM judge, or None (the embedded model never judges)."""

    def __init__(self, answerer, bank: list, judge=None):
        self.grader = Grader(retriever=answerer.retriever, backend=judge, bank=bank)
        self.engine = Interviewer(self.grader)
        self._build_setup(bank)
        self.status = gr.Markdown(elem_id="iv-status")
        self._build_card()
        self._build_scorecard()
        with gr.Accordion("Past sessions", open=False, elem_id="iv-history-box"):
            self.history = gr.Dataframe([], headers=HISTORY_HEADERS, interactive=False, elem_id="iv-history")
        self.session = gr.State(None)
        self._wire()

    # --- layout --------------------------------------------------------------------------------
    def _build_setup(self, bank: list) -> None:
        topics = sorted({e.topic for e in bank})
        with gr.Column(visible=True, elem_id="iv-setup") as self.setup:
            gr.Markdown("Practise answering bank questions aloud-style: each answer is graded against the "
                        "question's key points and saved at once; weak questions come back in review mode.")
            with gr.Row():
                self.part = gr.Dropdown([ALL, *map(str, sorted({e.part for e in bank}))], value=ALL, label="Part",
                                        elem_id="iv-part")
                self.topic = gr.Dropdown([ALL, *topics], value=ALL, label="Topic", elem_id="iv-topic")
                self.difficulty = gr.Dropdown([ALL, "easy", "medium", "hard"], value=ALL, label="Difficulty",
                                              elem_id="iv-difficulty")
                self.n_questions = gr.Slider(1, 20, value=5, step=1, label="Questions", elem_id="iv-n")
            self.scope = scope_selector("iv-scope")
            self.review = gr.Checkbox(label="Review mode: weak and due questions first (spaced repetition)",
                                      elem_id="iv-review")
            self.begin = gr.Button("Start interview", variant="primary", elem_id="iv-start")
            with gr.Row():
                self.resume_choice = gr.Dropdown([], label="Unfinished sessions", elem_id="iv-resume-choice")
                self.resume_button = gr.Button("Resume", elem_id="iv-resume")

    def _build_card(self) -> None:
        with gr.Column(visible=False, elem_id="iv-card") as self.card_box:
            self.card = gr.Markdown(elem_id="iv-question")
            self.answer = gr.Textbox(label="Your answer", lines=6, placeholder="Answer in a few full sentences.",
                                     elem_id="iv-answer")
            with gr.Row():
                self.submit_button = gr.Button("Submit answer", variant="primary", elem_id="iv-submit")
                self.skip_button = gr.Button("Skip", elem_id="iv-skip")
                self.next_button = gr.Button("Next question", variant="primary", visible=False, elem_id="iv-next")
                self.end_button = gr.Button("End interview", variant="stop", elem_id="iv-end")
            self.feedback = gr.Markdown(elem_id="iv-feedback")

    def _build_scorecard(self) -> None:
        with gr.Column(visible=False, elem_id="iv-scorecard-box") as self.score_box:
            self.scorecard = gr.Markdown(elem_id="iv-scorecard")
            self.chart = gr.Plot(label="Mean score per topic", elem_id="iv-chart")
            with gr.Row():
                self.export_button = gr.Button("Export as markdown", elem_id="iv-export")
                self.again = gr.Button("New interview", variant="primary", elem_id="iv-again")
            self.export_file = gr.File(label="Session export", visible=False, elem_id="iv-export-file")

    def _wire(self) -> None:
        screen = [self.session, self.setup, self.card_box, self.card, self.answer, self.status, self.submit_button,
                  self.skip_button, self.next_button, self.score_box, self.scorecard, self.chart, self.feedback,
                  self.history, self.resume_choice]
        choices = [self.part, self.topic, self.difficulty, self.n_questions, self.review, self.scope]
        self.begin.click(self.start, choices, screen, api_name=False)
        self.resume_button.click(self.resume, self.resume_choice, screen, api_name=False)
        self.submit_button.click(self.submit, [self.session, self.answer], [self.answer, self.feedback,
                                 self.submit_button, self.skip_button, self.next_button], api_name=False)
        self.next_button.click(self.next_question, self.session, screen, api_name=False)
        self.skip_button.click(self.skip, self.session, screen, api_name=False)
        self.end_button.click(self.end, self.session, screen, api_name=False)
        self.export_button.click(self.export, self.session, self.export_file, api_name=False)
        self.again.click(self.new_interview, None, [self.session, self.setup, self.card_box, self.score_box,
                                                    self.next_button, self.export_file], api_name=False)

    # --- handlers ------------------------------------------------------------------------------
    @access.guarded
    def show_lists(self, request: gr.Request = None) -> dict:
        """On page load: this user's past sessions and unfinished ones (nobody else's)."""
        return self._lists(access.user_of(request).name)

    @access.guarded
    def start(self, part, topic, difficulty, n, review, scope="All", request: gr.Request = None) -> dict:
        user = self._user(request)
        try:
            session_id = self.engine.start(part=unless_all(part, int), topic=unless_all(topic),
                                           difficulty=unless_all(difficulty), n=int(n), review=bool(review),
                                           user=user, scope=scope_of(scope))
        except SessionError as exc:
            return self._setup_view(f"⚠️ {exc}", user)
        return self._question_view(session_id, user)

    @access.guarded
    def resume(self, session_id, request: gr.Request = None) -> dict:
        """Continue the session chosen among the user's unfinished ones."""
        user = self._user(request)
        return self._question_view(session_id, user) if session_id else self._setup_view(CHOOSE_A_SESSION, user)

    @access.guarded
    def submit(self, session_id, answer: str, request: gr.Request = None) -> dict:
        """Grade the answer and show the feedback; on an error the answer box keeps its text."""
        user = self._user(request)
        if not session_id:
            return {self.feedback: "Start an interview first."}
        try:
            turn = self.engine.answer(session_id, answer, user=user)
        except (AnswerError, SessionError) as exc:
            return {self.feedback: f"⚠️ {exc}"}
        return {self.answer: gr.update(interactive=False), self.feedback: render.feedback_markdown(turn.grade),
                **self._buttons(self.next_button)}

    @access.guarded
    def next_question(self, session_id, request: gr.Request = None) -> dict:
        return self._question_view(session_id, self._user(request))

    @access.guarded
    def skip(self, session_id, request: gr.Request = None) -> dict:
        """Skip the current question. With no session running, Skip starts an interview with the defaults."""
        if not session_id:
            return self.start(**DEFAULT_INTERVIEW, request=request)
        user = self._user(request)
        if self.engine.current(session_id, user) is not None:
            self.engine.skip(session_id, user)
        return self._question_view(session_id, user)

    @access.guarded
    def end(self, session_id, request: gr.Request = None) -> dict:
        """End the session and show its scorecard. With no session running, End goes back to the set-up
        and asks for an unfinished session to resume."""
        user = self._user(request)
        if not session_id:
            return self._setup_view(CHOOSE_A_SESSION, user)
        return self._scorecard_view(session_id, user)

    @access.guarded
    def export(self, session_id, request: gr.Request = None) -> dict:
        user = self._user(request)
        if not session_id:
            return {self.export_file: gr.update(value=None, visible=False)}
        text = self.engine.export_markdown(session_id, user)
        return {self.export_file: gr.update(value=str(write_export(session_id, text)), visible=True)}

    @staticmethod
    def _user(request) -> str:
        access.rate_check(request, "interview")
        return access.user_of(request).name

    def new_interview(self) -> dict:
        return {self.session: None, **self._panels(self.setup), self.next_button: visible(False),
                self.export_file: gr.update(value=None, visible=False)}

    # --- screens -------------------------------------------------------------------------------
    def _question_view(self, session_id: str, user: str) -> dict:
        """The card of the session's current question with an empty answer box, or the scorecard when
        no question is left."""
        entry = self.engine.current(session_id, user)
        if entry is None:
            return self._scorecard_view(session_id, user)
        card = render.question_markdown(entry, *self.engine.progress(session_id, user))
        return {self.session: session_id, **self._panels(self.card_box), self.card: card,
                self.answer: gr.update(value="", interactive=True), self.status: "",
                **self._buttons(self.submit_button, self.skip_button), self.scorecard: "", self.chart: None,
                self.feedback: "", **self._lists(user)}

    def _scorecard_view(self, session_id: str, user: str) -> dict:
        """End the session and show its scorecard and chart."""
        card = self.engine.end(session_id, user)
        return {self.session: session_id, **self._panels(self.score_box), self.card: "",
                self.answer: gr.update(value=""), self.status: "", **self._buttons(),
                self.scorecard: render.scorecard_markdown(card), self.chart: topic_chart(card),
                self.feedback: "", **self._lists(user)}

    def _setup_view(self, message: str, user: str) -> dict:
        """Back to the set-up, with no session and a message saying why."""
        return {self.session: None, **self._panels(self.setup), self.card: "", self.status: message,
                **self._buttons(), self.scorecard: "", self.chart: None, self.feedback: "", **self._lists(user)}

    def _panels(self, shown) -> dict:
        """Show one of the three panels (set-up, question card, scorecard) and hide the other two."""
        return {panel: visible(panel is shown) for panel in (self.setup, self.card_box, self.score_box)}

    def _buttons(self, *shown) -> dict:
        """Show these of the card's submit / skip / next buttons and hide the others."""
        return {button: visible(any(button is s for s in shown))
                for button in (self.submit_button, self.skip_button, self.next_button)}

    def _lists(self, user: str) -> dict:
        """The user's past sessions table and unfinished sessions to resume, as they now are."""
        return {self.history: self.history_rows(user),
                self.resume_choice: gr.update(choices=self.unfinished(user), value=None)}

    def history_rows(self, user: str) -> list[list]:
        return [render.session_row(session) for session in self.engine.history(user=user)]

    def unfinished(self, user: str) -> list[str]:
        return [session["id"] for session in self.engine.history(user=user) if session["status"] == "active"]


def write_export(session_id: str, text: str) -> Path:
    """Write a session's markdown for download; exports older than EXPORT_LIFETIME are removed first, so
    exporting leaves no growing pile of temporary files."""
    EXPORTS.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in EXPORTS.glob("interview-*.md"):
        if now - old.stat().st_mtime > EXPORT_LIFETIME:
            old.unlink(missing_ok=True)
    path = EXPORTS / f"interview-{session_id}.md"
    path.write_text(text, encoding="utf-8")
    return path


def topic_chart(card: dict):
    """Horizontal bars of the mean score per topic (matplotlib, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    topics = list(card["per_topic"]) or ["(no answers)"]
    scores = list(card["per_topic"].values()) or [0]
    figure, axes = plt.subplots(figsize=(6, 0.5 * len(topics) + 1.2))
    axes.barh(topics, scores, color=["#d9534f" if s < 5 else "#f0ad4e" if s < 7 else "#5cb85c" for s in scores])
    axes.set_xlim(0, 10)
    axes.set_xlabel("mean score / 10")
    axes.invert_yaxis()
    figure.tight_layout()
    plt.close(figure)
    return figure
