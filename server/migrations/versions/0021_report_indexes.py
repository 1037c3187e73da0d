"""indexes the reports read instead of their tables: the audit trail's appointment entries
by action, channel and time, the technicians' reported progress (on site, completed) by
visit, and the visits by technician with their times and status

SQLite indexes the JSON status itself (`json_extract`), so a report reads it from the
index; PostgreSQL keeps partial indexes, one per status the reports ask about, and reads
them without visiting the table. The expressions are the ones `server.reports.progress`
writes into the reports' statements, character for character.

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None

STATUS_ENTRY = "entity = 'appointment' AND action = 'appointment.status'"
SQLITE_STATUS = "json_extract(\"after\", '$.job_status')"
PG_STATUS = "(\"after\" ->> 'job_status')"
APPOINTMENT_COLUMNS = ["technician_id", "starts_at", "ends_at", "status", "blocked_from",
                       "blocked_until", "service_type_id"]


def upgrade() -> None:
    op.create_index("ix_audit_report", "audit_entry", ["entity", "action", "channel", "at", "entity_id"])
    op.create_index("ix_appointment_report", "appointment", APPOINTMENT_COLUMNS)
    if op.get_bind().dialect.name == "sqlite":
        op.create_index("ix_audit_progress", "audit_entry",
                        ["entity", "action", sa.text(SQLITE_STATUS), "entity_id", "at"])
        op.create_index("ix_audit_progress_at", "audit_entry",
                        ["entity", "action", sa.text(SQLITE_STATUS), "at", "channel", "entity_id"])
        return
    op.create_index("ix_audit_attended", "audit_entry", ["entity_id"], postgresql_where=sa.text(
        f"{STATUS_ENTRY} AND {PG_STATUS} IN ('on_site', 'completed')"))
    op.create_index("ix_audit_on_site", "audit_entry", ["entity_id", "at"], postgresql_where=sa.text(
        f"{STATUS_ENTRY} AND {PG_STATUS} = 'on_site'"))
    op.create_index("ix_audit_completed", "audit_entry", ["at", "channel", "entity_id"],
                    postgresql_where=sa.text(f"{STATUS_ENTRY} AND {PG_STATUS} = 'completed'"))


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.drop_index("ix_audit_progress_at", "audit_entry")
        op.drop_index("ix_audit_progress", "audit_entry")
    else:
        op.drop_index("ix_audit_completed", "audit_entry")
        op.drop_index("ix_audit_on_site", "audit_entry")
        op.drop_index("ix_audit_attended", "audit_entry")
    op.drop_index("ix_appointment_report", "appointment")
    op.drop_index("ix_audit_report", "audit_entry")
