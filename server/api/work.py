"""/api/v1 jobs and appointments: book, move, reassign, cancel, set status; their audit."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flask import g, request
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from server import audit, directory, scheduling
from server.api import views
from server.api.auth import Principal
from server.api.base import answers as ans
from server.api.base import (
    body,
    bp,
    check_if_match,
    cursor_id,
    decode_cursor,
    endpoint,
    next_link,
    one,
    params,
    reading,
    writing,
    zone,
)
from server.api.pages import AppointmentPage, EventPage, JobPage
from server.api.problems import ApiProblem
from server.api.schemas import (
    ActionHeaders,
    AppointmentIn,
    AppointmentOut,
    AppointmentPatch,
    AppointmentQuery,
    CancelIn,
    CreateHeaders,
    Force,
    JobIn,
    JobOut,
    JobQuery,
    PageQuery,
    ReassignIn,
    StatusIn,
    WriteHeaders,
    ZoneQuery,
)
from server.apikeys import Scope
from server.errors import NotFound
from server.models import Appointment, AppointmentStatus, Job, JobStatus, Site, User
from server.scheduling.booking import service_type_by_slug
from server.scheduling.listing import AppointmentFilter, list_appointments
from server.scheduling.rules import Override

ID = "<int:{}>"
TAGS = ("appointments",)


def _job(session: Session, job_id: int) -> Job:
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound(f"No job #{job_id}.")
    return job


def _technician(session: Session, login: str | None) -> User | None:
    return None if login is None else directory.find_user(session, login)


def _force(given: Force | None) -> Override | None:
    """A forced booking needs a key that may override the rules (a dispatcher's)."""
    if given is None:
        return None
    principal: Principal = g.api_principal
    if not principal.may(Scope.OVERRIDE):
        raise ApiProblem(403, f"A {principal.role.value} key may not force a booking against the "
                              "rules; ask a dispatcher, or book a technician who is free there.")
    return Override(given.reason)


# --------------------------------------------------------------------------- jobs


@bp.get("/jobs")
@endpoint(Scope.READ, tags=("jobs",), query=JobQuery, resp=ans(200, JobPage))
def list_jobs() -> Any:
    query = params(JobQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        statement = select(Job).where(Job.id > after).order_by(Job.id).limit(query.limit)
        if query.customer is not None:
            statement = statement.where(Job.customer_id == query.customer)
        items = [views.job(j) for j in session.scalars(statement)]
    more = [items[-1].id] if len(items) == query.limit else None
    return JobPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/jobs")
@endpoint(Scope.BOOK, tags=("jobs",), body=JobIn, headers=CreateHeaders,
          resp=ans(201, JobOut), idempotent=True)
def create_job() -> Any:
    data = body(JobIn)
    with writing() as ctx:
        customer = directory.find_customer(ctx.session, data.customer_id)
        site = None
        if data.site_id is not None:
            site = ctx.session.get(Site, data.site_id)
            if site is None or site.customer_id != customer.id:
                raise ApiProblem(422, f"Site #{data.site_id} is not a site of customer "
                                      f"#{customer.id}.")
        job = directory.add_job(ctx, customer, data.title, problem=data.problem,
                                priority=data.priority.value, source=data.source.value, site=site)
        out = views.job(job)
    return one(out, 201, f"{request.url_root.rstrip('/')}/api/v1/jobs/{out.id}")


@bp.get(f"/jobs/{ID.format('job_id')}")
@endpoint(Scope.READ, tags=("jobs",), resp=ans(200, JobOut))
def get_job(job_id: int) -> Any:
    with reading() as session:
        return one(views.job(_job(session, job_id)))


# --------------------------------------------------------------------------- appointments


def _load(session: Session, appointment_id: int, *, lock: bool = False) -> Appointment:
    appointment = session.get(Appointment, appointment_id, with_for_update=lock or None,
                              options=[selectinload(Appointment.job),
                                       selectinload(Appointment.technician)])
    if appointment is None:
        raise NotFound(f"No appointment #{appointment_id}.")
    return appointment


def _location(appointment_id: int) -> str:
    return f"{request.url_root.rstrip('/')}/api/v1/appointments/{appointment_id}"


@bp.get("/appointments")
@endpoint(Scope.READ, tags=TAGS, query=AppointmentQuery, resp=ans(200, AppointmentPage))
def list_visits() -> Any:
    query = params(AppointmentQuery)
    position = decode_cursor(query.cursor)
    after = None
    if position is not None:
        try:
            after = (dt.datetime.fromisoformat(position[0]), int(position[1]))
        except (TypeError, ValueError, IndexError) as exc:
            raise ApiProblem(422, "The cursor is not one this server gave; start again without "
                                  "it.") from exc
        if after[0].tzinfo is None:
            raise ApiProblem(422, "The cursor is not one this server gave; start again without it.")
    where = AppointmentFilter(technician=query.technician, customer_id=query.customer,
                              starts_from=query.from_, starts_to=query.to,
                              status=query.status.value if query.status else None,
                              job_id=query.job)
    with reading() as session:
        rows = list_appointments(session, where, limit=query.limit, after=after)
        items = [views.appointment(a) for a in rows]
    more = [rows[-1].starts_at.isoformat(), rows[-1].id] if len(rows) == query.limit else None
    return AppointmentPage(items=items, next=next_link(more), timezone=zone().key)


@bp.post("/appointments")
@endpoint(Scope.BOOK, tags=TAGS, body=AppointmentIn, headers=CreateHeaders, query=ZoneQuery,
          resp=ans(201, AppointmentOut), idempotent=True)
def book() -> Any:
    """Book a visit. A rule refusal (area, working hours, personal time) is a 409 with
    `conflicts`; a dispatcher key may send `force` with a reason to book anyway."""
    data = body(AppointmentIn)
    force = _force(data.force)
    with writing() as ctx:
        job = _job(ctx.session, data.job_id)
        service = service_type_by_slug(ctx.session, data.service_type) if data.service_type else None
        ends_at = data.ends_at
        if ends_at is None and data.duration_minutes is not None:
            ends_at = data.starts_at + dt.timedelta(minutes=data.duration_minutes)
        if ends_at is None and service is not None:
            ends_at = data.starts_at + dt.timedelta(minutes=service.duration_minutes)
        if ends_at is None:
            raise ApiProblem(422, "Give ends_at or duration_minutes (or a service_type, whose "
                                  "duration is used).")
        window = None
        if data.window_minutes is not None:
            window = (data.starts_at, data.starts_at + dt.timedelta(minutes=data.window_minutes))
        appointment = scheduling.book(
            ctx, job, _technician(ctx.session, data.technician), data.starts_at, ends_at,
            status=AppointmentStatus(data.status.value), window=window,
            service_type=service, force=force)
        out = views.appointment(appointment)
    return one(out, 201, _location(out.id))


@bp.get(f"/appointments/{ID.format('appointment_id')}")
@endpoint(Scope.READ, tags=TAGS, resp=ans(200, AppointmentOut))
def get_visit(appointment_id: int) -> Any:
    with reading() as session:
        return one(views.appointment(_load(session, appointment_id)))


@bp.patch(f"/appointments/{ID.format('appointment_id')}")
@endpoint(Scope.BOOK, tags=TAGS, body=AppointmentPatch, headers=WriteHeaders, query=ZoneQuery,
          resp=ans(200, AppointmentOut))
def move(appointment_id: int) -> Any:
    """Move a visit (starts_at, ends_at) and/or hand it to another technician (`force` as
    when booking)."""
    data = body(AppointmentPatch)
    force = _force(data.force)
    with writing() as ctx:
        appointment = _load(ctx.session, appointment_id, lock=True)
        check_if_match(views.appointment(appointment))
        technician = _technician(ctx.session, data.technician)
        if data.starts_at is None and data.ends_at is None:
            if technician is not None:
                scheduling.reassign(ctx, appointment, technician, force=force)
        else:
            starts_at = data.starts_at or appointment.starts_at
            ends_at = data.ends_at or starts_at + (appointment.ends_at - appointment.starts_at)
            scheduling.reschedule(ctx, appointment, starts_at, ends_at, technician=technician,
                                  force=force)
        return one(views.appointment(appointment))


def _act(appointment_id: int, action: Any) -> Any:
    with writing() as ctx:
        appointment = _load(ctx.session, appointment_id, lock=True)
        check_if_match(views.appointment(appointment))
        action(ctx, appointment)
        return one(views.appointment(appointment))


@bp.post(f"/appointments/{ID.format('appointment_id')}/reassign")
@endpoint(Scope.BOOK, tags=TAGS, body=ReassignIn, headers=ActionHeaders, query=ZoneQuery,
          resp=ans(200, AppointmentOut), idempotent=True)
def reassign(appointment_id: int) -> Any:
    """Hand the visit to another technician (null: unassign) at the same time (`force` as
    when booking)."""
    data = body(ReassignIn)
    force = _force(data.force)
    return _act(appointment_id, lambda ctx, a: scheduling.reassign(
        ctx, a, _technician(ctx.session, data.technician), force=force))


@bp.post(f"/appointments/{ID.format('appointment_id')}/cancel")
@endpoint(Scope.BOOK, tags=TAGS, body=CancelIn, headers=ActionHeaders,
          resp=ans(200, AppointmentOut), idempotent=True)
def cancel(appointment_id: int) -> Any:
    data = body(CancelIn)
    return _act(appointment_id, lambda ctx, a: scheduling.cancel(ctx, a, data.reason))


@bp.post(f"/appointments/{ID.format('appointment_id')}/status")
@endpoint(Scope.BOOK, tags=TAGS, body=StatusIn, headers=ActionHeaders,
          resp=ans(200, AppointmentOut), idempotent=True)
def set_status(appointment_id: int) -> Any:
    """Progress of the job: dispatched, en_route, on_site, completed."""
    data = body(StatusIn)
    return _act(appointment_id, lambda ctx, a: scheduling.set_status(
        ctx, a, JobStatus(data.status.value)))


@bp.get(f"/appointments/{ID.format('appointment_id')}/audit")
@endpoint(Scope.AUDIT, tags=("audit",), query=PageQuery, resp=ans(200, EventPage))
def visit_audit(appointment_id: int) -> Any:
    query = params(PageQuery)
    after = cursor_id(query.cursor)
    with reading() as session:
        _load(session, appointment_id)
        entries = [e for e in audit.trail(session, "appointment", appointment_id) if e.id > after]
        page = entries[:query.limit]
        items = [views.event(views.as_event(e)) for e in page]
    more = [page[-1].id] if len(entries) > query.limit else None
    return EventPage(items=items, next=next_link(more), timezone=zone().key)

