"""Mock-interview sessions: question plans, graded turns, Leitner review, all in SQLite.

The database (`COACH_DATA_DIR/interviews.sqlite3`, WAL mode) holds sessions, their graded answers and the
review schedule. Every answer is committed the moment it is graded, so a killed app loses at most the
answer being typed, and any process can resume a session by its id.

Question selection: a session's plan is fixed when it starts (distinct bank ids, so nothing repeats).
Practice picks at random among the entries matching part / topic / difficulty, unseen ones first. Review
picks from the Leitner schedule: due items first, lowest box (weakest) first, then the lowest last score.

Leitner boxes: a score of PROMOTE or more moves an item up one box, under DEMOTE sends it back to box 1,
in between it stays; an item in box b is due again INTERVAL_DAYS[b] days later.

Every session and every review item belongs to a user (`owner`); each method takes the `user` asking,
and another user's session is reported exactly like one that does not exist. Session ids are 128 random
bits, so they cannot be guessed. A server without accounts has one user, "local".
"""
from __future__ import annotations

import json
import random
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from coach.config import get_settings
from coach.render import describe_filters, interview_markdown

INTERVAL_DAYS = {1: 0.0, 2: 1.0, 3: 3.0, 4: 7.0, 5: 21.0}
PROMOTE, DEMOTE = 7.0, 5.0
DAY = 86400.0

LOCAL_USER = "local"
SCHEMA_VERSION = 2  # 1: no owners (first release); 2: sessions and reviews belong to a user
SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, mode TEXT NOT NULL,
    filters TEXT NOT NULL, plan TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active',
    owner TEXT NOT NULL DEFAULT 'local');
CREATE TABLE IF NOT EXISTS answers (
    session_id TEXT NOT NULL REFERENCES sessions(id), position INTEGER NOT NULL, qid TEXT NOT NULL,
    question TEXT NOT NULL, topic TEXT NOT NULL, answer TEXT NOT NULL, skipped INTEGER NOT NULL,
    score REAL NOT NULL, grade TEXT NOT NULL, followup_answer TEXT, followup_grade TEXT,
    created REAL NOT NULL, PRIMARY KEY (session_id, position));
CREATE TABLE IF NOT EXISTS reviews (
    owner TEXT NOT NULL, qid TEXT NOT NULL, box INTEGER NOT NULL, due REAL NOT NULL, last_score REAL NOT NULL,
    seen INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (owner, qid));
CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (owner, created);
"""
# Version 1 databases: sessions gain an owner column, reviews are rebuilt keyed by (owner, qid); all old
# rows belong to the local user, who had them on the single-user app.
MIGRATE_1_TO_2 = """
ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
ALTER TABLE reviews RENAME TO reviews_v1;
CREATE TABLE reviews (
    owner TEXT NOT NULL, qid TEXT NOT NULL, box INTEGER NOT NULL, due REAL NOT NULL, last_score REAL NOT NULL,
    seen INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (owner, qid));
