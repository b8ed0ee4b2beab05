"""Helpers shared by the sandboxes: OAuth clients and bearer tokens, JSON errors, and the metering of what apps ask:
rate windows, requests and refusals per user, echo writes."""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlencode

from fastapi import HTTPException, Request, Response
from fastapi.responses import JSONResponse


class ApiError(Exception):
    def __init__(self, status: int, body: dict, headers: dict | None = None):
        self.status = status
        self.body = body
        self.headers = headers or {}


def api_error_response(_request: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body, status_code=exc.status, headers=exc.headers)


@dataclass
class TokenBook:
    """Issued access / refresh tokens. Refresh tokens rotate: each one works once.

    A grant may name the scopes it was given (space-separated, as token endpoints answer them): its refresh
    token keeps them and every access token issued from it carries them. A token issued without scopes stands for
    the vendor's own apps and may do anything (`granted` is None)."""

    ttl: int = 3600
    access: dict[str, tuple[str, float]] = field(default_factory=dict)     # token -> (subject, expires)
    refresh: dict[str, str] = field(default_factory=dict)                   # token -> subject
    apps: set[str] = field(default_factory=set)     # access tokens issued by the token endpoint, to an app
    scopes: dict[str, str] = field(default_factory=dict)    # access or refresh token -> the scopes it was granted

    def issue(self, subject: str, with_refresh: bool = False, app: bool = False, scope: str | None = None) -> dict:
        """An access token (and a refresh token); `app`: issued by the token endpoint to an app, whose requests
        the vendor meters (a token made here directly stands for a person in the vendor's own apps). With
        `scope`, the tokens carry those scopes and the answer names them."""
        token = "at_" + secrets.token_urlsafe(24)
        self.access[token] = (subject, time.time() + self.ttl)
        if app:
            self.apps.add(token)
        out = {"access_token": token, "token_type": "bearer", "expires_in": self.ttl}
        if scope is not None:
            self.scopes[token] = scope
            out["scope"] = scope
        if with_refresh:
            out["refresh_token"] = self.grant_refresh(subject, scope)
        return out

    def grant_refresh(self, subject: str, scope: str | None = None) -> str:
        rt = "rt_" + secrets.token_urlsafe(24)
        self.refresh[rt] = subject
        if scope is not None:
            self.scopes[rt] = scope
        return rt

    def use_refresh(self, token: str) -> str | None:
        return self.refresh.pop(token, None)

    def scope_of(self, token: str) -> str | None:
        """The scopes a token (access or refresh) was granted, as a space-separated string; None: not limited."""
        return self.scopes.get(token)

    def subject(self, request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        found = self.access.get(auth[7:].strip())
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def granted(self, request: Request) -> frozenset[str] | None:
        """The scopes the request's access token carries (as given, case kept); None when it is not limited."""
        auth = request.headers.get("authorization", "")
        scope = self.scopes.get(auth[7:].strip()) if auth.lower().startswith("bearer ") else None
        return None if scope is None else frozenset(scope.split())

    def by_app(self, request: Request) -> bool:
        """Whether the request carries a token the token endpoint issued to an app."""
        auth = request.headers.get("authorization", "")
        return auth.lower().startswith("bearer ") and auth[7:].strip() in self.apps

    def revoke(self, token: str) -> bool:
        """Revoke a grant by one of its tokens (access or refresh): every token of that subject stops working."""
        subject = self.refresh.get(token) or (self.access.get(token) or (None,))[0]
        if subject is None:
            return False
        self.refresh = {t: s for t, s in self.refresh.items() if s != subject}
        self.access = {t: v for t, v in self.access.items() if v[0] != subject}
        self.scopes = {t: s for t, s in self.scopes.items() if t in self.refresh or t in self.access}
        return True

    def expire_all(self) -> None:
        self.access.clear()


def basic_credentials(request: Request) -> tuple[str, str] | None:
    auth = request.headers.get("authorization", "")
    if not auth.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(auth[6:].strip()).decode().partition(":")
    except ValueError:
        return None
    return user, password


def require(condition: bool, status: int, detail: str) -> None:
    if not condition:
        raise HTTPException(status_code=status, detail=detail)


# --- metering: what apps ask of a vendor ----------------------------------------------------------------------

class RateWindows:
    """Sliding windows of admitted requests per key: at most `limit` in any `seconds`. A refused request uses
    nothing up."""

    def __init__(self) -> None:
        self.hits: dict[tuple, deque[float]] = {}

    def take(self, key: tuple, limit: int, seconds: float, now: float) -> float | None:
        """Admit (and count) one request -> None; or, at the limit, the seconds until one leaves the window."""
        hits = self.hits.setdefault(key, deque())
        while hits and hits[0] <= now - seconds:
            hits.popleft()
        if len(hits) >= limit:
            return max(hits[0] + seconds - now, 0.0)
        hits.append(now)
        return None

    def used(self, key: tuple, seconds: float, now: float) -> int:
        return sum(1 for t in self.hits.get(key, ()) if t > now - seconds)


def retry_seconds(wait: float) -> int:
    """Retry-After in whole seconds, at least 1 (what the vendors send)."""
    return max(1, math.ceil(wait - 1e-9))


@dataclass
class Refusal:
    at: float
    user: str
    method: str
    path: str
    limit: str                    # which limit refused it (e.g. "zoom:Light:QPS", "google:user-per-minute")
    retry_after: float | None     # what the answer advised, in seconds (None: no advice, back off)
    avoidable: bool               # refused while an earlier refusal's advised wait on the same limit was running


@dataclass
class Meter:
    """What apps asked of one vendor, per user: requests, refusals for quota, and echo writes (writes that left
    the item exactly as it was). Only requests with an app's token are metered.

    A refusal is `avoidable` when it came while the advice of the previous refusal by the same limit still ran:
    its Retry-After, or with none, the exponential back-off the vendors document (1 s, 2 s, 4 s... for the
    refusals in a row). A request the limit admits ends the advice."""

    clock: Callable[[], float] = time.monotonic
    requests: Counter[str] = field(default_factory=Counter)
    refusals: list[Refusal] = field(default_factory=list)
    echo_writes: list[tuple[float, str, str, str]] = field(default_factory=list)   # (at, user, method, path)
    advised: dict[str, tuple[float, int]] = field(default_factory=dict)   # limit -> (wait until, refusals in a row)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def request(self, user: str) -> None:
        with self.lock:
            self.requests[user] += 1

    def admitted(self, limit: str) -> None:
        if limit in self.advised:
            with self.lock:
                self.advised.pop(limit, None)

    def refuse(self, user: str, method: str, path: str, limit: str, retry_after: float | None) -> Refusal:
        now = self.clock()
        with self.lock:
            until, streak = self.advised.get(limit, (-math.inf, 0))
            wait = retry_after if retry_after is not None else 2.0 ** streak
            self.advised[limit] = (now + wait, streak + 1)
            refusal = Refusal(now, user, method, path, limit, retry_after, now < until)
            self.refusals.append(refusal)
            return refusal

    def echo(self, user: str, method: str, path: str) -> None:
        with self.lock:
            self.echo_writes.append((self.clock(), user, method, path))

    def per_user(self) -> dict[str, dict[str, int]]:
        refused = Counter(r.user for r in self.refusals)
        avoidable = Counter(r.user for r in self.refusals if r.avoidable)
        echoes = Counter(e[1] for e in self.echo_writes)
        return {user: {"requests": self.requests[user], "refused": refused[user], "avoidable": avoidable[user],
                       "echo_writes": echoes[user]}
                for user in sorted(set(self.requests) | set(refused) | set(echoes))}

    def totals(self) -> dict[str, int]:
        return {"requests": sum(self.requests.values()), "refused": len(self.refusals),
                "avoidable": sum(1 for r in self.refusals if r.avoidable), "echo_writes": len(self.echo_writes)}

    def reset(self) -> None:
        """Forget what was counted (the advice of refusals still running is kept)."""
        with self.lock:
            self.requests.clear()
            self.refusals.clear()
            self.echo_writes.clear()


CODE_TTL = 600          # seconds an authorization code can be redeemed in


@dataclass
class Consents:
    """The sign-in page of a vendor's OAuth authorization-code flow with PKCE (RFC 7636), already signed in as the
    `login_hint`: consent is given and the browser is sent back with a one-time code bound to the S256 challenge,
    the redirect URI and the scopes asked for."""

    codes: dict[str, tuple[str, str, str, str, float, dict[str, str]]] = field(default_factory=dict)
    # code -> (subject, challenge, redirect, scope, expires, what else the request asked)

    def answer(self, request: Request, *, client_id: str, subject_of: Callable[[str], str | None],
               needs: tuple[str, ...] = (), keep: Callable[[str], str] = lambda scope: scope,
               refuse: Callable[[str], JSONResponse], remember: tuple[str, ...] = (),
               stranger: str = "the user is not known here") -> JSONResponse | Response:
        """The authorize endpoint's answer: a 302 back to the redirect URI with `code` (or `error`) and `state`;
        `refuse(why)` when the client or the redirect URI is wrong (never redirected to, RFC 6749 4.1.2.1).
        `subject_of` finds the signed-in person from the login hint; `needs`: scopes the request must ask for one of;
        `keep` turns the scopes asked for into those granted; `remember` names other parameters the code keeps
        (Google's `access_type`); `stranger` is the vendor's words for a person it does not know."""
        q = request.query_params
        redirect = q.get("redirect_uri") or ""
        if q.get("client_id") != client_id or not _loopback_redirect(redirect):
            return refuse("the client or its redirect URI is not registered")
        subject = subject_of(q.get("login_hint") or "")
        answer = {"state": q.get("state") or ""}
        if q.get("response_type") != "code" or q.get("code_challenge_method") != "S256" or \
                not q.get("code_challenge") or (needs and not set(needs) & set((q.get("scope") or "").split())):
            wanted = f" and {' or '.join(needs)}" if needs else ""
            answer.update(error="invalid_request", error_description=f"code flow with S256 PKCE{wanted}")
        elif subject is None:
            answer.update(error="access_denied", error_description=stranger)
        else:
            code = "code_" + secrets.token_urlsafe(24)
            self.codes[code] = (subject, q["code_challenge"], redirect, keep(q.get("scope") or ""),
                                time.time() + CODE_TTL, {k: q[k] for k in remember if k in q})
            answer["code"] = code
        return Response(status_code=302, headers={"Location": f"{redirect}?{urlencode(answer)}"})

    def redeem(self, code: str, verifier: str, redirect: str) -> tuple[str, str, dict[str, str]] | None:
        """(subject, scope, what else was asked) of a code used once, with the verifier of its challenge and its
        redirect URI."""
        subject, challenge, was, scope, expires, asked = self.codes.pop(code, ("", "", "", "", 0.0, {}))
        digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not subject or expires < time.time() or not secrets.compare_digest(digest, challenge) or redirect != was:
            return None
        return subject, scope, asked


def _loopback_redirect(uri: str) -> bool:
    """The redirect URIs the sandboxes' apps have registered: anything on http://127.0.0.1 (the demo's and the
    tests' loopback servers)."""
    return uri.startswith("http://127.0.0.1:") or uri.startswith("http://127.0.0.1/")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class IdTokens:
    """The OpenID Connect side of a vendor's sign-in: ID tokens (JWS, RS256) signed with one RSA key the vendor
    publishes as a JSON Web Key Set, and the discovery document that names the issuer and the endpoints
    (OpenID Connect Discovery 1.0, RFC 7517/7518). The key is made when first needed."""

    ttl: int = 3600
    _key: object = None
    kid: str = field(default_factory=lambda: secrets.token_hex(8))

    def key(self):
        if self._key is None:
            from cryptography.hazmat.primitives.asymmetric import rsa
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key

    def sign(self, claims: dict, *, key=None, kid: str | None = None) -> str:
        """A compact JWS of the claims (iat and exp added when absent), signed with the vendor's key (or another,
        to forge one)."""
        import json

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        now = int(time.time())
        body = {"iat": now, "exp": now + self.ttl, **claims}
        head = _b64(json.dumps({"alg": "RS256", "kid": kid or self.kid, "typ": "JWT"}).encode())
        signing = f"{head}.{_b64(json.dumps(body).encode())}".encode()
        signature = (key or self.key()).sign(signing, padding.PKCS1v15(), hashes.SHA256())
        return f"{signing.decode()}.{_b64(signature)}"

    def jwks(self) -> dict:
        numbers = self.key().public_key().public_numbers()
        def whole(n: int) -> str:
            return _b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))
        return {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "n": whole(numbers.n),
                          "e": whole(numbers.e)}]}

    @staticmethod
    def discovery(issuer: str, authorize: str, token: str, jwks: str, **more) -> dict:
        return {"issuer": issuer, "authorization_endpoint": authorize, "token_endpoint": token, "jwks_uri": jwks,
                "response_types_supported": ["code"], "subject_types_supported": ["pairwise", "public"],
                "id_token_signing_alg_values_supported": ["RS256"], "code_challenge_methods_supported": ["S256"],
                "scopes_supported": ["openid", "email", "profile"], **more}


def mounted_at(request: Request) -> str:
    """The URL the vendor's app is served at (scheme, host and the path it is mounted on), without a trailing /."""
    return str(request.base_url).rstrip("/") + str(request.scope.get("root_path") or "").rstrip("/")


def subject_id(*parts: str) -> str:
    """A stable, opaque subject identifier for a person (as a vendor derives its `sub`)."""
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:21]
