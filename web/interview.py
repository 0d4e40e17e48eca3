"""The Interview tab: a mock interview from set-up to scorecard, past sessions and a markdown export.

The tab shows one of three panels: the set-up, the question card (answer, submit / skip, hints, "I don't
know", a countdown when the session is timed, then the graded feedback, up to two follow-up turns and
"Next question") or the scorecard with a per-topic chart and each question's time and hints. Below them,
the progress view spans sessions: mastery per topic over time, the review queue by Leitner box and an
activity calendar. Each handler returns only what it
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
from coach.interviewer import HINT_COST, Interviewer, SessionError
from web import ALL, access, scope_of, scope_selector, unless_all

CHOOSE_A_SESSION = "Choose an unfinished session to resume."
DEFAULT_INTERVIEW = {"part": ALL, "topic": ALL, "difficulty": ALL, "n": 5, "review": False, "time_limit": 0,
                     "adaptive": False, "scope": "All"}
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
            self.history = gr.Dataframe([], headers=HISTORY_HEADERS, interactive=False,
                                        elem_id="iv-history")
        self._build_progress()
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
            with gr.Row():
                self.review = gr.Checkbox(label="Review mode: weak and due questions first (spaced repetition)",
                                          elem_id="iv-review")
                self.adaptive = gr.Checkbox(label="Adaptive difficulty: harder after a strong answer, easier "
                                                  "after a weak one", elem_id="iv-adaptive")
                self.time_limit = gr.Number(0, label="Time limit per question (seconds, 0 = none)", minimum=0,
                                            elem_id="iv-time-limit")
            self.begin = gr.Button("Start interview", variant="primary", elem_id="iv-start")
            with gr.Row():
                self.resume_choice = gr.Dropdown([], label="Unfinished sessions",
                                                 elem_id="iv-resume-choice")
                self.resume_button = gr.Button("Resume", elem_id="iv-resume")

    def _build_card(self) -> None:
        with gr.Column(visible=False, elem_id="iv-card") as self.card_box:
            self.card = gr.Markdown(elem_id="iv-question")
            self.answer = gr.Textbox(label="Your answer", lines=6, placeholder="Answer in a few full sentences.",
                                     elem_id="iv-answer")
            with gr.Row():
                self.submit_button = gr.Button("Submit answer", variant="primary", elem_id="iv-submit")
                self.skip_button = gr.Button("Skip", elem_id="iv-skip")
                self.hint_button = gr.Button("Hint (costs a point)", elem_id="iv-hint")
                self.reveal_button = gr.Button("I don't know / reveal", elem_id="iv-reveal")
                self.next_button = gr.Button("Next question", variant="primary", visible=False, elem_id="iv-next")
                self.end_button = gr.Button("End interview", variant="stop", elem_id="iv-end")
            self.timer_text = gr.Markdown(elem_id="iv-timer")
            self.clock = gr.Timer(1.0, active=False)
            self.hints = gr.Markdown(elem_id="iv-hints")
            self.feedback = gr.Markdown(elem_id="iv-feedback")
            with gr.Column(visible=False, elem_id="iv-followup-box") as self.followup_box:
                self.followup_answer = gr.Textbox(label="Answer the follow-up", lines=3, elem_id="iv-followup-answer")
                self.followup_button = gr.Button("Answer follow-up", elem_id="iv-followup-submit")
                self.followup_feedback = gr.Markdown(elem_id="iv-followup-feedback")

    def _build_scorecard(self) -> None:
        with gr.Column(visible=False, elem_id="iv-scorecard-box") as self.score_box:
            self.scorecard = gr.Markdown(elem_id="iv-scorecard")
            self.chart = gr.Plot(label="Mean score per topic", elem_id="iv-chart")
            self.turns_table = gr.Markdown(elem_id="iv-turns")
            with gr.Row():
                self.export_button = gr.Button("Export as markdown", elem_id="iv-export")
                self.again = gr.Button("New interview", variant="primary", elem_id="iv-again")
            self.export_file = gr.File(label="Session export", visible=False, elem_id="iv-export-file")

    def _build_progress(self) -> None:
        with gr.Accordion("Progress across sessions", open=False, elem_id="iv-progress-box"):
            self.progress_button = gr.Button("Show progress", elem_id="iv-progress-refresh")
            self.mastery_plot = gr.Plot(label="Mastery per topic over time", elem_id="iv-mastery")
            with gr.Row():
                self.queue = gr.Markdown(elem_id="iv-queue")
                self.calendar = gr.Markdown(elem_id="iv-calendar")

    def _wire(self) -> None:
        self.screen = screen = [self.session, self.setup, self.card_box, self.card, self.answer, self.status, self.submit_button,
                  self.skip_button, self.next_button, self.score_box, self.scorecard, self.chart, self.feedback,
                  self.history, self.resume_choice, self.hint_button, self.reveal_button, self.clock, self.timer_text,
                  self.hints, self.followup_box]
        choices = [self.part, self.topic, self.difficulty, self.n_questions, self.review, self.time_limit, self.adaptive,
                   self.scope]
        self.begin.click(self.start, choices, screen, api_name=False)
        self.resume_button.click(self.resume, self.resume_choice, screen, api_name=False)
        self.next_button.click(self.next_question, self.session, screen, api_name=False)
        self.skip_button.click(self.skip, self.session, screen, api_name=False)
        self.end_button.click(self.end, self.session, screen, api_name=False)
        self.export_button.click(self.export, self.session, self.export_file, api_name=False)
        self.again.click(self.new_interview, None, [self.session, self.setup, self.card_box, self.score_box,
                                                    self.next_button, self.export_file], api_name=False)
        self._wire_practice(screen)

    def _wire_practice(self, screen: list) -> None:
        """Hints, reveal, the countdown, follow-up turns and the progress view."""
        card = [self.answer, self.feedback, self.submit_button, self.skip_button, self.next_button, self.hints,
                self.hint_button, self.reveal_button, self.followup_box, self.followup_answer,
                self.followup_feedback, self.clock, self.timer_text]
        self.submit_button.click(self.submit, [self.session, self.answer], card, api_name=False)
        self.hint_button.click(self.hint, self.session, [self.hints, self.status], api_name=False)
        self.reveal_button.click(self.reveal, self.session, card, api_name=False)
        self.clock.tick(self.tick, self.session, self.timer_text, api_name=False, show_progress="hidden")
        self.followup_button.click(self.followup, [self.session, self.followup_answer],
                                   [self.followup_answer, self.followup_feedback, self.followup_button], api_name=False)
        self.progress_button.click(self.progress, None, [self.mastery_plot, self.queue, self.calendar], api_name=False)

    # --- handlers ------------------------------------------------------------------------------
    @access.guarded
    def show_lists(self, request: gr.Request = None) -> dict:
        """On page load: this user's past sessions and unfinished ones (nobody else's)."""
        return self._lists(access.user_of(request).name)

    @access.guarded
    def start(self, part, topic, difficulty, n, review, time_limit=0, adaptive=False, scope="All",
              request: gr.Request = None) -> dict:
        user = self._user(request)
        try:
            session_id = self.engine.start(part=unless_all(part, int), topic=unless_all(topic),
                                           difficulty=unless_all(difficulty), n=int(n), review=bool(review),
                                           time_limit=float(time_limit) if time_limit else None,
                                           adaptive=bool(adaptive), user=user, scope=scope_of(scope))
        except SessionError as exc:
            return self._setup_view(f"⚠️ {exc}", user)
        return self._question_view(session_id, user)

    @access.guarded
    def quiz(self, qids: list[str], request: gr.Request = None) -> dict:
        """A short interview on these bank entries (the chat's "Quiz me on this"), for this user."""
        user = self._user(request)
        try:
            session_id = self.engine.start(qids=list(qids or []), n=max(len(qids or []), 1), user=user)
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
        return self._graded_view(turn)

    def _graded_view(self, turn) -> dict:
        """The card after an answer (or a reveal): feedback, time taken, and the follow-up box when the
        answer left key points to probe."""
        timed = f"Time taken: {render.seconds_text(turn.seconds)}" if turn.seconds is not None else ""
        followup = bool(turn.grade.get("followup")) and not turn.revealed
        feedback = render.feedback_markdown(turn.grade, question=turn.question, open_answer=turn.revealed)
        return {self.answer: gr.update(interactive=False), self.feedback: feedback,
                **self._buttons(self.next_button), self.hint_button: visible(False),
                self.reveal_button: visible(False), self.clock: gr.Timer(active=False), self.timer_text: timed,
                self.followup_box: visible(followup), self.followup_answer: gr.update(value="", interactive=True),
                self.followup_feedback: ""}

    @access.guarded
    def hint(self, session_id, request: gr.Request = None) -> dict:
        user = self._user(request)
        if not session_id:
            return {self.status: "Start an interview first."}
        try:
            hints = self.engine.hint(session_id, user=user)
        except SessionError as exc:
            return {self.status: f"⚠️ {exc}"}
        return {self.hints: render.hints_markdown(hints, HINT_COST), self.status: ""}

    @access.guarded
    def reveal(self, session_id, request: gr.Request = None) -> dict:
        """"I don't know": the model answer, and the question back first in review mode."""
        user = self._user(request)
        if not session_id:
            return {self.feedback: "Start an interview first."}
        try:
            turn = self.engine.reveal(session_id, user=user)
        except SessionError as exc:
            return {self.feedback: f"⚠️ {exc}"}
        return self._graded_view(turn)

    @access.guarded
    def followup(self, session_id, text: str, request: gr.Request = None) -> dict:
        """Grade a follow-up answer on the key points still missing; offer the next one (at most two)."""
        user = self._user(request)
        try:
            turn = self.engine.answer_followup(session_id, text, user=user)
        except (AnswerError, SessionError) as exc:
            return {self.followup_feedback: f"⚠️ {exc}"}
        done = turn.followups[-1]["grade"]
        more = done["next"] is not None
        return {self.followup_answer: gr.update(value="", interactive=more),
                self.followup_feedback: render.followup_markdown(turn.followups, done["next"]),
                self.followup_button: visible(more)}

    def _clock_state(self, session_id, user: str) -> dict:
        """Start the question's clock; the countdown ticks only when the session has a time limit."""
        attempt = self.engine.begin(session_id, user) if session_id else None
        timed = bool(attempt and attempt["time_limit"])
        text = render.timer_markdown(attempt["time_limit"], attempt["started"], self.engine.clock()) if timed else ""
        return {self.clock: gr.Timer(active=timed), self.timer_text: text,
                self.hints: render.hints_markdown(attempt["hints"], HINT_COST) if attempt else "",
                self.followup_box: visible(False)}

    @access.guarded
    def tick(self, session_id, request: gr.Request = None):
        # once a second while timed: not counted against the rate limit, but still the user's own session.
        # It only reads the clock: a tick still queued when the answer is graded must neither start the
        # next question's clock nor overwrite the time taken.
        attempt = self.engine.attempt(session_id, access.user_of(request).name) if session_id else None
        if not attempt or not attempt["time_limit"]:
            return gr.skip()
        return render.timer_markdown(attempt["time_limit"], attempt["started"], self.engine.clock())

    @access.guarded
    def progress(self, request: gr.Request = None) -> dict:
        user = self._user(request)
        questions = {qid: entry.question for qid, entry in self.engine.bank.items()}
        schedule = render.schedule_markdown(self.engine.schedule(user), questions)
        return {self.mastery_plot: mastery_chart(self.engine.mastery(user)),
                self.queue: "### Review queue\n\n" + schedule,
                self.calendar: "### Activity\n\n```\n" + render.activity_calendar(self.engine.activity(user),
                                                                                   self.engine.today()) + "\n```"}

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
                **self._buttons(self.submit_button, self.skip_button, self.hint_button, self.reveal_button),
                self.scorecard: "", self.chart: None, self.feedback: "", **self._lists(user),
                **self._clock_state(session_id, user)}

    def _scorecard_view(self, session_id: str, user: str) -> dict:
        """End the session and show its scorecard and chart."""
        card = self.engine.end(session_id, user)
        return {self.session: session_id, **self._panels(self.score_box), self.card: "",
                self.answer: gr.update(value=""), self.status: "", **self._buttons(),
                self.scorecard: render.scorecard_markdown(card) + "\n\n" + render.turns_table_markdown(card) + "\n\n"
                + render.missed_points_markdown(self.engine.turns(session_id, user)),
                self.chart: topic_chart(card), **self._quiet(),
                self.feedback: "", **self._lists(user)}

    def _setup_view(self, message: str, user: str) -> dict:
        """Back to the set-up, with no session and a message saying why."""
        return {self.session: None, **self._panels(self.setup), self.card: "", self.status: message,
                **self._buttons(), self.scorecard: "", self.chart: None, self.feedback: "", **self._lists(user),
                **self._quiet()}

    def _quiet(self) -> dict:
        """No clock, hints or follow-up outside the question card."""
        return {self.clock: gr.Timer(active=False), self.timer_text: "", self.hints: "",
                self.followup_box: visible(False)}

    def _panels(self, shown) -> dict:
        """Show one of the three panels (set-up, question card, scorecard) and hide the other two."""
        return {panel: visible(panel is shown) for panel in (self.setup, self.card_box, self.score_box)}

    def _buttons(self, *shown) -> dict:
        """Show these of the card's submit / skip / next buttons and hide the others."""
        return {button: visible(any(button is s for s in shown))
                for button in (self.submit_button, self.skip_button, self.next_button, self.hint_button,
                               self.reveal_button)}

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


def mastery_chart(mastery: dict):
    """Mean score per topic per day practised, one line per topic (the eight most practised)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3.5))
    busiest = sorted(mastery, key=lambda topic: -len(mastery[topic]))[:8]
    for topic in busiest:
        days, scores = zip(*mastery[topic], strict=True)
        axes.plot(list(days), list(scores), marker="o", label=topic)
    if not busiest:
        axes.text(0.5, 0.5, "no answers yet", ha="center", va="center", transform=axes.transAxes)
    axes.set_ylim(0, 10)
    axes.set_ylabel("mean score / 10")
    if busiest:
        axes.legend(fontsize="small", loc="lower left")
    figure.autofmt_xdate()
    figure.tight_layout()
    plt.close(figure)
    return figure
