"""The portal's pages: server-rendered (Jinja2), every form working without JavaScript; a small script of its own
updates pages live (the dashboard from the session's event stream, contacts as a person types) and warns when the
browser's clock is off. Every page calls `zoomcal.app`: routes translate and render, nothing else.

Security: the session token lives in a `__Host-` cookie (Secure, HttpOnly, SameSite=Lax, Path=/) — or, served over
plain HTTP on a loopback address, where browsers may drop Secure cookies, in a host-only HttpOnly SameSite=Lax one
(a public address over plain HTTP cannot sign in at all); each form
carries the session's CSRF token (the sign-in form a pre-session one, double-submitted with its own cookie), and
a POST whose Origin is another site's is refused. Every page is sent with a Content-Security-Policy that allows no
inline script or style, HSTS, no framing, no sniffing and no caching. The tenant comes from the session alone."""

from __future__ import annotations

import asyncio
import base64
import functools
import hmac
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit
from zoneinfo import ZoneInfo

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles

from zoomcal.app import accounts as app_accounts
from zoomcal.app import audit as app_audit
from zoomcal.app import availability as app_availability
from zoomcal.app import contacts, federated, feed, signin
from zoomcal.app import history as app_history
from zoomcal.app import polls as app_polls
from zoomcal.app import presence as app_presence
from zoomcal.app import propagation as app_propagation
from zoomcal.app import settings as app_settings
from zoomcal.app import sync as app_sync
from zoomcal.app import users as app_users
from zoomcal.app.availability import user_zone
from zoomcal.app.context import AppContext, Services
from zoomcal.app.errors import (
    AppError,
    ConflictError,
    ForbiddenError,
    InvalidError,
    NotFoundError,
    NotSignedInError,
    ThrottledError,
)
from zoomcal.availability.intervals import as_utc
from zoomcal.lazy import lazy

jinja2 = lazy("jinja2")
HERE = Path(__file__).parent
COOKIE = "__Host-zoomcal"
PRE_COOKIE = "__Host-zoomcal-pre"       # the sign-in form's CSRF token, before there is a session
AWAY_COOKIE = "__Host-zoomcal-away"     # a sign-in at Zoom, Google or Microsoft under way (sealed)
# over plain HTTP on a loopback address (`zoomcal serve` on one machine, the demo) a browser may refuse a Secure
# cookie — WebKit does — so there the cookies are neither Secure nor __Host- (which requires Secure)
LOCAL_COOKIE, LOCAL_PRE_COOKIE, LOCAL_AWAY_COOKIE = "zoomcal-session", "zoomcal-pre", "zoomcal-away"
SESSION, PRE, AWAY = 0, 1, 2            # which cookie (`cookie_names`, `set_cookie`, `drop_cookie`)
NEEDS_HTTPS = ("the portal signs in over HTTPS only (or on a loopback address): put it behind an HTTPS proxy and "
               "set ZOOMCAL_PUBLIC_URL to its address")
MAX_FORM = 16 * 1024
MAX_FIELDS = 200
STILL_SIGNED_IN = 15.0      # seconds between the live stream's checks that its session still holds
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "Strict-Transport-Security": "max-age=31536000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}
NAV = (("/", "Dashboard", False), ("/schedule", "Schedule", False), ("/accounts", "Accounts", False),
       ("/availability", "Availability", False), ("/contacts", "Contacts", False), ("/log", "Sync log", False),
       ("/audit", "Audit", True))     # (path, label, admins only)


def _environment():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=jinja2.select_autoescape(("html",)), trim_blocks=True, lstrip_blocks=True)
    return env


class FormTooLarge(AppError):
    kind = "too_large"


def _safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site only."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _client(request: Request) -> str:
    return request.client.host if request.client else "?"


