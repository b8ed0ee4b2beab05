"""Engine, sessions and migrations. SQLite is the embedded default; PostgreSQL is the scale-out store.

Migrations run only on purpose (`zoomcal init`, `zoomcal db upgrade`, `Database.upgrade()`); everything else
checks the schema version first and stops when the database is behind, so an upgrade is never a side effect
of some other command.
"""

from __future__ import annotations

import threading
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, create_engine, event, inspect, make_url, text
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker, with_loader_criteria

from zoomcal.errors import ZoomcalError
from zoomcal.store.models import TenantOwned

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"


def normalize_url(url: str) -> str:
    # PostgreSQL through psycopg 3 whatever spelling the admin used.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


SUPPORTED = ("sqlite", "postgresql")


class DatabaseUnavailable(ZoomcalError):
    """The database URL cannot be used: unreadable, a database zoomcal does not support, or no answer."""


def _checked(url: str) -> str:
    try:
        parsed = make_url(url)
    except Exception as exc:   # noqa: BLE001 — any parse failure is the same mistake to the admin
        raise DatabaseUnavailable(f"cannot read the database URL {url[:80]!r}: {exc}") from None
    if parsed.get_backend_name() not in SUPPORTED:
        raise DatabaseUnavailable(f"zoomcal keeps its data in SQLite or PostgreSQL, not {parsed.get_backend_name()!r} "
                                  "(ZOOMCAL_DATABASE_URL=postgresql://user@host/db, or unset for SQLite)")
    return url


def make_engine(url: str, **kwargs) -> Engine:
    url = _checked(normalize_url(url))
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record):
            # zoomcal, not the driver, says when a transaction begins (so a booking can BEGIN IMMEDIATE)
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            if ":memory:" not in url and url != "sqlite://":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):
            # DEFERRED normally; IMMEDIATE takes the write lock up front (check-then-insert without a race)
            conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'DEFERRED')}")

        return engine
    return create_engine(url, pool_pre_ping=True, **kwargs)


def alembic_config(url: str) -> Config:
    from alembic.config import Config  # loaded by migrations only: checking a schema needs no alembic

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations on the given engine's database (one connection, so in-memory SQLite works too)."""
    from alembic import command

    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def revisions() -> list[str]:
    """The migrations this code holds, oldest first: one chain, each file named after its revision
    (`0013_contacts.py` is revision 0013; a test holds the files to this)."""
    return sorted(f.name.split("_", 1)[0] for f in (MIGRATIONS / "versions").glob("[0-9]*_*.py"))


def head_revision() -> str:
    return revisions()[-1]


class SchemaError(ZoomcalError):
    """The database's schema is not the one this zoomcal reads (missing, behind, or from a newer release)."""

    def __init__(self, message: str, state: str, current: str | None, head: str):
        super().__init__(message)
        self.state, self.current, self.head = state, current, head


