"""`zoomcal demo`: sandboxes + demo users + two-way sync, live or as one scripted, self-checking pass.

Everything zoomcal does here goes through the application layer, as it would with real accounts: people are
added, accounts are linked (and checked with the sandboxes), calendars are synced, presence is set. The scripted
person (`zoomcal.sandbox.person`) edits the sandboxes through their public APIs, as a person's apps would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from zoomcal.agreement import agreement as agreement_of
from zoomcal.app import (
    accounts,
    admin,
    availability,
    contacts,
    due,
    invitations,
    jobs,
    polls,
    propagation,
    signin,
    sync,
    users,
)
from zoomcal.app.availability import index
from zoomcal.app.context import Actor, AppContext, Services, open_services
from zoomcal.app.runner import EmbeddedRunner, Intervals
from zoomcal.auth.vault import new_key_spec
from zoomcal.config import Settings
from zoomcal.presence.service import PresenceService
from zoomcal.sandbox import person
from zoomcal.sandbox.actor import SandboxActor
from zoomcal.sandbox.mail import MailSandbox
from zoomcal.sandbox.push import http_post
from zoomcal.sandbox.server import BackgroundServer
from zoomcal.sandbox.world import DEMO_USERS, SandboxWorld
from zoomcal.sync.retry import Retrier
from zoomcal.web.app import make_app

DEMO = Actor("demo", "admin")


PUBLIC_URL = "https://zoomcal.demo"     # where the sandboxes send notifications; delivered to the local web app


def _deliver_to(local: str):
    """Notifications for PUBLIC_URL go to the web app on loopback (what an HTTPS proxy in front of it would do)."""
    async def deliver(url: str, headers: dict[str, str], body: bytes) -> httpx.Response:
        return await http_post(url.replace(PUBLIC_URL, local, 1), headers, body)
    return deliver


@dataclass
class DemoSetup:
    world: SandboxWorld
    server: BackgroundServer
    web: BackgroundServer
    services: Services
    ctx: AppContext
    users: list[dict[str, Any]]
    actor: SandboxActor
    presence: PresenceService
    mail: MailSandbox
    results: list[sync.PairResult] = field(default_factory=list)
    sync_api_calls: int = 0          # calls zoomcal made (the scripted person's own edits not counted)
    last_status: dict[str, str] = field(default_factory=dict)

    def follow(self, change: dict[str, Any]) -> None:
        # the engine's change stream keeps the busy index current, one event at a time
        if change.get("event_id"):
            self.presence.index.refresh_event(self.ctx.store, change["user_id"], change["event_id"])


async def setup(settings: Settings, people: Sequence[tuple[str, str, str, str]] = DEMO_USERS) -> DemoSetup:
    """Sandboxes, zoomcal's web app and services, and `people` (e-mail, name, zone, calendar) added and linked."""
    demo_dir = settings.data_dir / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    demo_dir.mkdir(parents=True)
    world = SandboxWorld()
    server = BackgroundServer(world).start()
    mail = MailSandbox().start()
    demo_settings = settings.model_copy(update={
        "data_dir": demo_dir, "database_url": f"sqlite:///{demo_dir / 'demo.db'}", "vault_keys": new_key_spec("demo"),
        "allow_private_urls": True,    # the Exchange sandbox is on loopback
        "jobs": "embedded", "public_url": PUBLIC_URL, "zoom_webhook_secret": world.zoom.webhook_secret,
        # "Sign in with Zoom" on the portal, through the Zoom sandbox's sign-in page
        "portal_zoom_client_id": world.zoom.client_id, "portal_zoom_client_secret": world.zoom.client_secret,
        "portal_zoom_api_base": f"{server.url}/zoom/v2", "portal_zoom_token_url": f"{server.url}/zoom/oauth/token",
        # and with Google and Microsoft (OpenID Connect), through theirs
        "portal_google_client_id": world.google.client_id, "portal_google_client_secret": world.google.client_secret,
        "portal_google_issuer": f"{server.url}/google",
        "portal_microsoft_client_id": world.graph.client_id,
        "portal_microsoft_client_secret": world.graph.client_secret,
        "portal_microsoft_authority": f"{server.url}/graph", "portal_microsoft_tenant": world.graph.tenant_id})
    admin.init(demo_settings)
    services = open_services(demo_settings)
    services.retrier = lambda: Retrier(max_retries=4, base_delay=0.05, max_delay=2.0)
    # zoomcal's web app receives the sandboxes' notifications: Zoom's signed webhooks, Google's channel messages,
    # Graph's change notifications (and its subscription handshake)
    web = BackgroundServer(app=make_app(services)).start()
    deliver = _deliver_to(web.url)
    world.zoom.webhook_url = f"{PUBLIC_URL}/webhooks/zoom"
    for state in (world.zoom, world.google, world.graph):
        state.outbox.deliver = deliver
    ctx = services.context("default", DEMO)
    invitations.set_mail(ctx, host=mail.host, port=mail.port, security="none", sender="calendar@demo.example")
    linked = []
    for email, name, tz, calendar in people:
        info = {**world.add_user(email, name, tz), "provider": calendar}
        linked.append(info)
        users.add(ctx, email, name)
        for link in world.link_requests(info, server.url, calendar):
            await accounts.link(ctx, email, link["provider"], link["options"], link["secrets"])
    if linked:      # the first person's address books (Google and Microsoft 365) feed the directory, with Zoom's users
        for link in world.contact_link_requests(linked[0], server.url):
            await accounts.link(ctx, linked[0]["email"], link["provider"], link["options"], link["secrets"])
    if linked:      # the first person is the demo's admin (a Zoom admin too), who signs in to the portal with a link
        signin.set_role(ctx, linked[0]["email"], "admin")
        world.zoom.users[linked[0]["zoom_user_id"]].update(role_name="Admin", role_id="1")
    actor = SandboxActor(world, base_url=server.url)
    return DemoSetup(world, server, web, services, ctx, linked, actor, PresenceService(ctx, index(ctx)), mail)


