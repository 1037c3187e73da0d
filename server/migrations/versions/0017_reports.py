"""indexes the reports read by: audit entries by action and time, jobs and outbox rows by creation

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_audit_action_at", "audit_entry", ["action", "at"])
    op.create_index("ix_job_created", "job", ["created_at"])
    op.create_index("ix_outbox_created", "outbox_message", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_created", "outbox_message")
    op.drop_index("ix_job_created", "job")
    op.drop_index("ix_audit_action_at", "audit_entry")
