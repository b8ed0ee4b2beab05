"""real time: durable due marks, push subscriptions, propagation samples, lease fencing, busy revisions

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 19:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('users') as batch:
        batch.add_column(sa.Column('busy_revision', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('sync_leases') as batch:
        batch.add_column(sa.Column('fence', sa.Integer(), nullable=False, server_default='0'))
    op.create_table('sync_due',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('reason', sa.String(length=200), nullable=False),
    sa.Column('marks', sa.Integer(), nullable=False, server_default='1'),
    sa.Column('first_marked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('marked_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False, server_default='0'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id')
    )
    op.create_index('ix_sync_due_tenant_id', 'sync_due', ['tenant_id'])
    op.create_index('ix_sync_due_marked_at', 'sync_due', ['marked_at'])
    op.create_table('push_subscriptions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('calendar_id', sa.Integer(), nullable=True),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('channel_id', sa.String(length=300), nullable=False),
    sa.Column('resource_id', sa.String(length=1000), nullable=False),
    sa.Column('token', sa.LargeBinary(), nullable=True),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), server_default=sa.text('(CURRENT_TIMESTAMP)'),
              nullable=False),
    sa.Column('renewed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['calendar_id'], ['calendars.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('channel_id')
    )
    op.create_index('ix_push_subscriptions_tenant_id', 'push_subscriptions', ['tenant_id'])
    op.create_index('ix_push_subscriptions_account_id', 'push_subscriptions', ['account_id'])
    op.create_index('ix_push_subscriptions_expires_at', 'push_subscriptions', ['expires_at'])
    op.create_table('propagation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('tenant_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('provider', sa.String(length=20), nullable=False),
    sa.Column('changed_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('written_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ms', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['tenant_id'], ['tenants.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_propagation_tenant_id', 'propagation', ['tenant_id'])
    op.create_index('ix_propagation_kind_at', 'propagation', ['kind', 'written_at'])
    bind = op.get_bind()
    if bind.dialect.name == 'postgresql':
        # the durable job queue of `zoomcal worker` (procrastinate's tables, in the store's own schema)
        from procrastinate.schema import SchemaManager

        exists = bind.exec_driver_sql("select to_regclass('procrastinate_jobs')").scalar()
        if exists is None:
            bind.connection.dbapi_connection.cursor().execute(SchemaManager.get_schema())


def downgrade() -> None:
    op.drop_table('propagation')
    op.drop_table('push_subscriptions')
    op.drop_table('sync_due')
    with op.batch_alter_table('sync_leases') as batch:
        batch.drop_column('fence')
    with op.batch_alter_table('users') as batch:
        batch.drop_column('busy_revision')
