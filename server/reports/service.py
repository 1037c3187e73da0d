"""From request to repair: time to service and first-time fix."""

from __future__ import annotations

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from server.models import Appointment, AppointmentStatus, Job, JobStatus
from server.reports.base import Filters, Metric, Report, in_scope, ratio
from server.timesql import seconds_between

HOUR = 3600
BUCKETS = (("under 24 h", 0, 24 * HOUR), ("1-3 days", 24 * HOUR, 72 * HOUR),
           ("3-7 days", 72 * HOUR, 168 * HOUR), ("over 7 days", 168 * HOUR, None))


def _live_visits(filters: Filters) -> ColumnElement[bool]:
    return and_(Appointment.status != AppointmentStatus.CANCELLED,
                in_scope(Appointment.technician_id, filters))


def time_to_service(session: Session, filters: Filters) -> Report:
    """Jobs received in the range: from the request (the job's creation) to the start of its
    first visit that was not cancelled. With a team or technician, only jobs one of their
    technicians visits."""
    # Each job received in the range with its first live visit, grouped job by job as the
    # jobs and their visits both arrive in job order (PostgreSQL merges the two indexes), so
    # each wait is worked out once, streamed, never held. With a team or technician, only
    # the jobs one of their technicians visits; else every job received, visited or not
    # (those without a visit wait NULL).
    received = (
        select(seconds_between(Job.created_at, func.min(Appointment.starts_at)).label("waited"))
        .select_from(Job)
        .join(Appointment, and_(Appointment.job_id == Job.id, _live_visits(filters)),
              isouter=not filters.scoped)
        .where(Job.created_at >= filters.start, Job.created_at < filters.end)
        .group_by(Job.id)
        .subquery("received")
    )
    waited = received.c.waited
    counts = []
    for _label, low, high in BUCKETS:
        inside = waited >= low if high is None else and_(waited >= low, waited < high)
        counts.append(func.sum(case((inside, 1), else_=0)))
    query = select(func.count(), func.count(waited), func.sum(waited), func.max(waited), *counts)
    jobs, served, total, longest, *buckets = session.execute(query).one()
    jobs, served = int(jobs or 0), int(served or 0)
    mean_hours = round(int(total) / served / HOUR, 2) if served else None
    rows: list[tuple[str | int | float | None, ...]] = [
        (label, int(n or 0)) for (label, _l, _h), n in zip(BUCKETS, buckets, strict=True)]
    rows.append(("no visit yet", jobs - served))
    return Report(Metric.TIME_TO_SERVICE, filters, ("waited", "jobs"), rows,
                  {"jobs": jobs, "served": served, "mean_hours": mean_hours,
                   "longest_hours": round(int(longest) / HOUR, 2) if longest is not None else None})


def first_time_fix(session: Session, filters: Filters) -> Report:
    """Completed jobs whose last visit (not cancelled) started in the range; fixed the first
    time = exactly one visit that was not cancelled (a visit cancelled and booked again
    is still one visit)."""
    visits = (
        select(Appointment.job_id.label("job_id"), func.count().label("visits"),
               func.max(Appointment.starts_at).label("last"))
        .where(Appointment.status != AppointmentStatus.CANCELLED)
        .group_by(Appointment.job_id)
        .subquery()
    )
    scope = select(Appointment.job_id).where(_live_visits(filters))
    # The range is a condition on each count, not a filter: a filter on an aggregate gets
    # a blind guess of its rows, and PostgreSQL would fetch the jobs one by one.
    in_range = and_(visits.c.last >= filters.start, visits.c.last < filters.end)
    query = (
        select(func.sum(case((in_range, 1), else_=0)),
               func.sum(case((and_(in_range, visits.c.visits == 1), 1), else_=0)))
        .select_from(Job)
        .join(visits, visits.c.job_id == Job.id)
        .where(Job.status == JobStatus.COMPLETED)
    )
    if filters.scoped:
        query = query.where(Job.id.in_(scope))
    completed, once = (int(n or 0) for n in session.execute(query).one())
    return Report(Metric.FIRST_TIME_FIX, filters,
                  ("completed_jobs", "fixed_first_time", "first_time_fix_rate"),
                  [(completed, once, ratio(once, completed))],
                  {"first_time_fix_rate": ratio(once, completed)})
