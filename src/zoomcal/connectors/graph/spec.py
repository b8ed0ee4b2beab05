"""Microsoft 365 (Graph) as a provider: user OAuth, by signing in (authorization code + PKCE) or with a refresh
token; public clients have no secret. The link is checked by reading one page of the calendar's change feed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from zoomcal.auth.oauth import TokenSource
from zoomcal.availability.intervals import window
from zoomcal.connectors import rest
from zoomcal.connectors.graph.connector import GraphConnector
from zoomcal.connectors.graph.push import CHANNEL
from zoomcal.connectors.spec import CALENDAR, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec, SignIn
from zoomcal.domain.timeutil import fmt_instant

API = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
TOKEN_URL = f"{LOGIN}/common/oauth2/v2.0/token"
SCOPE = "offline_access Calendars.ReadWrite User.Read"
SECRETS = ("client_id", "client_secret", "refresh_token")
# the delegated permissions any one of which allows reading, and writing, a calendar (.Shared: another's mailbox)
SCOPES = {
    "read": (("Calendars.Read", "Calendars.ReadWrite", "Calendars.Read.Shared", "Calendars.ReadWrite.Shared"),),
    "write": (("Calendars.ReadWrite", "Calendars.ReadWrite.Shared"),),
}
OPTIONS = (rest.CLIENT_ID,
           Option("mailbox", "the mailbox (default: the user's e-mail)"),
           Option("calendar_id", "the calendar id (default: the mailbox's default calendar)"),
           Option("tenant", "the Microsoft Entra tenant for signing in (id, domain or common)", default="common"),
           Option("login_base", "the sign-in service", default=LOGIN),
           *rest.endpoint_options(API, TOKEN_URL))


def secrets(_options: Mapping[str, str]) -> tuple[Option, ...]:
    return (Option("client_secret", "the client secret (none for a public client: PKCE only)", secret=True),
            rest.REFRESH_TOKEN)


def sign_in(options: Mapping[str, str]) -> SignIn:
    base = (options.get("login_base") or LOGIN).rstrip("/")
    tenant = options.get("tenant") or "common"
    return SignIn(f"{base}/{tenant}/oauth2/v2.0/authorize", f"{base}/{tenant}/oauth2/v2.0/token", SCOPE)


def grant(view: AccountView, _env: Env) -> TokenSource:
    return rest.refresh_grant(view, TOKEN_URL, basic_auth=False)


def _parts(remote: str) -> tuple[str, str]:
    mailbox, _, calendar = remote.partition("/")
    return mailbox, calendar


def _base(remote: str) -> str:
    mailbox, calendar = _parts(remote)
    return f"users/{quote(mailbox, safe='@')}/" + (f"calendars/{quote(calendar, safe='')}" if calendar else "calendar")


def _feed(view: AccountView) -> tuple[str, dict[str, Any], dict[str, str]]:
    """The first page of the calendar's change feed, one item long: (path, parameters, headers)."""
    lo, hi = window(0, 1)
    return (f"{_base(view.calendar)}/calendarView/delta",
            {"startDateTime": fmt_instant(lo)[:-1], "endDateTime": fmt_instant(hi)[:-1]},
            {"Prefer": "odata.maxpagesize=1"})


async def check(view: AccountView, env: Env) -> dict[str, Any]:
    """One page of the change feed as a link reads it, and the calendar itself: whose it is (`owner`) and whether
    the account may write to it (`canEdit`)."""
    async with rest.reading(view, env, API, grant(view, env)) as api:
        path, params, headers = _feed(view)
        await api.json("GET", path, params=params, headers=headers)
        calendar = await api.json("GET", _base(view.calendar), params={"$select": "owner,canEdit"}) or {}
    can_edit = calendar.get("canEdit")
    return {"email": str((calendar.get("owner") or {}).get("address") or "").lower(),
            "access": "" if can_edit is None else ("can edit" if can_edit else "read only"),
            "writable": can_edit if isinstance(can_edit, bool) else None}


async def link(request: LinkRequest, env: Env) -> Linked:
    remote = f"{request.get('mailbox', request.user_email)}/{request.get('calendar_id')}".rstrip("/")
    view = rest.request_view(request, remote, ("api_base", "token_url"), SECRETS)
    path, params, headers = _feed(view)
    await rest.first_read(view, env, API, grant(view, env), path, params, headers=headers)
    return Linked(remote, "Outlook", view.config, view.secret)


def connector(view: AccountView, env: Env) -> GraphConnector:
    avail = env.rules.availability
    mailbox, calendar = _parts(view.calendar)
    return GraphConnector(rest.api_client(view, env, API, env.share_tokens(grant(view, env))), mailbox, calendar,
                          env.rules, window(avail.window_past_days, avail.window_future_days))


SPEC = ProviderSpec(
    key="graph", label="Microsoft 365", roles=frozenset({CALENDAR}),
    linking="user OAuth: sign in (authorization code + PKCE) or a refresh token; a client secret unless public",
    options=OPTIONS, secrets=secrets, link=link, check=check, connector=connector, grant=grant, sign_in=sign_in,
    capabilities=GraphConnector.capabilities, push=CHANNEL, default_label="Outlook", scopes=SCOPES)
