"""Mock-interview sessions: question plans, graded turns, Leitner review, all in SQLite.

The database (`COACH_DATA_DIR/interviews.sqlite3`, WAL mode) holds sessions, their graded answers and the
review schedule. Every answer is committed the moment it is graded, so a killed app loses at most the
answer being typed, and any process can resume a session by its id.

Question selection: a session's plan is fixed when it starts (distinct bank ids, so nothing repeats).
Practice picks at random among the entries matching part / topic / difficulty, unseen ones first. Review
picks from the Leitner schedule: due items first, lowest box (weakest) first, then the lowest last score.

Leitner boxes: a score of PROMOTE or more moves an item up one box, under DEMOTE sends it back to box 1,
in between it stays; an item in box b is due again INTERVAL_DAYS[b] days later.

Practice aids (issue 17), all stored with the turn: hints on demand (a ladder built from the key points
not yet covered, each costing HINT_COST points of the score), "I don't know / reveal" (the model answer,
and the question back in box 1, due at once), an optional time limit with the time taken, up to
MAX_FOLLOWUPS follow-up turns graded on the key points still missing, and adaptive difficulty (a strong
answer steps the next question up a difficulty, a weak one down).

Every session and every review item belongs to a user (`owner`); each method takes the `user` asking,
and another user's session is reported exactly like one that does not exist. Session ids are 128 random
bits, so they cannot be guessed. A server without accounts has one user, "local".

The schema carries a version (`PRAGMA user_version`); MIGRATIONS bring an older database up to date
when it is opened, so databases written by earlier versions keep working.
"""
from __future__ import annotations

import json
import random
import secrets
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from coach.config import get_settings
from coach.render import describe_filters, interview_markdown

INTERVAL_DAYS = {1: 0.0, 2: 1.0, 3: 3.0, 4: 7.0, 5: 21.0}
HINT_COST = 1.0       # points off the score per hint taken
MAX_FOLLOWUPS = 2     # follow-up turns per question
DIFFICULTY_STEPS = ("easy", "medium", "hard")
PROMOTE, DEMOTE = 7.0, 5.0
DAY = 86400.0
LOCAL_USER = "local"

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY, created REAL NOT NULL, updated REAL NOT NULL, mode TEXT NOT NULL,
    filters TEXT NOT NULL, plan TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active');
CREATE TABLE IF NOT EXISTS answers (
    session_id TEXT NOT NULL REFERENCES sessions(id), position INTEGER NOT NULL, qid TEXT NOT NULL,
    question TEXT NOT NULL, topic TEXT NOT NULL, answer TEXT NOT NULL, skipped INTEGER NOT NULL,
    score REAL NOT NULL, grade TEXT NOT NULL, followup_answer TEXT, followup_grade TEXT,
    created REAL NOT NULL, PRIMARY KEY (session_id, position));
CREATE TABLE IF NOT EXISTS reviews (
    qid TEXT PRIMARY KEY, box INTEGER NOT NULL, due REAL NOT NULL, last_score REAL NOT NULL,
    seen INTEGER NOT NULL, updated REAL NOT NULL);
