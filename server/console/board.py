"""What the board shows: technicians' rows, their visits, the tray, in the dispatcher's time."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server.models import Appointment, AppointmentStatus, AuditEntry, Job, Role, Team, User
from server.scheduling import areas, rules, travel
from server.scheduling.appointments import snapshot


@dataclass(frozen=True)
class Visit:
    id: int
    customer: str
    site: str
    service: str
    title: str
    starts: str  # local "Mon 14:00"
    ends: str
    window: str
    status: str
    version: str
    day: str  # local date, for the move form
    time: str  # local HH:MM
    technician: str | None
    gap_min: int | None  # minutes free before this visit (same technician, same day)
    travel_min: int | None = None  # the drive from the visit before, which the gap must hold
    travel_short: bool = False  # the gap does not hold the drive (and the buffers)
    conflicts: tuple[str, ...] = ()  # overridden rules, in the dispatcher's time


@dataclass(frozen=True)
class Row:
    login: str
    name: str
    visits: list[Visit]


def version(appointment: Appointment) -> str:
    """The visit's version as the board sends it back (If-Match for forms)."""
    body = json.dumps(snapshot(appointment), sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


def last_changed_by(session: Session, appointment_id: int) -> str:
    entry = session.scalars(select(AuditEntry).where(
        AuditEntry.entity == "appointment", AuditEntry.entity_id == str(appointment_id))
        .order_by(AuditEntry.id.desc()).limit(1)).first()
    return f"{entry.actor} (via {entry.channel})" if entry is not None else "someone"


def _visit(appointment: Appointment, zone: ZoneInfo, gap: int | None,
           drive: travel.Leg | None = None, conflicts: tuple[str, ...] = ()) -> Visit:
    starts, ends = appointment.starts_at.astimezone(zone), appointment.ends_at.astimezone(zone)
    window = ""
    if appointment.window_start and appointment.window_end:
        window = (f"{appointment.window_start.astimezone(zone):%H:%M}–"
                  f"{appointment.window_end.astimezone(zone):%H:%M}")
    job: Job = appointment.job
    return Visit(
        id=appointment.id, customer=job.customer.name,
        site=job.site.address.strip() if job.site is not None else "",
        service=appointment.service_type.name if appointment.service_type else "",
        title=job.title, starts=f"{starts:%a %H:%M}", ends=f"{ends:%H:%M}", window=window,
        status=str(appointment.progress or job.status), version=version(appointment),
        day=f"{starts:%Y-%m-%d}",
        time=f"{starts:%H:%M}",
        technician=appointment.technician.login if appointment.technician else None,
        gap_min=gap, travel_min=drive.minutes if drive else None,
        travel_short=drive is not None and not drive.enough, conflicts=conflicts)


def conflicts(session: Session, appointment: Appointment, technician: User, zone: ZoneInfo,
              check_area: bool) -> tuple[str, ...]:
    """What a forced visit overrode (outside the area or the working hours, over personal
    time), said in the dispatcher's time zone; empty for a visit that keeps the rules."""
    area = areas.area_of_site(appointment.job.site) if check_area else None
    found = rules.problems(session, technician, appointment.starts_at, appointment.ends_at, area=area)
    return tuple(problem.describe(zone.key) for problem in found)


def load(session: Session, first: dt.date, days: int, zone: ZoneInfo,
         team: str | None) -> tuple[list[Row], list[Visit], list[Team]]:
    start = dt.datetime.combine(first, dt.time(), zone)
    end = start + dt.timedelta(days=days)
    people = select(User).where(User.role == Role.TECHNICIAN, User.active.is_(True))
    if team:
        people = people.where(User.teams.any(Team.slug == team))
    technicians = list(session.scalars(people.order_by(User.name)))
    found = session.scalars(
        select(Appointment).where(Appointment.starts_at < end, Appointment.ends_at > start,
                                  Appointment.status != AppointmentStatus.CANCELLED,
                                  Appointment.hold_expires_at.is_(None))
        .options(selectinload(Appointment.job).selectinload(Job.customer),
                 selectinload(Appointment.job).selectinload(Job.site),
                 selectinload(Appointment.technician), selectinload(Appointment.service_type))
        .order_by(Appointment.starts_at)).all()
    by_tech: dict[int, list[Appointment]] = {}
    tray = []
    for appointment in found:
        if appointment.technician_id is None:
            tray.append(_visit(appointment, zone, None))
        else:
            by_tech.setdefault(appointment.technician_id, []).append(appointment)
    rows = []
    check_area = areas.in_use(session)
    for person in technicians:
        visits: list[Visit] = []
        previous: Appointment | None = None
        model = travel.model_for(person)
        for appointment in by_tech.get(person.id, []):
            gap: int | None = None
            drive: travel.Leg | None = None
            if previous is not None and previous.ends_at.astimezone(zone).date() == \
                    appointment.starts_at.astimezone(zone).date():
                gap = int((appointment.starts_at - previous.ends_at).total_seconds() // 60)
                drive = travel.leg(model, previous, appointment)
            visits.append(_visit(appointment, zone, gap, drive,
                                 conflicts(session, appointment, person, zone, check_area)))
            previous = appointment
        rows.append(Row(person.login, person.name, visits))
    teams = list(session.scalars(select(Team).order_by(Team.name)))
    return rows, tray, teams


def blocking_visit(session: Session, technician: User, starts_at: dt.datetime,
                   ends_at: dt.datetime, moving: int) -> str:
    """A person-readable name of the visit that is in the way."""
    other = session.scalars(select(Appointment).where(
        Appointment.technician_id == technician.id, Appointment.id != moving,
        Appointment.status != AppointmentStatus.CANCELLED,
        Appointment.blocked_from < ends_at, Appointment.blocked_until > starts_at)
        .options(selectinload(Appointment.job).selectinload(Job.customer)).limit(1)).first()
    if other is None:
        return "another visit"
    return (f"“{other.job.title}” for {other.job.customer.name} at "
            f"{other.starts_at:%Y-%m-%d %H:%M} UTC (#{other.id})")
