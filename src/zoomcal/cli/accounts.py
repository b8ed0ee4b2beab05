"""`zoomcal account ...`: link, sign in, re-link, unlink, check and list accounts. The flags are gathered into the
provider's options and secrets; which ones a provider takes is the provider's own business (see
`zoomcal account providers`)."""

from __future__ import annotations

import webbrowser
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from zoomcal.cli.common import (
    as_dict,
    ask_secret,
    console,
    context,
    env_secret,
    fail,
    handled,
    print_json,
    run_async,
)
from zoomcal.lazy import lazy

accounts = lazy("zoomcal.app.accounts")

if TYPE_CHECKING:
    from zoomcal.app.context import AppContext

account_app = typer.Typer(help="Linked accounts: Zoom, Google Calendar, Microsoft 365, Exchange, CalDAV, ICS feeds, "
                               "Zoom Calendar (secrets are sealed, never shown).", no_args_is_help=True)

SECRET_FLAGS = {"client_secret": "--client-secret-env", "refresh_token": "--refresh-token-env",
                "password": "--password-env"}


def _pairs(values: list[str], what: str) -> dict[str, str]:
    out = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip():
            fail(f"{what} {value!r} is not NAME=VALUE")
        out[name.strip().replace("-", "_")] = rest
    return out


def _secrets(ctx: AppContext, provider: str, options: dict[str, str], given: dict[str, str | None],
             extra: dict[str, str]) -> dict[str, str]:
    """Each secret the provider takes with these options: from its environment variable, else a prompt."""
    out = {}
    for option in accounts.needed_secrets(ctx, provider, options):
        flag = SECRET_FLAGS.get(option.name, f"--secret-env {option.name}=VAR")
        var = given.get(option.name) or extra.get(option.name)
        out[option.name] = env_secret(var, option.name.replace("_", " ")) if var else \
            ask_secret(option.name, flag, option.required)
    for name, var in list(given.items()) + list(extra.items()):
        if var and name not in out:
            out[name] = env_secret(var, name.replace("_", " "))   # the provider will say it takes no such secret
    return out


def _options(**flags: str | None) -> dict[str, str]:
    return {name: value for name, value in flags.items() if value not in (None, "")}


PROVIDER_HELP = "The provider (see `zoomcal account providers`)."


