"""The `zoomcal` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select

from zoomcal.config import Settings, get_settings
from zoomcal.errors import ConfigError
from zoomcal.logging import configure

app = typer.Typer(help="zoomcal: keep Zoom meetings and calendars in two-way sync around one central store.",
                  no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
account_app = typer.Typer(help="Link provider accounts (Zoom, Google Calendar).", no_args_is_help=True)
mapping_app = typer.Typer(help="Mapping rules.", no_args_is_help=True)
db_app = typer.Typer(help="Database maintenance.", no_args_is_help=True)
app.add_typer(user_app, name="user")
app.add_typer(account_app, name="account")
app.add_typer(mapping_app, name="mapping")
app.add_typer(db_app, name="db")

console = Console()
err = Console(stderr=True)


@app.callback()
def _main(verbose: bool = typer.Option(False, "--verbose", "-v", help="Log structured events to stderr.")) -> None:
    configure("INFO" if verbose else "ERROR")


def _ctx():
    from zoomcal.service import Context

    try:
        return Context.from_settings(get_settings())
    except ConfigError as exc:
        _fail(str(exc))


def _fail(message: str, code: int = 1):
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# --- set-up ------------------------------------------------------------------------------------------------

@app.command()
def init() -> None:
    """Create the data directory, the token-vault key and the database (SQLite unless ZOOMCAL_DATABASE_URL)."""
    settings = get_settings()
    ctx = _ctx()
    from zoomcal.store import repo

    with ctx.db.transaction() as s:
        repo.get_or_create_tenant(s, "default")
    console.print(f"data directory: {settings.data_dir}")
    console.print(f"database: {ctx.db.engine.url.render_as_string(hide_password=True)}")
    console.print("token vault: " + ("ZOOMCAL_VAULT_KEYS" if settings.vault_keys else
                                     str(settings.data_dir / "vault.keys")))


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Apply database migrations."""
    from zoomcal.store.db import Database, upgrade

    db = Database(get_settings().resolved_database_url(), migrate=False)
    upgrade(db.engine, revision)
    console.print(f"database at {revision}")


vault_app = typer.Typer(help="Token vault.", no_args_is_help=True)
app.add_typer(vault_app, name="vault")


@vault_app.command("rotate")
def vault_rotate() -> None:
    """Re-seal every stored secret with the first (newest) vault key."""
    from zoomcal.store import repo
    from zoomcal.store.models import Account

    ctx = _ctx()
    moved = 0
    with ctx.db.transaction() as s:
        for account in s.scalars(select(Account).where(Account.secret.is_not(None))):
            resealed = ctx.vault.reseal(account.secret)
            if resealed != account.secret:
                account.secret = resealed
                moved += 1
                repo.audit(s, account.tenant_id, "cli", "vault.reseal", f"account:{account.id}",
                           {"key": ctx.vault.current})
    console.print(f"{moved} secret(s) re-sealed with key {ctx.vault.current}")


# --- users and accounts ------------------------------------------------------------------------------------

@user_app.command("add")
def user_add(email: str, name: str = typer.Option("", "--name", help="Display name.")) -> None:
    """Add a user."""
    from zoomcal.service import add_user

    try:
        user = add_user(_ctx(), email, name)
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"added user {user.email}")


