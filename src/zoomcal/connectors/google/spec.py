"""Google Calendar as a provider: user OAuth (client id and secret, refresh token); the link is checked by
reading one event of the calendar, whose listing also names the calendar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from zoomcal.auth.oauth import TokenSource
from zoomcal.connectors import rest
from zoomcal.connectors.google.connector import GoogleConnector
from zoomcal.connectors.google.push import CHANNEL
from zoomcal.connectors.spec import CALENDAR, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec, SignIn
from zoomcal.errors import AuthExpired

API = "https://www.googleapis.com/calendar/v3"
TOKEN_URL = "https://oauth2.googleapis.com/token"
AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
SCOPE = "https://www.googleapis.com/auth/calendar"
SECRETS = ("client_id", "client_secret", "refresh_token")
_AUTH = "https://www.googleapis.com/auth/"
# the scopes any one of which allows reading a calendar's events in full, and writing them (calendar.v3.json lists
# each method's scopes; the free/busy and public-only ones read too little, app-created calendars are not linked)
SCOPES = {
    "read": (tuple(_AUTH + s for s in ("calendar", "calendar.readonly", "calendar.events", "calendar.events.readonly",
                                       "calendar.events.owned", "calendar.events.owned.readonly")),),
    "write": (tuple(_AUTH + s for s in ("calendar", "calendar.events", "calendar.events.owned")),),
}


def sign_in(options: Mapping[str, str]) -> SignIn:
    """Signing in at Google: a refresh token comes only with offline access, and again only with consent asked."""
    return SignIn(options.get("auth_url") or AUTH_URL, options.get("token_url") or TOKEN_URL, SCOPE,
                  extra=(("access_type", "offline"), ("prompt", "consent")))


def grant(view: AccountView, _env: Env) -> TokenSource:
    return rest.refresh_grant(view, TOKEN_URL, basic_auth=False)


def _events(view: AccountView) -> tuple[str, dict[str, Any]]:
    return f"calendars/{quote(view.calendar, safe='@')}/events", {"maxResults": 1}


async def _page(view: AccountView, env: Env) -> dict:
    return await rest.first_read(view, env, API, grant(view, env), *_events(view)) or {}


async def check(view: AccountView, env: Env) -> dict[str, Any]:
    """One event read as a link reads it, and the calendar itself: its id (a primary calendar's is the account's
    address), zone and what the account may do with it (`accessRole`: owner and writer may write)."""
    async with rest.reading(view, env, API, grant(view, env)) as api:
        path, params = _events(view)
        page = await api.json("GET", path, params=params) or {}
        try:
            calendar = await api.json("GET", f"calendars/{quote(view.calendar, safe='@')}") or {}
        except AuthExpired:     # the events were just read: a grant for events only (calendar.events), which
            calendar = {}       # calendars.get does not take; the calendar's own id stays unknown
    ident = str(calendar.get("id") or "")
    access = str(page.get("accessRole") or "")
    personal = "@" in ident and view.calendar in ("primary", ident) and not ident.endswith(".calendar.google.com")
    return {"email": ident if personal else "",       # a shared calendar's id (…@group.calendar.google.com) is none
            "timezone": str(calendar.get("timeZone") or page.get("timeZone") or ""), "access": access,
            "writable": access in ("owner", "writer") if access else None}


async def link(request: LinkRequest, env: Env) -> Linked:
    view = rest.request_view(request, request.get("calendar_id", "primary"), ("api_base", "token_url"), SECRETS)
    page = await _page(view, env)
    return Linked(view.calendar, str(page.get("summary") or "Google Calendar"), view.config, view.secret)


def connector(view: AccountView, env: Env) -> GoogleConnector:
    return GoogleConnector(rest.api_client(view, env, API, env.share_tokens(grant(view, env))), view.calendar,
                           env.rules)


async def revoke(view: AccountView, env: Env) -> str:
    return await rest.revoke(rest.revoke_url(view.option("token_url", TOKEN_URL)), view.secret["refresh_token"],
                             env)


SPEC = ProviderSpec(
    key="google", label="Google", roles=frozenset({CALENDAR}),
    linking="user OAuth: client id and secret, and a refresh token or signing in at Google",
    options=(rest.CLIENT_ID, Option("calendar_id", "the calendar id", default="primary"),
             *rest.endpoint_options(API, TOKEN_URL), Option("auth_url", "OAuth sign-in page URL", default=AUTH_URL)),
    secrets=lambda _options: (rest.CLIENT_SECRET, rest.REFRESH_TOKEN), link=link, check=check, connector=connector,
    grant=grant, revoke=revoke, sign_in=sign_in, capabilities=GoogleConnector.capabilities, push=CHANNEL,
    default_label="Google Calendar", scopes=SCOPES)
