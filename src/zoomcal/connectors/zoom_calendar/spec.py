"""Zoom's own calendar as a provider: the same Zoom OAuth app and credentials as Zoom meetings; the link is
checked by reading one event of the calendar."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from zoomcal.connectors import rest
from zoomcal.connectors.spec import CALENDAR, AccountView, Env, Linked, LinkRequest, Option, ProviderSpec, PushTarget
from zoomcal.connectors.zoom import spec as zoom
from zoomcal.connectors.zoom.push import CHANNEL, event_time, payload_object
from zoomcal.connectors.zoom_calendar.connector import ZoomCalendarConnector

KEY = "zoom-calendar"
CALENDAR_ID = Option("calendar_id", "the Zoom calendar id (default: the user's primary calendar, their e-mail)")


def _events(calendar: str) -> str:
    return f"calendars/{quote(calendar, safe='@')}/events"


async def _page(view: AccountView, env: Env) -> dict:
    return await rest.first_read(view, env, zoom.API, zoom.grant(view, env), _events(view.calendar),
                                 {"maxResults": 1}) or {}


async def check(view: AccountView, env: Env) -> None:
    await _page(view, env)


async def link(request: LinkRequest, env: Env) -> Linked:
    # a user's primary Zoom calendar id is their e-mail
    calendar = request.get("calendar_id") or request.get("zoom_user") or request.user_email
    view = rest.request_view(request, calendar, ("api_base", "token_url"), zoom.SECRETS)
    page = await _page(view, env)
    return Linked(calendar, str(page.get("summary") or "Zoom Calendar"), view.config, view.secret)


def connector(view: AccountView, env: Env) -> ZoomCalendarConnector:
    return ZoomCalendarConnector(rest.api_client(view, env, zoom.API, env.share_tokens(zoom.grant(view, env))),
                                 view.calendar, env.rules)


def targets(event: dict[str, Any]) -> list[PushTarget]:
    """`calendar.event_*` names the calendar by its resource id."""
    obj = payload_object(event)
    if str(event.get("event") or "").startswith("calendar.event_") and obj.get("resource_id"):
        return [PushTarget(KEY, calendar=str(obj["resource_id"]), changed_at=event_time(event))]
    return []


SPEC = ProviderSpec(
    key=KEY, label="Zoom Calendar", roles=frozenset({CALENDAR}), linking=zoom.SPEC.linking,
    options=(rest.CLIENT_ID, zoom.ACCOUNT_ID, zoom.ZOOM_USER, CALENDAR_ID,
             *rest.endpoint_options(zoom.API, zoom.TOKEN_URL)),
    secrets=zoom.secrets, link=link, check=check, connector=connector, grant=zoom.grant, revoke=zoom.revoke,
    capabilities=ZoomCalendarConnector.capabilities, push=CHANNEL, push_targets=targets,
    default_label="Zoom Calendar")
