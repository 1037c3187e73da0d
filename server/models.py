"""The jobs database: SQLAlchemy 2 tables. Times are stored in UTC."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware datetimes in, aware UTC datetimes out.

    SQLite keeps one text format ("YYYY-MM-DD HH:MM:SS.ffffff", UTC) so string
    comparison is time comparison (the overlap triggers rely on it).
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: fieldcal stores aware UTC times only")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dt.datetime: UTCDateTime(), dict[str, Any]: JSON, list[str]: JSON}


class Role(enum.StrEnum):
    TECHNICIAN = "technician"
    DISPATCHER = "dispatcher"


class JobStatus(enum.StrEnum):
    NEW = "new"
    SCHEDULED = "scheduled"
    DISPATCHED = "dispatched"
    EN_ROUTE = "en_route"
    ON_SITE = "on_site"
    COMPLETED = "completed"
    CANCELLED = "cancelled"


class AppointmentStatus(enum.StrEnum):
    TENTATIVE = "tentative"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


class PartStat(enum.StrEnum):
    NEEDS_ACTION = "NEEDS-ACTION"
    ACCEPTED = "ACCEPTED"
    TENTATIVE = "TENTATIVE"
    DECLINED = "DECLINED"


class CollectionKind(enum.StrEnum):
    JOBS = "jobs"  # a technician's assigned visits (rendered from appointments)
    CALENDAR = "calendar"  # free-form items: "personal" and any the technician creates
    TEAM = "team"  # read-only view of a team's visits
    CUSTOMER = "customer"  # read-only view of a customer's visits


class User(Base):
    """A technician or a dispatcher: anyone who logs in."""

    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    login: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    skills: Mapped[list[str]] = mapped_column(default=list)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    teams: Mapped[list[Team]] = relationship(secondary="team_member", back_populates="members")

    @property
    def first_name(self) -> str:
        return self.name.split()[0] if self.name.split() else self.login


class Team(Base):
    __tablename__ = "team"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))

    members: Mapped[list[User]] = relationship(secondary="team_member", back_populates="teams")


class TeamMember(Base):
    __tablename__ = "team_member"

    team_id: Mapped[int] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), primary_key=True)


class Credential(Base):
    """A per-device app password. Only its SHA-256 is stored: the password is random."""

    __tablename__ = "credential"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]

    user: Mapped[User] = relationship()


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), default="")
    phone: Mapped[str] = mapped_column(String(50), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    sites: Mapped[list[Site]] = relationship(back_populates="customer", order_by="Site.id")


class Site(Base):
    """A service address and the compressor there."""

    __tablename__ = "site"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    address: Mapped[str] = mapped_column(Text)
    compressor_make: Mapped[str] = mapped_column(String(100), default="")
    compressor_model: Mapped[str] = mapped_column(String(100), default="")
    compressor_serial: Mapped[str] = mapped_column(String(100), default="")

    customer: Mapped[Customer] = relationship(back_populates="sites")


class Job(Base):
    """A service request."""

    __tablename__ = "job"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id"), index=True)
    site_id: Mapped[int | None] = mapped_column(ForeignKey("site.id"))
    title: Mapped[str] = mapped_column(String(200))
    problem: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(20), default="normal")
    source: Mapped[str] = mapped_column(String(20), default="phone")
    status: Mapped[str] = mapped_column(String(20), default=JobStatus.NEW)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    customer: Mapped[Customer] = relationship()
    site: Mapped[Site | None] = relationship()


class Appointment(Base):
    """A visit of a job. Non-cancelled visits of one technician never overlap (DESIGN §4)."""

    __tablename__ = "appointment"

    id: Mapped[int] = mapped_column(primary_key=True)
    uid: Mapped[str] = mapped_column(String(255), unique=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id"), index=True)
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("user.id"))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    window_start: Mapped[dt.datetime | None]
    window_end: Mapped[dt.datetime | None]
    blocked_from: Mapped[dt.datetime]  # starts_at less the buffer before
    blocked_until: Mapped[dt.datetime]  # ends_at plus the buffer after and travel
    service_type_id: Mapped[int | None] = mapped_column(ForeignKey("service_type.id"))
    hold_expires_at: Mapped[dt.datetime | None]  # an unconfirmed self-booking hold
    booking_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=AppointmentStatus.CONFIRMED)
    partstat: Mapped[str] = mapped_column(String(20), default=PartStat.NEEDS_ACTION)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship()
    technician: Mapped[User | None] = relationship()
    service_type: Mapped[ServiceType | None] = relationship()

    __table_args__ = (
        Index("ix_appointment_technician_time", "technician_id", "starts_at"),
        Index("ix_appointment_technician_block", "technician_id", "blocked_from", "blocked_until"),
    )


class Collection(Base):
    """A CalDAV collection. `sync_seq` advances on every change inside it."""

    __tablename__ = "collection"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(512), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("team.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    props: Mapped[dict[str, Any]] = mapped_column(default=dict)
    sync_seq: Mapped[int] = mapped_column(Integer, default=0)
    pruned_seq: Mapped[int] = mapped_column(Integer, default=0)  # older sync positions expired
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


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


class AuditEntry(Base):
    """Append-only and hash-chained: each entry's hash covers the previous one's."""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    actor: Mapped[str] = mapped_column(String(100))
    channel: Mapped[str] = mapped_column(String(20))
    action: Mapped[str] = mapped_column(String(50))
    entity: Mapped[str] = mapped_column(String(50))
    entity_id: Mapped[str] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    request_id: Mapped[str] = mapped_column(String(64), default="")
    prev_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)

    __table_args__ = (Index("ix_audit_entity", "entity", "entity_id"),)


class OutboxMessage(Base):
    """A notification or platform push, written in the transaction that caused it."""

    __tablename__ = "outbox_message"

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(50))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)


class ShareLink(Base):
    """A signed, revocable link to a schedule. The token carries only (id, version)."""

    __tablename__ = "share_link"

    id: Mapped[int] = mapped_column(primary_key=True)
    purpose: Mapped[str] = mapped_column(String(20))
    subject_kind: Mapped[str] = mapped_column(String(20))
    subject_id: Mapped[int] = mapped_column(Integer)
    audience: Mapped[str] = mapped_column(String(20))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("share_link.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer, default=1)
    label: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[dt.datetime | None]
    revoked_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    last_user_agent: Mapped[str] = mapped_column(String(300), default="")

    __table_args__ = (Index("ix_share_link_subject", "subject_kind", "subject_id"),)


class ServiceType(Base):
    """What a customer can book: how long it takes, buffers, skills, arrival windows."""

    __tablename__ = "service_type"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    duration_minutes: Mapped[int] = mapped_column(Integer)
    buffer_before_minutes: Mapped[int] = mapped_column(Integer, default=0)
    buffer_after_minutes: Mapped[int] = mapped_column(Integer, default=0)
    travel_minutes: Mapped[int] = mapped_column(Integer, default=0)
    skills: Mapped[list[str]] = mapped_column(default=list)
    min_notice_minutes: Mapped[int] = mapped_column(Integer, default=120)
    horizon_days: Mapped[int] = mapped_column(Integer, default=30)
    arrival_windows: Mapped[list[str]] = mapped_column(default=list)  # ["08:00-12:00", ...]
    window_capacity: Mapped[int] = mapped_column(Integer, default=0)  # 0 = no limit
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class WorkingHours(Base):
    """A technician's weekly hours, in the technician's own time zone."""

    __tablename__ = "working_hours"

    id: Mapped[int] = mapped_column(primary_key=True)
    technician_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    weekday: Mapped[int] = mapped_column(Integer)  # 0 = Monday
    starts: Mapped[str] = mapped_column(String(5))  # "08:00"
    ends: Mapped[str] = mapped_column(String(5))  # "17:00"


class TimeOff(Base):
    """Time nobody may be booked: one technician's leave, or a holiday (technician NULL)."""

    __tablename__ = "time_off"

    id: Mapped[int] = mapped_column(primary_key=True)
    technician_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    starts_at: Mapped[dt.datetime]
    ends_at: Mapped[dt.datetime]
    reason: Mapped[str] = mapped_column(String(200), default="")

    __table_args__ = (Index("ix_time_off_range", "technician_id", "starts_at"),)


class RateLimitBucket(Base):
    """A fixed-window request counter, shared by every process."""

    __tablename__ = "rate_limit_bucket"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[dt.datetime]
    count: Mapped[int] = mapped_column(Integer, default=0)
