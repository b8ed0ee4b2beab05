"""refresh claims: which process is refreshing an account's access token, and until when (the refresh's request
runs with no database lock held)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 18:10:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('accounts') as batch:
        batch.add_column(sa.Column('refresh_holder', sa.String(length=64), nullable=True))
        batch.add_column(sa.Column('refresh_until', sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # plain ALTER TABLE ... DROP COLUMN: a batch copy would recreate `accounts`, and dropping the old table would
    # cascade to its calendars and everything stored for them
    with op.batch_alter_table('accounts', recreate='never') as batch:
        batch.drop_column('refresh_until')
        batch.drop_column('refresh_holder')
