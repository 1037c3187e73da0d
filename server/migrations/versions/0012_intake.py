"""service requests: photos, mail as it arrived, customer messages, our Message-IDs

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_photo",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("content_type", sa.String(50), nullable=False),
        sa.Column("filename", sa.String(200), nullable=False),
        sa.Column("size", sa.Integer, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE",
                                name=op.f("fk_job_photo_job_id_job")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_photo")),
    )
    op.create_index("ix_job_photo_job_id", "job_photo", ["job_id"])
    op.create_table(
        "inbound_mail",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("message_key", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(500), nullable=False),
        sa.Column("channel", sa.String(10), nullable=False),
        sa.Column("envelope_from", sa.String(320), nullable=False),
        sa.Column("raw", sa.LargeBinary, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="SET NULL",
                                name=op.f("fk_inbound_mail_job_id_job")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_inbound_mail")),
        sa.UniqueConstraint("message_key", name=op.f("uq_inbound_mail_message_key")),
    )
    op.create_index("ix_inbound_mail_outcome", "inbound_mail", ["outcome"])
    op.create_table(
        "job_message",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("inbound_id", sa.Integer, nullable=True),
        sa.Column("sender", sa.String(320), nullable=False),
        sa.Column("subject", sa.String(500), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE",
                                name=op.f("fk_job_message_job_id_job")),
        sa.ForeignKeyConstraint(["inbound_id"], ["inbound_mail.id"], ondelete="SET NULL",
                                name=op.f("fk_job_message_inbound_id_inbound_mail")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_message")),
    )
    op.create_index("ix_job_message_job_id", "job_message", ["job_id"])
    op.create_table(
        "sent_mail",
        sa.Column("id", sa.Integer, nullable=False),
        sa.Column("message_id", sa.String(300), nullable=False),
        sa.Column("job_id", sa.Integer, nullable=False),
        sa.Column("recipient", sa.String(320), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["job.id"], ondelete="CASCADE",
                                name=op.f("fk_sent_mail_job_id_job")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sent_mail")),
        sa.UniqueConstraint("message_id", name=op.f("uq_sent_mail_message_id")),
    )
    op.create_index("ix_sent_mail_job_id", "sent_mail", ["job_id"])
    with op.batch_alter_table("customer") as batch:
        batch.add_column(sa.Column("email_undeliverable_at", sa.DateTime(timezone=True),
                                   nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer") as batch:
        batch.drop_column("email_undeliverable_at")
    op.drop_index("ix_sent_mail_job_id", table_name="sent_mail")
    op.drop_table("sent_mail")
    op.drop_index("ix_job_message_job_id", table_name="job_message")
    op.drop_table("job_message")
    op.drop_index("ix_inbound_mail_outcome", table_name="inbound_mail")
    op.drop_table("inbound_mail")
    op.drop_index("ix_job_photo_job_id", table_name="job_photo")
    op.drop_table("job_photo")
