"""Booking, rescheduling, reassigning, cancelling, and a technician's answers.

Every function runs in the caller's transaction (see `server.context.operation`):
it checks the rules, writes the rows and the calendar renderings, the change
log, one audit entry and the outbox rows for the notifications it causes.
"""

from __future__ import annotations

import datetime as dt
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from server import audit, calendars, contacts, integrations, outbox
from server.actions import Action, AppointmentChange, AppointmentSnapshot
from server.context import Context, operation
from server.errors import Forbidden, InvalidInput, NotFound
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
from server.scheduling import rules, travel
from server.scheduling.areas import area_of_site
from server.scheduling.clashes import blocked_range, check_free, check_times, lock_technicians
from server.scheduling.rules import Override

TECHNICIAN_STATUSES = (JobStatus.DISPATCHED, JobStatus.EN_ROUTE, JobStatus.ON_SITE, JobStatus.COMPLETED)
REPORTED = frozenset({JobStatus.EN_ROUTE, JobStatus.ON_SITE, JobStatus.COMPLETED})  # a visit's progress


def new_uid() -> str:
    return f"{uuid.uuid4().hex}@fieldcal"


def snapshot(appointment: Appointment) -> AppointmentSnapshot:
    return AppointmentSnapshot.of(appointment)


def get_appointment(session: Session, appointment_id: int) -> Appointment:
    appointment = session.get(Appointment, appointment_id)
    if appointment is None:
        raise NotFound(f"No appointment #{appointment_id}.")
    return appointment


def find_by_uid(session: Session, uid: str) -> Appointment | None:
    return session.scalars(select(Appointment).where(Appointment.uid == uid)).first()


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
        changed(ctx, appointment, Action.APPOINTMENT_HOLD_EXPIRE, before)
    return len(expired)


def _claim(ctx: Context, technician: User, job: Job, service_type: ServiceType | None,
           starts_at: dt.datetime, ends_at: dt.datetime, *, exclude_id: int | None,
           newly_assigned: bool, force: Override | None
           ) -> tuple[tuple[dt.datetime, dt.datetime], list[rules.Problem]]:
    """Every check before a technician gets a visit (`newly_assigned`) or keeps it at a new
    time: overlap, rules, travel. Returns the blocked range and what was overridden."""
    zone = rules.reader_zone(ctx, technician)
    if newly_assigned and not technician.active:
        raise InvalidInput(f"{technician.name} ({technician.login}) is inactive and gets no new "
                           "visits; make them active first.")
    lock_technicians(ctx.session, [technician.id])
    release_expired_holds(ctx, technician.id)
    check_free(ctx.session, technician, starts_at, ends_at, exclude_id, service_type, zone)
    on_site = not (service_type is not None and service_type.remote)
    overridden = rules.enforce(
        ctx, technician, starts_at, ends_at, force=force,
        area=area_of_site(job.site) if newly_assigned and on_site else None,
        times=not rules.acting_for_self(ctx, technician))
    blocked = blocked_range(service_type, starts_at, ends_at)
    need = travel.need(ctx.session, technician, job.site if on_site else None, service_type,
                       starts_at, blocked, ends_at, exclude_id=exclude_id, zone=zone)
    return (blocked[0] - need.extra_before, blocked[1] + need.extra_after), overridden


Freed = tuple[User | None, dt.datetime, dt.datetime]


def changed(ctx: Context, appointment: Appointment, action: Action, before: AppointmentSnapshot | None,
            *, bump: bool = True, freed: Freed | None = None) -> Appointment:
    """Common tail of every change: sequence, renderings, audit, outbox. `freed`: where the
    visit was (technician, start, end) if it left; the neighbours there need no drive to it."""
    if bump and before is not None:
        appointment.sequence += 1
    appointment.updated_at = utcnow().replace(microsecond=0)
    ctx.session.flush()
    if freed is not None and freed[0] is not None:
        travel.relax_around(ctx.session, freed[0], freed[1], freed[2])
    ctx.session.refresh(appointment, ["technician", "job"])
    calendars.project(ctx, appointment)
    contacts.follow_customer(ctx.session, appointment.job.customer_id, [appointment.technician_id])
    after = snapshot(appointment)
    audit.record(ctx.session, ctx.actor, action, "appointment", appointment.id,
                 before=before, after=after)
    change = AppointmentChange(appointment.id, action, appointment.sequence, before, after)
    outbox.enqueue(
        ctx.session,
        AppointmentChange.KIND,
        change.as_payload(),
        idempotency_key=f"appointment:{appointment.id}:{appointment.sequence}:{action.value}",
    )
    if integrations.listening(ctx.session):
        outbox.enqueue(
            ctx.session,
            "platform.fanout",
            {"appointment_id": appointment.id, "action": action.value, "sequence": appointment.sequence,
             "origin": {"channel": ctx.actor.channel, "name": ctx.actor.name}},
            idempotency_key=f"fanout:{appointment.id}:{appointment.sequence}:{action.value}",
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
    force: Override | None = None,
) -> Appointment:
    """Book a visit of a job. A technician must serve the job's site and be free then
    (working hours, personal time, travel); `force` overrides area, hours and personal time
    (a dispatcher's decision, audited), never an overlap or the travel between visits.
    """
    check_times(starts_at, ends_at)
    overridden: list[rules.Problem] = []
    if technician is not None:
        if technician.role != Role.TECHNICIAN:
            raise InvalidInput(f"{technician.login!r} is not a technician.")
        (blocked_from, blocked_until), overridden = _claim(
            ctx, technician, job, service_type, starts_at, ends_at, exclude_id=None,
            newly_assigned=True, force=force)
    else:
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
    changed(ctx, appointment, Action.APPOINTMENT_BOOK, None, bump=False)
    if force is not None:
        rules.record_override(ctx, appointment, force, overridden)
    return appointment