@user_app.command("list")
def user_list(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List users with their linked calendars."""
    from zoomcal.store.models import Account, Calendar, User

    ctx = _ctx()
    rows = []
    with ctx.db.session() as s:
        for user in s.scalars(select(User).order_by(User.id)):
            calendars = [
                {"provider": acc.provider, "calendar": cal.remote_id, "role": cal.role,
                 "receives_meetings": cal.receives_meetings, "status": acc.status}
                for cal, acc in s.execute(select(Calendar, Account).join(Account, Calendar.account_id == Account.id)
                                          .where(Calendar.user_id == user.id).order_by(Calendar.id))
            ]
            rows.append({"email": user.email, "name": user.name, "calendars": calendars})
    if as_json:
        return _print_json(rows)
    table = Table("email", "name", "linked")
    for row in rows:
        linked = ", ".join(f"{c['provider']}:{c['calendar']}" for c in row["calendars"])
        table.add_row(row["email"], row["name"], linked)
    console.print(table)


def _secret(env: str | None, label: str, required: bool = True) -> str:
    if env:
        value = os.environ.get(env)
        if not value:
            _fail(f"environment variable {env} is empty or unset")
        return value
    if not required:
        return ""
    if not sys.stdin.isatty():
        _fail(f"{label}: pass --{label.replace(' ', '-')}-env VAR (no terminal to prompt on)")
    return typer.prompt(label, hide_input=True)


@account_app.command("add")
def account_add(
    provider: str = typer.Argument(..., help="zoom | google"),
    user: str = typer.Option(..., "--user", help="E-mail of the zoomcal user."),
    client_id: str = typer.Option(..., "--client-id", help="OAuth client id."),
    client_secret_env: str | None = typer.Option(None, "--client-secret-env", help="Env var with the client secret."),
    refresh_token_env: str | None = typer.Option(None, "--refresh-token-env",
                                                 help="Env var with a user OAuth refresh token."),
    account_id: str | None = typer.Option(None, "--account-id",
                                          help="Zoom server-to-server: the Zoom account id (no refresh token needed)."),
    zoom_user: str | None = typer.Option(None, "--zoom-user",
                                         help="Zoom user id or e-mail (default: the user's e-mail)."),
    calendar_id: str = typer.Option("primary", "--calendar-id", help="Google calendar id."),
    api_base: str | None = typer.Option(None, "--api-base", help="API base URL (default: the vendor's)."),
    token_url: str | None = typer.Option(None, "--token-url", help="OAuth token URL (default: the vendor's)."),
    receives_meetings: bool = typer.Option(True, "--receives-meetings/--no-meetings",
                                           help="Google: put Zoom meetings in this calendar."),
) -> None:
    """Link a Zoom or Google Calendar account to a user. Secrets come from environment variables or a prompt."""
    from zoomcal.service import add_account

    if provider not in ("zoom", "google"):
        _fail("provider must be zoom or google")
    secret: dict[str, str] = {"client_id": client_id, "client_secret": _secret(client_secret_env, "client secret")}
    if provider == "zoom" and account_id:
        secret["account_id"] = account_id
    else:
        secret["refresh_token"] = _secret(refresh_token_env, "refresh token")
    config = {k: v for k, v in {"api_base": api_base, "token_url": token_url}.items() if v}
    remote = (zoom_user or user) if provider == "zoom" else calendar_id
    try:
        add_account(_ctx(), user, provider, config, secret, remote,
                    receives_meetings=None if provider == "zoom" else receives_meetings)
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"linked {provider} for {user} ({remote})")


@account_app.command("list")
def account_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List linked accounts (never their secrets)."""
    from zoomcal.store.models import Account, User

    ctx = _ctx()
    with ctx.db.session() as s:
        rows = [{"id": a.id, "user": u.email, "provider": a.provider, "calendar": a.external_id, "status": a.status,
                 "api_base": (a.config or {}).get("api_base", "")}
                for a, u in s.execute(select(Account, User).join(User, Account.user_id == User.id)
                                      .order_by(Account.id))]
    if as_json:
        return _print_json(rows)
    table = Table("id", "user", "provider", "calendar", "status")
    for r in rows:
        table.add_row(str(r["id"]), r["user"], r["provider"], r["calendar"], r["status"])
    console.print(table)


# --- sync ----------------------------------------------------------------------------------------------------

def _describe_plan(pair, report) -> list[str]:
    from zoomcal.sync.engine import describe

    lines = []
    for p in report.plan.events if report.plan else []:
        writes = ", ".join(f"{w.op} {pair.side(w.side).label}" for w in p.writes) or "record only"
        lines.append(f"{p.event_id}: {describe(p.reason, pair)} ({writes})")
    return lines


async def _sync_round(ctx, user: str | None, dry_run: bool, confirm_deletes: bool, progress: Progress | None):
    from zoomcal.service import build_pairs, close_pairs
    from zoomcal.sync.engine import SyncEngine

    pairs = build_pairs(ctx, user)
    engine = SyncEngine(ctx.db)
    results = []
    task = progress.add_task("syncing", total=len(pairs)) if progress else None
    try:
        for pair in pairs:
            report = await engine.run(pair, trigger="cli", dry_run=dry_run, confirm_deletes=confirm_deletes)
            results.append((pair, report))
            if progress:
                progress.update(task, advance=1, description=f"synced {pair.user_email}")
    finally:
        await close_pairs(pairs)
    return results


@app.command()
def sync(
    once: bool = typer.Option(False, "--once", help="One round, then exit."),
    user: str | None = typer.Option(None, "--user", help="Only this user."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the planned actions; write nothing."),
    confirm_deletes: bool = typer.Option(False, "--confirm-deletes", help="Carry out deletions held by the guard."),
    interval: float = typer.Option(30.0, "--interval", help="Seconds between rounds when not --once."),
) -> None:
    """Sync every user's Zoom meetings with their calendar (continuously unless --once or --dry-run)."""
    ctx = _ctx()
    failed = False
    while True:
        try:
            with Progress(console=err, transient=True) as progress:
                results = asyncio.run(_sync_round(ctx, user, dry_run, confirm_deletes, progress))
        except ConfigError as exc:
            _fail(str(exc))
        if not results:
            err.print("nothing to sync: no user has both a Zoom account and a calendar that receives meetings")
        for pair, report in results:
            if dry_run:
                console.print(f"[bold]{pair.user_email}[/] — planned: {report.counts}")
                for line in _describe_plan(pair, report):
                    console.print(f"  {line}", markup=False, highlight=False)
            else:
                console.print(f"{pair.user_email}: {report.status}, {report.writes} writes, "
                              f"{report.api_calls} API calls, {report.duration_ms} ms")
            for note in report.notes:
                console.print(f"  note: {note}")
            for error in report.errors:
                err.print(f"  [red]{error}[/]")
            failed = failed or report.status == "failed"
        if once or dry_run:
            raise typer.Exit(1 if failed else 0)
        time.sleep(interval)


@app.command()
def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Last sync run per user, open review items, accounts needing attention."""
    from zoomcal.store.models import Account, ReviewItem, SyncRun, User

    ctx = _ctx()
    rows = []
    with ctx.db.session() as s:
        for u in s.scalars(select(User).order_by(User.id)):
            run = s.scalar(select(SyncRun).where(SyncRun.user_id == u.id).order_by(SyncRun.id.desc()).limit(1))
            reviews = s.scalar(select(func.count()).select_from(ReviewItem).where(
                ReviewItem.user_id == u.id, ReviewItem.status == "open"))
            reauth = s.scalar(select(func.count()).select_from(Account).where(
                Account.user_id == u.id, Account.status != "ok"))
            rows.append({"user": u.email, "last_run": run.started_at if run else None,
                         "status": run.status if run else "never", "writes": (run.counts or {}).get("writes", 0) if run
                         else 0, "errors": run.errors if run else 0, "review_queue": reviews,
                         "accounts_needing_reauth": reauth})
    if as_json:
        return _print_json(rows)
    table = Table("user", "last run", "status", "writes", "errors", "review", "re-auth")
    for r in rows:
        table.add_row(r["user"], str(r["last_run"] or "-"), r["status"], str(r["writes"]), str(r["errors"]),
                      str(r["review_queue"]), str(r["accounts_needing_reauth"]))
    console.print(table)


@app.command("log")
def show_log(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new entries."),
    limit: int = typer.Option(50, "--limit", help="How many recent entries to start with."),
    user: str | None = typer.Option(None, "--user"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The sync log: every decision and every error, newest last."""
    from zoomcal.store.models import SyncLogEntry, User

    ctx = _ctx()
    user_id = None
    if user:
        with ctx.db.session() as s:
            found = s.scalar(select(User).where(User.email == user.lower()))
            if found is None:
                _fail(f"no user {user}")
            user_id = found.id
    last_id = 0
    with ctx.db.session() as s:
        q = select(SyncLogEntry).order_by(SyncLogEntry.id.desc()).limit(limit)
        if user_id:
            q = q.where(SyncLogEntry.user_id == user_id)
        entries = list(reversed(list(s.scalars(q))))
    while True:
        for e in entries:
            last_id = max(last_id, e.id)
            if as_json:
                sys.stdout.write(json.dumps({"id": e.id, "at": str(e.created_at), "level": e.level, "action": e.action,
                                             "event": e.event_id, "message": e.message}) + "\n")
            else:
                color = {"error": "red", "warning": "yellow"}.get(e.level, "white")
                console.print(f"{e.created_at:%Y-%m-%d %H:%M:%S} [{color}]{e.level:7}[/] {e.action:9} "
                              f"{e.event_id or '-':28} {e.message}", highlight=False)
        if not follow:
            return
        sys.stdout.flush()
        time.sleep(1.0)
        with ctx.db.session() as s:
            q = select(SyncLogEntry).where(SyncLogEntry.id > last_id).order_by(SyncLogEntry.id)
            if user_id:
                q = q.where(SyncLogEntry.user_id == user_id)
            entries = list(s.scalars(q))


@app.command()
def events(user: str | None = typer.Option(None, "--user"), as_json: bool = typer.Option(False, "--json")) -> None:
    """Events in the central store (the canonical, merged view)."""
    from zoomcal.store.models import Event, Link, User

    ctx = _ctx()
    rows = []
    with ctx.db.session() as s:
        q = select(Event, User).join(User, Event.user_id == User.id).order_by(Event.start_at)
        if user:
            q = q.where(User.email == user.lower())
        for ev, u in s.execute(q):
            links = [{"calendar_id": link.calendar_id, "remote_id": link.remote_id, "pending": link.pending}
                     for link in s.scalars(select(Link).where(Link.event_id == ev.id))]
            rows.append({"id": ev.id, "user": u.email, "title": ev.title, "start": ev.start_at, "end": ev.end_at,
                         "is_meeting": ev.is_meeting, "content": ev.content, "links": links})
    if as_json:
        return _print_json(rows)
    table = Table("user", "start", "end", "title", "zoom", "recurs")
    for r in rows:
        table.add_row(r["user"], r["start"] or "-", r["end"] or "-", r["title"], "yes" if r["is_meeting"] else "",
                      r["content"].get("rrule") or "")
    console.print(table)


@app.command()
def review(as_json: bool = typer.Option(False, "--json")) -> None:
    """Open review items: conflicting edits and held mass deletions."""
    from zoomcal.store.models import ReviewItem

    ctx = _ctx()
    with ctx.db.session() as s:
        rows = [{"id": r.id, "kind": r.kind, "event": r.event_id, "field": r.field, "zoom": r.zoom_value,
                 "calendar": r.calendar_value, "applied": r.chosen}
                for r in s.scalars(select(ReviewItem).where(ReviewItem.status == "open").order_by(ReviewItem.id))]
    if as_json:
        return _print_json(rows)
    table = Table("id", "kind", "event", "field", "zoom", "calendar", "applied")
    for r in rows:
        table.add_row(*(str(r[k]) for k in ("id", "kind", "event", "field", "zoom", "calendar", "applied")))
    console.print(table)


# --- mapping ------------------------------------------------------------------------------------------------

@mapping_app.command("check")
def mapping_check(file: Path) -> None:
    """Validate a mapping rules file (exit 1 with the reasons when it is not valid)."""
    from zoomcal.mapping.rules import load_rules

    try:
        rules = load_rules(file)
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"[green]ok[/] {file}: version {rules.version}, conflicts go to the "
                  f"{rules.conflict.policy} side, unsupported recurrences -> {rules.zoom.unsupported_recurrence}")


# --- demo and sandbox ---------------------------------------------------------------------------------------

@app.command()
def demo(
    once: bool = typer.Option(False, "--once",
                              help="Scripted scenario with faults, then exit 0 only if both sides agree."),
    as_json: bool = typer.Option(False, "--json", help="With --once: print a JSON summary."),
    interval: float = typer.Option(3.0, "--interval", help="Live mode: seconds between rounds."),
    rounds: int | None = typer.Option(None, "--rounds", help="Live mode: stop after this many rounds."),
) -> None:
    """Run zoomcal against built-in Zoom and Google sandboxes with demo users (no accounts, no network)."""
    from zoomcal.demo import run_live, run_once

    settings: Settings = get_settings()
    if once:
        result = asyncio.run(run_once(settings, err if as_json else console, quiet=as_json))
        if as_json:
            _print_json(result)
        else:
            console.print({k: v for k, v in result.items() if not k.endswith("_details")})
            for line in result["mismatch_details"] + result["duplicate_details"]:
                err.print(f"[red]{line}[/]")
        ok = result["mismatches"] == 0 and result["duplicates"] == 0
        raise typer.Exit(0 if ok else 1)
    try:
        asyncio.run(run_live(settings, console, interval, rounds))
    except KeyboardInterrupt:
        console.print("stopped")


@app.command()
def sandbox(
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8765, "--port"),
    users: int = typer.Option(3, "--users", help="How many demo users to create."),
) -> None:
    """Serve the Zoom and Google sandboxes; the first output line is JSON with URLs, users and credentials."""
    import uvicorn

    from zoomcal.sandbox.world import DEMO_USERS, SandboxWorld

    world = SandboxWorld()
    people = []
    for i in range(users):
        email, name, tz = DEMO_USERS[i] if i < len(DEMO_USERS) else (f"user{i}@example.com", f"User {i}", "UTC")
        people.append(world.add_user(email, name, tz))
    sys.stdout.write(json.dumps(world.describe(f"http://{host}:{port}", people)) + "\n")
    sys.stdout.flush()
    uvicorn.run(world.app(over_network=True), host=host, port=port, log_level="warning")


def run() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
