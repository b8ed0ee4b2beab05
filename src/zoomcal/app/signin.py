"""Signing in to the portal: local passwords (argon2), sessions, roles, and throttling of failed attempts.

A session is a random token held by the browser in a cookie; the store keeps only its SHA-256 (a copy of the
database signs nobody in) with the person, their tenant and the CSRF token every form of the session carries.
The tenant of everything the portal does comes from the session alone. A session ends after `IDLE` without a
request or `LIFETIME` after it began, whichever is first; a password change or a role change ends every session
of the person.

Failed attempts are counted per address and per client address in the store (every process sees them): after
`ADDRESS_LIMIT` failures for one address, or `CLIENT_LIMIT` from one client, within `WINDOW`, sign-in is refused
until the window ends, right password or not. A wrong address and a wrong password get the same answer and take
the same time (an unknown address is checked against a dummy hash)."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, select, text

from zoomcal.app.context import Actor, AppContext, Services
from zoomcal.app.errors import InvalidError, NotSignedInError, ThrottledError
from zoomcal.app.users import find, normal_email
from zoomcal.availability.intervals import as_utc
from zoomcal.lazy import lazy
from zoomcal.logging import get_logger
from zoomcal.store import repo
from zoomcal.store.models import PortalSession, SignInFailure, SignInLink, Tenant, User

argon2 = lazy("argon2")
log = get_logger("zoomcal.signin")

ROLES = ("admin", "member")
IDLE = timedelta(hours=2)
LIFETIME = timedelta(hours=12)
SEEN_EVERY = timedelta(minutes=1)       # a session's last use is written at most this often
WINDOW = timedelta(minutes=15)
ADDRESS_LIMIT = 5
CLIENT_LIMIT = 30
MIN_PASSWORD, MAX_PASSWORD = 10, 1024
WRONG = "wrong e-mail address or password"


def _hasher():
    return argon2.PasswordHasher()


_DUMMY: list[str] = []


def _dummy_hash() -> str:
    if not _DUMMY:
        _DUMMY.append(_hasher().hash(secrets.token_urlsafe(16)))
    return _DUMMY[0]


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now(now: datetime | None) -> datetime:
    return as_utc(now) if now is not None else datetime.now(UTC)


@dataclass(frozen=True)
class SignedIn:
    """Who a session is: the doors build the person's context from it (`context`)."""

    session: str            # the session's id (the token's digest), never the token
    tenant: str
    tenant_id: int
    user_id: int
    email: str
    name: str
    role: str
    csrf: str
    expires_at: datetime

    @property
    def actor(self) -> Actor:
        return Actor(f"portal:{self.email}", self.role, self.email, remote=True)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Started:
    token: str              # for the cookie; shown nowhere else
    who: SignedIn


# --- passwords and roles (operations on a tenant) ----------------------------------------------------------------

def check_password(password: str, email: str) -> None:
    if not isinstance(password, str) or len(password) < MIN_PASSWORD:
        raise InvalidError(f"a password has at least {MIN_PASSWORD} characters", field="password")
    if len(password) > MAX_PASSWORD:
        raise InvalidError(f"a password has at most {MAX_PASSWORD} characters", field="password")
    if password.strip().lower() == email.strip().lower():
        raise InvalidError("a password is not the e-mail address", field="password")


def set_password(ctx: AppContext, email: str, password: str | None) -> None:
    """Set (or, with None, remove) a person's portal password. Every session of theirs ends."""
    ctx.require_manage(email)
    if password is not None:
        check_password(password, email)
    hashed = _hasher().hash(password) if password is not None else None
    with ctx.store.transaction() as s:
        user = find(s, ctx, email)
        user.password_hash = hashed
        s.execute(delete(PortalSession).where(PortalSession.user_id == user.id))
        ctx.audit(s, "user.password", user.email, {"set": password is not None})


def set_role(ctx: AppContext, email: str, role: str) -> str:
    ctx.require_admin()
    if role not in ROLES:
        raise InvalidError(f"a role is one of {', '.join(ROLES)}", field="role")
    with ctx.store.transaction() as s:
        user = find(s, ctx, email)
        if user.role != role:
            before, user.role = user.role, role
            s.execute(delete(PortalSession).where(PortalSession.user_id == user.id))
            ctx.audit(s, "user.role", user.email, {"from": before, "to": role})
    return role


def role_of(ctx: AppContext, email: str) -> tuple[str, bool]:
    """A person's role, and whether they have a portal password."""
    ctx.require_manage(email)
    with ctx.store.session() as s:
        user = find(s, ctx, email)
        return user.role, user.password_hash is not None


# --- signing in and out (the tenant is not known yet: these take the services) ------------------------------------

