"""The portal behind its sign-in: sessions, CSRF, throttling, security headers, and that nobody reads another
tenant's or (as a member) another person's data through any page."""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta

import argon2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from conftest import make_context
from zoomcal.app import admin, signin, users
from zoomcal.app import settings as app_settings
from zoomcal.app import sync as app_sync
from zoomcal.app.context import Actor
from zoomcal.app.errors import ForbiddenError, InvalidError, NotSignedInError, ThrottledError
from zoomcal.domain.timeutil import now_utc
from zoomcal.store.models import AuditEntry, ContactPerson, PortalSession, User
from zoomcal.web.app import make_app
from zoomcal.web.portal import COOKIE, CSP, LOCAL_COOKIE, NEEDS_HTTPS, Page, _safe_next

PASSWORD = "correct horse battery"


@pytest.fixture
def ctx(tmp_path):
    context = make_context(None, tmp_path)
    yield context
    context.services.close()


def person(ctx, email: str, name: str = "", role: str = "member", password: str | None = PASSWORD) -> None:
    users.add(ctx, email, name)
    if password is not None:
        signin.set_password(ctx, email, password)
    signin.set_role(ctx, email, role)


def web(ctx) -> TestClient:
    return TestClient(make_app(ctx.services), base_url="https://127.0.0.1")


def form_token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def onward(answer) -> str:
    """Where a page on the way to another site's sign-in page leads (its link, which the portal's script follows)."""
    import html
    assert answer.status_code == 200, answer.text
    return html.unescape(re.search(r'<a id="go-away" href="([^"]+)"', answer.text).group(1))


def sign_in(client: TestClient, email: str, password: str = PASSWORD, **extra) -> object:
    token = form_token(client.get("/login").text)
    return client.post("/login", data={"csrf": token, "email": email, "password": password, "next": "/", **extra},
                       follow_redirects=False)


def people(ctx, *rows: tuple[str, str, str]) -> None:
    with ctx.store.transaction() as s:
        for person_id, name, email in rows:
            s.add(ContactPerson(tenant_id=ctx.tenant_id, person_id=person_id, display_name=name, primary_email=email,
                                emails=[email], records=[], kinds=["contact"], groups=[]))


# --- signing in -------------------------------------------------------------------------------------------------

