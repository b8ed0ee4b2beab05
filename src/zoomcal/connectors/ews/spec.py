"""Exchange on-premises (EWS) as a provider: the EWS URL the admin gives, a user name and a password (or an
OAuth access token); the link is checked with one FindItem on the mailbox's calendar. The connector (and
exchangelib behind it) is loaded when an Exchange account is used, not when the registry names the provider."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zoomcal.connectors.base import Capabilities
from zoomcal.connectors.spec import CALENDAR, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec
from zoomcal.errors import ConfigError

if TYPE_CHECKING:
    from zoomcal.connectors.ews.connector import EwsConnector

AUTH_TYPES = ("auto", "basic", "ntlm", "oauth")      # auto: as the server's 401 offers
CAPABILITIES = Capabilities(recurrence=True, occurrence_edits=True, incremental=True, max_page_size=100)

OPTIONS = (Option("url", "the EWS endpoint, https://host/EWS/Exchange.asmx", required=True),
           Option("username", "the account name", required=True),
           Option("auth", f"authentication: {' | '.join(AUTH_TYPES)} (auto: what the server's 401 offers)",
                  default="auto"),
           Option("mailbox", "the mailbox (default: the user's e-mail)"))
PASSWORD = Option("password", "the password (--auth oauth: the access token)", required=True, secret=True)


def connector(view: AccountView, env: Env) -> EwsConnector:
    from zoomcal.connectors.ews.connector import EwsConnector

    return EwsConnector(view.config["url"], view.calendar, env.rules, username=view.secret.get("username"),
                        secret=view.secret.get("password"), auth=view.option("auth", "auto"),
                        allow_private=env.allow_private, resolve=env.resolver)


async def link(request: LinkRequest, env: Env) -> Linked:
    auth = request.get("auth", "auto")
    if auth not in AUTH_TYPES:
        raise ConfigError(f"unknown EWS authentication {auth!r}; one of {', '.join(AUTH_TYPES)}")
    view = AccountView(0, {"url": request.get("url"), "auth": auth},
                       {"username": request.get("username"), "password": request.get("password")},
                       request.get("mailbox", request.user_email), request.user_email)
    await check(view, env)
    return Linked(view.calendar, "Exchange", view.config, view.secret)


async def check(view: AccountView, env: Env) -> None:
    probe = connector(view, env)
    try:
        await probe.probe()
    finally:
        await probe.aclose()


SPEC = ProviderSpec(
    key="ews", label="Exchange", roles=frozenset({CALENDAR}),
    linking="EWS URL, user name and password (basic / NTLM) or an OAuth access token",
    options=OPTIONS, secrets=lambda _options: (PASSWORD,), link=link, check=check, connector=connector,
    capabilities=CAPABILITIES, default_label="Exchange")
