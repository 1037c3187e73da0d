"""Rows as the API shows them: in the business's time zone, no internals.

Built with `model_construct`: the values come from the database, already typed, so the
answer skips a second validation (a 200-item page is built in a fraction of a millisecond).
"""

from __future__ import annotations

from server.api.base import local, local_or_none
from server.api.people_schemas import (
    CustomerOut,
    SiteOut,
    TeamOut,
    TechnicianOut,
    WorkingHoursOut,
)
from server.api.schemas import (
    AppointmentOut,
    EventOut,
    HolidayOut,
    JobOut,
    LinkOut,
    ServiceTypeOut,
)
from server.changes import Event
from server.models import (
    Appointment,
    AuditEntry,
    Customer,
    Job,
    ServiceType,
    ShareLink,
    Site,
    Team,
    TimeOff,
    User,
)
from server.models import WorkingHours as Hours


def technician(user: User, hours: list[Hours]) -> TechnicianOut:
    return TechnicianOut.model_construct(
        id=user.id, login=user.login, name=user.name, email=user.email, timezone=user.timezone,
        skills=list(user.skills or []), teams=sorted(t.slug for t in user.teams),
        active=user.active,
        working_hours=[WorkingHoursOut.model_construct(weekday=h.weekday, starts=h.starts, ends=h.ends)
                       for h in sorted(hours, key=lambda h: (h.weekday, h.starts))])


def team(row: Team) -> TeamOut:
    return TeamOut.model_construct(id=row.id, slug=row.slug, name=row.name,
                                   members=sorted(m.login for m in row.members),
                                   road_factor=row.road_factor, speed_kmh=row.speed_kmh)


def customer(row: Customer) -> CustomerOut:
    return CustomerOut.model_construct(
        id=row.id, name=row.name, email=row.email, phone=row.phone, timezone=row.timezone,
        sites=[site(s) for s in row.sites])


def site(row: Site) -> SiteOut:
    return SiteOut.model_construct(
        id=row.id, customer_id=row.customer_id, address=row.address, postcode=row.postcode,
        country=row.country, latitude=row.latitude, longitude=row.longitude,
        compressor_make=row.compressor_make, compressor_model=row.compressor_model,
        compressor_serial=row.compressor_serial)


def job(row: Job) -> JobOut:
    return JobOut.model_construct(
        id=row.id, customer_id=row.customer_id, site_id=row.site_id, title=row.title,
        problem=row.problem, priority=row.priority, source=row.source, status=row.status,
        created_at=local(row.created_at), updated_at=local(row.updated_at))


def appointment(row: Appointment) -> AppointmentOut:
    return AppointmentOut.model_construct(
        id=row.id, uid=row.uid, job_id=row.job_id,
        technician=row.technician.login if row.technician else None,
        starts_at=local(row.starts_at), ends_at=local(row.ends_at),
        window_start=local_or_none(row.window_start), window_end=local_or_none(row.window_end),
        status=row.status, partstat=row.partstat, job_status=row.job.status,
        progress=row.progress.value if row.progress else None,
        progress_at=local_or_none(row.progress_at), sequence=row.sequence,
        service_type=row.service_type.slug if row.service_type_id and row.service_type else None,
        updated_at=local(row.updated_at))


def service_type(row: ServiceType) -> ServiceTypeOut:
    return ServiceTypeOut.model_construct(
        id=row.id, slug=row.slug, name=row.name, description=row.description,
        duration_minutes=row.duration_minutes, buffer_before_minutes=row.buffer_before_minutes,
        buffer_after_minutes=row.buffer_after_minutes, travel_minutes=row.travel_minutes,
        skills=list(row.skills or []), min_notice_minutes=row.min_notice_minutes,
        horizon_days=row.horizon_days, arrival_windows=list(row.arrival_windows or []),
        window_capacity=row.window_capacity, active=row.active, remote=row.remote)


def holiday(row: TimeOff) -> HolidayOut:
    return HolidayOut.model_construct(id=row.id, starts_at=local(row.starts_at), ends_at=local(row.ends_at),
                      reason=row.reason)


def link(row: ShareLink, subject: str, url: str | None) -> LinkOut:
    return LinkOut.model_construct(id=row.id, purpose=row.purpose, subject=subject, audience=row.audience,
                   label=row.label, version=row.version, url=url, created_by=row.created_by,
                   created_at=local(row.created_at), expires_at=local_or_none(row.expires_at),
                   revoked_at=local_or_none(row.revoked_at), last_used_at=local_or_none(row.last_used_at))


def event(row: Event) -> EventOut:
    return EventOut.model_construct(id=row.id, at=local(row.at), actor=row.actor, channel=row.channel,
                    action=row.action, entity=row.entity, entity_id=row.entity_id,
                    before=row.before, after=row.after)


def as_event(entry: AuditEntry) -> Event:
    return Event(entry.id, entry.at, entry.actor, entry.channel, entry.action, entry.entity,
                 entry.entity_id, entry.before, entry.after)
