"""The context every application operation runs in, and the per-process services behind it.

`Services` is one per process: settings, the database, the token vault, the HTTP seam, the job queue, the busy
index (filled lazily with the people asked about), and the connectors built so far (one per calendar and account
revision, reused across rounds, so token sources and HTTP connections live as long as the process). `AppContext`
is one per request or job: the services seen from one tenant (a tenant-scoped store: no query of it can reach
another tenant's rows), who is acting, and the clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import httpx
from sqlalchemy import select

from zoomcal.app.errors import ForbiddenError, NotFoundError, SchemaOutdated
from zoomcal.auth.tokens import settle as settle_refreshes
from zoomcal.auth.tokens import stored_tokens
from zoomcal.auth.vault import Vault
from zoomcal.availability.index import BusyIndex
from zoomcal.config import Settings
from zoomcal.connectors import registry
from zoomcal.connectors.base import Connector
from zoomcal.connectors.spec import AccountView, Env, ProviderSpec
from zoomcal.domain.timeutil import now_utc
from zoomcal.errors import ConfigError
from zoomcal.mapping.rules import MappingRules, load_rules
from zoomcal.net import Resolver, system_resolver
from zoomcal.store import repo
from zoomcal.store.db import Database, SchemaError, TenantStore
from zoomcal.store.models import Account, Calendar, Tenant
from zoomcal.sync.retry import Retrier


class Clock(Protocol):
    def now(self) -> datetime: ...


class SystemClock:
    def now(self) -> datetime:
        return now_utc()


@dataclass(frozen=True)
class Actor:
    """Who is acting: the name goes to the audit trail; the role decides what they may do."""

    name: str
    role: str = "admin"              # admin | member | system
    email: str | None = None         # a member acts on their own user only
    remote: bool = False             # over the web (the portal), not on the machine: names no file of it

    def may_manage(self, email: str) -> bool:
        return self.role in ("admin", "system") or (self.email or "").lower() == email.strip().lower()


CLI = Actor("cli", "admin")
SYSTEM = Actor("system", "system")


@dataclass(frozen=True)
class Job:
    name: str
    args: dict[str, Any]


class JobQueue(Protocol):
    def defer(self, name: str, **args: Any) -> None:
        """Wake whoever runs `name` jobs (the work itself is marked durably before: see app/due.py)."""
        ...


class LocalJobs:
    """The in-process job queue: work marked by webhooks and operations, taken by the process's own loop."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Job] = queue.Queue()

    def defer(self, name: str, **args: Any) -> None:
        self.queue.put(Job(name, args))

    def take(self, timeout: float, gather: float = 0.5) -> list[Job]:
        """Jobs that arrive within `timeout` seconds (none: an empty list): the first, every one queued behind it,
        and those that arrive for `gather` seconds more (0: none are waited for)."""
        try:
            first = self.queue.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return []
        jobs, deadline = [first], time.monotonic() + gather
        while True:
            try:
                jobs.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                return jobs

    def pending(self) -> list[Job]:
        return self.take(0, gather=0)


def _rules_key(rules: MappingRules) -> str:
    return hashlib.blake2b(rules.model_dump_json().encode(), digest_size=8).hexdigest()


