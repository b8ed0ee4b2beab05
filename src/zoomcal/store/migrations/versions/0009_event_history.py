"""event history: sync-log lines carry what the planner saw and decided (changed fields, the rules that applied,
the writes), and are looked up by event

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sync_log') as batch:
        batch.add_column(sa.Column('detail', sa.JSON(), nullable=True))
    op.create_index('ix_sync_log_event', 'sync_log', ['tenant_id', 'event_id'])


def downgrade() -> None:
    op.drop_index('ix_sync_log_event', 'sync_log')
    with op.batch_alter_table('sync_log') as batch:
        batch.drop_column('detail')
