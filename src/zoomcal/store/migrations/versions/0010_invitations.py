"""invitations: a tenant's SMTP settings, the e-mail invitations of each event, and the outbox

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:30:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'mail_settings',
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), primary_key=True),
        sa.Column('host', sa.String(255), nullable=False),
        sa.Column('port', sa.Integer(), nullable=False),
        sa.Column('security', sa.String(10), nullable=False),
        sa.Column('username', sa.String(320), nullable=False),
        sa.Column('secret', sa.LargeBinary(), nullable=True),
        sa.Column('sender', sa.String(320), nullable=False),
    )
    op.create_table(
        'invitations',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False),
        sa.Column('event_id', sa.String(64), nullable=False),
        sa.Column('uid', sa.String(255), nullable=False, unique=True),
        sa.Column('organizer', sa.String(320), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('sent_hash', sa.String(64), nullable=False),
        sa.Column('sent_content', sa.JSON(), nullable=False),
        sa.Column('attendees', sa.JSON(), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('wait_for_join', sa.Boolean(), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.UniqueConstraint('tenant_id', 'event_id'),
    )
    op.create_index('ix_invitations_tenant_id', 'invitations', ['tenant_id'])
    op.create_index('ix_invitations_user_id', 'invitations', ['user_id'])
    op.create_table(
        'outbox',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False),
        sa.Column('key', sa.String(200), nullable=False),
        sa.Column('event_id', sa.String(64), nullable=False),
        sa.Column('recipient', sa.String(320), nullable=False),
        sa.Column('method', sa.String(20), nullable=False),
        sa.Column('sequence', sa.Integer(), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column('claimed_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('sent_at', sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint('tenant_id', 'key'),
    )
    op.create_index('ix_outbox_tenant_id', 'outbox', ['tenant_id'])
    op.create_index('ix_outbox_status', 'outbox', ['status', 'id'])


def downgrade() -> None:
    op.drop_table('outbox')
    op.drop_table('invitations')
    op.drop_table('mail_settings')
