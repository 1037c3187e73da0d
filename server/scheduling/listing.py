"""Reading visits: filtered, ordered by start, in pages that resume after a (start, id)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, selectinload

from server.directory import find_customer, find_user
from server.models import Appointment, Job

PageAfter = tuple[dt.datetime, int]


@dataclass(frozen=True)
class AppointmentFilter:
    technician: str | None = None  # login
    customer_id: int | None = None
    starts_from: dt.datetime | None = None  # visits that end after this
    starts_to: dt.datetime | None = None  # visits that start before this
    status: str | None = None
    job_id: int | None = None


def list_appointments(session: Session, where: AppointmentFilter, *, limit: int,
                      after: PageAfter | None = None) -> list[Appointment]:
    """Up to `limit` visits matching `where`, earliest first, after the `after` position."""
    query = (
        select(Appointment)
        .options(selectinload(Appointment.job), selectinload(Appointment.technician))
        .order_by(Appointment.starts_at, Appointment.id)
        .limit(limit)
    )
    if where.technician is not None:
        query = query.where(Appointment.technician_id == find_user(session, where.technician).id)
    if where.customer_id is not None:
        find_customer(session, where.customer_id)
        query = query.where(Appointment.job_id.in_(
            select(Job.id).where(Job.customer_id == where.customer_id)))
    if where.job_id is not None:
        query = query.where(Appointment.job_id == where.job_id)
    if where.starts_from is not None:
        query = query.where(Appointment.ends_at > where.starts_from)
    if where.starts_to is not None:
        query = query.where(Appointment.starts_at < where.starts_to)
    if where.status is not None:
        query = query.where(Appointment.status == where.status)
    if after is not None:
        query = query.where(or_(Appointment.starts_at > after[0],
                                and_(Appointment.starts_at == after[0], Appointment.id > after[1])))
    return list(session.scalars(query))
