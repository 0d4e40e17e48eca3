"""Interview coach: the command line.

    python app.py serve [--host H] [--port P]
    python app.py search QUERY [--k N] [--scope all|bank|docs] [--part P] [--topic T] [--difficulty D] [--json] [--batch FILE]
    python app.py ask QUESTION [--scope all|bank|docs] [--json] [--batch FILE]
    python app.py bank [--json]
    python app.py grade --question TEXT --answer TEXT [--json] [--batch FILE]
    python app.py interview [--part P] [--topic T] [--difficulty D] [--n N] [--review] [--resume ID]

With --json each command prints exactly one JSON document on stdout (JSON Lines with --batch);
logs and progress go to stderr.
"""
# This is the edge where text typed by a person becomes a call into coach/: bad input ends the process
# here with `SystemExit("error: ...")`, and nowhere else. Each command imports what it needs when it runs,
# so `bank` or `--help` do not load the models, and only `serve` imports Gradio (the `web` package).
from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from pathlib import Path

from coach import render
from coach.config import get_settings, setup_logging
from coach.llm import judge_backend
from coach.text import clean_input

log = logging.getLogger("coach")


# --- commands --------------------------------------------------------------------------------
def cmd_search(args) -> int:
    from coach.retrieval import HybridRetriever

    retriever = HybridRetriever()
    filters = {"part": args.part, "topic": args.topic, "difficulty": args.difficulty, "scope": args.scope}

    def run(query: str) -> dict:
        hits = retriever.search(query, k=args.k, **filters)
        return {"query": query, "results": [hit.as_json() for hit in hits]}

    if args.batch:
        return _batch(args.batch, ["question"], lambda row: run(row["question"]), args.json)
    result = run(_require_query(args.query))
    if args.json:
        _print_json(result)
    else:
        print(render.search_text(result["results"]))
    return 0


def cmd_ask(args) -> int:
    from coach.answer import Answerer

    answerer = Answerer()
    if args.batch:
        return _batch(args.batch, ["question"], lambda row: answerer.ask(row["question"], scope=args.scope).as_json(),
                      args.json)
    answer = answerer.ask(args.question, scope=args.scope)
    if args.json:
        _print_json(answer.as_json())
        return 0
    print(render.answer_text(answer))
    if answer.fallback:
        print(f"note: {answer.fallback}", file=sys.stderr)
    return 2 if answer.blocked else 0


def cmd_bank(args) -> int:
    from coach.bank import load_bank

    entries = load_bank(get_settings().corpus_dir)
    if args.json:
        _print_json({"questions": [e.as_json() for e in entries]})
    else:
        for e in entries:
            print(f"{e.id:40} part {e.part} #{e.number:<3} {e.difficulty:6} {e.topic:32} {e.question}")
        print(f"{len(entries)} questions", file=sys.stderr)
    return 0


def cmd_grade(args) -> int:
    from coach.grader import AnswerError, Grader
    from coach.guards import QuestionError

    grader = Grader(backend=judge_backend())

    def run(question: str, answer: str) -> dict:
        try:
            return grader.grade(question, answer).as_json()
        except (QuestionError, AnswerError) as exc:
            raise SystemExit(f"error: {exc}") from None

    if args.batch:
        return _batch(args.batch, ["question"], lambda row: run(row["question"], row.get("answer") or ""), args.json)
    grade = run(args.question, args.answer or "")
    if args.json:
        _print_json(grade)
        return 0
    if not grade["matched_question"]:
        print(grade["feedback"])
        return 1
    print(f"Matched: {grade['matched_question']}")
    print(render.grade_text(grade))
    if grade.get("followup"):
        print(f"Follow-up: {grade['followup']}")
    return 0


def cmd_interview(args) -> int:
    """An interactive mock interview in the terminal; works with piped stdin (one answer per paragraph)."""
    from coach.grader import Grader
    from coach.interviewer import Interviewer, SessionError

    engine = Interviewer(Grader(backend=judge_backend()))
    try:
        if args.history:
            for session in engine.history():
                print(render.session_line(session))
            return 0
        # `is not None`: an id that cleans to "" (control characters only) is an unknown id, not "no id";
        # falling through would start an interactive interview that waits on stdin.
        if args.export is not None:
            _export(engine.export_markdown(args.export), args.out)
            return 0
        if args.progress:
            print(_progress_text(engine))
            return 0
        session_id = (engine.session(args.resume)["id"] if args.resume is not None else
                      engine.start(part=args.part, topic=args.topic, difficulty=args.difficulty, n=args.n,
                                   review=args.review, time_limit=args.time_limit, adaptive=args.adaptive,
                                   scope=args.scope))
    except SessionError as exc:
        raise SystemExit(f"error: {exc}") from None
    return _run_interview(engine, session_id)


