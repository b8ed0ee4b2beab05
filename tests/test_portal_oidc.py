"""Signing in to the portal with Google or Microsoft (OpenID Connect), against the sandboxes' sign-in pages, ID
tokens and published keys; and the checks an ID token must pass, each shown failing on a token made to break it."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from conftest import make_context
from test_portal import form_token, onward, person
from zoomcal.app import federated
from zoomcal.auth import oidc
from zoomcal.store.models import AuditEntry, SignInIdentity, User
from zoomcal.web.app import make_app

BASE = "http://127.0.0.1:8080"


@pytest.fixture
def portal(world, tmp_path):
    ctx = make_context(world, tmp_path)
    s = ctx.settings
    s.portal_google_client_id, s.portal_google_client_secret = world.google.client_id, world.google.client_secret
    s.portal_google_issuer = "http://sandbox/google"
    s.portal_microsoft_client_id, s.portal_microsoft_client_secret = world.graph.client_id, world.graph.client_secret
    s.portal_microsoft_authority, s.portal_microsoft_tenant = "http://sandbox/graph", world.graph.tenant_id
    person(ctx, "ada@example.com", "Ada", "admin", password=None)
    person(ctx, "bo@example.com", "Bo", "member", password=None)
    world.google.add_calendar("ada@example.com")
    world.google.add_calendar("bo@example.com")
    world.graph.add_calendar("ada@example.com")
    world.graph.directory.add_user("bo@example.com", "Bo Member")
    world.graph.directory.add_user("gus@example.com", "Gus Guest")["userType"] = "Guest"
    yield ctx
    ctx.services.close()


def browser(ctx):
    from fastapi.testclient import TestClient
    return TestClient(make_app(ctx.services), base_url=BASE)


def away(world, client, provider: str, email: str) -> str:
    """Start signing in with `provider` and pass its sign-in page (signed in there as `email`): the callback
    the provider sends the browser back to."""
    page = client.get("/login").text
    assert f'id="sign-in-with-{provider}"' in page
    sent = onward(client.post(f"/login/{provider}", data={"csrf": form_token(page), "email": email}))

    async def at_provider(url: str) -> str:
        async with httpx.AsyncClient(transport=world.transport()) as b:
            return (await b.get(url, follow_redirects=False)).headers["location"]

    back = urlsplit(asyncio.run(at_provider(sent)))
    assert f"{back.scheme}://{back.netloc}{back.path}" == f"{BASE}/login/{provider}/callback"
    return f"{back.path}?{back.query}"


@pytest.mark.parametrize("provider", ["google", "microsoft"])
def test_sign_in_with_google_or_microsoft_binds_the_account_at_first_use(world, portal, provider):
    ada = browser(portal)
    page = ada.get("/login").text
    sent = ada.post(f"/login/{provider}", data={"csrf": form_token(page), "email": "ada@example.com"})
    asked = parse_qs(urlsplit(onward(sent)).query)
    assert asked["scope"] == ["openid email profile"] and asked["code_challenge_method"] == ["S256"]
    assert asked["nonce"][0] and asked["state"][0] and asked["redirect_uri"] == [f"{BASE}/login/{provider}/callback"]
    callback = away(world, ada, provider, "ada@example.com")
    stolen = browser(portal).get(callback)          # another browser brings the answer: it kept nothing
    assert stolen.status_code == 401 and "not started here" in stolen.text
    assert ada.get(callback, follow_redirects=False).status_code == 303
    assert "Ada · admin · default" in ada.get("/").text
    assert ada.get(callback).status_code == 401     # spent
    again = browser(portal)
    again.get(away(world, again, provider, "ada@example.com"))
    assert "Ada · admin · default" in again.get("/").text
    with portal.store.session() as s:
        bound = list(s.scalars(select(SignInIdentity)))
        audited = [a for a in s.scalars(select(AuditEntry)) if a.action == "user.identity"]
    assert [(b.provider, b.address) for b in bound] == [(provider, "ada@example.com")]
    assert len(audited) == 1 and audited[0].target == "ada@example.com"


def test_the_answer_of_one_provider_is_not_taken_for_another(world, portal):
    client = browser(portal)
    callback = away(world, client, "google", "ada@example.com")
    refused = client.get(callback.replace("/login/google/", "/login/microsoft/"))
    assert refused.status_code == 401 and "not started here" in refused.text


def test_a_bound_account_decides_and_another_with_the_same_address_is_refused(world, portal):
    first = browser(portal)
    first.get(away(world, first, "google", "ada@example.com"))
    with portal.store.transaction() as s:
        bound = s.scalars(select(SignInIdentity)).one()
        bo = s.scalars(select(User).where(User.email == "bo@example.com")).one()
        ada_id, bound.user_id = bound.user_id, bo.id         # Ada's Google account is now Bo's way in
    second = browser(portal)
    second.get(away(world, second, "google", "ada@example.com"))
    assert "Bo · member · default" in second.get("/").text     # the binding, not the address, decides
    with portal.store.transaction() as s:                      # and Ada's address shown by another Google account
        s.add(SignInIdentity(issuer=bound.issuer, subject="someone-else", tenant_id=portal.tenant_id,
                             user_id=ada_id, provider="google", address="ada@example.com",
                             created_at=bound.created_at, used_at=bound.created_at))
        s.delete(s.get(SignInIdentity, (bound.issuer, bound.subject)))
    third = browser(portal)
    refused = third.get(away(world, third, "google", "ada@example.com"))
    assert refused.status_code == 401 and "signs in with another Google account" in refused.text


def test_google_vouches_only_for_verified_addresses_of_the_workspace_domain(world, portal):
    world.google.unverified.add("bo@example.com")
    bo = browser(portal)
    refused = bo.get(away(world, bo, "google", "bo@example.com"))
    assert refused.status_code == 401 and "has not verified" in refused.text
    portal.settings.portal_google_domain = "corp.example"
    ada = browser(portal)
    page = ada.get("/login").text
    sent = ada.post("/login/google", data={"csrf": form_token(page), "email": "ada@example.com"})
    assert parse_qs(urlsplit(onward(sent)).query)["hd"] == ["corp.example"]
    refused = ada.get(away(world, ada, "google", "ada@example.com"))
    assert refused.status_code == 401 and "only accounts of corp.example" in refused.text


def test_microsoft_signs_in_members_of_the_one_directory_not_its_guests(world, portal):
    bo = browser(portal)
    bo.get(away(world, bo, "microsoft", "bo@example.com"))
    assert "Bo · member · default" in bo.get("/").text
    person(portal, "gus@example.com", "Gus", password=None)
    gus = browser(portal)
    refused = gus.get(away(world, gus, "microsoft", "gus@example.com"))
    assert refused.status_code == 401 and "guests" in refused.text
    portal.settings.portal_microsoft_tenant = "common"          # every organisation's people: not offered
    page = browser(portal).get("/login").text
    assert 'id="sign-in-with-microsoft"' not in page and 'id="sign-in-with-google"' in page
    client = browser(portal)
    answer = client.post("/login/microsoft", data={"csrf": form_token(client.get("/login").text)})
    assert answer.status_code == 400 and "must name your directory" in answer.text


def test_people_unknown_here_and_providers_not_set_up_are_refused(world, portal):
    world.google.add_calendar("eve@example.com")
    eve = browser(portal)
    refused = eve.get(away(world, eve, "google", "eve@example.com"))
    assert refused.status_code == 401 and "no zoomcal user has the address eve@example.com" in refused.text
    portal.settings.portal_google_client_id = None
    client = browser(portal)
    page = client.get("/login").text
    assert 'id="sign-in-with-google"' not in page
    assert client.post("/login/google", data={"csrf": form_token(page)}).status_code == 400
    assert client.post("/login/nowhere", data={"csrf": form_token(client.get("/login").text)}).status_code == 404
    assert client.get("/login/nowhere/callback?code=x&state=y").status_code == 401


# --- the ID token's checks ------------------------------------------------------------------------------------------

def _issuer(world) -> tuple[oidc.Issuer, str]:
    return asyncio.run(oidc.discover("http://sandbox/google/.well-known/openid-configuration",
                                     transport=world.transport())), world.google.client_id


def _claims(issuer: oidc.Issuer, client_id: str, **changed) -> dict:
    now = int(time.time())
    claims = {"iss": issuer.issuer, "aud": client_id, "sub": "1234", "nonce": "n-1", "iat": now, "exp": now + 600,
              "email": "ada@example.com", "email_verified": True}
    claims.update(changed)
    return {k: v for k, v in claims.items() if v is not None}


def _forged_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.mark.parametrize(("change", "why"), [
    ({}, None),
    ({"aud": "another-app"}, "another application"),
    ({"aud": ["another-app", "CLIENT"]}, "another application"),       # several audiences, azp not ours
    ({"iss": "https://accounts.example"}, "iss"),
    ({"nonce": "n-2"}, "nonce"),
    ({"nonce": None}, "nonce"),
    ({"exp": int(time.time()) - 3600}, "exp"),
    ({"sub": None}, "sub"),
    ({"forged": True}, "signature"),
    ({"unsigned": True}, "not RS256"),
    ({"hmac": True}, "not RS256"),
])
def test_an_id_token_is_believed_only_when_every_check_holds(world, change, why):
    import base64
    import json

    issuer, client_id = _issuer(world)
    change = dict(change)
    forged, unsigned = change.pop("forged", False), change.pop("unsigned", False)
    hmac_signed = change.pop("hmac", False)
    if change.get("aud") == ["another-app", "CLIENT"]:
        change["aud"] = ["another-app", client_id]
    claims = _claims(issuer, client_id, **change)
    token = world.google.id_tokens.sign(claims, key=_forged_key() if forged else None)
    if unsigned or hmac_signed:
        head = base64.urlsafe_b64encode(json.dumps({"alg": "none" if unsigned else "HS256"}).encode()).rstrip(b"=")
        token = f"{head.decode()}.{token.split('.')[1]}." + ("" if unsigned else "c2ln")
    check = oidc.verify(token, issuer, client_id, "n-1", transport=world.transport())
    if why is None:
        assert asyncio.run(check)["email"] == "ada@example.com"
    else:
        with pytest.raises(oidc.TokenRefused, match=why):
            asyncio.run(check)


def test_keys_are_fetched_again_when_the_provider_rotates_them(world):
    issuer, client_id = _issuer(world)
    asyncio.run(oidc.verify(world.google.id_tokens.sign(_claims(issuer, client_id)), issuer, client_id, "n-1",
                            transport=world.transport()))
    world.google.id_tokens = type(world.google.id_tokens)()          # a new key with a new id
    rotated = world.google.id_tokens.sign(_claims(issuer, client_id))
    assert asyncio.run(oidc.verify(rotated, issuer, client_id, "n-1", transport=world.transport()))["sub"] == "1234"


@pytest.mark.parametrize("answer", [
    httpx.Response(200, text="<html>sign in</html>", headers={"content-type": "text/html"}),
    httpx.Response(200, text="[1, 2]", headers={"content-type": "application/json"}),
    httpx.Response(200, json={"issuer": "https://login.example/{tenantid}/v2.0", "authorization_endpoint": "a",
                              "token_endpoint": "t", "jwks_uri": "k"}),
    httpx.Response(200, json={"issuer": "https://login.example"}),
    httpx.Response(503, json={}),
])
def test_a_discovery_document_that_is_not_one_is_refused(answer):
    transport = httpx.MockTransport(lambda _request: answer)
    url = f"https://login.example/{id(answer)}/.well-known/openid-configuration"
    with pytest.raises(oidc.TokenRefused):
        asyncio.run(oidc.discover(url, transport=transport))


# --- seen from an attacker's side -------------------------------------------------------------------------------

def test_a_directory_member_whose_mail_names_an_address_outside_the_directory_does_not_sign_in_as_it(world, portal):
    # Entra ID's `email` claim is the user's `mail` attribute, which the directory does not verify: its admins
    # (or a sync from on-premises AD) may set it to an address in a domain the directory does not own, and
    # Microsoft warns it must decide nothing (nOAuth). Carol, of a domain the directory does not own, is an admin
    from test_portal import person

    person(portal, "carol@partner.example", "Carol", "admin", password=None)
    world.graph.directory.add_user("mallory@example.com", "Mallory Member", mail="carol@partner.example")
    mallory = browser(portal)
    answer = mallory.get(away(world, mallory, "microsoft", "mallory@example.com"), follow_redirects=False)
    assert answer.status_code == 401
    assert "Carol · admin" not in mallory.get("/").text


def test_a_google_account_that_google_is_not_authoritative_for_does_not_vouch_for_its_address(world, portal,
                                                                                                 monkeypatch):
    # a consumer Google account made with a work address (no `hd`): Google verified the address once, when the
    # account was made; whoever made it keeps it after losing the mailbox. Google: only @gmail.com addresses, or
    # a verified address with `hd`, are ones Google is authoritative for
    sign = world.google.id_tokens.sign
    monkeypatch.setattr(world.google.id_tokens, "sign",
                        lambda claims, **kw: sign({k: v for k, v in claims.items() if k != "hd"}, **kw))
    former = browser(portal)
    answer = former.get(away(world, former, "google", "ada@example.com"), follow_redirects=False)
    assert answer.status_code == 401
    assert "Ada · admin" not in former.get("/").text


def test_a_cookie_that_no_vault_sealed_is_refused_not_a_server_error(portal):
    # the cookie is the visitor's to write: a key id that is not UTF-8, or a known key id with a short nonce
    client = browser(portal)
    client._transport.raise_server_exceptions = False
    kid = portal.services.vault.current.encode()
    for raw in (b"zc1.\xff.", b"zc1." + kid + b".abc"):
        client.cookies.set("zoomcal-away", base64.urlsafe_b64encode(raw).decode())
        answer = client.get("/login/google/callback?code=x&state=y")
        assert answer.status_code == 401, (raw, answer.status_code)


def test_the_consumers_directory_named_by_its_id_is_not_offered(portal):
    # the tenant `consumers` is refused by name; its id is the same directory (every personal Microsoft account)
    portal.settings.portal_microsoft_tenant = "9188040d-6c67-4c5b-b112-36a304b66dad"
    assert federated.why_not(portal.services, "microsoft") is not None


def test_a_refusal_does_not_write_the_address_to_the_log(world, portal):
    from structlog.testing import capture_logs

    from zoomcal.logging import configure

    world.google.add_calendar("eve@example.com")
    eve = browser(portal)
    callback = away(world, eve, "google", "eve@example.com")
    configure("WARNING")        # an earlier command may have set ERROR, which drops warnings before any capture
    with capture_logs() as logs:
        refused = eve.get(callback)
    assert refused.status_code == 401
    lines = [json.dumps(entry, default=str) for entry in logs if entry.get("event") == "federated_sign_in_refused"]
    assert lines and not any("eve@example.com" in line for line in lines), lines


def test_a_google_grant_for_events_only_reads_and_writes_and_is_not_sent_to_be_linked_again(world, tmp_path):
    # `calendar.events` reads and writes events (both met) but not the calendar itself: calendars.get takes
    # calendar, calendar.readonly, calendar.calendars(.readonly) or calendar.app.created only (the sandbox refuses it)
    import asyncio

    from conftest import link_sandbox_user, make_context
    from zoomcal.app import accounts

    ctx = make_context(world, tmp_path)
    try:
        info = link_sandbox_user(ctx, world, "ada@example.com", "Ada", "Europe/Paris")
        world.google.tokens.scopes[info["google_refresh_token"]] = "https://www.googleapis.com/auth/calendar.events"
        world.google.tokens.expire_all()
        google = {a.provider: a for a in asyncio.run(accounts.health(ctx))}["google"]
        assert {n["feature"]: n["met"] for n in google.needs} == {"read": True, "write": True}
        assert google.status == "ok", google.status_reason
        assert google.profile["timezone"] == "Europe/Paris" and google.profile["access"] == "owner"
    finally:
        ctx.services.close()


def test_google_may_name_its_issuer_without_the_scheme(world):
    issuer, client_id = _issuer(world)
    bare = issuer.issuer.removeprefix("http://")
    token = world.google.id_tokens.sign(_claims(issuer, client_id, iss=bare))
    with pytest.raises(oidc.TokenRefused, match="iss"):
        asyncio.run(oidc.verify(token, issuer, client_id, "n-1", transport=world.transport()))
    assert asyncio.run(oidc.verify(token, issuer, client_id, "n-1", transport=world.transport(),
                                   also=(bare,)))["iss"] == bare


def test_an_admin_lists_and_forgets_a_persons_bound_account(world, portal):
    from zoomcal.app.context import Actor
    from zoomcal.app.errors import ForbiddenError

    first = browser(portal)
    first.get(away(world, first, "google", "ada@example.com"))
    bound = federated.identities(portal, "ada@example.com")
    assert [(b["provider"], b["address"]) for b in bound] == [("google", "ada@example.com")]
    bo = portal.services.context("default", Actor("portal:bo@example.com", "member", "bo@example.com"))
    with pytest.raises(ForbiddenError):
        federated.forget(bo, "ada@example.com", "google")
    assert federated.forget(portal, "ada@example.com", "google") == 1
    assert federated.identities(portal, "ada@example.com") == []
    with portal.store.session() as s:
        assert [a.target for a in s.scalars(select(AuditEntry)) if a.action == "user.identity_forgotten"] == \
            ["ada@example.com"]
    again = browser(portal)                       # the next sign-in binds anew
    again.get(away(world, again, "google", "ada@example.com"))
    assert len(federated.identities(portal, "ada@example.com")) == 1
