"""due calendars: a due mark remembers which calendars the notifications named, so only they are listed

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02 11:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sync_due') as batch:
        batch.add_column(sa.Column('calendars', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('sync_due') as batch:
        batch.drop_column('calendars')
