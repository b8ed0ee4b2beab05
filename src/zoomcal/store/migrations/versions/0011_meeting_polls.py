"""meeting polls: polls attached while scheduling, created on the Zoom meeting once it exists

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 15:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'meeting_polls',
        sa.Column('id', sa.Integer(), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False),
        sa.Column('event_id', sa.String(64), nullable=False),
        sa.Column('poll', sa.JSON(), nullable=False),
        sa.Column('zoom_poll_id', sa.String(64), nullable=True),
        sa.Column('status', sa.String(20), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
    )
    for column in ('tenant_id', 'user_id', 'event_id'):
        op.create_index(f'ix_meeting_polls_{column}', 'meeting_polls', [column])


def downgrade() -> None:
    op.drop_table('meeting_polls')
