"""Reminders before a visit (FIELDCAL_REMINDERS, default "24h,2h").

The worker runs `scan` every FIELDCAL_REMINDER_SCAN_SECONDS. A confirmed,
upcoming visit gets the reminder of a horizon (e.g. 24 h before it) once it has
entered that horizon, as an `appointment.reminder` outbox row whose key holds
the appointment, the offset and the start time: scanning again queues nothing,
and a moved visit gets fresh reminders. Rules:
- never for past, cancelled or unconfirmed visits, nor customers without email;
- only the nearest horizon the visit is in (after an outage of the worker, the
  2 h reminder goes out, not also a late 24 h one);
- not for a horizon the visit was already inside when the customer was told of
  its current time (booked, confirmed or moved): the confirmation just said it.
"""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from server import outbox
from server.actions import Action
from server.db import Database
from server.errors import ConfigError
from server.models import Appointment, AppointmentStatus, AuditEntry, Customer, Job, OutboxMessage

KIND = "appointment.reminder"
TOLD_ACTIONS = (Action.APPOINTMENT_BOOK, Action.APPOINTMENT_CONFIRM, Action.APPOINTMENT_RESCHEDULE)
OFFSET = re.compile(r"^(?P<n>\d+)\s*(?P<unit>[dhm])$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}
SCAN_LOCK = 0x72656D69  # serialises scanners on PostgreSQL (one key per purpose)


def parse_offsets(text: str) -> tuple[dt.timedelta, ...]:
    """"24h,2h" -> (24 h, 2 h), longest first; "" turns reminders off."""
    offsets: set[dt.timedelta] = set()
    for raw in text.split(","):
        part = raw.strip().lower()
        if not part:
            continue
        match = OFFSET.match(part)
        if match is None or int(match["n"]) == 0:
            raise ConfigError(
                f"FIELDCAL_REMINDERS: {raw.strip()!r} is not a time before the visit like 24h, 90m or 2d")
        offsets.add(dt.timedelta(**{UNITS[match["unit"]]: int(match["n"])}))
    return tuple(sorted(offsets, reverse=True))


def label(offset: dt.timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    return f"{minutes}m"


def reminder_key(appointment: Appointment, offset: dt.timedelta) -> str:
    return f"reminder:{appointment.id}:{label(offset)}:{appointment.starts_at.isoformat()}"


def due(session: Session, offsets: tuple[dt.timedelta, ...],
        now: dt.datetime) -> list[tuple[Appointment, dt.timedelta]]:
    """The reminders that should exist at `now` (queued or not)."""
    if not offsets:
        return []
    candidates = list(session.scalars(
        select(Appointment)
        .join(Job, Job.id == Appointment.job_id)
        .join(Customer, Customer.id == Job.customer_id)
        .where(Appointment.status == AppointmentStatus.CONFIRMED,
               Appointment.hold_expires_at.is_(None),
               Appointment.starts_at > now,
               Appointment.starts_at <= now + max(offsets),
               Customer.email != "")
        .order_by(Appointment.starts_at, Appointment.id)
    ))
    if not candidates:
        return []
    told_at: dict[str, dt.datetime] = {entity_id: at for entity_id, at in session.execute(
        select(AuditEntry.entity_id, func.max(AuditEntry.at))
        .where(AuditEntry.entity == "appointment",
               AuditEntry.entity_id.in_([str(a.id) for a in candidates]),
               AuditEntry.action.in_(TOLD_ACTIONS))
        .group_by(AuditEntry.entity_id)
    )}
    result = []
    for appointment in candidates:
        offset = min(o for o in offsets if appointment.starts_at - now <= o)
        told = told_at.get(str(appointment.id))
        if told is None or told < appointment.starts_at - offset:
            result.append((appointment, offset))
    return result


def scan(database: Database, offsets: tuple[dt.timedelta, ...], now: dt.datetime) -> int:
    """Queue the reminders that are due and not queued yet; returns how many were queued."""
    with database.read() as session:
        wanted = {reminder_key(a, o) for a, o in due(session, offsets, now)}
        if not wanted or _queued(session, wanted) == wanted:
            return 0
    queued = 0
    with database.write() as session:
        database.lock_writes(session, SCAN_LOCK)
        found = due(session, offsets, now)
        existing = _queued(session, {reminder_key(a, o) for a, o in found})
        for appointment, offset in found:
            key = reminder_key(appointment, offset)
            if key in existing:
                continue
            outbox.enqueue(session, KIND, {
                "appointment_id": appointment.id,
                "offset": label(offset),
                "starts_at": appointment.starts_at.isoformat(),
            }, idempotency_key=key)
            queued += 1
    return queued


def _queued(session: Session, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    return set(session.scalars(
        select(OutboxMessage.idempotency_key).where(OutboxMessage.idempotency_key.in_(sorted(keys)))))