"""
# Each migration takes the database from version n to n + 1 (index n); new columns get defaults, so the
# rows of an older database read as "no hints, not revealed, not timed".
MIGRATIONS = [
    """
    ALTER TABLE sessions ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
    ALTER TABLE answers ADD COLUMN hints INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE answers ADD COLUMN revealed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE answers ADD COLUMN seconds REAL;
    CREATE TABLE IF NOT EXISTS attempts (
        session_id TEXT NOT NULL REFERENCES sessions(id), position INTEGER NOT NULL, started REAL NOT NULL,
        hints TEXT NOT NULL DEFAULT '[]', PRIMARY KEY (session_id, position));
    CREATE TABLE IF NOT EXISTS followups (
        session_id TEXT NOT NULL REFERENCES sessions(id), position INTEGER NOT NULL, turn INTEGER NOT NULL,
        question TEXT NOT NULL, answer TEXT NOT NULL, grade TEXT NOT NULL, created REAL NOT NULL,
        PRIMARY KEY (session_id, position, turn));
    """,
    # 2: sessions and review items belong to a user; the first release's rows go to the local user, who
    # had them on the single-user app. Reviews are rebuilt, keyed by (owner, qid).
    """
    ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT 'local';
    CREATE INDEX IF NOT EXISTS sessions_by_owner ON sessions (owner, created);
    ALTER TABLE reviews RENAME TO reviews_v1;
    CREATE TABLE reviews (
        owner TEXT NOT NULL, qid TEXT NOT NULL, box INTEGER NOT NULL, due REAL NOT NULL,
        last_score REAL NOT NULL, seen INTEGER NOT NULL, updated REAL NOT NULL, PRIMARY KEY (owner, qid));
    INSERT INTO reviews SELECT 'local', qid, box, due, last_score, seen, updated FROM reviews_v1;
    DROP TABLE reviews_v1;
    """,
]


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
    hints: int = 0
    revealed: bool = False
    seconds: float | None = None
    followups: list[dict] = field(default_factory=list)   # {"question", "answer", "grade"} per follow-up turn


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
        self.db.executescript(SCHEMA)
        self._migrate()
        # The app shares one engine between users' threads; a turn is read, graded and written as one step.
        self._lock = threading.RLock()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        """Bring the database to the current schema version, one migration at a time, each in a transaction."""
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            self.db.execute("BEGIN IMMEDIATE")
            try:
                if self.db.execute("PRAGMA user_version").fetchone()[0] < number:  # another process may have
                    for statement in filter(str.strip, script.split(";")):
                        self.db.execute(statement)
                    self.db.execute(f"PRAGMA user_version = {number}")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")

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
              n: int = 10, review: bool = False, seed: int | None = None, time_limit: float | None = None,
              adaptive: bool = False, qids: list[str] | None = None, user: str = LOCAL_USER,
              scope: str = "all") -> str:
        """Create a session for `user` and return its id; raise SessionError when no question fits.
        `time_limit` is seconds per question (None: untimed); `adaptive` steps the difficulty after each
        answer; `qids` asks these bank entries, in this order, instead of drawing from the filters (the
        chat's "Quiz me"); `scope`: the bank, the user's uploaded question collections ("docs"), or both
        ("all")."""
        # the grader's bank-wide key-point vectors, while the user reads the first question
        threading.Thread(target=self.grader.key_point_vectors, name="grader-warm-up", daemon=True).start()
        with self._lock:
            if n < 1:
                raise SessionError("a session needs at least one question")
            if qids is not None:
                candidates = [e for e in (self.entry(qid) for qid in dict.fromkeys(qids)) if e is not None]
            else:
                candidates = [e for e in self._pool(scope) if (part is None or e.part == part)
                              and (topic is None or e.topic == topic.lower())
                              and (difficulty is None or e.difficulty == difficulty)]
            if not candidates:
                raise SessionError(_no_question(scope, part, topic, difficulty) if qids is None
                                   else "none of the cited passages is a bank question to quiz on")
            if time_limit is not None and time_limit <= 0:
                raise SessionError("a time limit must be a positive number of seconds")
            if qids is not None:
                plan = [e.id for e in candidates][:n]
            else:
                plan = (self._review_plan(candidates, n, user) if review
                        else self._practice_plan(candidates, n, seed, user))
            # Adaptive steps need rated questions: uploaded questions are unrated, so they never adapt.
            options = {"time_limit": time_limit, "adaptive": bool(adaptive) and not review and qids is None
                       and any(e.difficulty in DIFFICULTY_STEPS for e in candidates)}
            if options["adaptive"]:  # every candidate, in order: the next question is drawn from these
                options["pool"] = self._practice_plan(candidates, len(candidates), seed, user)
                plan = self._adaptive_first(options["pool"], n, difficulty)
            if not plan:
                raise SessionError("nothing to review yet: answer some questions first (weak ones come back here)")
            session_id = secrets.token_hex(16)
            now = self.clock()
            filters = {"part": part, "topic": topic, "difficulty": difficulty, "n": n, "qids": qids, "scope": scope}
            with self._transaction():
                self.db.execute("INSERT INTO sessions (id, created, updated, mode, filters, plan, status, options, "
                                "owner) VALUES (?, ?, ?, ?, ?, ?, 'active', ?, ?)",
                                (session_id, now, now, "review" if review else "practice", json.dumps(filters),
                                 json.dumps(plan), json.dumps(options), user))
            return session_id

    def _practice_plan(self, candidates, n: int, seed: int | None, user: str) -> list[str]:
        rng = random.Random(seed)
        seen = {row["qid"] for row in self.db.execute("SELECT qid FROM reviews WHERE owner = ?", (user,))}
        ids = [e.id for e in candidates]
        rng.shuffle(ids)
        ids.sort(key=lambda qid: qid in seen)  # stable: unseen first, random within each group
        return ids[:n]

    def _adaptive_first(self, pool: list[str], n: int, difficulty: str | None) -> list[str]:
        """An adaptive session opens at medium (or the chosen difficulty); later questions are picked
        after each answer (`_adapt`). The plan holds n ids all along, so progress reads the same."""
        opening = _nearest(pool[:], self.bank, difficulty or "medium", set())
        return [opening, *[q for q in pool if q != opening]][:n] if opening else []

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
                "answered": answered, "options": json.loads(row["options"])}

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

    def _pool(self, scope: str) -> list:
        """The questions a session may draw from: the bank's, the uploaded collections', or both."""
        return [*(self.bank.values() if scope in ("all", "bank") else []),
                *(self.documents().values() if scope in ("all", "docs") else [])]

    def documents(self) -> dict:
        """The questions of the uploaded collections, with derived key points (coach.documents)."""
        from coach.documents import document_entries

        return document_entries(self.grader.retriever.store)

    def progress(self, session_id: str, user: str = LOCAL_USER) -> tuple[int, int]:
        """(number of the current question, questions in the session), e.g. (3, 10)."""
        info = self.session(session_id, user)
        return min(info["answered"] + 1, len(info["plan"])), len(info["plan"])

    # --- turns --------------------------------------------------------------------------------
    def begin(self, session_id: str, user: str = LOCAL_USER) -> dict:
        """Start the clock on the current question (once: showing it again keeps the first time) and
        return its attempt: {"started", "hints": [...], "time_limit"}; None when the session is over."""
        with self._lock:
            info = self.session(session_id, user)
            if self.current(session_id, user) is None:
                return None
            self.db.execute("INSERT OR IGNORE INTO attempts (session_id, position, started) VALUES (?, ?, ?)",
                            (session_id, info["answered"], self.clock()))
            return self._attempt(session_id, info)

    def attempt(self, session_id: str, user: str = LOCAL_USER) -> dict | None:
        """The current question's attempt as begin() returns it, without starting its clock: None when the
        question has not been shown yet (its clock has not started) or the session is over."""
        with self._lock:
            info = self.session(session_id, user)
            if self.current(session_id, user) is None:
                return None
            attempt = self._attempt(session_id, info)
            return attempt if attempt["started"] is not None else None

    def _attempt(self, session_id: str, info: dict) -> dict:
        row = self.db.execute("SELECT started, hints FROM attempts WHERE session_id = ? AND position = ?",
                              (session_id, info["answered"])).fetchone()
        return {"started": row["started"] if row else None, "hints": json.loads(row["hints"]) if row else [],
                "time_limit": info["options"].get("time_limit")}

    def hint(self, session_id: str, user: str = LOCAL_USER) -> list[str]:
        """Take the next hint of the current question's ladder (each costs HINT_COST points when the
        answer is graded) and return the hints taken so far; the ladder ends with the last key point."""
        with self._lock:
            entry = self._current_or_fail(session_id, user)
            attempt = self.begin(session_id, user)
            ladder = hint_ladder(entry, range(len(entry.key_points)))
            if len(attempt["hints"]) >= len(ladder):
                raise SessionError("no more hints for this question: answer it, or reveal the model answer")
            hints = [*attempt["hints"], ladder[len(attempt["hints"])]]
            self.db.execute("UPDATE attempts SET hints = ? WHERE session_id = ? AND position = ?",
                            (json.dumps(hints), session_id, self.session(session_id, user)["answered"]))
            return hints

    def answer(self, session_id: str, text: str, user: str = LOCAL_USER) -> Turn:
        """Grade the answer to the current question (less HINT_COST per hint taken) and commit it at once."""
        with self._lock:
            entry = self._current_or_fail(session_id, user)
            attempt = self._attempt(session_id, self.session(session_id, user))
            grade = self.grader.grade_entry(entry, text).as_json()
            hints = len(attempt["hints"])
            score = round(max(0.0, grade["score"] - HINT_COST * hints), 1)
            grade.update(score=score, graded_score=grade["score"], hints=attempt["hints"], hint_cost=HINT_COST * hints)
            return self._record(session_id, entry, text, score, grade, attempt, user=user)

    def skip(self, session_id: str, user: str = LOCAL_USER) -> Turn:
        """Move on without answering; a skipped question counts as weak for review."""
        with self._lock:
            entry = self._current_or_fail(session_id, user)
            attempt = self._attempt(session_id, self.session(session_id, user))
            return self._record(session_id, entry, "", 0.0, self._unanswered(entry, "Skipped."), attempt,
                                skipped=True, user=user)

    def reveal(self, session_id: str, user: str = LOCAL_USER) -> Turn:
        """"I don't know": show the model answer, score 0, and put the question back in box 1, due now,
        so review mode asks it again first."""
        with self._lock:
            entry = self._current_or_fail(session_id, user)
            attempt = self._attempt(session_id, self.session(session_id, user))
            grade = self._unanswered(entry, "Revealed: read the model answer [1]; this question comes back "
                                            "first in review mode.")
            grade["citations"] = self.grader.grade_entry(entry, "").citations
            return self._record(session_id, entry, "", 0.0, grade, attempt, revealed=True, user=user)

    @staticmethod
    def _unanswered(entry, feedback: str) -> dict:
        return {"score": 0.0, "covered": [], "missing": list(entry.key_points), "feedback": feedback,
                "citations": [], "model_answer": entry.answer, "followup": None, "mistakes": []}

    def answer_followup(self, session_id: str, text: str, user: str = LOCAL_USER) -> Turn:
        """Grade an answer to the last turn's follow-up on the key points still missing (up to
        MAX_FOLLOWUPS per question). The turn's score stays; the points recovered are stored and shown,
        and the next follow-up probes the first point still missing."""
        with self._lock:
            turns = self.turns(session_id, user)
            turn = turns[-1] if turns else None
            if turn is None or turn.skipped or turn.revealed:
                raise SessionError("no answered question to follow up on")
            if len(turn.followups) >= MAX_FOLLOWUPS or not turn.grade.get("followup"):
                raise SessionError(f"this question has had its follow-ups (at most {MAX_FOLLOWUPS})")
            entry = self.entry(turn.qid)
            if entry is None:
                raise SessionError("that question's document was deleted; start a new interview")
            missing = _still_missing(turn)
            indices = [entry.key_points.index(p) for p in missing if p in entry.key_points]
            grade = self.grader.grade_entry(entry, text, points=indices)
            recovered = grade.covered
            left = [p for p in missing if p not in recovered]
            asked = turn.followups[-1]["grade"]["next"] if turn.followups else turn.grade["followup"]
            record = {"recovered": recovered, "score": grade.score, "mistakes": [m.as_json() for m in grade.mistakes],
                      "feedback": f"You now covered {len(recovered)} of the {len(missing)} points still missing.",
                      "next": (self.grader.followup(entry, left, text)
                               if left and len(turn.followups) + 1 < MAX_FOLLOWUPS else None)}
            with self._transaction():
                self.db.execute("INSERT INTO followups VALUES (?, ?, ?, ?, ?, ?, ?)",
                                (session_id, turn.position, len(turn.followups), asked, text, json.dumps(record),
                                 self.clock()))
                if not turn.followups:  # the first one also fills the original columns (older readers)
                    self.db.execute("UPDATE answers SET followup_answer = ?, followup_grade = ? "
                                    "WHERE session_id = ? AND position = ?",
                                    (text, json.dumps(record), session_id, turn.position))
            return self.turns(session_id, user)[-1]

    def end(self, session_id: str, user: str = LOCAL_USER) -> dict:
        with self._lock:
            self.session(session_id, user)
            with self._transaction():
                self.db.execute("UPDATE sessions SET status = 'finished', updated = ? WHERE id = ? AND owner = ?",
                                (self.clock(), session_id, user))
            return self.scorecard(session_id, user)

    def turns(self, session_id: str, user: str = LOCAL_USER) -> list[Turn]:
        self.session(session_id, user)  # raises for another user's session
        rows = self.db.execute("SELECT * FROM answers WHERE session_id = ? ORDER BY position", (session_id,)).fetchall()
        followups: dict[int, list[dict]] = {}
        for f in self.db.execute("SELECT * FROM followups WHERE session_id = ? ORDER BY position, turn", (session_id,)):
            followups.setdefault(f["position"], []).append(
                {"question": f["question"], "answer": f["answer"], "grade": json.loads(f["grade"])})
        return [Turn(r["position"], r["qid"], r["question"], r["topic"], r["answer"], bool(r["skipped"]),
                     r["score"], json.loads(r["grade"]), r["followup_answer"],
                     json.loads(r["followup_grade"]) if r["followup_grade"] else None, hints=r["hints"],
                     revealed=bool(r["revealed"]), seconds=r["seconds"], followups=followups.get(r["position"], []))
                for r in rows]

    def _current_or_fail(self, session_id: str, user: str):
        entry = self.current(session_id, user)
        if entry is None:
            raise SessionError(f"session {session_id} has no question left; start a new one")
        return entry

    def _record(self, session_id: str, entry, text: str, score: float, grade: dict, attempt: dict,
                skipped: bool = False, revealed: bool = False, user: str = LOCAL_USER) -> Turn:
        now = self.clock()
        info = self.session(session_id, user)
        position = info["answered"]
        seconds = round(now - attempt["started"], 1) if attempt["started"] is not None else None
        review = self.db.execute("SELECT box, seen FROM reviews WHERE owner = ? AND qid = ?",
                                 (user, entry.id)).fetchone()
        box = 1 if revealed else next_box(review["box"] if review else None, score)
        # One transaction: the answer, the schedule change and the next adaptive pick, or none of them.
        with self._transaction():
            self.db.execute("INSERT INTO answers (session_id, position, qid, question, topic, answer, skipped, score, "
                            "grade, created, hints, revealed, seconds) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (session_id, position, entry.id, entry.question, entry.topic, text, int(skipped),
                             score, json.dumps(grade), now, len(attempt["hints"]), int(revealed), seconds))
            self.db.execute("INSERT INTO reviews VALUES (?, ?, ?, ?, ?, 1, ?) ON CONFLICT(owner, qid) DO UPDATE "
                            "SET box = excluded.box, due = excluded.due, last_score = excluded.last_score, "
                            "seen = seen + 1, updated = excluded.updated",
                            (user, entry.id, box, now + INTERVAL_DAYS[box] * DAY, score, now))
            status = "finished" if position + 1 >= len(info["plan"]) else info["status"]
            if info["options"].get("adaptive") and status != "finished":
                self._adapt(session_id, info, position, entry, score)
            self.db.execute("UPDATE sessions SET updated = ?, status = ? WHERE id = ?", (now, status, session_id))
        return Turn(position, entry.id, entry.question, entry.topic, text, skipped, score, grade, hints=len(
            attempt["hints"]), revealed=revealed, seconds=seconds)

    def _adapt(self, session_id: str, info: dict, position: int, entry, score: float) -> None:
        """Pick the next question one difficulty up after a strong answer, down after a weak one."""
        if entry.difficulty not in DIFFICULTY_STEPS:  # an uploaded question is unrated: keep the plan
            return
        step = 1 if score >= PROMOTE else -1 if score < DEMOTE else 0
        level = DIFFICULTY_STEPS.index(entry.difficulty) + step
        target = DIFFICULTY_STEPS[min(max(level, 0), len(DIFFICULTY_STEPS) - 1)]
        plan = info["plan"]
        chosen = _nearest(info["options"]["pool"], self.bank, target, set(plan[:position + 1]))
        if chosen:
            plan[position + 1] = chosen
            self.db.execute("UPDATE sessions SET plan = ? WHERE id = ?", (json.dumps(plan), session_id))

    def schedule(self, user: str = LOCAL_USER) -> list[dict]:
        """The user's review schedule, weakest and most overdue first."""
        now = self.clock()
        rows = self.db.execute("SELECT * FROM reviews WHERE owner = ? ORDER BY due > ?, box, last_score, due",
                               (user, now))
        return [{"qid": r["qid"], "box": r["box"], "due_in_days": round((r["due"] - now) / DAY, 2),
                 "last_score": r["last_score"], "seen": r["seen"]} for r in rows]

    # --- progress across sessions ---------------------------------------------------------------
    def mastery(self, user: str = LOCAL_USER) -> dict[str, list[tuple[str, float]]]:
        """Per topic, the mean score of each day it was practised: {topic: [(YYYY-MM-DD, mean), ...]}."""
        per_day: dict[str, dict[str, list[float]]] = {}
        for r in self.db.execute("SELECT a.topic, a.score, a.created FROM answers a JOIN sessions s "
                                 "ON s.id = a.session_id WHERE s.owner = ? ORDER BY a.created", (user,)):
            day = time.strftime("%Y-%m-%d", time.localtime(r["created"]))
            per_day.setdefault(r["topic"], {}).setdefault(day, []).append(r["score"])
        return {topic: [(day, round(sum(s) / len(s), 2)) for day, s in days.items()]
                for topic, days in sorted(per_day.items())}

    def activity(self, user: str = LOCAL_USER) -> dict[str, int]:
        """Questions answered (skips and reveals included) per local day: {YYYY-MM-DD: count}."""
        counts: dict[str, int] = {}
        for (created,) in self.db.execute("SELECT a.created FROM answers a JOIN sessions s ON s.id = a.session_id "
                                          "WHERE s.owner = ?", (user,)):
            day = time.strftime("%Y-%m-%d", time.localtime(created))
            counts[day] = counts.get(day, 0) + 1
        return counts

    def today(self) -> str:
        return time.strftime("%Y-%m-%d", time.localtime(self.clock()))

    # --- results ------------------------------------------------------------------------------
    def scorecard(self, session_id: str, user: str = LOCAL_USER) -> dict:
        """Mean score overall and per topic, answered / skipped counts, the weakest topics first, and
        each question's score, time taken, hints and follow-ups."""
        turns = self.turns(session_id, user)
        info = self.session(session_id, user)
        per_topic: dict[str, list[float]] = {}
        for t in turns:
            per_topic.setdefault(t.topic, []).append(t.score)
        topics = {topic: round(sum(s) / len(s), 1) for topic, s in per_topic.items()}
        scores = [t.score for t in turns]
        limit = info["options"].get("time_limit")
        return {"id": session_id, "mode": info["mode"], "questions": len(info["plan"]), "answered": len(turns),
                "skipped": sum(t.skipped for t in turns), "revealed": sum(t.revealed for t in turns),
                "hints": sum(t.hints for t in turns), "time_limit": limit,
                "mean_score": round(sum(scores) / len(scores), 1) if scores else None,
                "per_topic": dict(sorted(topics.items(), key=lambda item: item[1])),
                "weakest": [t.question for t in sorted(turns, key=lambda t: t.score)[:3] if t.score < PROMOTE],
                "turns": [{"position": t.position, "question": t.question, "score": t.score, "skipped": t.skipped,
                           "revealed": t.revealed, "hints": t.hints, "seconds": t.seconds,
                           "over_limit": bool(limit and t.seconds and t.seconds > limit),
                           "followups": len(t.followups)} for t in turns]}

    def export_markdown(self, session_id: str, user: str = LOCAL_USER) -> str:
        """The whole session as markdown (rendered by `coach.render.interview_markdown`)."""
        return interview_markdown(self.session(session_id, user), self.scorecard(session_id, user),
                                  self.turns(session_id, user))


