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
from zoomcal.errors import ConfigError, ConnectorError, InvalidItem
from zoomcal.logging import configure

app = typer.Typer(help="zoomcal: keep Zoom meetings and calendars in two-way sync around one central store.",
                  no_args_is_help=True, add_completion=False)
user_app = typer.Typer(help="Manage users.", no_args_is_help=True)
account_app = typer.Typer(help="Link provider accounts (Zoom, Google Calendar, Microsoft 365, CalDAV, ICS feeds).",
                          no_args_is_help=True)
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
                {"id": cal.id, "provider": acc.provider, "calendar": cal.remote_id, "role": cal.role,
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
    provider: str = typer.Argument(..., help="zoom | google | graph | ews | ics | caldav | zoom-calendar"),
    user: str = typer.Option(..., "--user", help="E-mail of the zoomcal user."),
    client_id: str | None = typer.Option(None, "--client-id", help="OAuth client id (zoom, zoom-calendar, google, "
                                                                   "graph)."),
    url: str | None = typer.Option(None, "--url", help="ics: the feed's URL or a file path; caldav: the server "
                                                        "or calendar URL; ews: the EWS endpoint "
                                                        "(https://host/EWS/Exchange.asmx)."),
    username: str | None = typer.Option(None, "--username", help="caldav, ews: the account name."),
    password_env: str | None = typer.Option(None, "--password-env",
                                            help="caldav, ews: env var with the password (ews --auth oauth: "
                                                 "the access token)."),
    auth: str = typer.Option("auto", "--auth", help="ews: auto (what the server offers) | basic | ntlm | oauth."),
    calendar_name: str | None = typer.Option(None, "--calendar", help="caldav: which calendar (default: first)."),
    client_secret_env: str | None = typer.Option(None, "--client-secret-env", help="Env var with the client secret."),
    refresh_token_env: str | None = typer.Option(None, "--refresh-token-env",
                                                 help="Env var with a user OAuth refresh token."),
    account_id: str | None = typer.Option(None, "--account-id",
                                          help="Zoom server-to-server: the Zoom account id (no refresh token needed)."),
    zoom_user: str | None = typer.Option(None, "--zoom-user",
                                         help="Zoom user id or e-mail (default: the user's e-mail)."),
    calendar_id: str | None = typer.Option(None, "--calendar-id",
                                           help="Google: calendar id (default primary); graph: calendar id "
                                                "(default: the user's default calendar)."),
    mailbox: str | None = typer.Option(None, "--mailbox",
                                       help="graph, ews: the mailbox (default: the user's e-mail)."),
    api_base: str | None = typer.Option(None, "--api-base", help="API base URL (default: the vendor's)."),
    token_url: str | None = typer.Option(None, "--token-url", help="OAuth token URL (default: the vendor's)."),
    receives_meetings: bool | None = typer.Option(None, "--receives-meetings/--no-meetings",
                                                  help="Calendars: put Zoom meetings in this one (default: only "
                                                       "the user's first calendar does)."),
) -> None:
    """Link a Zoom, Google Calendar, Microsoft 365, Exchange, CalDAV, ICS feed or Zoom Calendar account to a user.
    Secrets come from environment variables or a prompt, never from the command line."""
    from zoomcal.service import PROVIDERS, add_account

    if provider not in PROVIDERS:
        _fail(f"provider must be one of {', '.join(PROVIDERS)}")
    if provider == "ews":
        _link_ews(user, url, username, _secret(password_env, "password") if url and username else "", auth,
                  mailbox or user, receives_meetings)
        return
    if provider == "caldav":
        from zoomcal.connectors.caldav.connector import discover

        if not url or not username:
            _fail("caldav needs --url and --username (and the password from --password-env or a prompt)")
        password = _secret(password_env, "password")
        ctx = _ctx()
        try:
            calendars = asyncio.run(discover(url, username, password, allow_private=ctx.settings.allow_private_urls,
                                             resolve=ctx.resolver))
        except (ConfigError, ConnectorError) as exc:
            _fail(f"CalDAV discovery at {url} failed: {exc}")
        chosen = [c for c in calendars if calendar_name in (None, c[1])]
        if not chosen:
            _fail(f"no calendar {calendar_name!r} at {url}; found: {[c[1] for c in calendars]}")
        try:
            add_account(ctx, user, "caldav", {}, {"username": username, "password": password}, chosen[0][0],
                        chosen[0][1], receives_meetings=receives_meetings)
        except ConfigError as exc:
            _fail(str(exc))
        console.print(f"linked CalDAV calendar {chosen[0][1]!r} for {user} ({chosen[0][0]})")
        return
    if provider == "ics":
        if not url:
            _fail("ics needs --url (an http(s) URL or a local file path)")
        try:
            add_account(_ctx(), user, "ics", {}, {}, url, "ICS feed", receives_meetings=False)
        except ConfigError as exc:
            _fail(str(exc))
        console.print(f"linked ICS feed for {user} ({url})")
        return
    if not client_id:
        _fail(f"{provider} needs --client-id")
    secret: dict[str, str] = {"client_id": client_id, "client_secret": _secret(client_secret_env, "client secret")}
    if provider in ("zoom", "zoom-calendar") and account_id:
        secret["account_id"] = account_id
    else:
        secret["refresh_token"] = _secret(refresh_token_env, "refresh token")
    config = {k: v for k, v in {"api_base": api_base, "token_url": token_url}.items() if v}
    if provider == "zoom":
        remote = zoom_user or user
    elif provider == "zoom-calendar":
        remote = calendar_id or zoom_user or user   # a user's primary Zoom calendar id is their e-mail
    elif provider == "graph":
        remote = f"{mailbox or user}/{calendar_id or ''}".rstrip("/")
    else:
        remote = calendar_id or "primary"
    try:
        add_account(_ctx(), user, provider, config, secret, remote,
                    receives_meetings=receives_meetings)
    except ConfigError as exc:
        _fail(str(exc))
    console.print(f"linked {provider} for {user} ({remote})")


