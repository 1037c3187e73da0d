"""bookings and jobs taken in from platforms (Calendly, Acuity, ServiceTitan, Jobber)

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "inbound_ref",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("integration_id", sa.Integer,
                  sa.ForeignKey("integration.id", ondelete="CASCADE"), nullable=False),
        sa.Column("external_key", sa.String(300), nullable=False),
        sa.Column("job_id", sa.Integer, sa.ForeignKey("job.id", ondelete="CASCADE"), nullable=False),
        sa.Column("appointment_id", sa.Integer,
                  sa.ForeignKey("appointment.id", ondelete="SET NULL"), nullable=True),
        sa.Column("state", sa.String(20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("integration_id", "external_key",
                            name="uq_inbound_ref_integration_id"),
    )


def downgrade() -> None:
    op.drop_table("inbound_ref")
