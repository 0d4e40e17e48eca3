"""Saved conversations: per user, in the interviews' SQLite database behind a schema version, exported as
markdown with the cited passages quoted. Plus the renderings the chat shows them with."""
from __future__ import annotations

import sqlite3

import pytest

PASSAGE = ("Why warm up the learning rate?\n\nEarly in training, adaptive optimisers have poor estimates of "
           "the gradient's variance. A warm-up keeps the first steps small while those estimates settle.\n\n"
           "| phase | rate |\n|---|---|\n| warm-up | rising |\n\nThe rate then follows $\\eta_t = \\eta_0 / \\sqrt{t}$.")
EVIDENCE = "A warm-up keeps the first steps small while those estimates settle."


def answer_doc(text: str = "Warm-up keeps the first steps small [1].") -> dict:
    return {"question": "why warm up?", "answer": text, "refused": False, "blocked": False, "guard": None,
            "citations": [{"n": 1, "chunk_id": "c1", "source": "corpus/part1.md", "question": "Why warm up the "
                           "learning rate?", "score": 0.8, "evidence": [EVIDENCE], "passage": PASSAGE,
                           "part": 1, "topic": "optimisation", "qid": "p1-warmup"}],
            "timings": {}, "suggestions": [], "fallback": None}


@pytest.fixture
def saved(tmp_path):
    from coach.conversations import Conversations

    store = Conversations(path=tmp_path / "interviews.sqlite3")
    yield store
    store.close()


def test_save_list_resume_rename_delete(saved):
    first = saved.save_turn("ana", None, "Why warm up the learning rate?", answer_doc())
    assert saved.save_turn("ana", first, "and for SGD?", answer_doc("It helps less [1].")) == first
    other = saved.save_turn("ana", None, "What is dropout?", answer_doc())
    listed = saved.list("ana")
    assert [c["id"] for c in listed] == [other, first] and listed[1]["turns"] == 2
    assert listed[1]["title"] == "Why warm up the learning rate?"
    resumed = saved.get("ana", first)
    assert [t["question"] for t in resumed["turns"]] == ["Why warm up the learning rate?", "and for SGD?"]
    assert resumed["turns"][1]["answer"]["answer"] == "It helps less [1]."
    saved.rename("ana", first, "  Warm-up   notes ")
    assert saved.get("ana", first)["title"] == "Warm-up notes"
    saved.delete("ana", first)
    assert [c["id"] for c in saved.list("ana")] == [other]


def test_another_users_conversation_is_invisible_and_untouchable(saved):
    from coach.conversations import ConversationError

    mine = saved.save_turn("ana", None, "Why warm up the learning rate?", answer_doc())
    assert saved.list("ben") == []
    for attempt in (lambda: saved.get("ben", mine), lambda: saved.rename("ben", mine, "x"),
                    lambda: saved.delete("ben", mine), lambda: saved.export_markdown("ben", mine),
                    lambda: saved.save_turn("ben", mine, "q", answer_doc())):
        with pytest.raises(ConversationError, match="no saved conversation"):
            attempt()
    assert len(saved.get("ana", mine)["turns"]) == 1 and saved.get("ana", mine)["title"].startswith("Why")


def test_bad_names_and_missing_user_are_refused_and_lose_nothing(saved):
    from coach.conversations import MAX_TITLE, ConversationError

    mine = saved.save_turn("ana", None, "Why warm up the learning rate?", answer_doc())
    for title in ("", "   ", "x" * (MAX_TITLE + 1)):
        with pytest.raises(ConversationError):
            saved.rename("ana", mine, title)
    with pytest.raises(ConversationError, match="user"):
        saved.list("")
    assert saved.get("ana", mine)["title"] == "Why warm up the learning rate?"


def test_same_database_as_the_interviews_with_a_schema_version(tmp_path, saved):
    from coach.conversations import MIGRATIONS, Conversations

    saved.save_turn("ana", None, "Why warm up the learning rate?", answer_doc())
    with sqlite3.connect(saved.path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = db.execute("SELECT version FROM schema_version WHERE component = 'conversations'").fetchone()
    assert {"conversations", "conversation_turns", "schema_version"} <= tables
    assert version == (len(MIGRATIONS),)
    again = Conversations(path=saved.path)  # reopening a current database migrates nothing and keeps data
    assert len(again.list("ana")) == 1
    again.close()


def test_migrate_applies_only_what_is_missing_and_refuses_a_newer_database(tmp_path):
    from coach.schema import migrate

    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=None)
    assert migrate(db, "notes", ["CREATE TABLE notes (id INTEGER)"]) == 1
    db.execute("INSERT INTO notes VALUES (1)")
    assert migrate(db, "notes", ["CREATE TABLE notes (id INTEGER)", "ALTER TABLE notes ADD COLUMN body TEXT"]) == 2
    assert db.execute("SELECT id, body FROM notes").fetchall() == [(1, None)]
    with pytest.raises(sqlite3.OperationalError):  # a failing migration changes nothing
        migrate(db, "notes", ["", "", "CREATE TABLE extra (id INTEGER); SELECT * FROM missing_table"])
    assert db.execute("SELECT version FROM schema_version").fetchone() == (2,)
    assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchone()
    with pytest.raises(RuntimeError, match="newer"):
        migrate(db, "notes", ["CREATE TABLE notes (id INTEGER)"])
    db.close()


