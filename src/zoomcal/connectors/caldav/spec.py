"""CalDAV (Nextcloud, Fastmail, iCloud, Radicale, ...) as a provider: a server URL, a user name and a password;
the link discovers the user's calendars (which proves URL and credentials) and keeps the one asked for."""

from __future__ import annotations

from zoomcal.connectors.caldav.connector import CalDavConnector, discover
from zoomcal.connectors.spec import CALENDAR, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec
from zoomcal.errors import ConfigError
from zoomcal.net import check_url

OPTIONS = (Option("url", "the server or calendar URL", required=True),
           Option("username", "the account name", required=True),
           Option("calendar", "which calendar, by name (default: the first one found)"))
PASSWORD = Option("password", "the password", required=True, secret=True)


async def link(request: LinkRequest, env: Env) -> Linked:
    url, wanted = request.get("url"), request.get("calendar")
    check_url(url, env.allow_private, env.resolver)
    found = await discover(url, request.get("username"), request.get("password"), allow_private=env.allow_private,
                           resolve=env.resolver)
    chosen = [c for c in found if not wanted or c[1] == wanted]
    if not chosen:
        raise ConfigError(f"no calendar {wanted!r} at {url}; found: {', '.join(repr(c[1]) for c in found) or 'none'}")
    return Linked(chosen[0][0], chosen[0][1], {},
                  {"username": request.get("username"), "password": request.get("password")})


async def check(view: AccountView, env: Env) -> None:
    """The calendar answers a depth-0 PROPFIND with these credentials."""
    probe = connector(view, env)
    try:
        await probe._request("PROPFIND", probe.url, headers={"Depth": "0"})
    finally:
        await probe.aclose()


def connector(view: AccountView, env: Env) -> CalDavConnector:
    return CalDavConnector(view.calendar, env.rules, username=view.secret.get("username"),
                           password=view.secret.get("password"), allow_private=env.allow_private,
                           resolve=env.resolver, timeout=env.timeout, provider=env.provider)


SPEC = ProviderSpec(
    key="caldav", label="CalDAV", roles=frozenset({CALENDAR}), linking="server URL, user name and password",
    options=OPTIONS, secrets=lambda _options: (PASSWORD,), link=link, check=check, connector=connector,
    capabilities=CalDavConnector.capabilities, default_label="CalDAV")
