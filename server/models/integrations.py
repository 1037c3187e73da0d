"""Integrations with other platforms, the objects we created there, and outbound webhooks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from server.models.base import Base, utcnow


class Integration(Base):
    """One connection to a platform: its settings, its encrypted secrets, its health."""

    __tablename__ = "integration"

    id: Mapped[int] = mapped_column(primary_key=True)
    platform: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    scope: Mapped[str] = mapped_column(String(120), default="all")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    secrets: Mapped[str] = mapped_column(Text, default="")  # a vault token; never clear text
    status: Mapped[str] = mapped_column(String(20), default="active")
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    last_success_at: Mapped[dt.datetime | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    sync_cursor: Mapped[str] = mapped_column(Text, default="")  # where reading changes back resumes

    # ids are never reused: outbox keys name the integration, and a removed one's rows stay
    __table_args__ = {"sqlite_autoincrement": True}


class ExternalRef(Base):
    """What a visit is called on a platform: retries update it instead of duplicating it."""

    __tablename__ = "external_ref"

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    appointment_id: Mapped[int] = mapped_column(ForeignKey("appointment.id", ondelete="CASCADE"))
    remote_id: Mapped[str] = mapped_column(String(300))
    pushed_sequence: Mapped[int] = mapped_column(Integer, default=0)
    join_url: Mapped[str] = mapped_column(Text, default="")  # a meeting's link (Meet, Zoom)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (
        UniqueConstraint("integration_id", "appointment_id"),
        Index("ix_external_ref_remote", "integration_id", "remote_id"),
    )


class Webhook(Base):
    """An outbound webhook: signed POSTs of our events to a receiver's URL."""

    __tablename__ = "webhook"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    events: Mapped[list[str]] = mapped_column(default=list)
    secrets: Mapped[str] = mapped_column(Text)  # vault token of {"current": ..., "previous": ...}
    previous_until: Mapped[dt.datetime | None]
    allow_private: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """One event for one webhook, with the outcome of its latest attempt."""

    __tablename__ = "webhook_delivery"

    id: Mapped[int] = mapped_column(primary_key=True)
    webhook_id: Mapped[int] = mapped_column(ForeignKey("webhook.id", ondelete="CASCADE"), index=True)
    event_id: Mapped[str] = mapped_column(String(64))
    event_type: Mapped[str] = mapped_column(String(60))
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(20), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    response_status: Mapped[int | None]
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[dt.datetime | None]

    __table_args__ = (UniqueConstraint("webhook_id", "event_id"),)


class InboundRef(Base):
    """A booking or job that came in from a platform, under the platform's own id: the same
    event arriving twice finds it, and a later cancel or move reaches the same visit."""

    __tablename__ = "inbound_ref"

    id: Mapped[int] = mapped_column(primary_key=True)
    integration_id: Mapped[int] = mapped_column(ForeignKey("integration.id", ondelete="CASCADE"))
    external_key: Mapped[str] = mapped_column(String(300))
    job_id: Mapped[int] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"))
    appointment_id: Mapped[int | None] = mapped_column(ForeignKey("appointment.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(20), default="booked")  # booked | tray | cancelled
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)

    __table_args__ = (UniqueConstraint("integration_id", "external_key"),)