INSERT INTO reviews SELECT 'local', qid, box, due, last_score, seen, updated FROM reviews_v1;
DROP TABLE reviews_v1;
"""


class SessionError(ValueError):
    """A session request that cannot be served (unknown id, nothing matches the filters ...)."""


@dataclass
class Turn:
    position: int
    qid: str
    question: str
    topic: str
    answer: str
    skipped: bool
    score: float
    grade: dict
    followup_answer: str | None = None
    followup_grade: dict | None = None


class Interviewer:
    """The interview engine the CLI and the app share. `clock` is injectable so tests can move time."""

    def __init__(self, grader, path: Path | str | None = None, clock=time.time):
        self.grader = grader
        self.bank = grader.bank
        self.clock = clock
        self.path = Path(path or get_settings().interviews_db)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a committed answer survives a killed app
        self._migrate()
        # The app shares one engine between users' threads; a turn is read, graded and written as one step.
        self._lock = threading.RLock()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        """Bring the database to SCHEMA_VERSION; a new one is created at it."""
        with self._transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if version < 2 and "sessions" in tables:
                columns = {r[1] for r in self.db.execute("PRAGMA table_info(sessions)")}
                if "owner" not in columns:
                    for statement in filter(str.strip, MIGRATE_1_TO_2.split(";")):
                        self.db.execute(statement)
            for statement in filter(str.strip, SCHEMA.split(";")):
                self.db.execute(statement)
            self.db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @contextmanager
    def _transaction(self):
        """BEGIN ... COMMIT, or ROLLBACK on error (the connection is in autocommit mode otherwise)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- sessions -----------------------------------------------------------------------------
    def start(self, part: int | None = None, topic: str | None = None, difficulty: str | None = None,
              n: int = 10, review: bool = False, seed: int | None = None, user: str = LOCAL_USER,
              scope: str = "all") -> str:
        """Create a session and return its id; raise SessionError when no question fits. `scope`: the bank,
        the user's uploaded question collections ("docs"), or both ("all")."""
        # the grader's bank-wide key-point vectors, while the user reads the first question
        threading.Thread(target=self.grader.key_point_vectors, name="grader-warm-up", daemon=True).start()
        with self._lock:
            if n < 1:
                raise SessionError("a session needs at least one question")
            pool = [*(self.bank.values() if scope in ("all", "bank") else []),
                    *(self.documents().values() if scope in ("all", "docs") else [])]
            candidates = [e for e in pool if (part is None or e.part == part)
                          and (topic is None or e.topic == topic.lower()) and (difficulty is None or e.difficulty == difficulty)]
            if not candidates:
                where = "question in your documents" if scope == "docs" else "bank question"
                raise SessionError(f"no {where} matches " + describe_filters(part, topic, difficulty) +
                                   {"docs": " (upload a question collection in the Library first)",
                                    "all": " (nor does any question in your documents)"}.get(scope, ""))
            plan = (self._review_plan(candidates, n, user) if review
                    else self._practice_plan(candidates, n, seed, user))
            if not plan:
                raise SessionError("nothing to review yet: answer some questions first (weak ones come back here)")
            session_id = secrets.token_hex(16)
            now = self.clock()
            filters = {"part": part, "topic": topic, "difficulty": difficulty, "n": n, "scope": scope}
            with self._transaction():
                self.db.execute("INSERT INTO sessions (id, created, updated, mode, filters, plan, status, owner) "
                                "VALUES (?, ?, ?, ?, ?, ?, 'active', ?)",
                                (session_id, now, now, "review" if review else "practice", json.dumps(filters),
                                 json.dumps(plan), user))
            return session_id

    def _practice_plan(self, candidates, n: int, seed: int | None, user: str) -> list[str]:
        rng = random.Random(seed)
        seen = {row["qid"] for row in self.db.execute("SELECT qid FROM reviews WHERE owner = ?", (user,))}
        ids = [e.id for e in candidates]
        rng.shuffle(ids)
        ids.sort(key=lambda qid: qid in seen)  # stable: unseen first, random within each group
        return ids[:n]

    def _review_plan(self, candidates, n: int, user: str) -> list[str]:
        wanted = {e.id for e in candidates}
        now = self.clock()
        rows = [r for r in self.db.execute("SELECT * FROM reviews WHERE owner = ?", (user,)) if r["qid"] in wanted]
        rows.sort(key=lambda r: (r["due"] > now, r["box"], r["last_score"], r["due"]))
        return [r["qid"] for r in rows][:n]

    def session(self, session_id: str, user: str = LOCAL_USER) -> dict:
        """A session of `user`; someone else's session is reported as unknown, like a wrong id."""
        row = self.db.execute("SELECT * FROM sessions WHERE id = ? AND owner = ?", (str(session_id), user)).fetchone()
        if row is None:
            raise SessionError(f"no session with id {session_id!r}; `interview --history` lists them")
        answered = self.db.execute("SELECT COUNT(*) FROM answers WHERE session_id = ?", (session_id,)).fetchone()[0]
        return {"id": row["id"], "created": row["created"], "updated": row["updated"], "mode": row["mode"],
                "filters": json.loads(row["filters"]), "plan": json.loads(row["plan"]), "status": row["status"],
                "answered": answered}

    def history(self, limit: int = 50, user: str = LOCAL_USER) -> list[dict]:
        """The user's past sessions, newest first, with their mean score (a skipped question counts as 0,
        as in the scorecard)."""
        rows = self.db.execute(
            "SELECT s.id, s.created, s.mode, s.status, s.plan, COUNT(a.position) AS answered, "
            "AVG(a.score) AS mean FROM sessions s LEFT JOIN answers a ON a.session_id = s.id "
            "WHERE s.owner = ? GROUP BY s.id ORDER BY s.created DESC LIMIT ?", (user, limit))
        return [{"id": r["id"], "created": r["created"], "mode": r["mode"], "status": r["status"],
                 "questions": len(json.loads(r["plan"])), "answered": r["answered"],
                 "mean_score": None if r["mean"] is None else round(r["mean"], 1)} for r in rows]

    def current(self, session_id: str, user: str = LOCAL_USER):
        """The next question of the session (a bank or document Entry), or None when it is over."""
        info = self.session(session_id, user)
        if info["status"] != "active" or info["answered"] >= len(info["plan"]):
            return None
        return self.entry(info["plan"][info["answered"]])

    def entry(self, qid: str):
        """A bank entry, or a question from the user's documents (None once its upload is deleted)."""
        from coach.documents import document_entry

        return self.bank.get(qid) or document_entry(self.grader.retriever.store, qid)

    def documents(self) -> dict:
        """The questions of the uploaded collections, with derived key points (coach.documents)."""
        from coach.documents import document_entries

        return document_entries(self.grader.retriever.store)

    def progress(self, session_id: str, user: str = LOCAL_USER) -> tuple[int, int]:
        """(number of the current question, questions in the session), e.g. (3, 10)."""
        info = self.session(session_id, user)
        return min(info["answered"] + 1, len(info["plan"])), len(info["plan"])

    # --- turns --------------------------------------------------------------------------------
    def answer(self, session_id: str, text: str, user: str = LOCAL_USER) -> Turn:
        """Grade the answer to the current question and commit it at once."""
        with self._lock:
            entry = self._current_or_fail(session_id, user)
            grade = self.grader.grade_entry(entry, text)
            return self._record(session_id, entry, text, False, grade.score, grade.as_json(), user)

    def skip(self, session_id: str, user: str = LOCAL_USER) -> Turn:
        """Move on without answering; a skipped question counts as weak for review."""
        with self._lock:
            entry = self._current_or_fail(session_id, user)
            grade = {"score": 0.0, "covered": [], "missing": list(entry.key_points),
                     "feedback": "Skipped.", "citations": [], "model_answer": entry.answer, "followup": None}
            return self._record(session_id, entry, "", True, 0.0, grade, user)

    def answer_followup(self, session_id: str, text: str, user: str = LOCAL_USER) -> Turn:
        """Grade an answer to the last turn's follow-up against the key points it had missed. The turn's
        score stays as it was; the points recovered are stored and shown."""
        with self._lock:
            turns = self.turns(session_id, user)
            turn = turns[-1] if turns else None
            if turn is None:
                raise SessionError("no answered question to follow up on")
            entry = self.entry(turn.qid)
            if entry is None:
                raise SessionError("that question's document was deleted; start a new interview")
            grade = self.grader.grade_entry(entry, text).as_json()
            recovered = [p for p in grade["covered"] if p in turn.grade.get("missing", [])]
            followup = {"recovered": recovered, "score": grade["score"], "feedback": (
                f"You now covered {len(recovered)} of the {len(turn.grade.get('missing', []))} points you had missed.")}
            with self._transaction():
                self.db.execute("UPDATE answers SET followup_answer = ?, followup_grade = ? "
                                "WHERE session_id = ? AND position = ?",
                                (text, json.dumps(followup), session_id, turn.position))
            turn.followup_answer, turn.followup_grade = text, followup
            return turn

    def end(self, session_id: str, user: str = LOCAL_USER) -> dict:
        with self._lock:
            self.session(session_id, user)
            with self._transaction():
                self.db.execute("UPDATE sessions SET status = 'finished', updated = ? WHERE id = ? AND owner = ?",
                                (self.clock(), session_id, user))
            return self.scorecard(session_id, user)

    def turns(self, session_id: str, user: str = LOCAL_USER) -> list[Turn]:
        self.session(session_id, user)  # raises for another user's session
        rows = self.db.execute("SELECT * FROM answers WHERE session_id = ? ORDER BY position", (session_id,))
        return [Turn(r["position"], r["qid"], r["question"], r["topic"], r["answer"], bool(r["skipped"]),
                     r["score"], json.loads(r["grade"]), r["followup_answer"],
                     json.loads(r["followup_grade"]) if r["followup_grade"] else None) for r in rows]

    def _current_or_fail(self, session_id: str, user: str):
        entry = self.current(session_id, user)
        if entry is None:
            raise SessionError(f"session {session_id} has no question left; start a new one")
        return entry

    def _record(self, session_id: str, entry, text: str, skipped: bool, score: float, grade: dict,
                user: str) -> Turn:
        now = self.clock()
        info = self.session(session_id, user)
        position = info["answered"]
        review = self.db.execute("SELECT box, seen FROM reviews WHERE owner = ? AND qid = ?",
                                 (user, entry.id)).fetchone()
        box = next_box(review["box"] if review else None, score)
        # One transaction: the answer and the schedule change together or not at all.
        with self._transaction():
            self.db.execute("INSERT INTO answers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)",
                            (session_id, position, entry.id, entry.question, entry.topic, text, int(skipped),
                             score, json.dumps(grade), now))
            self.db.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT(owner, qid) DO UPDATE "
                            "SET box = excluded.box, due = excluded.due, last_score = excluded.last_score, "
                            "seen = seen + 1, updated = excluded.updated",
                            (user, entry.id, box, now + INTERVAL_DAYS[box] * DAY, score, now))
            status = "finished" if position + 1 >= len(info["plan"]) else info["status"]
            self.db.execute("UPDATE sessions SET updated = ?, status = ? WHERE id = ?", (now, status, session_id))
        return Turn(position, entry.id, entry.question, entry.topic, text, skipped, score, grade)

    def schedule(self, user: str = LOCAL_USER) -> list[dict]:
        """The user's review schedule, weakest and most overdue first."""
        now = self.clock()
        rows = self.db.execute("SELECT * FROM reviews WHERE owner = ? ORDER BY due > ?, box, last_score, due",
                               (user, now))
        return [{"qid": r["qid"], "box": r["box"], "due_in_days": round((r["due"] - now) / DAY, 2),
                 "last_score": r["last_score"], "seen": r["seen"]} for r in rows]

    # --- results ------------------------------------------------------------------------------
    def scorecard(self, session_id: str, user: str = LOCAL_USER) -> dict:
        """Mean score overall and per topic, answered / skipped counts, the weakest topics first."""
        turns = self.turns(session_id, user)
        info = self.session(session_id, user)
        per_topic: dict[str, list[float]] = {}
        for t in turns:
            per_topic.setdefault(t.topic, []).append(t.score)
        topics = {topic: round(sum(s) / len(s), 1) for topic, s in per_topic.items()}
        scores = [t.score for t in turns]
        return {"id": session_id, "mode": info["mode"], "questions": len(info["plan"]), "answered": len(turns),
                "skipped": sum(t.skipped for t in turns),
                "mean_score": round(sum(scores) / len(scores), 1) if scores else None,
                "per_topic": dict(sorted(topics.items(), key=lambda item: item[1])),
                "weakest": [t.question for t in sorted(turns, key=lambda t: t.score)[:3] if t.score < PROMOTE]}

    def export_markdown(self, session_id: str, user: str = LOCAL_USER) -> str:
        """The whole session as markdown (rendered by `coach.render.interview_markdown`)."""
        return interview_markdown(self.session(session_id, user), self.scorecard(session_id, user),
                                  self.turns(session_id, user))


def next_box(box: int | None, score: float) -> int:
    if box is None:
        return 2 if score >= PROMOTE else 1
    if score >= PROMOTE:
        return min(box + 1, max(INTERVAL_DAYS))
    return 1 if score < DEMOTE else box