@account_app.command("connect")
def account_connect(
    provider: str = typer.Argument(..., help="graph"),
    user: str = typer.Option(..., "--user", help="E-mail of the zoomcal user (also the sign-in hint)."),
    client_id: str = typer.Option(..., "--client-id", help="The app registration's client id."),
    client_secret_env: str | None = typer.Option(None, "--client-secret-env",
                                                 help="Env var with the client secret (none: a public client, "
                                                      "PKCE only)."),
    tenant: str = typer.Option("common", "--tenant", help="Microsoft Entra tenant (id, domain, or common)."),
    login_base: str = typer.Option("https://login.microsoftonline.com", "--login-base",
                                   help="Sign-in service base URL."),
    api_base: str | None = typer.Option(None, "--api-base", help="API base URL (default: the vendor's)."),
    open_browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the sign-in page in a browser."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the sign-in."),
) -> None:
    """Link a Microsoft 365 calendar by signing in (OAuth authorization code with PKCE, loopback redirect).
    Only the refresh token is stored, sealed."""
    import webbrowser

    from zoomcal.auth.authorize import authorize, microsoft
    from zoomcal.service import add_account

    if provider != "graph":
        _fail("connect supports graph (Google and Zoom accounts take --refresh-token-env with `account add`)")
    secret = os.environ.get(client_secret_env, "") if client_secret_env else ""
    ctx = _ctx()
    endpoints = microsoft(tenant, login_base.rstrip("/"))

    def show(url: str) -> None:
        typer.echo(f"sign in as {user} at:\n{url}")
        if open_browser:
            webbrowser.open(url)

    try:
        token = asyncio.run(authorize(endpoints, client_id, secret, user, show, timeout=timeout))
        config = {k: v for k, v in {"api_base": api_base, "token_url": endpoints.token_url}.items() if v}
        add_account(ctx, user, "graph", config, {"client_id": client_id, "client_secret": secret,
                                                 "refresh_token": token["refresh_token"]}, user)
    except (ConfigError, ConnectorError) as exc:
        _fail(str(exc))
    console.print(f"linked Microsoft 365 calendar of {user}")


