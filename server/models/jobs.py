"""Customers, sites, jobs and their visits; what can be booked and when."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Boolean, Enum, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from server.models.base import Base, utcnow
from server.models.enums import AppointmentStatus, JobStatus, PartStat
from server.models.people import User


class Customer(Base):
    __tablename__ = "customer"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), default="")
    phone: Mapped[str] = mapped_column(String(50), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    email_undeliverable_at: Mapped[dt.datetime | None]  # a permanent bounce of our mail to it

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
    postcode: Mapped[str] = mapped_column(String(20), default="")  # normalised, e.g. "SW1A 2AA"
    country: Mapped[str] = mapped_column(String(2), default="")  # ISO 3166, e.g. "DE"
    latitude: Mapped[float | None] = mapped_column(Float)  # given by a person: no geocoding
    longitude: Mapped[float | None] = mapped_column(Float)

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

    __table_args__ = (Index("ix_job_created", "created_at"),)

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
    hold_expires_at: Mapped[dt.datetime | None] = mapped_column(index=True)  # unconfirmed hold
    # Who holds it (normalised contact, phone digits, hashed client address): anti-hoarding.
    hold_contact: Mapped[str | None] = mapped_column(String(320))
    hold_phone: Mapped[str | None] = mapped_column(String(32))
    hold_client: Mapped[str | None] = mapped_column(String(64))
    booking_key: Mapped[str | None] = mapped_column(String(100), unique=True)
    status: Mapped[str] = mapped_column(String(20), default=AppointmentStatus.CONFIRMED)
    partstat: Mapped[str] = mapped_column(String(20), default=PartStat.NEEDS_ACTION)
    sequence: Mapped[int] = mapped_column(Integer, default=0)
    # How this visit is going, as its technician reports it (None until they set out):
    # JobStatus.EN_ROUTE → ON_SITE → COMPLETED; the job's status follows the latest report.
    progress: Mapped[JobStatus | None] = mapped_column(Enum(
        JobStatus, native_enum=False, length=20, validate_strings=True,
        values_callable=lambda members: [m.value for m in members]))
    progress_at: Mapped[dt.datetime | None]  # when the progress was last reported
    progress_note: Mapped[str] = mapped_column(Text, default="")  # the technician's note on "done"
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    job: Mapped[Job] = relationship()
    technician: Mapped[User | None] = relationship()
    service_type: Mapped[ServiceType | None] = relationship()

    __table_args__ = (
        Index("ix_appointment_technician_time", "technician_id", "starts_at"),
        Index("ix_appointment_technician_block", "technician_id", "blocked_from", "blocked_until"),
        Index("ix_appointment_job_status", "job_id", "status", "starts_at"),  # reports: first/last visit
    )

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
    remote: Mapped[bool] = mapped_column(Boolean, default=False)  # no site visit: no area, no drive

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
