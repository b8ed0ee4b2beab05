"""Operating zoomcal: setting up, migrating the database on purpose, tenants, rotating the vault key."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from zoomcal.app.context import SYSTEM, Services, open_vault
from zoomcal.app.errors import ConflictError, InvalidError
from zoomcal.config import Settings
from zoomcal.store.db import Database, schema_state
from zoomcal.store.models import Account, Tenant


@dataclass
class InitResult:
    data_dir: Path
    database: str
    vault: str
    tenant: str
    revision_before: str | None
    revision: str


def init(settings: Settings, tenant: str = "default") -> InitResult:
    """Create the data directory, the vault key (unless keys come from the environment) and the database schema,
    and the first tenant. Running it again is harmless: it migrates what is behind and keeps what exists."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.data_dir.chmod(0o700)
    db = Database(settings.resolved_database_url())
    try:
        _state, before, head = schema_state(db.engine)
        _refuse_a_new_key_over_sealed_secrets(settings, db, before)
        open_vault(settings, create=True)
        db.upgrade()
        if db.engine.dialect.name == "sqlite" and db.engine.url.database not in (None, "", ":memory:"):
            Path(db.engine.url.database).chmod(0o600)       # the owner only: it holds sealed secrets and e-mails
        with db.transaction() as s:
            if s.scalar(select(Tenant).where(Tenant.name == tenant)) is None:
                s.add(Tenant(name=tenant))
        vault = "ZOOMCAL_VAULT_KEYS" if settings.vault_keys else str(settings.data_dir / "vault.keys")
        return InitResult(settings.data_dir, db.engine.url.render_as_string(hide_password=True), vault, tenant,
                          before, head)
    finally:
        db.dispose()


def _refuse_a_new_key_over_sealed_secrets(settings: Settings, db: Database, revision: str | None) -> None:
    """A lost key file must not be replaced silently: every sealed secret would then fail to open."""
    key_file = settings.data_dir / "vault.keys"
    if settings.vault_keys or key_file.exists() or revision is None:
        return
    with db.session() as s:
        sealed = s.scalar(select(func.count()).select_from(Account))
    if sealed:
        raise InvalidError(f"the vault key file {key_file} is missing, but {sealed} linked account(s) hold secrets "
                           "sealed with it; restore the file from a backup (or give the keys in "
                           "ZOOMCAL_VAULT_KEYS). A new key would leave every one of them unreadable.",
                           field="vault")


def upgrade(settings: Settings, revision: str = "head") -> tuple[str | None, str | None]:
    """Apply migrations; returns (revision before, revision after)."""
    db = Database(settings.resolved_database_url())
    try:
        _state, before, _head = schema_state(db.engine)
        db.upgrade(revision)
        _state, after, _head = schema_state(db.engine)
        return before, after
    finally:
        db.dispose()


def schema(settings: Settings) -> tuple[str, str | None, str]:
    """("ok" | "missing" | "behind" | "ahead", the database's revision, the one this zoomcal needs)."""
    db = Database(settings.resolved_database_url())
    try:
        return schema_state(db.engine)
    finally:
        db.dispose()


def add_tenant(services: Services, name: str) -> str:
    name = (name or "").strip()
    if not name or len(name) > 200 or any(c.isspace() for c in name):
        raise InvalidError(f"a tenant name is one word of up to 200 characters, not {name!r}", field="tenant")
    with services.db.transaction() as s:
        if s.scalar(select(Tenant).where(Tenant.name == name)) is not None:
            raise ConflictError(f"tenant {name!r} already exists", field="tenant")
        s.add(Tenant(name=name))
    return name


def vault_rotate(services: Services) -> int:
    """Re-seal every stored secret (and cached access token) with the newest vault key, tenant by tenant."""
    vault = services.vault
    moved = 0
    for _tenant_id, name in services.tenants():
        ctx = services.context(name, SYSTEM)
        # the rows are locked: a token refresh committing in between would otherwise be overwritten
        with ctx.store.locked_transaction() as s:
            for account in s.scalars(select(Account).with_for_update()):
                changed = False
                for column in ("secret", "access_token"):
                    sealed = getattr(account, column)
                    if sealed and vault.reseal(sealed) != sealed:
                        setattr(account, column, vault.reseal(sealed))
                        changed = True
                if changed:
                    moved += 1
                    ctx.audit(s, "vault.reseal", f"account:{account.id}", {"key": vault.current})
    return moved
