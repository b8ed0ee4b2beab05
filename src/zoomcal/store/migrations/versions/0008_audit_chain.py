"""audit chain: each tenant's audit entries are numbered and hash-chained; an archive keeps those past retention

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:30:00
"""
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from zoomcal.domain.audit import GENESIS, Entry, canonical_detail, entry_hash

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('audit_log') as batch:
        batch.add_column(sa.Column('seq', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('prev_hash', sa.String(64), nullable=False, server_default=''))
        batch.add_column(sa.Column('hash', sa.String(64), nullable=False, server_default=''))
    # chain what is there, per tenant in the order it was written
    bind = op.get_bind()
    log = sa.table('audit_log', sa.column('id', sa.Integer), sa.column('tenant_id', sa.Integer),
                   sa.column('seq', sa.Integer), sa.column('actor', sa.String), sa.column('action', sa.String),
                   sa.column('target', sa.String), sa.column('detail', sa.JSON),
                   sa.column('created_at', sa.DateTime(timezone=True)), sa.column('prev_hash', sa.String),
                   sa.column('hash', sa.String))
    heads: dict[int, tuple[int, str]] = {}
    rows = bind.execute(sa.select(log.c.id, log.c.tenant_id, log.c.actor, log.c.action, log.c.target, log.c.detail,
                                  log.c.created_at).order_by(log.c.id)).all()
    for row in rows:
        seq, prev = heads.get(row.tenant_id, (0, GENESIS))
        at = row.created_at or datetime.now(UTC)
        entry = Entry(row.tenant_id, seq + 1, at, row.actor, row.action, row.target or "",
                      canonical_detail(row.detail), prev)
        digest = entry_hash(entry)
        bind.execute(log.update().where(log.c.id == row.id).values(
            seq=entry.seq, prev_hash=prev, hash=digest, created_at=at, detail=entry.detail, target=entry.target))
        heads[row.tenant_id] = (entry.seq, digest)
    with op.batch_alter_table('audit_log') as batch:
        batch.create_unique_constraint('uq_audit_log_seq', ['tenant_id', 'seq'])
    op.create_table(
        'audit_archive',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False),
        sa.Column('seq', sa.Integer(), nullable=False),
        sa.Column('actor', sa.String(320), nullable=False),
        sa.Column('action', sa.String(80), nullable=False),
        sa.Column('target', sa.String(500), nullable=False),
        sa.Column('detail', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('prev_hash', sa.String(64), nullable=False),
        sa.Column('hash', sa.String(64), nullable=False),
        sa.Column('archived_at', sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint('tenant_id', 'seq', name='uq_audit_archive_seq'),
    )
    op.create_index('ix_audit_archive_tenant_id', 'audit_archive', ['tenant_id'])


def downgrade() -> None:
    op.drop_index('ix_audit_archive_tenant_id', 'audit_archive')
    op.drop_table('audit_archive')
    with op.batch_alter_table('audit_log') as batch:
        batch.drop_constraint('uq_audit_log_seq', type_='unique')
        batch.drop_column('hash')
        batch.drop_column('prev_hash')
        batch.drop_column('seq')
