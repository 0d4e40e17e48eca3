"""Practice aids of the mock interviewer (issue 17): hints, reveal, time taken, follow-up turns, adaptive
difficulty, the progress view's data, and the schema migration that keeps older databases working.
Real grader, real SQLite; time moves by an injected clock."""
from __future__ import annotations

import sqlite3

import pytest


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def engine(grader, tmp_path):
    from coach.interviewer import Interviewer

    interviewer = Interviewer(grader, path=tmp_path / "interviews.sqlite3", clock=Clock())
    yield interviewer
    interviewer.close()


def test_each_hint_climbs_the_ladder_and_costs_score(engine):
    from coach.interviewer import HINT_COST, SessionError

    plain, hinted = engine.start(topic="dropout", n=1, seed=4), engine.start(topic="dropout", n=1, seed=4)
    entry = engine.current(plain)
    answer = f"In short, {entry.key_points[0]}. Also, {entry.key_points[1]}."
    first = engine.answer(plain, answer)
    hints = [engine.hint(hinted) for _ in range(2)][-1]
    assert len(hints) == 2 and hints[0] != hints[1]
    turn = engine.answer(hinted, answer)
    assert turn.hints == 2 and turn.score == round(max(0.0, first.score - 2 * HINT_COST), 1) < first.score
    assert engine.scorecard(hinted)["turns"][0]["hints"] == 2
    again = engine.start(topic="dropout", n=1, seed=4)
    for _ in engine.current(again).key_points:
        engine.hint(again)
    with pytest.raises(SessionError, match="no more hints"):
        engine.hint(again)


def test_reveal_shows_the_model_answer_and_brings_the_question_back_first(engine):
    session = engine.start(part=1, n=3, seed=5)
    entry = engine.current(session)
    turn = engine.reveal(session)
    assert turn.revealed and turn.score == 0 and turn.grade["model_answer"] == entry.answer
    assert turn.grade["citations"] and "[1]" in turn.grade["feedback"]
    schedule = {r["qid"]: r for r in engine.schedule()}
    assert schedule[entry.id]["box"] == 1 and schedule[entry.id]["due_in_days"] <= 0
    engine.answer(session, engine.current(session).answer)
    assert engine.session(engine.start(review=True, n=2))["plan"][0] == entry.id


def test_time_taken_is_stored_and_over_the_limit_is_marked(engine):
    from coach.render import turns_table_markdown

    session = engine.start(topic="dropout", n=2, seed=1, time_limit=30)
    engine.begin(session)
    engine.clock.now += 42
    engine.begin(session)  # showing the question again keeps the first start time
    turn = engine.answer(session, "Dropout zeroes random units during training.")
    assert turn.seconds == 42.0
    assert engine.attempt(session) is None  # the page's timer ticking late: it reads no clock and starts none
    engine.clock.now += 100
    engine.begin(session)
    engine.clock.now += 12
    engine.skip(session)
    card = engine.scorecard(session)
    assert [t["seconds"] for t in card["turns"]] == [42.0, 12.0] and card["time_limit"] == 30
    assert [t["over_limit"] for t in card["turns"]] == [True, False]
    table = turns_table_markdown(card)
    assert "42 s (over the limit)" in table and "12 s |" in table


def test_two_follow_ups_graded_on_the_points_still_missing(engine):
    from coach.interviewer import MAX_FOLLOWUPS, SessionError

    session = engine.start(topic="dropout", n=1, seed=2)
    entry = engine.current(session)
    turn = engine.answer(session, f"In short, {entry.key_points[0]}.")
    missing = turn.grade["missing"]
    assert len(missing) >= 3 and turn.grade["followup"]
    turn = engine.answer_followup(session, f"Well, {missing[0]}.")
    first = turn.followups[0]["grade"]
    assert first["recovered"] == [missing[0]] and first["next"]
    turn = engine.answer_followup(session, "I am not sure about that one.")
    assert len(turn.followups) == MAX_FOLLOWUPS == 2 and turn.followups[1]["grade"]["recovered"] == []
    assert turn.followups[1]["question"] == first["next"]
    with pytest.raises(SessionError, match="follow-ups"):
        engine.answer_followup(session, f"And {missing[1]}.")
    assert "Follow-up" in engine.export_markdown(session) and "I am not sure" in engine.export_markdown(session)


def test_adaptive_difficulty_steps_up_after_a_strong_answer_and_down_after_a_weak_one(engine):
    session = engine.start(n=3, seed=3, adaptive=True)
    bank = engine.grader.bank
    first = engine.current(session)
    assert first.difficulty == "medium"
    engine.answer(session, first.answer)
    second = engine.current(session)
    assert second.difficulty == "hard", second.id
    engine.answer(session, "I do not know.")
    assert engine.current(session).difficulty == "medium"
    assert len(set(engine.session(session)["plan"])) == 3 and all(q in bank for q in engine.session(session)["plan"])


def test_progress_data_mastery_activity_and_calendar(engine):
    from coach.render import activity_calendar, schedule_markdown

    session = engine.start(topic="dropout", n=2, seed=6)
    engine.answer(session, engine.current(session).answer)
    engine.clock.now += 86400
    engine.skip(session)
    mastery = engine.mastery()
    assert list(mastery) == ["dropout"] and len(mastery["dropout"]) == 2
    assert mastery["dropout"][0][1] >= 6.5 and mastery["dropout"][1][1] == 0.0
    activity = engine.activity()
    assert sorted(activity.values()) == [1, 1]
    calendar = activity_calendar(activity, engine.today())
    grid = "\n".join(calendar.splitlines()[:7])
    assert "2 answers since" in calendar and grid.count("░") == 2 and "█" not in grid
    queue = schedule_markdown(engine.schedule(), {q: e.question for q, e in engine.grader.bank.items()})
    assert "**Box 1**" in queue and "due now" in queue


def test_an_older_database_is_migrated_and_keeps_its_sessions(grader, tmp_path):
    from coach.interviewer import MIGRATIONS, SCHEMA, Interviewer

    path = tmp_path / "old.sqlite3"
    with sqlite3.connect(path) as db:  # what the previous version wrote
        db.executescript(SCHEMA)
        db.execute("INSERT INTO sessions VALUES ('old1', 1.0, 1.0, 'practice', '{}', '[\"p4-lora\"]', 'finished')")
        db.execute("INSERT INTO answers VALUES ('old1', 0, 'p4-lora', 'Q', 'fine-tuning', 'A', 0, 6.0, "
                   "'{\"missing\": []}', NULL, NULL, 1.0)")
    engine = Interviewer(grader, path=path)
    assert engine.db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    (old,) = engine.turns("old1")
    assert old.score == 6.0 and old.hints == 0 and not old.revealed and old.seconds is None
    assert engine.scorecard("old1")["turns"][0]["followups"] == 0
    engine.close()
    Interviewer(grader, path=path).close()  # opening again is a no-op
