"""The audit trail: a hash chain per tenant that shows an entry altered, removed or moved; export; retention that
archives and never deletes; on SQLite and PostgreSQL."""

from __future__ import annotations

import csv
import io
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, select, update

from conftest import _fresh_pg, make_context
from zoomcal.app import audit, users
from zoomcal.app.context import Actor
from zoomcal.app.errors import ForbiddenError, InvalidError
from zoomcal.store.models import AuditArchived, AuditEntry


@pytest.fixture(params=["sqlite", "postgresql"])
def ctx(request, tmp_path):
    url = None
    if request.param == "postgresql":
        url = _fresh_pg(request.getfixturevalue("pg_schema_url")).url
    context = make_context(None, tmp_path, url)
    yield context
    context.services.db.dispose()


def _write(ctx, n: int, prefix: str = "p") -> None:
    for i in range(n):
        users.add(ctx, f"{prefix}{i}@example.com", f"Person {i}")


def _rows(ctx):
    with ctx.store.session() as s:
        return list(s.scalars(select(AuditEntry).order_by(AuditEntry.seq)))


def test_every_change_is_chained_and_verifies(ctx):
    _write(ctx, 5)
    rows = _rows(ctx)
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5]
    assert [r.action for r in rows] == ["user.add"] * 5
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    found = audit.verify(ctx)
    assert found.ok and found.entries == 5 and (found.head_seq, found.head_hash) == (5, rows[-1].hash)


@pytest.mark.parametrize("tamper", ["alter", "remove", "reorder", "truncate"])
def test_tampering_is_detected(ctx, tamper):
    _write(ctx, 6)
    head = audit.head(ctx)
    rows = _rows(ctx)
    with ctx.store.transaction() as s:
        if tamper == "alter":
            s.execute(update(AuditEntry).where(AuditEntry.id == rows[2].id).values(target="mallory@example.com"))
        elif tamper == "remove":
            s.execute(delete(AuditEntry).where(AuditEntry.id == rows[3].id))
        elif tamper == "reorder":        # two entries swap places, each keeping its own hashes
            a, b = rows[1], rows[2]
            s.execute(update(AuditEntry).where(AuditEntry.id == a.id).values(seq=-1))
            s.execute(update(AuditEntry).where(AuditEntry.id == b.id).values(seq=a.seq))
            s.execute(update(AuditEntry).where(AuditEntry.id == a.id).values(seq=b.seq))
        else:
            s.execute(delete(AuditEntry).where(AuditEntry.id == rows[-1].id))
    found = audit.verify(ctx, head)
    assert not found.ok
    text = " ".join(found.problems)
    if tamper == "alter":
        assert found.problems == ["entry 3: was altered after it was written (its hash does not match)"]
    elif tamper == "remove":
        assert "entry 5: entries 4..4 are missing" in text
    elif tamper == "reorder":
        assert "entry 2: does not follow" in text and "entry 2: was altered" in text
    else:
        assert "the head recorded earlier is gone: the chain ends at 5" in text
        assert audit.verify(ctx).ok          # without the head kept elsewhere a cut end cannot be seen


def test_export_json_and_csv_in_a_range(ctx):
    _write(ctx, 3)
    rows = _rows(ctx)
    every = json.loads(audit.export(ctx))
    assert [e["seq"] for e in every] == [1, 2, 3] and every[0]["hash"] == rows[0].hash
    assert every[1]["target"] == "p1@example.com" and every[1]["archived"] is False
    middle = rows[1].created_at.replace(tzinfo=UTC) if rows[1].created_at.tzinfo is None else rows[1].created_at
    after = json.loads(audit.export(ctx, start=middle))
    assert [e["seq"] for e in after] == [2, 3]
    table = list(csv.DictReader(io.StringIO(audit.export(ctx, end=middle, fmt="csv"))))
    assert [r["seq"] for r in table] == ["1"] and json.loads(table[0]["detail"]) == rows[0].detail
    with pytest.raises(InvalidError):
        audit.export(ctx, fmt="xml")
    with pytest.raises(InvalidError):
        audit.export(ctx, start=middle, end=middle - timedelta(seconds=1))


