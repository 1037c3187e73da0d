"""an Idempotency-Key is claimed in the request's own transaction: no in-flight rows, so
neither their state nor who claimed them is kept

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DELETE FROM idempotent_request WHERE state <> 'done' OR status IS NULL")
    with op.batch_alter_table("idempotent_request") as batch:
        batch.drop_column("claimed_by")
        batch.drop_column("state")


def downgrade() -> None:
    with op.batch_alter_table("idempotent_request") as batch:
        batch.add_column(sa.Column("state", sa.String(20), nullable=False, server_default="done"))
        batch.add_column(sa.Column("claimed_by", sa.String(63), nullable=False, server_default=""))
