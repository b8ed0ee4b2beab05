"""The sandboxes' sign-in pages (authorization code with S256 PKCE) driven by an independent OAuth client,
authlib's: a code works once, with its verifier and its redirect URI only; Google gives a refresh token only for
offline access; Zoom takes the client in HTTP Basic auth."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client

from zoomcal.sandbox.world import SandboxWorld

pytestmark = pytest.mark.anyio
REDIRECT = "http://127.0.0.1:8080/accounts/callback"
VENDORS = {
    "graph": ("/graph/common/oauth2/v2.0/authorize", "/graph/common/oauth2/v2.0/token",
              "offline_access Calendars.ReadWrite", {}, "client_secret_post"),
    "google": ("/google/o/oauth2/v2/auth", "/google/token", "https://www.googleapis.com/auth/calendar",
               {"access_type": "offline", "prompt": "consent"}, "client_secret_post"),
    "zoom": ("/zoom/oauth/authorize", "/zoom/oauth/token", None, {}, "client_secret_basic"),
}


def client_of(world: SandboxWorld, vendor: str) -> AsyncOAuth2Client:
    state = {"graph": world.graph, "google": world.google, "zoom": world.zoom}[vendor]
    _auth, _token, scope, _extra, method = VENDORS[vendor]
    return AsyncOAuth2Client(state.client_id, state.client_secret, scope=scope, redirect_uri=REDIRECT,
                             code_challenge_method="S256", token_endpoint_auth_method=method,
                             transport=world.transport(), base_url="http://sandbox")


async def browse(world: SandboxWorld, url: str):
    """The person's browser at the sign-in page (not the OAuth client: it carries no token)."""
    async with httpx.AsyncClient(transport=world.transport()) as browser:
        return await browser.get(url, follow_redirects=False)


async def consent(world: SandboxWorld, client: AsyncOAuth2Client, vendor: str, verifier: str,
                  **extra: str) -> dict[str, str]:
    auth, _token, _scope, defaults, _method = VENDORS[vendor]
    url, state = client.create_authorization_url(f"http://sandbox{auth}", code_verifier=verifier,
                                                 login_hint="ada@example.com", **{**defaults, **extra})
    answer = await browse(world, url)
    assert answer.status_code == 302
    back = urlsplit(answer.headers["location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == REDIRECT
    query = {k: v[0] for k, v in parse_qs(back.query).items()}
    assert query["state"] == state
    return query


@pytest.fixture
def world():
    built = SandboxWorld()
    built.add_user("ada@example.com", "Ada", "UTC")
    return built


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_a_code_is_redeemed_once_with_its_verifier_and_redirect(world, vendor):
    _auth, token_path, *_ = VENDORS[vendor]
    async with client_of(world, vendor) as client:
        verifier = generate_token(48)
        code = (await consent(world, client, vendor, verifier))["code"]
        token = await client.fetch_token(f"http://sandbox{token_path}", code=code, code_verifier=verifier)
        assert token["access_token"] and token["refresh_token"]
        with pytest.raises(Exception, match="invalid_grant"):          # used already
            await client.fetch_token(f"http://sandbox{token_path}", code=code, code_verifier=verifier)
        code = (await consent(world, client, vendor, verifier))["code"]
        with pytest.raises(Exception, match="invalid_grant"):          # another verifier
            await client.fetch_token(f"http://sandbox{token_path}", code=code, code_verifier=generate_token(48))
        code = (await consent(world, client, vendor, verifier))["code"]
        with pytest.raises(Exception, match="invalid_grant"):          # another redirect URI
            await client.fetch_token(f"http://sandbox{token_path}", code=code, code_verifier=verifier,
                                     redirect_uri="http://127.0.0.1:9/elsewhere")


@pytest.mark.parametrize("vendor", sorted(VENDORS))
async def test_an_unregistered_redirect_is_never_sent_to_and_a_stranger_is_refused(world, vendor):
    auth, *_ = VENDORS[vendor]
    async with client_of(world, vendor) as client:
        url, _state = client.create_authorization_url(f"http://sandbox{auth}", code_verifier=generate_token(48),
                                                      redirect_uri="https://evil.example/cb",
                                                      login_hint="ada@example.com")
        refused = await browse(world, url)
        assert refused.status_code == 400 and "location" not in refused.headers
        url, _state = client.create_authorization_url(f"http://sandbox{auth}", code_verifier=generate_token(48),
                                                      login_hint="mallory@example.com", **VENDORS[vendor][3])
        answer = await browse(world, url)
        assert "error=access_denied" in answer.headers["location"]


async def test_google_gives_a_refresh_token_only_for_offline_access(world):
    async with client_of(world, "google") as client:
        verifier = generate_token(48)
        code = (await consent(world, client, "google", verifier, access_type="online"))["code"]
        token = await client.fetch_token("http://sandbox/google/token", code=code, code_verifier=verifier)
        assert token["access_token"] and "refresh_token" not in token


@pytest.mark.parametrize("provider", ["google", "zoom"])
async def test_the_command_line_links_google_and_zoom_by_signing_in_too(world, tmp_path, provider):
    """`zoomcal account connect` over its loopback redirect, for the providers that gained a sign-in."""
    from conftest import make_context
    from zoomcal.app import accounts, users

    ctx = make_context(world, tmp_path)
    users.add(ctx, "ada@example.com", "Ada")
    options = {"google": {"client_id": world.google.client_id, "calendar_id": "ada@example.com",
                          "api_base": "http://sandbox/google/calendar/v3", "token_url": "http://sandbox/google/token",
                          "auth_url": "http://sandbox/google/o/oauth2/v2/auth"},
               "zoom": {"client_id": world.zoom.client_id, "api_base": "http://sandbox/zoom/v2",
                        "token_url": "http://sandbox/zoom/oauth/token"}}[provider]
    secret = {"google": world.google.client_secret, "zoom": world.zoom.client_secret}[provider]

    async def browser(url):     # the person signs in; the provider sends the browser back to the loopback
        async with httpx.AsyncClient(transport=world.transport()) as client:
            back = (await client.get(url)).headers["location"]
        async with httpx.AsyncClient() as client:
            assert (await client.get(back)).status_code == 200

    try:
        linked = await accounts.sign_in(ctx, "ada@example.com", provider, options, {"client_secret": secret},
                                        browser, timeout=10)
        assert linked.provider == provider and linked.status == "ok"
        assert [a.provider for a in await accounts.health(ctx)] == [provider]
    finally:
        ctx.services.close()
