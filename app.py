"""Interview coach: the entry point.

    python app.py serve                      # the Gradio app on http://127.0.0.1:7860
    python app.py search | ask | bank | grade | interview ...   # the terminal commands
    python app.py --help                     # every command and option

This file only dispatches, so each job has an obvious home: the commands and their arguments are in
`cli.py`, the Gradio app in the `web/` package (one module per tab; imported by `serve` alone, so the
terminal commands start without loading Gradio), and what both show a person in `coach/render.py`.
"""
from __future__ import annotations

import contextlib
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one command (`serve` is one of them) and return its exit status."""
    import cli

    return cli.main(argv)


def end(code: int) -> None:
    """Exit with `code`; a command of cli.ENDS_AT_ONCE skips the interpreter's shutdown (output flushed first)."""
    import cli

    if cli.command_of(sys.argv[1:]) in cli.ENDS_AT_ONCE:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError):  # a reader that went away (`| head`) loses nothing more
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    end(main())
