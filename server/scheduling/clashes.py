"""The no-double-booking guard's friendly half: a visit's times checked, the time it keeps
its technician busy (buffers and travel), writers serialised per technician, and a clash
named before the database's exclusion guard would refuse it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server.errors import InvalidInput, SlotTaken
from server.models import Appointment, AppointmentStatus, ServiceType, User
from server.scheduling import rules


def check_times(starts_at: dt.datetime, ends_at: dt.datetime) -> None:
    if starts_at.tzinfo is None or ends_at.tzinfo is None:
        raise InvalidInput("Times must carry a time zone.")
    if ends_at <= starts_at:
        raise InvalidInput("An appointment must end after it starts.")
    if ends_at - starts_at > dt.timedelta(days=14):
        raise InvalidInput("An appointment cannot last longer than 14 days.")


def blocked_range(service_type: ServiceType | None, starts_at: dt.datetime,
                  ends_at: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The time a visit keeps its technician busy: buffers and travel included."""
    if service_type is None:
        return starts_at, ends_at
    before = dt.timedelta(minutes=service_type.buffer_before_minutes)
    after = dt.timedelta(minutes=service_type.buffer_after_minutes + service_type.travel_minutes)
    return starts_at - before, ends_at + after


TECHNICIAN_LOCK_SPACE = 0x74656368


def lock_technicians(session: Session, technician_ids: list[int]) -> None:
    """Serialise writers per technician (PostgreSQL; SQLite writers are serial already).

    Taken before the friendly check, so a later writer sees the earlier one's commit and
    is refused at once; taken in id order, so two writers never wait on each other.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for technician_id in sorted(set(technician_ids)):
        session.execute(text("SELECT pg_advisory_xact_lock(:space, :id)"),
                        {"space": TECHNICIAN_LOCK_SPACE, "id": technician_id})


def check_free(
    session: Session, technician: User, starts_at: dt.datetime, ends_at: dt.datetime,
    exclude_id: int | None = None, service_type: ServiceType | None = None,
    zone: str = "UTC",
) -> None:
    """The friendly check: names the clash (times in `zone`). The database guard is the guarantee."""
    blocked_from, blocked_until = blocked_range(service_type, starts_at, ends_at)
    query = select(Appointment).where(
        Appointment.technician_id == technician.id,
        Appointment.status != AppointmentStatus.CANCELLED,
        Appointment.blocked_from < blocked_until,
        Appointment.blocked_until > blocked_from,
    )
    if exclude_id is not None:
        query = query.where(Appointment.id != exclude_id)
    clash = session.scalars(query.limit(1)).first()
    if clash is not None:
        raise SlotTaken(
            technician.login,
            f"{technician.name} is already booked {rules.span(clash.starts_at, clash.ends_at, zone)}"
            f" (visit #{clash.id}); that slot is taken. Pick another time.",
            blocking=(clash.id,),
        )