def _link_ews(user: str, url: str | None, username: str | None, password: str, auth: str, mailbox: str,
              receives_meetings: bool | None) -> None:
    """Check the credentials against the server (one FindItem), then store them sealed."""
    from zoomcal.connectors.ews.connector import EwsConnector
    from zoomcal.mapping.rules import DEFAULT_RULES
    from zoomcal.service import add_account

    if not url or not username:
        _fail("ews needs --url (the EWS endpoint) and --username (and the password from --password-env or a prompt)")
    ctx = _ctx()
    try:
        connector = EwsConnector(url, mailbox, DEFAULT_RULES, username=username, secret=password, auth=auth,
                                 allow_private=ctx.settings.allow_private_urls, resolve=ctx.resolver)
        asyncio.run(connector.probe())
        add_account(ctx, user, "ews", {"url": url, "auth": auth}, {"username": username, "password": password},
                    mailbox, "Exchange", receives_meetings=receives_meetings)
    except (ConfigError, ConnectorError) as exc:
        _fail(f"Exchange at {url}: {exc}")
    console.print(f"linked Exchange calendar of {mailbox} for {user} ({url})")


@account_app.command("list")
def account_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """List linked accounts (never their secrets)."""
    from zoomcal.store.models import Account, User

    ctx = _ctx()
    with ctx.db.session() as s:
        rows = [{"id": a.id, "user": u.email, "provider": a.provider, "calendar": a.external_id, "status": a.status,
                 "api_base": (a.config or {}).get("api_base") or (a.config or {}).get("url", "")}
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


async def _sync_round(ctx, user: str | None, dry_run: bool, confirm_deletes: bool, progress: Progress | None,
                      on_event=None):
    from zoomcal.service import build_pairs, close_pairs
    from zoomcal.sync.engine import SyncEngine

    pairs = build_pairs(ctx, user)
    engine = SyncEngine(ctx.db, on_event=on_event)
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
    presence: bool = typer.Option(False, "--presence", help="Also keep Zoom presence in line after each round."),
    webhooks_port: int = typer.Option(0, "--webhooks-port",
                                      help="Also receive Zoom webhooks on this port (POST /webhooks/zoom, secret "
                                           "from ZOOMCAL_ZOOM_WEBHOOK_SECRET): the owner of a change syncs at once."),
    webhooks_host: str = typer.Option("127.0.0.1", "--webhooks-host", help="Address the webhook receiver binds."),
) -> None:
    """Sync every user's Zoom meetings with the calendar that receives them, and read their other calendars and
    ICS feeds for availability (continuously unless --once or --dry-run; with --webhooks-port a Zoom notification
    syncs its owner right away)."""
    ctx = _ctx()
    driver = None
    if presence and not dry_run:
        from zoomcal.presence.service import PresenceService

        driver = PresenceService(ctx, _index(ctx))
    due_now: set[int] = set()
    state = {"first_round": True}

    def follow(change: dict) -> None:
        # the engine's change stream: the busy index takes the event, presence re-checks its owner
        if driver is not None and change.get("event_id"):
            driver.index.refresh_event(ctx.db, change["user_id"], change["event_id"])
            due_now.add(change["user_id"])

    def one_round(who: str | None) -> bool:
        try:
            with Progress(console=err, transient=True) as progress:
                results = asyncio.run(_sync_round(ctx, who, dry_run, confirm_deletes, progress, follow))
        except ConfigError as exc:
            _fail(str(exc))
        if driver is not None:
            for outcome in asyncio.run(_presence_round(driver, due_now, state["first_round"])):
                _print_outcome(outcome, verbose=False)
            due_now.clear()
            state["first_round"] = False
        if not results:
            err.print("nothing to sync: no user has a calendar linked")
        failed = False
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
        return failed

    if once or dry_run:
        raise typer.Exit(1 if one_round(user) else 0)
    inbox = _start_webhooks(ctx, webhooks_host, webhooks_port) if webhooks_port else None
    while True:
        one_round(user)
        if inbox is None:
            time.sleep(interval)
            continue
        deadline = time.monotonic() + interval
        while (woke := inbox.wait(deadline - time.monotonic())):   # notified owners sync now, the rest on time
            from zoomcal.webhooks import users_for

            for email in sorted({e for target in woke for e in users_for(ctx, target)}):
                if user is None or email == user.strip().lower():
                    one_round(email)