def test_retention_archives_and_the_chain_runs_on(ctx):
    _write(ctx, 4)
    cut = datetime.now(UTC) + timedelta(seconds=1)
    done = audit.archive(ctx, cut)
    assert (done.moved, done.first_seq, done.last_seq) == (4, 1, 4)
    _write(ctx, 2, prefix="q")
    live = _rows(ctx)
    assert [(r.seq, r.action) for r in live] == [(5, "audit.archive"), (6, "user.add"), (7, "user.add")]
    assert live[0].detail["entries"] == 4
    with ctx.store.session() as s:
        assert [r.seq for r in s.scalars(select(AuditArchived).order_by(AuditArchived.seq))] == [1, 2, 3, 4]
    found = audit.verify(ctx)
    assert found.ok and (found.entries, found.archived) == (3, 4)
    assert [e["archived"] for e in json.loads(audit.export(ctx))] == [True] * 4 + [False] * 3
    with ctx.store.transaction() as s:         # the archive is checked as part of the chain
        s.execute(update(AuditArchived).where(AuditArchived.seq == 2).values(actor="someone else"))
    assert audit.verify(ctx).problems == ["entry 2: was altered after it was written (its hash does not match)"]


def test_only_admins_read_or_archive_the_trail(ctx):
    _write(ctx, 1)
    member = ctx.services.context(ctx.tenant_name, Actor("p0@example.com", "member", "p0@example.com"))
    for call in (lambda: audit.verify(member), lambda: audit.export(member), lambda: audit.head(member),
                 lambda: audit.archive(member, datetime.now(UTC))):
        with pytest.raises(ForbiddenError):
            call()


def test_concurrent_appends_keep_one_chain(ctx):
    """Writers in several threads at once: every entry gets its own number and the chain stays whole."""
    errors = []

    def writer(k: int) -> None:
        try:
            _write(ctx, 5, prefix=f"t{k}-")
        except Exception as exc:   # noqa: BLE001 — reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [r.seq for r in _rows(ctx)] == list(range(1, 21))
    assert audit.verify(ctx).ok


def test_entries_written_before_the_chain_existed_are_chained_by_the_upgrade(tmp_path):
    """A store at the revision before the chain, with entries in two tenants, upgrades to a chain that verifies."""
    import sqlalchemy as sa

    from zoomcal.store.db import Database

    db = Database(f"sqlite:///{tmp_path / 'zc.db'}")
    db.upgrade("0007")
    with db.engine.begin() as conn:
        conn.execute(sa.text("insert into tenants (name) values ('default'), ('other')"))
        for i, tenant in enumerate([1, 2, 1, 1, 2]):
            conn.execute(sa.text("insert into audit_log (tenant_id, actor, action, target, detail) "
                                 "values (:t, 'cli', 'user.add', :target, '{\"n\": 1}')"),
                         {"t": tenant, "target": f"u{i}@example.com"})
    db.upgrade()
    db.dispose()
    ctx = make_context(None, tmp_path)
    found = audit.verify(ctx)
    assert found.ok and found.entries == 3 and found.head_seq == 3
    other = ctx.services.context("other", ctx.actor)
    assert audit.verify(other).entries == 2
    users.add(ctx, "new@example.com")
    assert [r.seq for r in _rows(ctx)] == [1, 2, 3, 4] and audit.verify(ctx).ok


def test_the_command_line(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from zoomcal.cli.main import app

    monkeypatch.setenv("ZOOMCAL_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("ZOOMCAL_DATABASE_URL", raising=False)
    monkeypatch.delenv("ZOOMCAL_VAULT_KEYS", raising=False)

    def run(*args):
        return CliRunner().invoke(app, list(args), catch_exceptions=False)

    assert run("init").exit_code == 0
    for email in ("a@example.com", "b@example.com"):
        assert run("user", "add", email).exit_code == 0
    head = run("audit", "head").output.strip()
    assert head.startswith("2:") and len(head) == 66
    ok = run("audit", "verify", "--head", head)
    assert ok.exit_code == 0 and "intact" in ok.output
    assert run("audit", "verify", "--head", "2:nothex").exit_code == 1
    out = tmp_path / "trail.csv"
    assert run("audit", "export", "--format", "csv", "--output", str(out)).exit_code == 0
    assert [r["target"] for r in csv.DictReader(out.open())] == ["a@example.com", "b@example.com"]
    bad = run("audit", "export", "--format", "xml")
    assert bad.exit_code == 1 and "--format" in bad.output
    assert run("user", "remove", "b@example.com", "--yes").exit_code == 0
    archived = run("audit", "archive", "--before", "2999-01-01")
    assert archived.exit_code == 0 and "archived 3 entries (1..3)" in archived.output
    assert json.loads(run("audit", "verify", "--json").output)["archived"] == 3
    broken = run("audit", "verify", "--head", head.replace(head[2:6], "0000"))
    assert broken.exit_code == 1 and "differs from the head recorded earlier" in broken.output
