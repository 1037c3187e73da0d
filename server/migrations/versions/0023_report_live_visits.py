"""PostgreSQL: the visits that were not cancelled, by job and start (a partial index)

Time to service and first-time fix group the live visits by job (the first start, the
count and the last start). Read from this index, the visits arrive in job order without
a filter, so PostgreSQL groups them as they come (no hash table, which on 100,000 visits
spilled to disk) and never opens the table. SQLite already reads `ix_appointment_job_status`
so and gets no index here.

Revision ID: 0023
Revises: 0022
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.create_index("ix_appointment_live_by_job", "appointment", ["job_id", "starts_at"],
                    postgresql_where=sa.text("status <> 'cancelled'"))


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index("ix_appointment_live_by_job", "appointment")
