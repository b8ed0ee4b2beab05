"""OpenID Connect for signing in to the portal (Google, Microsoft Entra ID): the provider's discovery document,
the keys it publishes, and the checks an ID token passes before zoomcal believes whom it names (OpenID Connect
Core 1.0, 3.1.3.7).

An ID token is believed when it is a JWS signed with RS256 by a key the issuer publishes (another algorithm, `none`
or an HMAC, is refused), names exactly the issuer the discovery document names (`iss`), is meant for this client
(`aud`, and `azp` when there are several audiences), carries the `nonce` the sign-in was started with, and is within
its lifetime (`exp`, `iat`, `nbf`, with two minutes of leeway for clocks). Keys are kept for an hour and fetched
again when a token names one not among them (providers rotate them); the token comes straight from the token
endpoint, so nobody else can make zoomcal fetch them."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from zoomcal.net import tls

DISCOVERY_TTL = 3600.0      # seconds a discovery document is kept
KEYS_TTL = 3600.0           # seconds a key set is kept
LEEWAY = 120                # seconds of clock difference allowed on exp / iat / nbf
ALGORITHMS = ("RS256",)


class TokenRefused(Exception):
    """The provider's answer or its ID token is not to be believed; the message says why."""


@dataclass(frozen=True)
class Issuer:
    issuer: str
    authorize_url: str
    token_url: str
    jwks_uri: str


_cache: dict[str, tuple[float, Any]] = {}
_lock = threading.Lock()


def _cached(key: str, ttl: float) -> Any:
    with _lock:
        found = _cache.get(key)
    return found[1] if found is not None and time.monotonic() - found[0] < ttl else None


def _keep(key: str, value: Any) -> Any:
    with _lock:
        _cache[key] = (time.monotonic(), value)
    return value


async def _json(url: str, transport: httpx.AsyncBaseTransport | None, timeout: float) -> dict:
    try:
        async with httpx.AsyncClient(verify=tls(), transport=transport, timeout=timeout) as http:
            answer = await http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise TokenRefused(f"{url} is unreachable: {type(exc).__name__}") from exc
    if answer.status_code != 200 or not answer.headers.get("content-type", "").startswith("application/json"):
        raise TokenRefused(f"{url} answered {answer.status_code} {answer.headers.get('content-type', '')!r}")
    try:
        body = answer.json()
    except ValueError as exc:
        raise TokenRefused(f"{url} answered something that is not JSON") from exc
    if not isinstance(body, dict):
        raise TokenRefused(f"{url} answered something that is not a JSON object")
    return body


async def discover(url: str, *, transport: httpx.AsyncBaseTransport | None = None, timeout: float = 15.0) -> Issuer:
    """The issuer and its endpoints from the discovery document at `url` (kept for an hour)."""
    found = _cached("d:" + url, DISCOVERY_TTL)
    if found is not None:
        return found
    doc = await _json(url, transport, timeout)
    try:
        issuer = Issuer(*(str(doc[k]) for k in ("issuer", "authorization_endpoint", "token_endpoint", "jwks_uri")))
    except KeyError as exc:
        raise TokenRefused(f"the discovery document at {url} has no {exc.args[0]}") from exc
    if "{" in issuer.issuer:
        raise TokenRefused(f"{url} is a multi-organisation endpoint (its issuer is {issuer.issuer}): name one "
                           "directory")
    return _keep("d:" + url, issuer)


async def _keys(issuer: Issuer, kid: str | None, transport: httpx.AsyncBaseTransport | None, timeout: float):
    from joserfc.jwk import KeySet

    keys = _cached("k:" + issuer.jwks_uri, KEYS_TTL)
    if keys is not None and (kid is None or any(k.kid == kid for k in keys.keys)):
        return keys
    try:
        keys = KeySet.import_key_set(await _json(issuer.jwks_uri, transport, timeout))  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError) as exc:
        raise TokenRefused(f"the keys at {issuer.jwks_uri} cannot be read: {exc}") from exc
    return _keep("k:" + issuer.jwks_uri, keys)


async def verify(id_token: str, issuer: Issuer, client_id: str, nonce: str, *,
                 transport: httpx.AsyncBaseTransport | None = None, timeout: float = 15.0,
                 now: float | None = None, also: tuple[str, ...] = ()) -> dict[str, Any]:
    """The claims of an ID token that passes every check; TokenRefused otherwise. `also`: other spellings of the
    issuer the provider documents (Google: without its scheme)."""
    from joserfc import jws, jwt
    from joserfc.errors import JoseError

    if not isinstance(id_token, str) or id_token.count(".") != 2 or len(id_token) > 16_000:
        raise TokenRefused("the answer carries no ID token")
    try:
        header = jws.extract_compact(id_token.encode()).headers()
    except (JoseError, ValueError) as exc:
        raise TokenRefused(f"the ID token cannot be read: {exc}") from exc
    if header.get("alg") not in ALGORITHMS:
        raise TokenRefused(f"the ID token is signed with {header.get('alg')!r}, not RS256")
    keys = await _keys(issuer, header.get("kid"), transport, timeout)
    try:
        token = jwt.decode(id_token, keys, algorithms=list(ALGORITHMS))
    except (JoseError, ValueError) as exc:
        raise TokenRefused(f"the ID token's signature does not hold: {exc}") from exc
    claims = token.claims
    registry = jwt.JWTClaimsRegistry(now=int(now if now is not None else time.time()), leeway=LEEWAY,
                                     iss={"essential": True, "values": [issuer.issuer, *also]},
                                     sub={"essential": True}, exp={"essential": True}, iat={"essential": True},
                                     nonce={"essential": True, "value": nonce})
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise TokenRefused(f"the ID token does not hold: {exc.error}: {exc.description or ''}".rstrip(": ")) from exc
    audience = claims.get("aud")
    audiences = [audience] if isinstance(audience, str) else list(audience or [])
    if client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != client_id):
        raise TokenRefused("the ID token was issued to another application")
    return dict(claims)