def _same_origin(request: Request, public_url: str | None = None) -> bool:
    """A POST from a page of this site — its scheme, host and port (or the public address it is served at) — or
    from a client that names no origin at all."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    given = urlsplit(origin)
    here = {(request.url.scheme, request.headers.get("host", ""))}
    if public_url:
        public = urlsplit(public_url)
        here.add((public.scheme, public.netloc))
    return (given.scheme, given.netloc) in here


def _plain_local(request: Request) -> bool:
    """Plain HTTP to a server listening on a loopback address (whatever the Host header says): the one place where
    the cookies cannot be Secure."""
    from zoomcal.web.app import is_loopback

    server = request.scope.get("server")
    return request.url.scheme == "http" and is_loopback(server[0] if server else None)


def cookie_names(request: Request) -> tuple[str, str, str]:
    """The names of the session cookie, the sign-in form's cookie and the cookie of a sign-in under way elsewhere,
    for this request."""
    return (LOCAL_COOKIE, LOCAL_PRE_COOKIE, LOCAL_AWAY_COOKIE) if _plain_local(request) else \
        (COOKIE, PRE_COOKIE, AWAY_COOKIE)


def _no_secure_channel(request: Request) -> bool:
    """Plain HTTP to a public address: a Secure cookie would never come back, so sign-in says why instead."""
    return request.url.scheme != "https" and not _plain_local(request)


class Page:
    """What a template gets about the viewer: who they are, their zone, their CSRF token."""

    def __init__(self, who: signin.SignedIn | None, zone: str = "UTC"):
        self.who = who
        self.zone = zone

    def local(self, value: datetime | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None:
            return "—"
        value = as_utc(value)
        try:
            return value.astimezone(ZoneInfo(self.zone)).strftime(fmt)
        except (KeyError, ValueError):
            return value.astimezone(UTC).strftime(fmt) + " UTC"


def router(services: Services, clock: Callable[[], float]) -> APIRouter:
    templates = _environment()
    api = APIRouter()

    def render(request: Request, template: str, page: Page, status: int = 200, **values: Any) -> HTMLResponse:
        body = templates.get_template(template).render(
            page=page, who=page.who, nav=NAV, path=request.url.path, server_ms=int(clock() * 1000), **values)
        return secure(HTMLResponse(body, status_code=status))

    def away(request: Request, url: str, label: str, page: Page | None = None) -> HTMLResponse:
        """The way to another site's sign-in page: a page holding the link, which the portal's script follows at
        once (without script, one click). Not a redirect: a browser holds the redirect of a form to the policy's
        `form-action 'self'`, which another site's page is not (Chromium and WebKit refuse it)."""
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise InvalidError(f"{label}'s sign-in address is not a web address", field="provider")
        return render(request, "away.html", page or Page(None), status=200, url=url, label=label, host=parts.netloc)

    def signed_in(request: Request) -> signin.SignedIn:
        return signin.current(services, request.cookies.get(cookie_names(request)[SESSION]))

    async def viewer(request: Request) -> tuple[signin.SignedIn, AppContext, Page]:
        who = await asyncio.to_thread(signed_in, request)
        ctx = await asyncio.to_thread(signin.context, services, who)
        try:
            zone = await asyncio.to_thread(user_zone, ctx, who.email)
        except AppError:
            zone = "UTC"
        return who, ctx, Page(who, zone)

    def to_sign_in(request: Request) -> Response:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        response = RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        return secure(response)

    async def form(request: Request) -> dict[str, str]:
        """A form's fields (URL-encoded, as every portal form sends them), read no further than MAX_FORM bytes
        whatever the request says of its length."""
        if int(request.headers.get("content-length") or 0) > MAX_FORM:
            raise FormTooLarge("the form is too large")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > MAX_FORM:
                raise FormTooLarge("the form is too large")
        kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            return {}
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
        except (UnicodeDecodeError, ValueError):
            return {}
        return dict(pairs)

    def back_here(request: Request) -> str:
        """Where a provider sends the browser back to: the public address, unless the browser came to a loopback
        server over plain HTTP (one machine, the demo) — then right back there."""
        if _plain_local(request) or not services.settings.public_url:
            return f"{request.url.scheme}://{request.url.netloc}"
        return services.settings.public_url.rstrip("/")

    def ours(request: Request) -> bool:
        return _same_origin(request, services.settings.public_url)

    def checked(request: Request, who: signin.SignedIn, values: dict[str, str]) -> None:
        given = values.get("csrf", "")
        if not ours(request) or not hmac.compare_digest(given.encode(), who.csrf.encode()):
            raise ForbiddenError("the form has expired or came from another site: reload the page and try again")

    # --- signing in ---------------------------------------------------------------------------------------------
    def sign_in_form(request: Request, *, status: int = 200, keep: bool = False, template: str = "login.html",
                     **values: Any) -> HTMLResponse:
        """A page with a sign-in form and its own CSRF token, double-submitted with a cookie: the one the browser
        holds (`keep`), else a fresh one (after each refusal)."""
        pre = (request.cookies.get(cookie_names(request)[PRE]) if keep else None) or secrets.token_urlsafe(32)
        shown = {"next": "/", "error": None, "field": None, "email": "", "tenant": "",
                 "providers": [(p, federated.LABELS[p]) for p in federated.ready(services)], **values}
        response = render(request, template, Page(None), status=status, pre=pre, **shown)
        set_cookie(request, response, PRE, pre, max_age=3600)
        return response

    def at_most_a_form(handler):
        """A sign-in route: a body larger than a form is a 413 (the signed-in pages say it on their page)."""
        @functools.wraps(handler)
        async def wrapped(request: Request):
            try:
                return await handler(request)
            except FormTooLarge as exc:
                return secure(HTMLResponse(exc.message, status_code=413))
        return wrapped

    async def pre_form(request: Request) -> tuple[dict[str, str], bool]:
        """A sign-in form's fields, and whether it carries its own token and came from this site."""
        values = await form(request)
        pre = request.cookies.get(cookie_names(request)[PRE], "")
        fine = bool(pre) and not _no_secure_channel(request) and ours(request) and \
            hmac.compare_digest(values.get("csrf", "").encode(), pre.encode())
        return values, fine

    def started_session(request: Request, started: signin.Started, target: str) -> Response:
        response = secure(RedirectResponse(target, status_code=303))
        set_cookie(request, response, SESSION, started.token, max_age=int(signin.LIFETIME.total_seconds()))
        drop_cookie(request, response, PRE)
        return response

    @api.get("/login")
    async def login_page(request: Request, next: str | None = None):
        try:
            await asyncio.to_thread(signed_in, request)
            return secure(RedirectResponse(_safe_next(next), status_code=303))
        except NotSignedInError:
            pass
        return sign_in_form(request, keep=True, next=_safe_next(next),
                            error=NEEDS_HTTPS if _no_secure_channel(request) else None)

    @api.post("/login")
    @at_most_a_form
    async def login(request: Request):
        values, fine = await pre_form(request)
        target = _safe_next(values.get("next"))
        email, tenant = values.get("email", "")[:320], values.get("tenant", "")[:200]

        def again(message: str, field: str | None, status: int) -> HTMLResponse:
            return sign_in_form(request, status=status, next=target, error=message, field=field, email=email,
                                tenant=tenant)

        if _no_secure_channel(request):
            return again(NEEDS_HTTPS, None, 403)
        if not fine:
            return again("The form had expired: please sign in again.", None, 403)
        try:
            started = await asyncio.to_thread(signin.sign_in, services, email, values.get("password", ""),
                                              client=_client(request), tenant=tenant or None)
        except ThrottledError as exc:
            response = again(exc.message, None, 429)
            response.headers["Retry-After"] = str(exc.details.get("retry_after", 60))
            return response
        except AppError as exc:
            return again(exc.message, exc.field, 401 if exc.field != "tenant" else 400)
        return started_session(request, started, target)

    @api.get("/login/link")
    async def link_page(request: Request, t: str | None = None):
        """What a one-time link does, asked before it is used (a link a mail scanner opens is not spent)."""
        try:
            email, name, tenant = await asyncio.to_thread(signin.link_holder, services, t)
        except NotSignedInError as exc:
            return sign_in_form(request, status=410, keep=True, error=exc.message)
        return sign_in_form(request, keep=True, template="link.html", token=t, email=email, name=name,
                            tenant=tenant)

    @api.post("/login/link")
    @at_most_a_form
    async def link_use(request: Request):
        values, fine = await pre_form(request)
        if not fine:
            return secure(RedirectResponse(f"/login/link?t={quote(values.get('t', '')[:200], safe='')}",
                                           status_code=303))
        try:
            started = await asyncio.to_thread(signin.sign_in_with_link, services, values.get("t"),
                                              client=_client(request))
        except NotSignedInError as exc:
            return sign_in_form(request, status=410, error=exc.message)
        return started_session(request, started, "/")

    @api.post("/login/{provider}")
    @at_most_a_form
    async def away_start(request: Request):
        """Sign in with Zoom, Google or Microsoft: off to their sign-in page; the browser keeps (sealed, for ten
        minutes) what checks the answer that comes back to /login/{provider}/callback."""
        provider = request.path_params["provider"]
        values, fine = await pre_form(request)
        if not fine:
            return sign_in_form(request, status=403, error="The form had expired: please sign in again.")
        if provider not in federated.PROVIDERS:
            return sign_in_form(request, status=404, error="There is no such way to sign in.")
        try:
            url, sealed = await federated.begin(services, provider, f"{back_here(request)}/login/{provider}/callback",
                                                values.get("email", ""))
            response = away(request, url, federated.LABELS[provider])
        except AppError as exc:
            return sign_in_form(request, status=400, error=exc.message)
        set_cookie(request, response, AWAY, base64.urlsafe_b64encode(sealed).decode(),
                   max_age=int(federated.PENDING.total_seconds()))
        return response

    @api.get("/login/{provider}/callback")
    async def away_back(request: Request):
        provider = request.path_params["provider"]
        kept = request.cookies.get(cookie_names(request)[AWAY], "")
        try:
            sealed = base64.urlsafe_b64decode(kept.encode()) if kept else None
        except ValueError:
            sealed = None
        answer = {k: v[:4000] for k, v in request.query_params.items()}
        try:
            if provider not in federated.PROVIDERS:
                raise NotSignedInError("there is no such way to sign in")
            started = await federated.finish(services, provider, answer, sealed, client=_client(request))
        except NotSignedInError as exc:
            response = sign_in_form(request, status=401, error=exc.message)
        else:
            response = started_session(request, started, "/")
        drop_cookie(request, response, AWAY)
        return response

    @api.post("/logout")
    async def logout(request: Request):
        try:
            who = await asyncio.to_thread(signed_in, request)
            checked(request, who, await form(request))
        except NotSignedInError:
            return to_sign_in(request)
        except AppError as exc:
            return secure(HTMLResponse(exc.message, status_code=403))
        await asyncio.to_thread(signin.sign_out, services, request.cookies.get(cookie_names(request)[SESSION]))
        response = secure(RedirectResponse("/login", status_code=303))
        drop_cookie(request, response, SESSION)
        return response

    # --- pages --------------------------------------------------------------------------------------------------
    def page(handler):
        """A signed-in page: who is asking, or the sign-in form; an application error shown on the page."""
        async def wrapped(request: Request):
            try:
                who, ctx, view = await viewer(request)
            except NotSignedInError:
                if request.headers.get("x-zoomcal-partial"):
                    return secure(JSONResponse({"error": "unauthenticated"}, status_code=401))
                return to_sign_in(request)
            try:
                return await handler(request, who, ctx, view)
            except ForbiddenError as exc:
                return render(request, "error.html", view, status=403, message=exc.message)
            except NotFoundError as exc:
                return render(request, "error.html", view, status=404, message=exc.message)
            except FormTooLarge as exc:
                return render(request, "error.html", view, status=413, message=exc.message)
            except OverflowError:
                return render(request, "error.html", view, status=400, message="a number or a date is out of range")
            except AppError as exc:
                return render(request, "error.html", view, status=400, message=exc.message)
        wrapped.__name__ = handler.__name__
        return wrapped

    async def dashboard(request, who, ctx, view):
        overview = await asyncio.to_thread(app_sync.overview, ctx)
        accounts = await asyncio.to_thread(_accounts, ctx, who)
        reviews = sum(u.review_queue for u in overview.users)
        partial = request.headers.get("x-zoomcal-partial") == "dashboard"
        return render(request, "dashboard_body.html" if partial else "dashboard.html", view,
                      overview=overview, accounts=accounts, reviews=reviews,
                      percentiles=app_propagation.PERCENTILES)

    async def people(request, who, ctx, view, scopes: dict | None = None):
        text = (request.query_params.get("q") or "").strip()[:200]
        try:
            offset = max(0, int(request.query_params.get("offset") or 0))
        except ValueError:
            offset = 0
        if text:
            found = await asyncio.to_thread(contacts.search, ctx, text, 25)
        else:
            found = await asyncio.to_thread(contacts.list_people, ctx, limit=50, offset=offset)
        partial = request.headers.get("x-zoomcal-partial") == "contacts"
        sources = await asyncio.to_thread(contacts.sources, ctx) if who.is_admin and not partial else []
        return render(request, "contacts_rows.html" if partial else "contacts.html", view, people=found, q=text,
                      offset=offset, more=not text and len(found) == 50, sources=sources, scopes=scopes)

    async def contact_scopes(request, who, ctx, view):
        """An admin asks every contact source's provider which scopes it grants now, against what each feature
        needs (one token request per source)."""
        checked(request, who, await form(request))
        judged = await contacts.scopes(ctx)
        return await people(request, who, ctx, view, {j.account_id: j for j in judged})

    async def contact_person(request, who, ctx, view):
        ref = (request.query_params.get("id") or request.query_params.get("email") or "")[:320]
        explained = await asyncio.to_thread(contacts.explain, ctx, ref)
        return render(request, "person.html", view, x=explained, done=_said(request, who))

    async def contact_decide(request, who, ctx, view):
        """An admin's word on the directory: merge two people, split a record off, or say whether to invite."""
        values = await form(request)
        checked(request, who, values)
        action, ref = request.path_params["action"], values.get("person", "")[:320]
        if action == "merge":
            person = await asyncio.to_thread(contacts.merge, ctx, ref, values.get("other", "")[:600])
            said = f"merged: {person.name} now has {len(person.emails)} address(es)"
        elif action == "split":
            person = await asyncio.to_thread(contacts.split, ctx, values.get("record", "")[:600])
            said = "the record stands alone"
        else:
            person = await asyncio.to_thread(contacts.set_invitable, ctx, values.get("email", "")[:320],
                                             values.get("invite") == "yes")
            said = "zoomcal may invite them" if person.invitable else "zoomcal will not invite them"
        target = f"/contacts/person?id={quote(person.id)}" if person is not None else "/contacts?"
        return secure(RedirectResponse(f"{target}&{_saying(who, said)}", status_code=303))

    async def sync_log(request, who, ctx, view):
        email = None if who.is_admin else who.email
        lines = await asyncio.to_thread(app_sync.log, ctx, email, limit=100)
        reviews = await asyncio.to_thread(app_sync.reviews, ctx)       # a member's own only
        return render(request, "log.html", view, lines=list(reversed(lines)), reviews=reviews,
                      done=_said(request, who))

    async def event_history(request, who, ctx, view):
        told = await asyncio.to_thread(app_history.history, ctx, request.path_params["event_id"][:200])
        return render(request, "history.html", view, h=told)

    async def audit_page(request, who, ctx, view):
        q = request.query_params
        start, end = _day(q.get("from"), view.zone, "from"), _day(q.get("to"), view.zone, "to", end=True)
        before = int(q["before"]) if (q.get("before") or "").isdigit() else None
        lines = await asyncio.to_thread(app_audit.entries, ctx, start=start, end=end, actor=q.get("actor", "")[:200],
                                        action=q.get("action", "")[:100], before=before, limit=100)
        verified = await asyncio.to_thread(app_audit.verify, ctx)
        filters = {k: q.get(k, "")[:200] for k in ("from", "to", "actor", "action")}
        return render(request, "audit.html", view, lines=lines, verified=verified, filters=filters,
                      more=lines[-1].seq if len(lines) == 100 else None)

    async def audit_export(request, who, ctx, view):
        q = request.query_params
        fmt = q.get("format", "csv").lower()
        text = await asyncio.to_thread(app_audit.export, ctx, _day(q.get("from"), view.zone, "from"),
                                       _day(q.get("to"), view.zone, "to", end=True), fmt)
        media = "text/csv; charset=utf-8" if fmt == "csv" else "application/json"
        return secure(Response(text, media_type=media, headers={
            "Content-Disposition": _attachment(f"zoomcal-audit-{who.tenant}.{fmt}")}))

    async def schedule(request, who, ctx, view):
        q = request.query_params
        organisers = [u.email for u in await asyncio.to_thread(app_users.list_users, ctx)]
        ask = _Asked.of(dict(q), who, view.zone)
        found, error = None, None
        if q.get("find"):
            try:
                found = await asyncio.to_thread(_find, ctx, ask, await asyncio.to_thread(app_users.addresses, ctx))
            except AppError as exc:
                error = exc.message
        return render(request, "schedule.html", view, ask=ask, organisers=organisers, found=found, error=error,
                      booked=None, conflict=None)

    async def schedule_book(request, who, ctx, view):
        values = await form(request)
        checked(request, who, values)
        organisers = [u.email for u in await asyncio.to_thread(app_users.list_users, ctx)]
        ask = _Asked.of(values, who, view.zone)
        try:
            start = datetime.fromisoformat(values.get("start", ""))
        except ValueError:
            raise InvalidError("choose a time from the list", field="start") from None
        end = start + timedelta(minutes=ask.minutes)
        try:
            questions = [line for line in values.get("questions", "").splitlines() if line.strip()][:20]
            poll = app_polls.poll_body(values.get("poll", ""), [app_polls.parse_question(q) for q in questions]) \
                if values.get("poll", "").strip() or questions else None
            booked = await asyncio.to_thread(
                app_availability.book, ctx, ask.organiser, start, end, values.get("title", "")[:300],
                attendees=[a for a in ask.people if a != ask.organiser], zoom=values.get("zoom") == "yes", poll=poll)
        except AppError as exc:      # a collision names what it collides with
            conflict = exc.details.get("conflict") if isinstance(exc, ConflictError) else None
            return render(request, "schedule.html", view, status=409 if conflict else 400, ask=ask,
                          organisers=organisers, found=None, error=exc.message, booked=None, conflict=conflict)
        return render(request, "schedule.html", view, ask=ask, organisers=organisers, found=None, error=None,
                      booked=booked, conflict=None, where=await asyncio.to_thread(_booking, ctx, booked.event_id))

    async def booking_status(request, who, ctx, view):
        """Where a booked event stands on each of its owner's calendars (the schedule page follows it live)."""
        where = await asyncio.to_thread(_booking, ctx, request.query_params.get("event", ""))
        partial = request.headers.get("x-zoomcal-partial") == "booking"
        return render(request, "booking_status.html" if partial else "booking.html", view, where=where)

    async def availability_page(request, who, ctx, view, error: str | None = None, status: int = 200,
                                proposed: tuple[str, dict[str, Any]] | None = None, email: str | None = None,
                                typed: str | None = None):
        saved = request.query_params.get("saved") == "1" and error is None
        email = email or _whose(who, request.query_params.get("user"))
        people = [u.email for u in await asyncio.to_thread(app_users.list_users, ctx)]
        current = await asyncio.to_thread(app_settings.get, ctx, email)
        person = await asyncio.to_thread(app_users.get, ctx, email)
        try:
            why = await app_presence.explain(ctx, email)
        except AppError as exc:
            why = None
            error = error or exc.message
        spans = await app_presence.preview(ctx, email, hours=72, rules=proposed[1] if proposed else None)
        if typed is not None or proposed:
            rules = typed if typed is not None else proposed[0]
        else:       # an admin edits everyone's rules, a member their own
            rules = await asyncio.to_thread(app_presence.rules_text, ctx, None if who.is_admin else email)
        everyone = await app_presence.dry_run(ctx, proposed[1]) if proposed and who.is_admin else []
        return render(request, "availability.html", view, status=status, email=email, people=people,
                      settings=current, hours=_hours_text(current.working_hours), calendars=person.calendars,
                      why=why, spans=spans, saved=saved, error=error, rules=rules, proposed=proposed is not None,
                      everyone=everyone, done=_said(request, who))

    async def presence_rules(request, who, ctx, view):
        """An admin's presence rules for everyone: previewed (nothing written) or saved."""
        values = await form(request)
        checked(request, who, values)
        email = _whose(who, values.get("user"))
        text = values.get("rules", "")
        try:
            rules = app_presence.rules_of_text(text)
            doing = values.get("do")
            if doing in ("save", "save-person"):
                whose = None if doing == "save" and who.is_admin else email     # a member saves their own
                count = await asyncio.to_thread(app_settings.set_presence_rules, ctx, rules, whose)
                said = f"presence rules saved for {whose or 'everyone'}: {count} rule(s)"
                return secure(RedirectResponse(f"/availability?user={quote(email)}&{_saying(who, said)}",
                                               status_code=303))
        except ForbiddenError:
            raise
        except AppError as exc:
            return await availability_page(request, who, ctx, view, error=exc.message, status=400, email=email,
                                           typed=text)
        return await availability_page(request, who, ctx, view, proposed=(text, rules), email=email)

    async def availability_save(request, who, ctx, view):
        values = await form(request)
        checked(request, who, values)
        email = _whose(who, values.get("user"))
        person = await asyncio.to_thread(app_users.get, ctx, email)
        counted = {int(v) for k, v in values.items() if k.startswith("count-") and v.isdigit()}
        try:
            await asyncio.to_thread(
                app_settings.update, ctx, email, timezone=values.get("timezone", "").strip() or None,
                working_hours=values.get("hours", "").strip() or None,
                buffer_before_min=_minutes(values.get("before"), "buffer_before_min"),
                buffer_after_min=_minutes(values.get("after"), "buffer_after_min"),
                excluded_calendars=[c.id for c in person.calendars if c.id not in counted],
                meetings_calendar=int(values["meetings"]) if values.get("meetings", "").isdigit() else None)
        except AppError as exc:
            return await availability_page(request, who, ctx, view, error=exc.message, status=400)
        return secure(RedirectResponse(f"/availability?user={quote(email)}&saved=1", status_code=303))

    async def accounts_page(request, who, ctx, view, error: str | None = None, status: int = 200,
                            linking: dict[str, Any] | None = None):
        email = None if who.is_admin else who.email
        listed = await asyncio.to_thread(app_accounts.list_accounts, ctx, email)
        offered = await asyncio.to_thread(app_accounts.providers, ctx)
        people = [u.email for u in await asyncio.to_thread(app_users.list_users, ctx)]
        chosen = request.query_params.get("provider")
        if linking is None and chosen:
            spec = next((p for p in offered if p.key == chosen), None)
            if spec is not None:
                linking = {"provider": spec, "user": _whose(who, request.query_params.get("user")),
                           "options": {o["name"]: o["default"] or "" for o in spec.options}, "secrets": None}
        return render(request, "accounts.html", view, status=status, accounts=listed, providers=offered,
                      people=people, error=error, linking=linking,
                      done=_said(request, who) if error is None else "")

    async def account_link(request, who, ctx, view):
        """Linking in two steps, without script: the options first (which secrets a link takes depends on
        them), then the secrets — sent once, to the provider and the vault, never shown again."""
        values = await form(request)
        checked(request, who, values)
        email = _whose(who, values.get("user"))
        provider = values.get("provider", "")[:40]
        spec = next((p for p in await asyncio.to_thread(app_accounts.providers, ctx) if p.key == provider), None)
        if spec is None:
            return await accounts_page(request, who, ctx, view, error=f"unknown provider {provider!r}", status=400)
        options = {o["name"]: values.get(f"option-{o['name']}", "").strip()[:2000] for o in spec.options}
        linking = {"provider": spec, "user": email, "options": options, "secrets": None}
        try:
            wanted = await asyncio.to_thread(app_accounts.needed_secrets, ctx, provider,
                                             {k: v for k, v in options.items() if v})
        except AppError as exc:
            return await accounts_page(request, who, ctx, view, error=exc.message, status=400, linking=linking)
        if values.get("step") != "secrets" and wanted:
            linking["secrets"] = wanted
            return await accounts_page(request, who, ctx, view, linking=linking)
        secrets = {o.name: values.get(f"secret-{o.name}", "")[:4000] for o in wanted}
        try:
            linked = await app_accounts.link(ctx, email, provider, options, secrets)
        except AppError as exc:
            linking["secrets"] = wanted
            return await accounts_page(request, who, ctx, view, error=exc.message, status=400, linking=linking)
        said = f"linked {linked.label} for {linked.user}" + (f": {linked.push}" if linked.push else "")
        return secure(RedirectResponse(f"/accounts?{_saying(who, said)}", status_code=303))

    async def account_connect(request, who, ctx, view):
        """Link by signing in at the provider: off to its sign-in page; it sends the browser back to
        /accounts/callback with a code (authorization code with PKCE, a `state` bound to this person)."""
        values = await form(request)
        checked(request, who, values)
        email = _whose(who, values.get("user"))
        provider = values.get("provider", "")[:40]
        spec = next((p for p in await asyncio.to_thread(app_accounts.providers, ctx) if p.key == provider), None)
        options = {o["name"]: values.get(f"option-{o['name']}", "").strip()[:2000] for o in (spec.options if spec
                                                                                             else ())}
        base = back_here(request)
        secrets = {o["name"]: values.get(f"secret-{o['name']}", "")[:4000] for o in (spec.sign_in_secrets if spec
                                                                                      else ())}
        try:
            url = await asyncio.to_thread(app_accounts.begin_sign_in, ctx, email, provider, options, secrets,
                                          f"{base}/accounts/callback")
            return away(request, url, spec.label if spec else provider, view)
        except AppError as exc:
            linking = {"provider": spec, "user": email, "options": options, "secrets": None} if spec else None
            return await accounts_page(request, who, ctx, view, error=exc.message, status=400, linking=linking)

    async def account_callback(request, who, ctx, view):
        answer = {k: v[:4000] for k, v in request.query_params.items()}
        try:
            linked = await app_accounts.finish_sign_in(ctx, answer)
        except AppError as exc:
            return await accounts_page(request, who, ctx, view, error=exc.message, status=400)
        said = f"linked {linked.label} for {linked.user}" + (f": {linked.push}" if linked.push else "")
        return secure(RedirectResponse(f"/accounts?{_saying(who, said)}", status_code=303))

    async def account_act(request, who, ctx, view):
        values = await form(request)
        checked(request, who, values)
        account_id, action = int(request.path_params["account_id"]), request.path_params["action"]
        if action == "check":
            found = await app_accounts.health(ctx, account_id)
            said = f"account {account_id}: " + ", ".join(f"{a.status}" + (f" ({a.status_reason})" if a.status_reason
                                                                          else "") for a in found)
        else:
            gone = await app_accounts.unlink(ctx, account_id)
            said = f"account {account_id} unlinked: {gone.revoked}"
        return secure(RedirectResponse(f"/accounts?{_saying(who, said)}", status_code=303))

    async def review_resolve(request, who, ctx, view):
        values = await form(request)
        checked(request, who, values)
        review_id = request.path_params["review_id"]
        entry = await app_sync.resolve(ctx, int(review_id), values.get("choice", ""))
        return secure(RedirectResponse(f"/log?{_saying(who, f'review {entry.id}: {entry.applied}')}",
                                       status_code=303))

    api.add_api_route("/", page(dashboard), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/contacts", page(people), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/contacts/person", page(contact_person), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/contacts/scopes", page(contact_scopes), methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/contacts/{action:str}", _only(page(contact_decide), ("merge", "split", "invite")),
                      methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/log", page(sync_log), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/schedule", page(schedule), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/schedule/booking", page(booking_status), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/schedule/book", page(schedule_book), methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/accounts", page(accounts_page), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/accounts/link", page(account_link), methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/accounts/connect", page(account_connect), methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/accounts/callback", page(account_callback), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/accounts/{account_id:int}/{action:str}", _only(page(account_act), ("check", "unlink")),
                      methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/availability", page(availability_page), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/availability", page(availability_save), methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/presence/rules", page(presence_rules), methods=["POST"], response_class=HTMLResponse)
    api.add_api_route("/history/{event_id:str}", page(event_history), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/audit", page(audit_page), methods=["GET"], response_class=HTMLResponse)
    api.add_api_route("/audit/export", page(audit_export), methods=["GET"])
    api.add_api_route("/review/{review_id:int}", page(review_resolve), methods=["POST"])

    @api.get("/portal/events")
    async def events(request: Request):
        """The session's live feed: the tenant's for an admin, a member's own otherwise."""
        try:
            who, ctx, _view = await viewer(request)
        except NotSignedInError:
            return secure(JSONResponse({"error": "unauthenticated"}, status_code=401))
        start = await asyncio.to_thread(feed.latest_id, ctx)
        user = None if who.is_admin else who.email

        async def stream():
            yield "retry: 3000\n\n"
            async for item in feed.follow(ctx, start, user=user, heartbeat=STILL_SIGNED_IN):
                if await request.is_disconnected():
                    return
                if item is None:     # now and then: the session may have ended since the stream began
                    try:
                        await asyncio.to_thread(signed_in, request)
                    except NotSignedInError:
                        return
                    yield ": keep-alive\n\n"
                    continue
                yield f"event: {item.kind}\ndata: {json.dumps({'id': item.id, 'kind': item.kind})}\n\n"
        return secure(StreamingResponse(stream(), media_type="text/event-stream",
                                        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"}))

    return api


@dataclass
class _Asked:
    """The schedule form as typed: who organises, who takes part, how long, between which days."""

    organiser: str
    people: list[str]
    minutes: int
    start_day: str
    end_day: str
    title: str
    zoom: bool

    @classmethod
    def of(cls, values: dict[str, str], who: signin.SignedIn, zone: str) -> _Asked:
        organiser = (values.get("organiser") or who.email).strip().lower() if who.is_admin else who.email
        people = [organiser]
        for part in (values.get("people") or "").replace(";", ",").replace("\n", ",").split(","):
            address = part.strip().lower()
            if address and address not in people:
                people.append(address)
        try:
            minutes = max(5, min(600, int(values.get("minutes") or 30)))
        except ValueError:
            minutes = 30
        today = datetime.now(UTC).astimezone(_zone(zone)).date()
        return cls(organiser[:320], [p[:320] for p in people[:50]], minutes,
                   (values.get("from") or today.isoformat())[:10],
                   (values.get("to") or (today + timedelta(days=6)).isoformat())[:10],
                   (values.get("title") or "")[:300], values.get("zoom", "yes") == "yes")

    @property
    def guests(self) -> str:
        return ", ".join(self.people[1:])


def _booking(ctx: AppContext, event_id: str) -> dict[str, Any]:
    """A booked event and, for each calendar of its owner that receives or counts it, whether it is there yet."""
    found = app_sync.event(ctx, event_id)
    person = app_users.get(ctx, found.user)
    written = {link["calendar_id"]: not link["pending"] and bool(link["remote_id"]) for link in found.links}
    sides = [{"calendar": f"{c.label}: {c.name or c.calendar}",
              "state": "written" if written.get(c.id) else ("being written" if c.id in written else "waiting")}
             for c in person.calendars if c.role in ("meetings", "calendar")]
    return {"event": found.id, "title": found.title, "sides": sides,
            "done": bool(sides) and all(side["state"] == "written" for side in sides)}


@dataclass
class _Found:
    timezone: str
    counted: list[str]          # the people whose calendars were asked
    invited: list[str]          # addresses zoomcal has no calendar of: invited, not asked
    slots: list[dict[str, str]]


def _find(ctx: AppContext, ask: _Asked, known: set[str]) -> _Found:
    counted = [p for p in ask.people if p in known]
    invited = [p for p in ask.people if p not in known]
    try:      # days in the organiser's zone (naive times are local to the first person)
        start = datetime.strptime(ask.start_day, "%Y-%m-%d")
        end = datetime.strptime(ask.end_day, "%Y-%m-%d") + timedelta(days=1)
    except ValueError:
        raise InvalidError("days are written YYYY-MM-DD", field="from") from None
    if not timedelta(0) < end - start <= timedelta(days=31):
        raise InvalidError("look between one and 31 days ahead", field="to")
    found = app_availability.slots(ctx, counted, ask.minutes * 60, start, end, step_s=1800)
    return _Found(found.timezone, counted, invited, found.slots[:40])


def _only(handler, actions: tuple[str, ...]):
    """A route whose `action` path parameter is one of `actions` (404 otherwise)."""
    async def wrapped(request: Request):
        if request.path_params.get("action") not in actions:
            return secure(HTMLResponse("not found", status_code=404))
        return await handler(request)
    wrapped.__name__ = handler.__name__
    return wrapped


def _seal(who: signin.SignedIn, text: str) -> str:
    return hmac.new(who.csrf.encode(), text.encode(), "sha256").hexdigest()[:20]


def _saying(who: signin.SignedIn, text: str) -> str:
    """The query that makes the next page say what was done — in words only the pages of the same sign-in can have
    written (a link made elsewhere cannot put its own words on a portal page)."""
    text = text[:300]
    return f"done={quote(text)}&said={_seal(who, text)}"


def _said(request: Request, who: signin.SignedIn) -> str:
    text = request.query_params.get("done", "")[:300]
    given = request.query_params.get("said", "")
    return text if text and hmac.compare_digest(given.encode(), _seal(who, text).encode()) else ""


def _attachment(name: str) -> str:
    """A download's Content-Disposition: an ASCII name any client reads, and the name itself (RFC 6266/5987)."""
    plain = "".join(c if c.isascii() and (c.isalnum() or c in "-_.") else "_" for c in name)
    return f'attachment; filename="{plain}"; filename*=UTF-8\'\'{quote(name, safe="")}'


def _whose(who: signin.SignedIn, asked: str | None) -> str:
    """Whose settings a page shows: an admin may name anyone, a member only themselves."""
    return (asked or who.email).strip().lower()[:320] if who.is_admin else who.email


def _minutes(text: str | None, field: str) -> int | None:
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise InvalidError("minutes are a whole number", field=field) from None


DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _hours_text(hours: dict[str, list[list[str]]]) -> str:
    """Working hours as typed: "mon-fri 09:00-17:00; sat 10:00-12:00" (runs of days with the same hours)."""
    parts: list[str] = []
    run: list[str] = []

    def close() -> None:
        if run:
            days = run[0] if len(run) == 1 else f"{run[0]}-{run[-1]}"
            parts.extend(f"{days} {a}-{b}" for a, b in hours[run[0]])

    for day in DAY_NAMES:
        spans = hours.get(day)
        if spans and run and hours[run[0]] == spans:
            run.append(day)
            continue
        close()
        run = [day] if spans else []
    close()
    return "; ".join(parts)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _day(text: str | None, zone: str, field: str, end: bool = False) -> datetime | None:
    """A date typed in a filter (YYYY-MM-DD, the viewer's day) as the instant it starts — or, for an end, the
    instant the next day starts."""
    if not text:
        return None
    try:
        day = datetime.strptime(text.strip(), "%Y-%m-%d")
    except ValueError:
        raise InvalidError(f"not a date (YYYY-MM-DD): {text[:40]!r}", field=field) from None
    day = day.replace(tzinfo=_zone(zone))
    return (day + timedelta(days=1)).astimezone(UTC) if end else day.astimezone(UTC)


def _accounts(ctx: AppContext, who: signin.SignedIn) -> list[dict[str, Any]]:
    """Each linked account's health, for the dashboard: the viewer's own, or everyone's for an admin."""
    out = []
    for person in app_users.list_users(ctx):
        for cal in person.calendars:
            out.append({"user": person.email, "provider": cal.label, "provider_key": cal.provider,
                        "calendar": cal.name or cal.calendar,
                        "status": cal.status, "account_id": cal.account_id, "receives": cal.receives_meetings})
    return out


def secure(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def set_cookie(request: Request, response: Response, which: int, value: str, *, max_age: int) -> None:
    """Set the session cookie (SESSION), the sign-in form's (PRE) or a sign-in's under way (AWAY): HttpOnly,
    SameSite=Lax, Secure unless `_plain_local`."""
    response.set_cookie(cookie_names(request)[which], value, max_age=max_age, path="/",
                        secure=not _plain_local(request), httponly=True, samesite="lax")


def drop_cookie(request: Request, response: Response, which: int) -> None:
    response.delete_cookie(cookie_names(request)[which], path="/", secure=not _plain_local(request), httponly=True,
                           samesite="lax")


def mount(app: FastAPI, services: Services, clock: Callable[[], float]) -> None:
    app.include_router(router(services, clock))
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.exception_handler(Exception)
    async def failed(_request: Request, _exc: Exception):
        """What went wrong is in the log; the answer says no more, and carries the page headers too."""
        return secure(HTMLResponse("<!doctype html><title>zoomcal</title><p>Something went wrong on the server; "
                                   "it has been logged.</p>", status_code=500))

    @app.middleware("http")
    async def static_headers(request: Request, call_next):
        response = await call_next(request)
        if request.url.path.startswith("/static/"):
            secure(response)
            response.headers["Cache-Control"] = "public, max-age=3600"
        return response
