"""sync leases: one run per calendar at a time

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 16:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('sync_leases',
    sa.Column('calendar_id', sa.Integer(), nullable=False),
    sa.Column('holder', sa.String(length=120), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['calendar_id'], ['calendars.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('calendar_id')
    )


def downgrade() -> None:
    op.drop_table('sync_leases')
