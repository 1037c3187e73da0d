"""What a share page shows, read from the jobs database for one live link."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, selectinload

from server import integrations
from server.links import LinkAudience, SubjectKind
from server.models import (
    Appointment,
    AppointmentStatus,
    Customer,
    Job,
    JobStatus,
    ShareLink,
    Team,
    TeamMember,
    User,
)
from server.scheduling.progress import estimated_arrival


@dataclass(frozen=True)
class Progress:
    """Where a visit stands, as a customer sees it: a label and a key for its badge's style."""

    label: str
    key: str


BOOKING_PROGRESS = {
    AppointmentStatus.TENTATIVE: Progress("Requested", "requested"),
    AppointmentStatus.CONFIRMED: Progress("Confirmed", "confirmed"),
    AppointmentStatus.CANCELLED: Progress("Cancelled", "cancelled"),
}
JOB_PROGRESS = {
    JobStatus.EN_ROUTE: Progress("On the way", "on-the-way"),
    JobStatus.ON_SITE: Progress("Technician on site", "on-site"),
    JobStatus.COMPLETED: Progress("Done", "done"),
    JobStatus.CANCELLED: Progress("Cancelled", "cancelled"),
}


def progress(appointment: Appointment) -> Progress:
    """The visit's progress (on the way, on site, done) wins over the booking's state."""
    if appointment.status == AppointmentStatus.CANCELLED or appointment.job.status == JobStatus.CANCELLED:
        return BOOKING_PROGRESS[AppointmentStatus.CANCELLED]
    if appointment.progress is not None:
        return JOB_PROGRESS[appointment.progress]
    return BOOKING_PROGRESS[AppointmentStatus(appointment.status)]


@dataclass(frozen=True)
class Visit:
    id: int
    title: str
    starts_at: dt.datetime
    ends_at: dt.datetime
    window: tuple[dt.datetime, dt.datetime]
    technician: str
    status: str
    status_key: str
    cancelled: bool
    address: str
    customer: str
    video_url: str = ""  # the meeting a platform made for a remote visit (Meet, Zoom)


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
        status=(state := progress(appointment)).label,
        status_key=state.key,
        cancelled=state.key == "cancelled",
        address=job.site.address if job.site else "",
        customer=job.customer.name,
    )


def _appointments(session: Session, *conditions: ColumnElement[bool]) -> list[Appointment]:
    return list(session.scalars(
        select(Appointment)
        .join(Job, Job.id == Appointment.job_id)
        .where(*conditions)
        .options(selectinload(Appointment.job).selectinload(Job.site),
                 selectinload(Appointment.job).selectinload(Job.customer),
                 selectinload(Appointment.technician))
        .order_by(Appointment.starts_at, Appointment.id)
    ))


def _with_eta(session: Session, appointment: Appointment, visit: Visit, zone: ZoneInfo) -> Visit:
    """A technician on the way: when they should arrive, if it can be estimated."""
    eta = estimated_arrival(session, appointment) if appointment.progress == JobStatus.EN_ROUTE else None
    if eta is None:
        return visit
    return replace(visit, status=f"{visit.status} · arriving about {eta.astimezone(zone):%H:%M}")


def customer_page(session: Session, link: ShareLink, since: dt.datetime) -> Page | None:
    customer: Customer | None
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
    videos = integrations.join_urls(session, [a.id for a in found])
    visits = [_with_eta(session, a, replace(_visit(a, zone), video_url=videos.get(a.id, "")), zone)
              for a in found]
    return Page(SubjectKind(link.subject_kind), customer.name, zone,
                link.audience == LinkAudience.FREEBUSY, visits)


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
