"""occurrence answers: an attendee's answer for one occurrence of a recurring invitation

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 17:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('invitations') as batch:
        batch.add_column(sa.Column('occurrence_answers', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('invitations') as batch:
        batch.drop_column('occurrence_answers')
