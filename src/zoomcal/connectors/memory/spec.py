"""The memory connector as a provider: named calendars held in this process. Not among the built-in providers;
add it with ZOOMCAL_EXTRA_PROVIDERS=zoomcal.connectors.memory (tests do, to prove that a provider plugs in from
its own folder alone)."""

from __future__ import annotations

from zoomcal.connectors.memory.connector import MemoryCalendar, MemoryConnector
from zoomcal.connectors.spec import CALENDAR, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec
from zoomcal.errors import ConfigError

CALENDARS: dict[str, MemoryCalendar] = {}


def calendar(name: str) -> MemoryCalendar:
    """The named calendar of this process (made on first use)."""
    return CALENDARS.setdefault(name, MemoryCalendar())


async def link(request: LinkRequest, _env: Env) -> Linked:
    name = request.get("name")
    if not name.isidentifier():
        raise ConfigError(f"a memory calendar's name is a word, not {name!r}")
    calendar(name)
    return Linked(name, f"memory:{name}")


async def check(view: AccountView, _env: Env) -> None:
    calendar(view.calendar)


def connector(view: AccountView, _env: Env) -> MemoryConnector:
    return MemoryConnector(calendar(view.calendar))


SPEC = ProviderSpec(
    key="memory", label="Memory", roles=frozenset({CALENDAR}), linking="a name (in-process, for tests)",
    options=(Option("name", "the calendar's name", required=True),), link=link, check=check, connector=connector,
    capabilities=MemoryConnector.capabilities, default_label="Memory")
