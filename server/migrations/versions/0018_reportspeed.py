"""indexes visits by job, status and start: the reports' first and last visit of each job
read the index alone (time to service, first-time fix)

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_appointment_job_status", "appointment", ["job_id", "status", "starts_at"])


def downgrade() -> None:
    op.drop_index("ix_appointment_job_status", "appointment")
