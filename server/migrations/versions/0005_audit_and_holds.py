"""keyed audit trail (key id per entry); who holds an unconfirmed booking

Audit entries written before this revision keep their unkeyed SHA-256 hashes and
get `key_id` NULL; `fieldcal init` and `fieldcal serve` re-sign them with the
newest FIELDCAL_AUDIT_KEYS key after checking their old chain (see server.audit_anchor).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

HOLD_COLUMNS = (("hold_contact", 320), ("hold_phone", 32), ("hold_client", 64))


def upgrade() -> None:
    # Plain ADD/DROP COLUMN (no batch copy): SQLite keeps the appointment triggers.
    op.add_column("audit_entry", sa.Column("key_id", sa.String(16), nullable=True))
    for name, size in HOLD_COLUMNS:
        op.add_column("appointment", sa.Column(name, sa.String(size), nullable=True))
    op.create_index("ix_appointment_hold_expires_at", "appointment", ["hold_expires_at"])


def downgrade() -> None:
    op.drop_index("ix_appointment_hold_expires_at", table_name="appointment")
    for name, _size in reversed(HOLD_COLUMNS):
        op.drop_column("appointment", name)
    op.drop_column("audit_entry", "key_id")
