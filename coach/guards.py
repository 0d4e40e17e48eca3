"""Guards on what users send. For now the input limits every entry point shares (CLI, app, answerer)."""
from __future__ import annotations

from coach.config import get_settings


class QuestionError(ValueError):
    """The question cannot be taken as asked; the message says why, politely."""


def validate_question(text: str | None) -> str:
    """The question with whitespace collapsed, or QuestionError if it is empty or over the limit."""
    text = (text or "").strip()
    if not text:
        raise QuestionError("the question is empty: ask something about deep learning")
    limit = get_settings().max_query_chars
    if len(text) > limit:
        raise QuestionError(f"the question is {len(text)} characters long; the limit is {limit}, "
                            "please shorten it")
    return " ".join(text.split())