def _start_webhooks(ctx, host: str, port: int):
    """The Zoom webhook receiver in a background thread; returns the inbox the sync loop waits on."""
    import threading

    import uvicorn

    from zoomcal.store import repo
    from zoomcal.webhooks import WebhookInbox, make_app

    if not ctx.settings.zoom_webhook_secret:
        _fail("--webhooks-port needs the Zoom app's secret token in ZOOMCAL_ZOOM_WEBHOOK_SECRET")
    inbox = WebhookInbox()

    def rejected(message: str) -> None:
        with ctx.db.transaction() as s:
            repo.log(s, repo.get_or_create_tenant(s, "default").id, "webhook", message, level="error")

    app_ = make_app(ctx.settings.zoom_webhook_secret, inbox.put, rejected)
    server = uvicorn.Server(uvicorn.Config(app_, host=host, port=port, log_level="warning", lifespan="off"))
    threading.Thread(target=server.run, daemon=True).start()
    err.print(f"receiving Zoom webhooks at http://{host}:{port}/webhooks/zoom")
    return inbox


async def _presence_round(driver, due_now: set[int], everyone: bool):
    if everyone:
        return await driver.start()
    for user_id in due_now:
        driver.mark_due(user_id)
    return await driver.run_due()


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


# --- availability --------------------------------------------------------------------------------------------

def _when(text: str, tz: str = "UTC"):
    """An ISO date-time (offset optional: then it is local time in `tz`) or a date (local midnight)."""
    from datetime import datetime

    from zoomcal.domain.timeutil import zone

    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        _fail(f"not a date-time: {text!r} (use e.g. 2026-12-01T09:00 or 2026-12-01T09:00:00+01:00)")
    return value if value.tzinfo else value.replace(tzinfo=zone(tz))


def _user_row(ctx, email: str):
    from zoomcal.store.models import User

    with ctx.db.session() as s:
        user = s.scalar(select(User).where(User.email == email.strip().lower()))
    if user is None:
        _fail(f"no user {email}")
    return user


def _index(ctx):
    from zoomcal.availability.index import BusyIndex

    return BusyIndex.load(ctx.db)


