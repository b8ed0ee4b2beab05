"""sign-in identities: which Google or Microsoft account (issuer and subject of its ID tokens) signs a person in,
bound at their first such sign-in

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 15:20:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'sign_in_identities',
        sa.Column('issuer', sa.String(length=400), primary_key=True),
        sa.Column('subject', sa.String(length=255), primary_key=True),
        sa.Column('tenant_id', sa.Integer(), sa.ForeignKey('tenants.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('user_id', sa.Integer(), sa.ForeignKey('users.id', ondelete='CASCADE'), nullable=False,
                  index=True),
        sa.Column('provider', sa.String(length=20), nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table('sign_in_identities')
