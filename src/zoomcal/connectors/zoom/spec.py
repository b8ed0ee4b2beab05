"""Zoom meetings as a provider: server-to-server OAuth (an account id) or user OAuth with rotating refresh
tokens; the link is checked by reading the Zoom user, whose id then names the meetings calendar."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from zoomcal.auth.oauth import TokenSource, ZoomAccountCredentials
from zoomcal.connectors import rest
from zoomcal.connectors.spec import (
    CONTACTS,
    MEETINGS,
    PRESENCE,
    AccountView,
    Env,
    Linked,
    LinkRequest,
    Option,
    ProviderSpec,
    SignIn,
)
from zoomcal.connectors.zoom.connector import ZoomConnector
from zoomcal.connectors.zoom.directory import FEATURES, USER_KEY, ZoomDirectory
from zoomcal.connectors.zoom.push import CHANNEL, meeting_targets

API = "https://api.zoom.us/v2"
TOKEN_URL = "https://zoom.us/oauth/token"
ACCOUNT_ID = Option("account_id", "server-to-server OAuth: the Zoom account id (then no refresh token is needed)")
ZOOM_USER = Option("zoom_user", "the Zoom user id or e-mail (default: the user's e-mail)")
CONTACT_FEATURES = Option("contact_features", "what the contacts directory reads of the account, comma-separated: "
                          f"{', '.join(FEATURES)}", default=",".join(FEATURES))
OPTIONS = (rest.CLIENT_ID, ACCOUNT_ID, ZOOM_USER, CONTACT_FEATURES, *rest.endpoint_options(API, TOKEN_URL))
SECRETS = ("client_id", "client_secret", "refresh_token", "account_id")


def secrets(options: Mapping[str, str]) -> tuple[Option, ...]:
    """Server-to-server apps need the client secret; user OAuth also a refresh token."""
    return (rest.CLIENT_SECRET,) if options.get("account_id") else (rest.CLIENT_SECRET, rest.REFRESH_TOKEN)


def sign_in(options: Mapping[str, str]) -> SignIn:
    """User OAuth by signing in at Zoom: the sign-in page sits beside the token endpoint (zoom.us/oauth/authorize);
    the scopes are those the app is configured with; the client goes in HTTP Basic auth."""
    token_url = options.get("token_url") or TOKEN_URL
    base, _, _last = token_url.rstrip("/").rpartition("/")
    return SignIn(f"{base}/authorize", token_url, "", client_auth="basic")


def grant(view: AccountView, _env: Env) -> TokenSource:
    """Zoom's token endpoint takes the client in HTTP Basic auth; user refresh tokens rotate on every use."""
    if view.secret.get("account_id"):
        return ZoomAccountCredentials(view.option("token_url", TOKEN_URL), view.secret["account_id"],
                                      view.secret["client_id"], view.secret["client_secret"])
    return rest.refresh_grant(view, TOKEN_URL, basic_auth=True)


async def _user(view: AccountView, env: Env) -> dict:
    return await rest.first_read(view, env, API, grant(view, env), f"users/{quote(view.calendar, safe='@')}") or {}


LICENCES = {1: "basic", 2: "licensed", 4: "unassigned", 99: "none"}
# per operation zoomcal makes, the scopes any one of which allows it (meetings-api.json / users-api.json): the
# classic scopes, then the granular ones
SCOPES = {
    "read": (("meeting:read", "meeting:read:admin", "meeting:read:list_meetings", "meeting:read:list_meetings:admin"),
             ("meeting:read", "meeting:read:admin", "meeting:read:meeting", "meeting:read:meeting:admin")),
    "write": (("meeting:write", "meeting:write:admin", "meeting:write:meeting", "meeting:write:meeting:admin"),
              ("meeting:write", "meeting:write:admin", "meeting:update:meeting", "meeting:update:meeting:admin"),
              ("meeting:write", "meeting:write:admin", "meeting:delete:meeting", "meeting:delete:meeting:admin")),
    "profile": (("user:read", "user:write", "user:read:admin", "user:write:admin", "user_profile", "user_info:read",
                 "user:read:user", "user:read:user:admin"),),
    # presence is read before it is set (a status set by hand shows there), then set
    "presence": (("user:read", "user:read:admin", "user:read:presence_status", "user:read:presence_status:admin"),
                 ("user:write", "user:write:admin", "user:update:presence_status",
                  "user:update:presence_status:admin")),
}


async def check(view: AccountView, env: Env) -> dict[str, Any]:
    """The user's record, read as a link reads it: what the account is (e-mail, zone, role, licence)."""
    user = await _user(view, env)
    return {"email": str(user.get("email") or ""), "timezone": str(user.get("timezone") or ""),
            "role": str(user.get("role_name") or ""), "licence": LICENCES.get(user.get("type"), str(user.get("type")))}


async def link(request: LinkRequest, env: Env) -> Linked:
    view = rest.request_view(request, request.get("zoom_user", request.user_email),
                             ("api_base", "token_url", "contact_features"),
                             SECRETS)
    user = await _user(view, env)
    return Linked(str(user.get("id") or view.calendar), "Zoom meetings", view.config, view.secret)


def connector(view: AccountView, env: Env) -> ZoomConnector:
    return ZoomConnector(rest.api_client(view, env, API, env.share_tokens(grant(view, env))), view.calendar,
                         env.rules)


def directory(view: AccountView, env: Env) -> ZoomDirectory:
    """The account's users as a contact source. Every person linked through one server-to-server app lists the
    same account, so they share one directory key (and one listing)."""
    wanted = tuple(f.strip() for f in view.option("contact_features", CONTACT_FEATURES.default).split(",")
                   if f.strip())
    key = f"zoom:{view.secret.get('account_id')}" if view.secret.get("account_id") else f"{USER_KEY}{view.id}"
    return ZoomDirectory(rest.api_client(view, env, API, env.share_tokens(grant(view, env))), wanted, key, env.clock)


async def revoke(view: AccountView, env: Env) -> str:
    """Zoom revokes a user's authorization of the app by one of its access tokens."""
    if not view.secret.get("refresh_token"):
        return "server-to-server app: no per-user grant to revoke"
    api = rest.api_client(view, env, API, env.share_tokens(grant(view, env)))
    try:
        token = await api.tokens.token(api.client)
    finally:
        await api.aclose()
    return await rest.revoke(rest.revoke_url(view.option("token_url", TOKEN_URL)), token, env,
                             (view.secret["client_id"], view.secret["client_secret"]))


SPEC = ProviderSpec(
    key="zoom", label="Zoom", roles=frozenset({MEETINGS, PRESENCE, CONTACTS}),
    linking="server-to-server OAuth (account id) or user OAuth (a refresh token, or signing in at Zoom); client secret",
    options=OPTIONS, secrets=secrets, link=link, check=check, connector=connector, grant=grant, revoke=revoke,
    sign_in=sign_in,
    capabilities=ZoomConnector.capabilities, push=CHANNEL, push_targets=meeting_targets("zoom"),
    default_label="Zoom meetings", contacts=directory, scopes=SCOPES)
