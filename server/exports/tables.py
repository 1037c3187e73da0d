"""The rows of each export kind: flat columns, read in batches with one streamed query."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session, aliased, joinedload

from server.exports.base import BATCH, ExportRequest, Kind
from server.models import Appointment, AuditEntry, Customer, Job, ServiceType, Site, User

Value = str | int | bool | None


def _range(column: Any, request: ExportRequest) -> list[ColumnElement[bool]]:
    found = []
    if request.start is not None:
        found.append(column >= request.start)
    if request.end is not None:
        found.append(column < request.end)
    return found


def _visits(request: ExportRequest) -> Select[*tuple[Any, ...]]:
    technician = aliased(User)
    return (
        select(Appointment.id, Appointment.uid, Appointment.job_id, Job.title.label("job_title"),
               Job.customer_id, Customer.name.label("customer"), technician.login.label("technician"),
               Appointment.starts_at, Appointment.ends_at, Appointment.window_start,
               Appointment.window_end, Appointment.status, Job.status.label("job_status"),
               ServiceType.slug.label("service_type"), Site.address, Appointment.sequence,
               Appointment.created_at, Appointment.updated_at)
        .join(Job, Job.id == Appointment.job_id)
        .join(Customer, Customer.id == Job.customer_id)
        .outerjoin(Site, Site.id == Job.site_id)
        .outerjoin(technician, technician.id == Appointment.technician_id)
        .outerjoin(ServiceType, ServiceType.id == Appointment.service_type_id)
        .where(*_range(Appointment.starts_at, request))
        .order_by(Appointment.starts_at, Appointment.id)
    )


def _jobs(request: ExportRequest) -> Select[*tuple[Any, ...]]:
    return (
        select(Job.id, Job.customer_id, Customer.name.label("customer"), Job.title, Job.problem,
               Job.priority, Job.source, Job.status, Site.address, Job.created_at, Job.updated_at)
        .join(Customer, Customer.id == Job.customer_id)
        .outerjoin(Site, Site.id == Job.site_id)
        .where(*_range(Job.created_at, request))
        .order_by(Job.id)
    )


def _customers(request: ExportRequest) -> Select[*tuple[Any, ...]]:
    sites = (select(func.count(Site.id)).where(Site.customer_id == Customer.id)
             .correlate(Customer).scalar_subquery())
    return (
        select(Customer.id, Customer.name, Customer.email, Customer.phone, Customer.timezone,
               sites.label("sites"), Customer.created_at)
        .where(*_range(Customer.created_at, request))
        .order_by(Customer.id)
    )


def _audit(request: ExportRequest) -> Select[*tuple[Any, ...]]:
    return (
        select(AuditEntry.id, AuditEntry.at, AuditEntry.actor, AuditEntry.channel, AuditEntry.action,
               AuditEntry.entity, AuditEntry.entity_id, AuditEntry.before, AuditEntry.after,
               AuditEntry.request_id, AuditEntry.prev_hash, AuditEntry.hash)
        .where(*_range(AuditEntry.at, request))
        .order_by(AuditEntry.id)
    )


QUERIES = {Kind.VISITS: _visits, Kind.JOBS: _jobs, Kind.CUSTOMERS: _customers, Kind.AUDIT: _audit}


def columns(request: ExportRequest) -> list[str]:
    return [c.name for c in QUERIES[request.kind](request).selected_columns]


def cell(value: object) -> Value:
    """A stored value as an export cell: times in ISO 8601 UTC, JSON as compact text."""
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dt.datetime):
        return value.astimezone(dt.UTC).isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def rows(session: Session, request: ExportRequest) -> Iterator[list[Value]]:
    """The kind's rows in a stable order, fetched BATCH at a time."""
    query = QUERIES[request.kind](request)
    result = session.execute(query.execution_options(stream_results=True, yield_per=BATCH))
    for row in result:
        yield [cell(v) for v in row]


def visits(session: Session, request: ExportRequest) -> Iterator[Appointment]:
    """The visits as objects (for iCalendar), their job, customer, site and technician loaded
    with them, fetched BATCH at a time."""
    query = (
        select(Appointment)
        .options(joinedload(Appointment.job).joinedload(Job.customer),
                 joinedload(Appointment.job).joinedload(Job.site),
                 joinedload(Appointment.technician))
        .where(*_range(Appointment.starts_at, request))
        .order_by(Appointment.starts_at, Appointment.id)
        .execution_options(stream_results=True, yield_per=BATCH)
    )
    for appointment in session.scalars(query):
        yield appointment
        session.expunge(appointment)
