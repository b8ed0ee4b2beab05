"""The sandbox world: Zoom, Google, Microsoft Graph and Exchange (EWS) emulators, their fault plans and call
counters, and demo users.

Served standalone by `zoomcal sandbox` (over loopback) or called in-process through `SandboxTransport`
in tests and the demo: the same connector code either way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
from fastapi import APIRouter, FastAPI, Request, Response

from zoomcal.sandbox.common import Meter
from zoomcal.sandbox.ews import EwsState, make_ews_app
from zoomcal.sandbox.faults import FaultMiddleware, FaultPlan, SandboxTransport
from zoomcal.sandbox.google import PROJECT_PER_MINUTE, USER_PER_MINUTE, GoogleState, make_google_app
from zoomcal.sandbox.graph import MAILBOX_LIMIT, GraphState, make_graph_app
from zoomcal.sandbox.zoom import ZoomState, make_zoom_app
from zoomcal.sandbox.zoom_calendar import ZoomCalendarState, make_zoom_calendar_app

ZOOM_PREFIX = "/zoom"
GOOGLE_PREFIX = "/google"
GRAPH_PREFIX = "/graph"
EWS_PREFIX = "/ews"


@dataclass
class SandboxWorld:
    zoom: ZoomState = field(default_factory=ZoomState)
    google: GoogleState = field(default_factory=GoogleState)
    graph: GraphState = field(default_factory=GraphState)
    ews: EwsState = field(default_factory=EwsState)
    zoom_calendar: ZoomCalendarState = field(default_factory=ZoomCalendarState)
    zoom_faults: FaultPlan = field(default_factory=FaultPlan)
    google_faults: FaultPlan = field(default_factory=FaultPlan)
    graph_faults: FaultPlan = field(default_factory=FaultPlan)
    zoom_calendar_faults: FaultPlan = field(default_factory=FaultPlan)
    zoom_calls: dict[str, int] = field(default_factory=dict)
    google_calls: dict[str, int] = field(default_factory=dict)
    graph_calls: dict[str, int] = field(default_factory=dict)
    zoom_calendar_calls: dict[str, int] = field(default_factory=dict)
    feeds: dict[str, str] = field(default_factory=dict)          # name -> ICS text served at /feeds/{name}.ics
    feed_calls: dict[str, int] = field(default_factory=dict)
    _apps: dict[bool, FastAPI] = field(default_factory=dict)

    def app(self, over_network: bool = False) -> FastAPI:
        """The combined ASGI app; `over_network` makes timeouts and lost responses hang up the connection."""
        if over_network not in self._apps:
            root = FastAPI(title="zoomcal sandboxes")
            root.include_router(self._feeds())
            root.mount(ZOOM_PREFIX + "/v2/calendars", FaultMiddleware(
                make_zoom_calendar_app(self.zoom, self.zoom_calendar), self.zoom_calendar_faults,
                self.zoom_calendar_calls, over_network))
            root.mount(ZOOM_PREFIX, FaultMiddleware(make_zoom_app(self.zoom), self.zoom_faults, self.zoom_calls,
                                                    over_network))
            root.mount(GOOGLE_PREFIX, FaultMiddleware(make_google_app(self.google), self.google_faults,
                                                      self.google_calls, over_network))
            root.mount(GRAPH_PREFIX, FaultMiddleware(make_graph_app(self.graph), self.graph_faults, self.graph_calls,
                                                     over_network))
            root.mount(EWS_PREFIX, make_ews_app(self.ews))
            self._apps[over_network] = root
        return self._apps[over_network]

    def _feeds(self):
        """ICS feeds at /feeds/{name}.ics with an ETag (304 on If-None-Match), as calendar publishers serve them."""
        router = APIRouter()

        @router.get("/feeds/{name}.ics")
        def feed(name: str, request: Request):
            text = self.feeds.get(name)
            if text is None:
                return Response(status_code=404)
            self.feed_calls[name] = self.feed_calls.get(name, 0) + 1
            etag = '"' + hashlib.blake2b(text.encode(), digest_size=8).hexdigest() + '"'
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            return Response(text, media_type="text/calendar", headers={"ETag": etag})

        return router

    def transport(self) -> httpx.AsyncBaseTransport:
        return SandboxTransport(self.app())

    def add_user(self, email: str, name: str = "", timezone: str = "UTC") -> dict[str, Any]:
        first, _, last = name.partition(" ")
        user = self.zoom.add_user(email, first, last, timezone)
        self.google.add_calendar(email, timezone, summary=name or email)
        graph_calendar = self.graph.add_calendar(email)
        ews_password = self.ews.add_mailbox(email, name=name or None)
        self.zoom_calendar.add_calendar(email, timezone)
        # the directories know them, and their address books start with a few contacts
        self.google.people.seed(email, name)
        graph_user = self.graph.directory.seed(email, name)
        return {
            "email": email,
            "name": name,
            "timezone": timezone,
            "zoom_user_id": user["id"],
            "zoom_refresh_token": self.zoom.tokens.grant_refresh(user["id"]),
            "google_calendar_id": email,
            "google_refresh_token": self.google.tokens.grant_refresh(email),
            "graph_calendar_id": f"{email}/{graph_calendar}",
            "graph_refresh_token": self.graph.tokens.grant_refresh(email),
            "graph_user_id": graph_user["id"],
            "ews_password": ews_password,
        }

    def describe(self, base_url: str, users: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "zoom_api_base": f"{base_url}{ZOOM_PREFIX}/v2",
            "zoom_token_url": f"{base_url}{ZOOM_PREFIX}/oauth/token",
            "google_api_base": f"{base_url}{GOOGLE_PREFIX}/calendar/v3",
            "google_token_url": f"{base_url}{GOOGLE_PREFIX}/token",
            "google_people_api_base": f"{base_url}{GOOGLE_PREFIX}/people",
            "zoom_account_id": self.zoom.account_id,
            "zoom_client_id": self.zoom.client_id,
            "zoom_client_secret": self.zoom.client_secret,
            "google_client_id": self.google.client_id,
            "google_client_secret": self.google.client_secret,
            "graph_api_base": f"{base_url}{GRAPH_PREFIX}/v1.0",
            "graph_token_url": f"{base_url}{GRAPH_PREFIX}/oauth2/v2.0/token",
            "graph_client_id": self.graph.client_id,
            "graph_client_secret": self.graph.client_secret,
            "graph_login_base": f"{base_url}{GRAPH_PREFIX}",
            "ews_url": f"{base_url}{EWS_PREFIX}/EWS/Exchange.asmx",
            # zoomcal refuses Exchange and CalDAV servers on private addresses unless told they are on-premises
            "env": {"ZOOMCAL_ALLOW_PRIVATE_URLS": "true"},
            "users": [{**user, "link": self.link_commands(user, base_url),
                       "contacts_link": {r["provider"]: _command(r, user["email"])
                                         for r in self.contact_link_requests(user, base_url)}} for user in users],
        }

    def link_commands(self, info: dict[str, Any], base_url: str) -> dict[str, str]:
        """The `zoomcal account add` line that links each of a sandbox user's accounts by hand: Zoom, then each
        calendar. Secrets go through environment variables, as zoomcal takes them."""
        requests = [self.link_requests(info, base_url, calendar)[i]
                    for i, calendar in ((0, "google"), (1, "google"), (1, "graph"), (1, "ews"))]
        zoom = requests[0]
        requests.append({"provider": "zoom-calendar", "secrets": zoom["secrets"],
                         "options": {k: v for k, v in zoom["options"].items() if k != "zoom_user"}})
        return {request["provider"]: _command(request, info["email"]) for request in requests}

    def link_requests(self, info: dict[str, Any], base_url: str, calendar: str) -> list[dict[str, Any]]:
        """What an admin would type to link a sandbox user's Zoom account (server-to-server) and their calendar
        (`calendar`: google, graph or ews): provider, options and secrets."""
        zoom = {"provider": "zoom", "options": {"client_id": self.zoom.client_id, "account_id": self.zoom.account_id,
                                                 "zoom_user": info["zoom_user_id"],
                                                 "api_base": f"{base_url}{ZOOM_PREFIX}/v2",
                                                 "token_url": f"{base_url}{ZOOM_PREFIX}/oauth/token"},
                "secrets": {"client_secret": self.zoom.client_secret}}
        mailbox, _, graph_calendar = info["graph_calendar_id"].partition("/")
        calendars = {
            "google": {"options": {"client_id": self.google.client_id, "calendar_id": info["google_calendar_id"],
                                   "api_base": f"{base_url}{GOOGLE_PREFIX}/calendar/v3",
                                   "token_url": f"{base_url}{GOOGLE_PREFIX}/token"},
                       "secrets": {"client_secret": self.google.client_secret,
                                   "refresh_token": info["google_refresh_token"]}},
            "graph": {"options": {"client_id": self.graph.client_id, "mailbox": mailbox,
                                  "calendar_id": graph_calendar, "api_base": f"{base_url}{GRAPH_PREFIX}/v1.0",
                                  "token_url": f"{base_url}{GRAPH_PREFIX}/oauth2/v2.0/token"},
                      "secrets": {"client_secret": self.graph.client_secret,
                                  "refresh_token": info["graph_refresh_token"]}},
            "ews": {"options": {"url": f"{base_url}{EWS_PREFIX}/EWS/Exchange.asmx", "username": info["email"],
                                "auth": "basic"},
                    "secrets": {"password": info["ews_password"]}},
        }
        return [zoom, {"provider": calendar, **calendars[calendar]}]

    def contact_link_requests(self, info: dict[str, Any], base_url: str,
                              features: dict[str, str] | None = None) -> list[dict[str, Any]]:
        """What an admin would type to link a sandbox user's contact sources (Google People, Microsoft Graph):
        provider, options and secrets. `features` picks the collections read per provider (default: the
        provider's own default)."""
        features = features or {}
        google = {"client_id": self.google.client_id, "api_base": f"{base_url}{GOOGLE_PREFIX}/people",
                  "token_url": f"{base_url}{GOOGLE_PREFIX}/token", "features": features.get("google-contacts", "")}
        graph = {"client_id": self.graph.client_id, "mailbox": info["email"],
                 "api_base": f"{base_url}{GRAPH_PREFIX}/v1.0",
                 "token_url": f"{base_url}{GRAPH_PREFIX}/oauth2/v2.0/token",
                 "features": features.get("graph-contacts", "")}
        return [{"provider": "google-contacts", "options": {k: v for k, v in google.items() if v},
                 "secrets": {"client_secret": self.google.client_secret,
                             "refresh_token": self.google.tokens.grant_refresh(info["email"])}},
                {"provider": "graph-contacts", "options": {k: v for k, v in graph.items() if v},
                 "secrets": {"client_secret": self.graph.client_secret,
                             "refresh_token": self.graph.tokens.grant_refresh(info["email"])}}]

    def api_calls(self) -> int:
        """Calls to the data APIs (reads and writes, and EWS operations), not counting the OAuth token endpoints."""
        return sum(c.get(k, 0) for c in (self.zoom_calls, self.google_calls, self.graph_calls,
                                         self.zoom_calendar_calls) for k in ("reads", "writes")) + \
            sum(self.ews.requests.values())

    def enforce_published_limits(self, zoom_plan: str = "pro") -> None:
        """Every vendor's published rate limits on: Zoom's per-second ones for the account's plan (its daily meeting
        writes per user are always on), Google's per user and per project minute, Graph's per mailbox."""
        self.zoom.rate_plan = zoom_plan
        self.google.per_user_per_minute, self.google.per_project_per_minute = USER_PER_MINUTE, PROJECT_PER_MINUTE
        self.graph.per_mailbox = MAILBOX_LIMIT

    def use_clock(self, seconds: Callable[[], float], wall: Callable[[], datetime]) -> None:
        """Judge rate windows by `seconds` and UTC days by `wall` (a driven clock instead of the machine's)."""
        self.zoom.clock, self.zoom.wall_clock = seconds, wall
        self.google.clock = seconds
        self.graph.clock = seconds
        self.google.people.clock = self.graph.directory.clock = lambda: wall().timestamp()

    def meters(self) -> dict[str, Meter]:
        """What apps asked of each metered vendor, per user."""
        return {"zoom": self.zoom.meter, "google": self.google.meter, "graph": self.graph.meter}

    def fault_plans(self) -> tuple[FaultPlan, ...]:
        """The fault plan of every sandbox served through FaultMiddleware."""
        return self.zoom_faults, self.google_faults, self.graph_faults, self.zoom_calendar_faults

    def clear_faults(self) -> None:
        for plan in self.fault_plans():
            plan.clear()


# provider options that have a flag of their own on `zoomcal account add` (the rest go through --option)
FLAGS = ("client_id", "url", "username", "auth", "account_id", "zoom_user", "calendar_id", "mailbox", "api_base",
         "token_url")


def _command(request: dict[str, Any], email: str) -> str:
    env = " ".join(f"{name.upper()}={value}" for name, value in request["secrets"].items())
    if request["provider"] == "ews":
        env = f"ZOOMCAL_ALLOW_PRIVATE_URLS=true {env}"
    flags = [f"--{name.replace('_', '-')} {value}" if name in FLAGS else f"--option {name}={value}"
             for name, value in request["options"].items() if value]
    flags += [f"--{name.replace('_', '-')}-env {name.upper()}" for name in request["secrets"]]
    return f"{env} zoomcal account add {request['provider']} --user {email} {' '.join(flags)}"


DEMO_USERS = [   # e-mail, name, zone, the calendar that receives their meetings
    ("ada@example.com", "Ada Lovelace", "Europe/London", "google"),
    ("grace@example.com", "Grace Hopper", "America/New_York", "graph"),
    ("alan@example.com", "Alan Turing", "Europe/Berlin", "google"),
    ("katherine@example.com", "Katherine Johnson", "America/Chicago", "ews"),
]
