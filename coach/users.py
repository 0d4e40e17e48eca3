"""Who may use the app, and what each may do.

Served on loopback the app needs no set-up: one local user with every right. Served on any other
address it is shared, so it needs accounts: `python app.py users add NAME [--admin]` writes
`COACH_DATA_DIR/users.json`, with each password hashed by bcrypt (never stored or logged in clear).
Two roles:

    learner   chat, search, mock interviews (their own sessions only)
    admin     also changes the library (uploads, deletion, re-index) and runs evaluations

An operator who already authenticates users in a reverse proxy can instead trust the name the proxy
puts in a header (`serve --auth-header X-Forwarded-User`); the users file then only grants roles
(a name not in it is a learner).
"""
from __future__ import annotations

import json
import os
import re
import tempfile
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import bcrypt

from coach.config import Settings, get_settings

ROLES = ("learner", "admin")
LOCAL_USER = "local"          # the one user of a loopback server without accounts
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
MIN_PASSWORD = 8
# bcrypt reads at most 72 bytes of a password; longer ones are refused rather than silently cut.
MAX_PASSWORD_BYTES = 72


class UserError(ValueError):
    """A bad name, password or role, or an unknown user; the message says what to do."""


@dataclass(frozen=True)
class User:
    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


LOCAL = User(LOCAL_USER, "admin")


class Users:
    """The users file: {"users": {name: {"hash": bcrypt hash, "role": role}}}, replaced atomically."""

    def __init__(self, path: Path | None = None, settings: Settings | None = None):
        self.path = Path(path or (settings or get_settings()).data_dir / "users.json")
        self._lock = threading.Lock()

    def _read(self) -> dict[str, dict]:
        try:
            return json.loads(self.path.read_text(encoding="utf-8")).get("users", {})
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {self.path}: {exc}") from None

    def _write(self, users: dict[str, dict]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle, tmp = tempfile.mkstemp(prefix=".users-", dir=self.path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"users": users}, out, indent=1, sort_keys=True)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)

    def configured(self) -> bool:
        return bool(self._read())

    def list(self) -> list[User]:
        return [User(name, record.get("role", "learner")) for name, record in sorted(self._read().items())]

    def get(self, name: str) -> User | None:
        record = self._read().get(name)
        return User(name, record.get("role", "learner")) if record else None

    def add(self, name: str, password: str, role: str = "learner") -> User:
        """Add a user, or change an existing user's password and role."""
        if not NAME.match(name or ""):
            raise UserError("a user name is 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit")
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        encoded = (password or "").encode("utf-8")
        if len(password or "") < MIN_PASSWORD:
            raise UserError(f"the password needs at least {MIN_PASSWORD} characters")
        if len(encoded) > MAX_PASSWORD_BYTES:
            raise UserError(f"the password is over {MAX_PASSWORD_BYTES} bytes, which bcrypt cannot use")
        digest = bcrypt.hashpw(encoded, bcrypt.gensalt()).decode("ascii")
        with self._lock:
            users = self._read()
            users[name] = {"hash": digest, "role": role}
            self._write(users)
        return User(name, role)

    def remove(self, name: str) -> None:
        with self._lock:
            users = self._read()
            if name not in users:
                raise UserError(f"no user named {name!r} (see `python app.py users list`)")
            del users[name]
            self._write(users)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password is right, else None (same answer for unknown names)."""
        record = self._read().get(name or "")
        encoded = (password or "").encode("utf-8")[:MAX_PASSWORD_BYTES]
        if record is None:
            bcrypt.checkpw(encoded, _dummy_hash())  # as slow as a real check: names cannot be probed by timing
            return None
        if bcrypt.checkpw(encoded, record["hash"].encode("ascii")):
            return User(name, record.get("role", "learner"))
        return None

    def role_of(self, name: str) -> str:
        """For proxy-authenticated names: the role the file grants, learner by default."""
        record = self._read().get(name)
        return record.get("role", "learner") if record else "learner"


@lru_cache(maxsize=1)
def _dummy_hash() -> bytes:
    return bcrypt.hashpw(b"not a password", bcrypt.gensalt())


def is_loopback(host: str) -> bool:
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")
