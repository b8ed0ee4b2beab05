"""`zoomcal polls ...`: the polls of a Zoom meeting, named by its meeting id or by the event that carries it."""

from __future__ import annotations

import typer
from rich.table import Table

from zoomcal.cli.common import as_dict, console, context, handled, print_json, run_async
from zoomcal.lazy import lazy

polls = lazy("zoomcal.app.polls")

polls_app = typer.Typer(help="Polls of Zoom meetings: create, list, change, delete, and the answers afterwards.",
                        no_args_is_help=True)
USER = typer.Option(..., "--user", help="The meeting's host (e-mail).")
MEETING = typer.Argument(..., help="The Zoom meeting id, or the id of the event that carries it.")
QUESTIONS = typer.Option([], "--question", help="'text = answer | answer' (repeat for more).")
MULTIPLE = typer.Option(False, "--multiple", help="Participants may pick several answers.")
ANONYMOUS = typer.Option(False, "--anonymous", help="Answers are kept without names.")
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")
TITLE = typer.Option(..., "--title", help="The poll's title (up to 64 characters).")


def _body(title: str, questions: list[str], multiple: bool, anonymous: bool) -> dict:
    return polls.poll_body(title, [polls.parse_question(q, multiple) for q in questions], anonymous)


@polls_app.command("list")
@handled
def list_polls(meeting: str = MEETING, user: str = USER, as_json: bool = JSON) -> None:
    """The meeting's polls."""
    ctx = context()
    found = run_async(ctx, lambda: polls.list_polls(ctx, user, meeting))
    if as_json:
        return print_json(as_dict(found))
    table = Table("id", "title", "status", "questions")
    for p in found:
        table.add_row(p.id, p.title, p.status, "; ".join(f"{q['name']} ({' | '.join(q['answers'])})"
                                                          for q in p.questions))
    console.print(table)


@polls_app.command("create")
@handled
def create(meeting: str = MEETING, user: str = USER, title: str = TITLE,
           questions: list[str] = QUESTIONS, multiple: bool = MULTIPLE, anonymous: bool = ANONYMOUS) -> None:
    """Add a poll to the meeting."""
    ctx = context()
    body = _body(title, questions, multiple, anonymous)
    made = run_async(ctx, lambda: polls.create(ctx, user, meeting, body))
    console.print(f"poll {made.id} created")


@polls_app.command("update")
@handled
def update(meeting: str = MEETING, poll_id: str = typer.Argument(..., help="The poll's id."), user: str = USER,
           title: str = TITLE, questions: list[str] = QUESTIONS, multiple: bool = MULTIPLE,
           anonymous: bool = ANONYMOUS) -> None:
    """Replace a poll that has not started."""
    ctx = context()
    body = _body(title, questions, multiple, anonymous)
    run_async(ctx, lambda: polls.update(ctx, user, meeting, poll_id, body))
    console.print(f"poll {poll_id} updated")


@polls_app.command("delete")
@handled
def delete(meeting: str = MEETING, poll_id: str = typer.Argument(..., help="The poll's id."),
           user: str = USER) -> None:
    """Remove a poll from the meeting."""
    ctx = context()
    run_async(ctx, lambda: polls.delete(ctx, user, meeting, poll_id))
    console.print(f"poll {poll_id} deleted")


@polls_app.command("results")
@handled
def results(meeting: str = MEETING, user: str = USER, as_json: bool = JSON) -> None:
    """Who answered what, after the meeting."""
    ctx = context()
    found = run_async(ctx, lambda: polls.results(ctx, user, meeting))
    if as_json:
        return print_json(as_dict(found))
    table = Table("participant", "question", "answer", "at")
    for a in found:
        table.add_row(a.participant + (f" <{a.email}>" if a.email else ""), a.question, a.answer, a.at)
    console.print(table)
