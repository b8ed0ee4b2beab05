"""contacts: scopes an account was granted, contact sources, their records, the people resolved, decisions

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02 18:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def _tenant() -> sa.Column:
    return sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False)


def upgrade() -> None:
    # plain ALTER TABLE (not a batch copy: on SQLite, re-creating `accounts` would cascade into its calendars)
    op.add_column('accounts', sa.Column('granted_scopes', sa.JSON(), nullable=True))
    op.create_table(
        'contact_sources',
        sa.Column('id', sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column('account_id', sa.Integer(), sa.ForeignKey('accounts.id', ondelete='CASCADE'), nullable=False,
                  unique=True),
        sa.Column('cursor', sa.Text(), nullable=True),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('error', sa.Text(), nullable=False),
        sa.Column('synced_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('records', sa.Integer(), nullable=False),
        sa.Column('granted', sa.JSON(), nullable=True),
        sa.Column('scopes_checked_at', sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index('ix_contact_sources_tenant_id', 'contact_sources', ['tenant_id'])
    op.create_table(
        'contact_records',
        sa.Column('id', sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column('source_id', sa.Integer(), sa.ForeignKey('contact_sources.id', ondelete='CASCADE'),
                  nullable=False),
        sa.Column('record_id', sa.String(500), nullable=False),
        sa.Column('provider', sa.String(40), nullable=False),
        sa.Column('kind', sa.String(20), nullable=False),
        sa.Column('data', sa.JSON(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint('source_id', 'record_id'),
    )
    op.create_index('ix_contact_records_tenant_id', 'contact_records', ['tenant_id'])
    op.create_index('ix_contact_records_source_id', 'contact_records', ['source_id'])
    op.create_table(
        'contact_people',
        sa.Column('id', sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column('person_id', sa.String(40), nullable=False),
        sa.Column('user_id', sa.Integer(), nullable=True),
        sa.Column('primary_email', sa.String(320), nullable=False),
        sa.Column('display_name', sa.Text(), nullable=False),
        sa.Column('name_from', sa.String(600), nullable=False),
        sa.Column('emails', sa.JSON(), nullable=False),
        sa.Column('records', sa.JSON(), nullable=False),
        sa.Column('kinds', sa.JSON(), nullable=False),
        sa.Column('groups', sa.JSON(), nullable=False),
        sa.Column('zoom_user_id', sa.String(64), nullable=True),
        sa.Column('timezone', sa.String(64), nullable=True),
        sa.Column('presence', sa.String(40), nullable=True),
        sa.Column('presence_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('invitable', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint('tenant_id', 'person_id'),
    )
    for column in ('tenant_id', 'primary_email', 'zoom_user_id'):
        op.create_index(f'ix_contact_people_{column}', 'contact_people', [column])
    op.create_table(
        'contact_decisions',
        sa.Column('id', sa.Integer(), primary_key=True),
        _tenant(),
        sa.Column('kind', sa.String(20), nullable=False),
        sa.Column('a', sa.String(600), nullable=False),
        sa.Column('b', sa.String(600), nullable=False),
        sa.Column('actor', sa.String(320), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    op.create_index('ix_contact_decisions_tenant_id', 'contact_decisions', ['tenant_id'])


def downgrade() -> None:
    for table in ('contact_decisions', 'contact_people', 'contact_records', 'contact_sources'):
        op.drop_table(table)
    op.execute('ALTER TABLE accounts DROP COLUMN granted_scopes')