@account_app.command("add")
@handled
def account_add(
    provider: str = typer.Argument(..., help=PROVIDER_HELP),
    user: str = typer.Option(..., "--user", help="E-mail of the zoomcal user."),
    client_id: str | None = typer.Option(None, "--client-id", help="OAuth client id."),
    url: str | None = typer.Option(None, "--url", help="A feed's URL or file path; a CalDAV server or calendar URL; "
                                                       "a CardDAV server or address book URL; the EWS endpoint "
                                                       "(https://host/EWS/Exchange.asmx)."),
    username: str | None = typer.Option(None, "--username", help="The account name (CalDAV, CardDAV, Exchange)."),
    password_env: str | None = typer.Option(None, "--password-env",
                                            help="Env var with the password (Exchange with --auth oauth: the access "
                                                 "token)."),
    auth: str | None = typer.Option(None, "--auth", help="Exchange: auto (what the server offers) | basic | ntlm | "
                                                         "oauth."),
    calendar_name: str | None = typer.Option(None, "--calendar", help="CalDAV: which calendar, by name (default: "
                                                                      "the first)."),
    client_secret_env: str | None = typer.Option(None, "--client-secret-env", help="Env var with the client secret."),
    refresh_token_env: str | None = typer.Option(None, "--refresh-token-env",
                                                 help="Env var with a user OAuth refresh token."),
    account_id: str | None = typer.Option(None, "--account-id",
                                          help="Zoom server-to-server: the Zoom account id (no refresh token needed)."),
    zoom_user: str | None = typer.Option(None, "--zoom-user",
                                         help="Zoom user id or e-mail (default: the user's e-mail)."),
    calendar_id: str | None = typer.Option(None, "--calendar-id", help="Which calendar, by id (default: the primary "
                                                                       "or default one)."),
    mailbox: str | None = typer.Option(None, "--mailbox", help="Microsoft 365, Exchange: the mailbox (default: the "
                                                               "user's e-mail)."),
    timezone: str | None = typer.Option(None, "--timezone", help="ICS: zone for floating times."),
    api_base: str | None = typer.Option(None, "--api-base", help="API base URL (default: the vendor's)."),
    token_url: str | None = typer.Option(None, "--token-url", help="OAuth token URL (default: the vendor's)."),
    option: list[str] = typer.Option([], "--option", "-o", help="Any other provider option, NAME=VALUE."),
    secret_env: list[str] = typer.Option([], "--secret-env", help="Any other secret, NAME=ENVVAR."),
    receives_meetings: bool | None = typer.Option(None, "--receives-meetings/--no-meetings",
                                                  help="Put Zoom meetings in this calendar (default: only the user's "
                                                       "first calendar gets them)."),
) -> None:
    """Link an account to a user. The provider is asked first (a token and one real read), so wrong credentials or
    an unreachable URL are refused now. Secrets come from environment variables or a prompt, never from the
    command line."""
    ctx = context()
    options = {**_options(client_id=client_id, url=url, username=username, auth=auth, calendar=calendar_name,
                          account_id=account_id, zoom_user=zoom_user, calendar_id=calendar_id, mailbox=mailbox,
                          timezone=timezone, api_base=api_base, token_url=token_url), **_pairs(option, "--option")}
    secrets = _secrets(ctx, provider, options, {"client_secret": client_secret_env,
                                                "refresh_token": refresh_token_env, "password": password_env},
                       _pairs(secret_env, "--secret-env"))
    linked = run_async(ctx, lambda: accounts.link(ctx, user, provider, options, secrets,
                                                  receives_meetings=receives_meetings))
    if linked.calendar_id is None:      # a contact source: no calendar
        console.print(f"linked {linked.label} contact source for {linked.user} ({linked.calendar}), account "
                      f"{linked.id}; `zoomcal contacts sync` reads it now", highlight=False)
        return
    console.print(f"linked {linked.label} calendar {linked.name!r} for {linked.user} ({linked.calendar}), account "
                  f"{linked.id}" + (", receives the Zoom meetings" if linked.receives_meetings else ""),
                  highlight=False)


@account_app.command("connect")
@handled
def account_connect(
    provider: str = typer.Argument(..., help="A provider linked by signing in: graph, graph-contacts (Microsoft "
                                             "365), google, zoom."),
    user: str = typer.Option(..., "--user", help="E-mail of the zoomcal user (also the sign-in hint)."),
    client_id: str = typer.Option(..., "--client-id", help="The app registration's client id."),
    client_secret_env: str | None = typer.Option(None, "--client-secret-env",
                                                 help="Env var with the client secret (none: a public client, "
                                                      "PKCE only)."),
    tenant: str | None = typer.Option(None, "--tenant-id", "--ms-tenant",
                                      help="Microsoft Entra tenant (id, domain, or common)."),
    login_base: str | None = typer.Option(None, "--login-base", help="Sign-in service base URL."),
    api_base: str | None = typer.Option(None, "--api-base", help="API base URL (default: the vendor's)."),
    token_url: str | None = typer.Option(None, "--token-url", help="OAuth token URL (default: the vendor's)."),
    auth_url: str | None = typer.Option(None, "--auth-url", help="Google's sign-in page URL (default: Google's)."),
    calendar_id: str | None = typer.Option(None, "--calendar-id", help="Which calendar (default: the default one)."),
    open_browser: bool = typer.Option(True, "--browser/--no-browser", help="Open the sign-in page in a browser."),
    timeout: float = typer.Option(300.0, "--timeout", help="Seconds to wait for the sign-in."),
) -> None:
    """Link a calendar or contact source by signing in (OAuth authorization code with PKCE, loopback redirect).
    Only the refresh token is stored, sealed."""
    ctx = context()
    options = _options(client_id=client_id, tenant=tenant, login_base=login_base, api_base=api_base,
                       token_url=token_url, auth_url=auth_url, calendar_id=calendar_id)
    secrets = {"client_secret": env_secret(client_secret_env, "client secret")} if client_secret_env else {}

    def show(address: str) -> None:
        typer.echo(f"sign in as {user} at:\n{address}")
        if open_browser:
            webbrowser.open(address)

    linked = run_async(ctx, lambda: accounts.sign_in(ctx, user, provider, options, secrets, show, timeout=timeout))
    what = "calendar" if linked.calendar_id is not None else "contact source"
    console.print(f"linked {linked.label} {what} of {linked.user} (account {linked.id})", highlight=False)


