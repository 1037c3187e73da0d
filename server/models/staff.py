"""Staff sign-in for the dispatch console: one password and one session generation per person."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class StaffPassword(Base):
    """A console password (argon2id hash only) and the generation every session must carry.

    Raising `generation` ends every console session of that person at once.
    """

    __tablename__ = "staff_password"

    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"),
                                         primary_key=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    generation: Mapped[int] = mapped_column(Integer, default=1)
    set_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[dt.datetime | None]
