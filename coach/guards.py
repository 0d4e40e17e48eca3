"""Guards on what users send. For now the input limits every entry point shares (CLI, app, answerer)."""
from __future__ import annotations

from coach.config import get_settings


class QuestionError(ValueError):
    """The question cannot be taken as asked; the message says why, politely. `guard` names the check."""

    def __init__(self, message: str, guard: str):
        super().__init__(message)
        self.guard = guard


def validate_question(text: str | None) -> str:
    """The question with whitespace collapsed, or QuestionError if it is empty or over the limit."""
    text = (text or "").strip()
    if not text:
        raise QuestionError("The question is empty: ask something about deep learning.", "input_empty")
    limit = get_settings().max_query_chars
    if len(text) > limit:
        raise QuestionError(f"The question is {len(text)} characters long and the limit is {limit}; "
                            "please shorten it to the question itself.", "input_length")
    return " ".join(text.split())
