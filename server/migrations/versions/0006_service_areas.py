"""service areas and travel: site postcode/country/coordinates, team travel model, service_area

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from server.addresses import country_of_zone, parse_address

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Plain ADD COLUMN (no table copy): a copied `team` would cascade-delete its members.
    op.add_column("site", sa.Column("postcode", sa.String(length=20), nullable=False,
                                    server_default=""))
    op.add_column("site", sa.Column("country", sa.String(length=2), nullable=False,
                                    server_default=""))
    op.add_column("site", sa.Column("latitude", sa.Float(), nullable=True))
    op.add_column("site", sa.Column("longitude", sa.Float(), nullable=True))
    op.add_column("team", sa.Column("road_factor", sa.Float(), nullable=False,
                                    server_default="1.3"))
    op.add_column("team", sa.Column("speed_kmh", sa.Float(), nullable=False,
                                    server_default="40"))
    op.add_column("service_type", sa.Column("remote", sa.Boolean(), nullable=False,
                                            server_default=sa.false()))
    op.create_table(
        "service_area",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("technician_id", sa.Integer(), nullable=True),
        sa.Column("team_id", sa.Integer(), nullable=True),
        sa.Column("country", sa.String(length=2), nullable=False),
        sa.Column("postcode_prefix", sa.String(length=20), nullable=False),
        sa.Column("centre_latitude", sa.Float(), nullable=True),
        sa.Column("centre_longitude", sa.Float(), nullable=True),
        sa.Column("radius_km", sa.Float(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("(technician_id IS NULL) <> (team_id IS NULL)",
                           name=op.f("ck_service_area_one_owner")),
        sa.ForeignKeyConstraint(["technician_id"], ["user.id"],
                                name=op.f("fk_service_area_technician_id_user"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["team_id"], ["team.id"],
                                name=op.f("fk_service_area_team_id_team"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_service_area")),
    )
    op.create_index("ix_service_area_technician", "service_area", ["technician_id"])
    op.create_index("ix_service_area_team", "service_area", ["team_id"])
    _derive_site_areas()


def _derive_site_areas() -> None:
    """Existing sites get the postcode and country their address names."""
    bind = op.get_bind()
    rows = bind.execute(sa.text(
        "SELECT site.id, site.address, customer.timezone FROM site "
        "JOIN customer ON customer.id = site.customer_id")).all()
    for site_id, address, zone in rows:
        area = parse_address(address or "", country_of_zone(zone))
        if area.postcode or area.country:
            bind.execute(sa.text("UPDATE site SET postcode = :p, country = :c WHERE id = :i"),
                         {"p": area.postcode, "c": area.country, "i": site_id})


def downgrade() -> None:
    op.drop_index("ix_service_area_team", table_name="service_area")
    op.drop_index("ix_service_area_technician", table_name="service_area")
    op.drop_table("service_area")
    with op.batch_alter_table("service_type") as batch:
        batch.drop_column("remote")
    with op.batch_alter_table("team") as batch:
        batch.drop_column("speed_kmh")
        batch.drop_column("road_factor")
    with op.batch_alter_table("site") as batch:
        batch.drop_column("longitude")
        batch.drop_column("latitude")
        batch.drop_column("country")
        batch.drop_column("postcode")
