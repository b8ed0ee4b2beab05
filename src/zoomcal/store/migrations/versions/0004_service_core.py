"""service core: shared access tokens, account health and revision, per-day write quotas

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 12:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('access_token', sa.LargeBinary(), nullable=True))
        batch.add_column(sa.Column('access_expires_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('revision', sa.Integer(), nullable=False, server_default='1'))
        batch.add_column(sa.Column('status_reason', sa.Text(), nullable=True))
        batch.add_column(sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True))
    op.create_table('write_quotas',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.String(length=10), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('used', sa.Integer(), nullable=False, server_default='0'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('account_id', 'day')
    )


def downgrade() -> None:
    op.drop_table('write_quotas')
    with op.batch_alter_table('accounts') as batch:
        for column in ('checked_at', 'status_reason', 'revision', 'access_expires_at', 'access_token'):
            batch.drop_column(column)
