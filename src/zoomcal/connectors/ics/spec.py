"""ICS feeds (an http(s) URL or a local file) as a read-only busy source; the link fetches the feed once and
refuses anything that is not an iCalendar file.

A feed's URL is often a capability (Google's and Outlook's "secret address" lets anyone read the calendar), so it
is kept as the account's sealed secret; the calendar is known by a digest of it and shown with the middle of the
path masked. A local file is known by its absolute path."""

from __future__ import annotations

import hashlib
from pathlib import Path

from zoomcal.connectors.ics.connector import IcsConnector, masked
from zoomcal.connectors.spec import BUSY, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec
from zoomcal.errors import ConfigError
from zoomcal.net import check_url

OPTIONS = (Option("url", "the feed's http(s) URL or a local file path", required=True),
           Option("timezone", "zone for floating times when the feed names none"))


def source_of(view: AccountView) -> str:
    return str(view.secret.get("url") or view.calendar)      # feeds linked before URLs were sealed: the calendar


def connector(view: AccountView, env: Env) -> IcsConnector:
    return IcsConnector(source_of(view), env.rules, allow_private=env.allow_private, transport=env.transport,
                        resolve=env.resolver, timeout=env.timeout, default_tz=view.config.get("timezone"),
                        provider=env.provider)


async def link(request: LinkRequest, env: Env) -> Linked:
    source = request.get("url")
    config = {"timezone": request.get("timezone")} if request.get("timezone") else {}
    if "://" in source:
        check_url(source, env.allow_private, env.resolver)
        digest = "ics-" + hashlib.sha256(source.encode()).hexdigest()[:24]
        await check(AccountView(0, config, {"url": source}, digest), env)
        return Linked(digest, f"ICS feed {masked(source)}"[:200], config, {"url": source})
    if not env.allow_files:
        raise ConfigError("give the feed's http(s) URL: a file on the server is linked by its operator only, "
                          "from the command line")
    source = str(Path(source).expanduser().resolve())   # the sync may run from another directory
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
        source = source_of(view)
        shown = masked(source) if "://" in source else source
        raise ConfigError(f"{shown} is not an iCalendar file (no BEGIN:VCALENDAR)")


SPEC = ProviderSpec(
    key="ics", label="ICS feed", roles=frozenset({BUSY}), linking="a URL or a file path (read-only)",
    options=OPTIONS, link=link, check=check, connector=connector, capabilities=IcsConnector.capabilities,
    default_label="ICS feed")
