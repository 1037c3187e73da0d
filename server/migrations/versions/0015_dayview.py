"""a visit's own progress (on the way, on site, done) as its technician reports it

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

def upgrade() -> None:
    # Plain ALTER TABLE (no batch copy): SQLite keeps the table and its overlap triggers.
    op.add_column("appointment", sa.Column("progress", sa.String(20), nullable=True))
    op.add_column("appointment", sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("appointment", sa.Column("progress_note", sa.Text, nullable=False, server_default=""))
    # Until now progress lived on the job only: its live visits take it over.
    op.execute(sa.text(
        "UPDATE appointment SET progress = (SELECT job.status FROM job WHERE job.id = appointment.job_id) "
        "WHERE status <> 'cancelled' AND job_id IN (SELECT id FROM job WHERE status IN "
        "('en_route', 'on_site', 'completed'))"))


def downgrade() -> None:
    for column in ("progress_note", "progress_at", "progress"):
        op.drop_column("appointment", column)
