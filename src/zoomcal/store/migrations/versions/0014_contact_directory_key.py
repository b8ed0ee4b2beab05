"""contact directory key: which organisation directory a contact source lists (learnt once), and the account
whose listing of it a source shares

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 08:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('contact_sources') as batch:
        batch.add_column(sa.Column('directory', sa.String(length=200), nullable=True))
        batch.add_column(sa.Column('shared_with', sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('contact_sources') as batch:
        batch.drop_column('shared_with')
        batch.drop_column('directory')
