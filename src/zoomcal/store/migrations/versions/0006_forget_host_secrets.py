"""forget host secrets: raw Zoom meetings kept before zoomcal stopped storing the host's start link lose it

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:20:00
"""
import json

import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

HOST_SECRETS = ("start_url", "h323_password", "pstn_password", "encrypted_password")


def upgrade() -> None:
    items = sa.table('remote_items', sa.column('calendar_id', sa.Integer()), sa.column('remote_id', sa.String()),
                     sa.column('raw', sa.JSON()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(items.c.calendar_id, items.c.remote_id, items.c.raw)
                        .where(sa.cast(items.c.raw, sa.Text()).like('%start_url%'))).all()
    for calendar_id, remote_id, raw in rows:
        raw = json.loads(raw) if isinstance(raw, str) else raw
        if not isinstance(raw, dict):
            continue
        kept = {k: v for k, v in raw.items() if k not in HOST_SECRETS}
        conn.execute(items.update().where(items.c.calendar_id == calendar_id, items.c.remote_id == remote_id)
                     .values(raw=kept))


def downgrade() -> None:
    pass    # what was forgotten stays forgotten
