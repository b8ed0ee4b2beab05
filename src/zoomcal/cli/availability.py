"""`zoomcal availability`, `slots`, `settings`, `book`, `conflicts`."""

from __future__ import annotations

import typer
from rich.table import Table

from zoomcal.cli.common import as_dict, console, context, err, fail, handled, print_json, run_async, when
from zoomcal.errors import ConfigError
from zoomcal.lazy import lazy

app_availability = lazy("zoomcal.app.availability")
polls = lazy("zoomcal.app.polls")
app_settings = lazy("zoomcal.app.settings")
app_sync = lazy("zoomcal.app.sync")

WINDOW = {"start": "--from", "end": "--to"}


@handled(flags=WINDOW)
def availability(
    user: str = typer.Option(..., "--user", help="The person's e-mail address."),
    start: str = typer.Option(..., "--from", help="Start (ISO date-time; without offset: the user's zone)."),
    end: str = typer.Option(..., "--to", help="End."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """A user's busy intervals (every linked calendar and Zoom, recurrences expanded) between two times."""
    found = app_availability.busy(context(), user, when(start), when(end))
    if as_json:
        return print_json(found.as_dict())
    table = Table("start", "end", "kind", "title", title=f"{found.user} ({found.timezone})")
    for b in found.busy:
        table.add_row(b["start"], b["end"], b["kind"], b["title"])
    console.print(table)


def _duration(text: str) -> int:
    try:
        from zoomcal.availability.query import parse_duration

        return parse_duration(text)
    except ConfigError as exc:
        fail(str(exc))


@handled(flags=WINDOW)
def slots(
    users: str = typer.Option(..., "--users", help="Comma-separated e-mails."),
    duration: str = typer.Option("30m", "--duration", help="e.g. 30m, 1h, 1h30m"),
    start: str = typer.Option(..., "--from", help="Start: ISO 8601; without an offset, in the person's zone."),
    end: str = typer.Option(..., "--to", help="End: ISO 8601; without an offset, in the person's zone."),
    step: str = typer.Option("15m", "--step", help="Slot starts are aligned to this."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Common free slots of several people, inside everyone's working hours and buffers (first person's zone)."""
    emails = [e.strip() for e in users.split(",") if e.strip()]
    found = app_availability.slots(context(), emails, _duration(duration), when(start), when(end), _duration(step))
    if as_json:
        return print_json(found.as_dict())
    console.print(f"{len(found.slots)} slot(s) of {found.duration_minutes} min in {found.timezone}:")
    for slot in found.slots[:50]:
        console.print(f"  {slot['start']} - {slot['end']}")


@handled
def settings(
    user: str = typer.Option(..., "--user", help="The person's e-mail address."),
    timezone: str | None = typer.Option(None, "--tz", help="IANA zone, e.g. Europe/Berlin."),
    hours: str | None = typer.Option(None, "--hours", help="e.g. 'mon-fri 09:00-17:00; sat 10:00-12:00'"),
    before: int | None = typer.Option(None, "--buffer-before", help="Minutes kept free before meetings."),
    after: int | None = typer.Option(None, "--buffer-after", help="Minutes kept free after meetings."),
    exclude: str | None = typer.Option(None, "--exclude-calendars", help="Calendar ids that do not count "
                                                                         "(comma-separated; empty: all count)."),
    meetings_calendar: int | None = typer.Option(None, "--meetings-calendar",
                                                 help="Calendar id (see `user list --json`) that receives Zoom "
                                                      "meetings."),
    as_json: bool = typer.Option(False, "--json", help="Print the settings as JSON."),
) -> None:
    """Show or change a user's settings: zone, working hours, buffers, counted calendars, and which calendar
    receives Zoom meetings."""
    excluded = None
    if exclude is not None:
        try:
            excluded = [int(x) for x in exclude.split(",") if x.strip()]
        except ValueError:
            fail(f"--exclude-calendars takes calendar ids, not {exclude!r}")
    shown = app_settings.update(context(), user, timezone=timezone, working_hours=hours, buffer_before_min=before,
                                buffer_after_min=after, excluded_calendars=excluded,
                                meetings_calendar=meetings_calendar)
    if as_json:
        return print_json(shown.as_dict())
    table = Table(title=f"settings of {user}", show_header=False)
    for key, value in shown.as_dict().items():
        table.add_row(key.replace("_", " "), _shown(value))
    console.print(table)


def _shown(value: object) -> str:
    """A setting as one line: working hours as `mon 09:00-17:00; tue ...`, lists comma-separated."""
    if isinstance(value, dict):
        return "; ".join(f"{k} {_shown(v)}" for k, v in value.items()) or "-"
    if isinstance(value, list | tuple):
        parts = ["-".join(map(str, v)) if isinstance(v, list | tuple) else str(v) for v in value]
        return ", ".join(parts) or "-"
    return "-" if value is None else str(value)


@handled
def book(
    user: str = typer.Option(..., "--user", help="The person's e-mail address."),
    start: str = typer.Option(..., "--start", help="Start: ISO 8601; without an offset, in the person's zone."),
    end: str = typer.Option(..., "--end", help="End: ISO 8601; without an offset, in the person's zone."),
    title: str = typer.Option(..., "--title", help="The booking's title."),
    attendees: str = typer.Option("", "--attendees", help="Comma-separated e-mails."),
    zoom: bool = typer.Option(False, "--zoom", help="Also create a Zoom meeting."),
    poll_title: str | None = typer.Option(None, "--poll", help="Attach a poll with this title to the Zoom meeting "
                                                               "(with --question)."),
    questions: list[str] = typer.Option([], "--question", help="A poll question: 'text = answer | answer' "
                                                               "(repeat for more)."),
    sync_now: bool = typer.Option(True, "--sync/--no-sync", help="Fan out to Zoom and the calendar right away."),
    as_json: bool = typer.Option(False, "--json", help="Print the booking and its fan-out as JSON."),
) -> None:
    """Book a time for a user unless it collides with anything or the person's buffers around it (exit 3 naming
    the conflicting item). Exit 4: booked, but writing it to a calendar failed (the next sync tries again)."""
    ctx = context()
    guests = [a.strip() for a in attendees.split(",") if a.strip()]
    poll = polls.poll_body(poll_title, [polls.parse_question(q) for q in questions]) \
        if poll_title is not None or questions else None
    booked = app_availability.book(ctx, user, when(start), when(end), title, attendees=guests, zoom=zoom, poll=poll)
    results = run_async(ctx, lambda: app_sync.run(ctx, booked.user, trigger="booking")) if sync_now else []
    failed = [r for r in results if r.status not in ("ok", "skipped") or r.errors]
    if as_json:
        print_json({"booked": as_dict(booked), "fan_out": [r.as_dict() for r in results]})
    else:
        console.print(f"booked {booked.event_id}")
        for result in results:
            console.print(f"fan-out to {' + '.join(result.calendars)}: {result.status}, {result.writes} writes")
            for line in result.errors:
                err.print(f"  [red]{line}[/]", highlight=False)
    if failed:
        err.print("booked, but not yet written everywhere: the next `zoomcal sync` (or the running service) "
                  "writes it", highlight=False, markup=False)
        raise typer.Exit(4)


@handled
def conflicts(
    user: str = typer.Option(..., "--user", help="The person's e-mail address."),
    start: str | None = typer.Option(None, "--from", help="Start: ISO 8601; without an offset, in the person's zone."),
    end: str | None = typer.Option(None, "--to", help="End: ISO 8601; without an offset, in the person's zone."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Overlapping events in a user's calendars (they came from outside and could not be prevented)."""
    found = app_availability.conflicts(context(), user, when(start) if start else None, when(end) if end else None)
    if as_json:
        return print_json(as_dict(found))
    for c in found:
        console.print(f"{c['first']['title']!r} ({c['first']['start']}) overlaps {c['second']['title']!r} "
                      f"({c['second']['start']}) by {c['overlap_minutes']} min", markup=False, highlight=False)
    if not found:
        console.print("no overlapping events")
