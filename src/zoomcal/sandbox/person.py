"""What a person does in their own calendar app — Google Calendar, Outlook on Microsoft 365, or Outlook on
Exchange — through the sandboxes' public APIs (the demo's scripted person)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.clock import now as now_utc
from zoomcal.sandbox.clock import stamp as fmt_instant
from zoomcal.sandbox.world import SandboxWorld

PROVIDER_NAMES = {"google": "Google", "graph": "Microsoft 365", "ews": "Exchange"}


def calendar_key(user: dict[str, Any]) -> str:
    """The id of the user's calendar in its sandbox (what the verifier and the scripted person address)."""
    return {"graph": user["graph_calendar_id"], "ews": user["email"]}.get(user.get("provider") or "google",
                                                                         user["google_calendar_id"])


class CalendarOps:
    """What a person does in their own calendar app, for whichever calendar they use (Google, Outlook on
    Microsoft 365, or Outlook on Exchange)."""

    def __init__(self, actor: SandboxActor, user: dict[str, Any]):
        self.actor, self.user, self.provider = actor, user, user.get("provider") or "google"
        self.key = calendar_key(user)

    async def insert(self, title: str, start: str, end: str, *, tz: str | None = None, location: str = "",
                     description: str = "", show_as: str | None = None, google_type: str | None = None) -> None:
        all_day = len(start) == 10
        if self.provider == "ews":
            await self.actor.ews_insert(self.key, title, start, end, tz=tz, location=location, body=description,
                                        free_busy={"oof": "OOF", "free": "Free"}.get(show_as or "", "Busy"))
            return
        if self.provider == "graph":
            def when(value: str) -> dict[str, str]:
                return {"dateTime": f"{value}T00:00:00" if all_day else value.rstrip("Z"),
                        "timeZone": (tz or "UTC") if all_day else "UTC"}
            body: dict[str, Any] = {"subject": title, "body": {"contentType": "text", "content": description},
                                    "start": when(start), "end": when(end), "isAllDay": all_day}
            if location:
                body["location"] = {"displayName": location}
            if show_as:
                body["showAs"] = show_as
            await self.actor.graph_insert(self.user["email"], **body)
            return
        def when_g(value: str) -> dict[str, str]:
            return {"date": value} if all_day else ({"dateTime": value, "timeZone": tz} if tz else {"dateTime": value})
        extra = {k: v for k, v in (("location", location), ("description", description),
                                   ("eventType", google_type)) if v}
        await self.actor.google_insert(self.key, summary=title, start=when_g(start), end=when_g(end), **extra)

    def find(self, title: str) -> dict[str, Any]:
        return {"ews": self.actor.ews_find, "graph": self.actor.graph_find,
                "google": self.actor.google_find}[self.provider](self.key if self.provider != "graph"
                                                                 else self.user["email"], title)

    async def rename(self, title: str, new_title: str) -> None:
        event = self.find(title)
        if self.provider == "ews":
            await self.actor.ews_update(self.key, event["id"], subject=new_title)
        elif self.provider == "graph":
            await self.actor.graph_patch(self.user["email"], event["id"], subject=new_title)
        else:
            await self.actor.google_patch(self.key, event["id"], summary=new_title)

    async def move(self, title: str, start: str, end: str) -> None:
        """Reschedule a timed event to `start`-`end` (UTC instants); Google and Microsoft 365 only."""
        event = self.find(title)
        if self.provider == "graph":
            await self.actor.graph_patch(self.user["email"], event["id"],
                                         start={"dateTime": start.rstrip("Z"), "timeZone": "UTC"},
                                         end={"dateTime": end.rstrip("Z"), "timeZone": "UTC"})
        elif self.provider == "google":
            await self.actor.google_patch(self.key, event["id"], start={"dateTime": start}, end={"dateTime": end})
        else:
            raise NotImplementedError(f"moving an event is not scripted for {self.provider}")

    async def delete(self, title: str) -> None:
        """Delete an event (a whole series, for a recurring one); Google and Microsoft 365 only."""
        event = self.find(title)
        if self.provider == "graph":
            await self.actor.graph_delete(self.user["email"], event["id"])
        elif self.provider == "google":
            await self.actor.google_delete(self.key, event["id"])
        else:
            raise NotImplementedError(f"deleting an event is not scripted for {self.provider}")

    def titles(self) -> list[str]:
        if self.provider == "ews":
            return [i["subject"] for i in self.actor.world.ews.items[self.key].values() if not i["all_day"]]
        if self.provider == "graph":
            return [e["subject"] for e in self.actor.world.graph.events[self.key].values()
                    if not e.get("isAllDay")]
        events = self.actor.world.google.calendars[self.key].events.values()
        return [e["summary"] for e in events if e.get("status") != "cancelled" and not e.get("recurringEventId")
                and "dateTime" in e.get("start", {})]