def test_pages_ask_for_sign_in_and_come_back_after_it(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    answer = client.get("/contacts?q=gr", follow_redirects=False)
    assert answer.status_code == 303 and answer.headers["location"] == "/login?next=%2Fcontacts%3Fq%3Dgr"
    assert client.get("/", headers={"X-Zoomcal-Partial": "dashboard"}).status_code == 401
    assert client.get("/portal/events").status_code == 401
    page = client.get(answer.headers["location"])
    token = form_token(page.text)
    assert 'name="next" value="/contacts?q=gr"' in page.text
    done = client.post("/login", data={"csrf": token, "email": "ADA@example.com ", "password": PASSWORD,
                                       "next": "/contacts?q=gr"}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"] == "/contacts?q=gr"
    assert "Contacts" in client.get("/contacts").text


def test_the_session_cookie_is_host_only_secure_http_only_and_stored_only_as_a_digest(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    done = sign_in(client, "ada@example.com")
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(COOKIE + "="))
    token = cookie.split(";", 1)[0].split("=", 1)[1]
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "path=/", "samesite=lax"} <= attributes
    assert not any(a.startswith("domain") for a in attributes)
    with ctx.services.db.session() as s:
        ids = list(s.scalars(select(PortalSession.id)))
    assert ids == [hashlib.sha256(token.encode()).hexdigest()]
    assert token not in ids[0]


def test_a_wrong_password_and_an_unknown_address_get_the_same_answer(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "nopass@example.com", password=None)
    client = web(ctx)
    answers = [sign_in(client, "ada@example.com", "wrong password!"), sign_in(client, "who@example.com"),
               sign_in(client, "nopass@example.com", "")]
    assert {a.status_code for a in answers} == {401}
    assert all(signin.WRONG in a.text for a in answers)
    assert all(COOKIE + "=" not in (a.headers.get("set-cookie") or "") for a in answers)


def test_sign_in_needs_the_forms_own_token_and_this_site_as_origin(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    token = form_token(client.get("/login").text)
    data = {"email": "ada@example.com", "password": PASSWORD}
    assert client.post("/login", data={**data, "csrf": "forged"}, follow_redirects=False).status_code == 403
    assert client.post("/login", data={**data, "csrf": token}, headers={"Origin": "https://evil.example"},
                       follow_redirects=False).status_code == 403
    fresh = TestClient(make_app(ctx.services), base_url="https://127.0.0.1")      # no pre-session cookie
    assert fresh.post("/login", data={**data, "csrf": token}, follow_redirects=False).status_code == 403
    token = form_token(client.get("/login").text)      # each refusal hands out a new one
    assert client.post("/login", data={**data, "csrf": token}, headers={"Origin": "https://127.0.0.1"},
                       follow_redirects=False).status_code == 303


def test_every_form_of_a_session_needs_its_token(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    sign_in(client, "ada@example.com")
    page = client.get("/")
    assert client.post("/logout", data={"csrf": "nope"}, follow_redirects=False).status_code == 403
    assert client.get("/").status_code == 200                     # still signed in
    out = client.post("/logout", data={"csrf": form_token(page.text)}, follow_redirects=False)
    assert out.status_code == 303 and out.headers["location"] == "/login"
    assert client.get("/", follow_redirects=False).status_code == 303


def test_a_session_token_stops_working_after_sign_out(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    sign_in(client, "ada@example.com")
    token = client.cookies.get(COOKIE)
    client.post("/logout", data={"csrf": form_token(client.get("/").text)})
    replay = web(ctx)
    replay.cookies.set(COOKIE, token)
    assert replay.get("/", follow_redirects=False).status_code == 303


def test_where_to_go_after_sign_in_is_a_path_on_this_site_only():
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "javascript:alert(1)", "", None):
        assert _safe_next(target) == "/"
    assert _safe_next("/contacts?q=a") == "/contacts?q=a"


def test_failed_sign_ins_are_throttled_per_address_right_password_or_not(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    for _ in range(signin.ADDRESS_LIMIT):
        assert sign_in(client, "ada@example.com", "wrong password!").status_code == 401
    refused = sign_in(client, "ada@example.com")
    assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 15 * 60
    assert COOKIE not in client.cookies


def test_throttling_ends_with_its_window_and_a_success_clears_the_count(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    services, now = ctx.services, now_utc()
    for _ in range(signin.ADDRESS_LIMIT):
        with pytest.raises(InvalidError):
            signin.sign_in(services, "ada@example.com", "nope nope nope", client="10.0.0.1", now=now)
    with pytest.raises(ThrottledError):
        signin.sign_in(services, "ada@example.com", PASSWORD, client="10.0.0.2", now=now + timedelta(minutes=5))
    later = now + signin.WINDOW + timedelta(seconds=1)
    assert signin.sign_in(services, "ada@example.com", PASSWORD, client="10.0.0.1", now=later).who.role == "admin"
    with pytest.raises(InvalidError):     # counting starts again from nothing
        signin.sign_in(services, "ada@example.com", "nope nope nope", client="10.0.0.1", now=later)
    assert signin.sign_in(services, "ada@example.com", PASSWORD, client="10.0.0.1", now=later).token


def test_one_client_trying_many_addresses_is_throttled_too(ctx):
    services, now = ctx.services, now_utc()
    for n in range(signin.CLIENT_LIMIT):
        with pytest.raises(InvalidError):
            signin.sign_in(services, f"user{n}@example.com", "nope nope nope", client="10.9.9.9", now=now)
    with pytest.raises(ThrottledError):
        signin.sign_in(services, "another@example.com", "nope nope nope", client="10.9.9.9", now=now)


def test_sessions_end_when_idle_or_old_and_on_a_password_or_role_change(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    services, now = ctx.services, now_utc()
    token = signin.sign_in(services, "ada@example.com", PASSWORD, client="t", now=now).token
    assert signin.current(services, token, now=now + signin.IDLE / 2).email == "ada@example.com"
    with pytest.raises(NotSignedInError):
        signin.current(services, token, now=now + signin.IDLE / 2 + signin.IDLE + timedelta(seconds=1))
    token = signin.sign_in(services, "ada@example.com", PASSWORD, client="t", now=now).token
    step = now
    while step < now + signin.LIFETIME - timedelta(minutes=30):      # used all the time, yet it ends
        step += timedelta(minutes=30)
        signin.current(services, token, now=step)
    with pytest.raises(NotSignedInError):
        signin.current(services, token, now=now + signin.LIFETIME)

    bo = signin.sign_in(services, "bo@example.com", PASSWORD, client="t").token
    signin.set_role(ctx, "bo@example.com", "admin")
    with pytest.raises(NotSignedInError):
        signin.current(services, bo)
    bo = signin.sign_in(services, "bo@example.com", PASSWORD, client="t").token
    assert signin.current(services, bo).role == "admin"
    signin.set_password(ctx, "bo@example.com", "another long password")
    with pytest.raises(NotSignedInError):
        signin.current(services, bo)


@pytest.mark.real_password_cost
def test_passwords_are_checked_and_only_their_owner_or_an_admin_sets_them(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    for bad in ("short", "x" * 1025, "bo@example.com1"[:-1] + ""):
        with pytest.raises(InvalidError):
            signin.set_password(ctx, "bo@example.com", bad)
    bo = ctx.services.context("default", Actor("portal:bo@example.com", "member", "bo@example.com"))
    signin.set_password(bo, "bo@example.com", "bo's own long password")
    with pytest.raises(ForbiddenError):
        signin.set_password(bo, "ada@example.com", "taking over ada's account")
    with pytest.raises(ForbiddenError):
        signin.set_role(bo, "bo@example.com", "admin")
    with ctx.store.session() as s:
        hashed = s.scalar(select(User.password_hash).where(User.email == "bo@example.com"))
        actions = [a.action for a in s.scalars(select(AuditEntry).order_by(AuditEntry.seq))]
    assert hashed.startswith("$argon2id$") and "long password" not in hashed
    assert argon2.extract_parameters(hashed) == argon2.profiles.RFC_9106_LOW_MEMORY     # the deployed cost
    assert actions.count("user.password") == 3 and "user.role" in actions


def test_one_address_in_two_organisations_names_the_organisation(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    admin.add_tenant(ctx.services, "globex")
    other = ctx.services.context("globex")
    person(other, "ada@example.com", "Ada at Globex", "member")
    client = web(ctx)
    asked = sign_in(client, "ada@example.com")
    assert asked.status_code == 400 and 'name="tenant"' in asked.text
    done = sign_in(client, "ada@example.com", tenant="globex")
    assert done.status_code == 303
    assert "Ada at Globex · member · globex" in client.get("/").text


# --- what each page sends ---------------------------------------------------------------------------------------

def test_every_page_has_a_strict_policy_and_no_inline_script(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    pages = [client.get("/login")]
    sign_in(client, "ada@example.com")
    pages += [client.get(p) for p in ("/", "/contacts", "/contacts?q=a", "/log")]
    for page in pages:
        assert page.status_code == 200
        assert page.headers["content-security-policy"] == CSP
        assert "'unsafe-inline'" not in CSP and "frame-ancestors 'none'" in CSP
        assert page.headers["strict-transport-security"].startswith("max-age=")
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["cache-control"] == "no-store"
        assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "inline script"
        assert not re.search(r"\son[a-z]+=", page.text), "inline event handler"
        assert "style=" not in page.text
    script = client.get("/static/portal.js")
    assert script.status_code == 200 and script.headers["x-content-type-options"] == "nosniff"


def test_a_form_too_large_is_refused_before_it_is_read(ctx):
    client = web(ctx)
    token = form_token(client.get("/login").text)
    answer = client.post("/login", data={"csrf": token, "email": "a@example.com", "password": "x" * 40_000})
    assert answer.status_code == 413


def test_times_are_shown_in_the_viewers_zone(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    app_settings.update(ctx, "ada@example.com", timezone="Asia/Kolkata")
    app_sync.note(ctx, "note", "an operator's note", email="ada@example.com")
    client = web(ctx)
    sign_in(client, "ada@example.com")
    page = client.get("/log").text
    iso = re.search(r'<time datetime="([^"]+)">([^<]+)</time>', page)
    from datetime import datetime
    from zoneinfo import ZoneInfo

    at = datetime.fromisoformat(iso.group(1))
    at = at if at.tzinfo else at.replace(tzinfo=ZoneInfo("UTC"))
    assert iso.group(2) == at.astimezone(ZoneInfo("Asia/Kolkata")).strftime("%Y-%m-%d %H:%M:%S")
    assert "Times are shown in Asia/Kolkata." in page
    assert Page(None, "No/Such_Zone").local(at).endswith(" UTC")


# --- nobody reads what is not theirs ----------------------------------------------------------------------------

def test_a_tenant_sees_only_its_own_directory_whatever_it_asks(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    people(ctx, ("c1", "Grace Hopper", "grace@acme.example"))
    admin.add_tenant(ctx.services, "globex")
    other = ctx.services.context("globex")
    person(other, "hank@globex.example", "Hank", "admin")
    people(other, ("c2", "Gregor Secret", "gregor@globex.example"))
    client = web(ctx)
    sign_in(client, "ada@example.com")
    for url in ("/contacts", "/contacts?q=gr", "/contacts?q=gregor&tenant=globex", "/contacts?tenant=globex"):
        page = client.get(url).text
        assert "Gregor" not in page and "globex.example" not in page, url
        assert ("Grace Hopper" in page) == ("gregor" not in url), url
    partial = client.get("/contacts?q=g", headers={"X-Zoomcal-Partial": "contacts"}).text
    assert "Grace Hopper" in partial and "<html" not in partial


def test_a_member_sees_their_own_connections_and_log_only(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    app_sync.note(ctx, "note", "the line of ada", email="ada@example.com")
    app_sync.note(ctx, "note", "the line of bo", email="bo@example.com")
    member = web(ctx)
    sign_in(member, "bo@example.com")
    dashboard, log = member.get("/").text, member.get("/log").text
    assert "bo@example.com" in dashboard and "ada@example.com" not in dashboard
    assert "the line of bo" in log and "the line of ada" not in log
    boss = web(ctx)
    sign_in(boss, "ada@example.com")
    log = boss.get("/log").text
    assert "the line of bo" in log and "the line of ada" in log and "Review queue" in log


# --- one-time links ---------------------------------------------------------------------------------------------

def test_a_sign_in_link_works_once_and_opening_it_does_not_spend_it(ctx):
    person(ctx, "ada@example.com", "Ada", "admin", password=None)
    token = signin.link(ctx, "ada@example.com")
    client = web(ctx)
    for _ in range(2):         # a mail scanner opening it first changes nothing
        page = client.get(f"/login/link?t={token}")
        assert page.status_code == 200 and "Continue as Ada" in page.text
        assert page.headers["referrer-policy"] == "same-origin"     # the token goes to no other site
    used = client.post("/login/link", data={"csrf": form_token(page.text), "t": token}, follow_redirects=False)
    assert used.status_code == 303 and "Ada · admin · default" in client.get("/").text
    again = web(ctx)
    page = again.get(f"/login/link?t={token}")
    assert page.status_code == 410 and signin.USED in page.text
    assert again.post("/login/link", data={"csrf": form_token(page.text), "t": token},
                      follow_redirects=False).status_code == 410


def test_a_link_needs_its_forms_token_expires_and_is_an_admins_to_give(ctx):
    person(ctx, "ada@example.com", "Ada", "admin", password=None)
    person(ctx, "bo@example.com", "Bo")
    token = signin.link(ctx, "bo@example.com")
    client = web(ctx)
    client.get(f"/login/link?t={token}")
    forged = client.post("/login/link", data={"csrf": "forged", "t": token}, follow_redirects=False)
    assert forged.status_code == 303 and forged.headers["location"].startswith("/login/link?t=")
    assert COOKIE not in client.cookies
    with pytest.raises(NotSignedInError):
        signin.sign_in_with_link(ctx.services, token, client="t", now=now_utc() + signin.LINK_TTL)
    with pytest.raises(NotSignedInError):     # the expired link is gone, not waiting for a clock to go back
        signin.sign_in_with_link(ctx.services, token, client="t")
    bo = ctx.services.context("default", Actor("portal:bo@example.com", "member", "bo@example.com"))
    with pytest.raises(ForbiddenError):
        signin.link(bo, "bo@example.com")
    with pytest.raises(InvalidError):
        signin.link(ctx, "bo@example.com", timedelta(days=2))


def test_the_cli_sets_passwords_and_roles_and_prints_a_link(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from zoomcal.cli.main import app as cli

    monkeypatch.setenv("ZOOMCAL_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("ZOOMCAL_PUBLIC_URL", "https://cal.example.org/")
    runner = CliRunner()
    assert runner.invoke(cli, ["init"]).exit_code == 0
    assert runner.invoke(cli, ["user", "add", "ada@example.com", "--name", "Ada"]).exit_code == 0
    monkeypatch.setenv("PW", "short")
    refused = runner.invoke(cli, ["user", "password", "ada@example.com", "--password-env", "PW"])
    assert refused.exit_code == 1 and "at least 10 characters" in refused.output
    monkeypatch.setenv("PW", PASSWORD)
    assert runner.invoke(cli, ["user", "password", "ada@example.com", "--password-env", "PW"]).exit_code == 0
    assert "ada@example.com: member" in runner.invoke(cli, ["user", "role", "ada@example.com"]).output
    wrong = runner.invoke(cli, ["user", "role", "ada@example.com", "boss"])
    assert wrong.exit_code == 1 and "admin, member" in wrong.output
    assert runner.invoke(cli, ["user", "role", "ada@example.com", "admin"]).exit_code == 0
    printed = runner.invoke(cli, ["user", "link", "ada@example.com", "--minutes", "5"])
    assert printed.exit_code == 0
    url = printed.output.strip()
    assert url.startswith("https://cal.example.org/login/link?t=")
    from zoomcal.app.context import open_services
    from zoomcal.config import Settings

    services = open_services(Settings())
    try:
        assert signin.link_holder(services, url.split("t=", 1)[1])[0] == "ada@example.com"
        started = signin.sign_in(services, "ada@example.com", PASSWORD, client="cli-test")
        assert started.who.role == "admin"
    finally:
        services.close()


def test_over_plain_http_only_a_loopback_server_signs_in_with_cookies_that_are_not_secure(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    local = TestClient(make_app(ctx.services), base_url="http://127.0.0.1:8080")
    done = sign_in(local, "ada@example.com")
    cookie = done.headers.get_list("set-cookie")[0]
    assert cookie.startswith(LOCAL_COOKIE + "=") and "secure" not in cookie.lower() and "httponly" in cookie.lower()
    assert local.get("/").status_code == 200
    public = TestClient(make_app(ctx.services), base_url="http://portal.example.org")
    page = public.get("/login")
    assert NEEDS_HTTPS in page.text
    refused = public.post("/login", data={"csrf": form_token(page.text), "email": "ada@example.com",
                                          "password": PASSWORD}, follow_redirects=False)
    assert refused.status_code == 403 and NEEDS_HTTPS in refused.text
    assert not any(c.startswith(COOKIE + "=") for c in refused.headers.get_list("set-cookie"))


# --- review queue and audit -------------------------------------------------------------------------------------

def overlap_for(ctx, email: str) -> int:
    from zoomcal.store.models import ReviewItem

    with ctx.store.transaction() as s:
        user_id = s.scalar(select(User.id).where(User.email == email))
        item = ReviewItem(tenant_id=ctx.tenant_id, user_id=user_id, event_id=None, kind="overlap",
                          field="time", zoom_value={"a": "standup"}, calendar_value={"b": "dentist"})
        s.add(item)
        s.flush()
        return item.id


def test_a_person_decides_their_own_review_items_and_nobody_elses(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    person(ctx, "cy@example.com", "Cy")
    mine = overlap_for(ctx, "bo@example.com")
    theirs = overlap_for(ctx, "cy@example.com")
    bo = web(ctx)
    sign_in(bo, "bo@example.com")
    page = bo.get("/log").text
    assert f'data-review="{mine}"' in page and f'data-review="{theirs}"' not in page
    token = form_token(page)
    assert bo.post(f"/review/{mine}", data={"csrf": "forged", "choice": "dismiss"}).status_code == 403
    assert bo.post(f"/review/{theirs}", data={"csrf": token, "choice": "dismiss"}).status_code == 403
    assert bo.post(f"/review/{mine}", data={"csrf": token, "choice": "merge"}).status_code == 400
    done = bo.post(f"/review/{mine}", data={"csrf": token, "choice": "dismiss"}, follow_redirects=False)
    assert done.status_code == 303
    page = bo.get(done.headers["location"]).text
    assert f"review {mine}: dismiss" in page and f'data-review="{mine}"' not in page
    assert [r.id for r in app_sync.reviews(ctx)] == [theirs]


def test_the_audit_trail_is_an_admins_page_with_filters_verification_and_export(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    member = web(ctx)
    sign_in(member, "bo@example.com")
    assert 'href="/audit"' not in member.get("/").text
    assert member.get("/audit").status_code == 403
    assert member.get("/audit/export?format=csv").status_code == 403
    boss = web(ctx)
    sign_in(boss, "ada@example.com")
    page = boss.get("/audit").text
    assert 'href="/audit"' in boss.get("/").text
    assert "The trail verifies" in page and "portal.sign_in" in page and "user.add" in page
    only = boss.get("/audit?action=user.&actor=cli").text
    assert "user.add" in only and "portal.sign_in" not in only
    today = now_utc().date().isoformat()
    assert "user.add" in boss.get(f"/audit?from={today}&to={today}").text
    assert "No entry matches" in boss.get("/audit?to=2000-01-01").text
    assert boss.get("/audit?from=yesterday").status_code == 400
    csv_file = boss.get("/audit/export?format=csv")
    assert csv_file.headers["content-disposition"].startswith('attachment; filename="zoomcal-audit-default.csv";')
    assert csv_file.text.splitlines()[0].startswith("seq,at,actor,action")
    assert '"action": "portal.sign_in"' in boss.get("/audit/export?format=json").text


# --- scheduling -------------------------------------------------------------------------------------------------

def next_monday() -> str:
    today = now_utc().date()
    return (today + timedelta(days=7 - today.weekday())).isoformat()


def test_find_a_time_and_book_it_through_the_conflict_guard(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    client = web(ctx)
    sign_in(client, "ada@example.com")
    day = next_monday()
    page = client.get("/schedule", params={"find": "1", "organiser": "ada@example.com", "minutes": "45",
                                           "people": "Bo@example.com, guest@partner.example", "from": day, "to": day})
    assert page.status_code == 200
    assert "Free for ada@example.com, bo@example.com" in page.text
    assert "Invited without their calendars: guest@partner.example" in page.text
    first = re.search(r'name="start" value="([^"]+)" checked', page.text).group(1)
    assert first.startswith(day)
    values = {"csrf": form_token(page.text), "organiser": "ada@example.com", "minutes": "45",
              "people": "bo@example.com, guest@partner.example", "title": "Planning", "zoom": "yes", "start": first}
    assert client.post("/schedule/book", data={**values, "csrf": "forged"}).status_code == 403
    unlinked = client.post("/schedule/book", data=values)          # Ada has no Zoom account to hold a meeting
    assert unlinked.status_code == 400 and "needs a linked Zoom account" in unlinked.text
    assert 'id="find"' in unlinked.text                              # the form is there to try again
    booked = client.post("/schedule/book", data={**values, "zoom": "no"})
    assert booked.status_code == 200 and 'id="booked"' in booked.text and "Zoom meeting" not in booked.text
    events = [e for e in app_sync.events(ctx, "ada@example.com") if e.title == "Planning"]
    assert len(events) == 1
    again = client.post("/schedule/book", data={**values, "zoom": "no", "title": "Planning again"})
    assert again.status_code == 409 and "Planning" in again.text and 'id="conflict"' in again.text
    assert [e.title for e in app_sync.events(ctx, "ada@example.com")].count("Planning again") == 0


def test_a_member_schedules_as_themselves_only(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    client = web(ctx)
    sign_in(client, "bo@example.com")
    day = next_monday()
    page = client.get("/schedule", params={"find": "1", "organiser": "ada@example.com", "from": day, "to": day})
    assert 'id="organiser"' not in page.text and "Free for bo@example.com" in page.text
    first = re.search(r'name="start" value="([^"]+)" checked', page.text).group(1)
    client.post("/schedule/book", data={"csrf": form_token(page.text), "organiser": "ada@example.com",
                                        "title": "Mine", "zoom": "no", "start": first, "minutes": "30"})
    assert [e.title for e in app_sync.events(ctx, "bo@example.com")] == ["Mine"]
    assert not app_sync.events(ctx, "ada@example.com")
    assert client.get("/schedule", params={"find": "1", "from": day, "to": "2099-01-01"}).status_code == 200
    assert "between one and 31 days" in client.get("/schedule", params={"find": "1", "from": day,
                                                                          "to": "2099-01-01"}).text


# --- availability and presence ------------------------------------------------------------------------------------

def test_availability_settings_are_each_persons_own_to_change(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    bo = web(ctx)
    sign_in(bo, "bo@example.com")
    page = bo.get("/availability?user=ada@example.com").text
    assert 'name="user" value="bo@example.com"' in page and 'id="whose"' not in page
    assert 'value="mon-fri 09:00-17:00"' in page and 'id="preview"' in page and 'id="why"' in page
    token = form_token(page)
    saved = bo.post("/availability", data={"csrf": token, "user": "ada@example.com", "timezone": "Europe/Berlin",
                                           "hours": "mon-thu 08:00-16:00; fri 08:00-12:00", "before": "5",
                                           "after": "10"}, follow_redirects=False)
    assert saved.status_code == 303
    mine, hers = app_settings.get(ctx, "bo@example.com"), app_settings.get(ctx, "ada@example.com")
    assert mine.timezone == "Europe/Berlin" and mine.buffer_after_min == 10 and mine.working_hours["fri"] == [
        ["08:00", "12:00"]] and "sat" not in mine.working_hours
    assert hers.timezone == "UTC"
    page = bo.get(saved.headers["location"]).text
    assert "Saved." in page and 'value="mon-thu 08:00-16:00; fri 08:00-12:00"' in page
    assert "Times are shown in Europe/Berlin." in page
    refused = bo.post("/availability", data={"csrf": token, "timezone": "Mars/Olympus", "hours": "whenever"})
    assert refused.status_code == 400 and 'id="availability-error"' in refused.text
    assert app_settings.get(ctx, "bo@example.com").timezone == "Europe/Berlin"
    assert bo.post("/availability", data={"csrf": "forged", "timezone": "UTC"}).status_code == 403
    ada = web(ctx)
    sign_in(ada, "ada@example.com")
    assert 'name="user" value="bo@example.com"' in ada.get("/availability?user=bo@example.com").text
    ada.post("/availability", data={"csrf": form_token(ada.get("/").text), "user": "bo@example.com",
                                    "timezone": "Asia/Tokyo"})
    assert app_settings.get(ctx, "bo@example.com").timezone == "Asia/Tokyo"


def test_hours_are_shown_as_they_are_typed():
    from zoomcal.availability.query import parse_hours
    from zoomcal.web.portal import _hours_text

    for text in ("mon-fri 09:00-17:00", "mon-thu 08:00-16:00; fri 08:00-12:00", "mon 09:00-12:00; mon 13:00-17:00",
                 "tue 09:00-17:00; thu-sun 10:00-11:00", ""):
        assert parse_hours(_hours_text(parse_hours(text))) == parse_hours(text)
    assert _hours_text(parse_hours("mon-fri 09:00-17:00")) == "mon-fri 09:00-17:00"


def test_the_presence_preview_follows_the_calendar(ctx):
    import asyncio

    from zoomcal.app import availability, presence

    person(ctx, "bo@example.com", "Bo")
    start = (now_utc() + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    availability.book(ctx, "bo@example.com", start, start + timedelta(hours=1), "Deep review")
    spans = asyncio.run(presence.preview(ctx, "bo@example.com", hours=6, step_minutes=60))
    assert spans[0].start <= now_utc() + timedelta(seconds=5) and spans[-1].end >= spans[0].start + timedelta(hours=6)
    assert all(a.end == b.start for a, b in zip(spans, spans[1:], strict=False))     # no gap, no overlap
    meeting = [s for s in spans if s.title == "Deep review"]
    assert len(meeting) == 1 and meeting[0].state == "busy"
    assert (meeting[0].start, meeting[0].end) == (start, start + timedelta(hours=1))
    before = [s for s in spans if s.end <= start][-1]
    assert before.state == "free" and before.status != meeting[0].status and meeting[0].status
    with pytest.raises(InvalidError):
        asyncio.run(presence.preview(ctx, "bo@example.com", hours=24 * 8))


def test_why_an_event_changed_is_its_owners_to_read(ctx):
    from zoomcal.app import availability

    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    person(ctx, "cy@example.com", "Cy")
    start = (now_utc() + timedelta(days=1)).replace(hour=10, minute=0, second=0, microsecond=0)
    booked = availability.book(ctx, "bo@example.com", start, start + timedelta(hours=1), "Budget <review>")
    bo = web(ctx)
    sign_in(bo, "bo@example.com")
    page = bo.get(f"/history/{booked.event_id}")
    assert page.status_code == 200 and "Budget &lt;review&gt;" in page.text and ">booked<" in page.text
    cy = web(ctx)
    sign_in(cy, "cy@example.com")
    assert cy.get(f"/history/{booked.event_id}").status_code == 404          # not there for Cy at all
    assert bo.get("/history/no-such-event").status_code == 404


# --- accounts -----------------------------------------------------------------------------------------------------

def test_link_a_caldav_calendar_in_two_steps_then_check_and_unlink_it(ctx, radicale):
    from conftest import new_collection
    from zoomcal.app import accounts

    ctx.settings.allow_private_urls = True        # Radicale is on loopback
    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    collection = new_collection(radicale, "bo")
    bo = web(ctx)
    sign_in(bo, "bo@example.com")
    page = bo.get("/accounts?provider=caldav")
    assert page.status_code == 200 and 'name="option-url"' in page.text and 'name="secret-' not in page.text
    token = form_token(page.text)
    step = bo.post("/accounts/link", data={"csrf": token, "provider": "caldav", "user": "ada@example.com",
                                           "option-url": collection, "option-username": "bo"})
    assert step.status_code == 200 and 'type="password"' in step.text and 'name="secret-password"' in step.text
    assert f'value="{collection}"' in step.text                       # the options ride along
    wrong = bo.post("/accounts/link", data={"csrf": token, "provider": "caldav", "step": "secrets",
                                            "option-url": "http://127.0.0.1:9/nothing/", "option-username": "bo",
                                            "secret-password": "hunter2-secret"})
    assert wrong.status_code == 400 and 'id="accounts-error"' in wrong.text
    assert "hunter2-secret" not in wrong.text                         # a secret is never sent back
    done = bo.post("/accounts/link", data={"csrf": token, "provider": "caldav", "step": "secrets",
                                           "user": "ada@example.com", "option-url": collection,
                                           "option-username": "bo", "secret-password": "x"}, follow_redirects=False)
    assert done.status_code == 303
    linked = accounts.list_accounts(ctx)
    assert [(a.user, a.provider) for a in linked] == [("bo@example.com", "caldav")]    # a member links for themselves
    page = bo.get(done.headers["location"]).text
    assert "linked CalDAV" in page and f'data-account="{linked[0].id}"' in page
    assert "<td>password</td>" in page and "hunter2" not in page
    checked = bo.post(f"/accounts/{linked[0].id}/check", data={"csrf": token}, follow_redirects=False)
    assert checked.status_code == 303 and "ok" in bo.get(checked.headers["location"]).text
    ada = web(ctx)
    sign_in(ada, "ada@example.com")
    assert f'data-account="{linked[0].id}"' in ada.get("/accounts").text          # an admin sees everyone's
    cy_token = form_token(ada.get("/accounts").text)
    person(ctx, "cy@example.com", "Cy")
    cy = web(ctx)
    sign_in(cy, "cy@example.com")
    assert f'data-account="{linked[0].id}"' not in cy.get("/accounts").text
    assert cy.post(f"/accounts/{linked[0].id}/unlink", data={"csrf": form_token(cy.get("/").text)}
                   ).status_code == 403
    assert cy.post(f"/accounts/{linked[0].id}/delete", data={"csrf": cy_token}).status_code == 404
    gone = bo.post(f"/accounts/{linked[0].id}/unlink", data={"csrf": token}, follow_redirects=False)
    assert gone.status_code == 303 and not accounts.list_accounts(ctx)


def test_a_person_over_the_web_cannot_link_a_file_of_the_server(ctx, tmp_path):
    from zoomcal.app import accounts

    feed = tmp_path / "private.ics"
    feed.write_text("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n")
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    sign_in(client, "ada@example.com")
    token = form_token(client.get("/accounts?provider=ics").text)
    refused = client.post("/accounts/link", data={"csrf": token, "provider": "ics", "option-url": str(feed)})
    assert refused.status_code == 400 and "linked by its operator only" in refused.text
    assert not accounts.list_accounts(ctx)
    import asyncio

    asyncio.run(accounts.link(ctx, "ada@example.com", "ics", {"url": str(feed)}, {}))   # the operator may
    assert [a.provider for a in accounts.list_accounts(ctx)] == ["ics"]


def sign_in_link(world, info: dict, provider: str) -> tuple[dict[str, str], str]:
    """The link form as a person fills it to sign in at the provider: (fields, where the sign-in page is)."""
    if provider == "graph":
        mailbox, _, calendar = info["graph_calendar_id"].partition("/")
        return {"option-client_id": world.graph.client_id, "option-mailbox": mailbox, "option-calendar_id": calendar,
                "option-api_base": "http://sandbox/graph/v1.0",
                "option-token_url": "http://sandbox/graph/oauth2/v2.0/token",
                "option-login_base": "http://sandbox/graph"}, "http://sandbox/graph/common/oauth2/v2.0/authorize?"
    if provider == "google":
        return {"option-client_id": world.google.client_id, "option-calendar_id": info["google_calendar_id"],
                "option-api_base": "http://sandbox/google/calendar/v3",
                "option-token_url": "http://sandbox/google/token",
                "option-auth_url": "http://sandbox/google/o/oauth2/v2/auth",
                "secret-client_secret": world.google.client_secret}, "http://sandbox/google/o/oauth2/v2/auth?"
    return {"option-client_id": world.zoom.client_id, "option-api_base": "http://sandbox/zoom/v2",
            "option-token_url": "http://sandbox/zoom/oauth/token",
            "secret-client_secret": world.zoom.client_secret}, "http://sandbox/zoom/oauth/authorize?"


@pytest.mark.parametrize("provider", ["graph", "google", "zoom"])
def test_link_by_signing_in_at_the_provider(world, tmp_path, provider):
    import asyncio
    from urllib.parse import urlsplit

    import httpx

    from zoomcal.app import accounts

    ctx = make_context(world, tmp_path)
    ctx.settings.allow_private_urls = True        # the sandboxes run in this process: "on-premises" here
    try:
        person(ctx, "ada@example.com", "Ada", "admin")
        person(ctx, "bo@example.com", "Bo")
        info = world.add_user("ada@example.com", "Ada", "UTC")
        client = TestClient(make_app(ctx.services), base_url="http://127.0.0.1:8080")    # as `zoomcal serve`
        sign_in(client, "ada@example.com")
        page = client.get(f"/accounts?provider={provider}").text
        assert 'id="sign-in-at-provider"' in page
        fields, sign_in_page = sign_in_link(world, info, provider)
        sent = client.post("/accounts/connect", data={"csrf": form_token(page), "provider": provider, **fields},
                           follow_redirects=False)
        authorize = onward(sent)
        assert authorize.startswith(sign_in_page)
        assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A8080%2Faccounts%2Fcallback" in authorize
        assert "code_challenge_method=S256" in authorize and "login_hint=ada%40example.com" in authorize
        assert "client_secret" not in authorize and world.zoom.client_secret not in authorize

        async def consent():            # the browser at the sign-in page, already signed in there
            async with httpx.AsyncClient(transport=world.transport()) as sandbox:
                return await sandbox.get(authorize, follow_redirects=False)
        back = asyncio.run(consent())
        callback = urlsplit(back.headers["location"])
        assert callback.netloc == "127.0.0.1:8080" and callback.path == "/accounts/callback"
        assert "code=" in callback.query
        other = TestClient(make_app(ctx.services), base_url="http://127.0.0.1:8080")
        sign_in(other, "bo@example.com")                   # someone else's browser brings the answer: refused
        stolen = other.get(f"{callback.path}?{callback.query}")
        assert stolen.status_code == 400 and "not started here" in stolen.text
        done = client.get(f"{callback.path}?{callback.query}", follow_redirects=False)
        assert done.status_code == 303 and "linked" in done.headers["location"], client.get(
            f"{callback.path}?{callback.query}").text[-800:]
        linked = accounts.list_accounts(ctx)
        assert [(a.user, a.provider, a.status) for a in linked] == [("ada@example.com", provider, "ok")]
        replay = client.get(f"{callback.path}?{callback.query}")
        assert replay.status_code == 400 and "finished already" in replay.text
        assert "<td>user OAuth" in replay.text
        assert len(accounts.list_accounts(ctx)) == 1
    finally:
        ctx.services.close()


def test_the_dashboard_offers_to_link_again_what_needs_it(ctx):
    from conftest import add_account
    from zoomcal.store.models import Account

    person(ctx, "bo@example.com", "Bo")
    account_id = add_account(ctx, "bo@example.com", "google", {}, {"refresh_token": "r"}, "primary", "Work")
    client = web(ctx)
    sign_in(client, "bo@example.com")
    assert "Link again" not in client.get("/").text
    with ctx.store.transaction() as s:
        s.get(Account, account_id).status = "reauth"
    page = client.get("/").text
    assert "needs re-authorisation" in page
    assert 'href="/accounts?provider=google&amp;user=bo%40example.com">Link again' in page
    assert 'id="link"' in client.get("/accounts?provider=google&user=bo%40example.com").text


@pytest.fixture
def linked(world, tmp_path):
    """Ada with Zoom and Google linked in the sandboxes, signed in to the portal, on the schedule page of next
    Monday: (context, her browser, the page, its first free time)."""
    from conftest import link_sandbox_user

    ctx = make_context(world, tmp_path)
    try:
        link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        signin.set_password(ctx, "ada@example.com", PASSWORD)
        client = web(ctx)
        sign_in(client, "ada@example.com")
        day = next_monday()
        page = client.get("/schedule", params={"find": "1", "from": day, "to": day}).text
        yield ctx, client, page, re.search(r'name="start" value="([^"]+)" checked', page).group(1)
    finally:
        ctx.services.close()


def test_book_a_zoom_meeting_with_a_poll(linked):
    from zoomcal.store.models import MeetingPoll

    ctx, client, page, first = linked
    values = {"csrf": form_token(page), "title": "Retro", "start": first, "minutes": "30", "poll": "Lunch"}
    plain = client.post("/schedule/book", data={**values, "zoom": "no", "questions": "Where? = Here | There"})
    assert plain.status_code == 400 and "a poll needs a Zoom meeting" in plain.text
    bad = client.post("/schedule/book", data={**values, "zoom": "yes", "questions": "Where, no answers"})
    assert bad.status_code == 400 and "text = answer | answer" in bad.text
    done = client.post("/schedule/book", data={**values, "zoom": "yes",
                                               "questions": "Where? = Here | There\nWhen? = 12:00 | 13:00"})
    assert done.status_code == 200 and 'id="booked"' in done.text
    with ctx.store.session() as s:
        polls = list(s.scalars(select(MeetingPoll)))
    assert [p.poll["title"] for p in polls] == ["Lunch"]
    assert [q["name"] for q in polls[0].poll["questions"]] == ["Where?", "When?"]


def test_a_link_made_elsewhere_cannot_put_its_words_on_a_page(ctx):
    person(ctx, "ada@example.com", "Ada", "admin")
    client = web(ctx)
    sign_in(client, "ada@example.com")
    for url in ("/log?done=Call+0800+123+to+keep+your+account", "/accounts?done=Call+0800&said=0123456789abcdef0123"):
        assert "Call 0800" not in client.get(url).text
    overlap = overlap_for(ctx, "ada@example.com")
    done = client.post(f"/review/{overlap}", data={"csrf": form_token(client.get("/log").text), "choice": "dismiss"},
                       follow_redirects=False)
    assert f"review {overlap}: dismiss" in client.get(done.headers["location"]).text     # the portal's own words


def test_an_admin_previews_then_saves_presence_rules_for_everyone(ctx):
    import tomllib

    from zoomcal.app import availability
    from zoomcal.store.models import Tenant

    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    start = (now_utc() + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    availability.book(ctx, "bo@example.com", start, start + timedelta(hours=1), "Deep review")
    ada = web(ctx)
    sign_in(ada, "ada@example.com")
    page = ada.get("/availability?user=bo@example.com").text
    shown = re.search(r'<textarea id="rules" name="rules"[^>]*>(.*?)</textarea>', page, re.S).group(1)
    import html

    rules = tomllib.loads(html.unescape(shown))
    assert rules["version"] == 1 and any(r["status"] == "In_Calendar_Event" for r in rules["rule"])
    busy_rule = next(r for r in rules["rule"] if r["status"] == "In_Calendar_Event")
    proposed = html.unescape(shown).replace('status = "In_Calendar_Event"', 'status = "Busy"')
    token = form_token(page)
    preview = ada.post("/presence/rules", data={"csrf": token, "user": "bo@example.com", "rules": proposed,
                                                "do": "preview"})
    assert preview.status_code == 200 and 'id="proposed"' in preview.text and 'id="everyone"' in preview.text
    assert re.search(r"<td>Busy</td>", preview.text)               # the three days ahead, by the new rules
    with ctx.store.session() as s:
        assert s.get(Tenant, ctx.tenant_id).presence_rules is None  # a preview saves nothing
    broken = ada.post("/presence/rules", data={"csrf": token, "rules": "version = [", "do": "save"})
    assert broken.status_code == 400 and "not valid TOML" in broken.text and "version = [" in broken.text
    wrong = ada.post("/presence/rules", data={"csrf": token, "rules": 'version = 1\n[[rule]]\nname = "x"\n'
                                              'status = "Sleeping"\n', "do": "save"})
    assert wrong.status_code == 400
    saved = ada.post("/presence/rules", data={"csrf": token, "user": "bo@example.com", "rules": proposed,
                                              "do": "save"}, follow_redirects=False)
    assert saved.status_code == 303 and "rules saved for everyone" in ada.get(saved.headers["location"]).text
    with ctx.store.session() as s:
        stored = s.get(Tenant, ctx.tenant_id).presence_rules
    assert any(r["name"] == busy_rule["name"] and r["status"] == "Busy" for r in stored["rule"])
    # a member edits their own rules only: the tenant's stay as the admin saved them
    from zoomcal.store.models import PresenceState

    bo = web(ctx)
    sign_in(bo, "bo@example.com")
    page = bo.get("/availability").text
    assert "Presence rules for you" in page and "Save for me" in page and "Save for everyone" not in page
    own = html.unescape(re.search(r'<textarea id="rules" name="rules"[^>]*>(.*?)</textarea>', page, re.S).group(1))
    assert 'status = "Busy"' in own                                    # the tenant's rules are in force for Bo
    mine = own.replace('status = "Busy"', 'status = "Do_Not_Disturb"')
    token = form_token(page)
    preview = bo.post("/presence/rules", data={"csrf": token, "rules": mine, "do": "preview"})
    assert preview.status_code == 200 and 'id="proposed"' in preview.text and 'id="everyone"' not in preview.text
    done = bo.post("/presence/rules", data={"csrf": token, "user": "ada@example.com", "rules": mine,
                                            "do": "save"}, follow_redirects=False)
    assert done.status_code == 303 and "saved for bo@example.com" in bo.get(done.headers["location"]).text
    with ctx.store.session() as s:
        assert s.get(Tenant, ctx.tenant_id).presence_rules == stored                 # everyone's: unchanged
        bo_id = s.scalar(select(User.id).where(User.email == "bo@example.com"))
        ada_id = s.scalar(select(User.id).where(User.email == "ada@example.com"))
        assert any(r["status"] == "Do_Not_Disturb" for r in s.get(PresenceState, bo_id).rules["rule"])
        assert s.get(PresenceState, ada_id) is None or s.get(PresenceState, ada_id).rules is None


# --- signing in with Zoom -----------------------------------------------------------------------------------------

def test_sign_in_with_zoom_and_the_admin_role_follows_zoom(world, tmp_path):
    import asyncio
    from urllib.parse import urlsplit

    import httpx

    ctx = make_context(world, tmp_path)
    ctx.settings.portal_zoom_client_id = world.zoom.client_id
    ctx.settings.portal_zoom_client_secret = world.zoom.client_secret
    ctx.settings.portal_zoom_api_base = "http://sandbox/zoom/v2"
    ctx.settings.portal_zoom_token_url = "http://sandbox/zoom/oauth/token"
    try:
        person(ctx, "ada@example.com", "Ada", "member", password=None)   # a Zoom admin: an admin here
        person(ctx, "bo@example.com", "Bo", "admin", password=None)      # a Zoom member: a member here
        world.zoom.add_user("ada@example.com", "Ada", "L", role="Admin")
        world.zoom.add_user("bo@example.com", "Bo", "M")
        world.zoom.add_user("eve@example.com", "Eve", "N", role="Owner")  # in Zoom, not in zoomcal

        async def at_zoom(url: str) -> str:       # the browser at Zoom's sign-in page, already signed in there
            async with httpx.AsyncClient(transport=world.transport()) as browser:
                return (await browser.get(url, follow_redirects=False)).headers["location"]

        def through_zoom(client: TestClient, email: str):
            page = client.get("/login").text
            assert 'id="sign-in-with-zoom"' in page
            sent = client.post("/login/zoom", data={"csrf": form_token(page), "email": email}, follow_redirects=False)
            assert onward(sent).startswith("http://sandbox/zoom/oauth/authorize?")
            back = urlsplit(asyncio.run(at_zoom(onward(sent))))
            assert back.netloc == "127.0.0.1:8080" and back.path == "/login/zoom/callback"
            return f"{back.path}?{back.query}"

        ada = TestClient(make_app(ctx.services), base_url="http://127.0.0.1:8080")
        callback = through_zoom(ada, "ada@example.com")
        stranger = TestClient(make_app(ctx.services), base_url="http://127.0.0.1:8080")
        stolen = stranger.get(callback)                # another browser brings the answer: it kept nothing
        assert stolen.status_code == 401 and "not started here" in stolen.text
        done = ada.get(callback, follow_redirects=False)
        assert done.status_code == 303
        assert "Ada · admin · default" in ada.get("/").text
        assert ada.get(callback).status_code == 401  # the code and what the browser kept are spent
        bo = TestClient(make_app(ctx.services), base_url="http://127.0.0.1:8080")
        bo.get(through_zoom(bo, "bo@example.com"))
        assert "Bo · member · default" in bo.get("/").text
        assert signin.role_of(ctx, "bo@example.com")[0] == "member"
        eve = TestClient(make_app(ctx.services), base_url="http://127.0.0.1:8080")
        refused = eve.get(through_zoom(eve, "eve@example.com"))
        assert refused.status_code == 401 and "no zoomcal user has the address eve@example.com" in refused.text
        with ctx.store.session() as s:
            roles = [(a.target, a.detail) for a in s.scalars(select(AuditEntry)) if a.action == "user.role"]
        assert ("ada@example.com", {"from": "member", "to": "admin", "zoom_role": "Admin"}) in roles
    finally:
        ctx.services.close()


def test_without_a_zoom_app_there_is_no_zoom_button(ctx):
    client = web(ctx)
    page = client.get("/login").text
    assert 'id="sign-in-with-zoom"' not in page
    answer = client.post("/login/zoom", data={"csrf": form_token(page)})
    assert answer.status_code == 400 and "not set up here" in answer.text


def test_a_member_plans_with_colleagues_by_their_free_time(ctx):
    from zoomcal.app import availability

    person(ctx, "ada@example.com", "Ada", "admin")
    person(ctx, "bo@example.com", "Bo")
    day = next_monday()
    ten = datetime.fromisoformat(f"{day}T10:00:00+00:00")
    availability.book(ctx, "ada@example.com", ten, ten + timedelta(hours=6), "Offsite")     # 10:00-16:00
    bo = web(ctx)
    sign_in(bo, "bo@example.com")
    page = bo.get("/schedule", params={"find": "1", "people": "ada@example.com", "from": day, "to": day}).text
    assert "Free for bo@example.com, ada@example.com" in page and "Invited without their calendars" not in page
    starts = re.findall(r'name="start" value="([^"]+)"', page)
    assert starts and all(not f"{day}T10:00" <= s < f"{day}T16:00" for s in starts)
    assert "Offsite" not in page                                      # her free time, not her calendar


def test_a_booking_shows_where_it_is_until_it_is_in_every_calendar(linked):
    import asyncio

    from zoomcal.app.errors import NotFoundError

    ctx, client, page, first = linked
    booked = client.post("/schedule/book", data={"csrf": form_token(page), "title": "Standup", "zoom": "yes",
                                                 "start": first, "minutes": "15"})
    assert booked.status_code == 200 and 'data-url="/schedule/booking?event=' in booked.text
    url = re.search(r'data-url="([^"]+)"', booked.text).group(1).replace("&amp;", "&")
    before = client.get(url, headers={"X-Zoomcal-Partial": "booking"}).text
    assert ">written<" not in before and "booking-done" not in before and "<html" not in before
    assert "being written" in before or "waiting" in before
    asyncio.run(app_sync.run(ctx, "ada@example.com"))            # the sync the booking asked for
    after = client.get(url).text
    assert "waiting" not in after and "being written" not in after and 'id="booking-done"' in after
    assert after.count(">written<") == 2 and "<html" in after      # Zoom and Google
    bo = ctx.services.context("default", Actor("portal:bo@example.com", "member", "bo@example.com", remote=True))
    with pytest.raises(NotFoundError, match="no event"):
        app_sync.event(bo, url.split("event=", 1)[1])


async def _checked(ctx):
    from zoomcal.app import accounts

    return {a.provider: a for a in await accounts.health(ctx)}


def test_a_zoom_account_whose_role_changes_asks_to_be_linked_again(world, tmp_path):
    import asyncio

    from conftest import link_sandbox_user
    from zoomcal.app import accounts, jobs

    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada")
        zoom_user = world.zoom.users[info["zoom_user_id"]]
        zoom_user.update(role_name="Admin", role_id="1")
        first = asyncio.run(_checked(ctx))["zoom"]
        assert first.status == "ok" and first.profile == {"email": "ada@example.com", "timezone": "UTC",
                                                          "role": "Admin", "licence": "licensed"}
        zoom_user.update(timezone="Europe/Paris")               # a zone may change: nothing to re-link for
        assert asyncio.run(_checked(ctx))["zoom"].status == "ok"
        zoom_user.update(role_name="Member", role_id="2")       # the role is lost
        lost = asyncio.run(_checked(ctx))["zoom"]
        assert lost.status == "reauth" and "its role changed from 'Admin' to 'Member'" in lost.status_reason
        assert asyncio.run(jobs.check_accounts(ctx.services)) == 2                  # the periodic job: it stays
        assert {a.provider: a.status for a in accounts.list_accounts(ctx)}["zoom"] == "reauth"
        asyncio.run(accounts.relink(ctx, first.id, {}, {}))                          # linked again, as it is now
        again = asyncio.run(_checked(ctx))["zoom"]
        assert again.status == "ok" and again.profile["role"] == "Member"
        signin.set_password(ctx, "ada@example.com", PASSWORD)
        signin.set_role(ctx, "ada@example.com", "admin")
        client = web(ctx)
        sign_in(client, "ada@example.com")
        assert "role: Member · licence: licensed" in client.get("/accounts").text
    finally:
        ctx.services.close()