def portal_link(demo: DemoSetup) -> str:
    """The portal's address, signing the demo's admin in on first use (good for a day)."""
    token = signin.link(demo.ctx, demo.users[0]["email"], timedelta(days=1))
    return f"{demo.web.url}/login/link?t={token}"


async def sync_all(demo: DemoSetup, trigger: str) -> list[sync.PairResult]:
    calls_before = demo.world.api_calls()
    try:
        results = await sync.run(demo.ctx, trigger=trigger, on_change=demo.follow)
    finally:
        demo.sync_api_calls += demo.world.api_calls() - calls_before
    for result in results:
        if len(result.calendars) == 2:   # the pair that carries the meetings
            demo.last_status[result.user] = f"{result.status}, {result.writes} writes"
    demo.results.extend(results)
    return results


def summary(demo: DemoSetup, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    meetings = events = 0
    mismatches: list[str] = []
    duplicates: list[str] = []
    for user in demo.users:
        agreement = agreement_of(demo.actor, user)
        meetings += agreement.zoom_meetings
        events += agreement.calendar_events
        mismatches += [f"{user['email']}: {m}" for m in agreement.mismatches]
        duplicates += [f"{user['email']}: {d}" for d in agreement.duplicates]
    out = {
        "users": len(demo.users),
        "zoom_meetings": meetings,
        "calendar_events": events,
        "mismatches": len(mismatches),
        "duplicates": len(duplicates),
        "api_calls": demo.sync_api_calls,
        "review_queue": len(sync.reviews(demo.ctx)),
        "review_kinds": dict(Counter(r.kind for r in sync.reviews(demo.ctx))),
        "sync_runs": len(demo.results),
        "sync_log_entries": len(sync.log(demo.ctx, limit=1_000_000)),
        "faults_fired": {**demo.world.zoom_faults.fired,
                         **{f"google_{k}": v for k, v in demo.world.google_faults.fired.items()},
                         **{f"graph_{k}": v for k, v in demo.world.graph_faults.fired.items()}},
        "calendars": {u["email"]: u["provider"] for u in demo.users},
        "invitations": {"sent": len(demo.mail.received) + len(demo.world.google.guest_mail),
                        "by_email": {m: sum(1 for r in demo.mail.received if r.method == m)
                                     for m in sorted({r.method for r in demo.mail.received})},
                        "by_google": {k: sum(1 for m in demo.world.google.guest_mail if m["kind"] == k)
                                      for k in sorted({m["kind"] for m in demo.world.google.guest_mail})}},
        "mismatch_details": mismatches,
        "duplicate_details": duplicates,
    }
    out.update(extra or {})
    return out


async def close(demo: DemoSetup) -> None:
    await demo.actor.aclose()
    await demo.services.aclose()
    demo.web.stop()
    demo.server.stop()
    demo.mail.stop()
    demo.services.close()


class PushServer:
    """Syncs whoever the sandboxes' notifications mark due while the scripted person edits: the job runner's own
    loop, woken by the marks; no polling round is involved."""

    def __init__(self, demo: DemoSetup):
        self.demo = demo
        self.runner = EmbeddedRunner(demo.services, presence=False, on_outcome=self._served, intervals=Intervals(
            reconcile=1e9, tokens=1e9, channels=1e9, presence=1e9))
        self.served: list[str] = []
        self._stop = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._calls_before = 0

    async def __aenter__(self) -> PushServer:
        self._calls_before = self.demo.world.api_calls()
        self._task = asyncio.create_task(self.runner.run(self._stop))
        return self

    def _served(self, outcome: jobs.SyncOutcome) -> None:
        self.served.append(outcome.user)
        self.demo.results.extend(outcome.results)

    async def settle(self, wait: float = 20.0) -> None:
        """Until nobody has been due for a moment (notifications about the syncs' own writes included)."""
        loop = asyncio.get_running_loop()
        deadline, quiet = loop.time() + wait, 0
        while loop.time() < deadline and quiet < 5:
            quiet = quiet + 1 if not due.pending(self.demo.ctx) else 0
            await asyncio.sleep(0.2)

    async def __aexit__(self, *_exc: Any) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task
        self.demo.sync_api_calls += self.demo.world.api_calls() - self._calls_before

    def report(self) -> dict[str, Any]:
        world = self.demo.world
        samples = propagation.summary(self.demo.ctx).get("sync", {})
        return {"people_synced": len(self.served),
                "notifications": sum(len(s.outbox.sent) for s in (world.zoom, world.google, world.graph)),
                "still_due": len(due.pending(self.demo.ctx)),
                "propagation_ms": {k: {"p50": v["p50"], "p99": v["p99"], "count": v["count"]}
                                   for k, v in samples.items() if v.get("count")}}


async def run_once(settings: Settings, console: Console, quiet: bool = False) -> dict[str, Any]:
    demo = await setup(settings)
    try:
        def say(text: str) -> None:
            if not quiet:
                console.print(text)

        say(f"[bold]zoomcal demo[/] — sandboxes at {demo.server.url}, {len(demo.users)} demo users")
        await person.seed(demo.actor, demo.users)
        results = await sync_all(demo, "demo:round-1")
        say(f"round 1: {sum(r.writes for r in results)} writes, status {sorted({r.status for r in results})}")
        booked, talk = book_with_guests(demo)
        say(f"{booked.user} booked a Zoom meeting at {booked.start} with guests: Google invites them once it has "
            f"its link; {talk.user} booked a talk on Exchange with a guest, who is invited by zoomcal's e-mail")
        async with PushServer(demo) as push:
            for step in await person.scenario(demo.actor, demo.users):
                say(f"  • {step}")
            await push.settle()
        pushed = push.report()
        say(f"pushed: {pushed['notifications']} notifications -> {pushed['people_synced']} people synced, no polling"
            + "".join(f"; {k}: edit -> other side p50 {v['p50']} ms, p99 {v['p99']} ms"
                      for k, v in pushed["propagation_ms"].items()))
        results = await sync_all(demo, "demo:round-2")
        say(f"reconciliation round: {sum(r.writes for r in results)} writes (what push left, and what the "
            f"injected faults broke), status {sorted({r.status for r in results})}")
        demo.world.clear_faults()
        calls_before = demo.sync_api_calls
        results = await sync_all(demo, "demo:verify")
        resync_writes = sum(r.writes for r in results)
        say(f"verification round: {resync_writes} writes, {demo.sync_api_calls - calls_before} API calls")
        sent = invitations.deliver(demo.ctx).sent
        say(f"invitations: {sent} e-mail(s) sent by zoomcal (the demo's mail server holds "
            f"{len(demo.mail.received)}); {len(demo.world.google.guest_mail)} sent by Google")
        attached = await polls.attach_waiting(demo.ctx)
        say(f"polls: {attached['created']} put on the booked Zoom meeting")
        outcomes = await demo.presence.start(demo.ctx.now())
        for outcome in outcomes:
            say(f"presence {outcome.user}: {outcome.decision.reason}")
        directory = await show_contacts(demo, say)
        return summary(demo, {"polls_created": attached["created"], "resync_writes": resync_writes,
                              "contacts": directory,
                              "presence": person.presence_of(demo.actor, demo.users),
                              "presence_writes": demo.presence.writes, "push": pushed})
    finally:
        await close(demo)


GUESTS = ("guest@partner.example",)


async def show_contacts(demo: DemoSetup, say: Callable[[str], None]) -> dict[str, Any]:
    """The directory from Zoom's users and the first person's Google and Microsoft 365 contacts: a few people with
    their live status, and what could not be mapped."""
    report = await contacts.sync(demo.ctx)
    people = contacts.list_people(demo.ctx)
    say(f"contacts: {report.sources} sources -> {report.people} people ({report.problems} records unmapped, in the "
        f"review queue with their reasons; {report.suggestions} name matches to review)")
    shown = sorted(people, key=lambda p: (not p.status, p.name))[:5]
    for p in shown:
        say(f"  • {p.name} <{p.email}> — {p.status or 'no status'}"
            + (f" ({p.status_from})" if p.status else "") + f" — from {', '.join(p.sources)}")
    return {"people": report.people, "sources": report.sources, "unmapped": report.problems,
            "with_status": sum(1 for p in people if p.status),
            "shown": [{"name": p.name, "email": p.email, "status": p.status} for p in shown]}


def book_with_guests(demo: DemoSetup) -> tuple[availability.Booked, availability.Booked]:
    """The first person (on Google, which invites an event's guests itself) books a Zoom meeting with the second
    person and an outside guest; the first person whose calendar does not invite (Exchange here) books a talk with a
    guest, whom zoomcal invites by e-mail. Each at the organizer's first free half hour tomorrow."""
    host, other = demo.users[0], demo.users[1]
    from zoomcal.connectors import registry

    exchange = next(u for u in demo.users if not registry.get(u["provider"]).capabilities.sends_invitations)

    def first_free(email: str) -> datetime:
        day = (demo.ctx.now() + timedelta(days=1)).date()
        free = availability.slots(demo.ctx, [email], 1800, datetime(day.year, day.month, day.day, 6),
                                  datetime(day.year, day.month, day.day, 22), 1800).slots
        return datetime.fromisoformat(free[0]["start"])

    start = first_free(host["email"])
    kickoff = availability.book(demo.ctx, host["email"], start, start + timedelta(minutes=30), "Project kickoff",
                                attendees=[other["email"], *GUESTS], zoom=True,
                                description="Agenda: scope, people, dates.",
                                poll=polls.poll_body("Kickoff", [polls.parse_question(
                                    "Which first? = Scope | People | Dates")]))
    start = first_free(exchange["email"])
    talk = availability.book(demo.ctx, exchange["email"], start, start + timedelta(minutes=30), "Supplier call",
                             attendees=list(GUESTS), description="Prices for next year.")
    return kickoff, talk


def _table(demo: DemoSetup, round_no: int, last_edit: str) -> Table:
    table = Table(title=f"zoomcal demo — round {round_no} — sandboxes at {demo.server.url}")
    for column in ("user", "calendar", "Zoom meetings", "calendar events", "in sync", "duplicates", "presence",
                   "last run"):
        table.add_column(column)
    presence = person.presence_of(demo.actor, demo.users)
    for user in demo.users:
        agreement = agreement_of(demo.actor, user)
        table.add_row(user["email"], person.calendar_name(user), str(agreement.zoom_meetings),
                      str(agreement.calendar_events),
                      "yes" if not agreement.mismatches else f"no ({len(agreement.mismatches)})",
                      str(len(agreement.duplicates)), presence[user["email"]],
                      demo.last_status.get(user["email"], "-"))
    table.caption = f"last edit: {last_edit} · zoomcal API calls so far: {demo.sync_api_calls} · Ctrl-C stops"
    return table


def _line(demo: DemoSetup, round_no: int, last_edit: str, results: list[sync.PairResult]) -> str:
    agreements = [agreement_of(demo.actor, user) for user in demo.users]
    in_sync = sum(1 for a in agreements if not a.mismatches and not a.duplicates)
    return (f"round {round_no}: {sum(r.writes for r in results)} writes, {in_sync}/{len(agreements)} people in sync, "
            f"{sum(len(a.duplicates) for a in agreements)} duplicates; last edit: {last_edit}")


async def run_live(settings: Settings, console: Console, interval: float = 3.0, rounds: int | None = None) -> None:
    demo = await setup(settings)
    rng = random.Random(42)
    try:
        await person.seed(demo.actor, demo.users)
        await contacts.sync(demo.ctx)            # the portal's directory has people from the start
        console.print(f"portal: {portal_link(demo)} (signs you in as {demo.users[0]['email']}, the demo's admin)",
                      markup=False, highlight=False, soft_wrap=True)
        last_edit = "seeded demo data"
        # a terminal gets a table redrawn in place; a pipe or a log file gets one plain line per round
        live = Live(console=console, refresh_per_second=4) if console.is_terminal else None
        with live if live is not None else contextlib.nullcontext():
            round_no = 0
            while rounds is None or round_no < rounds:
                round_no += 1
                results = await sync_all(demo, f"demo:live-{round_no}")
                if round_no == 1:
                    await demo.presence.start(demo.ctx.now())
                else:
                    await demo.presence.run_due(demo.ctx.now())
                if live is not None:
                    live.update(_table(demo, round_no, last_edit))
                else:
                    console.print(_line(demo, round_no, last_edit, results), markup=False, highlight=False,
                                  soft_wrap=True)
                await asyncio.sleep(interval)
                last_edit = await person.random_edit(demo.actor, demo.users, rng)
    finally:
        await close(demo)
