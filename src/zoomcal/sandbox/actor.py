"""A scripted user of the sandboxes: makes edits through the public REST APIs, as a person's apps would."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from zoomcal.sandbox.world import SandboxWorld


class SandboxActor:
    def __init__(self, world: SandboxWorld, base_url: str = "http://sandbox",
                 transport: httpx.AsyncBaseTransport | None = None):
        """`transport=None` goes over the network to `base_url`; pass `world.transport()` to stay in-process."""
        self.world = world
        self.client = httpx.AsyncClient(base_url=base_url, transport=transport, timeout=10)

    def _zoom_headers(self) -> dict[str, str]:
        issued = self.world.zoom.tokens.issue("account:" + self.world.zoom.account_id)
        return {"Authorization": f"Bearer {issued['access_token']}"}

    def _google_headers(self, calendar_id: str) -> dict[str, str]:
        issued = self.world.google.tokens.issue(self.world.google.calendars[calendar_id].owner)
        return {"Authorization": f"Bearer {issued['access_token']}"}

    async def _call(self, method: str, url: str, headers: dict[str, str], **kwargs: Any) -> Any:
        response = await self.client.request(method, url, headers=headers, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    # Zoom
    async def zoom_create(self, user_id: str, **body: Any) -> dict[str, Any]:
        return await self._call("POST", f"/zoom/v2/users/{user_id}/meetings", self._zoom_headers(), json=body)

    async def zoom_patch(self, meeting_id: int | str, occurrence_id: str | None = None, **body: Any) -> None:
        params = {"occurrence_id": occurrence_id} if occurrence_id else None
        await self._call("PATCH", f"/zoom/v2/meetings/{meeting_id}", self._zoom_headers(), json=body, params=params)

    async def zoom_delete(self, meeting_id: int | str, occurrence_id: str | None = None) -> None:
        params = {"occurrence_id": occurrence_id} if occurrence_id else None
        await self._call("DELETE", f"/zoom/v2/meetings/{meeting_id}", self._zoom_headers(), params=params)

    async def zoom_get(self, meeting_id: int | str) -> dict[str, Any]:
        return await self._call("GET", f"/zoom/v2/meetings/{meeting_id}", self._zoom_headers())

    # Google
    def _events(self, calendar_id: str) -> str:
        return f"/google/calendar/v3/calendars/{quote(calendar_id, safe='')}/events"

    async def google_insert(self, calendar_id: str, **body: Any) -> dict[str, Any]:
        return await self._call("POST", self._events(calendar_id), self._google_headers(calendar_id), json=body)

    async def google_patch(self, calendar_id: str, event_id: str, **body: Any) -> dict[str, Any]:
        return await self._call("PATCH", f"{self._events(calendar_id)}/{event_id}", self._google_headers(calendar_id),
                                json=body)

    async def google_delete(self, calendar_id: str, event_id: str) -> None:
        await self._call("DELETE", f"{self._events(calendar_id)}/{event_id}", self._google_headers(calendar_id))

    async def google_instances(self, calendar_id: str, event_id: str) -> list[dict[str, Any]]:
        body = await self._call("GET", f"{self._events(calendar_id)}/{event_id}/instances",
                                self._google_headers(calendar_id))
        return body["items"]

    # Microsoft Graph
    def _graph(self, user: str) -> tuple[str, dict[str, str]]:
        issued = self.world.graph.tokens.issue(user)
        return f"/graph/v1.0/users/{user}/calendar/events", {"Authorization": f"Bearer {issued['access_token']}"}

    async def graph_insert(self, user: str, **body: Any) -> dict[str, Any]:
        url, headers = self._graph(user)
        return await self._call("POST", url, headers, json=body)

    async def graph_patch(self, user: str, event_id: str, **body: Any) -> dict[str, Any]:
        url, headers = self._graph(user)
        return await self._call("PATCH", f"{url}/{event_id}", headers, json=body)

    async def graph_delete(self, user: str, event_id: str) -> None:
        url, headers = self._graph(user)
        await self._call("DELETE", f"{url}/{event_id}", headers)

    def graph_find(self, user: str, subject: str) -> dict[str, Any]:
        for event in self.world.graph.events[self.world.graph.default_key(user)].values():
            if event.get("subject") == subject:
                return event
        raise KeyError(subject)

    def google_find(self, calendar_id: str, summary: str) -> dict[str, Any]:
        for event in self.world.google.calendars[calendar_id].events.values():
            if event.get("summary") == summary and not event.get("recurringEventId") and \
                    event.get("status") != "cancelled":
                return event
        raise KeyError(summary)

    def zoom_find(self, user_id: str, topic: str) -> dict[str, Any]:
        for meeting in self.world.zoom.user_meetings(user_id):
            if meeting.get("topic") == topic:
                return meeting
        raise KeyError(topic)

    async def aclose(self) -> None:
        await self.client.aclose()

    # Exchange (EWS): an Outlook-like client on the served sandbox, through exchangelib as a real one would
    def ews_client(self, email: str):
        """(exchangelib Account, calendar folder) signed in as `email` on the served sandbox."""
        from exchangelib import DELEGATE, Account, Configuration, Credentials, EWSTimeZone, Version
        from exchangelib.folders import Calendar, DistinguishedFolderId, Root
        from exchangelib.properties import Mailbox
        from exchangelib.version import EXCHANGE_2013_SP1

        url = str(self.client.base_url).rstrip("/") + "/ews/EWS/Exchange.asmx"
        config = Configuration(service_endpoint=url, credentials=Credentials(email, self.world.ews.passwords[email]),
                               auth_type="basic", version=Version(build=EXCHANGE_2013_SP1))
        account = Account(email, config=config, autodiscover=False, access_type=DELEGATE,
                          default_timezone=EWSTimeZone("UTC"))
        mailbox = Mailbox(email_address=email)
        root = Root(account=account, _distinguished_id=DistinguishedFolderId(id="root", mailbox=mailbox))
        return account, Calendar(root=root, _distinguished_id=DistinguishedFolderId(id="calendar", mailbox=mailbox))

    async def ews_insert(self, email: str, subject: str, start: str, end: str, *, tz: str | None = None,
                         location: str = "", body: str = "", free_busy: str = "Busy") -> str:
        """A new item; `start`/`end` are UTC instants, or dates for an all-day item in `tz`."""
        import asyncio
        from datetime import date

        from exchangelib import CalendarItem, EWSDate, EWSDateTime, EWSTimeZone

        from zoomcal.sandbox.clock import parse_stamp

        def insert() -> str:
            account, folder = self.ews_client(email)
            all_day = len(start) == 10
            item = CalendarItem(account=account, folder=folder, subject=subject, body=body or None,
                                location=location or None, legacy_free_busy_status=free_busy, is_all_day=all_day)
            if all_day:
                item.start, item.end = (EWSDate.from_date(date.fromisoformat(v)) for v in (start, end))
                item._start_timezone = item._end_timezone = EWSTimeZone(tz or "UTC")
            else:
                item.start, item.end = (EWSDateTime.from_datetime(parse_stamp(v)) for v in (start, end))
            item.save()
            return item.id

        return await asyncio.to_thread(insert)

    async def ews_update(self, email: str, item_id: str, **fields: Any) -> None:
        import asyncio

        def update() -> None:
            account, folder = self.ews_client(email)
            (item,) = account.fetch(ids=[(item_id, None)], folder=folder)
            for name, value in fields.items():
                setattr(item, name, value)
            item.save(update_fields=list(fields))

        await asyncio.to_thread(update)

    async def ews_cancel_occurrence(self, email: str, item_id: str, index: int) -> None:
        """Delete occurrence `index` (1-based) of a series, as Outlook does."""
        import asyncio

        def cancel() -> None:
            account, folder = self.ews_client(email)
            (master,) = account.fetch(ids=[(item_id, None)], folder=folder)
            master.occurrence(index).delete()

        await asyncio.to_thread(cancel)

    def ews_find(self, email: str, subject: str) -> dict[str, Any]:
        for item in self.world.ews.items[email].values():
            if item["subject"] == subject:
                return item
        raise KeyError(subject)
