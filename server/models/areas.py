"""Where technicians work: service areas of a technician or of a whole team."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import CheckConstraint, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class ServiceArea(Base):
    """One rule: a postcode prefix in a country, or a circle (centre + radius) around a point.

    Exactly one of `technician_id` and `team_id` is set. A technician serves a site
    if any rule of theirs or of one of their teams matches it; a technician with no
    rule at all (own or team's) serves every site.
    """

    __tablename__ = "service_area"

    id: Mapped[int] = mapped_column(primary_key=True)
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    country: Mapped[str] = mapped_column(String(2))
    postcode_prefix: Mapped[str] = mapped_column(String(20), default="")  # "" with a circle
    centre_latitude: Mapped[float | None] = mapped_column(Float)
    centre_longitude: Mapped[float | None] = mapped_column(Float)
    radius_km: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        CheckConstraint("(technician_id IS NULL) <> (team_id IS NULL)", name="one_owner"),
        Index("ix_service_area_technician", "technician_id"),
        Index("ix_service_area_team", "team_id"),
    )
