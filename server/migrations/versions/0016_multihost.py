"""who claimed an Idempotency-Key, so a claim whose process died can be taken over

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("idempotent_request") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(63), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("idempotent_request") as batch:
        batch.drop_column("claimed_by")
