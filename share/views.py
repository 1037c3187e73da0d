"""What a share page shows, read from the jobs database for one live link."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server.links import LinkAudience, SubjectKind
from server.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Job,
    ShareLink,
    Team,
    TeamMember,
    User,
)

STATUS_LABELS = {
    AppointmentStatus.TENTATIVE: "Requested",
    AppointmentStatus.CONFIRMED: "Confirmed",
    AppointmentStatus.CANCELLED: "Cancelled",
}


@dataclass(frozen=True)
class Visit:
    id: int
    title: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    window: tuple[dt.datetime, dt.datetime]
    technician: str
    status: str
    cancelled: bool
    address: str
    customer: str


@dataclass(frozen=True)
class Page:
    kind: SubjectKind
    title: str
    zone: ZoneInfo
    freebusy: bool
    visits: list[Visit]


def _visit(appointment: Appointment, zone: ZoneInfo) -> Visit:
    job = appointment.job
    technician = appointment.technician
    window = (appointment.window_start or appointment.starts_at,
              appointment.window_end or appointment.ends_at)
    return Visit(
        id=appointment.id,
        title=job.title,
        starts_at=appointment.starts_at.astimezone(zone),
        ends_at=appointment.ends_at.astimezone(zone),
        window=(window[0].astimezone(zone), window[1].astimezone(zone)),
        technician=technician.first_name if technician else "to be assigned",
        status=STATUS_LABELS[AppointmentStatus(appointment.status)],
        cancelled=appointment.status == AppointmentStatus.CANCELLED,
        address=job.site.address if job.site else "",
        customer=job.customer.name,
    )


def _appointments(session: Session, *conditions: object) -> list[Appointment]:
    return list(session.scalars(
        select(Appointment)
        .join(Job, Job.id == Appointment.job_id)
        .where(*conditions)
        .options(selectinload(Appointment.job).selectinload(Job.site),
                 selectinload(Appointment.job).selectinload(Job.customer),
                 selectinload(Appointment.technician))
        .order_by(Appointment.starts_at, Appointment.id)
    ))


def customer_page(session: Session, link: ShareLink, since: dt.datetime) -> Page | None:
    if link.subject_kind == SubjectKind.APPOINTMENT:
        appointment = session.get(Appointment, link.subject_id)
        if appointment is None:
            return None
        customer = appointment.job.customer
        found = [appointment]
    else:
        customer = session.get(Customer, link.subject_id)
        if customer is None:
            return None
        found = _appointments(session, Job.customer_id == customer.id, Appointment.ends_at >= since)
    zone = ZoneInfo(customer.timezone)
    return Page(SubjectKind(link.subject_kind), customer.name, zone,
                link.audience == LinkAudience.FREEBUSY, [_visit(a, zone) for a in found])


def schedule_page(session: Session, link: ShareLink, start: dt.datetime, end: dt.datetime,
                  default_zone: str) -> Page | None:
    """A team's or technician's visits in [start, end)."""
    in_range = (Appointment.starts_at < end, Appointment.ends_at > start)
    if link.subject_kind == SubjectKind.TEAM:
        team = session.get(Team, link.subject_id)
        if team is None:
            return None
        members = select(TeamMember.user_id).where(TeamMember.team_id == team.id)
        found = _appointments(session, Appointment.technician_id.in_(members), *in_range)
        title, zone = f"{team.name} schedule", ZoneInfo(default_zone)
    else:
        user = session.get(User, link.subject_id)
        if user is None:
            return None
        found = _appointments(session, Appointment.technician_id == user.id, *in_range)
        title, zone = f"{user.name}: schedule", ZoneInfo(user.timezone)
    return Page(SubjectKind(link.subject_kind), title, zone,
                link.audience == LinkAudience.FREEBUSY, [_visit(a, zone) for a in found])


def visit_belongs(session: Session, link: ShareLink, appointment_id: int) -> Appointment | None:
    """The appointment if the link's subject covers it."""
    appointment = session.get(Appointment, appointment_id)
    if appointment is None:
        return None
    kind = SubjectKind(link.subject_kind)
    covered = (
        (kind is SubjectKind.APPOINTMENT and appointment.id == link.subject_id)
        or (kind is SubjectKind.CUSTOMER and appointment.job.customer_id == link.subject_id)
        or (kind is SubjectKind.TECHNICIAN and appointment.technician_id == link.subject_id)
        or (kind is SubjectKind.TEAM and appointment.technician_id is not None and session.get(
            TeamMember, (link.subject_id, appointment.technician_id)) is not None)
    )
    return appointment if covered else None
