"""`zoomcal audit verify | head | export | archive`: the tenant's tamper-evident audit trail (admins only)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import typer

from zoomcal.cli.common import as_dict, console, context, fail, handled, print_json, when
from zoomcal.lazy import lazy

audit = lazy("zoomcal.app.audit")

audit_app = typer.Typer(help="The audit trail: who changed what and when, hash-chained per tenant.",
                        no_args_is_help=True)


def _utc(text: str | None) -> datetime | None:
    """A date or date-time; without an offset it is UTC."""
    if text is None:
        return None
    value = when(text)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _head(text: str | None) -> tuple[int, str] | None:
    if text is None:
        return None
    seq, sep, digest = text.partition(":")
    if not sep or not seq.isdigit() or len(digest) != 64:
        fail(f"not a head: {text!r}", hint="give the SEQ:HASH that `zoomcal audit head` printed")
    return int(seq), digest.lower()


@audit_app.command("verify")
@handled
def verify(
    head: str | None = typer.Option(None, "--head", help="A SEQ:HASH printed by `audit head` earlier: the trail "
                                                         "must still contain it (catches entries cut off the end)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
) -> None:
    """Check the whole chain, archive included; exit 1 naming each entry altered, removed or moved."""
    found = audit.verify(context(), _head(head))
    if as_json:
        print_json({**as_dict(found), "ok": found.ok})
    else:
        for problem in found.problems:
            console.print(f"[red]{problem}[/red]")
        state = "intact" if found.ok else f"BROKEN ({len(found.problems)} problem(s))"
        console.print(f"audit trail {state}: {found.entries} live and {found.archived} archived entries; "
                      f"head {found.head_seq}:{found.head_hash}")
    if not found.ok:
        raise typer.Exit(1)


@audit_app.command("head")
@handled
def show_head() -> None:
    """Print the chain's last entry as SEQ:HASH; keep it elsewhere and pass it to `audit verify --head`."""
    seq, digest = audit.head(context())
    sys.stdout.write(f"{seq}:{digest}\n")


@audit_app.command("export")
@handled(flags={"start": "--from", "end": "--to", "format": "--format"})
def export(
    start: str | None = typer.Option(None, "--from", help="From this date or date-time (UTC without an offset)."),
    end: str | None = typer.Option(None, "--to", help="Up to (not including) this date or date-time."),
    fmt: str = typer.Option("json", "--format", help="json | csv"),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file (default: standard output)."),
) -> None:
    """Entries written in a range, archived ones included, with their hashes."""
    text = audit.export(context(), _utc(start), _utc(end), fmt.lower())
    if output is None:
        sys.stdout.write(text)
        return
    output.write_text(text, encoding="utf-8")
    console.print(f"wrote {output}")


@audit_app.command("archive")
@handled
def archive_old(
    before: str = typer.Option(..., "--before", help="Move entries written before this date or date-time."),
) -> None:
    """Move old entries to the archive now (the `audit_retention_days` setting does it every hour); nothing is
    deleted, and `verify` still checks them."""
    done = audit.archive(context(), _utc(before))
    if done.moved:
        console.print(f"archived {done.moved} entries ({done.first_seq}..{done.last_seq})")
    else:
        console.print("nothing to archive")
