"""Probes of the portal from an attacker's side: each test here states what the portal should do, and failed
when it was written (see the report that came with it)."""

from __future__ import annotations

import threading
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import make_context
from test_portal import form_token, onward, person, sign_in, web
from zoomcal.app import admin, signin
from zoomcal.app.context import open_services
from zoomcal.app.errors import InvalidError, ThrottledError
from zoomcal.store.models import Event, User
from zoomcal.web.app import make_app


@pytest.fixture
def ctx(tmp_path):
    context = make_context(None, tmp_path)
    yield context
    context.services.close()


# --- forms too large --------------------------------------------------------------------------------------------

def test_a_form_sent_without_a_content_length_is_held_to_the_size_limit(ctx):
    """MAX_FORM is checked against the Content-Length header only: a chunked body (no Content-Length) of
    megabytes is read and parsed in full (Starlette only stops a single field at 1 MB, and allows 1000 fields)."""
    client = web(ctx)
    token = form_token(client.get("/login").text)

    def body():
        yield f"csrf={token}&email=a%40example.com&password=".encode()
        for n in range(4):
            yield b"&f%d=" % n + b"y" * 500_000

    answer = client.post("/login", content=body(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 413


# --- requests to private addresses (ZOOMCAL_ALLOW_PRIVATE_URLS off) ---------------------------------------------

@pytest.fixture
def fetched(ctx):
    """A portal whose outgoing HTTP is recorded (every host resolves to a private address), and the record."""
    seen: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return httpx.Response(400, json={"error": "what the internal service said"})

    services = open_services(ctx.settings, transport=httpx.MockTransport(answer), resolver=lambda host: ["10.0.0.5"])
    assert not services.settings.allow_private_urls
    person(ctx, "bo@example.com", "Bo")
    client = TestClient(make_app(services), base_url="https://127.0.0.1")
    sign_in(client, "bo@example.com")
    yield client, seen
    services.close()


def test_a_member_cannot_send_a_links_token_request_to_a_private_address(fetched):
    """REST providers (Google, Zoom, Microsoft) take `token_url` and `api_base` as options and fetch them without
    the private-address check CalDAV, ICS and EWS URLs get; the answer's `error` is shown back on the page."""
    client, seen = fetched
    token = form_token(client.get("/accounts").text)
    answer = client.post("/accounts/link", data={
        "csrf": token, "provider": "google", "step": "secrets", "option-client_id": "x",
        "option-api_base": "http://10.0.0.5/api", "option-token_url": "http://169.254.169.254/latest/meta-data/",
        "secret-client_secret": "s", "secret-refresh_token": "r"}, follow_redirects=False)
    assert answer.status_code == 400
    assert seen == []
    assert "what the internal service said" not in answer.text


def test_the_sign_in_callback_does_not_post_the_code_to_a_private_address(fetched):
    """/accounts/connect takes `token_url` from the form; /accounts/callback then POSTs the code there."""
    client, seen = fetched
    token = form_token(client.get("/accounts").text)
    started = client.post("/accounts/connect", data={
        "csrf": token, "provider": "google", "option-client_id": "x", "option-token_url": "http://127.0.0.1:6379/",
        "secret-client_secret": "s"}, follow_redirects=False)
    if started.status_code == 200:
        state = parse_qs(urlsplit(onward(started)).query)["state"][0]
        answer = client.get("/accounts/callback", params={"state": state, "code": "c"}, follow_redirects=False)
        assert "what the internal service said" not in answer.text
    assert seen == []


# --- a member reads only their own ------------------------------------------------------------------------------

def test_a_member_learns_no_other_persons_event_ids_from_a_history_prefix(ctx):
    """/history/{prefix}: when a prefix matches several events the error lists their ids, whoever owns them."""
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    person(ctx, "cy@example.com", "Cy")
    with ctx.store.transaction() as s:
        cy = s.scalar(select(User).where(User.email == "cy@example.com"))
        for n in (1, 2):
            s.add(Event(id=f"cyevent-secret-{n}", tenant_id=ctx.tenant_id, user_id=cy.id, content={},
                        content_hash="x", title="Cy's"))
    client = web(ctx)
    sign_in(client, "bo@example.com")
    answer = client.get("/history/cyevent")
    assert answer.status_code in (403, 404)
    assert "cyevent-secret-1" not in answer.text and "cyevent-secret-2" not in answer.text


# --- CSRF -------------------------------------------------------------------------------------------------------

def test_a_post_whose_origin_is_this_host_over_another_scheme_is_refused(ctx):
    """`_same_origin` compares the Origin's host and port with Host, not its scheme: a page served over plain
    http://127.0.0.1 counts as the HTTPS portal's own."""
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    sign_in(client, "ada@example.com")
    token = form_token(client.get("/").text)
    answer = client.post("/logout", data={"csrf": token}, headers={"Origin": "http://127.0.0.1"},
                         follow_redirects=False)
    assert answer.status_code == 403


# --- the audit export's file name -------------------------------------------------------------------------------

@pytest.mark.parametrize("tenant", ["東京", 'acme";filename*=UTF-8\'\'evil.html'])
def test_the_audit_export_is_served_whatever_the_tenant_is_called(ctx, tenant):
    """The tenant name goes into Content-Disposition as is: a name outside Latin-1 fails the export (500), a
    double quote ends the file name and lets the name add parameters (filename*=... wins in browsers)."""
    admin.add_tenant(ctx.services, tenant)
    person(ctx.services.context(tenant), "zed@example.com", "Zed", "admin")
    client = TestClient(make_app(ctx.services), base_url="https://127.0.0.1", raise_server_exceptions=False)
    sign_in(client, "zed@example.com")
    answer = client.get("/audit/export")
    assert answer.status_code == 200
    disposition = answer.headers["content-disposition"]
    assert disposition.count('"') == 2 and "filename*=UTF-8''evil" not in disposition


# --- throttling -------------------------------------------------------------------------------------------------

@pytest.fixture
def both_ctx(any_db, tmp_path):
    """A context on SQLite or PostgreSQL."""
    context = make_context(None, tmp_path, database_url=any_db.url)
    yield context
    context.services.close()


def test_wrong_passwords_tried_at_the_same_time_are_throttled_like_one_after_another(both_ctx, monkeypatch):
    """Each attempt is counted (under a lock: SQLite's write lock, PostgreSQL's advisory lock on the key) before
    argon2 verifies the password: attempts in flight together cannot all pass the check. Here ten arrive while
    each is being verified."""
    ctx = both_ctx
    person(ctx, "ada@example.com", "Ada", "admin")
    attempts = 2 * signin.ADDRESS_LIMIT
    together = threading.Barrier(attempts)
    hasher = signin._hasher()

    class Slow:
        exceptions = None

        def verify(self, hashed, password):
            try:
                together.wait(timeout=3)     # every attempt is being verified at once
            except threading.BrokenBarrierError:
                pass
            return hasher.verify(hashed, password)

        def __getattr__(self, name):
            return getattr(hasher, name)

    monkeypatch.setattr(signin, "_hasher", Slow)
    outcomes: list[str] = []

    def attempt(n: int) -> None:
        try:
            signin.sign_in(ctx.services, "ada@example.com", f"wrong password {n}", client=f"10.0.0.{n}")
        except ThrottledError:
            outcomes.append("throttled")
        except InvalidError:
            outcomes.append("checked")

    threads = [threading.Thread(target=attempt, args=(n,)) for n in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert len(outcomes) == attempts
    assert outcomes.count("checked") <= signin.ADDRESS_LIMIT


# --- what the pages do with numbers and dates out of range ------------------------------------------------------

@pytest.mark.parametrize("method,path", [
    ("GET", "/audit?before=99999999999999999999999"),
    ("GET", "/audit?from=9999-12-31&to=9999-12-31"),
    ("GET", "/schedule?find=1&from=0001-01-01&to=0001-01-02"),
    ("POST", "/review/99999999999999999999999"),
    ("POST", "/accounts/99999999999999999999999/check"),
    ("POST", "/schedule/book"),
])
def test_numbers_and_dates_out_of_range_are_refused_not_a_server_error(ctx, method, path):
    """OverflowError (SQLite INTEGER, datetime) is no AppError: the page wrapper lets it through as a bare 500."""
    person(ctx, "ada@example.com", "Ada", "admin")
    client = TestClient(make_app(ctx.services), base_url="https://127.0.0.1", raise_server_exceptions=False)
    sign_in(client, "ada@example.com")
    if method == "GET":
        answer = client.get(path)
    else:
        token = form_token(client.get("/").text)
        answer = client.post(path, data={"csrf": token, "choice": "zoom", "start": "9999-12-31T23:59",
                                         "minutes": "600", "title": "late"}, follow_redirects=False)
    assert 400 <= answer.status_code < 500


# --- what held (kept as regression checks) ----------------------------------------------------------------------

XSS = '<img src=x onerror=alert(1)></script><script>alert(1)</script>'


def test_held_stored_html_is_escaped_on_pages_and_partials(ctx):
    from conftest import add_account
    from zoomcal.app import sync as app_sync
    from zoomcal.store.models import Account, ReviewItem

    person(ctx, "ada@example.com", XSS, "admin")
    account = add_account(ctx, "ada@example.com", "ics", {"url": "https://cal.example/a.ics"}, {},
                          "https://cal.example/a.ics", calendar_name=XSS)
    app_sync.note(ctx, "note", XSS, email="ada@example.com")
    with ctx.store.transaction() as s:
        ada = s.scalar(select(User).where(User.email == "ada@example.com"))
        s.add(Event(id="ev-xss-000001", tenant_id=ctx.tenant_id, user_id=ada.id, content={}, content_hash="x",
                    title=XSS))
        s.add(ReviewItem(tenant_id=ctx.tenant_id, user_id=ada.id, event_id="ev-xss-000001", kind="conflict",
                         field=XSS, zoom_value=XSS, calendar_value=XSS))
        row = s.get(Account, account)
        row.status, row.status_reason = "degraded", XSS
    client = web(ctx)
    sign_in(client, "ada@example.com")
    pages = [client.get(p) for p in ("/", "/log", "/accounts", "/audit", "/history/ev-xss-000001",
                                     f"/accounts?done={XSS}", "/availability")]
    pages += [client.get("/", headers={"X-Zoomcal-Partial": "dashboard"}),
              client.get("/contacts?q=%3Cscript", headers={"X-Zoomcal-Partial": "contacts"})]
    for page in pages:
        assert page.status_code == 200 and "<script>alert" not in page.text and "<img src=x" not in page.text


def test_held_no_route_reaches_another_tenants_account_review_or_pending_sign_in(ctx):
    from conftest import add_account
    from zoomcal.store.models import Account, PendingSignIn

    person(ctx, "ada@example.com", "Ada", "admin")
    account = add_account(ctx, "ada@example.com", "ics", {"url": "https://cal.example/a.ics"}, {},
                          "https://cal.example/a.ics")
    admin.add_tenant(ctx.services, "globex")
    globex = ctx.services.context("globex")
    person(globex, "ada@example.com", "Ada at Globex", "admin")        # the same address, the same actor name
    acme = web(ctx)
    sign_in(acme, "ada@example.com", tenant="default")
    token = form_token(acme.get("/accounts").text)
    started = acme.post("/accounts/connect", data={"csrf": token, "provider": "google", "option-client_id": "x",
                                                   "secret-client_secret": "s"}, follow_redirects=False)
    state = parse_qs(urlsplit(onward(started)).query)["state"][0]
    other = web(ctx)
    sign_in(other, "ada@example.com", tenant="globex")
    token = form_token(other.get("/").text)
    for path in (f"/accounts/{account}/check", f"/accounts/{account}/unlink", "/review/1"):
        assert other.post(path, data={"csrf": token, "choice": "zoom"}).status_code == 404
    answer = other.get("/accounts/callback", params={"state": state, "code": "c"})
    assert answer.status_code == 400 and "was not started here" in answer.text
    with ctx.services.db.session() as s:
        assert s.get(Account, account) is not None and s.scalar(select(PendingSignIn.id)) is not None


@pytest.mark.parametrize("target", ["//evil.example", "/\\evil.example", "/\t/evil.example", "/\n/evil.example",
                                    " //evil.example", "///evil.example", "https:evil.example", "/\r\nSet-Cookie: a=b"])
def test_held_next_never_leaves_the_site_nor_splits_the_header(ctx, target):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    done = sign_in(client, "ada@example.com", next=target)
    location = done.headers["location"]
    assert location.startswith("/") and not location.startswith("//") and "\n" not in location
    assert not urlsplit(location.replace("\\", "/")).netloc
    again = client.get("/login", params={"next": target}, follow_redirects=False).headers["location"]
    assert again.startswith("/") and not again.startswith("//") and "\r" not in again


# --- every route, as a member reaching for someone else's data --------------------------------------------------

def test_no_route_lets_a_member_read_or_change_another_members_or_another_tenants_data(ctx):
    """Every portal route the app serves, asked by a member with every way of naming someone else: another
    member's account, event, review item and person, another tenant's. Nothing of theirs changes (every row that
    is theirs is compared before and after) and no page shows what is private to them."""
    from starlette.routing import Route

    from conftest import add_account
    from zoomcal.store.models import Base, ReviewItem

    person(ctx, "mo@example.com", "Mo")
    person(ctx, "vi@example.com", "Vi")
    admin.add_tenant(ctx.services, "globex")
    globex = ctx.services.context("globex")
    person(globex, "gx@globex.example", "Gx", "admin")
    owned = {}
    for c, email, marker in ((ctx, "vi@example.com", "VICTIM-SECRET"), (globex, "gx@globex.example", "GLOBEX-SECRET")):
        account = add_account(c, email, "ics", {"url": f"https://{marker.lower()}.example/feed.ics"}, {},
                              f"https://{marker.lower()}.example/feed.ics", f"{marker} calendar")
        with c.store.transaction() as s:
            user = s.scalar(select(User).where(User.email == email))
            s.add(Event(id=f"{marker.lower()}-event", tenant_id=c.tenant_id, user_id=user.id, content={},
                        content_hash="x", title=f"{marker} meeting"))
            review = ReviewItem(tenant_id=c.tenant_id, user_id=user.id, event_id=None, kind="overlap", field="time",
                                zoom_value={"a": marker}, calendar_value={"b": marker})
            s.add(review)
            s.flush()
            owned[email] = (user.id, account, f"{marker.lower()}-event", review.id)
    theirs_users = [owned[e][0] for e in owned]

    def snapshot() -> dict:
        out = {}
        with ctx.services.db.session() as s:
            for table in Base.metadata.sorted_tables:
                if table.name in ("audit_log", "audit_archive", "sign_in_failures", "portal_sessions"):
                    continue
                cond = None
                if "user_id" in table.c:
                    cond = table.c.user_id.in_(theirs_users)
                if "tenant_id" in table.c:
                    by_tenant = table.c.tenant_id == globex.tenant_id
                    cond = by_tenant if cond is None else (cond | by_tenant)
                if table.name == "users":
                    cond = table.c.id.in_(theirs_users)
                if cond is not None:
                    out[table.name] = sorted(map(repr, s.execute(select(table).where(cond)).all()))
        return out

    before = snapshot()
    client = web(ctx)
    sign_in(client, "mo@example.com")
    token = form_token(client.get("/").text)
    skip = ("/login", "/logout", "/static", "/webhooks", "/metrics", "/healthz", "/readyz", "/events", "/portal/events")
    def flat(routes):
        for r in routes:
            inner = getattr(r, "original_router", None)
            yield from flat(inner.routes) if inner is not None else (r,)

    routes = [r for r in flat(make_app(ctx.services).routes)
              if isinstance(r, Route) and not r.path.startswith(skip) and r.path != "/login"]
    assert len(routes) >= 20
    shown, asked = [], 0
    for user_id, account, event, review in owned.values():
        email = next(e for e, v in owned.items() if v[0] == user_id)
        values = {"csrf": token, "user": email, "email": email, "organiser": email, "people": email,
                  "person": f"u{user_id}", "id": f"u{user_id}", "other": "u1", "record": f"1/{event}",
                  "event": event, "timezone": "Asia/Tokyo", "hours": "Mon-Fri 06:00-07:00", "rules": "",
                  "choice": "zoom", "do": "dismiss", "invite": "no", "title": "x", "start": "2030-01-01T10:00:00Z",
                  "minutes": "30", "zoom": "no", "to": "admin", "meetings": "1", "provider": "ics"}
        for route in routes:
            for action in ("check", "unlink", "merge", "split", "invite", "scopes"):
                path = (route.path.replace("{account_id:int}", str(account)).replace("{review_id:int}", str(review))
                        .replace("{event_id:str}", event).replace("{action:str}", action))
                for method in sorted(route.methods or ()):
                    if method == "HEAD":
                        continue
                    answer = client.request(method, path, params=values if method == "GET" else None,
                                            data=values if method == "POST" else None, follow_redirects=True)
                    asked += 1
                    assert answer.status_code < 500, (method, path, answer.text[-500:])
                    # what is theirs (titles, review values, feed addresses), not the ids asked for, which a
                    # refusal may name back
                    for marker in ("VICTIM-SECRET", "GLOBEX-SECRET", "victim-secret.example", "globex-secret.example"):
                        if marker in answer.text:
                            at = answer.text.index(marker)
                            shown.append((method, path, marker, answer.text[max(0, at - 200):at + 60]))
                if "{action:str}" not in route.path:
                    break
    assert asked > 40
    assert shown == []
    assert snapshot() == before
