"""People: add, list, rename, remove."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from zoomcal.app.context import AppContext
from zoomcal.app.errors import ConflictError, InvalidError, NotFoundError
from zoomcal.connectors import registry
from zoomcal.store.models import Account, Calendar, Event, Link, ReviewItem, User


@dataclass
class CalendarInfo:
    id: int
    account_id: int
    provider: str
    label: str
    calendar: str
    name: str
    role: str
    receives_meetings: bool
    status: str


@dataclass
class UserInfo:
    email: str
    name: str
    calendars: list[CalendarInfo] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def normal_email(email: str) -> str:
    email = (email or "").strip().lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidError(f"not an e-mail address: {email!r}", field="email")
    return email


def find(s: Session, ctx: AppContext, email: str) -> User:
    """The tenant's user with this e-mail (the store only shows this tenant's rows)."""
    user = s.scalar(select(User).where(User.tenant_id == ctx.tenant_id, User.email == (email or "").strip().lower()))
    if user is None:
        raise NotFoundError(f"no user {email}", field="user")
    return user


def calendars_of(s: Session, user_id: int) -> list[CalendarInfo]:
    rows = s.execute(select(Calendar, Account).join(Account, Calendar.account_id == Account.id)
                     .where(Calendar.user_id == user_id).order_by(Calendar.id))
    out = []
    for cal, acc in rows:
        label = registry.get(acc.provider).label if acc.provider in registry.keys() else acc.provider
        out.append(CalendarInfo(cal.id, acc.id, acc.provider, label, cal.remote_id, cal.name, cal.role,
                                cal.receives_meetings, acc.status))
    return out


def add(ctx: AppContext, email: str, name: str = "") -> UserInfo:
    ctx.require_admin()
    email = normal_email(email)
    with ctx.store.transaction() as s:
        if s.scalar(select(User.id).where(User.email == email)) is not None:
            raise ConflictError(f"user {email} already exists", field="email")
        s.add(User(tenant_id=ctx.tenant_id, email=email, name=(name or "").strip()[:200]))
        ctx.audit(s, "user.add", email)
    return UserInfo(email, name)


def get(ctx: AppContext, email: str) -> UserInfo:
    with ctx.store.session() as s:
        user = find(s, ctx, email)
        return UserInfo(user.email, user.name, calendars_of(s, user.id))


def list_users(ctx: AppContext) -> list[UserInfo]:
    with ctx.store.session() as s:
        users = list(s.scalars(select(User).order_by(User.id)))
        if ctx.actor.role == "member":
            users = [u for u in users if ctx.actor.may_manage(u.email)]
        return [UserInfo(u.email, u.name, calendars_of(s, u.id)) for u in users]


def addresses(ctx: AppContext) -> set[str]:
    """Every person's address in the tenant (whom a meeting can be planned with by their free time: a member sees
    their colleagues' addresses, as the directory shows them, and nothing else of them)."""
    with ctx.store.session() as s:
        return set(s.scalars(select(User.email)))


def rename(ctx: AppContext, email: str, *, new_email: str | None = None, name: str | None = None) -> UserInfo:
    ctx.require_manage(email)
    with ctx.store.transaction() as s:
        user = find(s, ctx, email)
        changed: dict[str, str] = {}
        if new_email is not None and normal_email(new_email) != user.email:
            ctx.require_admin()
            new = normal_email(new_email)
            if s.scalar(select(User.id).where(User.email == new)) is not None:
                raise ConflictError(f"user {new} already exists", field="email")
            changed["email"] = new
            user.email = new
        if name is not None and name.strip() != user.name:
            changed["name"] = user.name = name.strip()[:200]
        if changed:
            ctx.audit(s, "user.rename", email, changed)
        return UserInfo(user.email, user.name, calendars_of(s, user.id))


async def remove(ctx: AppContext, email: str) -> list[str]:
    """Remove a person: their accounts are unlinked first (grants revoked where the provider offers it), then
    their events and settings go. Returns what happened to each account."""
    from zoomcal.app import accounts

    ctx.require_admin()
    with ctx.store.session() as s:
        user = find(s, ctx, email)
        account_ids = list(s.scalars(select(Account.id).where(Account.user_id == user.id).order_by(Account.id)))
    outcomes = [(await accounts.unlink(ctx, account_id)).revoked for account_id in account_ids]
    with ctx.store.transaction() as s:
        user = find(s, ctx, email)
        events = select(Event.id).where(Event.user_id == user.id)
        s.execute(delete(Link).where(Link.event_id.in_(events)))
        s.execute(delete(Event).where(Event.user_id == user.id))
        s.execute(delete(ReviewItem).where(ReviewItem.user_id == user.id))
        s.delete(user)
        ctx.audit(s, "user.remove", email, {"accounts": len(account_ids)})
    return outcomes