async def seed_now(actor: SandboxActor, users: list[dict[str, Any]]) -> None:
    """Something happening right now, so presence has work: Ada is in a meeting, Grace is out of office,
    Alan has focus time."""
    now = now_utc()
    start, end = fmt_instant(now - timedelta(minutes=10)), fmt_instant(now + timedelta(minutes=50))
    ada, grace, alan = (users + users[:3])[:3]
    await actor.zoom_create(ada["zoom_user_id"], topic="Quarterly planning", type=2, start_time=start,
                                 duration=60, timezone=ada["timezone"])
    await CalendarOps(actor, grace).insert("Out of office", fmt_instant(now - timedelta(hours=1)),
                                          fmt_instant(now + timedelta(hours=8)), show_as="oof",
                                          google_type="outOfOffice")
    await CalendarOps(actor, alan).insert("Focus: proofs", start, end, show_as="busy", google_type="focusTime")


async def seed(actor: SandboxActor, users: list[dict[str, Any]]) -> None:
    """Each user starts with meetings on Zoom, plain and Zoom-marked events in the calendar, and one pair
    that already exists on both sides (the calendar event carries the join URL)."""
    await seed_now(actor, users)
    for i, user in enumerate(users):
        uid, cal = user["zoom_user_id"], CalendarOps(actor, user)
        tz = user["timezone"]
        day = 7 + i
        await actor.zoom_create(uid, topic="Weekly team sync", type=8, start_time=f"2026-12-{day:02d}T09:00:00Z",
                                     duration=30, timezone=tz, agenda="Status round",
                                     recurrence={"type": 2, "weekly_days": "2", "end_times": 8})
        await actor.zoom_create(uid, topic="Customer call", type=2, start_time=f"2026-12-{day + 1:02d}T15:00:00Z",
                                     duration=45, timezone=tz, agenda="Renewal")
        existing = await actor.zoom_create(uid, topic="Board review", type=2,
                                                start_time=f"2026-12-{day + 2:02d}T13:00:00Z", duration=60, timezone=tz)
        await cal.insert("Board review", f"2026-12-{day + 2:02d}T13:00:00Z", f"2026-12-{day + 2:02d}T14:00:00Z",
                         tz=tz, location=existing["join_url"], description=f"Join Zoom Meeting\n{existing['join_url']}")
        await cal.insert("Dentist", f"2026-12-{day:02d}T07:00:00Z", f"2026-12-{day:02d}T08:00:00Z")
        await cal.insert("Offsite", f"2026-12-{day + 3:02d}", f"2026-12-{day + 4:02d}", tz=tz)
        await cal.insert("Design review", f"2026-12-{day + 1:02d}T10:00:00Z", f"2026-12-{day + 1:02d}T11:00:00Z",
                         tz=tz, location="zoom", description="Agenda: v2")


@asynccontextmanager
async def together(world: SandboxWorld) -> AsyncIterator[None]:
    """Edits made inside land at the same moment: the vendors' notifications of them go out when the block ends
    (so a push-driven sync cannot come between them)."""
    boxes = (world.zoom.outbox, world.google.outbox, world.graph.outbox)
    for box in boxes:
        box.hold = True
    try:
        yield
    finally:
        for box in boxes:
            box.hold = False
        for box in boxes:
            await box.flush()


async def scenario(actor: SandboxActor, users: list[dict[str, Any]]) -> list[str]:
    """Edits on both sides, a recurring-occurrence edit, a cancellation, a conflict, and injected faults. The
    edits land together: the vendors' notifications go out once the faults are armed, so whatever zoomcal's speed,
    its push-driven syncs meet the conflict and the faults."""
    async with together(actor.world):
        return await _edits(actor, users)