def _no_question(scope: str, part, topic, difficulty) -> str:
    """Why no question fits the filters, naming the library searched."""
    where = "question in your documents" if scope == "docs" else "bank question"
    return (f"no {where} matches " + describe_filters(part, topic, difficulty) +
            {"docs": " (upload a question collection in the Library first)",
             "all": " (nor does any question in your documents)"}.get(scope, ""))


def next_box(box: int | None, score: float) -> int:
    if box is None:
        return 2 if score >= PROMOTE else 1
    if score >= PROMOTE:
        return min(box + 1, max(INTERVAL_DAYS))
    return 1 if score < DEMOTE else box


def hint_ladder(entry, missing) -> list[str]:
    """One hint per key point not yet covered, in the bank's order: first its terms, so the learner still
    has to say the fact; the last rung states the last point outright."""
    from coach.text import WORD, stopwords

    asked = set(WORD.findall(entry.question.lower()))
    rungs = []
    points = [entry.key_points[i] for i in missing]
    for n, point in enumerate(points):
        terms = [w for w in dict.fromkeys(WORD.findall(point.lower())) if w not in stopwords() and w not in asked]
        if n == len(points) - 1:
            rungs.append(f"One thing a full answer says: {point}.")
        else:
            rungs.append(f"Think about: {', '.join(terms[:4]) or entry.topic}.")
    return rungs


def _still_missing(turn) -> list[str]:
    """The key points a turn's answer and its follow-ups have not covered yet."""
    recovered = {p for f in turn.followups for p in f["grade"]["recovered"]}
    return [p for p in turn.grade.get("missing", []) if p not in recovered]


def _nearest(pool: list[str], bank: dict, difficulty: str, taken: set[str]) -> str | None:
    """The first id of the pool not yet taken whose difficulty is `difficulty`, else the nearest one."""
    target = DIFFICULTY_STEPS.index(difficulty)
    free = [q for q in pool if q not in taken and q in bank]
    if not free:
        return None
    return min(free, key=lambda q: abs(DIFFICULTY_STEPS.index(bank[q].difficulty) - target))