def _throttled(s, keys: list[tuple[str, int]], now: datetime) -> int:
    """Seconds until sign-in is allowed again (0: now)."""
    wait = 0
    for key, limit in keys:
        row = s.get(SignInFailure, key)
        if row is not None and row.failures >= limit:
            ends = as_utc(row.since) + WINDOW
            if ends > now:
                wait = max(wait, int((ends - now).total_seconds()) + 1)
    return wait


SIGN_IN_LOCK = 0x7a63_7369   # the advisory lock class of a sign-in throttle key on PostgreSQL


def _lock(s, keys: list[tuple[str, int]]) -> None:
    """PostgreSQL: hold each key's lock for the transaction (in one order: no deadlock), so that two attempts
    read and count one key one after the other (SQLite's write lock does this already)."""
    if s.get_bind().dialect.name != "postgresql":
        return
    for key in sorted(k for k, _limit in keys):
        digest = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big", signed=True)
        s.execute(text("SELECT pg_advisory_xact_lock(:kind, :key)"), {"kind": SIGN_IN_LOCK, "key": digest})


def _count(s, keys: list[tuple[str, int]], now: datetime) -> None:
    """Count an attempt against each key (a window that ended starts again from this one)."""
    for key, _limit in keys:
        row = s.get(SignInFailure, key)
        if row is None:
            s.add(SignInFailure(key=key, failures=1, since=now))
        elif as_utc(row.since) + WINDOW <= now:
            row.failures, row.since = 1, now
        else:
            row.failures += 1


def sign_in(services: Services, email: str, password: str, *, client: str, tenant: str | None = None,
            now: datetime | None = None) -> Started:
    """A new session for the person with this address and password (in `tenant`, when the address has a password
    in several). Refused alike for a wrong address or password (InvalidError), or when throttled."""
    now = _now(now)
    try:
        address = normal_email(email)
    except InvalidError:
        address = (email or "").strip().lower()[:320]
    keys = [(f"address:{address}", ADDRESS_LIMIT), (f"client:{(client or '?')[:300]}", CLIENT_LIMIT)]
    # the attempt is counted before the password is checked (and forgiven when it was right): attempts made at
    # the same time cannot all slip under the limit
    with services.db.locked_transaction() as s:
        _lock(s, keys)
        wait = _throttled(s, keys, now)
        if not wait:
            _count(s, keys, now)
    if wait:
        log.warning("sign_in_throttled", client=client)    # security
        raise ThrottledError(f"too many failed sign-ins: try again in {wait} seconds",
                             details={"retry_after": wait})
    with services.db.session() as s:
        query = select(User, Tenant.name).join(Tenant, User.tenant_id == Tenant.id).where(
            User.email == address, User.password_hash.is_not(None))
        if tenant:
            query = query.where(Tenant.name == tenant)
        candidates = [(u.id, u.password_hash, name) for u, name in s.execute(query)]
    hasher = _hasher()
    matched: list[tuple[int, str, str]] = []
    for candidate in candidates or [(0, _dummy_hash(), "")]:
        try:
            hasher.verify(candidate[1], password or "")
        except (argon2.exceptions.VerificationError, argon2.exceptions.InvalidHashError):
            continue
        if candidate[0]:
            matched.append(candidate)
    if len(matched) != 1:
        log.warning("sign_in_refused", client=client)           # security: never the address or password
        if len(matched) > 1:
            raise InvalidError("this address signs in to several organisations: name the organisation",
                               field="tenant")
        raise InvalidError(WRONG, field="password")
    user_id, hashed, _tenant = matched[0]
    with services.db.locked_transaction() as s:
        user = s.get(User, user_id)
        if user is None or user.password_hash != hashed:        # changed while we checked
            raise InvalidError(WRONG, field="password")
        if hasher.check_needs_rehash(hashed):
            user.password_hash = hasher.hash(password)
        _lock(s, keys)
        s.execute(delete(SignInFailure).where(SignInFailure.key == keys[0][0]))
        counted = s.get(SignInFailure, keys[1][0])       # the client's count forgives a right password
        if counted is not None and counted.failures > 0:
            counted.failures -= 1
        return _start(s, user, now, client, "password")


def _start(s, user: User, now: datetime, client: str, how: str) -> Started:
    """A new session for `user`, in the caller's transaction (expired ones of anybody go)."""
    token = secrets.token_urlsafe(32)
    s.execute(delete(PortalSession).where(PortalSession.expires_at < now))
    row = PortalSession(id=_digest(token), tenant_id=user.tenant_id, user_id=user.id, csrf=secrets.token_urlsafe(32),
                        created_at=now, seen_at=now, expires_at=now + LIFETIME)
    s.add(row)
    repo.audit(s, user.tenant_id, f"portal:{user.email}", "portal.sign_in", user.email, {"client": client, "by": how})
    tenant_name = s.get(Tenant, user.tenant_id).name
    return Started(token, SignedIn(row.id, tenant_name, user.tenant_id, user.id, user.email, user.name, user.role,
                                   row.csrf, row.expires_at))