def schema_state(engine: Engine) -> tuple[str, str | None, str]:
    """("ok" | "missing" | "behind" | "ahead", the database's revision, the revision this code needs)."""
    head = head_revision()
    try:
        with engine.connect() as conn:
            tables = inspect(conn).get_table_names()
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar() \
                if "alembic_version" in tables else None
            if current is None:
                return ("missing" if not tables else "behind"), None, head
    except (OperationalError, InterfaceError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise DatabaseUnavailable(f"cannot reach the database at {engine.url.render_as_string(hide_password=True)}: "
                                  f"{reason}") from None
    if current == head:
        return "ok", current, head
    return ("behind" if current in revisions() else "ahead"), current, head


_WRITE_LOCKS: weakref.WeakKeyDictionary[Engine, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_LOCK = threading.Lock()


def _write_lock(engine: Engine) -> threading.RLock:
    with _LOCKS_LOCK:
        return _WRITE_LOCKS.setdefault(engine, threading.RLock())


@contextmanager
def _writing(engine: Engine):
    """A connection whose transaction takes the write lock when it begins (SQLite: BEGIN IMMEDIATE; the threads
    of this process queue for it here rather than in SQLite's busy handler, which sleeps in steps of milliseconds:
    many short writes at once, as webhooks make, would otherwise spend more time asleep than writing). PostgreSQL:
    a plain connection (callers lock the rows they need)."""
    if engine.dialect.name != "sqlite":
        with engine.connect() as raw:
            yield raw
        return
    with _write_lock(engine), engine.connect() as raw:
        yield raw.execution_options(sqlite_begin="IMMEDIATE")


class _Sessions:
    """Sessions and transactions over an engine (the whole database, or one tenant's view of it)."""

    engine: Engine
    sessions: sessionmaker

    @property
    def is_sqlite(self) -> bool:
        return self.engine.dialect.name == "sqlite"

    @contextmanager
    def session(self):
        with self.sessions() as session:
            yield session

    @contextmanager
    def transaction(self):
        """A write transaction. On SQLite it takes the write lock when it begins (BEGIN IMMEDIATE): a transaction
        that read first and wrote later could otherwise find another process's commit in between and fail at once
        with "database is locked" instead of waiting its turn."""
        if self.engine.dialect.name != "sqlite":
            with self.sessions.begin() as session:
                yield session
            return
        with _writing(self.engine) as conn, self.sessions(bind=conn) as session, session.begin():
            yield session


class Database(_Sessions):
    def __init__(self, url: str, *, migrate: bool = False):
        self.url = normalize_url(url)
        self.engine = make_engine(self.url)
        if migrate:
            upgrade(self.engine)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    def upgrade(self, revision: str = "head") -> None:
        upgrade(self.engine, revision)

    def check_schema(self) -> None:
        """Raise SchemaError unless the database is at the revision this code needs."""
        state, current, head = schema_state(self.engine)
        if state == "missing":
            raise SchemaError("the database has no zoomcal schema yet", state, current, head)
        if state == "behind":
            raise SchemaError(f"the database schema is at revision {current or 'none'}, this zoomcal needs "
                              f"{head}", state, current, head)
        if state == "ahead":
            raise SchemaError(f"the database schema is at revision {current}, newer than this zoomcal ({head}); "
                              "upgrade zoomcal", state, current, head)

    def for_tenant(self, tenant_id: int) -> TenantStore:
        return TenantStore(self, tenant_id)

    @contextmanager
    def locked_transaction(self, info: dict | None = None):
        """A transaction that takes SQLite's write lock up front (BEGIN IMMEDIATE): check-then-write without a
        race; on PostgreSQL the caller locks the rows it needs (SELECT ... FOR UPDATE)."""
        with _writing(self.engine) as conn:
            with Session(bind=conn, expire_on_commit=False, info=dict(info or {})) as s, s.begin():
                yield s

    def dispose(self) -> None:
        self.engine.dispose()


class TenantBreach(ZoomcalError):
    """A write would have put a row into another tenant."""


class TenantStore(_Sessions):
    """The store seen from one tenant: every ORM query through its sessions is filtered to the tenant's rows,
    and a flush that would write a row of another tenant fails. It offers what `Database` offers, so code that
    takes a database (the sync engine, the conflict guard, the busy index) runs tenant-scoped unchanged."""

    def __init__(self, db: Database, tenant_id: int):
        self.db = db
        self.tenant_id = tenant_id
        self.engine = db.engine
        self.url = db.url
        self.sessions = sessionmaker(db.engine, expire_on_commit=False, info={"tenant_id": tenant_id})

    def locked_transaction(self):
        return self.db.locked_transaction({"tenant_id": self.tenant_id})

    def dispose(self) -> None:
        self.db.dispose()


@event.listens_for(Session, "do_orm_execute")
def _tenant_filter(state) -> None:
    tenant_id = state.session.info.get("tenant_id")
    if tenant_id is None or not (state.is_select or state.is_update or state.is_delete):
        return
    if state.execution_options.get("all_tenants"):
        return
    state.statement = state.statement.options(with_loader_criteria(
        TenantOwned, lambda cls: cls.tenant_id == tenant_id, include_aliases=True))


@event.listens_for(Session, "before_flush")
def _tenant_writes(session, _context, _instances) -> None:
    tenant_id = session.info.get("tenant_id")
    if tenant_id is None:
        return
    for obj in list(session.new) + list(session.dirty):
        if isinstance(obj, TenantOwned) and obj.tenant_id not in (None, tenant_id):
            raise TenantBreach(f"{type(obj).__name__} of tenant {obj.tenant_id} written from tenant {tenant_id}")
        if isinstance(obj, TenantOwned) and obj.tenant_id is None:
            obj.tenant_id = tenant_id