class Services:
    """What one process shares between all the contexts it serves."""

    def __init__(self, settings: Settings, db: Database, vault: Vault, *,
                 transport: httpx.AsyncBaseTransport | None = None, resolver: Resolver = system_resolver,
                 jobs: LocalJobs | None = None):
        self.settings = settings
        self.db = db
        self.vault = vault
        self.transport = transport
        self.resolver = resolver
        self.jobs = jobs or LocalJobs()
        self.retrier: Callable[[], Retrier] = lambda: Retrier(max_retries=settings.max_retries)
        # busy intervals of the people this process was asked about, reread when another process changed them
        self.busy_index = BusyIndex()
        self._connectors: dict[tuple, Connector] = {}
        self._retired: list[Connector] = []     # replaced by a newer revision; closed with the services
        self._lock = threading.Lock()

    # --- contexts ------------------------------------------------------------------------------------------
    def context(self, tenant: str = "default", actor: Actor = CLI, clock: Clock | None = None) -> AppContext:
        with self.db.session() as s:
            row = s.scalar(select(Tenant).where(Tenant.name == tenant))
        if row is None:
            raise NotFoundError(f"no tenant {tenant!r}", field="tenant")
        return AppContext(self, row.id, row.name, actor, self.db.for_tenant(row.id), clock or SystemClock(),
                          self.jobs)

    def tenants(self) -> list[tuple[int, str]]:
        with self.db.session() as s:
            return [(t.id, t.name) for t in s.scalars(select(Tenant).order_by(Tenant.id))]

    # --- connectors ----------------------------------------------------------------------------------------
    def env(self, rules: MappingRules, share: Callable[[Any], Any] | None = None, provider: str = "") -> Env:
        env = Env(rules=rules, transport=self.transport, resolver=self.resolver, timeout=self.settings.http_timeout,
                  allow_private=self.settings.allow_private_urls, provider=provider)
        if share is not None:
            env.share_tokens = share
        return env

    def connector(self, ctx: AppContext, account: Account, calendar: Calendar, rules: MappingRules) -> Connector:
        """The calendar's connector, built once per account revision and mapping rules in this process (and per
        event loop: HTTP connections belong to the loop that opened them)."""
        try:
            loop: int = id(asyncio.get_running_loop())
        except RuntimeError:
            loop = 0
        key = (ctx.tenant_id, calendar.id, account.id, account.revision, _rules_key(rules), loop)
        with self._lock:
            found = self._connectors.get(key)
        if found is not None:
            return found
        view, env = self.provider_env(ctx, account, calendar, rules)
        built = registry.get(account.provider).connector(view, env)
        with self._lock:
            stale = [k for k in self._connectors if k[:3] == key[:3] and k != key and k[5] == loop]
            for k in stale:
                self._retired.append(self._connectors.pop(k))
            self._connectors[key] = built
        return built

    def account_view(self, account: Account, calendar: Calendar | None) -> AccountView:
        secret = self.vault.open(account.secret) if account.secret else {}
        return AccountView(account.id, dict(account.config or {}), secret,
                           calendar.remote_id if calendar else account.external_id)

    def provider_env(self, ctx: AppContext, account: Account, calendar: Calendar | None, rules: MappingRules
                     ) -> tuple[AccountView, Env]:
        """A stored account as its provider sees it, and the environment to reach it with: its access token is
        the one every process shares through the store (one refresh at a time, rotations stored under the lock)."""
        spec = registry.get(account.provider)
        view = self.account_view(account, calendar)
        env = self.env(rules, provider=spec.key)
        env.clock = ctx.now
        if spec.grant is not None:
            grant = spec.grant

            def shared(_grant: Any) -> Any:
                return stored_tokens(ctx.store, self.vault, account.id,
                                     lambda secret: grant(replace(view, secret=secret, on_rotate=None), env))
            env.share_tokens = shared
        return view, env

    async def aclose(self) -> None:
        await settle_refreshes()    # refreshes under way end (and are stored) before their clients close
        with self._lock:
            connectors = list(self._connectors.values()) + self._retired
            self._connectors.clear()
            self._retired = []
        for connector in connectors:
            try:
                await connector.aclose()
            except Exception:   # noqa: BLE001 — closing is best effort (the loop may have changed)
                pass

    def close(self) -> None:
        closing = getattr(self.jobs, "close", None)
        if closing is not None:
            closing()
        self.db.dispose()


def open_vault(settings: Settings, create: bool = False) -> Vault:
    if settings.vault_keys:
        return Vault.from_spec(settings.vault_keys)
    return Vault.from_file(settings.data_dir / "vault.keys", create=create)


def open_services(settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None,
                  resolver: Resolver = system_resolver, check_schema: bool = True,
                  create_vault: bool = False) -> Services:
    """The process's services; stops with SchemaOutdated when the database is not at this zoomcal's schema."""
    db = Database(settings.resolved_database_url())
    if check_schema:
        try:
            db.check_schema()
        except SchemaError as exc:
            db.dispose()
            raise SchemaOutdated(str(exc), details={"state": exc.state, "current": exc.current,
                                                    "head": exc.head}) from exc
    try:
        vault = open_vault(settings, create_vault)
    except ConfigError as exc:
        db.dispose()
        raise SchemaOutdated(str(exc), details={"state": "no_vault"}) from exc
    services = Services(settings, db, vault, transport=transport, resolver=resolver)
    if settings.uses_workers():     # the runners (and what their jobs import) load only where they run
        from zoomcal.app.runner import WorkerJobs

        services.jobs = WorkerJobs(services)
    return services


@dataclass
class AppContext:
    services: Services
    tenant_id: int
    tenant_name: str
    actor: Actor
    store: TenantStore
    clock: Clock
    jobs: JobQueue
    _rules: dict[str, MappingRules] = field(default_factory=dict)

    @property
    def settings(self) -> Settings:
        return self.services.settings

    @property
    def vault(self) -> Vault:
        return self.services.vault

    def now(self) -> datetime:
        return self.clock.now()

    def rules(self) -> MappingRules:
        """The tenant's mapping rules: the shipped defaults, the rules file, the tenant's overrides."""
        with self.store.session() as s:
            overrides = s.get(Tenant, self.tenant_id).mapping_rules
        try:
            return load_rules(self.settings.mapping_rules, overrides=overrides or None)
        except ConfigError as exc:
            from zoomcal.app.errors import InvalidError

            raise InvalidError(str(exc), field="mapping_rules") from exc

    def audit(self, session, action: str, target: str = "", detail: dict[str, Any] | None = None) -> None:
        repo.audit(session, self.tenant_id, self.actor.name, action, target, detail)

    def require_admin(self) -> None:
        if self.actor.role not in ("admin", "system"):
            raise ForbiddenError("only an admin may do this")

    def require_manage(self, email: str) -> None:
        if not self.actor.may_manage(email):
            raise ForbiddenError("you may act only on your own account")

    def spec(self, key: str) -> ProviderSpec:
        from zoomcal.app.errors import InvalidError

        try:
            return registry.get(key)
        except registry.UnknownProvider:
            raise InvalidError(f"unknown provider {key!r}; one of {', '.join(registry.keys())}",
                               field="provider") from None
