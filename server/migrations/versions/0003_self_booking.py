"""self-booking: service types, working hours, time off; appointments block buffers too

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

OVERLAP_MESSAGE = "fieldcal: appointment overlaps another appointment of this technician"


def _sqlite_triggers(start: str, end: str) -> list[str]:
    def trigger(name: str, event: str, exclude_self: str) -> str:
        return f"""
        CREATE TRIGGER {name} BEFORE {event} ON appointment
        WHEN NEW.technician_id IS NOT NULL AND NEW.status <> 'cancelled'
        BEGIN
            SELECT RAISE(ABORT, '{OVERLAP_MESSAGE}') WHERE EXISTS (
                SELECT 1 FROM appointment
                WHERE technician_id = NEW.technician_id AND status <> 'cancelled' {exclude_self}
                  AND {start} < NEW.{end} AND {end} > NEW.{start});
        END
        """

    return [
        trigger("appointment_no_overlap_insert", "INSERT", ""),
        trigger("appointment_no_overlap_update", "UPDATE", "AND id <> NEW.id"),
    ]


def _postgres_guard(start: str, end: str) -> str:
    return f"""
    ALTER TABLE appointment ADD CONSTRAINT appointment_no_overlap
    EXCLUDE USING gist (technician_id WITH =, tstzrange({start}, {end}, '[)') WITH &&)
    WHERE (status <> 'cancelled' AND technician_id IS NOT NULL)
    """


def _drop_guard(sqlite: bool) -> None:
    if sqlite:
        op.execute("DROP TRIGGER IF EXISTS appointment_no_overlap_insert")
        op.execute("DROP TRIGGER IF EXISTS appointment_no_overlap_update")
    else:
        op.execute("ALTER TABLE appointment DROP CONSTRAINT IF EXISTS appointment_no_overlap")


def _create_guard(sqlite: bool, start: str, end: str) -> None:
    for statement in _sqlite_triggers(start, end) if sqlite else [_postgres_guard(start, end)]:
        op.execute(statement)


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    op.create_table(
        "service_type",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("duration_minutes", sa.Integer(), nullable=False),
        sa.Column("buffer_before_minutes", sa.Integer(), nullable=False),
        sa.Column("buffer_after_minutes", sa.Integer(), nullable=False),
        sa.Column("travel_minutes", sa.Integer(), nullable=False),
        sa.Column("skills", sa.JSON(), nullable=False),
        sa.Column("min_notice_minutes", sa.Integer(), nullable=False),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("arrival_windows", sa.JSON(), nullable=False),
        sa.Column("window_capacity", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_type")),
        sa.UniqueConstraint("slug", name=op.f("uq_service_type_slug")),
    )
    op.create_table(
        "working_hours",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("technician_id", sa.Integer(), nullable=False),
        sa.Column("weekday", sa.Integer(), nullable=False),
        sa.Column("starts", sa.String(length=5), nullable=False),
        sa.Column("ends", sa.String(length=5), nullable=False),
        sa.ForeignKeyConstraint(["technician_id"], ["user.id"],
                                name=op.f("fk_working_hours_technician_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_working_hours")),
    )
    op.create_index(op.f("ix_working_hours_technician_id"), "working_hours", ["technician_id"])
    op.create_table(
        "time_off",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("technician_id", sa.Integer(), nullable=True),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["technician_id"], ["user.id"],
                                name=op.f("fk_time_off_technician_id_user"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_time_off")),
    )
    op.create_index("ix_time_off_range", "time_off", ["technician_id", "starts_at"])
    op.create_table(
        "rate_limit_bucket",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_rate_limit_bucket")),
    )

    _drop_guard(sqlite)
    with op.batch_alter_table("appointment") as batch:
        batch.add_column(sa.Column("blocked_from", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("service_type_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("hold_expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("booking_key", sa.String(length=100), nullable=True))
        batch.create_foreign_key(op.f("fk_appointment_service_type_id_service_type"),
                                 "service_type", ["service_type_id"], ["id"])
        batch.create_unique_constraint(op.f("uq_appointment_booking_key"), ["booking_key"])
    op.execute("UPDATE appointment SET blocked_from = starts_at, blocked_until = ends_at")
    with op.batch_alter_table("appointment") as batch:
        batch.alter_column("blocked_from", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.alter_column("blocked_until", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch.create_index("ix_appointment_technician_block",
                           ["technician_id", "blocked_from", "blocked_until"])
    _create_guard(sqlite, "blocked_from", "blocked_until")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    _drop_guard(sqlite)
    with op.batch_alter_table("appointment") as batch:
        batch.drop_index("ix_appointment_technician_block")
        batch.drop_constraint(op.f("uq_appointment_booking_key"), type_="unique")
        batch.drop_constraint(op.f("fk_appointment_service_type_id_service_type"), type_="foreignkey")
        for column in ("booking_key", "hold_expires_at", "service_type_id", "blocked_until",
                       "blocked_from"):
            batch.drop_column(column)
    _create_guard(sqlite, "starts_at", "ends_at")
    op.drop_table("rate_limit_bucket")
    op.drop_index("ix_time_off_range", table_name="time_off")
    op.drop_table("time_off")
    op.drop_index(op.f("ix_working_hours_technician_id"), table_name="working_hours")
    op.drop_table("working_hours")
    op.drop_table("service_type")
