"""Did the technician get there: no-shows and arrival within the customer's window.

Both read the technician's progress from the audit trail: `appointment.status` entries
record when the job went en route, on site and completed (the entry's time is when the
technician said so). A visit with no such entry has no recorded arrival.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String, and_, case, cast, func, select
from sqlalchemy.orm import Session

from server.models import Appointment, AppointmentStatus, AuditEntry, JobStatus
from server.reports.base import Filters, Metric, Report, in_scope, ratio
from server.reports.progress import reported


def no_shows(session: Session, filters: Filters, now: dt.datetime) -> Report:
    """Visits that ended (before `now`) in the range, were not cancelled, had a technician,
    and for which nobody ever recorded on site or completed."""
    attended = (select(cast(AuditEntry.entity_id, Integer))  # an appointment entry's id is its number
                .where(reported(JobStatus.ON_SITE, JobStatus.COMPLETED)))
    missed = case((Appointment.id.in_(attended), 0), else_=1)  # read once, then looked up
    query = (
        select(func.count(Appointment.id), func.sum(missed))
        .where(Appointment.status != AppointmentStatus.CANCELLED,
               Appointment.technician_id.is_not(None),
               Appointment.starts_at >= filters.start, Appointment.starts_at < filters.end,
               Appointment.ends_at <= now,
               in_scope(Appointment.technician_id, filters))
    )
    visits, missing = session.execute(query).one()
    visits, missing = int(visits or 0), int(missing or 0)
    return Report(Metric.NO_SHOWS, filters, ("past_visits", "no_shows", "no_show_rate"),
                  [(visits, missing, ratio(missing, visits))],
                  {"no_show_rate": ratio(missing, visits)})


def on_time_arrival(session: Session, filters: Filters) -> Report:
    """Visits with an arrival window that opens in the range, not cancelled: the first
    "on site" the technician recorded, against the window (both ends included)."""
    first_on_site = (select(func.min(AuditEntry.at))
                     .where(reported(JobStatus.ON_SITE),
                            AuditEntry.entity_id == cast(Appointment.id, String))
                     .scalar_subquery())  # the first entry of this visit in the index
    visits = (
        select(Appointment.window_start.label("opens"), Appointment.window_end.label("closes"),
               first_on_site.label("at"))
        .where(Appointment.status != AppointmentStatus.CANCELLED,
               Appointment.window_start.is_not(None), Appointment.window_end.is_not(None),
               Appointment.window_start >= filters.start, Appointment.window_start < filters.end,
               in_scope(Appointment.technician_id, filters))
        .cte("visits").prefix_with("MATERIALIZED")  # each visit's arrival looked up once
    )
    arrived = visits.c.at
    early = and_(arrived.is_not(None), arrived < visits.c.opens)
    late = and_(arrived.is_not(None), arrived > visits.c.closes)
    on_time = and_(arrived >= visits.c.opens, arrived <= visits.c.closes)
    query = select(func.count(), func.count(arrived), func.sum(case((on_time, 1), else_=0)),
                   func.sum(case((early, 1), else_=0)), func.sum(case((late, 1), else_=0)))
    windows, recorded, in_window, before, after = (int(n or 0) for n in session.execute(query).one())
    row = (windows, recorded, in_window, before, after, windows - recorded, ratio(in_window, recorded))
    return Report(Metric.ON_TIME, filters,
                  ("visits_with_window", "arrivals_recorded", "on_time", "early", "late",
                   "no_arrival_recorded", "on_time_rate"),
                  [row], {"on_time_rate": ratio(in_window, recorded)})
