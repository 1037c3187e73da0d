"""calendar items of a collection in insertion order without a sort (GET, PROPFIND, first sync)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_calendar_item_order", "calendar_item", ["collection_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_calendar_item_order", table_name="calendar_item")
