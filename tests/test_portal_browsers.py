"""The portal in real browsers (Chromium, Firefox ESR, WebKitGTK), served by uvicorn on loopback over plain HTTP as
`zoomcal serve` and the demo serve it: signing in with the form, with a one-time link and at Google's or
Microsoft's sign-in page (the sandboxes'), live search, the
dashboard updating from the event stream, the clock warning, and signing out — every script under the strict
policy the pages are sent with."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from selenium.common.exceptions import NoSuchFrameException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from browsers import settle
from conftest import make_context
from zoomcal.app import signin, users
from zoomcal.app import sync as app_sync
from zoomcal.sandbox.server import BackgroundServer
from zoomcal.sandbox.world import SandboxWorld
from zoomcal.store.models import ContactPerson
from zoomcal.web.app import make_app

PASSWORD = "correct horse battery"
WAIT = 15


@pytest.fixture(scope="module")
def portal(tmp_path_factory) -> Iterator[tuple]:
    ctx = make_context(None, tmp_path_factory.mktemp("portal"))
    users.add(ctx, "ada@example.com", "Ada Lovelace")
    signin.set_password(ctx, "ada@example.com", PASSWORD)
    signin.set_role(ctx, "ada@example.com", "admin")
    with ctx.store.transaction() as s:
        for n, (name, email) in enumerate([("Grace Hopper", "grace@example.com"), ("Alan Turing", "alan@example.com"),
                                           ("Katherine Johnson", "katherine@example.com")]):
            s.add(ContactPerson(tenant_id=ctx.tenant_id, person_id=f"c{n}", display_name=name, primary_email=email,
                                emails=[email], records=[], kinds=["contact"], groups=[]))
    world = SandboxWorld()
    world.google.add_calendar("ada@example.com")
    world.graph.add_calendar("ada@example.com")
    vendors = BackgroundServer(world).start()
    settings = ctx.settings
    settings.portal_google_client_id, settings.portal_google_client_secret = world.google.client_id, \
        world.google.client_secret
    settings.portal_google_issuer = f"{vendors.url}/google"
    settings.portal_microsoft_client_id, settings.portal_microsoft_client_secret = world.graph.client_id, \
        world.graph.client_secret
    settings.portal_microsoft_authority, settings.portal_microsoft_tenant = f"{vendors.url}/graph", \
        world.graph.tenant_id
    server = BackgroundServer(app=make_app(ctx.services)).start()
    skewed = BackgroundServer(app=make_app(ctx.services, clock=lambda: time.time() - 600)).start()
    ctx.vendors = (world, vendors.url)      # for linking at the sandboxes' sign-in pages
    yield ctx, server, skewed
    server.stop()
    skewed.stop()
    vendors.stop()
    ctx.services.close()


def wait_for(driver, condition, message: str):
    """Until `condition` holds; an element that went with the page it was on (the page changed while it was
    read), or a page that went while it was read (WebKit), is looked for again."""
    gone = (StaleElementReferenceException, NoSuchFrameException)
    return WebDriverWait(driver, WAIT, ignored_exceptions=gone).until(lambda d: condition(d), message)


def sign_in(driver, base: str, email: str = "ada@example.com", password: str = PASSWORD) -> None:
    driver.get(f"{base}/login")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "h1") and
             d.find_element(By.CSS_SELECTOR, "h1").text != "Sign in", "still on the sign-in page")


def test_sign_in_with_the_form_then_out(browser, portal):
    _ctx, server, _skewed = portal
    browser.get(f"{server.url}/log")
    assert "/login?next=%2Flog" in browser.current_url
    browser.find_element(By.ID, "email").send_keys("ada@example.com")
    browser.find_element(By.ID, "password").send_keys("not the password")
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    error = wait_for(browser, lambda d: d.find_elements(By.ID, "login-error"), "no refusal shown")[0]
    assert signin.WRONG in error.text
    browser.find_element(By.ID, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Sync log",
             "not taken back to the page asked for")
    assert browser.current_url.endswith("/log")
    assert "Ada Lovelace · admin · default" in browser.find_element(By.CLASS_NAME, "who").text
    assert browser.execute_script("return document.cookie") == ""          # HttpOnly: no script reads it
    browser.find_element(By.CSS_SELECTOR, ".signout button").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Sign in", "not signed out")
    assert browser.current_url.endswith("/login")
    browser.get(f"{server.url}/")
    assert "/login" in browser.current_url


def test_a_one_time_link_signs_in_once(browser, portal):
    ctx, server, _skewed = portal
    token = signin.link(ctx, "ada@example.com")
    browser.get(f"{server.url}/login/link?t={token}")
    browser.find_element(By.CSS_SELECTOR, "#link-sign-in button").click()
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Dashboard", "no dashboard")
    browser.delete_all_cookies()
    browser.get(f"{server.url}/login/link?t={token}")
    assert signin.USED in browser.find_element(By.CLASS_NAME, "error").text


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_sign_in_at_google_or_microsoft_and_back(browser, portal, provider):
    _ctx, server, _skewed = portal
    browser.delete_all_cookies()
    browser.get(f"{server.url}/login")
    browser.find_element(By.ID, "email").send_keys("ada@example.com")
    browser.find_element(By.ID, f"sign-in-with-{provider}").click()     # the sandbox signs in and sends back
    wait_for(browser, lambda d: d.find_element(By.TAG_NAME, "h1").text == "Dashboard", "not signed in")
    assert browser.current_url == f"{server.url}/"
    assert "Ada Lovelace · admin · default" in browser.find_element(By.CLASS_NAME, "who").text


def test_link_a_calendar_by_signing_in_at_google(browser, portal):
    """The accounts page's sign-in leads to Google's page (the sandbox's) and back to /accounts/callback, which
    links the calendar."""
    import asyncio

    from zoomcal.app import accounts

    ctx, server, _skewed = portal
    world, vendors = ctx.vendors
    ctx.settings.allow_private_urls = True        # the sandboxes are on loopback: "on-premises" here
    sign_in(browser, server.url)
    browser.get(f"{server.url}/accounts?provider=google")
    for name, value in (("client_id", world.google.client_id), ("calendar_id", "ada@example.com"),
                        ("api_base", f"{vendors}/google/calendar/v3"), ("token_url", f"{vendors}/google/token"),
                        ("auth_url", f"{vendors}/google/o/oauth2/v2/auth")):
        field = browser.find_element(By.ID, f"option-{name}")
        field.clear()
        field.send_keys(value)
    browser.find_element(By.ID, "sign-in-client_secret").send_keys(world.google.client_secret)
    browser.find_element(By.ID, "sign-in-at-provider").click()
    wait_for(browser, lambda d: d.find_elements(By.ID, "accounts-done"), "not linked")
    linked = [a for a in accounts.list_accounts(ctx) if a.provider == "google"]
    try:
        assert [(a.user, a.status) for a in linked] == [("ada@example.com", "ok")]
        assert browser.current_url.startswith(f"{server.url}/accounts")
    finally:
        for a in linked:
            asyncio.run(accounts.unlink(ctx, a.id))


def test_contacts_are_found_as_one_types(browser, portal):
    _ctx, server, _skewed = portal
    sign_in(browser, server.url)
    browser.get(f"{server.url}/contacts")
    rows = browser.find_elements(By.CSS_SELECTOR, "#contact-rows tbody tr")
    assert len(rows) == 3
    browser.find_element(By.ID, "q").send_keys("gra")
    wait_for(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#contact-rows tbody tr")) == 1,
             "the list did not follow the typing")
    assert "Grace Hopper" in browser.find_element(By.ID, "contact-rows").text
    assert browser.current_url.endswith("/contacts?q=gra")          # a reload shows the same
    assert browser.find_element(By.TAG_NAME, "h1").text == "Contacts"  # no page load happened


def test_the_dashboard_follows_the_event_stream(browser, portal):
    ctx, server, _skewed = portal
    sign_in(browser, server.url)
    wait_for(browser, lambda d: d.find_elements(By.ID, "last-sync"), "no dashboard")
    settle(browser)
    time.sleep(1.0)                       # the stream is open and has read where the feed stands
    newcomer = f"new-{browser.name.lower()}@example.com"
    users.add(ctx, newcomer, "Newcomer")
    app_sync.note(ctx, "note", "a newcomer joined", email=newcomer)
    wait_for(browser, lambda d: newcomer in d.find_element(By.ID, "last-sync").text,
             "the dashboard did not update")
    assert browser.find_element(By.ID, "dashboard").get_attribute("data-refreshed")


def test_a_clock_far_from_the_servers_is_pointed_out(browser, portal):
    _ctx, server, skewed = portal
    sign_in(browser, server.url)
    banner = browser.find_element(By.ID, "clock-drift")
    assert not banner.is_displayed()
    browser.get(f"{skewed.url}/")          # the same store, a server whose clock is ten minutes behind
    if "/login" in browser.current_url:    # cookies are per host name, not per port: usually still signed in
        sign_in(browser, skewed.url)
    banner = wait_for(browser, lambda d: d.find_element(By.ID, "clock-drift").is_displayed() and
                      d.find_element(By.ID, "clock-drift"), "no warning")
    assert "about 10 minutes ahead of the server" in banner.text
