"""Exchange on-premises (EWS) as a provider: the EWS URL the admin gives, a user name and a password (or an
OAuth access token); the link is checked with one FindItem on the mailbox's calendar."""

from __future__ import annotations

from zoomcal.connectors.ews.connector import AUTH_TYPES, EwsConnector
from zoomcal.connectors.spec import CALENDAR, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec
from zoomcal.errors import ConfigError

OPTIONS = (Option("url", "the EWS endpoint, https://host/EWS/Exchange.asmx", required=True),
           Option("username", "the account name", required=True),
           Option("auth", f"authentication: {' | '.join(AUTH_TYPES)} (auto: what the server's 401 offers)",
                  default="auto"),
           Option("mailbox", "the mailbox (default: the user's e-mail)"))
PASSWORD = Option("password", "the password (--auth oauth: the access token)", required=True, secret=True)


def connector(view: AccountView, env: Env) -> EwsConnector:
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
    capabilities=EwsConnector.capabilities, default_label="Exchange")