async def _edits(actor: SandboxActor, users: list[dict[str, Any]]) -> list[str]:
    steps = []
    a = actor
    u0, u1 = users[0], users[1 % len(users)]
    weekly = a.zoom_find(u0["zoom_user_id"], "Weekly team sync")
    full = await a.zoom_get(weekly["id"])
    second = full["occurrences"][1]
    moved = second["start_time"].replace("T09:00", "T11:00")
    await a.zoom_patch(weekly["id"], occurrence_id=second["occurrence_id"], start_time=moved, duration=30)
    steps.append("Zoom: moved one occurrence of 'Weekly team sync' by two hours")
    await a.zoom_patch(a.zoom_find(u0["zoom_user_id"], "Customer call")["id"], topic="Customer call (renewal)")
    steps.append("Zoom: renamed 'Customer call'")
    design = a.google_find(u0["google_calendar_id"], "Design review")
    await a.google_patch(u0["google_calendar_id"], design["id"],
                         start={"dateTime": "2026-12-08T14:00:00Z", "timeZone": u0["timezone"]},
                         end={"dateTime": "2026-12-08T15:00:00Z", "timeZone": u0["timezone"]})
    steps.append("Calendar: rescheduled 'Design review'")
    weekly_cal = a.google_find(u0["google_calendar_id"], "Weekly team sync")
    instances = await a.google_instances(u0["google_calendar_id"], weekly_cal["id"])
    await a.google_delete(u0["google_calendar_id"], instances[3]["id"])
    steps.append("Calendar: cancelled the fourth occurrence of 'Weekly team sync'")
    board = a.zoom_find(u1["zoom_user_id"], "Board review")
    await a.zoom_delete(board["id"])
    steps.append("Zoom: cancelled 'Board review'")
    call = a.zoom_find(u1["zoom_user_id"], "Customer call")
    await a.zoom_patch(call["id"], topic="Customer call - Zoom title")
    await CalendarOps(actor, u1).rename("Customer call", "Customer call - calendar title")
    steps.append("Both sides: renamed 'Customer call' differently (conflict)")
    await a.zoom_create(u1["zoom_user_id"], topic="Hiring panel", type=2, start_time="2026-12-15T10:00:00Z",
                        duration=60, timezone=u1["timezone"])
    await a.zoom_create(u0["zoom_user_id"], topic="Interview loop", type=2, start_time="2026-12-16T13:00:00Z",
                        duration=90, timezone=u0["timezone"])
    steps.append("Zoom: new meetings 'Hiring panel' (Outlook user) and 'Interview loop' (Google user)")
    exchange = next((u for u in users if u.get("provider") == "ews"), None)
    if exchange is not None:
        series = a.ews_find(exchange["email"], "Weekly team sync")
        await a.ews_cancel_occurrence(exchange["email"], series["id"], 3)
        await CalendarOps(actor, exchange).rename("Dentist", "Dentist (moved to lunch)")
        steps.append("Outlook on Exchange: cancelled the third occurrence of 'Weekly team sync', renamed 'Dentist'")
    w = actor.world
    w.google_faults.add("429", method="PATCH", retry_after=1)
    w.zoom_faults.add("500", method="GET", path=r"/v2/users/.*/meetings")
    w.google_faults.add("lost_response", method="POST", path=r"/events$")
    w.zoom_faults.add("503", method="PATCH")
    w.graph_faults.add("lost_response", method="POST", path=r"/events$")
    steps.append("Faults armed: Google 429 on PATCH, Zoom 500 on list, lost Google and Outlook insert responses, "
                 "Zoom 503")
    return steps


async def random_edit(actor: SandboxActor, users: list[dict[str, Any]], rng: random.Random) -> str:
    user = rng.choice(users)
    uid = user["zoom_user_id"]
    meetings = actor.world.zoom.user_meetings(uid)
    choice = rng.randrange(4)
    if choice == 0 and meetings:
        meeting = rng.choice(meetings)
        await actor.zoom_patch(meeting["id"], topic=f"{meeting['topic'].split(' #')[0]} #{rng.randrange(100)}")
        return f"{user['email']}: renamed a Zoom meeting"
    if choice == 1:
        hour = rng.randrange(8, 17)
        await actor.zoom_create(uid, topic=f"Ad-hoc {rng.randrange(1000)}", type=2,
                                     start_time=f"2026-12-20T{hour:02d}:00:00Z", duration=30, timezone=user["timezone"])
        return f"{user['email']}: new Zoom meeting"
    titles = CalendarOps(actor, user).titles()
    if choice == 2 and titles:
        title = rng.choice(titles)
        await CalendarOps(actor, user).rename(title, f"{title.split(' *')[0]} *{rng.randrange(100)}")
        return f"{user['email']}: renamed a calendar event"
    if meetings and rng.random() < 0.5:
        meeting = rng.choice([m for m in meetings if m.get("type") == 8] or meetings)
        if meeting.get("type") == 8:
            occ = (await actor.zoom_get(meeting["id"]))["occurrences"][-1]
            if occ["status"] != "deleted":
                await actor.zoom_patch(meeting["id"], occurrence_id=occ["occurrence_id"], duration=45)
                return f"{user['email']}: lengthened the last occurrence of a recurring meeting"
    await CalendarOps(actor, user).insert(f"Focus {rng.randrange(100)}", "2026-12-21T09:00:00Z",
                                         "2026-12-21T10:00:00Z", location="zoom")
    return f"{user['email']}: new calendar event marked for Zoom"


def presence_of(actor: SandboxActor, users: list[dict[str, Any]]) -> dict[str, str]:
    return {u["email"]: actor.world.zoom.users[u["zoom_user_id"]]["_presence"] for u in users}


def calendar_name(user: dict[str, Any]) -> str:
    return PROVIDER_NAMES[user.get("provider") or "google"]
