"""`zoomcal contacts ...`: the directory of people across Zoom, Google, Microsoft and CardDAV."""

from __future__ import annotations

import typer
from rich.table import Table

from zoomcal.cli.common import as_dict, console, context, handled, print_json, run_async
from zoomcal.lazy import lazy

contacts = lazy("zoomcal.app.contacts")

contacts_app = typer.Typer(help="The directory: people from every contact source, with live status.",
                           no_args_is_help=True)
JSON = typer.Option(False, "--json", help="Print JSON instead of text.")


def _people(rows: list[contacts.PersonView]) -> None:
    table = Table("name", "e-mail", "status", "sources", "zone", "user")
    for p in rows:
        table.add_row(p.name, p.email + (f" (+{len(p.emails) - 1})" if len(p.emails) > 1 else ""),
                      f"{p.status} ({p.status_from})" if p.status else "", ", ".join(p.sources), p.timezone or "",
                      p.user or "" if p.invitable else f"{p.user or ''} (not invited)")
    console.print(table)


@contacts_app.command("sync")
@handled
def sync(account: int | None = typer.Option(None, "--account", help="Only this source account (its id)."),
         as_json: bool = JSON) -> None:
    """Read every contact source now and resolve the directory (the workers do it on a schedule)."""
    ctx = context()
    report = run_async(ctx, lambda: contacts.sync(ctx, account_id=account))
    if as_json:
        return print_json(report.as_dict())
    console.print(f"{report.sources} source(s): {report.read} records read, {report.written} changed, "
                  f"{report.removed} removed, {report.rejected} rejected; {report.people} people "
                  f"({report.changed_people} changed), {report.problems} unmapped (new: {report.new_problems}), "
                  f"{report.suggestions} suggested merges; {report.api_calls} API calls")
    for failure in report.failed:
        console.print(f"[red]failed[/] {failure}")
    if report.failed:
        raise typer.Exit(1)


@contacts_app.command("list")
@handled
def list_people(limit: int = typer.Option(0, "--limit", help="At most this many (0: all)."),
                as_json: bool = JSON) -> None:
    """Everyone in the directory, by name."""
    rows = contacts.list_people(context(), limit=limit or None)
    if as_json:
        return print_json(as_dict(rows))
    _people(rows)


@contacts_app.command("search")
@handled
def search(text: str = typer.Argument(..., help="The start of a name or an address."),
           limit: int = typer.Option(10, "--limit", help="At most this many (1-100)."), as_json: bool = JSON) -> None:
    """People whose name (any word of it) or address starts with TEXT, best first."""
    rows = contacts.search(context(), text, limit)
    if as_json:
        return print_json(as_dict(rows))
    _people(rows)


@contacts_app.command("explain")
@handled
def explain(email: str = typer.Argument(..., help="Any address of the person."), as_json: bool = JSON) -> None:
    """Which records make this person, why they were joined, where the name came from."""
    found = contacts.explain(context(), email)
    if as_json:
        return print_json(found.as_dict())
    p = found.person
    console.print(f"[bold]{p.name}[/] <{p.email}>" + (f" — zoomcal user {p.user}" if p.user else "")
                  + f"; name from {found.name_from}")
    table = Table("record", "source", "kind", "name", "addresses")
    for r in found.records:
        table.add_row(r["key"], r["source"], r["kind"], r["name"], ", ".join(r["emails"]))
    console.print(table)
    for link in found.links:
        console.print(f"  {link['a']} = {link['b']}: " + (f"both hold {link['address']}" if link["address"]
                                                          else link["why"]))
    for d in found.decisions:
        console.print(f"  decision: {d['kind']} {d['a']} {d['b']} by {d['by']} at {d['at']}")
    for problem in found.problems:
        console.print(f"  [yellow]{problem['kind']}[/] {problem['record']}: {problem['reason']}")


@contacts_app.command("merge")
@handled
def merge(a: str = typer.Argument(..., help="A person's address, or a record key as `explain` shows it."),
          b: str = typer.Argument(..., help="The other one.")) -> None:
    """Make two people one; kept across syncs (never two zoomcal users)."""
    person = contacts.merge(context(), a, b)
    console.print(f"one person: {person.name} <{person.email}> ({', '.join(person.emails)})")


@contacts_app.command("split")
@handled
def split(record: str = typer.Argument(..., help="A record key, as `explain` shows it.")) -> None:
    """Take a record out of the person it was joined to; it stands alone from now on."""
    person = contacts.split(context(), record)
    console.print(f"stands alone: {person.name} <{person.email}>" if person else "split; the record has no address "
                  "of its own, so it is in the review queue")


@contacts_app.command("invite")
@handled
def invite(email: str = typer.Argument(..., help="The address."),
           never: bool = typer.Option(False, "--never", help="zoomcal never invites this address."),
           again: bool = typer.Option(False, "--again", help="Undo --never.")) -> None:
    """Whether zoomcal may invite an address."""
    if never == again:
        raise typer.BadParameter("give --never or --again")
    person = contacts.set_invitable(context(), email, again)
    console.print(f"{person.email}: {'may be invited' if person.invitable else 'never invited'}")


@contacts_app.command("sources")
@handled
def sources(as_json: bool = JSON) -> None:
    """The contact sources: when each was read, how many records it holds, and its health."""
    rows = contacts.sources(context())
    if as_json:
        return print_json(as_dict(rows))
    table = Table("account", "provider", "owner", "status", "records", "read at", "error")
    for r in rows:
        status = f"shared (read through account {r.shared_with})" if r.shared_with is not None else r.status
        table.add_row(str(r.account_id), r.provider, r.owner, status, str(r.records),
                      r.synced_at.isoformat(timespec="seconds") if r.synced_at else "never", r.error)
    console.print(table)


@contacts_app.command("scopes")
@handled
def scopes(as_json: bool = JSON) -> None:
    """Per source: the scopes each feature needs, what the provider granted, what is missing or unused."""
    ctx = context()
    rows = run_async(ctx, lambda: contacts.scopes(ctx))
    if as_json:
        return print_json(as_dict(rows))
    table = Table("account", "provider", "feature: needs", "granted", "missing", "granted, unused", "note")
    for r in rows:
        table.add_row(str(r.account_id), r.provider,
                      "\n".join(f"{k}: {' '.join(v) or '-'}" for k, v in r.needed.items()),
                      " ".join(r.granted) if r.granted is not None else "?", " ".join(r.missing),
                      " ".join(r.unused), r.note)
    console.print(table)


@contacts_app.command("dry-run")
@handled
def dry_run(rules: str = typer.Option(..., "--rules", help="A mapping rules file (its [contacts] section)."),
            as_json: bool = JSON) -> None:
    """What the directory would show under these rules; nothing is written."""
    rows = contacts.dry_run(context(), rules)
    if as_json:
        return print_json(as_dict(rows))
    if not rows:
        console.print("nobody's name would change")
    for r in rows:
        console.print(f"{r.person}: {r.field} {r.now!r} -> {r.would_be!r}")