# --- one-time sign-in links ---------------------------------------------------------------------------------------

LINK_TTL = timedelta(minutes=15)
MAX_LINK_TTL = timedelta(days=1)


def link(ctx: AppContext, email: str, ttl: timedelta = LINK_TTL) -> str:
    """A token that signs `email` in once, within `ttl` (an admin's way in before any password is set, and the
    demo's). The store keeps only its digest."""
    ctx.require_admin()
    if not timedelta(0) < ttl <= MAX_LINK_TTL:
        raise InvalidError("a sign-in link lasts between a minute and a day", field="minutes")
    token = secrets.token_urlsafe(32)
    with ctx.store.transaction() as s:
        user = find(s, ctx, email)
        s.execute(delete(SignInLink).where(SignInLink.expires_at < ctx.now()))
        s.add(SignInLink(id=_digest(token), tenant_id=ctx.tenant_id, user_id=user.id, expires_at=ctx.now() + ttl))
        ctx.audit(s, "portal.link", user.email, {"minutes": int(ttl.total_seconds() // 60)})
    return token


USED = "this sign-in link has been used or has expired"


def link_holder(services: Services, token: str | None, *, now: datetime | None = None) -> tuple[str, str, str]:
    """Whom a link signs in, without using it: (e-mail, name, tenant)."""
    now = _now(now)
    if not token or len(token) > 200:
        raise NotSignedInError(USED)
    with services.db.session() as s:
        found = s.execute(select(SignInLink, User, Tenant.name).join(User, SignInLink.user_id == User.id)
                          .join(Tenant, SignInLink.tenant_id == Tenant.id)
                          .where(SignInLink.id == _digest(token))).first()
    if found is None or as_utc(found[0].expires_at) <= now:
        raise NotSignedInError(USED)
    return found[1].email, found[1].name, found[2]


def sign_in_with_link(services: Services, token: str | None, *, client: str, now: datetime | None = None) -> Started:
    """Use a link: a session, and the link is gone (a second use, or one after it expired, is refused)."""
    now = _now(now)
    if not token or len(token) > 200:
        raise NotSignedInError(USED)
    with services.db.locked_transaction() as s:
        row = s.get(SignInLink, _digest(token))
        if row is None:
            raise NotSignedInError(USED)
        s.delete(row)
        user = s.get(User, row.user_id)
        if as_utc(row.expires_at) <= now or user is None:
            s.flush()
            log.warning("sign_in_link_refused", client=client)        # security
            expired = NotSignedInError(USED)
        else:
            return _start(s, user, now, client, "link")
    raise expired


def current(services: Services, token: str | None, *, now: datetime | None = None) -> SignedIn:
    """Who holds this session token; NotSignedInError when nobody (no token, unknown, ended)."""
    if not token or len(token) > 200:
        raise NotSignedInError("not signed in")
    now = _now(now)
    digest = _digest(token)
    with services.db.session() as s:
        found = s.execute(select(PortalSession, User, Tenant.name)
                          .join(User, PortalSession.user_id == User.id)
                          .join(Tenant, PortalSession.tenant_id == Tenant.id)
                          .where(PortalSession.id == digest)).first()
    if found is None:
        raise NotSignedInError("not signed in")
    row, user, tenant_name = found
    if as_utc(row.expires_at) <= now or as_utc(row.seen_at) + IDLE <= now:
        with services.db.transaction() as s:
            s.execute(delete(PortalSession).where(PortalSession.id == digest))
        raise NotSignedInError("the session has ended: sign in again")
    if as_utc(row.seen_at) + SEEN_EVERY <= now:
        with services.db.transaction() as s:
            live = s.get(PortalSession, digest)
            if live is not None:
                live.seen_at = now
    return SignedIn(row.id, tenant_name, row.tenant_id, user.id, user.email, user.name, user.role, row.csrf,
                    as_utc(row.expires_at))


def context(services: Services, who: SignedIn) -> AppContext:
    """The signed-in person's context: their tenant, acting as themselves with their role."""
    return services.context(who.tenant, who.actor)


def sign_out(services: Services, token: str | None) -> bool:
    if not token or len(token) > 200:
        return False
    with services.db.transaction() as s:
        row = s.get(PortalSession, _digest(token))
        if row is None:
            return False
        user = s.get(User, row.user_id)
        s.delete(row)
        repo.audit(s, row.tenant_id, f"portal:{user.email if user else '?'}", "portal.sign_out",
                   user.email if user else "")
    return True
