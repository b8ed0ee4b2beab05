"""CalDAV (Nextcloud, Fastmail, iCloud, Radicale, ...) as a provider: a server URL, a user name and a password;
the link discovers the user's calendars (which proves URL and credentials) and keeps the one asked for."""

from __future__ import annotations

from zoomcal.connectors.caldav.carddav import CardDavSource
from zoomcal.connectors.caldav.connector import CalDavConnector, discover
from zoomcal.connectors.spec import (
    CALENDAR,
    CONTACTS,
    CONTACTS_ONLY,
    AccountView,
    Env,
    Linked,
    LinkRequest,
    Option,
    ProviderSpec,
    no_calendar,
)
from zoomcal.errors import ConfigError
from zoomcal.net import check_url

OPTIONS = (Option("url", "the server or calendar URL", required=True),
           Option("username", "the account name", required=True),
           Option("calendar", "which calendar, by name (default: the first one found)"))
PASSWORD = Option("password", "the password", required=True, secret=True)


def _choose(found: list[tuple[str, str]], url: str, wanted: str) -> list[tuple[str, str]]:
    """The collections a link may take: the one asked for by name; else the one the URL itself names; else
    every one found (the first is taken)."""
    if wanted:
        return [c for c in found if c[1] == wanted]
    own = [c for c in found if c[0].rstrip("/") == url.rstrip("/")]
    return own or found


async def link(request: LinkRequest, env: Env) -> Linked:
    url, wanted = request.get("url"), request.get("calendar")
    check_url(url, env.allow_private, env.resolver)
    found = await discover(url, request.get("username"), request.get("password"), allow_private=env.allow_private,
                           resolve=env.resolver)
    chosen = _choose(found, url, wanted)
    if not chosen:
        raise ConfigError(f"no calendar {wanted!r} at {url}; found: {', '.join(repr(c[1]) for c in found) or 'none'}")
    return Linked(chosen[0][0], chosen[0][1], {},
                  {"username": request.get("username"), "password": request.get("password")})


async def _answers(probe: CalDavConnector | CardDavSource) -> None:
    """The collection answers a depth-0 PROPFIND with these credentials."""
    try:
        await probe._request("PROPFIND", probe.url, headers={"Depth": "0"})
    finally:
        await probe.aclose()


async def check(view: AccountView, env: Env) -> None:
    await _answers(connector(view, env))


def connector(view: AccountView, env: Env) -> CalDavConnector:
    return CalDavConnector(view.calendar, env.rules, username=view.secret.get("username"),
                           password=view.secret.get("password"), allow_private=env.allow_private,
                           resolve=env.resolver, timeout=env.timeout, provider=env.provider)


SPEC = ProviderSpec(
    key="caldav", label="CalDAV", roles=frozenset({CALENDAR}), linking="server URL, user name and password",
    options=OPTIONS, secrets=lambda _options: (PASSWORD,), link=link, check=check, connector=connector,
    capabilities=CalDavConnector.capabilities, default_label="CalDAV")


BOOK_OPTIONS = (Option("url", "the server or address book URL", required=True),
                Option("username", "the account name", required=True),
                Option("addressbook", "which address book, by name (default: the first one found)"))


async def link_book(request: LinkRequest, env: Env) -> Linked:
    url, wanted = request.get("url"), request.get("addressbook")
    check_url(url, env.allow_private, env.resolver)
    found = await discover(url, request.get("username"), request.get("password"), allow_private=env.allow_private,
                           resolve=env.resolver, kind="carddav")
    chosen = _choose(found, url, wanted)
    if not chosen:
        raise ConfigError(f"no address book {wanted!r} at {url}; found: "
                          f"{', '.join(repr(c[1]) for c in found) or 'none'}")
    return Linked(chosen[0][0], chosen[0][1], {},
                  {"username": request.get("username"), "password": request.get("password")})


def address_book(view: AccountView, env: Env) -> CardDavSource:
    return CardDavSource(view.calendar, username=view.secret.get("username"), password=view.secret.get("password"),
                         allow_private=env.allow_private, resolve=env.resolver, timeout=env.timeout,
                         provider=env.provider)


async def check_book(view: AccountView, env: Env) -> None:
    await _answers(address_book(view, env))


CARDDAV_SPEC = ProviderSpec(
    key="carddav", label="CardDAV", roles=frozenset({CONTACTS}), linking="server URL, user name and password",
    options=BOOK_OPTIONS, secrets=lambda _options: (PASSWORD,), link=link_book, check=check_book,
    connector=no_calendar, capabilities=CONTACTS_ONLY, contacts=address_book, default_label="Address book")
SPECS = (SPEC, CARDDAV_SPEC)
