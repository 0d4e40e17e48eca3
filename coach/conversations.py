"""Saved chat conversations, per user, in the same SQLite database as the interviews.

A conversation is a title and its turns; a turn is the question and the answer's JSON (the `ask --json`
document) with the text of each cited passage as it was when the answer was given, so a resumed or
exported conversation shows what the reader saw even after the bank changes.

Every method takes the `user` whose conversations it touches, and a conversation of another user is
treated exactly like one that does not exist: the same error, nothing about it revealed. The app passes
the signed-in user (or "local" on an unauthenticated loopback server). The tables are created and
upgraded by `coach.schema.migrate` under the component name "conversations".
"""
from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from pathlib import Path

from coach.config import get_settings
from coach.render import conversation_markdown
from coach.schema import migrate, transaction

MAX_TITLE = 120    # characters of a conversation's name
AUTO_TITLE = 60    # characters of the first question used as the name of a new conversation

MIGRATIONS = ["""
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, user TEXT NOT NULL, title TEXT NOT NULL, created REAL NOT NULL, updated REAL NOT NULL);
CREATE INDEX IF NOT EXISTS conversations_by_user ON conversations (user, updated);
CREATE TABLE IF NOT EXISTS conversation_turns (
    conversation_id TEXT NOT NULL, position INTEGER NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL,
    created REAL NOT NULL, PRIMARY KEY (conversation_id, position));
"""]


class ConversationError(ValueError):
    """A conversation request that cannot be served: unknown id (or another user's), a bad name."""


class Conversations:
    """The saved conversations; one instance is shared by every user's requests (`clock` for tests)."""

    def __init__(self, path: Path | str | None = None, clock=time.time):
        self.path = Path(path or get_settings().interviews_db)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        migrate(self.db, "conversations", MIGRATIONS)
        self._lock = threading.RLock()

    def close(self) -> None:
        self.db.close()

    def list(self, user: str) -> list[dict]:
        """The user's conversations, most recently used first: id, title, created, updated, turns."""
        rows = self.db.execute(
            "SELECT c.id, c.title, c.created, c.updated, COUNT(t.position) AS turns FROM conversations c "
            "LEFT JOIN conversation_turns t ON t.conversation_id = c.id WHERE c.user = ? GROUP BY c.id "
            "ORDER BY c.updated DESC", (_user(user),))
        return [dict(row) for row in rows]

    def get(self, user: str, conversation_id: str) -> dict:
        """One conversation with its turns in order, each {"question": str, "answer": dict}."""
        row = self._owned(user, conversation_id)
        turns = self.db.execute("SELECT question, answer FROM conversation_turns WHERE conversation_id = ? "
                                "ORDER BY position", (conversation_id,))
        return {**dict(row), "turns": [{"question": t["question"], "answer": json.loads(t["answer"])}
                                       for t in turns]}

    def save_turn(self, user: str, conversation_id: str | None, question: str, answer: dict) -> str:
        """Append a question and its answer (the ask JSON, citations may carry their `passage`); with no
        id, start a new conversation named after the question. Returns the conversation's id."""
        with self._lock, transaction(self.db):
            now = self.clock()
            if conversation_id is None:
                conversation_id = uuid.uuid4().hex[:12]
                self.db.execute("INSERT INTO conversations VALUES (?, ?, ?, ?, ?)",
                                (conversation_id, _user(user), _title(question[:AUTO_TITLE]), now, now))
            else:
                self._owned(user, conversation_id)
                self.db.execute("UPDATE conversations SET updated = ? WHERE id = ?", (now, conversation_id))
            position = self.db.execute("SELECT COUNT(*) FROM conversation_turns WHERE conversation_id = ?",
                                       (conversation_id,)).fetchone()[0]
            self.db.execute("INSERT INTO conversation_turns VALUES (?, ?, ?, ?, ?)",
                            (conversation_id, position, question, json.dumps(answer), now))
        return conversation_id

    def rename(self, user: str, conversation_id: str, title: str) -> None:
        with self._lock:
            self._owned(user, conversation_id)
            self.db.execute("UPDATE conversations SET title = ? WHERE id = ?", (_title(title), conversation_id))

    def delete(self, user: str, conversation_id: str) -> None:
        with self._lock, transaction(self.db):
            self._owned(user, conversation_id)
            self.db.execute("DELETE FROM conversation_turns WHERE conversation_id = ?", (conversation_id,))
            self.db.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,))

    def export_markdown(self, user: str, conversation_id: str) -> str:
        """The conversation as markdown, each cited passage quoted under its answer."""
        return conversation_markdown(self.get(user, conversation_id))

    # --- helpers -------------------------------------------------------------------------------
    def _owned(self, user: str, conversation_id: str) -> sqlite3.Row:
        row = self.db.execute("SELECT id, title, created, updated FROM conversations WHERE id = ? AND user = ?",
                              (conversation_id, _user(user))).fetchone()
        if row is None:
            raise ConversationError(f"no saved conversation {conversation_id!r}; the list shows yours")
        return row


def _user(user: str) -> str:
    if not isinstance(user, str) or not user.strip():
        raise ConversationError("conversations belong to a user; none was given")
    return user


def _title(title: str) -> str:
    title = " ".join((title or "").split())
    if not title:
        raise ConversationError("a conversation needs a name")
    if len(title) > MAX_TITLE:
        raise ConversationError(f"a name is at most {MAX_TITLE} characters; this one has {len(title)}")
    return title