@account_app.command("relink")
@handled
def account_relink(
    account: int = typer.Argument(..., help="The account id (see `zoomcal account list`)."),
    client_secret_env: str | None = typer.Option(None, "--client-secret-env", help="Env var with a new client secret."),
    refresh_token_env: str | None = typer.Option(None, "--refresh-token-env", help="Env var with a new refresh token."),
    password_env: str | None = typer.Option(None, "--password-env", help="Env var with a new password."),
    option: list[str] = typer.Option([], "--option", "-o", help="A changed option, NAME=VALUE (e.g. api_base=...)."),
    secret_env: list[str] = typer.Option([], "--secret-env", help="Any other new secret, NAME=ENVVAR."),
) -> None:
    """New credentials for a linked calendar (after they expired or were revoked): checked first, then stored."""
    ctx = context()
    secrets = {name: env_secret(var, name.replace("_", " ")) for name, var in
               {"client_secret": client_secret_env, "refresh_token": refresh_token_env, "password": password_env,
                **_pairs(secret_env, "--secret-env")}.items() if var}
    done = run_async(ctx, lambda: accounts.relink(ctx, account, _pairs(option, "--option"), secrets))
    console.print(f"account {done.id} ({done.label}, {done.user}) linked again: {done.status}", highlight=False)


@account_app.command("unlink")
@handled
def account_unlink(account: int = typer.Argument(..., help="The account id (see `zoomcal account list`)."),
                   yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation.")) -> None:
    """Unlink an account: its grant is revoked where the provider allows, and zoomcal forgets the calendar (nothing
    is deleted from it)."""
    if not yes:
        typer.confirm(f"unlink account {account}?", abort=True)
    ctx = context()
    done = run_async(ctx, lambda: accounts.unlink(ctx, account))
    console.print(f"unlinked account {done.account_id} ({done.provider}): {done.revoked}", highlight=False)


@account_app.command("list")
@handled
def account_list(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text."),
                 user: str | None = typer.Option(None, "--user", help="Only this user's accounts.")) -> None:
    """List linked accounts (never their secrets)."""
    rows = accounts.list_accounts(context(), user)
    _show(rows, as_json)


def _show(rows: list[accounts.AccountInfo], as_json: bool) -> None:
    if as_json:
        return print_json(as_dict(rows))
    table = Table("id", "user", "provider", "calendar", "role", "granted for", "status")
    for r in rows:
        table.add_row(str(r.id), r.user, r.provider, f"{r.name} ({r.calendar}, #{r.calendar_id})",
                      r.role + (" *" if r.receives_meetings else ""),
                      ", ".join(n["feature"] + ("" if n["met"] else " NOT") for n in r.needs) or "?",
                      r.status + (f": {r.status_reason}" if r.status_reason else ""))
    table.caption = "* receives the Zoom meetings; granted for: what the scopes granted allow (? not known)"
    console.print(table)


@account_app.command("check")
@handled
def account_check(account: int | None = typer.Argument(None, help="One account (default: all)."),
                  as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """Ask each account's provider for the read a link makes: refused credentials mark the account as needing to
    be linked again, an unreachable provider as degraded."""
    ctx = context()
    rows = run_async(ctx, lambda: accounts.health(ctx, account))
    _show(rows, as_json)
    if any(r.status != "ok" for r in rows):
        raise typer.Exit(1)


@account_app.command("providers")
@handled
def account_providers(as_json: bool = typer.Option(False, "--json", help="Print JSON instead of text.")) -> None:
    """The providers this zoomcal knows, what they are for and the options each takes."""
    rows = accounts.providers(context())
    if as_json:
        return print_json(as_dict(rows))
    for p in rows:
        console.print(f"[bold]{p.key}[/] — {p.label}: {', '.join(p.roles)}; {p.linking}", highlight=False)
        for o in p.options:
            console.print(f"    {o['name']}{' (required)' if o['required'] else ''}: {o['help']}", highlight=False)
