"""The central store on SQLite and on real PostgreSQL: migrations, constraints, sealed secrets."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from zoomcal.auth.vault import Vault, new_key_spec
from zoomcal.domain.content import make_content
from zoomcal.errors import ConfigError
from zoomcal.store import repo
from zoomcal.store.models import Account, Calendar, Event, Link, User


def _seed(db):
    with db.transaction() as s:
        tenant = repo.get_or_create_tenant(s, "acme")
        user = User(tenant_id=tenant.id, email="a@acme.test", name="A")
        s.add(user)
        s.flush()
        account = Account(tenant_id=tenant.id, user_id=user.id, provider="google", external_id="a@acme.test")
        s.add(account)
        s.flush()
        cal = Calendar(tenant_id=tenant.id, user_id=user.id, account_id=account.id, remote_id="primary")
        s.add(cal)
        s.flush()
        return tenant.id, user.id, cal.id


def test_migrations_create_every_table(any_db):
    names = set(sa.inspect(any_db.engine).get_table_names())
    assert {"tenants", "users", "accounts", "calendars", "events", "links", "remote_items", "cursors", "sync_runs",
            "sync_log", "review_queue", "audit_log", "sync_leases", "alembic_version"} <= names


def test_event_link_roundtrip_and_unique_remote_ids(any_db):
    tenant_id, user_id, cal_id = _seed(any_db)
    content = make_content(title="Ünïcode ✓", start="2026-03-29T00:30:00Z", end="2026-03-29T01:30:00Z",
                           timezone="Europe/Berlin", rrule="FREQ=DAILY;COUNT=2",
                           overrides={"2026-03-30T23:30:00Z": {"start": "2026-03-31T08:00:00Z",
                                                               "end": "2026-03-31T09:00:00Z"}})
    with any_db.transaction() as s:
        repo.upsert_event(s, tenant_id, user_id, "ev1", content)
        repo.upsert_event(s, tenant_id, user_id, "ev2", content)
        s.flush()
        s.add(Link(tenant_id=tenant_id, event_id="ev1", calendar_id=cal_id, remote_id="r1", state=content))
        s.add(Link(tenant_id=tenant_id, event_id="ev2", calendar_id=cal_id, remote_id=None, pending="create"))
    with any_db.session() as s:
        assert s.get(Event, "ev1").content == content
    with pytest.raises(IntegrityError):
        with any_db.transaction() as s:   # one remote item cannot belong to two events
            s.add(Link(tenant_id=tenant_id, event_id="ev2", calendar_id=cal_id, remote_id="r1"))
            s.flush()
    with any_db.transaction() as s:       # but several pending creates (no remote id yet) can exist
        repo.upsert_event(s, tenant_id, user_id, "ev3", content)
        s.flush()
        s.add(Link(tenant_id=tenant_id, event_id="ev3", calendar_id=cal_id, remote_id=None, pending="create"))
    with any_db.transaction() as s:       # deleting an event takes its links with it
        s.delete(s.get(Event, "ev1"))
    with any_db.session() as s:
        assert s.scalar(sa.select(sa.func.count()).select_from(Link).where(Link.event_id == "ev1")) == 0


def test_mirror_and_cursor(any_db):
    _, _, cal_id = _seed(any_db)
    with any_db.transaction() as s:
        repo.save_mirror(s, cal_id, {"m1": ("m1", {"id": "m1"}), "m1_x": ("m1", {"id": "m1_x"})}, [])
        repo.save_cursor(s, cal_id, "tok1")
    with any_db.transaction() as s:
        repo.save_mirror(s, cal_id, {"m1": ("m1", {"id": "m1", "v": 2})}, ["m1_x"])
        repo.save_cursor(s, cal_id, "tok2")
    with any_db.session() as s:
        assert repo.load_mirror(s, cal_id) == {"m1": {"id": "m1", "v": 2}}
        assert repo.load_cursor(s, cal_id) == "tok2"


def test_secrets_are_sealed_at_rest(any_db, tmp_path):
    vault = Vault.from_spec(new_key_spec("k1"))
    tenant_id, user_id, _ = _seed(any_db)
    with any_db.transaction() as s:
        s.add(Account(tenant_id=tenant_id, user_id=user_id, provider="zoom",
                      secret=vault.seal({"refresh_token": "rt_super_secret_value"})))
    with any_db.engine.connect() as conn:
        rows = conn.execute(sa.text("select secret from accounts where secret is not null"))
        raw = b"".join(bytes(r[0]) for r in rows)
    assert b"rt_super_secret_value" not in raw and raw.startswith(b"zc1.k1.")


def test_vault_rotation_and_tampering():
    old = Vault.from_spec(new_key_spec("old"))
    sealed = old.seal({"client_secret": "s3"})
    new_spec = new_key_spec("new")
    both = Vault.from_spec(new_spec + "," + ",".join(f"{k}:{__import__('base64').urlsafe_b64encode(v).decode()}"
                                                   for k, v in old.keys.items()))
    assert both.open(sealed) == {"client_secret": "s3"}
    resealed = both.reseal(sealed)
    assert both.key_id(resealed) == "new" and both.open(resealed) == {"client_secret": "s3"}
    with pytest.raises(ConfigError, match="unknown key"):
        old.open(resealed)
    tampered = resealed[:-1] + bytes([resealed[-1] ^ 1])
    with pytest.raises(ConfigError, match="authentication"):
        both.open(tampered)


def test_vault_key_file_is_private(tmp_path):
    vault = Vault.from_file(tmp_path / "keys")
    assert (tmp_path / "keys").stat().st_mode & 0o077 == 0
    assert Vault.from_file(tmp_path / "keys").open(vault.seal({"a": 1})) == {"a": 1}


def test_leases_one_holder_at_a_time(any_db):
    """A calendar is held by one run: a second holder is refused, an expired or vanished holder is replaced,
    and a refused attempt keeps nothing of what it took (all or none)."""
    from datetime import timedelta

    _tenant_id, _user_id, cal_id = _seed(any_db)
    with any_db.transaction() as s:
        other = Calendar(tenant_id=_tenant_id, user_id=_user_id, account_id=s.scalar(sa.select(Account.id)),
                         remote_id="second")
        s.add(other)
        s.flush()
        other_id = other.id
    with any_db.transaction() as s:
        repo.take_leases(s, [cal_id], "host:1:a", timedelta(minutes=5))
    with pytest.raises(repo.LeaseHeld), any_db.transaction() as s:
        repo.take_leases(s, [other_id, cal_id], "host:2:b", timedelta(minutes=5))
    with any_db.transaction() as s:   # the refused attempt did not keep the free calendar either
        repo.take_leases(s, [other_id], "host:3:c", timedelta(minutes=5))
        repo.drop_leases(s, [other_id], "host:3:c")
    with any_db.transaction() as s:   # a vanished holder (a crashed process) is replaced
        repo.take_leases(s, [cal_id], "host:2:b", timedelta(minutes=5), gone=lambda h: h == "host:1:a")
    with any_db.transaction() as s:   # an expired lease is free
        repo.take_leases(s, [cal_id], "host:2:b", timedelta(seconds=-1))
    with any_db.transaction() as s:
        repo.take_leases(s, [cal_id], "host:4:d", timedelta(minutes=5))
        repo.drop_leases(s, [cal_id], "host:2:b")          # not the holder: nothing happens
    with pytest.raises(repo.LeaseHeld), any_db.transaction() as s:
        repo.take_leases(s, [cal_id], "host:2:b", timedelta(minutes=5))


def test_migrations_match_the_models(any_db):
    """What the migrations build is what the models describe (a model change without its migration fails)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from zoomcal.store.models import Base

    with any_db.engine.connect() as conn:
        ours = {"compare_type": False,    # the job queue's tables belong to procrastinate, not to the models
                "include_name": lambda name, kind, _parent: not (kind == "table" and name.startswith("procrastinate_"))}
        diff = compare_metadata(MigrationContext.configure(conn, opts=ours), Base.metadata)
    assert diff == []


def test_the_schema_check_reads_the_migration_chain_alembic_reads(any_db):
    """Checking a schema needs no alembic: the migration files are one chain, each named after its revision, so
    the file names give what alembic's script directory gives (the head and every known revision)."""
    from alembic.script import ScriptDirectory

    from zoomcal.store.db import alembic_config, head_revision, revisions, schema_state

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    chain = [rev.revision for rev in script.walk_revisions()][::-1]       # walk_revisions goes head first
    assert revisions() == chain and head_revision() == script.get_current_head()
    assert [rev.down_revision for rev in script.walk_revisions()][::-1] == [None, *chain[:-1]]
    assert schema_state(any_db.engine) == ("ok", chain[-1], chain[-1])
    with any_db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = :v"), {"v": chain[-2]})
    assert schema_state(any_db.engine)[:2] == ("behind", chain[-2])
    with any_db.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    assert schema_state(any_db.engine)[0] == "ahead"