def _export(text: str, out: str | None) -> None:
    if out:
        Path(out).write_text(text, encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def _progress_text(engine) -> str:
    questions = {qid: entry.question for qid, entry in engine.bank.items()}
    mastery = [f"  {topic:34} " + "  ".join(f"{day[5:]} {score:.1f}" for day, score in days[-4:])
               for topic, days in engine.mastery().items()]
    return "\n".join(["Mastery per topic (latest days):", *(mastery or ["  (no answers yet)"]), "",
                      "Review queue:", render.schedule_markdown(engine.schedule(), questions), "",
                      "Activity:", render.activity_calendar(engine.activity(), engine.today())])


def _run_interview(engine, session_id: str) -> int:
    """Ask the session's questions one by one until it is over (scorecard) or the user stops (saved)."""
    print(f"Session {session_id}. Answer in a few sentences and finish with an empty line; type :hint for a "
          "hint (costs a point), :reveal if you don't know, :skip to skip, :end to stop (resume with --resume).\n")
    while (entry := engine.current(session_id)) is not None:
        print(render.question_text(entry, *engine.progress(session_id)))
        attempt = engine.begin(session_id)
        if attempt["time_limit"]:
            print(render.timer_markdown(attempt["time_limit"], attempt["started"], attempt["started"]))
        answer = _read_paragraph("> ")
        command = (answer or ":end").strip()
        if command == ":end":
            print(f"\nSaved. Resume with: python app.py interview --resume {session_id}")
            return 0
        if command in (":skip", ":hint", ":reveal"):
            _practice_command(engine, session_id, command)
            continue
        _answer_question(engine, session_id, answer)
    card = engine.end(session_id)
    print(render.scorecard_text(card))
    print(render.turns_text(card))
    print(f"\nExport: python app.py interview --export {session_id} --out interview.md")
    return 0


def _practice_command(engine, session_id: str, command: str) -> None:
    """:skip, :hint (the next rung of the ladder) or :reveal (the model answer; back in review first)."""
    from coach.interviewer import SessionError

    if command == ":skip":
        engine.skip(session_id)
        print("Skipped.\n")
    elif command == ":reveal":
        turn = engine.reveal(session_id)
        print(f"{turn.grade['feedback']}\n\n{turn.grade['model_answer']}\n")
    else:
        try:
            print(f"Hint: {engine.hint(session_id)[-1]}  (answer now, or :hint again)")
        except SessionError as exc:
            print(f"{exc}")


def _answer_question(engine, session_id: str, answer: str) -> None:
    """Grade one answer and show the grade; then up to MAX_FOLLOWUPS follow-up questions on the points
    still missing, each of which may be left out with an empty line."""
    from coach.grader import AnswerError

    try:
        turn = engine.answer(session_id, answer)
    except AnswerError as exc:
        print(f"error: {exc} Try again.\n")
        return
    print(render.grade_text(turn.grade))
    if turn.seconds is not None:
        print(f"Time taken: {render.seconds_text(turn.seconds)}")
    question = turn.grade.get("followup")
    while question:
        print(f"\nFollow-up: {question}  (answer, or press Enter to go on)")
        followup = _read_paragraph("> ")
        if not followup or followup.strip() in (":skip", ":end"):
            break
        try:
            turn = engine.answer_followup(session_id, followup)
        except AnswerError as exc:
            print(f"error: {exc}")
            break
        print(turn.followups[-1]["grade"]["feedback"])
        question = turn.followups[-1]["grade"]["next"]
    print()


def cmd_serve(args) -> int:
    from coach.answer import Answerer
    from coach.embedder import limit_heap_fragmentation
    from coach.users import Users, is_loopback

    users = Users()
    if not is_loopback(args.host) and not users.configured() and not args.auth_header:
        raise SystemExit(f"error: serving on {args.host} shares the app with other machines, so it needs users.\n"
                         "Add one first:  python app.py users add NAME --admin   (and learners without --admin)\n"
                         "or, behind a proxy that authenticates people, pass --auth-header X-Forwarded-User.\n"
                         "On 127.0.0.1 (the default) no set-up is needed.")
    started = time.perf_counter()
    limit_heap_fragmentation()  # before the models allocate: a server lives long, its peak memory counts
    answerer = Answerer()  # creates the configured backend once (the embedded model, which writes nothing, never loads)
    retriever = answerer.retriever
    retriever.search("warm up the models")  # load the embedder and BM25 index before the first user
    from web.assembly import build_app, launch  # only serve needs Gradio

    demo = build_app(answerer, judge=judge_backend())
    accounts = users if users.configured() else None

    def ready() -> None:
        log.info("ready in %.1fs: models loaded, %d chunks indexed; serving on http://%s:%d (%s)",
                 time.perf_counter() - started, retriever.store.count(), args.host, args.port,
                 f"users from {users.path}" if accounts else f"user names from the {args.auth_header} header"
                 if args.auth_header else "one local user, no sign-in")
        # The sentence vectors, once serving: started before, the warm-up took a core from the start.
        threading.Thread(target=answerer.warm_up, name="warm-up", daemon=True).start()

    launch(demo, args.host, args.port, users=accounts, auth_header=args.auth_header, on_ready=ready)
    return 0


def cmd_users(args) -> int:
    """Manage who may use a shared server: add (or change the password of), remove and list users."""
    import getpass

    from coach.users import UserError, Users

    users = Users()
    try:
        if args.action == "list":
            for user in users.list():
                print(f"{user.name:32} {user.role}")
            if not users.list():
                print(f"no users yet ({users.path}); add one with: python app.py users add NAME --admin",
                      file=sys.stderr)
            return 0
        if not args.name:
            raise UserError(f"give a NAME: python app.py users {args.action} NAME")
        if args.action == "remove":
            users.remove(args.name)
            print(f"removed {args.name}", file=sys.stderr)
            return 0
        password = sys.stdin.readline().rstrip("\n") if args.password_stdin else _new_password(getpass.getpass)
        user = users.add(args.name, password, "admin" if args.admin else "learner")
        print(f"{user.name} can sign in as {user.role} ({users.path})", file=sys.stderr)
        return 0
    except UserError as exc:
        raise SystemExit(f"error: {exc}") from None


def _new_password(ask) -> str:
    password = ask("Password: ")
    if password != ask("Repeat it: "):
        raise SystemExit("error: the two passwords differ; nothing was changed")
    return password


# --- helpers -----------------------------------------------------------------------------------
def _require_query(text: str | None) -> str:
    from coach.guards import QuestionError, validate_question

    try:
        return validate_question(text)
    except QuestionError as exc:
        raise SystemExit(f"error: {exc}") from None


def _read_paragraph(prompt: str) -> str | None:
    """Lines up to an empty line (or a command such as :skip); None at end of input."""
    lines = []
    while True:
        try:
            line = input(prompt if not lines else "  ")
        except EOFError:
            return "\n".join(lines) if lines else None
        if not line.strip():
            return "\n".join(lines)
        if not lines and line.strip().startswith(":"):
            return line.strip()
        lines.append(line)


def _batch(path: str, required: list[str], run, as_json: bool) -> int:
    """Run one command per JSON line, models loaded once; results printed in input order."""
    failures = 0
    with open(path, encoding="utf-8") as handle:
        for line_no, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                missing = [name for name in required if not str(row.get(name) or "").strip()]
                if missing:
                    raise ValueError(f"missing field(s) {missing}")
                result = run(row)
            except (ValueError, SystemExit) as exc:
                failures += 1
                result = {"error": f"{path}:{line_no}: {exc}"}
            if as_json:
                _print_json(result)
            else:
                print(json.dumps(result, ensure_ascii=False, indent=2))
    return 1 if failures else 0


# Characters str.splitlines() and some JSON Lines readers take for line ends, written as JSON escapes
# (the same string once decoded), so one document stays one line whatever a user typed.
LINE_BREAKS = {"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def _print_json(document: dict) -> None:
    text = json.dumps(document, ensure_ascii=False)
    for char, escaped in LINE_BREAKS.items():
        text = text.replace(char, escaped)
    sys.stdout.write(text.encode("utf-8", "replace").decode("utf-8") + "\n")  # lone surrogates never crash it
    sys.stdout.flush()


# --- arguments ---------------------------------------------------------------------------------
def _add_scope(command: argparse.ArgumentParser) -> None:
    command.add_argument("--scope", choices=["all", "bank", "docs"], default="all",
                         help="the question bank, your uploaded documents, or both (default: all, bank first)")


def _add_filters(command: argparse.ArgumentParser) -> None:
    _add_scope(command)
    command.add_argument("--part", type=int, help="only this part of the bank (1-4)")
    command.add_argument("--topic", help="only this topic, e.g. 'dropout'")
    command.add_argument("--difficulty", choices=["easy", "medium", "hard"])


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python app.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-v", "--verbose", action="store_true", help="log more to stderr")
    sub = p.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="serve the Gradio app")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7860)
    serve.add_argument("--auth-header", metavar="HEADER",
                       help="trust this header (e.g. X-Forwarded-User) from an authenticating reverse proxy "
                            "for the user name; roles still come from `users add --admin`")
    serve.set_defaults(run=cmd_serve)

    users = sub.add_parser("users", help="who may use a shared server: users add|remove|list",
                           description="Users and roles for `serve` on a non-loopback address. Passwords are "
                           "hashed with bcrypt in COACH_DATA_DIR/users.json. Learners chat, search and "
                           "practise; admins also change the library and run evaluations.")
    users.add_argument("action", choices=["add", "remove", "list"])
    users.add_argument("name", nargs="?", help="the user name (for add and remove)")
    users.add_argument("--admin", action="store_true", help="with add: the admin role (default: learner)")
    users.add_argument("--password-stdin", action="store_true",
                       help="with add: read the password from the first line of standard input")
    users.set_defaults(run=cmd_users)

    search = sub.add_parser("search", help="hybrid search over the bank (dense + BM25, fused)")
    search.add_argument("query", nargs="?", help="the question or keywords")
    search.add_argument("--k", type=int, default=5, help="number of results (default 5)")
    _add_filters(search)
    _add_output(search, 'one {"question": ...} per line')
    search.set_defaults(run=cmd_search)

    ask = sub.add_parser("ask", help="a grounded answer from the bank, with [n] citations, or a refusal",
                         description="Answer from the question bank only. Sentences the bank does not "
                         "support are removed; the backend is chosen by COACH_LLM (llamacpp, openai, extractive).")
    ask.add_argument("question", nargs="?", help="the question")
    _add_scope(ask)
    _add_output(ask, 'one {"question": ...} per line; models load once')
    ask.set_defaults(run=cmd_ask)

    _add_grade_and_interview(sub)

    bank = sub.add_parser("bank", help="list the question bank as loaded")
    bank.add_argument("--json", action="store_true")
    bank.set_defaults(run=cmd_bank)
    return p