def _live(appointment: Appointment) -> None:
    if appointment.status == AppointmentStatus.CANCELLED:
        raise InvalidInput(f"Appointment #{appointment.id} is cancelled; book a new one instead.")


@operation
def reschedule(ctx: Context, appointment: Appointment, starts_at: dt.datetime,
               ends_at: dt.datetime, *, technician: User | None = None,
               window: tuple[dt.datetime, dt.datetime] | None = None,
               force: Override | None = None) -> Appointment:
    """Move a visit; with `technician`, hand it to that technician at the new time too.

    The arrival window moves with the visit unless a new `window` is given.
    """
    _live(appointment)
    check_times(starts_at, ends_at)
    target = technician or appointment.technician
    if (starts_at, ends_at, target) == (appointment.starts_at, appointment.ends_at,
                                        appointment.technician):
        return appointment
    overridden: list[rules.Problem] = []
    if target is not None:
        blocked, overridden = _claim(
            ctx, target, appointment.job, appointment.service_type, starts_at, ends_at,
            exclude_id=appointment.id, newly_assigned=target is not appointment.technician,
            force=force)
    else:
        blocked = blocked_range(appointment.service_type, starts_at, ends_at)
    before = snapshot(appointment)
    freed = (appointment.technician, appointment.starts_at, appointment.ends_at)
    if target is not appointment.technician and target is not None:
        appointment.technician_id = target.id
        appointment.partstat = PartStat.NEEDS_ACTION
        appointment.progress, appointment.progress_at = None, None  # the new technician starts afresh
    appointment.starts_at, appointment.ends_at = starts_at, ends_at
    appointment.blocked_from, appointment.blocked_until = blocked
    if window is not None:
        appointment.window_start, appointment.window_end = window
    elif appointment.window_start is not None and appointment.window_end is not None:
        width = appointment.window_end - appointment.window_start
        appointment.window_start, appointment.window_end = starts_at, starts_at + width
    changed(ctx, appointment, Action.APPOINTMENT_RESCHEDULE, before, freed=freed)
    if force is not None:
        rules.record_override(ctx, appointment, force, overridden)
    return appointment


@operation
def reassign(ctx: Context, appointment: Appointment, technician: User | None, *,
             force: Override | None = None) -> Appointment:
    _live(appointment)
    if technician is not None and technician.role != Role.TECHNICIAN:
        raise InvalidInput(f"{technician.login!r} is not a technician.")
    if appointment.technician_id == (technician.id if technician else None):
        return appointment
    overridden: list[rules.Problem] = []
    before = snapshot(appointment)
    freed = (appointment.technician, appointment.starts_at, appointment.ends_at)
    if technician is not None:
        (appointment.blocked_from, appointment.blocked_until), overridden = _claim(
            ctx, technician, appointment.job, appointment.service_type, appointment.starts_at,
            appointment.ends_at, exclude_id=appointment.id, newly_assigned=True, force=force)
    appointment.technician_id = technician.id if technician else None
    appointment.partstat = PartStat.NEEDS_ACTION
    appointment.progress, appointment.progress_at = None, None
    changed(ctx, appointment, Action.APPOINTMENT_REASSIGN, before, freed=freed)
    if force is not None:
        rules.record_override(ctx, appointment, force, overridden)
    return appointment


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
    result = changed(ctx, appointment, Action.APPOINTMENT_CANCEL, before,
                     freed=(appointment.technician, appointment.starts_at, appointment.ends_at))
    if reason:
        audit.record(ctx.session, ctx.actor, Action.APPOINTMENT_CANCEL_REASON, "appointment",
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
    return changed(ctx, appointment, Action.APPOINTMENT_ACCEPT, before, bump=False)


@operation
def decline(ctx: Context, appointment: Appointment) -> Appointment:
    """The technician declines: the visit goes back to unassigned; nothing is lost."""
    _own(ctx, appointment)
    _live(appointment)
    before = snapshot(appointment)
    freed = (appointment.technician, appointment.starts_at, appointment.ends_at)
    appointment.technician_id = None
    appointment.partstat = PartStat.NEEDS_ACTION
    appointment.progress, appointment.progress_at = None, None
    if appointment.job.status == JobStatus.DISPATCHED:
        appointment.job.status = JobStatus.SCHEDULED
    return changed(ctx, appointment, Action.APPOINTMENT_DECLINE, before, freed=freed)


@operation
def set_status(ctx: Context, appointment: Appointment, status: JobStatus) -> Appointment:
    """Progress of the job as the technician reports it: dispatched → … → completed."""
    _own(ctx, appointment)
    _live(appointment)
    if status not in TECHNICIAN_STATUSES:
        allowed = ", ".join(s.value for s in TECHNICIAN_STATUSES)
        raise InvalidInput(f"Job status {status!r} cannot be set here; use one of {allowed}.")
    job = appointment.job
    reported = status if status in REPORTED else None
    if job.status == status and appointment.progress == reported:
        return appointment
    before = snapshot(appointment)
    job.status = status
    job.updated_at = utcnow()
    if appointment.progress != reported:
        appointment.progress, appointment.progress_at = reported, job.updated_at
    return changed(ctx, appointment, Action.APPOINTMENT_STATUS, before)
