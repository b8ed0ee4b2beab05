"""portal sign-in: a person's role and password hash, the portal's sessions, one-time sign-in links, failed
sign-ins counted for throttling, account links waiting for a provider's sign-in to come back, and what a check
last learnt of an account's profile

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 12:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('role', sa.String(length=10), nullable=False, server_default='member'))
        batch.add_column(sa.Column('password_hash', sa.String(length=200), nullable=True))
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('profile', sa.JSON(), nullable=True))
    op.create_table(
        'portal_sessions',
        sa.Column('id', sa.String(length=64), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('csrf', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('seen_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'sign_in_links',
        sa.Column('id', sa.String(length=64), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'pending_sign_ins',
        sa.Column('id', sa.String(length=64), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('actor', sa.String(length=400), nullable=False),
        sa.Column('sealed', sa.LargeBinary(), nullable=False),
        sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        'sign_in_failures',
        sa.Column('key', sa.String(length=400), primary_key=True),
        sa.Column('failures', sa.Integer(), nullable=False, server_default='0'),
        sa.Column('since', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('sign_in_failures')
    op.drop_table('pending_sign_ins')
    op.drop_table('sign_in_links')
    op.drop_table('portal_sessions')
    # plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 has it): a batch copy would recreate `users`, and
    # dropping the old table would cascade to everything that refers to it
    with op.batch_alter_table('accounts', recreate='never') as batch:
        batch.drop_column('profile')
    with op.batch_alter_table('users', recreate='never') as batch:
        batch.drop_column('password_hash')
        batch.drop_column('role')