def _add_output(command: argparse.ArgumentParser, batch_help: str) -> None:
    """--json (the contract's document) and --batch FILE.jsonl, which search, ask and grade share."""
    command.add_argument("--json", action="store_true", help="print the contract's JSON")
    command.add_argument("--batch", metavar="FILE.jsonl", help=batch_help)


def _add_grade_and_interview(sub) -> None:
    grade = sub.add_parser("grade", help="grade an answer against the key points of the matching bank question",
                           description="Score 0-10 from the key points the answer covers, with feedback, "
                           "the missing points, a follow-up question and the cited model answer.")
    grade.add_argument("--question", help="the interview question (matched to the bank)")
    grade.add_argument("--answer", help="the candidate's answer")
    _add_output(grade, 'one {"question": ..., "answer": ...} per line')
    grade.set_defaults(run=cmd_grade)

    interview = sub.add_parser("interview", help="a mock interview in the terminal (graded, saved, resumable)",
                               description="Bank questions one at a time; each answer is graded and saved at "
                               "once. Finish an answer with an empty line; :skip skips, :end stops.")
    _add_filters(interview)
    interview.add_argument("--n", type=int, default=5, help="number of questions (default 5)")
    interview.add_argument("--review", action="store_true", help="spaced-repetition review: weak questions first")
    interview.add_argument("--time-limit", type=float, metavar="SECONDS", help="time limit per question")
    interview.add_argument("--adaptive", action="store_true",
                           help="adaptive difficulty: a strong answer steps the next question up, a weak one down")
    interview.add_argument("--progress", action="store_true",
                           help="progress across sessions: mastery per topic, review queue, activity calendar")
    interview.add_argument("--resume", metavar="ID", help="continue an unfinished session")
    interview.add_argument("--history", action="store_true", help="list past sessions")
    interview.add_argument("--export", metavar="ID", help="print a session as markdown")
    interview.add_argument("--out", metavar="FILE.md", help="with --export: write to this file")
    interview.set_defaults(run=cmd_interview)


