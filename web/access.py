"""Who is asking, what they may do, how often, and errors that never escape a handler.

Every handler of the app (UI events and the /search, /ask, /grade endpoints) goes through here:

- `user_of(request)`: the user of the request. With accounts configured Gradio has authenticated them
  (`request.username`); with a trusted proxy header, the header names them; a loopback server without
  accounts has one local user with every right.
- `require_admin(request)`: library changes, re-indexing and evaluation runs are for admins.
- `rate_check(request, kind)`: a sliding-window limit per user (or per client address when anonymous),
  the same across the UI and the API, so a new browser session or a script does not reset it.
- `guarded` / `guarded_api`: a handler never raises past Gradio. Bad input and refused actions become a
  `gr.Error` the page shows (UI) or an `{"error": ...}` document (API); anything unexpected is logged
  and reported the same way. `SystemExit` belongs to the CLI and is caught here too.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os
from dataclasses import dataclass

import gradio as gr

from coach.config import get_settings
from coach.guards import RateLimiter
from coach.users import LOCAL, User, Users

log = logging.getLogger("coach.web")



def questions_per_minute() -> int:
    """The chat limit: `COACH_QUESTIONS_PER_MINUTE` where many people share one address (a class behind
    one NAT, a load test), else the configured `questions_per_minute` (12)."""
    raw = os.environ.get("COACH_QUESTIONS_PER_MINUTE", "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    if raw:
        log.warning("COACH_QUESTIONS_PER_MINUTE=%r is not a positive whole number; using %d", raw,
                    get_settings().questions_per_minute)
    return get_settings().questions_per_minute


# Requests a minute per user (or client address): a person never comes near these, a loop does.
LIMITS = {"ask": questions_per_minute(), "search": 60, "grade": 30, "interview": 60, "library": 10}


class Refused(Exception):
    """An action this user may not take, or may not take right now; the message says why."""


@dataclass
class Policy:
    """How the running app authenticates: accounts (a users file), a trusted proxy header, or neither."""
    users: Users | None = None
    header: str | None = None

    @property
    def anonymous(self) -> bool:
        return self.users is None and self.header is None


POLICY = Policy()
LIMITERS = {kind: RateLimiter(limit) for kind, limit in LIMITS.items()}


def configure(users: Users | None = None, header: str | None = None) -> Policy:
    """Set how requests are authenticated (called once by `serve`)."""
    POLICY.users, POLICY.header = users, (header or None)
    return POLICY


def user_of(request: gr.Request | None) -> User:
    """The user a request comes from; in-process calls (no request) act as the local user."""
    if request is None or POLICY.anonymous:
        return LOCAL
    if POLICY.header:
        name = ((getattr(request, "headers", None) or {}).get(POLICY.header) or "").strip()
        if not name:
            raise Refused(f"this server expects the {POLICY.header} header from its proxy; sign in there")
        return User(name, POLICY.users.role_of(name) if POLICY.users else "learner")
    name = getattr(request, "username", None)
    user = POLICY.users.get(name) if name else None
    if user is None:
        raise Refused("sign in first")
    return user


def require_admin(request: gr.Request | None) -> User:
    user = user_of(request)
    if not user.is_admin:
        raise Refused("only an admin can change the library or run evaluations")
    return user


def rate_check(request: gr.Request | None, kind: str) -> None:
    """Count one request of `kind`; refuse it when the user (or address) is over the limit."""
    wait = LIMITERS[kind].allow(_rate_key(request))
    if wait:
        raise Refused(f"too many requests: at most {LIMITS[kind]} a minute; please wait {wait:.0f} s and try again")


def _rate_key(request: gr.Request | None) -> str:
    if request is None:
        return "local"
    if not POLICY.anonymous:
        try:
            return "user:" + user_of(request).name
        except Refused:
            pass
    client = getattr(request, "client", None)
    return "address:" + (getattr(client, "host", None) or "unknown")


def error_message(exc: BaseException) -> str:
    """What a person reads for a failure: our own errors say what to do; others are named, not dumped."""
    if isinstance(exc, SystemExit):
        return str(exc.code).removeprefix("error: ") if exc.code else "the request was refused"
    if isinstance(exc, Refused | ValueError):
        return str(exc)
    log.exception("unexpected error in a handler")
    return f"something went wrong ({type(exc).__name__}); the server is still running, please try again"


def guarded(handler):
    """Wrap a UI handler (function or generator) so every failure is shown as a gr.Error."""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def stream(*args, **kwargs):
            try:
                yield from handler(*args, **kwargs)
            except gr.Error:
                raise
            except (Exception, SystemExit) as exc:
                raise gr.Error(error_message(exc)) from None
        return stream

    @functools.wraps(handler)
    def call(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except gr.Error:
            raise
        except (Exception, SystemExit) as exc:
            raise gr.Error(error_message(exc)) from None
    return call


def guarded_api(handler):
    """Wrap an API handler so a failure is returned as {"error": message} instead of raised."""
    @functools.wraps(handler)
    def call(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except (Exception, SystemExit) as exc:
            return {"error": error_message(exc)}
    return call