@app.command()
def availability(
    user: str = typer.Option(..., "--user"),
    start: str = typer.Option(..., "--from", help="Start (ISO date-time; without offset: the user's zone)."),
    end: str = typer.Option(..., "--to", help="End."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """A user's busy intervals (every linked calendar and Zoom, recurrences expanded) between two times."""
    from zoomcal.availability import query
    from zoomcal.availability.index import epoch
    from zoomcal.store.models import Event

    ctx = _ctx()
    row = _user_row(ctx, user)
    with ctx.db.session() as s:
        settings = query.load(s, row.id)
        titles = dict(s.execute(select(Event.id, Event.title).where(Event.user_id == row.id)).all())
    lo, hi = epoch(_when(start, settings.timezone)), epoch(_when(end, settings.timezone))
    busy = query.describe_busy(_index(ctx), settings, lo, hi, titles)
    if as_json:
        return _print_json({"user": row.email, "timezone": settings.timezone, "busy": busy})
    table = Table("start", "end", "kind", "title", title=f"{row.email} ({settings.timezone})")
    for b in busy:
        table.add_row(b["start"], b["end"], b["kind"], b["title"])
    console.print(table)


@app.command()
def slots(
    users: str = typer.Option(..., "--users", help="Comma-separated e-mails."),
    duration: str = typer.Option("30m", "--duration", help="e.g. 30m, 1h, 1h30m"),
    start: str = typer.Option(..., "--from"),
    end: str = typer.Option(..., "--to"),
    step: str = typer.Option("15m", "--step", help="Slot starts are aligned to this."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Common free slots of several people, inside everyone's working hours and buffers (asker's zone first)."""
    from zoomcal.availability import query
    from zoomcal.availability.index import epoch

    ctx = _ctx()
    rows = [_user_row(ctx, e) for e in users.split(",") if e.strip()]
    try:
        length, stride = query.parse_duration(duration), query.parse_duration(step)
    except ConfigError as exc:
        _fail(str(exc))
    with ctx.db.session() as s:
        people = [query.load(s, r.id) for r in rows]
    tz = people[0].timezone
    lo, hi = epoch(_when(start, tz)), epoch(_when(end, tz))
    free = query.common_free(_index(ctx), people, lo, hi, length)
    found = query.slots(free, length, stride)
    payload = {"timezone": tz, "duration_minutes": length // 60,
               "free": [{"start": query.fmt_local(a, tz), "end": query.fmt_local(b, tz)} for a, b in free],
               "slots": [{"start": query.fmt_local(a, tz), "end": query.fmt_local(b, tz)} for a, b in found]}
    if as_json:
        return _print_json(payload)
    console.print(f"{len(found)} slot(s) of {length // 60} min in {tz}:")
    for slot in payload["slots"][:50]:
        console.print(f"  {slot['start']} - {slot['end']}")


@app.command("settings")
def availability_settings(
    user: str = typer.Option(..., "--user"),
    timezone: str | None = typer.Option(None, "--tz", help="IANA zone, e.g. Europe/Berlin."),
    hours: str | None = typer.Option(None, "--hours", help="e.g. 'mon-fri 09:00-17:00; sat 10:00-12:00'"),
    before: int | None = typer.Option(None, "--buffer-before", help="Minutes kept free before meetings."),
    after: int | None = typer.Option(None, "--buffer-after", help="Minutes kept free after meetings."),
    exclude: str | None = typer.Option(None, "--exclude-calendars", help="Calendar ids that do not count."),
    meetings_calendar: int | None = typer.Option(None, "--meetings-calendar",
                                                 help="Calendar id (see `user list --json`) that receives Zoom "
                                                      "meetings."),
) -> None:
    """Show or change a user's settings: zone, working hours, buffers, counted calendars, and which calendar
    receives Zoom meetings."""
    from zoomcal.availability import intervals, query
    from zoomcal.domain.timeutil import check_zone
    from zoomcal.store import repo
    from zoomcal.store.models import AvailabilitySettings, Tenant

    ctx = _ctx()
    row = _user_row(ctx, user)
    try:
        parsed_hours = query.parse_hours(hours) if hours else None
        if timezone:
            check_zone(timezone)
    except (ConfigError, InvalidItem) as exc:
        _fail(str(exc))
    with ctx.db.transaction() as s:
        if meetings_calendar is not None:
            from zoomcal.service import set_meetings_calendar

            try:
                set_meetings_calendar(s, row, meetings_calendar)
            except ConfigError as exc:
                _fail(str(exc))
            repo.audit(s, row.tenant_id, "cli", "calendar.receives_meetings", row.email,
                       {"calendar": meetings_calendar})
        current = s.get(AvailabilitySettings, row.id)
        if current is None:
            current = AvailabilitySettings(user_id=row.id, timezone="UTC", working_hours=dict(query.DEFAULT_HOURS),
                                           buffer_before_min=0, buffer_after_min=0, excluded_calendars=[])
            s.add(current)
        changed = {}
        for name, value in (("timezone", timezone), ("working_hours", parsed_hours), ("buffer_before_min", before),
                            ("buffer_after_min", after),
                            ("excluded_calendars", [int(x) for x in exclude.split(",") if x.strip()]
                             if exclude is not None else None)):
            if value is not None:
                setattr(current, name, value)
                changed[name] = value
        if changed:
            s.flush()
            from zoomcal.service import tenant_rules

            rules = tenant_rules(ctx, s.get(Tenant, row.tenant_id)).availability
            lo, hi = intervals.window(rules.window_past_days, rules.window_future_days)
            intervals.rebuild_user(s, row.tenant_id, row.id, lo, hi)
            repo.audit(s, row.tenant_id, "cli", "availability.settings", row.email, changed)
        shown = {"user": row.email, "timezone": current.timezone, "working_hours": current.working_hours,
                 "buffer_before_min": current.buffer_before_min, "buffer_after_min": current.buffer_after_min,
                 "excluded_calendars": current.excluded_calendars,
                 "meetings_calendar": next((c.id for c in repo.user_calendars(s, row.id) if c.receives_meetings),
                                           None)}
    _print_json(shown)


@app.command("book")
def book_cmd(
    user: str = typer.Option(..., "--user"),
    start: str = typer.Option(..., "--start"),
    end: str = typer.Option(..., "--end"),
    title: str = typer.Option(..., "--title"),
    attendees: str = typer.Option("", "--attendees", help="Comma-separated e-mails."),
    zoom: bool = typer.Option(False, "--zoom", help="Also create a Zoom meeting."),
    sync_now: bool = typer.Option(True, "--sync/--no-sync", help="Fan out to Zoom and the calendar right away."),
) -> None:
    """Book a time for a user unless it collides with anything (exit 3 naming the conflicting item)."""
    from zoomcal.availability.booking import book
    from zoomcal.availability.intervals import user_timezone
    from zoomcal.service import tenant_rules
    from zoomcal.store.models import Tenant

    ctx = _ctx()
    row = _user_row(ctx, user)
    with ctx.db.session() as s:
        tz = user_timezone(s, row.id)
        rules = tenant_rules(ctx, s.get(Tenant, row.tenant_id))
    try:
        result = book(ctx.db, row.id, _when(start, tz), _when(end, tz), title, rules,
                      attendees=[a.strip() for a in attendees.split(",") if a.strip()], zoom=zoom)
    except ConfigError as exc:
        _fail(str(exc))
    if not result.booked:
        c = result.conflict
        err.print(f"conflict: {c['title']!r} ({c['kind']}, {c['start']} - {c['end']}, event {c['event_id']})")
        raise typer.Exit(3)
    console.print(f"booked {result.event_id}")
    if sync_now:
        outcome = asyncio.run(_sync_round(ctx, row.email, False, False, None))
        for _pair, report in outcome:
            console.print(f"fan-out: {report.status}, {report.writes} writes")


@app.command()
def conflicts(
    user: str = typer.Option(..., "--user"),
    start: str | None = typer.Option(None, "--from"),
    end: str | None = typer.Option(None, "--to"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Overlapping events in a user's calendars (they came from outside and could not be prevented)."""
    from datetime import timedelta

    from zoomcal.availability.booking import inbound_conflicts
    from zoomcal.domain.timeutil import now_utc

    ctx = _ctx()
    row = _user_row(ctx, user)
    lo = _when(start) if start else now_utc() - timedelta(days=7)
    hi = _when(end) if end else now_utc() + timedelta(days=180)
    found = inbound_conflicts(ctx.db, row.id, lo, hi)
    if as_json:
        return _print_json(found)
    for c in found:
        console.print(f"{c['first']['title']!r} ({c['first']['start']}) overlaps {c['second']['title']!r} "
                      f"({c['second']['start']}) by {c['overlap_minutes']} min", markup=False, highlight=False)
    if not found:
        console.print("no overlapping events")


# --- presence -------------------------------------------------------------------------------------------------

presence_app = typer.Typer(help="Zoom presence from availability, by rules.", no_args_is_help=True)
app.add_typer(presence_app, name="presence")


def _print_outcome(outcome, verbose: bool) -> None:
    d = outcome.as_dict()
    action = f"write {d['write']}" + (f" for {d['dnd_minutes']} min" if d["dnd_minutes"] else "") if d["write"] \
        else "no write"
    console.print(f"[bold]{d['user']}[/]: state {d['state']}" + (f" ({d['event']!r})" if d["event"] else "") +
                  f", Zoom shows {d['zoom_status']} -> {action}: {d['reason']}", highlight=False)
    if d["error"]:
        err.print(f"  [yellow]{d['error']}[/]")
    if verbose:
        for check in d["checked"]:
            console.print(f"    rule '{check['rule']}': {check['why']}", markup=False, highlight=False)


@presence_app.command("explain")
def presence_explain(
    user: str = typer.Option(..., "--user"),
    at: str | None = typer.Option(None, "--at", help="A moment to explain (default: now)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Which rule fires for a user (now or --at), and why every earlier rule did not. Writes nothing."""
    from zoomcal.presence.service import PresenceService

    ctx = _ctx()
    row = _user_row(ctx, user)
    service = PresenceService(ctx, _index(ctx))
    outcome = asyncio.run(service.evaluate(row, _when(at) if at else None, write=False))
    if as_json:
        return _print_json(outcome.as_dict())
    _print_outcome(outcome, verbose=True)


@presence_app.command("dry-run")
def presence_dry_run(
    rules: Path = typer.Option(..., "--rules", help="A presence rules file to try."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """What a rules change would do to everyone right now (compared with the rules in force). Writes nothing."""
    from zoomcal.presence.rules import load_presence_rules
    from zoomcal.presence.service import PresenceService

    ctx = _ctx()
    try:
        proposed = load_presence_rules(rules)
    except ConfigError as exc:
        _fail(str(exc))
    service = PresenceService(ctx, _index(ctx))

    async def both():
        out = []
        for u in service.users():
            now = await service.evaluate(u, write=False)
            new = await service.evaluate(u, write=False, rules=proposed)
            out.append({"user": u.email, "state": now.situation.kind, "zoom_status": now.current,
                        "now": {"rule": now.decision.rule, "write": now.decision.status},
                        "proposed": {"rule": new.decision.rule, "write": new.decision.status,
                                     "reason": new.decision.reason},
                        "changes": (now.decision.rule, now.decision.status) != (new.decision.rule,
                                                                                  new.decision.status)})
        return out

    rows = asyncio.run(both())
    if as_json:
        return _print_json(rows)
    table = Table("user", "state", "Zoom shows", "rules in force", "proposed rules", "differs")
    for r in rows:
        table.add_row(r["user"], r["state"], str(r["zoom_status"]), f"{r['now']['rule']} -> {r['now']['write']}",
                      f"{r['proposed']['rule']} -> {r['proposed']['write']}", "yes" if r["changes"] else "")
    console.print(table)


@presence_app.command("rules")
def presence_rules(
    file: Path = typer.Argument(..., help="A presence rules file (TOML, version = 1)."),
    user: str | None = typer.Option(None, "--user", help="Only for this user (default: the whole tenant)."),
) -> None:
    """Install presence rules for the tenant, or for one user (validated first; see `presence dry-run`)."""
    import tomllib

    from zoomcal.presence.rules import load_presence_rules
    from zoomcal.store import repo
    from zoomcal.store.models import PresenceState

    try:
        load_presence_rules(file)
        data = tomllib.loads(file.read_text("utf-8"))
    except (ConfigError, OSError) as exc:
        _fail(str(exc))
    ctx = _ctx()
    with ctx.db.transaction() as s:
        if user:
            row = _user_row(ctx, user)
            state = s.get(PresenceState, row.id) or PresenceState(user_id=row.id)
            state.rules = data
            s.add(state)
            repo.audit(s, row.tenant_id, "cli", "presence.rules", row.email, {"rules": len(data.get("rule", []))})
        else:
            tenant = repo.get_or_create_tenant(s, "default")
            tenant.presence_rules = data
            repo.audit(s, tenant.id, "cli", "presence.rules", "tenant", {"rules": len(data.get("rule", []))})
    console.print(f"presence rules installed for {user or 'the tenant'}")


@presence_app.command("run")
def presence_run(
    once: bool = typer.Option(False, "--once", help="Evaluate everyone once, then exit."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Keep every user's Zoom presence in line with their calendars (writes only on change)."""
    from zoomcal.presence.service import PresenceService

    ctx = _ctx()
    service = PresenceService(ctx, _index(ctx))

    async def loop():
        outcomes = await service.start()
        while not once:
            await asyncio.sleep(5)
            service.index = _index(ctx)
            outcomes = await service.run_due()
            for outcome in outcomes:
                _print_outcome(outcome, verbose=False)
        return outcomes

    outcomes = asyncio.run(loop())
    if as_json:
        return _print_json([o.as_dict() for o in outcomes])
    for outcome in outcomes:
        _print_outcome(outcome, verbose=False)


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
    users: int = typer.Option(4, "--users", help="How many demo users to create."),
) -> None:
    """Serve the Zoom (meetings and calendar), Google Calendar, Microsoft Graph and Exchange (EWS) sandboxes; the
    first output line is JSON with URLs, users and credentials."""
    import uvicorn

    from zoomcal.sandbox.world import DEMO_USERS, SandboxWorld

    world = SandboxWorld()
    people = []
    for i in range(users):
        email, name, tz, _calendar = DEMO_USERS[i] if i < len(DEMO_USERS) else (f"user{i}@example.com", f"User {i}",
                                                                                 "UTC", "google")
        people.append(world.add_user(email, name, tz))
    sys.stdout.write(json.dumps(world.describe(f"http://{host}:{port}", people)) + "\n")
    sys.stdout.flush()
    uvicorn.run(world.app(over_network=True), host=host, port=port, log_level="warning")


def run() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    app()
