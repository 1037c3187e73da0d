"""email attachments kept by type (FIELDCAL_INTAKE_ATTACHMENT_TYPES)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_file",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("inbound_id", sa.Integer, nullable=True),
        sa.Column("content_type", sa.String(100), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE",
                                name=op.f("fk_job_file_job_id_job")),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_mail.id"], ondelete="SET NULL",
                                name=op.f("fk_job_file_inbound_id_inbound_mail")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_file")),
    )
    op.create_index("ix_job_file_job_id", "job_file", ["job_id"])


def downgrade() -> None:
    op.drop_index("ix_job_file_job_id", table_name="job_file")
    op.drop_table("job_file")
