"""an index of the calendar items that may span more than four days, so time-range
queries read a bounded range of short items and this small index, whatever the calendar's size

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

# As server.models.calendars has them (a migration keeps its own copy of what it creates).
LONG_SPAN_SQLITE = ("calendar_item.dtstart IS NULL OR calendar_item.dtend IS NULL OR "
                    "calendar_item.dtend > datetime(calendar_item.dtstart, '+4 days')")
LONG_SPAN_POSTGRESQL = ("calendar_item.dtstart IS NULL OR calendar_item.dtend IS NULL OR "
                        "calendar_item.dtend - calendar_item.dtstart > interval '4 days'")


def upgrade() -> None:
    op.create_index("ix_calendar_item_long", "calendar_item", ["collection_id", "dtstart"],
                    sqlite_where=sa.text(LONG_SPAN_SQLITE),
                    postgresql_where=sa.text(LONG_SPAN_POSTGRESQL))


def downgrade() -> None:
    op.drop_index("ix_calendar_item_long", table_name="calendar_item")
