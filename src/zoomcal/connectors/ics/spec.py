"""ICS feeds (an http(s) URL or a local file) as a read-only busy source; the link fetches the feed once and
refuses anything that is not an iCalendar file."""

from __future__ import annotations

from pathlib import Path

from zoomcal.connectors.ics.connector import IcsConnector
from zoomcal.connectors.spec import BUSY, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec
from zoomcal.errors import ConfigError
from zoomcal.net import check_url

OPTIONS = (Option("url", "the feed's http(s) URL or a local file path", required=True),
           Option("timezone", "zone for floating times when the feed names none"))


def connector(view: AccountView, env: Env) -> IcsConnector:
    return IcsConnector(view.calendar, env.rules, allow_private=env.allow_private, transport=env.transport,
                        resolve=env.resolver, timeout=env.timeout, default_tz=view.config.get("timezone"),
                        provider=env.provider)


async def link(request: LinkRequest, env: Env) -> Linked:
    source = request.get("url")
    if "://" in source:
        check_url(source, env.allow_private, env.resolver)
    else:
        source = str(Path(source).expanduser().resolve())   # the sync may run from another directory
    config = {"timezone": request.get("timezone")} if request.get("timezone") else {}
    await check(AccountView(0, config, {}, source), env)
    return Linked(source, "ICS feed", config, {})


async def check(view: AccountView, env: Env) -> None:
    """The feed can be fetched and is an iCalendar file."""
    feed = connector(view, env)
    try:
        text, _validators = await feed._fetch({})
    finally:
        await feed.aclose()
    if "BEGIN:VCALENDAR" not in (text or "")[:4096].upper():
        raise ConfigError(f"{view.calendar} is not an iCalendar file (no BEGIN:VCALENDAR)")


SPEC = ProviderSpec(
    key="ics", label="ICS feed", roles=frozenset({BUSY}), linking="a URL or a file path (read-only)",
    options=OPTIONS, link=link, check=check, connector=connector, capabilities=IcsConnector.capabilities,
    default_label="ICS feed")
