"""Booking, rescheduling, reassigning, cancelling, and a technician's answers.

Every function runs in the caller's transaction (see `server.context.operation`):
it checks the rules, writes the rows and the calendar renderings, the change
log, one audit entry and the outbox rows for the notifications it causes.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from server import audit, calendars, outbox
from server.context import Context, operation
from server.errors import Forbidden, InvalidInput, NotFound, SlotTaken
from server.models import (
    Appointment,
    AppointmentStatus,
    Job,
    JobStatus,
    PartStat,
    Role,
    ServiceType,
    User,
    utcnow,
)

TECHNICIAN_STATUSES = (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE, JobStatus.COMPLETED)


def new_uid() -> str:
    return f"{uuid.uuid4().hex}@fieldcal"


def snapshot(appointment: Appointment) -> dict[str, Any]:
    return {
        "technician": appointment.technician.login if appointment.technician else None,
        "starts_at": appointment.starts_at.isoformat(),
        "ends_at": appointment.ends_at.isoformat(),
        "status": appointment.status,
        "partstat": appointment.partstat,
        "job_status": appointment.job.status,
        "sequence": appointment.sequence,
    }


def get_appointment(session: Session, appointment_id: int) -> Appointment:
    appointment = session.get(Appointment, appointment_id)
    if appointment is None:
        raise NotFound(f"No appointment #{appointment_id}.")
    return appointment


def find_by_uid(session: Session, uid: str) -> Appointment | None:
    return session.scalars(select(Appointment).where(Appointment.uid == uid)).first()


def _check_times(starts_at: dt.datetime, ends_at: dt.datetime) -> None:
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


def release_expired_holds(ctx: Context, technician_id: int | None = None) -> int:
    """Cancel self-booking holds that were not confirmed in time."""
    query = select(Appointment).where(
        Appointment.hold_expires_at.is_not(None),
        Appointment.hold_expires_at <= utcnow(),
        Appointment.status == AppointmentStatus.TENTATIVE,
    )
    if technician_id is not None:
        query = query.where(Appointment.technician_id == technician_id)
    expired = list(ctx.session.scalars(query))
    for appointment in expired:
        before = snapshot(appointment)
        appointment.status = AppointmentStatus.CANCELLED
        appointment.hold_expires_at = None
        if appointment.job.status == JobStatus.SCHEDULED:
            appointment.job.status = JobStatus.NEW
        changed(ctx, appointment, "appointment.hold.expire", before)
    return len(expired)


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
) -> None:
    """The friendly check: names the clash. The database guard is the guarantee."""
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
            f"{technician.name} is already booked from {clash.starts_at:%Y-%m-%d %H:%M} to "
            f"{clash.ends_at:%H:%M} UTC; that slot is taken. Pick another time.",
        )


def changed(ctx: Context, appointment: Appointment, action: str, before: dict[str, Any] | None,
             *, bump: bool = True) -> Appointment:
    """Common tail of every change: sequence, renderings, audit, outbox."""
    if bump and before is not None:
        appointment.sequence += 1
    appointment.updated_at = utcnow().replace(microsecond=0)
    ctx.session.flush()
    ctx.session.refresh(appointment, ["technician", "job"])
    calendars.project(ctx, appointment)
    after = snapshot(appointment)
    audit.record(ctx.session, ctx.actor, action, "appointment", appointment.id,
                 before=before, after=after)
    outbox.enqueue(
        ctx.session,
        "appointment.changed",
        {"appointment_id": appointment.id, "action": action, "sequence": appointment.sequence,
         "before": before, "after": after},
        idempotency_key=f"appointment:{appointment.id}:{appointment.sequence}:{action}",
    )
    return appointment


@operation
def book(
    ctx: Context,
    job: Job,
    technician: User | None,
    starts_at: dt.datetime,
    ends_at: dt.datetime,
    *,
    status: AppointmentStatus = AppointmentStatus.CONFIRMED,
    window: tuple[dt.datetime, dt.datetime] | None = None,
    uid: str | None = None,
    service_type: ServiceType | None = None,
    hold_until: dt.datetime | None = None,
    booking_key: str | None = None,
) -> Appointment:
    _check_times(starts_at, ends_at)
    if technician is not None:
        if technician.role != Role.TECHNICIAN:
            raise InvalidInput(f"{technician.login!r} is not a technician.")
        lock_technicians(ctx.session, [technician.id])
        release_expired_holds(ctx, technician.id)
        check_free(ctx.session, technician, starts_at, ends_at, service_type=service_type)
    blocked_from, blocked_until = blocked_range(service_type, starts_at, ends_at)
    appointment = Appointment(
        uid=uid or new_uid(),
        job_id=job.id,
        technician_id=technician.id if technician else None,
        starts_at=starts_at,
        ends_at=ends_at,
        window_start=window[0] if window else None,
        window_end=window[1] if window else None,
        blocked_from=blocked_from,
        blocked_until=blocked_until,
        service_type_id=service_type.id if service_type else None,
        hold_expires_at=hold_until,
        booking_key=booking_key,
        status=status,
        partstat=PartStat.NEEDS_ACTION,
        sequence=0,
    )
    ctx.session.add(appointment)
    if job.status == JobStatus.NEW:
        job.status = JobStatus.SCHEDULED
        job.updated_at = utcnow()
    return changed(ctx, appointment, "appointment.book", None, bump=False)


def _live(appointment: Appointment) -> None:
    if appointment.status == AppointmentStatus.CANCELLED:
        raise InvalidInput(f"Appointment #{appointment.id} is cancelled; book a new one instead.")


@operation
def reschedule(ctx: Context, appointment: Appointment, starts_at: dt.datetime,
               ends_at: dt.datetime, *, technician: User | None = None,
               window: tuple[dt.datetime, dt.datetime] | None = None) -> Appointment:
    """Move a visit; with `technician`, hand it to that technician at the new time too.

    The arrival window moves with the visit unless a new `window` is given.
    """
    _live(appointment)
    _check_times(starts_at, ends_at)
    target = technician or appointment.technician
    if (starts_at, ends_at, target) == (appointment.starts_at, appointment.ends_at,
                                        appointment.technician):
        return appointment
    if target is not None:
        lock_technicians(ctx.session, [target.id])
        release_expired_holds(ctx, target.id)
        check_free(ctx.session, target, starts_at, ends_at, appointment.id,
                   appointment.service_type)
    before = snapshot(appointment)
    if target is not appointment.technician and target is not None:
        appointment.technician_id = target.id
        appointment.partstat = PartStat.NEEDS_ACTION
    appointment.starts_at, appointment.ends_at = starts_at, ends_at
    appointment.blocked_from, appointment.blocked_until = blocked_range(
        appointment.service_type, starts_at, ends_at)
    if window is not None:
        appointment.window_start, appointment.window_end = window
    elif appointment.window_start is not None and appointment.window_end is not None:
        width = appointment.window_end - appointment.window_start
        appointment.window_start, appointment.window_end = starts_at, starts_at + width
    return changed(ctx, appointment, "appointment.reschedule", before)


@operation
def reassign(ctx: Context, appointment: Appointment, technician: User | None) -> Appointment:
    _live(appointment)
    if technician is not None and technician.role != Role.TECHNICIAN:
        raise InvalidInput(f"{technician.login!r} is not a technician.")
    if appointment.technician_id == (technician.id if technician else None):
        return appointment
    if technician is not None:
        lock_technicians(ctx.session, [technician.id])
        release_expired_holds(ctx, technician.id)
        check_free(ctx.session, technician, appointment.starts_at, appointment.ends_at,
                   appointment.id, appointment.service_type)
    before = snapshot(appointment)
    appointment.technician_id = technician.id if technician else None
    appointment.partstat = PartStat.NEEDS_ACTION
    return changed(ctx, appointment, "appointment.reassign", before)


@operation
def cancel(ctx: Context, appointment: Appointment, reason: str = "") -> Appointment:
    if appointment.status == AppointmentStatus.CANCELLED:
        return appointment
    before = snapshot(appointment)
    appointment.status = AppointmentStatus.CANCELLED
    job = appointment.job
    others_live = ctx.session.scalars(
        select(Appointment.id).where(
            Appointment.job_id == job.id,
            Appointment.id != appointment.id,
            Appointment.status != AppointmentStatus.CANCELLED,
        )
    ).first()
    if others_live is None and job.status != JobStatus.COMPLETED:
        job.status = JobStatus.CANCELLED
        job.updated_at = utcnow()
    result = changed(ctx, appointment, "appointment.cancel", before)
    if reason:
        audit.record(ctx.session, ctx.actor, "appointment.cancel.reason", "appointment",
                     appointment.id, after={"reason": reason})
    return result


def _own(ctx: Context, appointment: Appointment) -> None:
    if ctx.actor.is_dispatcher:
        return
    technician = appointment.technician
    if technician is None or technician.login != ctx.actor.name:
        raise Forbidden(f"Appointment #{appointment.id} is not assigned to {ctx.actor.name}.")


@operation
def accept(ctx: Context, appointment: Appointment, partstat: PartStat = PartStat.ACCEPTED) -> Appointment:
    """The assigned technician accepts (or tentatively accepts) the visit."""
    _own(ctx, appointment)
    _live(appointment)
    if partstat not in (PartStat.ACCEPTED, PartStat.TENTATIVE):
        raise InvalidInput(f"accept takes ACCEPTED or TENTATIVE, not {partstat}.")
    if appointment.partstat == partstat:
        return appointment
    before = snapshot(appointment)
    appointment.partstat = partstat
    if partstat == PartStat.ACCEPTED and appointment.job.status == JobStatus.SCHEDULED:
        appointment.job.status = JobStatus.DISPATCHED
    return changed(ctx, appointment, "appointment.accept", before, bump=False)


@operation
def decline(ctx: Context, appointment: Appointment) -> Appointment:
    """The technician declines: the visit goes back to unassigned; nothing is lost."""
    _own(ctx, appointment)
    _live(appointment)
    before = snapshot(appointment)
    appointment.technician_id = None
    appointment.partstat = PartStat.NEEDS_ACTION
    if appointment.job.status == JobStatus.DISPATCHED:
        appointment.job.status = JobStatus.SCHEDULED
    return changed(ctx, appointment, "appointment.decline", before)


@operation
def set_status(ctx: Context, appointment: Appointment, status: JobStatus) -> Appointment:
    """Progress of the job as the technician reports it: dispatched → … → completed."""
    _own(ctx, appointment)
    _live(appointment)
    if status not in TECHNICIAN_STATUSES:
        allowed = ", ".join(s.value for s in TECHNICIAN_STATUSES)
        raise InvalidInput(f"Job status {status!r} cannot be set here; use one of {allowed}.")
    job = appointment.job
    if job.status == status:
        return appointment
    before = snapshot(appointment)
    job.status = status
    job.updated_at = utcnow()
    return changed(ctx, appointment, "appointment.status", before)