# Commands whose process app.py ends as soon as they return: they write nothing that waits for the
# interpreter's shutdown (their SQLite writes are committed and their files closed as they go), and that
# shutdown (tearing down chromadb, onnxruntime and llama.cpp) was 0.22 s of a cold `ask` (0.4-0.5 s under load).
ENDS_AT_ONCE = frozenset({"ask", "search", "bank"})


def command_of(argv: list[str]) -> str | None:
    """The command named in `argv` (the only option before it, -v, takes no value)."""
    return next((arg for arg in argv if not arg.startswith("-")), None)


def main(argv: list[str] | None = None) -> int:
    # Arguments that were not valid UTF-8 arrive with lone surrogates; they become U+FFFD, not a crash.
    argv = [clean_input(a) for a in (sys.argv[1:] if argv is None else argv)]
    args = parser().parse_args(argv)
    setup_logging(args.verbose)
    if args.command == "search" and args.query is None and not args.batch:
        raise SystemExit("error: give a QUERY or --batch FILE")
    if args.command == "ask" and args.question is None and not args.batch:
        raise SystemExit("error: give a QUESTION or --batch FILE")
    if args.command == "grade" and args.question is None and not args.batch:
        raise SystemExit("error: give --question TEXT --answer TEXT, or --batch FILE")
    return args.run(args)


if __name__ == "__main__":  # `python cli.py ask …` runs as `python app.py ask …` does
    from app import end

    end(main())