def test_export_quotes_each_cited_passage_under_its_answer(saved):
    mine = saved.save_turn("ana", None, "Why warm up the learning rate?", answer_doc())
    text = saved.export_markdown("ana", mine)
    answer_at, passage_at = text.index("Warm-up keeps the first steps small [1]."), text.index("> Early in training")
    assert text.startswith("# Why warm up the learning rate?") and answer_at < passage_at
    assert "**[1] Why warm up the learning rate?** (`corpus/part1.md`)" in text
    assert f"Supports the answer: “{EVIDENCE}”" in text and "> | warm-up | rising |" in text


# --- renderings the chat uses ----------------------------------------------------------------------
def test_side_panel_highlights_evidence_and_renders_tables_and_formulas():
    from coach.render import sources_html

    html = sources_html(answer_doc()["citations"])
    assert f"<mark>{EVIDENCE}</mark>" in html
    assert "<table>" in html and "<td>warm-up</td>" in html and "<math" in html and "$" not in html
    assert html.count("<mark>") == 1, "only the supporting sentence is highlighted"


def test_highlight_never_lets_a_passage_inject_markup():
    from coach.render import highlight, markdown_html

    evil = "Attention is <script>alert(1)</script> all you need. It has <img src=x onerror=alert(1)> heads."
    html = markdown_html(highlight(evil, ["Attention is <script>alert(1)</script> all you need."]))
    assert "<script>" not in html and "<img" not in html and "<mark>Attention is &lt;script&gt;" in html


def test_citation_links_carry_the_supporting_sentence_as_their_title():
    from coach.answer import Answer
    from coach.render import chat_markdown

    doc = answer_doc('Warm-up keeps "the first" steps small [1].')
    doc["citations"][0]["evidence"] = ['It keeps "the first" steps small.']
    text = chat_markdown(Answer(**{k: doc[k] for k in ("question", "answer", "citations")}))
    assert text == 'Warm-up keeps "the first" steps small [[1]](#source-1 "It keeps ”the first” steps small.").'


def test_search_preview_cuts_between_blocks():
    from coach.render import preview

    text = "First paragraph. " * 20 + "\n\n| a | b |\n|---|---|\n" + "| 1 | 2 |\n" * 60
    shown = preview(text)
    assert shown.startswith("First paragraph.") and "| a |" not in shown and shown.endswith("…")
    assert preview("short\n\n| a |\n|---|") == "short\n\n| a |\n|---|"


def test_missed_key_points_link_to_a_chat_question():
    from urllib.parse import unquote

    from coach.render import chat_question_about, feedback_markdown

    grade = {"score": 3.0, "covered": ["a covered point"], "missing": ["warm-up keeps early steps small"],
             "feedback": "ok"}
    text = feedback_markdown(grade, question="Why warm up the learning rate?")
    link = text[text.index("(#ask=") + 6:text.index(' "Ask the chat')]
    assert unquote(link) == chat_question_about("warm-up keeps early steps small", "Why warm up the learning rate?")
    assert "Why warm up the learning rate?" in unquote(link) and "warm-up keeps early steps small" in unquote(link)
    assert "#ask=" not in feedback_markdown(grade)  # the export has no chat to link to


def test_each_kind_of_mistake_is_named_for_what_it_is():
    """The scorecard says what is wrong with each sentence: a listed misconception by name, a negated key point as a
    contradiction, a claim that states no key point as not what the model answer says (coach.grader)."""
    from coach.render import feedback_markdown

    mistakes = [{"sentence": "It removes bias.", "wrong": "averaging removes bias", "right": "it removes variance",
                 "kind": "misconception"},
                {"sentence": "XOR is linearly separable.", "wrong": "XOR is linearly separable.",
                 "right": "XOR is not linearly separable", "kind": "contradiction"},
                {"sentence": "The beam width sets the depth.", "wrong": "The beam width sets the depth.",
                 "right": "beam width k trades quality for compute", "kind": "unsupported"}]
    text = feedback_markdown({"score": 1.0, "covered": [], "missing": [], "feedback": "", "mistakes": mistakes})
    lines = [line for line in text.splitlines() if line.startswith("- You said")]
    assert 'the misconception "averaging removes bias"' in lines[0]
    assert "contradicts the model answer" in lines[1]
    assert "not what the model answer says" in lines[2] and "contradicts" not in lines[2]
