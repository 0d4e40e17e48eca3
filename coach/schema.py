"""Schema versions for the one SQLite database (`COACH_DATA_DIR/interviews.sqlite3`).

Several parts of the coach keep tables in the same database (interview sessions, saved conversations),
and a database written by an older version must keep working after an upgrade. Each part names itself
and lists its migrations in order; `migrate` records how many have run in `schema_version` and applies
the rest in one transaction, so a part's tables change together or not at all, and a database that is
already current is left untouched.
"""
from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

VERSION_TABLE = "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"


def migrate(db: sqlite3.Connection, component: str, migrations: Sequence[str]) -> int:
    """Bring `component`'s tables to the latest version: run the migrations (each an SQL script) not yet
    recorded for it. Returns the version now in place. `db` must be in autocommit mode."""
    db.execute(VERSION_TABLE)
    with transaction(db):  # one writer at a time: two processes starting together migrate once
        row = db.execute("SELECT version FROM schema_version WHERE component = ?", (component,)).fetchone()
        current = row[0] if row else 0
        if current > len(migrations):
            raise RuntimeError(f"the database's {component} tables are version {current}, newer than this "
                               f"code knows ({len(migrations)}); upgrade the coach")
        for statements in migrations[current:]:
            for statement in filter(str.strip, statements.split(";")):
                db.execute(statement)
        db.execute("INSERT INTO schema_version VALUES (?, ?) ON CONFLICT(component) DO UPDATE SET "
                   "version = excluded.version", (component, len(migrations)))
    return len(migrations)


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK when the block raises (`db` is in autocommit mode)."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
