"""CalDAV collections, their stored items and the change log."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy import text as sql_text
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class Collection(Base):
    """A CalDAV collection. `sync_seq` advances on every change inside it."""

    __tablename__ = "collection"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[str] = mapped_column(String(20), index=True)  # address books found by kind
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    props: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sync_seq: Mapped[int] = mapped_column(Integer, default=0)
    pruned_seq: Mapped[int] = mapped_column(Integer, default=0)  # older sync positions expired
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

# Items that may span more than SHORT_SPAN_DAYS (open or missing bounds included) have an
# index of their own, so a time-range query reads the short items by a bounded range of
# dtstart and the long ones from this small index: its cost does not grow with the calendar.
# The condition is written literally (no parameters) so the planners can match it; on
# PostgreSQL as a difference of times (immutable, as an index condition must be).
SHORT_SPAN_DAYS = 4
LONG_SPAN_SQLITE = ("calendar_item.dtstart IS NULL OR calendar_item.dtend IS NULL OR "
                    "calendar_item.dtend > datetime(calendar_item.dtstart, '+4 days')")
LONG_SPAN_POSTGRESQL = ("calendar_item.dtstart IS NULL OR calendar_item.dtend IS NULL OR "
                        "calendar_item.dtend - calendar_item.dtstart > interval '4 days'")


class CalendarItem(Base):
    """One stored object of a collection, with its rendered text and etag.

    Items of `jobs`, `team` and `customer` collections are renderings of an
    appointment (`appointment_id` set) kept current by the domain; items of
    `calendar` collections are what the technician's client stored.
    `dtend`/`recur_until` bound the time the item can occupy (NULL = open-ended).
    """

    __tablename__ = "calendar_item"

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    href: Mapped[str] = mapped_column(String(512))
    uid: Mapped[str] = mapped_column(String(512))
    component: Mapped[str] = mapped_column(String(20), default="VEVENT")
    appointment_id: Mapped[int | None] = mapped_column(
        ForeignKey("appointment.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(Text)
    etag: Mapped[str] = mapped_column(String(80))
    dtstart: Mapped[dt.datetime | None]
    dtend: Mapped[dt.datetime | None]
    transparent: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("collection_id", "href", name="uq_calendar_item_href"),
        Index("ix_calendar_item_uid", "collection_id", "uid"),
        Index("ix_calendar_item_time", "collection_id", "dtstart", "dtend"),
        Index("ix_calendar_item_order", "collection_id", "id"),
        Index("ix_calendar_item_long", "collection_id", "dtstart",
              sqlite_where=sql_text(LONG_SPAN_SQLITE),
              postgresql_where=sql_text(LONG_SPAN_POSTGRESQL)),
    )

class Change(Base):
    """The change log: one row per (collection, seq); `op` is put or delete (a tombstone)."""

    __tablename__ = "change"

    id: Mapped[int] = mapped_column(primary_key=True)
    collection_id: Mapped[int] = mapped_column(ForeignKey("collection.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    href: Mapped[str] = mapped_column(String(512))
    op: Mapped[str] = mapped_column(String(10))
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("collection_id", "seq", name="uq_change_seq"),)
